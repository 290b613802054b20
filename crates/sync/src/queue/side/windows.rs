//! The side channel on Windows: one named pagefile section per item.
//!
//! Windows cannot leave a handle in flight on a socket, as Unix leaves a descriptor, so the
//! item's memory is found by name: `Local\mpq_` and the 16 hex digits of the marker's token,
//! a random number the producer picked (again, if the name was taken). A section lives while
//! some process has a handle to it or a view of it, so someone must hold it from `put` until
//! a consumer has it:
//!
//! * the producer, in this process's **keeper**, from `try_send` on. A consumer that read the
//!   item marks it taken in its header; the keeper closes what is taken (at the next
//!   `try_send`, and from a thread that looks every 20 ms while it holds anything).
//! * when the producer exits first (`exit`, or the end of `main`: the C runtime's exit
//!   handlers), its **parent**: the keeper duplicates each handle into the parent process
//!   and writes there who holds it (the parent's identity and the handle's value) in the
//!   item's header. The consumer that takes the item closes that handle in its holder
//!   (`DuplicateHandle` with `DUPLICATE_CLOSE_SOURCE`), after checking by creation time that
//!   the holder is the same process. So `join` before `get` finds the item, as on Unix.
//!
//! What differs from Unix: an item whose producer is *killed* (or exits by `ExitProcess`
//! without the C runtime's handlers) before a consumer opened it is lost (its marker is
//! skipped: `find` finds no section); an item nobody ever takes is held until its producer,
//! or the parent it went to, exits.
//!
//! The header's `state` decides who frees an item, once: `OPEN` (the producer holds it), `TAKEN`
//! (a consumer has read it), `HANDING` (the producer is exiting and duplicating it into its
//! parent: a consumer waits the few microseconds that lasts, at most a second), `HANDED` (the
//! parent holds it). Every change is a compare-and-swap, so a consumer and an exiting
//! producer that race agree on which of them closes the parent's duplicate.

use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use windows_sys::Win32::Foundation::{
    CloseHandle, DuplicateHandle, GetLastError, DUPLICATE_CLOSE_SOURCE, DUPLICATE_SAME_ACCESS,
    ERROR_ALREADY_EXISTS, ERROR_FILE_NOT_FOUND, ERROR_INVALID_HANDLE, FILETIME, HANDLE,
    INVALID_HANDLE_VALUE, WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, PROCESSENTRY32W, TH32CS_SNAPPROCESS,
};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, OpenFileMappingW, UnmapViewOfFile, VirtualQuery,
    FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION, MEMORY_MAPPED_VIEW_ADDRESS,
    PAGE_READWRITE,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetCurrentProcessId, GetProcessTimes, OpenProcess, WaitForSingleObject,
    PROCESS_DUP_HANDLE, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE,
};

use crate::queue::QueueError;

/// The item's bytes start after this header (one cache line).
const HDR: usize = 64;

const OPEN: u64 = 0;
const TAKEN: u64 = 1;
const HANDING: u64 = 2;
const HANDED: u64 = 3;

/// The first bytes of an item's section.
#[repr(C)]
struct Header {
    /// `OPEN`, `TAKEN`, `HANDING` or `HANDED` (see the module's text).
    state: AtomicU64,
    /// The side number the producer sent it as (checked against the marker's).
    seq: AtomicU64,
    /// The item's length in bytes.
    len: AtomicU64,
    /// While `HANDED`: who holds the handle (its process identity: pid and creation tag).
    holder: AtomicU64,
    /// While `HANDED`: the handle's value in that process.
    handle: AtomicU64,
}

/// How many items one process may have beside the ring at once (`try_send` says "full"
/// past that, and `put` waits for consumers as for a full ring).
const MAX_KEPT: usize = 1024;

/// How often the keeper's thread looks for taken items while it holds some.
const SWEEP_EVERY: Duration = Duration::from_millis(20);

