//! Waiting on a 32-bit word and waking its waiters, across processes, on Windows.
//!
//! `WaitOnAddress` only sees threads of one process, so it serves words in memory of this
//! process alone. A word in a shared mapping (one [`mapping_of`] knows) is named by that
//! mapping's name and its offset in it, the same in every process, and its waiters meet in a
//! *waiting table*: a small named mapping (`Local\multiproc-futex-v1`) shared by every process
//! of the session, of [`GROUPS`] groups of [`SLOTS`] places. Each place has its own named
//! auto-reset event (`Local\multiproc-futex-v1-<place>`), opened once per process and kept.
//!
//! A waiter takes a free place in the group of its word's key (or, when that group is full, in
//! one of the next ones, raising the group's `reach` first so wakers look there), writes the
//! key, publishes the place as `WAITING`, and only then compares the word: a waker that changed
//! the word before that comparison finds the place, one that changes it after is seen by the
//! comparison — no lost wake-up. It then sleeps on the place's event. A waker scans the places
//! of the key's group(s) (memory reads only: no system call when nobody waits), turns up to `n`
//! matching `WAITING` places into `WOKEN` with a compare-and-swap and sets their events, one
//! system call per waiter woken; it returns how many it turned, so the count is exact but for
//! a waiter killed asleep (its place is woken once, then reclaimed). The state word carries a
//! generation, bumped whenever a place is taken, so a waker that read a place's key cannot wake
//! a later occupant with another key.
//!
//! A waiter whose timeout runs out takes its place back (`WAITING` → `FREE`); if a waker turned
//! it first, the wake counts and the waiter returns as woken (the event, set a moment later,
//! may make the place's next waiter return once spuriously: allowed, and rare).

use std::ffi::c_void;
use std::sync::atomic::{fence, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, INVALID_HANDLE_VALUE, WAIT_OBJECT_0};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, FILE_MAP_ALL_ACCESS, PAGE_READWRITE,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, SetEvent, WaitForSingleObject, WaitOnAddress, WakeByAddressAll,
    WakeByAddressSingle, INFINITE,
};

use super::{identity, identity_alive, mapping_of};

/// Groups of the waiting table (a key's group: its hash modulo this).
const GROUPS: usize = 64;
/// Places per group.
const SLOTS: usize = 64;
/// Places in all.
const PLACES: usize = GROUPS * SLOTS;
/// The names of the table and of its events: a new layout gets a new version.
const TABLE_NAME: &str = "Local\\multiproc-futex-v1";

/// The low two bits of a place's state: what it is. The rest: its generation.
const FREE: u32 = 0;
const TAKEN: u32 = 1;
const WAITING: u32 = 2;
const WOKEN: u32 = 3;
const KIND: u32 = 3;
const GENERATION: u32 = 4;

/// One waiting place.
#[repr(C)]
struct Place {
    /// Kind (low bits) and generation.
    state: AtomicU32,
    _pad: AtomicU32,
    /// The [`identity`] of the waiter, for reclaiming places of waiters that died.
    owner: AtomicU64,
    /// The key of the word waited on: a hash of its mapping's name, and its offset there.
    name: AtomicU64,
    offset: AtomicU64,
}

#[repr(C, align(64))]
struct Group {
    /// How many groups after this one hold waiters of its keys (never lowered).
    reach: AtomicU32,
    _pad: [AtomicU32; 15],
    places: [Place; SLOTS],
}

/// The waiting table: all-zero bytes (a fresh pagefile mapping) are an empty one.
#[repr(C)]
struct Table {
    groups: [Group; GROUPS],
}

/// The table of this session, mapped once and kept; `None` if it could not be made.
fn table() -> Option<&'static Table> {
    static TABLE: OnceLock<usize> = OnceLock::new();
    let at = *TABLE.get_or_init(|| match map_table() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("no waiting table ({e}): waits on shared words fall back to polling");
            0
        }
    });
    // SAFETY: a live view of at least size_of::<Table>() bytes, page-aligned, never unmapped;
    // Table is made of atomics only, valid for any bytes another process writes.
    (at != 0).then(|| unsafe { &*(at as *const Table) })
}

