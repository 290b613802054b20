//! The dispatcher: the thread that watches the workers. It reads their replies from the inbox
//! and delivers them, notices deaths and timeouts, replaces workers, re-runs what a dead worker
//! did not finish, and assigns (see `scheduler`) what submitters could not.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_sync::QueueError;

use crate::builder::Config;
use crate::control::before;
use crate::inbox::{self, Kind};
use crate::result::Sink;
use crate::scheduler::{Busy, Lane, RunState, Shared, Unit};
use crate::worker::{Stop, Worker};
use crate::PoolError;

/// While workers hold work, the dispatcher looks at least this often whether one has died (a
/// dead worker sends nothing: its death is seen here); an idle pool, at `IDLE_CHECK` (as
/// CPython's pool does), so a worker killed while idle is replaced and reaped without waiting
/// for work. (The inbox's own sleep wakes every 50 ms anyway: this costs no extra wake-up.)
const LIVENESS_CHECK: Duration = Duration::from_millis(20);
const IDLE_CHECK: Duration = Duration::from_millis(100);
/// Inbox messages handled in one cycle at most, so deadlines and deaths are looked at between.
const DRAIN_MAX: usize = 256;
/// After a replacement could not start, how long before it is tried again (at a look for
/// deaths: the worker it replaces has ended).
const RETRY_START: Duration = Duration::from_millis(50);

/// The thread that watches the workers: it reads their replies from the inbox and delivers
/// them, notices deaths and timeouts, replaces workers, and assigns what submitters could not.
pub(crate) struct Dispatcher {
    pub shared: Arc<Shared>,
    pub config: Config,
    pub workers: Vec<Worker>,
    /// The id the next started worker gets.
    pub next_id: u64,
    /// Sinks that got results in this cycle: their consumers are woken once, at its end.
    pub to_wake: Vec<Arc<dyn Sink>>,
    /// When the workers were last checked for deaths.
    pub last_check: Instant,
    /// Per worker: when to try again to start its replacement, after a start that failed.
    pub retry_at: Vec<Option<Instant>>,
}

impl Dispatcher {
    pub(crate) fn run(mut self) {
        loop {
            let state = {
                let mut st = self.shared.st.lock();
                if st.run != RunState::Terminated {
                    st.assign(self.config.maxtasks, self.config.task_timeout);
                }
                let idle = st.queue.is_empty() && st.lanes.iter().all(|l| l.busy.is_empty());
                (st.run, idle)
            };
            match state {
                (RunState::Terminated, _) => return self.terminate(),
                (RunState::Closed, true) => return self.retire_all(),
                (_, idle) => self.wait_and_handle(idle),
            }
        }
    }