/// How long a consumer waits for an exiting producer to finish handing an item to its parent
/// before it gives up on closing the parent's copy (which then lives until the parent exits).
const HANDING_WAIT: Duration = Duration::from_secs(1);

fn os_error(op: &'static str) -> impl FnOnce(io::Error) -> QueueError {
    move |e| QueueError::system(op, e)
}

/// `s` as a NUL-terminated UTF-16 string.
fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain([0]).collect()
}

fn section_name(token: u64) -> String {
    format!("Local\\mpq_{token:016x}")
}

/// A whole section mapped read-write, with its handle.
struct Section {
    handle: OwnedHandle,
    ptr: *mut u8,
    /// The view's size (whole pages when opened by name).
    size: usize,
}

// SAFETY: the view is shared memory owned by this value; it is only reached through atomics
// (the header) or read after the producer wrote it whole (the bytes), from any thread.
unsafe impl Send for Section {}
// SAFETY: as above.
unsafe impl Sync for Section {}

impl Section {
    fn header(&self) -> &Header {
        // SAFETY: every section is at least HDR bytes (checked when opened), page-aligned, and
        // the header is all atomics.
        unsafe { &*self.ptr.cast::<Header>() }
    }

    /// Map all of the section behind `handle`.
    fn map(handle: OwnedHandle, size: usize) -> io::Result<Section> {
        // SAFETY: maps a section handle we own, read-write, from offset 0 (0: all of it); the
        // OS checks the length against the section's size.
        let addr = unsafe {
            MapViewOfFile(
                handle.as_raw_handle(),
                FILE_MAP_READ | FILE_MAP_WRITE,
                0,
                0,
                size,
            )
        };
        if addr.Value.is_null() {
            return Err(io::Error::last_os_error());
        }
        let ptr = addr.Value.cast::<u8>();
        let size = if size == 0 {
            // SAFETY: an all-zero MEMORY_BASIC_INFORMATION is a valid out-buffer.
            let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
            // SAFETY: queries an address of our own live view into a buffer of its size.
            let n = unsafe {
                VirtualQuery(
                    ptr as *const _,
                    &mut info,
                    std::mem::size_of::<MEMORY_BASIC_INFORMATION>(),
                )
            };
            if n == 0 {
                let e = io::Error::last_os_error();
                unmap(ptr);
                return Err(e);
            }
            info.RegionSize
        } else {
            size
        };
        Ok(Section { handle, ptr, size })
    }
}

impl Drop for Section {
    fn drop(&mut self) {
        unmap(self.ptr);
    }
}

fn unmap(ptr: *mut u8) {
    // SAFETY: unmaps a view mapped by `Section::map`, once; nothing refers to it any more.
    unsafe { UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS { Value: ptr.cast() }) };
}

/// A random token whose section name is free: `Ok(None)` if taken.
fn create_section(token: u64, size: usize) -> io::Result<Option<OwnedHandle>> {
    let w = wide(&section_name(token));
    // SAFETY: a section backed by the paging file, default security, a NUL-terminated name
    // that lives across the call.
    let h = unsafe {
        CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            std::ptr::null(),
            PAGE_READWRITE,
            (size as u64 >> 32) as u32,
            size as u32,
            w.as_ptr(),
        )
    };
    // SAFETY: no preconditions (read before any other call can overwrite it).
    let err = unsafe { GetLastError() };
    if h.is_null() {
        if err == ERROR_INVALID_HANDLE {
            return Ok(None); // a kernel object of another type has the name
        }
        return Err(io::Error::from_raw_os_error(err as i32));
    }
    // SAFETY: a fresh handle owned by us.
    let h = unsafe { OwnedHandle::from_raw_handle(h) };
    Ok((err != ERROR_ALREADY_EXISTS).then_some(h))
}

fn random_token() -> io::Result<u64> {
    let mut r = [0u8; 8];
    getrandom::getrandom(&mut r).map_err(io::Error::from)?;
    Ok(u64::from_le_bytes(r))
}

/// An item's bytes in their own named section, ready to be sent.
pub(in crate::queue) struct SideItem {
    section: Arc<Section>,
    token: u64,
}

