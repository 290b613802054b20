//! A dead holder's (or waiter's) pid taken by an unrelated live process must not pass for it.
//!
//! Each test lets a child die holding something, then starts an *impostor*: a process that got
//! the dead child's pid. Where `/proc/sys/kernel/ns_last_pid` is writable (root in the pid
//! namespace) the pid is aimed at directly; elsewhere processes are created until one gets it
//! (seconds with a `pid_max` of 32768). A test that cannot arrange the reuse fails, saying so.

use std::time::{Duration, Instant};

use multiproc_process::{Process, StartMethod};
use multiproc_shm::Value;
use multiproc_sync::{Condition, Event, Lock, LockResult, RLock, Semaphore};

use crate::support::{Kid, METHODS, PATIENCE};

/// A live process that has the pid of a dead one: our child (`Some`: killed and reaped when
/// dropped), or some other process that took the pid first (`None`: left alone, it is not ours
/// to signal; for the test it is an impostor all the same).
struct Impostor(Option<libc::pid_t>);

impl Drop for Impostor {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: kill and reap our own child, not reaped yet (so `pid` is still it).
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// Fork one child; it stays (paused) if it got `target`, else exits at once and is reaped.
fn fork_for(target: libc::pid_t) -> Option<Impostor> {
    // SAFETY: the child only calls async-signal-safe functions (getpid, pause, _exit).
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => None,
        0 => {
            // SAFETY: as above.
            unsafe {
                if libc::getpid() == target {
                    loop {
                        libc::pause();
                    }
                }
                libc::_exit(0)
            }
        }
        pid if pid == target => Some(Impostor(Some(pid))),
        pid => {
            // SAFETY: reap our own child.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            None
        }
    }
}

/// Start times are in clock ticks (10 ms): a pid that comes round by itself does so long after,
/// but an aimed one could come within the tick its dead owner started in. Wait that out.
fn wait_out_the_tick() {
    std::thread::sleep(Duration::from_millis(30));
}

