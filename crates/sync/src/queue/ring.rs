//! The byte ring under every queue.
//!
//! Shared memory: a header page (counters, two locks, wait words; what producers write, what
//! consumers write and what sleepers write in separate cache lines), then `capacity` bytes used
//! as a ring of frames `[len: u64 LE][len bytes][padding to 8]` (a length of `u64::MAX` marks
//! the rest of the ring as skipped, so a frame that fits lies in one piece). `tail` counts bytes ever published and
//! `head` bytes ever consumed, so `tail - head` is what is in the ring. Producers serialize on
//! `plock` (a frame is written whole, in order), consumers on `clock` (a frame is read whole by
//! one consumer); a producer and a consumer work at once, like the two ends of a pipe. A frame
//! that fits is written once there is room for all of it; a larger one is streamed through.
//!
//! `puts` and `gets` count frames, so `qsize` is their difference; `maxsize` is checked under
//! the producer lock.
//!
//! Waiting: spin a little (50 µs, yielding the CPU now and then), then sleep on a sequence
//! word (`data_seq` for consumers, `space_seq` for producers, `slot_seq` for `maxsize`,
//! `done_seq` for `join`) with a waiters count, so a wake-up costs a system call only when
//! someone sleeps.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_shm::{futex, LockResult, Segment};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::QueueError;
use crate::word::{raw_mutex, Deadline, Held};

/// Offset of the ring in the segment (the header has the first page).
const HEADER: usize = 4096;
/// The largest message a queue carries (as a `Connection` by default): 1 GiB.
const MAX_MESSAGE: u64 = multiproc_pickle::frame::DEFAULT_MAX_MESSAGE;

/// A length that marks the rest of the ring as unused: the next frame starts at its beginning.
const SKIP: u64 = u64::MAX;

/// Bytes a frame of `len` payload bytes takes: its length word, the payload, padding to 8.
fn frame_len(len: u64) -> u64 {
    8 + len.div_ceil(8) * 8
}

/// Sleepers wake at least this often to see whether the process they wait for died.
const SLICE: Duration = Duration::from_millis(50);

/// One cache line (two, for adjacent-line prefetch): fields written by different sides live
/// in different lines, so a producer and a consumer do not steal each other's lines.
#[repr(C, align(128))]
struct Line<T>(T);

/// Written by producers (under `plock`).
#[repr(C)]
struct Prod {
    plock: AtomicU64,
    data_seq: AtomicU32,
    /// Bytes ever published.
    tail: AtomicU64,
    /// Frames ever published.
    puts: AtomicU64,
    /// While a producer writes a frame: where it ends (0 otherwise).
    write_end: AtomicU64,
    /// Items put and not yet marked done (`JoinableQueue`).
    unfinished: AtomicU32,
    /// `head` as producers last read it: free space is checked against it first, so the
    /// consumers' line is read only when the ring looks full.
    head_seen: AtomicU64,
}

/// Written by consumers (under `clock`).
#[repr(C)]
struct Cons {
    clock: AtomicU64,
    space_seq: AtomicU32,
    /// Bytes ever consumed.
    head: AtomicU64,
    /// Frames ever taken.
    gets: AtomicU64,
    /// While a consumer reads a frame: where it ends (0 otherwise).
    read_end: AtomicU64,
    slot_seq: AtomicU32,
    /// `tail` as consumers last read it (see `Prod::head_seen`).
    tail_seen: AtomicU64,
}

/// Written only by sleepers (rarely), read by wakers.
#[repr(C)]
struct Waiters {
    data: AtomicU32,
    space: AtomicU32,
    slot: AtomicU32,
    done: AtomicU32,
}

/// Set once, or rarely.
#[repr(C)]
struct Misc {
    capacity: AtomicU64,
    maxsize: AtomicU32,
    closed: AtomicU32,
    broken: AtomicU32,
    done_seq: AtomicU32,
}

#[repr(C)]
struct Header {
    p: Line<Prod>,
    c: Line<Cons>,
    w: Line<Waiters>,
    m: Line<Misc>,
}