impl SideItem {
    /// Copy the concatenation of `parts` (`len` bytes) into a new section.
    pub(in crate::queue) fn new(parts: &[&[u8]], len: u64) -> Result<SideItem, QueueError> {
        let size = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(HDR))
            .ok_or_else(|| {
                QueueError::system(
                    "create a queue item's memory",
                    io::ErrorKind::OutOfMemory.into(),
                )
            })?;
        let op = "create a queue item's memory";
        let (token, handle) = loop {
            let token = random_token().map_err(os_error(op))?;
            if let Some(h) = create_section(token, size).map_err(os_error(op))? {
                break (token, h);
            }
        };
        let section = Section::map(handle, size).map_err(os_error(op))?;
        section.header().len.store(len, Ordering::Relaxed);
        // SAFETY: the view has `size` = HDR + len writable bytes, which nobody else has seen
        // yet (the name is not published before `try_send`).
        unsafe {
            let mut at = section.ptr.add(HDR);
            for part in parts {
                std::ptr::copy_nonoverlapping(part.as_ptr(), at, part.len());
                at = at.add(part.len());
            }
        }
        Ok(SideItem {
            section: Arc::new(section),
            token,
        })
    }

    /// What the marker carries beside the number: the section's name.
    pub(in crate::queue) fn token(&self) -> u64 {
        self.token
    }
}

/// The sections this process produced that no consumer has taken yet.
static KEPT: Mutex<Vec<Arc<Section>>> = Mutex::new(Vec::new());

/// Start the keeper's thread and exit handler, once per process.
static KEEPER: Once = Once::new();

/// The keeper's thread, to wake when the list stops being empty.
static SWEEPER: Mutex<Option<std::thread::Thread>> = Mutex::new(None);

/// Close the sections a consumer has taken.
fn sweep(kept: &mut Vec<Arc<Section>>) {
    kept.retain(|s| s.header().state.load(Ordering::Acquire) != TAKEN);
}

fn sweeper() {
    loop {
        let empty = {
            let mut kept = KEPT.lock();
            sweep(&mut kept);
            kept.is_empty()
        };
        if empty {
            std::thread::park();
        } else {
            std::thread::sleep(SWEEP_EVERY);
        }
    }
}

fn start_keeper() {
    KEEPER.call_once(|| {
        match std::thread::Builder::new()
            .name("multiproc-queue-keeper".into())
            .spawn(sweeper)
        {
            Ok(h) => *SWEEPER.lock() = Some(h.thread().clone()),
            // (then items are swept at each `try_send` only)
            Err(e) => tracing::warn!("cannot start the queue keeper's thread: {e}"),
        }
        extern "C" {
            fn atexit(f: extern "C" fn()) -> i32;
        }
        // SAFETY: registers a plain function with the C runtime's exit handlers.
        unsafe { atexit(hand_to_parent) };
    });
}

/// The exit handler: hand what is still kept to the parent process.
extern "C" fn hand_to_parent() {
    // Never unwind into C.
    let _ = std::panic::catch_unwind(|| {
        // (bounded: a thread stopped while holding the list must not stall the exit)
        let Some(mut kept) = KEPT.try_lock_for(Duration::from_secs(1)) else {
            return;
        };
        sweep(&mut kept);
        if kept.is_empty() {
            return;
        }
        let Some((parent, holder)) = open_parent() else {
            tracing::warn!(
                items = kept.len(),
                "exiting with queue items no consumer has taken, and no parent to hold them: \
                 they are lost"
            );
            return;
        };
        let mut handed = 0;
        for s in kept.drain(..) {
            let h = s.header();
            if h.state
                .compare_exchange(OPEN, HANDING, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue; // taken meanwhile
            }
            let mut v: HANDLE = std::ptr::null_mut();
            // SAFETY: duplicates a section handle we own into the parent (opened with
            // PROCESS_DUP_HANDLE); `v` receives its value there.
            let ok = unsafe {
                DuplicateHandle(
                    GetCurrentProcess(),
                    s.handle.as_raw_handle(),
                    parent.as_raw_handle(),
                    &mut v,
                    0,
                    0,
                    DUPLICATE_SAME_ACCESS,
                )
            };
            if ok == 0 {
                tracing::warn!(
                    "cannot hand a queue item to the parent process: {}",
                    io::Error::last_os_error()
                );
                h.state.store(OPEN, Ordering::Release);
                continue;
            }
            h.holder.store(holder, Ordering::Relaxed);
            h.handle.store(v as usize as u64, Ordering::Relaxed);
            h.state.store(HANDED, Ordering::Release);
            handed += 1;
        }
        tracing::debug!(handed, "queue items handed to the parent process");
    });
}