/// Whether no process (or thread) has pid `pid` now.
fn pid_free(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks existence.
    let r = unsafe { libc::kill(pid, 0) };
    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Start a process that gets pid `target` (free now, or soon: a dead child whose parent is
/// not us may be reaped a moment after we hear of its death).
fn impostor(target: u32) -> Impostor {
    wait_out_the_tick();
    let target = target as libc::pid_t;
    let started = Instant::now();
    while !pid_free(target) {
        assert!(
            started.elapsed() < PATIENCE,
            "pid {target} never became free"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // 1. aim at it (others may take the pid first on a busy machine: try again)
    let mut aimed = false;
    while started.elapsed() < PATIENCE {
        if std::fs::write("/proc/sys/kernel/ns_last_pid", (target - 1).to_string()).is_err() {
            break;
        }
        aimed = true;
        if let Some(i) = fork_for(target) {
            return i;
        }
        // A process started elsewhere (another test's child, say) may have taken it first:
        // then the pid is alive in another process, which is what the test needs.
        if !pid_free(target) {
            return Impostor(None);
        }
    }
    // 2. go round the pids
    while !aimed && started.elapsed() < Duration::from_secs(60) {
        if let Some(i) = fork_for(target) {
            return i;
        }
        if !pid_free(target) {
            return Impostor(None);
        }
    }
    panic!(
        "could not arrange the reuse of pid {target} (aimed at it through ns_last_pid: {aimed}): \
         this test proves nothing here"
    );
}

fn hold_lock((lock, ready): (Lock, Event)) {
    let _g = lock.lock();
    ready.set();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_lock_whose_dead_holders_pid_was_reused_is_owner_died() {
    for m in METHODS {
        let lock = Lock::new().unwrap();
        let ready = Event::new().unwrap();
        let p = Kid::start(Process::new(hold_lock, (lock.clone(), ready.clone())).start_method(m));
        assert!(ready.wait_timeout(PATIENCE), "{m:?}");
        let pid = p.kill();
        let imp = impostor(pid);
        assert_eq!(
            lock.acquire_timeout(Duration::from_secs(3)),
            LockResult::OwnerDied,
            "{m:?}: pid {pid} is alive again, in another process"
        );
        assert_eq!(lock.as_shared_mutex().owner(), Some(std::process::id()));
        drop(imp);
        lock.release().unwrap();
    }
}

fn hold_value((v, ready): (Value<u64>, Event)) {
    let mut g = v.lock();
    *g = 7;
    ready.set();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_value_whose_dead_holders_pid_was_reused_is_owner_died() {
    let v = Value::new(0u64).unwrap();
    let ready = Event::new().unwrap();
    let p = Kid::start(
        Process::new(hold_value, (v.clone(), ready.clone())).start_method(StartMethod::Fork),
    );
    assert!(ready.wait_timeout(PATIENCE));
    let pid = p.kill();
    let _imp = impostor(pid);
    let g = v
        .lock_timeout(Duration::from_secs(3))
        .expect("the lock is taken over, not timed out");
    assert!(g.owner_died());
    assert_eq!(*g, 7);
}

fn hold_rlock((lock, ready): (RLock, Event)) {
    let _a = lock.lock();
    let _b = lock.lock();
    ready.set();
    std::thread::sleep(Duration::from_secs(600));
}

/// Run where the dead owner of `lock` ran (pid `target`, main thread): an RLock must not
/// think we hold it (it would count a re-entry instead of taking the lock over).
fn rlock_in_impostor((lock, target, report): (RLock, u32, Semaphore)) {
    if std::process::id() != target || lock.is_owned() {
        return;
    }
    if lock.acquire_timeout(Duration::from_secs(3)) == LockResult::OwnerDied {
        report.release();
    }
}

#[test]
fn an_rlock_whose_dead_owners_pid_was_reused_is_owner_died() {
    for m in METHODS {
        let lock = RLock::new().unwrap();
        let ready = Event::new().unwrap();
        let p = Kid::start(Process::new(hold_rlock, (lock.clone(), ready.clone())).start_method(m));
        assert!(ready.wait_timeout(PATIENCE), "{m:?}");
        let pid = p.kill();
        let imp = impostor(pid);
        assert_eq!(
            lock.acquire_timeout(Duration::from_secs(3)),
            LockResult::OwnerDied,
            "{m:?}"
        );
        assert!(lock.is_owned());
        lock.release().unwrap();
        drop(imp);
    }
    // and a process that got the dead owner's pid (and runs on its main thread, as it did)
    // is not its owner either
    let lock = RLock::new().unwrap();
    let ready = Event::new().unwrap();
    let p = Kid::start(Process::new(hold_rlock, (lock.clone(), ready.clone())));
    assert!(ready.wait_timeout(PATIENCE));
    let pid = p.kill();
    let report = Semaphore::new(0).unwrap();
    wait_out_the_tick();
    let started = Instant::now();
    while !pid_free(pid as libc::pid_t) && started.elapsed() < PATIENCE {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut got = false;
    while started.elapsed() < PATIENCE {
        if std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).is_err() {
            break;
        }
        let q = Kid::start(Process::new(
            rlock_in_impostor,
            (lock.clone(), pid, report.clone()),
        ));
        assert_eq!(q.join(), 0);
        if q.0.pid() == Some(pid) {
            got = true;
            break;
        }
    }
    assert!(
        got,
        "could not start a process with pid {pid} (ns_last_pid not writable, or always raced): \
         the same-pid RLock owner case was not exercised"
    );
    assert!(
        report.acquire_timeout(Duration::ZERO),
        "the process with the dead owner's pid took the lock over"
    );
}

fn wait_then_die((c, ready): (Condition, Semaphore)) {
    assert!(c.acquire_timeout(PATIENCE).acquired());
    ready.release(); // still holding the lock: the parent cannot notify before we wait
    let _ = c.wait_timeout(Duration::from_secs(600));
}

#[test]
fn a_condition_waiter_whose_pid_was_reused_after_it_died_is_not_notified() {
    let c = Condition::new().unwrap();
    let ready = Semaphore::new(0).unwrap();
    let p = Kid::start(Process::new(wait_then_die, (c.clone(), ready.clone())));
    assert!(ready.acquire_timeout(PATIENCE));
    // it releases the lock when it starts waiting
    assert!(c.acquire_timeout(PATIENCE).acquired());
    c.release().unwrap();
    let pid = p.kill();
    let _imp = impostor(pid);
    assert!(c.acquire_timeout(PATIENCE).acquired());
    assert_eq!(c.notify(1), Ok(0), "nobody waits: the waiter died");
    c.release().unwrap();
}
