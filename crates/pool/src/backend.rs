//! The seam between the [`Pool`](crate::Pool)'s API and where its work runs: a [`Backend`]
//! takes encoded units and delivers their replies to the units' sinks. The local backend
//! ([`Local`]: worker processes or threads of this machine, a dispatcher thread) and the Redis
//! Streams backend (`redis::Driver`, feature `redis`) implement it; an MPI backend would be a
//! third, and no caller of the pool would change.

use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use crate::scheduler::{RunState, Shared, Unit, MAX_DEPTH};
use crate::PoolError;

/// What the pool's mapping calls need from an engine.
pub(crate) trait Backend: Send + Sync {
    /// Queue `units`; each one's reply goes to its sink exactly once (or an error does).
    fn submit(&self, units: Vec<Unit>) -> Result<(), PoolError>;
    /// Running, closed or terminated.
    fn run_state(&self) -> RunState;
    /// No new units; what was submitted still completes.
    fn close(&self);
    /// Stop now: what has not completed fails with [`PoolError::Terminated`]; returns when the
    /// backend's own threads and processes are gone.
    fn terminate(&self);
    /// Wait for the end after `close` or `terminate`.
    fn join(&self);
    /// The pids of local worker processes (empty where there are none).
    fn pids(&self) -> Vec<u32> {
        Vec::new()
    }
    /// Chunks an `imap` of a pool of `workers` reads ahead at most.
    fn imap_window(&self, workers: usize) -> usize {
        workers * MAX_DEPTH * 2
    }
    /// The local pool's shared state (for the progress bar), if this is the local backend.
    #[cfg_attr(not(feature = "progress-bar"), allow(dead_code))]
    fn local(&self) -> Option<&Shared> {
        None
    }
    /// Counters of the Redis backend.
    #[cfg(feature = "redis")]
    fn redis_stats(&self) -> Option<crate::redis::RedisStats> {
        None
    }
}

/// Worker processes (or threads) of this machine, fed through their pipes by the scheduler and
/// watched by the dispatcher thread.
pub(crate) struct Local {
    pub shared: Arc<Shared>,
    pub dispatcher: Mutex<Option<JoinHandle<()>>>,
}

impl Backend for Local {
    fn submit(&self, units: Vec<Unit>) -> Result<(), PoolError> {
        self.shared.submit(units)
    }

    fn run_state(&self) -> RunState {
        self.shared.st.lock().run
    }

    fn close(&self) {
        let mut st = self.shared.st.lock();
        if st.run == RunState::Running {
            st.run = RunState::Closed;
        }
        drop(st);
        self.shared.nudge();
    }

    fn terminate(&self) {
        self.shared.st.lock().run = RunState::Terminated;
        self.shared.nudge();
        self.join();
    }

    fn join(&self) {
        if let Some(h) = self.dispatcher.lock().take() {
            let _ = h.join();
        }
    }

    fn pids(&self) -> Vec<u32> {
        self.shared.pids.lock().clone()
    }

    fn local(&self) -> Option<&Shared> {
        Some(&self.shared)
    }
}