    fn wait_and_handle(&mut self, idle: bool) {
        let now = Instant::now();
        let deadline = {
            let st = self.shared.st.lock();
            let timeout = st
                .lanes
                .iter()
                .filter_map(|l| l.busy.front().and_then(|b| b.deadline))
                .min();
            // (and when a unit waiting behind a long one may go to an idle worker)
            match (timeout, st.next_steal()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        let every = if idle { IDLE_CHECK } else { LIVENESS_CHECK };
        let check = every.saturating_sub(self.last_check.elapsed());
        let timeout = Some(deadline.map_or(check, |d| d.saturating_duration_since(now).min(check)));
        // Wait for one message, then take what else is there without waiting. While workers
        // hold work, a reply is due within microseconds: spin a moment before sleeping. An idle
        // pool sleeps at once, leaving the CPU to the threads about to submit.
        let shared = self.shared.clone();
        let mut got = match idle {
            false => shared.inbox.get_with(timeout, |m| self.on_message(m)),
            true => {
                shared.idle_sleep.store(true, Ordering::Release);
                let got = shared
                    .inbox
                    .get_with_sleeping(timeout, |m| self.on_message(m));
                shared.idle_sleep.store(false, Ordering::Release);
                got
            }
        };
        let mut n = 1;
        while got.is_ok() && n < DRAIN_MAX {
            got = shared.inbox.try_get_with(|m| self.on_message(m));
            n += 1;
        }
        if let Err(e @ (QueueError::Broken(_) | QueueError::Closed)) = got {
            // Only memory corruption gets here (inbox messages fit the ring whole): stop
            // rather than hang, failing what is out.
            tracing::error!("the pool's inbox failed: {e}");
            self.shared.st.lock().run = RunState::Terminated;
        }
        for sink in self.to_wake.drain(..) {
            sink.wake();
        }
        let now = Instant::now();
        let expired: Vec<usize> = {
            let st = self.shared.st.lock();
            (0..st.lanes.len())
                .filter(|&i| {
                    st.lanes[i]
                        .busy
                        .front()
                        .and_then(|b| b.deadline)
                        .is_some_and(|d| now >= d)
                })
                .collect()
        };
        for i in expired {
            let code = self.workers[i].kill();
            tracing::warn!(code, "task timed out; worker killed");
            self.fail_front(i, PoolError::TaskTimeout);
            self.replace(i);
        }
        if self.last_check.elapsed() >= every {
            self.check_deaths();
        }
    }

    /// Replace every worker that has ended, failing the unit it was running.
    fn check_deaths(&mut self) {
        self.last_check = Instant::now();
        let shared = self.shared.clone();
        for i in 0..self.workers.len() {
            if self.retry_at[i].is_some_and(|t| self.last_check < t) {
                continue;
            }
            let Some(code) = self.workers[i].ended() else {
                continue;
            };
            // What it replied before dying is in the inbox, ahead of anything it could not
            // send: deliver that first, so the unit failed is the one it was running.
            let id = self.workers[i].id;
            while shared.inbox.try_get_with(|m| self.on_message(m)).is_ok() {}
            if self.workers[i].id == id {
                self.fail_and_replace(i, code);
            }
        }
        for sink in self.to_wake.drain(..) {
            sink.wake();
        }
    }

    /// Handle one inbox message.
    fn on_message(&mut self, msg: &[u8]) {
        let Some((kind, id, body)) = inbox::parse(msg) else {
            tracing::error!("malformed message in the pool's inbox; dropped");
            return;
        };
        if kind == Kind::Nudge {
            // At most one nudge is in the inbox (a nudge is sent only when it turns the flag
            // on): re-arm. A nudge racing with us either found the flag still set, and its work
            // is picked up by the `assign` that follows this cycle, or sends a fresh one.
            self.shared.wake_pending.store(false, Ordering::Release);
            return;
        }
        // A message from a worker since replaced (killed for a timeout) is stale: its unit
        // has already failed.
        let Some(i) = self.workers.iter().position(|w| w.id == id) else {
            return;
        };
        match kind {
            Kind::Reply => self.on_reply(i, body),
            _ => match self.workers[i].conn.recv_bytes() {
                Ok(reply) => self.on_reply(i, &reply),
                Err(_) => {
                    // end of file: the worker died while sending its reply
                    let code = self.workers[i].reap(Stop::Retire);
                    self.fail_and_replace(i, code);
                }
            },
        }
    }

    /// Worker `i` answered the oldest unit it holds with `reply`.
    fn on_reply(&mut self, i: usize, reply: &[u8]) {
        let (done, retire) = {
            let mut st = self.shared.st.lock();
            let lane = &mut st.lanes[i];
            let Some(b) = lane.busy.pop_front() else {
                tracing::error!("a pool worker replied to a unit it was not given; ignored");
                return;
            };
            lane.tasks_done += 1;
            lane.front_done();
            if let (Some(t), Some(next)) = (self.config.task_timeout, lane.busy.front_mut()) {
                next.deadline = Some(lane.front_since + t);
            }
            let retire = self.config.maxtasks.is_some_and(|m| lane.tasks_done >= m);
            if retire {
                lane.open = false;
            }
            (b, retire)
        };
        done.unit
            .sink
            .deliver_quiet(done.unit.first, done.unit.n, Ok(reply));
        if !self.to_wake.iter().any(|w| Arc::ptr_eq(w, &done.unit.sink)) {
            self.to_wake.push(done.unit.sink.clone());
        }
        if retire {
            self.workers[i].retire();
            self.replace(i);
        }
    }

    /// Take worker `i`'s units off it (it is being killed or has died): the units waiting
    /// behind the front one never started, so they go back to the front of the queue for
    /// another worker; the front one is returned, with whether the worker had started it.
    fn take_units(&mut self, i: usize) -> Option<(Busy, bool)> {
        let mut st = self.shared.st.lock();
        let lane = &mut st.lanes[i];
        lane.open = false;
        let mut busy = std::mem::take(&mut lane.busy);
        let front = busy.pop_front();
        let started = front
            .as_ref()
            .is_some_and(|b| before(b.msg, lane.control.started()));
        for b in busy.into_iter().rev() {
            st.queue.push_front(b.unit);
        }
        front.map(|b| (b, started))
    }

    /// Fail the unit worker `i` was running with `err` (a timeout).
    fn fail_front(&mut self, i: usize, err: PoolError) {
        if let Some((b, _)) = self.take_units(i) {
            b.unit.sink.deliver(b.unit.first, b.unit.n, Err(err));
        }
    }

    /// Worker `i` died with `exitcode`. Only the item it was running fails: what it had not
    /// started runs elsewhere, and so do the items of its unit whose results died with it.
    /// The control block says which item ran (see `control`): the items before it (they
    /// completed) go back as one unit, the item fails with [`PoolError::WorkerDied`], those
    /// after it go back one per unit. When no item was running (it died reading or decoding
    /// the unit, or encoding the results), every item goes back as a unit of its own, and a
    /// lone unit that kills a worker that way a second time fails. Each death thus fails an
    /// item or leaves smaller units behind: a crash never loops.
    fn on_death(&mut self, i: usize, exitcode: i32) {
        tracing::warn!(exitcode, "pool worker died; replacing it");
        let control = self.workers[i].control.clone();
        let Some((b, started)) = self.take_units(i) else {
            return;
        };
        let mut unit = b.unit;
        if !started && !unit.retried {
            // It died before it started this one: it runs elsewhere, intact. (Once: a unit
            // whose mere reading kills workers is then handled as one that ran.)
            unit.retried = true;
            self.shared.st.lock().queue.push_front(unit);
            return;
        }
        let err = PoolError::WorkerDied { exitcode };
        let running = control
            .marked_item(b.msg)
            .map(|k| k as usize)
            .filter(|&k| k < unit.n);
        let (culprit, ranges, retried): (Option<usize>, Vec<(usize, usize)>, bool) = match running {
            Some(k) => {
                let mut r = Vec::with_capacity(unit.n - k);
                if k > 0 {
                    r.push((0, k));
                }
                r.extend((k + 1..unit.n).map(|j| (j, 1)));
                (Some(k), r, false)
            }
            None if unit.n == 1 && unit.retried => (Some(0), Vec::new(), true),
            None => (None, (0..unit.n).map(|j| (j, 1)).collect(), true),
        };
        let parts = match (unit.split)(&unit.payload, &unit.handles, &ranges) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("cannot re-encode the items of a dead worker's unit: {e}");
                return unit.sink.deliver(unit.first, unit.n, Err(err));
            }
        };
        if let Some(k) = culprit {
            unit.sink.deliver(unit.first + k, 1, Err(err));
        }
        let mut st = self.shared.st.lock();
        for (&(first, n), (payload, handles)) in ranges.iter().zip(parts).rev() {
            st.queue.push_front(Unit {
                first: unit.first + first,
                n,
                payload,
                handles,
                sink: unit.sink.clone(),
                split: unit.split,
                retried,
            });
        }
    }

