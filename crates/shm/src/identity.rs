//! `ProcessId`: who a process is, such that a recycled pid cannot pass for a dead process.

use crate::sys;

/// A process's identity: its pid and, on Linux, its start time (so that a process which got
/// the pid of a dead one, after the pids wrapped, is not taken for it). What the locks record
/// of their holder, and what waiters compare.
///
/// It is one `u64` ([`to_bits`](Self::to_bits)): the pid in the low 32 bits, the low 32 bits
/// of the start time (clock ticks since boot, from `/proc/<pid>/stat`) in the high 32 bits. On
/// Windows the high half is the low 32 bits of the creation time (`GetProcessTimes`, in 100 ns
/// units). A start time of 0 means unknown (no `/proc`, or another Unix): then the pid alone
/// decides.
/// Processes compare their start times as seen in their own time namespace; processes that
/// share locks share one.
///
/// ```
/// use multiproc::shm::ProcessId;
/// let me = ProcessId::current();
/// assert_eq!(me.pid(), std::process::id());
/// assert!(me.is_alive());
/// assert_eq!(ProcessId::from_bits(me.to_bits()), Some(me));
/// assert_eq!(ProcessId::from_bits(0), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcessId(u64);

impl ProcessId {
    /// This process. After the first call in a process, one memory load (the value is
    /// cached; on Unix a `fork` handler clears the cache in children).
    #[inline]
    pub fn current() -> ProcessId {
        ProcessId(sys::identity())
    }

    /// Its pid.
    pub fn pid(self) -> u32 {
        self.0 as u32
    }

    /// Whether it still runs: a process with this pid exists, is not a zombie, and started
    /// when this identity says (a few system calls: reads `/proc/<pid>/stat` on Linux; on
    /// Windows opens the process, polls its handle and reads its creation time).
    pub fn is_alive(self) -> bool {
        sys::identity_alive(self.0)
    }

    /// As one word (never 0).
    pub fn to_bits(self) -> u64 {
        self.0
    }

    /// From [`to_bits`](Self::to_bits); `None` for 0 (or anything without a pid).
    pub fn from_bits(bits: u64) -> Option<ProcessId> {
        (bits as u32 != 0).then_some(ProcessId(bits))
    }
}