#[derive(Clone)]
pub(super) struct Ring {
    seg: Arc<Segment>,
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

/// Spin up to `SPIN_FOR` until `ready()`: on a busy queue the other side delivers within that
/// time, so neither side sleeps. Whether `ready()` became true. The spinner yields its CPU
/// every 64 rounds: when the process it waits for shares that CPU (two vCPUs, three busy
/// threads), spinning on would only delay it (the pool's round trip went from ~3 µs to ~80 µs
/// in runs where the dispatcher spun on its worker's CPU).
fn spin_until(mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let mut n = 0u32;
    loop {
        if ready() {
            return true;
        }
        n += 1;
        if n % 64 == 0 {
            if start.elapsed() > SPIN_FOR {
                return false;
            }
            std::thread::yield_now();
        }
        std::hint::spin_loop();
    }
}

/// How long a waiter spins before it sleeps.
const SPIN_FOR: Duration = Duration::from_micros(50);

impl Ring {
    pub(super) fn new(maxsize: u32, capacity: usize) -> Result<Ring, QueueError> {
        if capacity < 4096 {
            return Err(QueueError::Setup(
                "a queue's ring needs at least 4 KiB".into(),
            ));
        }
        let capacity = capacity & !7; // frames are 8-byte aligned
        let seg = Segment::new(HEADER + capacity).map_err(|e| QueueError::Setup(e.to_string()))?;
        let r = Ring { seg: Arc::new(seg) };
        r.h().m.0.maxsize.store(maxsize, Ordering::Relaxed);
        r.h().m.0.capacity.store(capacity as u64, Ordering::Release);
        Ok(r)
    }

    fn h(&self) -> &Header {
        // SAFETY: the segment is page-aligned and longer than HEADER ≥ size_of::<Header>();
        // the header is atomics only (valid for any bytes) and lives while `self` does.
        unsafe { &*(self.seg.as_ptr() as *const Header) }
    }

    fn cap(&self) -> u64 {
        self.h().m.0.capacity.load(Ordering::Relaxed)
    }

    /// Items put and not yet taken.
    pub(super) fn items(&self) -> u32 {
        let h = self.h();
        let gets = h.c.0.gets.load(Ordering::SeqCst);
        let puts = h.p.0.puts.load(Ordering::SeqCst);
        puts.saturating_sub(gets) as u32
    }

    pub(super) fn maxsize(&self) -> u32 {
        self.h().m.0.maxsize.load(Ordering::Relaxed)
    }

    pub(super) fn is_closed(&self) -> bool {
        self.h().m.0.closed.load(Ordering::SeqCst) != 0
    }

    fn check_broken(&self) -> Result<(), QueueError> {
        if self.h().m.0.broken.load(Ordering::SeqCst) != 0 {
            return Err(QueueError::Broken(
                "a producer died while writing a message".into(),
            ));
        }
        Ok(())
    }

    fn wake_everyone(&self) {
        let h = self.h();
        bump(&h.p.0.data_seq, &h.w.0.data);
        bump(&h.c.0.space_seq, &h.w.0.space);
        bump(&h.c.0.slot_seq, &h.w.0.slot);
        bump(&h.m.0.done_seq, &h.w.0.done);
    }

    pub(super) fn close(&self) {
        self.h().m.0.closed.store(1, Ordering::SeqCst);
        self.wake_everyone();
    }