    fn fail_and_replace(&mut self, i: usize, exitcode: i32) {
        self.on_death(i, exitcode);
        self.replace(i);
    }

    fn replace(&mut self, i: usize) {
        let id = self.next_id;
        self.next_id += 1;
        let started = Worker::start(
            &self.config.kind,
            self.config.init.as_ref(),
            &self.shared.inbox,
            id,
        );
        match started {
            Ok(w) => {
                self.retry_at[i] = None;
                let lane = Lane::new(w.conn.clone(), w.control.clone());
                let old = std::mem::replace(&mut self.workers[i], w);
                self.shared.st.lock().lanes[i] = lane;
                drop(old);
                *self.shared.pids.lock() = self.workers.iter().filter_map(|w| w.pid()).collect();
            }
            Err(e) => {
                tracing::error!("cannot replace a pool worker: {e}");
                // The ended worker stays in its place, its lane closed; the next look for
                // deaths past `RETRY_START` tries again. What is queued waits for the workers
                // still there; with none left, it fails rather than hang (later work tries
                // again).
                self.retry_at[i] = Some(Instant::now() + RETRY_START);
                let pending: Vec<Unit> = {
                    let mut st = self.shared.st.lock();
                    if st.lanes.iter().any(|l| l.open) {
                        Vec::new()
                    } else {
                        st.queue.drain(..).collect()
                    }
                };
                for u in pending {
                    u.sink.deliver(u.first, u.n, Err(e.clone()));
                }
            }
        }
    }

    fn terminate(mut self) {
        // (signal all, then wait for all: the workers die in parallel)
        for w in &self.workers {
            w.stop(Stop::Kill);
        }
        for w in &mut self.workers {
            w.reap(Stop::Kill);
        }
        let (busy, pending): (Vec<Busy>, Vec<Unit>) = {
            let mut st = self.shared.st.lock();
            let busy = st.lanes.iter_mut().flat_map(|l| l.busy.drain(..)).collect();
            (busy, st.queue.drain(..).collect())
        };
        for u in busy.into_iter().map(|b| b.unit).chain(pending) {
            u.sink.deliver(u.first, u.n, Err(PoolError::Terminated));
        }
    }

    fn retire_all(mut self) {
        for w in &self.workers {
            w.stop(Stop::Retire);
        }
        for w in &mut self.workers {
            w.reap(Stop::Retire);
        }
    }
}
