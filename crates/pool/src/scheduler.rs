//! The scheduler: which worker gets which unit. The pool's shared state (the queue of units no
//! worker holds yet, and one [`Lane`] per worker), and the rule that places units:
//!
//! 1. **Idle workers first.** A unit goes to a worker holding nothing before anything is queued
//!    behind a running unit.
//! 2. **Take back what waits behind a long unit.** When a worker is idle, nothing is left in the
//!    queue, and another worker holds units it has not started behind one that has run for
//!    [`STEAL_AFTER`], those units are revoked (see `control`) and go to the idle workers.
//! 3. **Pipelining keeps busy workers busy.** Only then are units queued behind a running one,
//!    one per worker per round, up to the depth and byte budgets below, so a worker never idles
//!    for a round trip between two small units; never behind a unit that units were just taken
//!    back from (until it is answered). A unit's age is not a reason to refuse: on a loaded
//!    machine any unit can be old because its worker waits for a CPU, and what was queued
//!    behind a truly long one is taken back (rule 2) as soon as a worker is idle.
//!
//! Submitters run this themselves under the state lock (a unit reaches an idle worker without a
//! dispatcher hop); the dispatcher runs it after every batch of replies, and wakes for rule 2
//! when a unit waiting behind another turns [`STEAL_AFTER`] old.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_pickle::OsHandle;
use multiproc_process::Connection;
use multiproc_sync::ByteQueue;
use parking_lot::Mutex;

use crate::control::{before, Control};
use crate::inbox::{self, Kind};
use crate::result::Sink;
use crate::worker::Resplit;
use crate::PoolError;

/// Units a worker may hold at once (one running, the rest waiting in its pipe), so it never
/// idles for a round trip between two small chunks: at most `MAX_DEPTH`, and only as many as
/// it runs in about `QUEUED_WORK`. `START_DEPTH` until a unit's time is known.
pub(crate) const MAX_DEPTH: usize = 64;
const START_DEPTH: usize = 4;
const QUEUED_WORK: Duration = Duration::from_millis(2);
/// A unit that has run this long is "long": what waits behind it is taken back for a worker
/// that has nothing to do.
pub(crate) const STEAL_AFTER: Duration = Duration::from_millis(1);
/// Units are queued behind a running one only while the bytes waiting in the worker's pipe stay
/// under half the pipe's buffer (as the kernel reports it; at most `MAX_QUEUED_BYTES`,
/// `UNKNOWN_QUEUED_BYTES` if it cannot tell), so writing to a busy worker never blocks whoever
/// writes: a blocked writer holding the pool's lock would keep the dispatcher from draining
/// the inbox, which a worker may be waiting on. (Pipes are 1 MiB where the kernel allows, but
/// a user over the kernel's pipe-memory limit gets 8 KiB ones.) Units taken back count until
/// the worker has read past them.
const MAX_QUEUED_BYTES: usize = 512 << 10;
const UNKNOWN_QUEUED_BYTES: usize = 32 << 10;