    /// Copy `src` into the ring at absolute position `pos`.
    fn copy_in(&self, pos: u64, src: &[u8]) {
        let cap = self.cap();
        let at = (pos % cap) as usize;
        let first = src.len().min(cap as usize - at);
        // SAFETY: `at + first ≤ cap` and the rest (`src.len() - first ≤ cap`) wraps to the
        // start: both inside the ring (HEADER..HEADER+cap of the segment). This range is free
        // (between tail and head + cap) and ours under the producer lock: no one else writes it.
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
        // ours under the consumer lock, so no one writes it meanwhile.
        unsafe {
            let base = self.seg.as_ptr().add(HEADER);
            std::ptr::copy_nonoverlapping(base.add(at), dst.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(base, dst.as_mut_ptr().add(first), dst.len() - first);
        }
    }

    /// Append one frame: the concatenation of `parts`. `block: false` fails at once where it
    /// would wait.
    pub(super) fn push(
        &self,
        parts: &[&[u8]],
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<(), QueueError> {
        let h = self.h();
        let (p, c, w) = (&h.p.0, &h.c.0, &h.w.0);
        let deadline = if block {
            Deadline::after(timeout)
        } else {
            Deadline::now()
        };
        self.check_broken()?;
        if self.is_closed() {
            return Err(QueueError::Closed);
        }
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len as u64 > MAX_MESSAGE {
            return Err(QueueError::Encode(format!(
                "a message of {len} bytes is over the limit of {MAX_MESSAGE}"
            )));
        }
        // 1. the producer lock: one producer at a time writes frames
        let plock = raw_mutex(&p.plock);
        let got = match deadline.left() {
            Some(l) => plock.lock(l),
            None => plock.try_lock(),
        };
        match got {
            LockResult::TimedOut => return Err(QueueError::Full),
            LockResult::OwnerDied if p.write_end.load(Ordering::SeqCst) != 0 => {
                h.m.0.broken.store(1, Ordering::SeqCst);
                let _ = plock.unlock();
                self.wake_everyone();
                return self.check_broken();
            }
            _ => {}
        }
        let held = Held(plock);
        // 2. an item slot (maxsize)
        let max = u64::from(h.m.0.maxsize.load(Ordering::Relaxed));
        let puts = p.puts.load(Ordering::Relaxed);
        if max > 0 {
            loop {
                let seen = c.slot_seq.load(Ordering::SeqCst);
                let room = || puts - c.gets.load(Ordering::SeqCst) < max;
                if room() || (deadline.left().is_some() && spin_until(room)) {
                    break;
                }
                if self.is_closed() {
                    return Err(QueueError::Closed);
                }
                let Some(l) = deadline.left() else {
                    return Err(QueueError::Full);
                };
                sleep_on(&c.slot_seq, &w.slot, seen, l);
            }
        }
        // 3. the frame
        let cap = self.cap();
        let frame = frame_len(len as u64);
        let mut tail = p.tail.load(Ordering::Relaxed);
        if frame <= cap {
            // Wait for room for the whole frame, then write and publish it at once. A frame
            // that would wrap around the ring's end starts at its beginning instead (after a
            // skip mark), when it fits there: consumers then read it in place.
            let at = tail % cap;
            let skip = if at + frame > cap && frame <= at {
                cap - at
            } else {
                0
            };
            self.wait_space(tail, skip + frame, deadline)?;
            if skip > 0 {
                self.copy_in(tail, &SKIP.to_le_bytes());
                tail += skip;
            }
            self.copy_in(tail, &(len as u64).to_le_bytes());
            let mut at = tail + 8;
            for part in parts {
                self.copy_in(at, part);
                at += part.len() as u64;
            }
            // (counted before anyone can take it, so `task_done` never runs ahead)
            p.unfinished.fetch_add(1, Ordering::SeqCst);
            p.puts.store(puts + 1, Ordering::SeqCst);
            p.tail.store(tail + frame, Ordering::SeqCst);
        } else {
            // Larger than the ring: stream it; once started it must be finished (the timeout
            // applied to getting started only).
            self.wait_space(tail, 8, deadline)?;
            p.write_end.store(tail + frame, Ordering::SeqCst);
            p.unfinished.fetch_add(1, Ordering::SeqCst);
            p.puts.store(puts + 1, Ordering::SeqCst);
            self.copy_in(tail, &(len as u64).to_le_bytes());
            let mut pos = tail + 8;
            p.tail.store(pos, Ordering::SeqCst);
            bump(&p.data_seq, &w.data);
            // (rare: a message this large comes in one part, or is joined here)
            let joined;
            let mut rest: &[u8] = match parts {
                [one] => one,
                _ => {
                    joined = parts.concat();
                    &joined
                }
            };
            while !rest.is_empty() {
                let free = self.wait_space(pos, 1, Deadline::NEVER)?;
                let n = (free as usize).min(rest.len());
                self.copy_in(pos, &rest[..n]);
                pos += n as u64;
                rest = &rest[n..];
                p.tail.store(pos, Ordering::SeqCst);
                bump(&p.data_seq, &w.data);
            }
            let end = tail + frame;
            self.wait_space(pos, end - pos, Deadline::NEVER)?; // the padding
            p.tail.store(end, Ordering::SeqCst);
            p.write_end.store(0, Ordering::SeqCst);
        }
        // Release before waking consumers: a wake-up is a system call, and the lock should not
        // be held through it (nor through the preemption that may follow).
        drop(held);
        bump(&p.data_seq, &w.data);
        Ok(())
    }

    /// Wait until `need` bytes are free after `pos`; the free bytes.
    fn wait_space(&self, pos: u64, need: u64, deadline: Deadline) -> Result<u64, QueueError> {
        let h = self.h();
        let cap = self.cap();
        let seen = h.p.0.head_seen.load(Ordering::Relaxed);
        if cap - (pos - seen) >= need {
            return Ok(cap - (pos - seen));
        }
        let free = || {
            let head = h.c.0.head.load(Ordering::SeqCst);
            h.p.0.head_seen.store(head, Ordering::Relaxed);
            cap - (pos - head)
        };
        loop {
            // (a call that may not wait does not spin either)
            if free() >= need || (deadline.left().is_some() && spin_until(|| free() >= need)) {
                return Ok(free());
            }
            let seq = h.c.0.space_seq.load(Ordering::SeqCst);
            if free() >= need {
                return Ok(free());
            }
            self.check_broken()?;
            let Some(l) = deadline.left() else {
                return Err(QueueError::Full);
            };
            sleep_on(&h.c.0.space_seq, &h.w.0.space, seq, l);
        }
    }

    /// Wait until the ring holds `need` bytes after `pos` (published by producers).
    /// `Deadline::NEVER` waits as long as a producer is alive to write them. With `idle_ok`, a
    /// closed queue with nothing in it ends the wait with `Closed`. Without `spin`, sleep at
    /// once instead of spinning first.
    fn wait_data(
        &self,
        pos: u64,
        need: u64,
        deadline: Deadline,
        idle_ok: bool,
        spin: bool,
    ) -> Result<u64, QueueError> {
        let h = self.h();
        let seen = h.c.0.tail_seen.load(Ordering::Relaxed);
        if seen >= pos && seen - pos >= need {
            return Ok(seen - pos);
        }
        let have = || {
            let tail = h.p.0.tail.load(Ordering::SeqCst);
            h.c.0.tail_seen.store(tail, Ordering::Relaxed);
            tail - pos
        };
        loop {
            if have() >= need
                || (spin && deadline.left().is_some() && spin_until(|| have() >= need))
            {
                return Ok(have());
            }
            let seq = h.p.0.data_seq.load(Ordering::SeqCst);
            if have() >= need {
                return Ok(have());
            }
            self.check_broken()?;
            if idle_ok && self.is_closed() && self.items() == 0 {
                return Err(QueueError::Closed);
            }
            let Some(l) = deadline.left() else {
                return Err(QueueError::Empty);
            };
            // A producer that died half-way through a frame will never finish it.
            let plock = raw_mutex(&h.p.0.plock);
            if let Some(holder) = plock.holder() {
                if h.p.0.write_end.load(Ordering::SeqCst) != 0 && !holder.is_alive() {
                    h.m.0.broken.store(1, Ordering::SeqCst);
                    self.wake_everyone();
                    self.check_broken()?;
                }
            }
            sleep_on(&h.p.0.data_seq, &h.w.0.data, seq, l);
        }
    }

    /// Take one frame and hand its bytes to `f` (in place in the ring when it lies there in
    /// one piece, else from a copy). `block: false` fails at once where it would wait; with
    /// `spin: false`, a wait for the frame sleeps at once.
    pub(super) fn pop_with<R>(
        &self,
        block: bool,
        spin: bool,
        timeout: Option<Duration>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, QueueError> {
        let h = self.h();
        let (c, w) = (&h.c.0, &h.w.0);
        let deadline = if block {
            Deadline::after(timeout)
        } else {
            Deadline::now()
        };
        self.check_broken()?;
        let clock = raw_mutex(&c.clock);
        let got = match deadline.left() {
            Some(l) => clock.lock(l),
            None => clock.try_lock(),
        };
        if got == LockResult::TimedOut {
            return Err(QueueError::Empty);
        }
        let _held = Held(clock);
        if got == LockResult::OwnerDied {
            self.recover_reader()?;
        }
        let cap = self.cap();
        let (head, len) = loop {
            let head = c.head.load(Ordering::Relaxed);
            self.wait_data(head, 8, deadline, true, spin)?;
            let mut len = [0u8; 8];
            self.copy_out(head, &mut len);
            let len = u64::from_le_bytes(len);
            if len != SKIP {
                if len > MAX_MESSAGE {
                    // Only a process scribbling over the ring can write this: refuse to trust
                    // anything after it rather than allocate its size.
                    h.m.0.broken.store(1, Ordering::SeqCst);
                    self.wake_everyone();
                    return Err(QueueError::Broken(format!(
                        "a frame claims {len} bytes: the ring was overwritten"
                    )));
                }
                break (head, len);
            }
            c.head.store(head + (cap - head % cap), Ordering::SeqCst);
            bump(&c.space_seq, &w.space);
        };
        let end = head + frame_len(len);
        let at = (head + 8) % cap;
        if at + len <= cap
            && self
                .wait_data(head, end - head, Deadline::now(), false, true)
                .is_ok()
        {
            // Whole, in one piece: read it in place.
            // SAFETY: `at..at + len` lies inside the ring; the bytes are published (below
            // tail) and stay untouched until `finish_frame` moves `head` past them, which only
            // we can do (we hold the consumer lock); producers write only past `tail`.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    self.seg.as_ptr().add(HEADER + at as usize),
                    len as usize,
                )
            };
            let r = f(bytes);
            self.finish_frame(end);
            return Ok(r);
        }
        // A frame read in pieces frees its bytes as it goes: if we die half-way, the next
        // consumer must know where it ends. (A frame read in one go needs no mark: dying
        // before `finish_frame` leaves it in place for the next consumer, nothing lost.)
        c.read_end.store(end, Ordering::SeqCst);
        let mut out = vec![0u8; len as usize];
        let mut pos = head + 8;
        let mut filled = 0usize;
        // The frame has begun: read it to its end, however long its producer takes.
        while filled < out.len() {
            let have = self.wait_data(pos, 1, Deadline::NEVER, false, true)?;
            let n = (have as usize).min(out.len() - filled);
            self.copy_out(pos, &mut out[filled..filled + n]);
            filled += n;
            pos += n as u64;
            if filled < out.len() {
                // free what we read for a producer streaming a large frame
                c.head.store(pos, Ordering::SeqCst);
                bump(&c.space_seq, &w.space);
            }
        }
        self.wait_data(pos, end - pos, Deadline::NEVER, false, true)?; // the padding
        self.finish_frame(end);
        Ok(f(&out))
    }

    /// The frame ending at `end` is consumed: free its bytes, count it.
    fn finish_frame(&self, end: u64) {
        let h = self.h();
        let (c, w) = (&h.c.0, &h.w.0);
        c.head.store(end, Ordering::SeqCst);
        if c.read_end.load(Ordering::Relaxed) != 0 {
            c.read_end.store(0, Ordering::SeqCst);
        }
        c.gets.fetch_add(1, Ordering::SeqCst);
        bump(&c.space_seq, &w.space);
        if h.m.0.maxsize.load(Ordering::Relaxed) > 0 {
            bump(&c.slot_seq, &w.slot);
        }
    }

    /// The previous consumer died holding the consumer lock. If it was in the middle of a
    /// frame, that frame is lost with it: skip to its end once it is all there.
    fn recover_reader(&self) -> Result<(), QueueError> {
        let c = &self.h().c.0;
        let end = c.read_end.load(Ordering::SeqCst);
        if end == 0 {
            return Ok(());
        }
        tracing::warn!("a queue consumer died while reading a message; the message is lost");
        let head = c.head.load(Ordering::SeqCst);
        self.wait_data(head, end - head, Deadline::NEVER, false, true)?;
        self.finish_frame(end);
        Ok(())
    }

    pub(super) fn task_done(&self) -> Result<(), QueueError> {
        let h = self.h();
        let prev =
            h.p.0
                .unfinished
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| u.checked_sub(1))
                .map_err(|_| QueueError::TooManyTaskDone)?;
        if prev == 1 {
            bump(&h.m.0.done_seq, &h.w.0.done);
        }
        Ok(())
    }