fn map_table() -> std::io::Result<usize> {
    let name = wide(TABLE_NAME);
    let len = std::mem::size_of::<Table>();
    // SAFETY: a pagefile-backed mapping (INVALID_HANDLE_VALUE), created or, if it exists,
    // opened, with a NUL-terminated name that outlives the call.
    let h = unsafe {
        CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            std::ptr::null(),
            PAGE_READWRITE,
            0,
            len as u32,
            name.as_ptr(),
        )
    };
    if h.is_null() {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: maps the whole mapping just created or opened, through its live handle.
    let view = unsafe { MapViewOfFile(h, FILE_MAP_ALL_ACCESS, 0, 0, len) };
    if view.Value.is_null() {
        let err = std::io::Error::last_os_error();
        // SAFETY: the handle is ours, and unused.
        unsafe { CloseHandle(h) };
        return Err(err);
    }
    // The handle stays open for the life of the process, with the view: on Windows the view
    // alone would keep the table (and its name) alive, but under Wine a view does not keep
    // the name, so another process opening it would get a new, empty table.
    Ok(view.Value as usize)
}

/// `s` as a NUL-terminated UTF-16 string.
fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// The event of place `i`, opened (or created) on first use in this process and kept.
fn event(i: usize) -> Option<HANDLE> {
    static EVENTS: [AtomicPtr<c_void>; PLACES] =
        [const { AtomicPtr::new(std::ptr::null_mut()) }; PLACES];
    let slot = &EVENTS[i];
    let h = slot.load(Ordering::Acquire);
    if !h.is_null() {
        return Some(h);
    }
    let name = wide(&format!("{TABLE_NAME}-{i}"));
    // SAFETY: an auto-reset event, not signalled if new, with a NUL-terminated name; an
    // existing event of that name is opened instead (the flags are then ignored).
    let new = unsafe { CreateEventW(std::ptr::null(), 0, 0, name.as_ptr()) };
    if new.is_null() {
        tracing::warn!(
            "cannot open the event of waiting place {i}: {}",
            std::io::Error::last_os_error()
        );
        return None;
    }
    match slot.compare_exchange(
        std::ptr::null_mut(),
        new,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => Some(new),
        Err(theirs) => {
            // SAFETY: our handle, which nobody else saw.
            unsafe { CloseHandle(new) };
            Some(theirs)
        }
    }
}

/// The key of the shared word at `addr`, if it lies in a shared mapping.
fn key_of(addr: usize) -> Option<(u64, u64)> {
    let (name, offset) = mapping_of(addr)?;
    Some((hash(name.as_bytes()), offset as u64))
}

/// FNV-1a over `bytes`, then a SplitMix64 finish: the same in every process and build.
fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The group of a key.
fn group_of((name, offset): (u64, u64)) -> usize {
    ((name ^ offset.wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 32) as usize % GROUPS
}

/// Milliseconds for `WaitForSingleObject`/`WaitOnAddress`, rounded up (a wait never ends
/// before its time), and whether the wait is shorter than asked (beyond 49 days: then its end
/// is a spurious wake-up, not a timeout).
fn millis(timeout: Option<Duration>) -> (u32, bool) {
    match timeout {
        None => (INFINITE, false),
        Some(t) => {
            let ms = t.as_nanos().div_ceil(1_000_000);
            if ms >= u128::from(INFINITE) {
                (INFINITE - 1, true)
            } else {
                (ms as u32, false)
            }
        }
    }
}

/// Sleep while `*word == expected`, at most `timeout`; `false` only when the timeout expired.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    let addr = word.as_ptr() as usize;
    match key_of(addr) {
        Some(key) => shared_wait(key, || word.load(Ordering::SeqCst) == expected, timeout),
        None => local_wait(addr, expected, timeout),
    }
}

/// Wake up to `n` waiters on `word`; how many were woken (see the module's text).
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) -> usize {
    let addr = word.as_ptr() as usize;
    match key_of(addr) {
        Some(key) => shared_wake(key, n),
        None => local_wake(addr, n),
    }
}

/// [`futex_wait`] on the low 32 bits of `word` (its first four bytes: Windows is
/// little-endian).
pub(crate) fn futex_wait_low(word: &AtomicU64, expected: u32, timeout: Option<Duration>) -> bool {
    let addr = word.as_ptr() as usize;
    match key_of(addr) {
        Some(key) => shared_wait(
            key,
            || word.load(Ordering::SeqCst) as u32 == expected,
            timeout,
        ),
        None => local_wait(addr, expected, timeout),
    }
}