/// A process's creation time, in 100 ns units since 1601.
fn created(h: HANDLE) -> Option<u64> {
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut c, mut e, mut k, mut u) = (zero, zero, zero, zero);
    // SAFETY: a process handle with query rights and four valid out-buffers.
    let ok = unsafe { GetProcessTimes(h, &mut c, &mut e, &mut k, &mut u) };
    (ok != 0).then(|| (u64::from(c.dwHighDateTime) << 32) | u64::from(c.dwLowDateTime))
}

/// The identity word of a process (as `multiproc_shm::ProcessId` makes it: the pid, and the
/// low 32 bits of its creation time, or 1 where they are 0).
fn identity(pid: u32, created: u64) -> u64 {
    (u64::from((created as u32).max(1)) << 32) | u64::from(pid)
}

/// This process's parent, opened to take handles, if it still runs and is older than us (a
/// process that got a dead parent's pid is younger), with its identity word.
fn open_parent() -> Option<(OwnedHandle, u64)> {
    // SAFETY: no preconditions.
    let me = unsafe { GetCurrentProcessId() };
    let ppid = parent_pid(me)?;
    // SAFETY: OpenProcess has no memory preconditions; the handle is not inheritable.
    let raw = unsafe {
        OpenProcess(
            PROCESS_DUP_HANDLE | PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE,
            0,
            ppid,
        )
    };
    if raw.is_null() {
        return None;
    }
    // SAFETY: a fresh handle owned by us.
    let parent = unsafe { OwnedHandle::from_raw_handle(raw) };
    // SAFETY: polls a process handle we own.
    if unsafe { WaitForSingleObject(parent.as_raw_handle(), 0) } != WAIT_TIMEOUT {
        return None; // it has exited
    }
    let theirs = created(parent.as_raw_handle())?;
    // SAFETY: the pseudo handle of this process needs no closing.
    let mine = created(unsafe { GetCurrentProcess() })?;
    (theirs <= mine).then(|| (parent, identity(ppid, theirs)))
}

/// The pid of the process that created `pid` (a process snapshot).
fn parent_pid(pid: u32) -> Option<u32> {
    // SAFETY: no memory preconditions.
    let snap = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
    if snap == INVALID_HANDLE_VALUE {
        return None;
    }
    // SAFETY: a fresh handle owned by us.
    let snap = unsafe { OwnedHandle::from_raw_handle(snap) };
    // SAFETY: PROCESSENTRY32W is plain data; dwSize is set as the API requires.
    let mut e: PROCESSENTRY32W = unsafe { std::mem::zeroed() };
    e.dwSize = std::mem::size_of::<PROCESSENTRY32W>() as u32;
    // SAFETY: walks the snapshot we own into `e`.
    let mut more = unsafe { Process32FirstW(snap.as_raw_handle(), &mut e) } != 0;
    while more {
        if e.th32ProcessID == pid {
            return Some(e.th32ParentProcessID);
        }
        // SAFETY: as above.
        more = unsafe { Process32NextW(snap.as_raw_handle(), &mut e) } != 0;
    }
    None
}