/// Items `first..first + n` of a job, encoded as one call.
pub(crate) struct Unit {
    pub first: usize,
    pub n: usize,
    pub payload: Vec<u8>,
    /// The OS handles the unit's arguments own (empty, no allocation, for most units): they
    /// go with the payload each time it is sent, and stay here until the unit is answered.
    pub handles: Vec<OsHandle>,
    pub sink: Arc<dyn Sink>,
    /// Re-encodes parts of this unit (after a worker died running it).
    pub split: Resplit,
    /// Whether a worker already died running this unit without saying which item it ran.
    pub retried: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum RunState {
    Running,
    Closed,
    Terminated,
}

/// A unit a worker holds.
pub(crate) struct Busy {
    pub unit: Unit,
    /// The unit's number on the worker's pipe (see `control`).
    pub msg: u32,
    /// Set for the running (front) unit when tasks have a timeout.
    pub deadline: Option<Instant>,
}

/// A worker as submitters see it: where to send units and what it holds. Lives in the shared
/// state, so a caller can hand a unit straight to a worker with room (no dispatcher hop).
pub(crate) struct Lane {
    conn: Arc<Connection>,
    pub control: Control,
    /// Units sent to this worker and not taken back, in order: the front one runs, the others
    /// wait in its pipe.
    pub busy: VecDeque<Busy>,
    /// The number the next unit sent gets.
    next_msg: u32,
    /// Units taken back that may still be in the pipe: the number of the first unit sent after
    /// them, and their bytes.
    revoked: Option<(u32, usize)>,
    /// Whether units were queued behind the running one since the last time units were taken
    /// back (after which all it holds have started): only then is there anything to take.
    stealable: bool,
    /// Set when units were taken back from behind the running unit: nothing is queued behind
    /// it again until it is answered (else what was just taken could be sent straight back).
    front_stolen: bool,
    /// When the front unit started (about: when it was sent, or its predecessor answered).
    pub front_since: Instant,
    /// The units this worker may hold (see `MAX_DEPTH`), from the time its units take.
    depth: usize,
    /// A moving average of that time, in nanoseconds (0: none measured yet).
    unit_nanos: u64,
    /// Bytes that may wait in the worker's pipe behind its running unit.
    queue_bytes: usize,
    pub tasks_done: usize,
    /// False while the worker is being retired or replaced.
    pub open: bool,
}

impl Lane {
    pub(crate) fn new(conn: Arc<Connection>, control: Control) -> Lane {
        let queue_bytes = conn
            .send_buffer_size()
            .map_or(UNKNOWN_QUEUED_BYTES, |n| (n / 2).min(MAX_QUEUED_BYTES));
        Lane {
            queue_bytes,
            conn,
            control,
            busy: VecDeque::new(),
            next_msg: 0,
            revoked: None,
            stealable: false,
            front_stolen: false,
            front_since: Instant::now(),
            depth: START_DEPTH,
            unit_nanos: 0,
            tasks_done: 0,
            open: true,
        }
    }

    /// Whether the worker holds nothing and may be given a unit.
    fn idle(&self) -> bool {
        self.open && self.busy.is_empty()
    }

    /// Whether the running unit has run long enough that nothing should wait behind it.
    fn front_is_long(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.front_since) >= STEAL_AFTER
    }

    /// Whether `unit` may be queued behind this worker's running unit now (rule 3).
    fn accepts_behind(&mut self, unit: &Unit, maxtasks: Option<usize>) -> bool {
        // (a unit with OS handles goes only to an idle worker: the handles' side channel then
        // never holds more than one unit's, so sending them never blocks)
        if !self.open || self.busy.is_empty() || self.front_stolen || !unit.handles.is_empty() {
            return false;
        }
        if let Some((after, _)) = self.revoked {
            // the worker has read past what was taken back once it started a later unit
            if before(after, self.control.started()) {
                self.revoked = None;
            }
        }
        let queued: usize = self
            .busy
            .iter()
            .skip(1)
            .map(|b| b.unit.payload.len())
            .sum::<usize>()
            + self.revoked.map_or(0, |(_, bytes)| bytes);
        let room = maxtasks.is_none_or(|m| self.tasks_done + self.busy.len() < m);
        room && self.busy.len() < self.depth && queued + unit.payload.len() <= self.queue_bytes
    }

    fn push(&mut self, unit: Unit, timeout: Option<Duration>) {
        let deadline = match self.busy.is_empty() {
            true => {
                self.front_stolen = false;
                self.front_since = Instant::now();
                timeout.map(|t| self.front_since + t)
            }
            false => None,
        };
        let msg = self.next_msg;
        self.next_msg = msg.wrapping_add(1);
        self.stealable |= !self.busy.is_empty();
        self.busy.push_back(Busy {
            unit,
            msg,
            deadline,
        });
    }