/// [`futex_wake`] on the low 32 bits of `word`.
pub(crate) fn futex_wake_low(word: &AtomicU64, n: u32) -> usize {
    let addr = word.as_ptr() as usize;
    match key_of(addr) {
        Some(key) => shared_wake(key, n),
        None => local_wake(addr, n),
    }
}

/// How many threads of this process may wait on a local word of each hash bucket: `wake`
/// reports at most that many (it cannot know how many `WakeByAddress` woke), so it reports 0
/// only when nobody waits.
static LOCAL_WAITERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];

fn local_bucket(addr: usize) -> &'static AtomicUsize {
    &LOCAL_WAITERS[((addr >> 2).wrapping_mul(0x9e37_79b9) >> 24) & 255]
}

fn local_wait(addr: usize, expected: u32, timeout: Option<Duration>) -> bool {
    let bucket = local_bucket(addr);
    bucket.fetch_add(1, Ordering::SeqCst);
    let (ms, short) = millis(timeout);
    // SAFETY: `addr` is a live, 4-byte aligned word (the first half of a 64-bit one for the
    // `_low` variants) and `expected` a local 4-byte value to compare it with.
    let ok = unsafe {
        WaitOnAddress(
            addr as *const c_void,
            &expected as *const u32 as *const c_void,
            4,
            ms,
        )
    };
    bucket.fetch_sub(1, Ordering::SeqCst);
    // (FALSE is a timeout: the only failure WaitOnAddress reports for valid arguments)
    ok != 0 || short || timeout.is_none()
}

fn local_wake(addr: usize, n: u32) -> usize {
    let bucket = local_bucket(addr);
    fence(Ordering::SeqCst);
    let waiting = bucket.load(Ordering::SeqCst);
    if waiting == 0 {
        return 0;
    }
    // SAFETY: wakes threads waiting on `addr` in this process; any address is allowed.
    unsafe {
        if n == 1 {
            WakeByAddressSingle(addr as *const c_void)
        } else {
            WakeByAddressAll(addr as *const c_void)
        }
    }
    waiting.min(n as usize)
}

/// A place taken by [`take_place`]: its index and the generation it was taken with.
struct Taken {
    index: usize,
    generation: u32,
}

fn place(table: &Table, i: usize) -> &Place {
    &table.groups[i / SLOTS].places[i % SLOTS]
}

/// Take a free place for a waiter of `key`: in its group if one is free, else in the next
/// groups (raising the group's reach first). A place whose waiter died is reclaimed on the
/// way. `None` when all are taken.
fn take_place(table: &Table, key: (u64, u64)) -> Option<Taken> {
    let home = group_of(key);
    let me = identity();
    for distance in 0..GROUPS {
        let g = (home + distance) % GROUPS;
        if distance > 0 {
            table.groups[home]
                .reach
                .fetch_max(distance as u32, Ordering::SeqCst);
        }
        // a free place first; in a full group, one whose waiter died (a liveness check each)
        for reclaim in [false, true] {
            for (k, p) in table.groups[g].places.iter().enumerate() {
                let s = p.state.load(Ordering::Relaxed);
                let free = if reclaim {
                    let owner = p.owner.load(Ordering::Relaxed);
                    s & KIND != TAKEN && owner != me && !identity_alive(owner)
                } else {
                    s & KIND == FREE
                };
                if !free {
                    continue;
                }
                let generation = (s & !KIND).wrapping_add(GENERATION);
                if p.state
                    .compare_exchange(s, generation | TAKEN, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    p.owner.store(me, Ordering::Relaxed);
                    p.name.store(key.0, Ordering::Relaxed);
                    p.offset.store(key.1, Ordering::Relaxed);
                    return Some(Taken {
                        index: g * SLOTS + k,
                        generation,
                    });
                }
            }
        }
    }
    None
}

