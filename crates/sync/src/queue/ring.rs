//! The byte ring under every queue.
//!
//! Shared memory: a header page (two locks, the published positions, wait words; what
//! producers write, what consumers write and what sleepers write in separate cache lines),
//! then `capacity` bytes (a power of two) used as a ring of frames `[len: u64 LE][len
//! bytes][padding to 8]`. A length of `SKIP` marks the rest of the ring as unused, so a frame
//! that fits lies in one piece; a length of `MARK` makes a frame `[MARK][seq: u64][token: u64]`
//! standing for an item that went by the side channel (`side/`). Producers serialize on `plock`,
//! consumers on `clock`; a producer and a consumer work at once, like the two ends of a pipe.
//!
//! **What is published is counted in the same store.** `tail` is one 64-bit word holding the
//! items ever put and the bytes ever written (each modulo 2^32: a [`Mark`]), `head` the items
//! ever taken and the bytes ever consumed. A producer writes a whole frame into free space,
//! then publishes it (and its count) with one store of `tail`; a consumer reads a frame, then
//! frees it (and counts it) with one store of `head`. So a process killed at any instruction
//! leaves counts that are exactly those of what was published and taken: `qsize` is
//! `puts - gets`, the free slots of a bounded queue are `maxsize - qsize`, the unfinished
//! tasks of a `JoinableQueue` are `puts - task_done`s; there is no separate counter to drift,
//! and no repair to make when a lock is taken over from a dead holder.
//!
//! An item goes by the side channel when its frame is larger than the ring, or when it is
//! large (64 KiB or more) and the ring has no room for it now (nor within 10 ms, while a
//! consumer is inside `get` freeing some): `put` then returns once the item is stored in its
//! own memory, instead of waiting for consumers to read.
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

use super::side::{Side, SideItem};
use super::QueueError;
use crate::word::{raw_mutex, Deadline, Held};

/// Offset of the ring in the segment (the header has the first page).
const HEADER: usize = 4096;
/// The largest message a queue carries (as a `Connection` by default): 1 GiB.
const MAX_MESSAGE: u64 = multiproc_pickle::frame::DEFAULT_MAX_MESSAGE;
/// The largest ring: positions count modulo 2^32, so what lies in the ring must stay far
/// below that.
pub(super) const MAX_CAPACITY: usize = 1 << 30;

/// A length that marks the rest of the ring as unused: the next frame starts at its beginning.
const SKIP: u64 = u64::MAX;
/// A length that makes the frame a marker: `[MARK][seq][token]`, the item is on the side
/// channel.
const MARK: u64 = u64::MAX - 1;
/// The bytes of a marker frame.
const MARK_FRAME: u64 = 24;
/// An item this large goes by the side channel rather than wait (more than `SIDE_WAIT`, and
/// only while a consumer is inside `get`) for room in the ring.
const SIDE_MIN: u64 = 64 << 10;
const SIDE_WAIT: Duration = Duration::from_millis(10);

/// Bytes a frame of `len` payload bytes takes: its length word, the payload, padding to 8.
fn frame_len(len: u64) -> u64 {
    8 + len.div_ceil(8) * 8
}

/// Sleepers wake at least this often (to see a closed queue, or retry a full socket).
const SLICE: Duration = Duration::from_millis(50);

/// A published position: a count of items and a count of bytes, each modulo 2^32, stored
/// together in one 64-bit word so that neither is ever seen without the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mark {
    items: u32,
    at: u32,
}

impl Mark {
    fn unpack(v: u64) -> Mark {
        Mark {
            items: (v >> 32) as u32,
            at: v as u32,
        }
    }

    fn pack(self) -> u64 {
        u64::from(self.items) << 32 | u64::from(self.at)
    }

    fn load(word: &AtomicU64, order: Ordering) -> Mark {
        Mark::unpack(word.load(order))
    }

    /// Publish: everything written before is visible to whoever loads this mark.
    fn publish(self, word: &AtomicU64) {
        word.store(self.pack(), Ordering::Release);
    }
}

/// One cache line (two, for adjacent-line prefetch): fields written by different sides live
/// in different lines, so a producer and a consumer do not steal each other's lines.
#[repr(C, align(128))]
struct Line<T>(T);

