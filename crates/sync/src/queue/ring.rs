//! The byte ring under every queue.
//!
//! Shared memory: a header page (counters, two locks, wait words), then `capacity` bytes used
//! as a ring of frames `[len: u64 LE][len bytes]`. `tail` counts bytes ever published and
//! `head` bytes ever consumed, so `tail - head` is what is in the ring. Producers serialize on
//! `plock` (a frame is written whole, in order), consumers on `clock` (a frame is read whole by
//! one consumer); a producer and a consumer work at once, like the two ends of a pipe. A frame
//! that fits is written once there is room for all of it; a larger one is streamed through.
//!
//! Waiting: spin a little, then sleep on a sequence word (`data_seq` for consumers,
//! `space_seq` for producers, `slot_seq` for `maxsize`, `done_seq` for `join`) with a waiters
//! count, so a wake-up costs a system call only when someone sleeps.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_shm::{futex, process_alive, LockResult, RawMutex, Segment};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::QueueError;

/// Offset of the ring in the segment (the header has the first page).
const HEADER: usize = 4096;
const SPINS: u32 = 200;
/// Sleepers wake at least this often to see whether the process they wait for died.
const SLICE: Duration = Duration::from_millis(50);

#[repr(C)]
struct Header {
    plock: AtomicU32,
    clock: AtomicU32,
    items: AtomicU32,
    maxsize: AtomicU32,
    closed: AtomicU32,
    broken: AtomicU32,
    data_seq: AtomicU32,
    data_waiters: AtomicU32,
    space_seq: AtomicU32,
    space_waiters: AtomicU32,
    slot_seq: AtomicU32,
    slot_waiters: AtomicU32,
    unfinished: AtomicU32,
    done_seq: AtomicU32,
    done_waiters: AtomicU32,
    _pad: AtomicU32,
    capacity: AtomicU64,
    head: AtomicU64,
    tail: AtomicU64,
    /// While a producer writes a frame: where it ends (0 otherwise).
    write_end: AtomicU64,
    /// While a consumer reads a frame: where it ends (0 otherwise).
    read_end: AtomicU64,
}

#[derive(Clone)]
pub(super) struct Ring {
    seg: Arc<Segment>,
}

struct Unlock<'a>(&'a RawMutex);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn left(deadline: Option<Instant>) -> Option<Option<Duration>> {
    match deadline {
        None => Some(None),
        Some(d) => {
            let now = Instant::now();
            (now < d).then(|| Some(d - now))
        }
    }
}

/// Sleep on `seq` (which was `seen`) for at most `left` and one slice.
fn sleep_on(seq: &AtomicU32, waiters: &AtomicU32, seen: u32, left: Option<Duration>) {
    waiters.fetch_add(1, Ordering::SeqCst);
    futex::wait(seq, seen, Some(left.map_or(SLICE, |l| l.min(SLICE))));
    waiters.fetch_sub(1, Ordering::SeqCst);
}

fn bump(seq: &AtomicU32, waiters: &AtomicU32) {
    seq.fetch_add(1, Ordering::SeqCst);
    if waiters.load(Ordering::SeqCst) > 0 {
        futex::wake_all(seq);
    }
}

impl Ring {
    pub(super) fn new(maxsize: u32, capacity: usize) -> Result<Ring, QueueError> {
        if capacity < 4096 {
            return Err(QueueError::Setup(
                "a queue's ring needs at least 4 KiB".into(),
            ));
        }
        let seg = Segment::new(HEADER + capacity).map_err(|e| QueueError::Setup(e.to_string()))?;
        let r = Ring { seg: Arc::new(seg) };
        r.h().maxsize.store(maxsize, Ordering::Relaxed);
        r.h().capacity.store(capacity as u64, Ordering::Release);
        Ok(r)
    }

    fn h(&self) -> &Header {
        // SAFETY: the segment is page-aligned and longer than HEADER ≥ size_of::<Header>();
        // the header is atomics only (valid for any bytes) and lives while `self` does.
        unsafe { &*(self.seg.as_ptr() as *const Header) }
    }

    fn cap(&self) -> u64 {
        self.h().capacity.load(Ordering::Relaxed)
    }