/// Close the handle `value` in the process `holder` (an identity word), if that process is
/// still the one that got it.
fn close_in_holder(holder: u64, value: u64) {
    let pid = holder as u32;
    let raw = value as usize as RawHandle;
    // SAFETY: no preconditions.
    if pid == unsafe { GetCurrentProcessId() } {
        // handed to us by a child that exited: the handle is ours, and nobody else knows it
        // SAFETY: closes a handle of this process that only the item's header names.
        unsafe { CloseHandle(raw) };
        return;
    }
    // SAFETY: OpenProcess has no memory preconditions; the handle is not inheritable.
    let p = unsafe {
        OpenProcess(
            PROCESS_DUP_HANDLE | PROCESS_QUERY_LIMITED_INFORMATION,
            0,
            pid,
        )
    };
    if p.is_null() {
        return; // gone: its handles went with it
    }
    // SAFETY: a fresh handle owned by us.
    let p = unsafe { OwnedHandle::from_raw_handle(p) };
    if created(p.as_raw_handle()).map(|c| identity(pid, c)) != Some(holder) {
        return; // another process got the pid
    }
    // SAFETY: closes the handle `raw` in the holder (DUPLICATE_CLOSE_SOURCE, no target): the
    // holder never uses it itself, the header named it for this.
    unsafe {
        DuplicateHandle(
            p.as_raw_handle(),
            raw,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
            0,
            DUPLICATE_CLOSE_SOURCE,
        )
    };
}

/// An item found by its consumer: its section, mapped.
pub(in crate::queue) struct Mapping {
    section: Section,
    len: usize,
}

impl Mapping {
    /// The item's bytes. The producer wrote them whole before it published the marker and
    /// never writes them again.
    pub(in crate::queue) fn bytes(&self) -> &[u8] {
        // SAFETY: `HDR + len` bytes lie in the view (checked in `find`) while `self` lives.
        unsafe { std::slice::from_raw_parts(self.section.ptr.add(HDR), self.len) }
    }
}

/// The side channel of one queue: nothing shared but the names in its markers.
#[derive(Serialize, Deserialize)]
pub(in crate::queue) struct Side {}

impl Side {
    pub(in crate::queue) fn new() -> io::Result<Side> {
        Ok(Side {})
    }

    /// Keep `item` (as number `seq`) in this process until a consumer takes it; `false` when
    /// this process has `MAX_KEPT` items out already.
    pub(in crate::queue) fn try_send(&self, seq: u64, item: &SideItem) -> Result<bool, QueueError> {
        item.section.header().seq.store(seq, Ordering::Release);
        let mut kept = KEPT.lock();
        sweep(&mut kept);
        if kept.len() >= MAX_KEPT {
            return Ok(false);
        }
        let was_empty = kept.is_empty();
        kept.push(item.section.clone());
        drop(kept);
        start_keeper();
        if was_empty {
            if let Some(t) = SWEEPER.lock().as_ref() {
                t.unpark();
            }
        }
        Ok(true)
    }