/// Written by producers (under `plock`).
#[repr(C)]
struct Prod {
    plock: AtomicU64,
    data_seq: AtomicU32,
    /// Items ever put and bytes ever written (a `Mark`).
    tail: AtomicU64,
    /// The number the next item sent by the side channel gets.
    side_seq: AtomicU64,
    /// `head` as producers last read it: room is checked against it first, so the
    /// consumers' line is read only when the ring or the slots look full.
    head_seen: AtomicU64,
}

/// Written by consumers (under `clock`; `done` by `task_done`).
#[repr(C)]
struct Cons {
    clock: AtomicU64,
    space_seq: AtomicU32,
    /// Items ever taken and bytes ever consumed (a `Mark`).
    head: AtomicU64,
    slot_seq: AtomicU32,
    /// `task_done` calls ever (modulo 2^32).
    done: AtomicU32,
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
    side: Arc<Side>,
    /// The ring's bytes (a power of two), as in the header.
    cap: u32,
}

/// Sleep on `seq` (which was `seen`) for at most `left` and one slice.
fn sleep_on(seq: &AtomicU32, waiters: &AtomicU32, seen: u32, left: Option<Duration>) {
    waiters.fetch_add(1, Ordering::SeqCst);
    futex::wait_timeout(seq, seen, left.map_or(SLICE, |l| l.min(SLICE)));
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
    /// A ring of `capacity` bytes rounded down to a power of two (at most `MAX_CAPACITY`).
    pub(super) fn new(maxsize: u32, capacity: usize) -> Result<Ring, QueueError> {
        if capacity < 4096 {
            return Err(QueueError::InvalidArgument(
                "a queue's ring needs at least 4 KiB",
            ));
        }
        let cap = 1usize << capacity.min(MAX_CAPACITY).ilog2();
        let seg = Segment::new(HEADER + cap)?;
        let side =
            Side::new().map_err(|e| QueueError::system("create a queue's side channel", e))?;
        let r = Ring {
            seg: Arc::new(seg),
            side: Arc::new(side),
            cap: cap as u32,
        };
        r.h().m.0.maxsize.store(maxsize, Ordering::Relaxed);
        r.h().m.0.capacity.store(cap as u64, Ordering::Release);
        Ok(r)
    }

    fn h(&self) -> &Header {
        // SAFETY: the segment is page-aligned and longer than HEADER ≥ size_of::<Header>();
        // the header is atomics only (valid for any bytes) and lives while `self` does.
        unsafe { &*(self.seg.as_ptr() as *const Header) }
    }

    /// Where position `at` lies in the ring.
    fn offset(&self, at: u32) -> u64 {
        u64::from(at & (self.cap - 1))
    }

    /// Items put and not yet taken.
    pub(super) fn items(&self) -> u32 {
        let h = self.h();
        // head first: tail, read after, is at least what it was then, so the difference is
        // never negative
        let head = Mark::load(&h.c.0.head, Ordering::Acquire);
        let tail = Mark::load(&h.p.0.tail, Ordering::Acquire);
        tail.items.wrapping_sub(head.items)
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
                "the ring was overwritten by a process that does not follow its rules".into(),
            ));
        }
        Ok(())
    }

    fn broken(&self, why: String) -> QueueError {
        self.h().m.0.broken.store(1, Ordering::SeqCst);
        self.wake_everyone();
        QueueError::Broken(why)
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

    /// Copy `src` into the ring at position `pos`.
    fn copy_in(&self, pos: u32, src: &[u8]) {
        let cap = self.cap as usize;
        let at = self.offset(pos) as usize;
        let first = src.len().min(cap - at);
        // SAFETY: `at + first ≤ cap` and the rest (`src.len() - first ≤ cap`) wraps to the
        // start: both inside the ring (HEADER..HEADER+cap of the segment). This range is free
        // (between tail and head + cap) and ours under the producer lock: no one else writes it.
        unsafe {
            let base = self.seg.as_ptr().add(HEADER);
            std::ptr::copy_nonoverlapping(src.as_ptr(), base.add(at), first);
            std::ptr::copy_nonoverlapping(src.as_ptr().add(first), base, src.len() - first);
        }
    }

    /// Copy from the ring at position `pos` into `dst`.
    fn copy_out(&self, pos: u32, dst: &mut [u8]) {
        let cap = self.cap as usize;
        let at = self.offset(pos) as usize;
        let first = dst.len().min(cap - at);
        // SAFETY: as in `copy_in`; the range is published (below tail) and not yet consumed,
        // ours under the consumer lock, so no one writes it meanwhile.
        unsafe {
            let base = self.seg.as_ptr().add(HEADER);
            std::ptr::copy_nonoverlapping(base.add(at), dst.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(base, dst.as_mut_ptr().add(first), dst.len() - first);
        }
    }

    fn read_word(&self, pos: u32) -> u64 {
        let mut w = [0u8; 8];
        self.copy_out(pos, &mut w);
        u64::from_le_bytes(w)
    }

    /// Where a frame of `frame` bytes goes at position `at`: the bytes skipped first (a frame
    /// that would wrap around the ring's end starts at its beginning instead, when it fits
    /// there, so consumers read it in place) and the bytes needed in all.
    fn placement(&self, at: u32, frame: u64) -> (u32, u32) {
        let cap = u64::from(self.cap);
        let off = self.offset(at);
        let skip = if off + frame > cap && frame <= off {
            cap - off
        } else {
            0
        };
        (skip as u32, (skip + frame) as u32)
    }

    /// Append one item: the concatenation of `parts`. `block: false` fails at once where it
    /// would wait.
    pub(super) fn push(
        &self,
        parts: &[&[u8]],
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<(), QueueError> {
        let h = self.h();
        let p = &h.p.0;
        let deadline = if block {
            Deadline::after(timeout)
        } else {
            Deadline::now()
        };
        self.check_broken()?;
        if self.is_closed() {
            return Err(QueueError::Closed);
        }
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        if len > MAX_MESSAGE {
            return Err(QueueError::TooLarge {
                len,
                max: MAX_MESSAGE,
            });
        }
        let frame = frame_len(len);
        // An item the ring cannot hold goes by the side channel; its bytes are copied into
        // their own memory before the lock is taken.
        let mut side = if frame > u64::from(self.cap) {
            Some(SideItem::new(parts, len)?)
        } else {
            None
        };
        // 1. the producer lock: one producer at a time writes frames (one that died holding
        // it published nothing half-way: there is nothing to repair)
        let plock = raw_mutex(&p.plock);
        let got = match deadline.left() {
            Some(l) => plock.lock_within(l),
            None => plock.try_lock(),
        };
        if got == LockResult::TimedOut {
            return Err(QueueError::Full);
        }
        let held = Held(plock);
        let tail = Mark::load(&p.tail, Ordering::Relaxed);
        // 2. an item slot (maxsize)
        self.wait_slot(tail, deadline)?;
        // 3. the frame, in the ring if it fits
        if side.is_none() {
            let (skip, need) = self.placement(tail.at, frame);
            if frame < SIDE_MIN
                || self.has_room(tail.at, need)
                || self.room_soon(tail.at, need, deadline)
            {
                self.wait_space(tail.at, need, deadline)?;
                let mut at = tail.at;
                if skip > 0 {
                    self.copy_in(at, &SKIP.to_le_bytes());
                    at = at.wrapping_add(skip);
                }
                self.copy_in(at, &len.to_le_bytes());
                at = at.wrapping_add(8);
                for part in parts {
                    self.copy_in(at, part);
                    at = at.wrapping_add(part.len() as u32);
                }
                self.publish(tail, need, held);
                return Ok(());
            }
            // large, and no room now: rather than wait for consumers
            side = Some(SideItem::new(parts, len)?);
        }
        let item = side.expect("set above");
        // 4. or by the side channel, behind a marker
        let (skip, need) = self.placement(tail.at, MARK_FRAME);
        self.wait_space(tail.at, need, deadline)?;
        let seq = p.side_seq.load(Ordering::Relaxed);
        // (counted before sending: a number is never sent twice, even by a producer that
        // dies right after sending)
        p.side_seq.store(seq + 1, Ordering::SeqCst);
        self.send_side(seq, &item, deadline)?;
        let mut at = tail.at;
        if skip > 0 {
            self.copy_in(at, &SKIP.to_le_bytes());
            at = at.wrapping_add(skip);
        }
        self.copy_in(at, &MARK.to_le_bytes());
        self.copy_in(at.wrapping_add(8), &seq.to_le_bytes());
        self.copy_in(at.wrapping_add(16), &item.token().to_le_bytes());
        self.publish(tail, need, held);
        Ok(())
    }

    /// Publish one item of `need` bytes after `tail`, release the producer lock, wake
    /// consumers.
    fn publish(&self, tail: Mark, need: u32, held: Held<'_>) {
        let h = self.h();
        Mark {
            items: tail.items.wrapping_add(1),
            at: tail.at.wrapping_add(need),
        }
        .publish(&h.p.0.tail);
        // Release before waking consumers: a wake-up is a system call, and the lock should not
        // be held through it (nor through the preemption that may follow).
        drop(held);
        bump(&h.p.0.data_seq, &h.w.0.data);
    }

    /// Send `item` as number `seq`; while the socket is full, wait for consumers to take
    /// something (each `get` bumps `space_seq`).
    fn send_side(&self, seq: u64, item: &SideItem, deadline: Deadline) -> Result<(), QueueError> {
        let h = self.h();
        loop {
            let seen = h.c.0.space_seq.load(Ordering::SeqCst);
            if self.side.try_send(seq, item)? {
                return Ok(());
            }
            if self.is_closed() {
                return Err(QueueError::Closed);
            }
            let Some(l) = deadline.left() else {
                return Err(QueueError::Full);
            };
            sleep_on(&h.c.0.space_seq, &h.w.0.space, seen, l);
        }
    }

    /// The consumers' `head`, read (and remembered for the next look).
    fn head_now(&self) -> Mark {
        let h = self.h();
        let head = h.c.0.head.load(Ordering::Acquire);
        h.p.0.head_seen.store(head, Ordering::Relaxed);
        Mark::unpack(head)
    }

    /// Wait for an item slot (with `maxsize`) after `tail`.
    fn wait_slot(&self, tail: Mark, deadline: Deadline) -> Result<(), QueueError> {
        let h = self.h();
        let max = h.m.0.maxsize.load(Ordering::Relaxed);
        if max == 0 {
            return Ok(());
        }
        let seen = Mark::unpack(h.p.0.head_seen.load(Ordering::Relaxed));
        if tail.items.wrapping_sub(seen.items) < max {
            return Ok(());
        }
        let room = || tail.items.wrapping_sub(self.head_now().items) < max;
        loop {
            let seq = h.c.0.slot_seq.load(Ordering::SeqCst);
            // (a call that may not wait does not spin either)
            if room() || (deadline.left().is_some() && spin_until(room)) {
                return Ok(());
            }
            if self.is_closed() {
                return Err(QueueError::Closed);
            }
            let Some(l) = deadline.left() else {
                return Err(QueueError::Full);
            };
            sleep_on(&h.c.0.slot_seq, &h.w.0.slot, seq, l);
        }
    }

    /// For a large item that does not fit now: whether room comes soon, because a consumer
    /// is taking items (one holds the consumer lock: it is inside `get`) and frees enough
    /// within `SIDE_WAIT`. Otherwise the item goes beside the ring at once, so `put` never
    /// waits for a reader that may never come. (Going beside the ring costs more than the ring
    /// for an item a consumer takes at once: page allocation and mapping, ~3x for 4 MiB.)
    fn room_soon(&self, pos: u32, need: u32, deadline: Deadline) -> bool {
        if !raw_mutex(&self.h().c.0.clock).is_locked() {
            return false;
        }
        let soon = match deadline.left() {
            None => return false,
            Some(None) => SIDE_WAIT,
            Some(Some(left)) => left.min(SIDE_WAIT),
        };
        self.wait_space(pos, need, Deadline::after(Some(soon)))
            .is_ok()
    }

    /// Whether `need` bytes are free after position `pos` (the producers' tail) now.
    fn has_room(&self, pos: u32, need: u32) -> bool {
        let seen = Mark::unpack(self.h().p.0.head_seen.load(Ordering::Relaxed));
        self.cap - pos.wrapping_sub(seen.at) >= need
            || self.cap - pos.wrapping_sub(self.head_now().at) >= need
    }

    /// Wait until `need` bytes are free after `pos`.
    fn wait_space(&self, pos: u32, need: u32, deadline: Deadline) -> Result<(), QueueError> {
        let h = self.h();
        let seen = Mark::unpack(h.p.0.head_seen.load(Ordering::Relaxed));
        if self.cap - pos.wrapping_sub(seen.at) >= need {
            return Ok(());
        }
        let room = || self.cap - pos.wrapping_sub(self.head_now().at) >= need;
        loop {
            if room() || (deadline.left().is_some() && spin_until(room)) {
                return Ok(());
            }
            let seq = h.c.0.space_seq.load(Ordering::SeqCst);
            if room() {
                return Ok(());
            }
            self.check_broken()?;
            if self.is_closed() {
                return Err(QueueError::Closed);
            }
            let Some(l) = deadline.left() else {
                return Err(QueueError::Full);
            };
            sleep_on(&h.c.0.space_seq, &h.w.0.space, seq, l);
        }
    }

    /// Wait until the ring holds at least `need` bytes after `pos` (published by producers);
    /// the bytes it holds. A closed queue with nothing in it ends the wait with `Closed`.
    /// Without `spin`, sleep at once instead of spinning first.
    fn wait_data(
        &self,
        pos: u32,
        need: u32,
        deadline: Deadline,
        spin: bool,
    ) -> Result<u32, QueueError> {
        let h = self.h();
        let seen = Mark::unpack(h.c.0.tail_seen.load(Ordering::Relaxed));
        let have = seen.at.wrapping_sub(pos);
        if have >= need && have <= self.cap {
            return Ok(have);
        }
        let have = || {
            let tail = h.p.0.tail.load(Ordering::Acquire);
            h.c.0.tail_seen.store(tail, Ordering::Relaxed);
            Mark::unpack(tail).at.wrapping_sub(pos)
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
            if self.is_closed() && self.items() == 0 {
                return Err(QueueError::Closed);
            }
            let Some(l) = deadline.left() else {
                return Err(QueueError::Empty);
            };
            sleep_on(&h.p.0.data_seq, &h.w.0.data, seq, l);
        }
    }

    /// Take one item and hand its bytes to `f` (in place in the ring, or in its side memory,
    /// when they lie in one piece; else from a copy). `block: false` fails at once where it
    /// would wait; with `spin: false`, a wait for an item sleeps at once.
    pub(super) fn pop_with<R>(
        &self,
        block: bool,
        spin: bool,
        timeout: Option<Duration>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, QueueError> {
        let h = self.h();
        let c = &h.c.0;
        let deadline = if block {
            Deadline::after(timeout)
        } else {
            Deadline::now()
        };
        self.check_broken()?;
        let clock = raw_mutex(&c.clock);
        let got = match deadline.left() {
            Some(l) => clock.lock_within(l),
            None => clock.try_lock(),
        };
        if got == LockResult::TimedOut {
            return Err(QueueError::Empty);
        }
        // (a consumer that died holding the lock had not moved `head` past what it was
        // reading: that frame is still here for us, nothing to repair)
        let _held = Held(clock);
        let cap = u64::from(self.cap);
        let mut f = Some(f);
        loop {
            let head = Mark::load(&c.head, Ordering::Relaxed);
            let have = u64::from(self.wait_data(head.at, 8, deadline, spin)?);
            let len = self.read_word(head.at);
            let taken = |bytes: u64| Mark {
                items: head.items.wrapping_add(1),
                at: head.at.wrapping_add(bytes as u32),
            };
            if len == SKIP {
                let rest = cap - self.offset(head.at);
                self.finish(Mark {
                    items: head.items,
                    at: head.at.wrapping_add(rest as u32),
                });
                continue;
            }
            if len == MARK {
                if have < MARK_FRAME {
                    return Err(self.broken("a marker frame published in part".into()));
                }
                let seq = self.read_word(head.at.wrapping_add(8));
                let token = self.read_word(head.at.wrapping_add(16));
                match self.side.find(seq, token)? {
                    Some(map) => {
                        let r = (f.take().expect("called once"))(map.bytes());
                        // (unmapped before the frame is freed)
                        if let Err(e) = self.side.take(map) {
                            // (on Unix left on the socket, it is dropped as stale at the next
                            // marker)
                            tracing::warn!("could not take a queue item off its side channel: {e}");
                        }
                        self.finish(taken(MARK_FRAME));
                        return Ok(r);
                    }
                    None => {
                        tracing::warn!(
                            "a queue consumer died with an item in hand; the item is lost"
                        );
                        self.finish(taken(MARK_FRAME));
                        continue;
                    }
                }
            }
            // Frames are published whole: one that does not fit, or is not all there, can only
            // be written by a process scribbling over the ring. Refuse to trust anything after
            // it rather than allocate its size.
            if len > cap - 8 || frame_len(len) > have {
                return Err(self.broken(format!(
                    "a frame claims {len} bytes: the ring was overwritten"
                )));
            }
            let end = taken(frame_len(len));
            let at = self.offset(head.at.wrapping_add(8));
            let f = f.take().expect("called once");
            if at + len <= cap {
                // Whole, in one piece: read it in place.
                // SAFETY: `at..at + len` lies inside the ring; the bytes are published (below
                // tail) and stay untouched until `finish` moves `head` past them, which only
                // we can do (we hold the consumer lock); producers write only past `tail`.
                let bytes = unsafe {
                    std::slice::from_raw_parts(
                        self.seg.as_ptr().add(HEADER + at as usize),
                        len as usize,
                    )
                };
                let r = f(bytes);
                self.finish(end);
                return Ok(r);
            }
            let mut out = vec![0u8; len as usize];
            self.copy_out(head.at.wrapping_add(8), &mut out);
            self.finish(end);
            return Ok(f(&out));
        }
    }

    /// Move `head` to `end` (freeing the bytes before it, counting the items), wake producers.
    fn finish(&self, end: Mark) {
        let h = self.h();
        let (c, w) = (&h.c.0, &h.w.0);
        let before = Mark::load(&c.head, Ordering::Relaxed);
        end.publish(&c.head);
        bump(&c.space_seq, &w.space);
        if end.items != before.items && h.m.0.maxsize.load(Ordering::Relaxed) > 0 {
            bump(&c.slot_seq, &w.slot);
        }
    }

    /// Tasks put and not yet marked done, and the `done` count read.
    fn unfinished(&self) -> (u32, u32) {
        let h = self.h();
        let done = h.c.0.done.load(Ordering::SeqCst);
        let puts = Mark::load(&h.p.0.tail, Ordering::SeqCst).items;
        (puts.wrapping_sub(done), done)
    }

    pub(super) fn task_done(&self) -> Result<(), QueueError> {
        let h = self.h();
        loop {
            let (unfinished, done) = self.unfinished();
            if unfinished == 0 {
                return Err(QueueError::TooManyTaskDone);
            }
            if h.c
                .0
                .done
                .compare_exchange(
                    done,
                    done.wrapping_add(1),
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
            {
                if unfinished == 1 {
                    bump(&h.m.0.done_seq, &h.w.0.done);
                }
                return Ok(());
            }
        }
    }

    pub(super) fn join(&self, timeout: Option<Duration>) -> bool {
        let h = self.h();
        let deadline = Deadline::after(timeout);
        loop {
            let seen = h.m.0.done_seq.load(Ordering::SeqCst);
            if self.unfinished().0 == 0 {
                return true;
            }
            let Some(l) = deadline.left() else {
                return false;
            };
            sleep_on(&h.m.0.done_seq, &h.w.0.done, seen, l);
        }
    }
}

/// Serializes as its memory and its side channel's sockets (all moved with the process-start
/// transfer).
impl Serialize for Ring {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&*self.seg, &*self.side).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Ring {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (seg, side) = <(Segment, Side)>::deserialize(d)?;
        let cap = seg.len().saturating_sub(HEADER);
        if cap == 0 || !cap.is_power_of_two() || cap > MAX_CAPACITY {
            return Err(serde::de::Error::custom("queue segment of the wrong size"));
        }
        let r = Ring {
            seg: Arc::new(seg),
            side: Arc::new(side),
            cap: cap as u32,
        };
        if r.h().m.0.capacity.load(Ordering::Acquire) != cap as u64 {
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
    fn frames_wrap_skip_and_go_round_a_small_ring_many_times() {
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
    }

    #[test]
    fn positions_and_counts_wrap_around_2_to_the_32() {
        let r = Ring::new(4, 4096).unwrap();
        let h = r.h();
        // as after four billion bytes and items
        let near = Mark {
            items: u32::MAX - 2,
            at: 0u32.wrapping_sub(800),
        };
        near.publish(&h.p.0.tail);
        near.publish(&h.c.0.head);
        h.c.0.done.store(near.items, Ordering::SeqCst);
        for i in 0..2000u32 {
            let msg = vec![i as u8; (i % 50) as usize];
            r.push(&[&msg], false, None).unwrap();
            r.push(&[b"x"], false, None).unwrap();
            assert_eq!(r.items(), 2);
            assert_eq!(r.unfinished().0, 2);
            assert_eq!(pop(&r), msg);
            assert_eq!(pop(&r), b"x");
            r.task_done().unwrap();
            r.task_done().unwrap();
        }
        assert_eq!(r.items(), 0);
        assert!(r.join(Some(Duration::ZERO)));
        for _ in 0..4 {
            r.push(&[b"slot"], false, None).unwrap();
        }
        assert_eq!(r.push(&[b"over"], false, None), Err(QueueError::Full));
    }

    #[test]
    fn items_larger_than_the_ring_go_by_the_side_channel_in_order() {
        let r = Ring::new(0, 4096).unwrap();
        let big: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        r.push(&[&big[..5], &big[5..]], false, None).unwrap();
        r.push(&[b"small"], false, None).unwrap();
        r.push(&[&big], false, None).unwrap();
        assert_eq!(r.items(), 3);
        assert_eq!(pop(&r), big);
        assert_eq!(pop(&r), b"small");
        assert_eq!(pop(&r), big);
        assert_eq!(r.items(), 0);
    }

    #[test]
    fn a_large_item_goes_aside_when_the_ring_is_full_a_small_one_waits() {
        let r = Ring::new(0, 128 << 10).unwrap();
        let a = vec![1u8; 100 << 10];
        let b = vec![2u8; 100 << 10];
        r.push(&[&a], false, None).unwrap(); // in the ring
        r.push(&[&b], false, None).unwrap(); // no room: aside, at once
        r.push(&[&[3u8; 20 << 10]], false, None).unwrap(); // fits
        assert_eq!(
            r.push(&[&[4u8; 10 << 10]], false, None),
            Err(QueueError::Full)
        );
        assert_eq!(pop(&r), a);
        assert_eq!(pop(&r), b);
        assert_eq!(pop(&r), vec![3u8; 20 << 10]);
    }

    #[test]
    fn side_items_in_flight_are_bounded_by_the_socket_and_then_full() {
        let r = Ring::new(0, 4096).unwrap();
        let mut n = 0u32;
        loop {
            let item = [&n.to_le_bytes()[..], &[7u8; 5000]];
            match r.push(&item, false, None) {
                Ok(()) => n += 1,
                Err(QueueError::Full) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(n < 100_000, "no bound on side items in flight");
        }
        assert!(n >= 100, "only {n} side items in flight");
        for i in 0..n {
            let got = pop(&r);
            assert_eq!(got[..4], i.to_le_bytes());
            assert_eq!(got.len(), 5004);
        }
        assert_eq!(r.items(), 0);
        r.push(&[&[1u8; 5000]], false, None).unwrap();
    }

    #[test]
    fn stale_side_items_are_dropped_and_taken_ones_skipped() {
        let r = Ring::new(0, 4096).unwrap();
        let big = vec![9u8; 10_000];
        // a producer that died after sending, before publishing its marker
        let stale = SideItem::new(&[&[0u8; 10_000]], 10_000).unwrap();
        let seq = r.h().p.0.side_seq.fetch_add(1, Ordering::SeqCst);
        assert!(r.side.try_send(seq, &stale).unwrap());
        r.push(&[&big], false, None).unwrap();
        assert_eq!(pop(&r), big);
        // a consumer that died after taking the item, before moving past its marker
        r.push(&[&big], false, None).unwrap();
        r.push(&[b"after"], false, None).unwrap();
        let head = Mark::load(&r.h().c.0.head, Ordering::Relaxed);
        assert_eq!(r.read_word(head.at), MARK);
        let (seq, token) = (
            r.read_word(head.at.wrapping_add(8)),
            r.read_word(head.at.wrapping_add(16)),
        );
        let map = r.side.find(seq, token).unwrap().expect("the item is there");
        r.side.take(map).unwrap();
        assert_eq!(pop(&r), b"after");
        assert_eq!(r.items(), 0);
    }

    #[test]
    fn a_scribbled_length_is_a_broken_queue_not_an_allocation() {
        let r = Ring::new(0, 4096).unwrap();
        r.push(&[b"fine"], false, None).unwrap();
        // another process writes garbage over the frame's length word
        r.copy_in(0, &u64::MAX.wrapping_sub(2).to_le_bytes());
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