    fn lock_of(word: &AtomicU32) -> &RawMutex {
        // SAFETY: an aligned word of the header, used only as a mutex.
        unsafe { RawMutex::from_ptr(word as *const AtomicU32 as *mut u8) }
    }

    pub(super) fn items(&self) -> u32 {
        self.h().items.load(Ordering::SeqCst)
    }

    pub(super) fn maxsize(&self) -> u32 {
        self.h().maxsize.load(Ordering::Relaxed)
    }

    pub(super) fn is_closed(&self) -> bool {
        self.h().closed.load(Ordering::SeqCst) != 0
    }

    fn check_broken(&self) -> Result<(), QueueError> {
        if self.h().broken.load(Ordering::SeqCst) != 0 {
            return Err(QueueError::Broken(
                "a producer died while writing a message".into(),
            ));
        }
        Ok(())
    }

    fn wake_everyone(&self) {
        let h = self.h();
        for (s, w) in [
            (&h.data_seq, &h.data_waiters),
            (&h.space_seq, &h.space_waiters),
            (&h.slot_seq, &h.slot_waiters),
            (&h.done_seq, &h.done_waiters),
        ] {
            bump(s, w);
        }
    }

    pub(super) fn close(&self) {
        self.h().closed.store(1, Ordering::SeqCst);
        self.wake_everyone();
    }

    /// Copy `src` into the ring at absolute position `pos`.
    fn copy_in(&self, pos: u64, src: &[u8]) {
        let cap = self.cap();
        let at = (pos % cap) as usize;
        let first = src.len().min(cap as usize - at);
        // SAFETY: `at + first ≤ cap` and `src.len() - first ≤ cap - ...` stay inside the ring
        // (HEADER..HEADER+cap of the segment); this range is reserved for us (between tail and
        // head + cap, under the producer lock), so no one else writes it.
        unsafe {
            let base = self.seg.as_ptr().add(HEADER);
            std::ptr::copy_nonoverlapping(src.as_ptr(), base.add(at), first);
            std::ptr::copy_nonoverlapping(src.as_ptr().add(first), base, src.len() - first);
        }
    }