    /// The item numbered `seq` in the section `token` names, mapped; `None` if it is gone (its
    /// producer was killed before anyone took it, or a consumer that died had taken it).
    pub(in crate::queue) fn find(
        &self,
        seq: u64,
        token: u64,
    ) -> Result<Option<Mapping>, QueueError> {
        let name = wide(&section_name(token));
        // SAFETY: a NUL-terminated name that lives across the call; not inheritable.
        let h = unsafe { OpenFileMappingW(FILE_MAP_READ | FILE_MAP_WRITE, 0, name.as_ptr()) };
        if h.is_null() {
            let e = io::Error::last_os_error();
            return match e.raw_os_error().map(|c| c as u32) {
                Some(ERROR_FILE_NOT_FOUND | ERROR_INVALID_HANDLE) => Ok(None),
                _ => Err(QueueError::system("open a queue item's memory", e)),
            };
        }
        // SAFETY: a fresh handle owned by us.
        let h = unsafe { OwnedHandle::from_raw_handle(h) };
        let section = Section::map(h, 0).map_err(os_error("map a queue item"))?;
        if section.size < HDR {
            return Ok(None);
        }
        let hd = section.header();
        if hd.state.load(Ordering::Acquire) == TAKEN {
            return Ok(None); // a consumer that died had it
        }
        if hd.seq.load(Ordering::Acquire) != seq {
            tracing::warn!(
                seq,
                "a queue marker names an item of another number; skipped"
            );
            return Ok(None);
        }
        let len = hd.len.load(Ordering::Relaxed);
        match usize::try_from(len) {
            Ok(len) if len <= section.size - HDR => Ok(Some(Mapping { section, len })),
            _ => Err(QueueError::system(
                "map a queue item",
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a queue item's memory is shorter than the item",
                ),
            )),
        }
    }

    /// The item `find` returned has been read: mark it taken (its producer's keeper closes its
    /// handle), or close the handle its producer left with its parent.
    pub(in crate::queue) fn take(&self, map: Mapping) -> Result<(), QueueError> {
        let h = map.section.header();
        let start = Instant::now();
        loop {
            match h
                .state
                .compare_exchange(OPEN, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) | Err(TAKEN) => break,
                Err(HANDED) => {
                    let (holder, value) = (
                        h.holder.load(Ordering::Relaxed),
                        h.handle.load(Ordering::Relaxed),
                    );
                    if h.state
                        .compare_exchange(HANDED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        close_in_holder(holder, value);
                        break;
                    }
                }
                Err(_) => {
                    // HANDING: the producer is exiting and duplicating it into its parent
                    if start.elapsed() > HANDING_WAIT {
                        // (it died doing that: the parent's copy, if any, lives until the
                        // parent exits)
                        h.state.store(TAKEN, Ordering::Release);
                        break;
                    }
                    std::thread::yield_now();
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exists(token: u64) -> bool {
        let name = wide(&section_name(token));
        // SAFETY: as in `find`.
        let h = unsafe { OpenFileMappingW(FILE_MAP_READ, 0, name.as_ptr()) };
        if h.is_null() {
            return false;
        }
        // SAFETY: a fresh handle owned by us.
        drop(unsafe { OwnedHandle::from_raw_handle(h) });
        true
    }

    #[test]
    fn a_taken_item_is_freed_by_the_keeper_and_an_untaken_one_kept() {
        let side = Side::new().unwrap();
        let a = SideItem::new(&[b"abc", b"def"], 6).unwrap();
        let b = SideItem::new(&[b"xyz"], 3).unwrap();
        assert!(side.try_send(7, &a).unwrap());
        assert!(side.try_send(8, &b).unwrap());
        let (ta, tb) = (a.token(), b.token());
        drop((a, b));
        assert!(side.find(8, ta).unwrap().is_none(), "wrong number");
        let m = side.find(7, ta).unwrap().expect("kept");
        assert_eq!(m.bytes(), b"abcdef");
        side.take(m).unwrap();
        assert!(side.find(7, ta).unwrap().is_none(), "taken");
        let deadline = Instant::now() + Duration::from_secs(10);
        while exists(ta) {
            assert!(
                Instant::now() < deadline,
                "the keeper never freed a taken item"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(exists(tb), "an untaken item was freed");
        let m = side.find(8, tb).unwrap().expect("kept");
        assert_eq!(m.bytes(), b"xyz");
        side.take(m).unwrap();
    }

    #[test]
    fn a_missing_or_scribbled_item_is_none_not_a_crash() {
        let side = Side::new().unwrap();
        assert!(side.find(0, random_token().unwrap()).unwrap().is_none());
        let a = SideItem::new(&[&[1u8; 100]], 100).unwrap();
        assert!(side.try_send(1, &a).unwrap());
        // a length past the section is refused
        a.section.header().len.store(1 << 40, Ordering::Relaxed);
        assert!(side.find(1, a.token()).is_err());
        a.section.header().len.store(100, Ordering::Relaxed);
        let m = side.find(1, a.token()).unwrap().unwrap();
        side.take(m).unwrap();
    }
}