    /// Take back the units this worker has not started; they are returned in order.
    fn revoke(&mut self) -> Vec<Unit> {
        self.stealable = false;
        self.front_stolen = true;
        let first = self.control.revoke(self.next_msg);
        let keep = self
            .busy
            .iter()
            .take_while(|b| before(b.msg, first))
            .count();
        let taken: Vec<Unit> = self.busy.drain(keep..).map(|b| b.unit).collect();
        let bytes: usize = taken.iter().map(|u| u.payload.len()).sum();
        let earlier = self.revoked.map_or(0, |(_, b)| b);
        self.revoked = Some((self.next_msg, earlier + bytes));
        taken
    }

    /// The front unit was answered: take its time into the average, and start the next one's.
    pub(crate) fn front_done(&mut self) {
        self.front_stolen = false;
        let now = Instant::now();
        let took = now.saturating_duration_since(self.front_since).as_nanos() as u64;
        self.front_since = now;
        self.unit_nanos = match self.unit_nanos {
            0 => took.max(1),
            avg => (avg - avg / 8 + took / 8).max(1),
        };
        let fits = QUEUED_WORK.as_nanos() as u64 / self.unit_nanos;
        self.depth = (fits as usize).clamp(2, MAX_DEPTH);
    }
}

/// The pool state every thread shares, behind one lock.
pub(crate) struct State {
    pub queue: VecDeque<Unit>,
    pub run: RunState,
    pub lanes: Vec<Lane>,
}

impl State {
    /// Place queued units on workers (the three rules above); each worker gets its share in
    /// one write.
    pub(crate) fn assign(&mut self, maxtasks: Option<usize>, timeout: Option<Duration>) {
        let now = Instant::now();
        if self.queue.is_empty() && !(self.lanes.iter().any(Lane::idle) && self.steal(now)) {
            return;
        }
        // (what each worker is sent now: its units numbered from its `next_msg` here on)
        let first_new: Vec<u32> = self.lanes.iter().map(|l| l.next_msg).collect();
        self.fill_idle(timeout);
        if self.queue.is_empty() && self.lanes.iter().any(Lane::idle) && self.steal(now) {
            self.fill_idle(timeout);
        }
        'rounds: loop {
            let mut took = false;
            for lane in self.lanes.iter_mut() {
                let Some(unit) = self.queue.front() else {
                    break 'rounds;
                };
                if !lane.accepts_behind(unit, maxtasks) {
                    continue;
                }
                // (the payload is kept: if the worker dies before starting the unit, it is
                // sent again to another worker)
                lane.push(self.queue.pop_front().expect("peeked"), timeout);
                took = true;
            }
            if !took {
                break;
            }
        }
        for (lane, first) in self.lanes.iter_mut().zip(first_new) {
            let Some(k) = lane.busy.iter().position(|b| !before(b.msg, first)) else {
                continue;
            };
            let sent = if lane.busy.iter().skip(k).all(|b| b.unit.handles.is_empty()) {
                let payloads: Vec<&[u8]> = lane
                    .busy
                    .iter()
                    .skip(k)
                    .map(|b| &b.unit.payload[..])
                    .collect();
                lane.conn.send_bytes_many(&payloads)
            } else {
                send_with_handles(&lane.conn, lane.busy.iter().skip(k).map(|b| &b.unit))
            };
            if let Err(e) = sent {
                // The worker is gone; the dispatcher sees its death and replaces it. What it
                // did not get goes back to the queue, in order.
                tracing::debug!("worker unreachable: {e}");
                lane.open = false;
                for b in lane.busy.drain(k..).rev() {
                    self.queue.push_front(b.unit);
                }
            }
        }
    }

    /// Rule 1: one unit to each idle worker.
    fn fill_idle(&mut self, timeout: Option<Duration>) {
        for lane in self.lanes.iter_mut().filter(|l| l.idle()) {
            let Some(unit) = self.queue.pop_front() else {
                return;
            };
            lane.push(unit, timeout);
        }
    }

    /// Rule 2: take back the units waiting behind long-running ones (to the front of the
    /// queue, in order). Whether any moved.
    fn steal(&mut self, now: Instant) -> bool {
        let mut moved = false;
        for lane in self.lanes.iter_mut() {
            if !lane.stealable || lane.busy.len() < 2 || !lane.front_is_long(now) {
                continue;
            }
            let taken = lane.revoke();
            moved |= !taken.is_empty();
            for u in taken.into_iter().rev() {
                self.queue.push_front(u);
            }
        }
        moved
    }

    /// When a unit waiting behind a running one turns long enough to be taken back by an idle
    /// worker, if one is idle and there is nothing else for it.
    pub(crate) fn next_steal(&self) -> Option<Instant> {
        if !self.queue.is_empty() || !self.lanes.iter().any(Lane::idle) {
            return None;
        }
        self.lanes
            .iter()
            .filter(|l| l.stealable && l.busy.len() >= 2)
            .map(|l| l.front_since + STEAL_AFTER)
            .min()
    }
}