fn shared_wait(key: (u64, u64), same: impl Fn() -> bool, timeout: Option<Duration>) -> bool {
    let Some(table) = table() else {
        return poll_wait(same, timeout);
    };
    let Some(Taken { index, generation }) = take_place(table, key) else {
        tracing::warn!("every waiting place is taken: polling");
        return poll_wait(same, timeout);
    };
    let p = place(table, index);
    let Some(ev) = event(index) else {
        p.state.store(generation | FREE, Ordering::Release);
        return poll_wait(same, timeout);
    };
    let waiting = generation | WAITING;
    p.state.store(waiting, Ordering::SeqCst);
    // Published before the comparison: a waker that changed the word before it finds us.
    fence(Ordering::SeqCst);
    if !same() {
        give_back(p, waiting, ev);
        return true;
    }
    let (ms, short) = millis(timeout);
    // SAFETY: waits on a live event handle of this process.
    let r = unsafe { WaitForSingleObject(ev, ms) };
    if r == WAIT_OBJECT_0 {
        // woken (or a late signal meant for a previous waiter here: a spurious wake-up)
        p.state.store(generation | FREE, Ordering::Release);
        return true;
    }
    // timed out (or the wait failed, which a live handle does not): unless a waker turned
    // the place just now, in which case the wake is ours
    give_back(p, waiting, ev) || short || timeout.is_none()
}

/// Take back a place we wait in without sleeping (more). Whether a waker had turned it.
fn give_back(p: &Place, waiting: u32, ev: HANDLE) -> bool {
    let generation = waiting & !KIND;
    match p.state.compare_exchange(
        waiting,
        generation | FREE,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => false,
        Err(_) => {
            // WOKEN: its waker sets the event now if it has not yet; take that signal if it
            // is there, so it does not wake the place's next waiter for nothing
            // SAFETY: a zero-timeout wait on a live event handle of this process.
            unsafe { WaitForSingleObject(ev, 0) };
            p.state.store(generation | FREE, Ordering::Release);
            true
        }
    }
}

fn shared_wake(key: (u64, u64), n: u32) -> usize {
    let Some(table) = table() else {
        return 0;
    };
    if n == 0 {
        return 0;
    }
    // The word was changed before: ordered before the scan, as the waiter's publishing is
    // before its comparison.
    fence(Ordering::SeqCst);
    let home = group_of(key);
    let reach = table.groups[home].reach.load(Ordering::SeqCst) as usize;
    // The matching waiters, each with the state it was seen in.
    let mut found: Vec<(usize, u32)> = Vec::new();
    for distance in 0..=reach.min(GROUPS - 1) {
        let g = (home + distance) % GROUPS;
        for (k, p) in table.groups[g].places.iter().enumerate() {
            let s = p.state.load(Ordering::SeqCst);
            if s & KIND == WAITING
                && p.name.load(Ordering::Relaxed) == key.0
                && p.offset.load(Ordering::Relaxed) == key.1
            {
                found.push((g * SLOTS + k, s));
            }
        }
    }
    if found.is_empty() {
        return 0;
    }
    // With more waiters than wakes, a waiter that died asleep must not take a wake from a
    // live one: then only live ones are woken (a liveness check each, of other processes).
    let choose = found.len() > n as usize;
    let me = identity();
    let mut woken = 0;
    for (i, s) in found {
        if woken == n as usize {
            break;
        }
        let p = place(table, i);
        if choose {
            let owner = p.owner.load(Ordering::Relaxed);
            if owner != me && !identity_alive(owner) {
                continue;
            }
        }
        let turned = (s & !KIND) | WOKEN;
        if p.state
            .compare_exchange(s, turned, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            // it timed out, or another waker turned it
            continue;
        }
        woken += 1;
        if let Some(ev) = event(i) {
            // SAFETY: sets a live event handle of this process.
            unsafe { SetEvent(ev) };
        }
    }
    woken
}