    /// Copy from the ring at absolute position `pos` into `dst`.
    fn copy_out(&self, pos: u64, dst: &mut [u8]) {
        let cap = self.cap();
        let at = (pos % cap) as usize;
        let first = dst.len().min(cap as usize - at);
        // SAFETY: as in `copy_in`; the range is published (below tail) and not yet consumed,
        // under the consumer lock, so no one writes it meanwhile.
        unsafe {
            let base = self.seg.as_ptr().add(HEADER);
            std::ptr::copy_nonoverlapping(base.add(at), dst.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(base, dst.as_mut_ptr().add(first), dst.len() - first);
        }
    }

    /// Append one frame. `block: false` fails at once where it would wait.
    pub(super) fn push(
        &self,
        msg: &[u8],
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<(), QueueError> {
        let h = self.h();
        let deadline = if block {
            timeout.map(|t| Instant::now() + t)
        } else {
            Some(Instant::now())
        };
        self.check_broken()?;
        if self.is_closed() {
            return Err(QueueError::Closed);
        }
        // 1. an item slot (maxsize)
        let max = h.maxsize.load(Ordering::Relaxed);
        let mut spins = 0;
        loop {
            let seen = h.slot_seq.load(Ordering::SeqCst);
            let n = h.items.load(Ordering::SeqCst);
            if max == 0 || n < max {
                if h.items
                    .compare_exchange(n, n + 1, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
                {
                    break;
                }
                continue;
            }
            if self.is_closed() {
                return Err(QueueError::Closed);
            }
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let Some(l) = left(deadline) else {
                return Err(QueueError::Full);
            };
            sleep_on(&h.slot_seq, &h.slot_waiters, seen, l);
        }
        let give_back = || {
            h.items.fetch_sub(1, Ordering::SeqCst);
            bump(&h.slot_seq, &h.slot_waiters);
        };
        // 2. the producer lock
        let plock = Self::lock_of(&h.plock);
        let got = match left(deadline) {
            Some(l) => plock.lock(l),
            None => plock.try_lock(),
        };
        match got {
            LockResult::TimedOut => {
                give_back();
                return Err(QueueError::Full);
            }
            LockResult::OwnerDied if h.write_end.load(Ordering::SeqCst) != 0 => {
                h.broken.store(1, Ordering::SeqCst);
                let _ = plock.unlock();
                give_back();
                self.wake_everyone();
                return self.check_broken();
            }
            _ => {}
        }
        let _unlock = Unlock(plock);
        // 3. the frame
        let cap = self.cap();
        let frame = 8 + msg.len() as u64;
        let tail = h.tail.load(Ordering::Relaxed);
        if frame <= cap {
            // Wait for room for the whole frame, then write and publish it at once.
            if let Err(e) = self.wait_space(tail, frame, deadline) {
                give_back();
                return Err(e);
            }
            self.copy_in(tail, &(msg.len() as u64).to_le_bytes());
            self.copy_in(tail + 8, msg);
            // (counted before anyone can take it, so `task_done` never runs ahead)
            h.unfinished.fetch_add(1, Ordering::SeqCst);
            h.tail.store(tail + frame, Ordering::SeqCst);
        } else {
            // Larger than the ring: stream it; once started it must be finished (the timeout
            // applied to getting started only).
            if let Err(e) = self.wait_space(tail, 8, deadline) {
                give_back();
                return Err(e);
            }
            h.write_end.store(tail + frame, Ordering::SeqCst);
            h.unfinished.fetch_add(1, Ordering::SeqCst);
            self.copy_in(tail, &(msg.len() as u64).to_le_bytes());
            let mut pos = tail + 8;
            h.tail.store(pos, Ordering::SeqCst);
            bump(&h.data_seq, &h.data_waiters);
            let mut rest = msg;
            while !rest.is_empty() {
                let free = self.wait_space(pos, 1, None)?;
                let n = (free as usize).min(rest.len());
                self.copy_in(pos, &rest[..n]);
                pos += n as u64;
                rest = &rest[n..];
                h.tail.store(pos, Ordering::SeqCst);
                bump(&h.data_seq, &h.data_waiters);
            }
            h.write_end.store(0, Ordering::SeqCst);
        }
        bump(&h.data_seq, &h.data_waiters);
        Ok(())
    }

    /// Wait until `need` bytes are free after `pos`; the free bytes.
    fn wait_space(
        &self,
        pos: u64,
        need: u64,
        deadline: Option<Instant>,
    ) -> Result<u64, QueueError> {
        let h = self.h();
        let cap = self.cap();
        let mut spins = 0;
        loop {
            let seen = h.space_seq.load(Ordering::SeqCst);
            let free = cap - (pos - h.head.load(Ordering::SeqCst));
            if free >= need {
                return Ok(free);
            }
            self.check_broken()?;
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let Some(l) = left(deadline) else {
                return Err(QueueError::Full);
            };
            sleep_on(&h.space_seq, &h.space_waiters, seen, l);
        }
    }

    /// Wait until the ring holds `need` bytes after `pos` (published by producers).
    /// `deadline: None` waits as long as a producer is alive to write them.
    fn wait_data(
        &self,
        pos: u64,
        need: u64,
        deadline: Option<Instant>,
        idle_ok: bool,
    ) -> Result<u64, QueueError> {
        let h = self.h();
        let mut spins = 0;
        loop {
            let seen = h.data_seq.load(Ordering::SeqCst);
            let have = h.tail.load(Ordering::SeqCst) - pos;
            if have >= need {
                return Ok(have);
            }
            self.check_broken()?;
            if idle_ok && self.is_closed() && h.items.load(Ordering::SeqCst) == 0 {
                return Err(QueueError::Closed);
            }
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let Some(l) = left(deadline) else {
                return Err(QueueError::Empty);
            };
            // A producer that died half-way through a frame will never finish it.
            let plock = Self::lock_of(&h.plock);
            if let Some(pid) = plock.owner() {
                if h.write_end.load(Ordering::SeqCst) != 0 && !process_alive(pid) {
                    h.broken.store(1, Ordering::SeqCst);
                    self.wake_everyone();
                    return self.check_broken().map(|_| 0);
                }
            }
            sleep_on(&h.data_seq, &h.data_waiters, seen, l);
        }
    }

    /// Take one frame. `block: false` fails at once where it would wait.
    pub(super) fn pop(
        &self,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, QueueError> {
        let h = self.h();
        let deadline = if block {
            timeout.map(|t| Instant::now() + t)
        } else {
            Some(Instant::now())
        };
        self.check_broken()?;
        let clock = Self::lock_of(&h.clock);
        let got = match left(deadline) {
            Some(l) => clock.lock(l),
            None => clock.try_lock(),
        };
        if got == LockResult::TimedOut {
            return Err(QueueError::Empty);
        }
        let _unlock = Unlock(clock);
        if got == LockResult::OwnerDied {
            self.recover_reader()?;
        }
        let head = h.head.load(Ordering::Relaxed);
        self.wait_data(head, 8, deadline, true)?;
        let mut len = [0u8; 8];
        self.copy_out(head, &mut len);
        let len = u64::from_le_bytes(len);
        let end = head + 8 + len;
        h.read_end.store(end, Ordering::SeqCst);
        let mut out = vec![0u8; len as usize];
        let mut pos = head + 8;
        let mut filled = 0usize;
        // The frame has begun: read it to its end, however long its producer takes.
        while filled < out.len() {
            let have = self.wait_data(pos, 1, None, false)?;
            let n = (have as usize).min(out.len() - filled);
            self.copy_out(pos, &mut out[filled..filled + n]);
            filled += n;
            pos += n as u64;
            h.head.store(pos, Ordering::SeqCst);
            bump(&h.space_seq, &h.space_waiters);
        }
        h.head.store(end, Ordering::SeqCst);
        h.read_end.store(0, Ordering::SeqCst);
        h.items.fetch_sub(1, Ordering::SeqCst);
        bump(&h.space_seq, &h.space_waiters);
        bump(&h.slot_seq, &h.slot_waiters);
        Ok(out)
    }

    /// The previous consumer died holding the consumer lock. If it was in the middle of a
    /// frame, that frame is lost with it: skip to its end once it is all there.
    fn recover_reader(&self) -> Result<(), QueueError> {
        let h = self.h();
        let end = h.read_end.load(Ordering::SeqCst);
        if end == 0 {
            return Ok(());
        }
        tracing::warn!("a queue consumer died while reading a message; the message is lost");
        let head = h.head.load(Ordering::SeqCst);
        self.wait_data(head, end - head, None, false)?;
        h.head.store(end, Ordering::SeqCst);
        h.read_end.store(0, Ordering::SeqCst);
        h.items.fetch_sub(1, Ordering::SeqCst);
        bump(&h.space_seq, &h.space_waiters);
        bump(&h.slot_seq, &h.slot_waiters);
        Ok(())
    }

    pub(super) fn task_done(&self) -> Result<(), QueueError> {
        let h = self.h();
        let prev = h
            .unfinished
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| u.checked_sub(1))
            .map_err(|_| QueueError::TooManyTaskDone)?;
        if prev == 1 {
            bump(&h.done_seq, &h.done_waiters);
        }
        Ok(())
    }

    pub(super) fn join(&self, timeout: Option<Duration>) -> bool {
        let h = self.h();
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let seen = h.done_seq.load(Ordering::SeqCst);
            if h.unfinished.load(Ordering::SeqCst) == 0 {
                return true;
            }
            let Some(l) = left(deadline) else {
                return false;
            };
            sleep_on(&h.done_seq, &h.done_waiters, seen, l);
        }
    }
}

impl Serialize for Ring {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.seg.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Ring {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let seg = Segment::deserialize(d)?;
        if seg.len() <= HEADER {
            return Err(serde::de::Error::custom("queue segment too small"));
        }
        let r = Ring { seg: Arc::new(seg) };
        if r.cap() as usize != r.seg.len() - HEADER {
            return Err(serde::de::Error::custom("queue segment of the wrong size"));
        }
        Ok(r)
    }
}