/// Send `units` in order, those whose arguments own OS handles with them.
fn send_with_handles<'a>(
    conn: &Connection,
    units: impl Iterator<Item = &'a Unit>,
) -> Result<(), multiproc_process::Error> {
    let mut plain: Vec<&[u8]> = Vec::new();
    for u in units {
        if u.handles.is_empty() {
            plain.push(&u.payload);
            continue;
        }
        if !plain.is_empty() {
            conn.send_bytes_many(&plain)?;
            plain.clear();
        }
        #[cfg(unix)]
        let handles: Vec<_> = u.handles.iter().map(std::os::fd::AsFd::as_fd).collect();
        #[cfg(windows)]
        let handles: Vec<_> = u
            .handles
            .iter()
            .map(std::os::windows::io::AsHandle::as_handle)
            .collect();
        conn.send_bytes_with_handles(&u.payload, &handles)?;
    }
    if !plain.is_empty() {
        conn.send_bytes_many(&plain)?;
    }
    Ok(())
}

/// What the pool's threads share.
pub(crate) struct Shared {
    pub st: Mutex<State>,
    /// Where workers reply and submitters nudge; the dispatcher waits on it alone.
    pub inbox: ByteQueue,
    /// Whether a nudge is in the inbox and not yet read: at most one is.
    pub wake_pending: AtomicBool,
    /// Set while the dispatcher sleeps with no work out: a submitter that hands work straight
    /// to a worker then nudges it, so it wakes while the worker runs and catches the reply
    /// spinning instead of being woken by it (one wake-up fewer on the way back).
    pub idle_sleep: AtomicBool,
    pub pids: Mutex<Vec<u32>>,
    pub maxtasks: Option<usize>,
    /// Whether submitters may send to workers themselves. Not with task timeouts: the
    /// dispatcher must know every deadline when it goes to sleep.
    pub direct: bool,
}

impl Shared {
    pub(crate) fn nudge(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.inbox.put_parts(&[&inbox::header(Kind::Nudge, 0)]) {
                tracing::error!("cannot wake the pool's dispatcher: {e}");
            }
        }
    }

    pub(crate) fn submit(&self, units: Vec<Unit>) -> Result<(), PoolError> {
        let leftover = {
            let mut st = self.st.lock();
            match st.run {
                RunState::Running => st.queue.extend(units),
                RunState::Closed => return Err(PoolError::Closed),
                RunState::Terminated => return Err(PoolError::Terminated),
            }
            if self.direct {
                st.assign(self.maxtasks, None);
            }
            !st.queue.is_empty()
        };
        if leftover || self.idle_sleep.load(Ordering::Acquire) {
            self.nudge();
        }
        Ok(())
    }
}