/// Without a table or a place (never in practice): sleep in short steps while the word holds.
fn poll_wait(same: impl Fn() -> bool, timeout: Option<Duration>) -> bool {
    const STEP: Duration = Duration::from_micros(500);
    let start = Instant::now();
    loop {
        if !same() {
            return true;
        }
        let left = match timeout {
            Some(t) => match t.checked_sub(start.elapsed()) {
                Some(l) if !l.is_zero() => l,
                _ => return false,
            },
            None => STEP,
        };
        std::thread::sleep(left.min(STEP));
        if timeout.is_none() {
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hash_the_same_way_everywhere() {
        // pinned: processes of other builds share the table (change TABLE_NAME with it)
        assert_eq!(hash(b"wnsm_a"), 0x6062_2b24_da80_9286);
        assert_ne!(hash(b"wnsm_a"), hash(b"wnsm_b"));
        assert!(group_of((hash(b"x"), 8)) < GROUPS);
    }

    #[test]
    fn a_word_in_a_segment_sleeps_and_wakes_through_the_table() {
        let seg = crate::Segment::new(64).unwrap();
        // SAFETY: the segment is page-aligned, 64 bytes, and accessed atomically only here.
        let word: &'static AtomicU32 = unsafe { &*(seg.as_ptr() as *const AtomicU32) };
        assert!(key_of(word.as_ptr() as usize).is_some(), "a shared word");
        assert!(!futex_wait(word, 0, Some(Duration::from_millis(20))));
        assert!(futex_wait(word, 1, Some(Duration::from_millis(20))));
        assert_eq!(futex_wake(word, 1), 0, "nobody waits");
        let h = std::thread::spawn(move || {
            let t = Instant::now();
            while word.load(Ordering::SeqCst) == 0 && t.elapsed() < Duration::from_secs(20) {
                futex_wait(word, 0, Some(Duration::from_secs(20)));
            }
            word.load(Ordering::SeqCst)
        });
        // Wake with the word unchanged until the wake finds the thread asleep (it goes back to
        // sleep: the word is still 0), so the count is checked whenever the thread starts;
        // then change the word and wake it for good.
        let t = Instant::now();
        let mut woken = 0;
        while woken == 0 && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(5));
            woken = futex_wake(word, 1);
        }
        assert_eq!(woken, 1);
        word.store(1, Ordering::SeqCst);
        assert!(futex_wake(word, 1) <= 1);
        assert_eq!(h.join().unwrap(), 1);
        drop(seg);
    }

    #[test]
    fn a_waiter_that_died_asleep_never_takes_a_live_waiters_wake() {
        let seg = crate::Segment::new(64).unwrap();
        // SAFETY: as in the test above.
        let word: &'static AtomicU32 = unsafe { &*(seg.as_ptr().add(8) as *const AtomicU32) };
        let key = key_of(word.as_ptr() as usize).unwrap();
        let table = table().unwrap();
        // a place left asleep by a process that is gone (no process has a pid this high)
        let dead = take_place(table, key).unwrap();
        let p = place(table, dead.index);
        p.owner
            .store((7 << 32) | ((1 << 30) + 4), Ordering::Relaxed);
        p.state.store(dead.generation | WAITING, Ordering::SeqCst);
        let asleep = || {
            table
                .groups
                .iter()
                .flat_map(|g| g.places.iter())
                .filter(|p| {
                    p.state.load(Ordering::SeqCst) & KIND == WAITING
                        && (
                            p.name.load(Ordering::Relaxed),
                            p.offset.load(Ordering::Relaxed),
                        ) == key
                })
                .count()
        };
        let h = std::thread::spawn(move || futex_wait(word, 0, Some(Duration::from_secs(20))));
        let t = Instant::now();
        while asleep() < 2 {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "the waiter never slept"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        word.store(1, Ordering::SeqCst);
        // two candidates, one wake: the live one gets it
        assert_eq!(futex_wake(word, 1), 1);
        assert!(h.join().unwrap(), "the live waiter timed out");
        // alone, the dead one is woken (and counted: one needless wake), then nobody is left
        assert_eq!(futex_wake(word, 1), 1);
        assert_eq!(futex_wake(word, 1), 0);
        p.state.store(dead.generation | FREE, Ordering::SeqCst);
        drop(seg);
    }

    #[test]
    fn millis_round_up_and_cap() {
        assert_eq!(millis(None), (INFINITE, false));
        assert_eq!(millis(Some(Duration::from_micros(1))), (1, false));
        assert_eq!(millis(Some(Duration::from_millis(3))), (3, false));
        assert_eq!(millis(Some(Duration::ZERO)), (0, false));
        assert_eq!(
            millis(Some(Duration::from_secs(u64::MAX))),
            (INFINITE - 1, true)
        );
    }
}