    pub(super) fn join(&self, timeout: Option<Duration>) -> bool {
        let h = self.h();
        let deadline = Deadline::after(timeout);
        loop {
            let seen = h.m.0.done_seq.load(Ordering::SeqCst);
            if h.p.0.unfinished.load(Ordering::SeqCst) == 0 {
                return true;
            }
            let Some(l) = deadline.left() else {
                return false;
            };
            sleep_on(&h.m.0.done_seq, &h.w.0.done, seen, l);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pop(r: &Ring) -> Vec<u8> {
        r.pop_with(false, true, None, |b| b.to_vec()).unwrap()
    }

    #[test]
    fn frames_wrap_skip_and_stream_through_a_small_ring() {
        let r = Ring::new(0, 4096).unwrap();
        // sizes chosen so frames land at every offset: some wrap, some skip to the start
        for round in 0..200u32 {
            let n = (round as usize * 397) % 3000;
            let msg: Vec<u8> = (0..n).map(|i| (i as u32 ^ round) as u8).collect();
            r.push(&[&msg], false, None).unwrap();
            if round % 3 == 0 {
                let other = vec![round as u8; 10];
                r.push(&[&other], false, None).unwrap();
                assert_eq!(pop(&r), msg);
                assert_eq!(pop(&r), other);
            } else {
                assert_eq!(pop(&r), msg);
            }
            assert_eq!(r.items(), 0);
        }
        // larger than the ring: needs a reader at the same time
        let big: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        let r2 = r.clone();
        let reader =
            std::thread::spawn(move || r2.pop_with(true, true, None, |b| b.to_vec()).unwrap());
        r.push(&[&big], true, None).unwrap();
        assert_eq!(reader.join().unwrap(), big);
    }

    #[test]
    fn a_scribbled_length_is_a_broken_queue_not_an_allocation() {
        let r = Ring::new(0, 4096).unwrap();
        r.push(&[b"fine"], false, None).unwrap();
        // another process writes garbage over the frame's length word
        r.copy_in(0, &u64::MAX.wrapping_sub(1).to_le_bytes());
        assert!(matches!(
            r.pop_with(false, true, None, |b| b.len()),
            Err(QueueError::Broken(_))
        ));
        assert!(matches!(
            r.push(&[b"x"], false, None),
            Err(QueueError::Broken(_))
        ));
    }

    #[test]
    fn a_full_ring_times_out_and_an_empty_one_too() {
        let r = Ring::new(0, 4096).unwrap();
        r.push(&[&[1; 3000]], false, None).unwrap();
        assert_eq!(r.push(&[&[2; 3000]], false, None), Err(QueueError::Full));
        assert_eq!(
            r.push(&[&[2; 3000]], true, Some(Duration::from_millis(20))),
            Err(QueueError::Full)
        );
        assert_eq!(pop(&r), vec![1; 3000]);
        assert_eq!(
            r.pop_with(true, true, Some(Duration::from_millis(20)), |b| b.len()),
            Err(QueueError::Empty)
        );
    }
}
