//! macOS: sleeping on a 32-bit word shared by several processes, and waking its sleepers.
//!
//! Two kernel interfaces, the newest the system has, looked up once per process at run time
//! (with `dlsym`, so a binary built here still loads on a system that lacks the newer symbols):
//!
//! * `os_sync_wait_on_address` / `os_sync_wait_on_address_with_timeout` /
//!   `os_sync_wake_by_address_any` / `os_sync_wake_by_address_all`, public since macOS 14.4.
//!   We follow Apple's header `<os/os_sync_wait_on_address.h>`: the `..._SHARED` flags for a
//!   word in memory that several processes map (the same flag on both sides), a size of 4, a
//!   timeout in nanoseconds that must not be zero, a return of -1 with `errno` on error,
//!   `ETIMEDOUT` for a timeout, `EINTR` and `EFAULT` as early returns to retry after reading
//!   the word again, and `ENOENT` from a wake that found no waiter.
//! * before that, `__ulock_wait2` (macOS 11, timeout in nanoseconds) or `__ulock_wait`
//!   (macOS 10.12, timeout in microseconds) and `__ulock_wake`, with
//!   `UL_COMPARE_AND_WAIT_SHARED`, `ULF_WAKE_ALL` and `ULF_NO_ERRNO` (errors returned as
//!   `-errno`), as declared in xnu's `bsd/sys/ulock.h`: a timeout of 0 means none, so a shorter
//!   one than the unit is rounded up; `__ulock_wake` returns `-ENOENT` when nobody waited.
//!
//! Every process of one system makes the same choice (the same C library answers), so a waiter
//! and its waker always use the same interface on the same word.
//!
//! What a wake reports: the OS says only whether it woke someone (`ENOENT` when nobody
//! waited), not how many it woke when it wakes all. So a wake of one returns 1 or 0, a wake of
//! `n` wakes one at a time and counts, and a wake of all returns 1 when it woke any (a lower
//! bound: callers only compare the count with 0, and 0 is exact). An error the OS should never
//! give (`EINVAL`) counts as "maybe woke" (1): a caller that saw 0 would clear its "someone
//! waits" flag, which is only safe when nobody can be asleep.

use std::time::Duration;

/// The longest single sleep: what `__ulock_wait` can express (`u32::MAX` µs, about 71
/// minutes). A longer timeout sleeps this long and reports a spurious wake-up, never a
/// timeout, so callers loop with what is left (as they do for any early return).
pub(super) const LONGEST_SLEEP: Duration = Duration::from_micros(u32::MAX as u64);

/// A timeout as the OS takes it: nanoseconds (≥ 1, since 0 means "none" or is an error) and
/// whether it was cut to [`LONGEST_SLEEP`].
pub(super) fn timeout_ns(t: Duration) -> (u64, bool) {
    let cut = t > LONGEST_SLEEP;
    let ns = t.min(LONGEST_SLEEP).as_nanos() as u64;
    (ns.max(1), cut)
}

/// A timeout in microseconds for `__ulock_wait` (≥ 1, rounded up: 0 would mean no timeout), and
/// whether it was cut to [`LONGEST_SLEEP`].
pub(super) fn timeout_us(t: Duration) -> (u32, bool) {
    let cut = t > LONGEST_SLEEP;
    let t = t.min(LONGEST_SLEEP);
    let us = t.as_micros() + u128::from(t.subsec_nanos() % 1000 != 0);
    (us.clamp(1, u32::MAX as u128) as u32, cut)
}

/// What a wait's outcome means to our callers: `false` only for a timeout that really expired
/// (not one cut to [`LONGEST_SLEEP`]); woken, value differed, interrupted (`EINTR`), transient
/// `EFAULT` or `ENOMEM` are all early returns the caller re-checks.
pub(super) fn wait_result(errno: Option<i32>, cut: bool) -> bool {
    errno != Some(libc::ETIMEDOUT) || cut
}

/// What a wake of one waiter counts: 1 if it woke one, 0 if nobody waited (`ENOENT`), and 1
/// ("maybe") for any other error, so a caller never takes it for an empty word.
pub(super) fn woke_one(errno: Option<i32>) -> usize {
    usize::from(errno != Some(libc::ENOENT))
}

#[cfg(target_os = "macos")]
pub(super) use imp::{wait, wake};

#[cfg(target_os = "macos")]
mod imp {
    use std::ffi::{c_int, c_void, CStr};
    use std::sync::atomic::{AtomicPtr, Ordering};
    use std::time::Duration;

    use super::{timeout_ns, timeout_us, wait_result, woke_one};

    // <os/os_sync_wait_on_address.h> and <os/clock.h>
    const OS_SYNC_WAIT_ON_ADDRESS_SHARED: u32 = 0x1;
    const OS_SYNC_WAKE_BY_ADDRESS_SHARED: u32 = 0x1;
    const OS_CLOCK_MACH_ABSOLUTE_TIME: u32 = 32;
    // xnu bsd/sys/ulock.h
    const UL_COMPARE_AND_WAIT_SHARED: u32 = 3;
    const ULF_WAKE_ALL: u32 = 0x0000_0100;
    const ULF_NO_ERRNO: u32 = 0x0100_0000;
    const UL_WAIT: u32 = UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO;

    type OsWait = unsafe extern "C" fn(*mut c_void, u64, usize, u32) -> c_int;
    type OsWaitTimeout = unsafe extern "C" fn(*mut c_void, u64, usize, u32, u32, u64) -> c_int;
    type OsWake = unsafe extern "C" fn(*mut c_void, usize, u32) -> c_int;
    type UlWait = unsafe extern "C" fn(u32, *mut c_void, u64, u32) -> c_int;
    type UlWait2 = unsafe extern "C" fn(u32, *mut c_void, u64, u64, u64) -> c_int;
    type UlWake = unsafe extern "C" fn(u32, *mut c_void, u64) -> c_int;

    enum Api {
        /// macOS 14.4 and later.
        OsSync {
            wait: OsWait,
            wait_timeout: OsWaitTimeout,
            wake_any: OsWake,
            wake_all: OsWake,
        },
        /// macOS 10.12 to 14.3 (`wait2` from macOS 11).
        Ulock {
            wait: UlWait,
            wait2: Option<UlWait2>,
            wake: UlWake,
        },
        /// Neither (older than any macOS Rust supports): short sleeps.
        Poll,
    }

    /// The address of `name` in the loaded images, if any.
    fn symbol(name: &CStr) -> Option<*mut c_void> {
        // SAFETY: dlsym with the default handle and a NUL-terminated name; it only looks up.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        (!p.is_null()).then_some(p)
    }

    /// The interface this process uses, looked up on first use. Without a lock (a `OnceLock`
    /// being filled by another thread at a `fork` would stay "being filled" for ever in the
    /// child): threads that race look it up each and agree, the first stored wins.
    fn api() -> &'static Api {
        static API: AtomicPtr<Api> = AtomicPtr::new(std::ptr::null_mut());
        let p = API.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: stored below from a leaked box, never freed.
            return unsafe { &*p };
        }
        let mine = Box::into_raw(Box::new(lookup()));
        match API.compare_exchange(
            std::ptr::null_mut(),
            mine,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            // SAFETY: just leaked, never freed.
            Ok(_) => unsafe { &*mine },
            Err(theirs) => {
                // SAFETY: `mine` was never shared; `theirs` is a leaked box, never freed.
                unsafe {
                    drop(Box::from_raw(mine));
                    &*theirs
                }
            }
        }
    }

    fn lookup() -> Api {
        // (For each transmute below: the symbol is the C function of that name, whose signature,
        // from the headers named in the module docs, is the pointer type it becomes; a data
        // pointer and a function pointer have the same size here.)
        let os = (
            symbol(c"os_sync_wait_on_address"),
            symbol(c"os_sync_wait_on_address_with_timeout"),
            symbol(c"os_sync_wake_by_address_any"),
            symbol(c"os_sync_wake_by_address_all"),
        );
        if let (Some(w), Some(wt), Some(wa), Some(wl)) = os {
            // SAFETY: see above: the os_sync functions.
            return unsafe {
                Api::OsSync {
                    wait: std::mem::transmute::<*mut c_void, OsWait>(w),
                    wait_timeout: std::mem::transmute::<*mut c_void, OsWaitTimeout>(wt),
                    wake_any: std::mem::transmute::<*mut c_void, OsWake>(wa),
                    wake_all: std::mem::transmute::<*mut c_void, OsWake>(wl),
                }
            };
        }
        match (symbol(c"__ulock_wait"), symbol(c"__ulock_wake")) {
            // SAFETY: see above: the ulock functions.
            (Some(w), Some(k)) => unsafe {
                Api::Ulock {
                    wait: std::mem::transmute::<*mut c_void, UlWait>(w),
                    wait2: symbol(c"__ulock_wait2")
                        .map(|p| std::mem::transmute::<*mut c_void, UlWait2>(p)),
                    wake: std::mem::transmute::<*mut c_void, UlWake>(k),
                }
            },
            _ => {
                tracing::warn!("no __ulock_wait on this system: waits poll");
                Api::Poll
            }
        }
    }

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    /// Sleep while the aligned 32-bit word at `addr` (in memory several processes may map)
    /// holds `expected`, at most `timeout`. False only when the timeout expired.
    pub(in super::super) fn wait(addr: *mut u32, expected: u32, timeout: Option<Duration>) -> bool {
        let a = addr.cast::<c_void>();
        let v = u64::from(expected);
        if timeout == Some(Duration::ZERO) {
            // (0 is an error for os_sync and "no timeout" for ulock) the answer without asking
            // SAFETY: a valid aligned word, read atomically.
            let now = unsafe { std::sync::atomic::AtomicU32::from_ptr(addr) }
                .load(std::sync::atomic::Ordering::Acquire);
            return now != expected;
        }
        match api() {
            Api::OsSync {
                wait, wait_timeout, ..
            } => {
                let (r, cut) = match timeout {
                    // SAFETY: a valid word aligned to its size 4, the flag for shared memory.
                    None => (
                        unsafe { wait(a, v, 4, OS_SYNC_WAIT_ON_ADDRESS_SHARED) },
                        false,
                    ),
                    Some(t) => {
                        let (ns, cut) = timeout_ns(t);
                        // SAFETY: as above, with a clock the header names and ns ≥ 1.
                        let r = unsafe {
                            wait_timeout(
                                a,
                                v,
                                4,
                                OS_SYNC_WAIT_ON_ADDRESS_SHARED,
                                OS_CLOCK_MACH_ABSOLUTE_TIME,
                                ns,
                            )
                        };
                        (r, cut)
                    }
                };
                wait_result((r < 0).then(errno), cut)
            }
            Api::Ulock { wait, wait2, .. } => {
                let (r, cut) = match (timeout, wait2) {
                    // SAFETY: a valid aligned word; 0: no timeout.
                    (None, _) => (unsafe { wait(UL_WAIT, a, v, 0) }, false),
                    (Some(t), Some(wait2)) => {
                        let (ns, cut) = timeout_ns(t);
                        // SAFETY: a valid aligned word, ns ≥ 1, no second value.
                        (unsafe { wait2(UL_WAIT, a, v, ns, 0) }, cut)
                    }
                    (Some(t), None) => {
                        let (us, cut) = timeout_us(t);
                        // SAFETY: a valid aligned word, µs ≥ 1.
                        (unsafe { wait(UL_WAIT, a, v, us) }, cut)
                    }
                };
                // (ULF_NO_ERRNO: -errno on error, else the number of waiters left)
                wait_result((r < 0).then_some(-r), cut)
            }
            Api::Poll => super::super::poll_wait(
                // SAFETY: as above.
                unsafe { std::sync::atomic::AtomicU32::from_ptr(addr) },
                expected,
                timeout,
            ),
        }
    }

    /// Wake up to `n` sleepers on the word at `addr` (all for `n ≥ i32::MAX`); how many woke
    /// (see the module docs for what the count means).
    pub(in super::super) fn wake(addr: *mut u32, n: u32) -> usize {
        let a = addr.cast::<c_void>();
        let all = n >= i32::MAX as u32;
        match api() {
            Api::OsSync {
                wake_any, wake_all, ..
            } => {
                let once = |f: OsWake| loop {
                    // SAFETY: a valid aligned word, size 4, the flag its waiters used.
                    if unsafe { f(a, 4, OS_SYNC_WAKE_BY_ADDRESS_SHARED) } == 0 {
                        return 1;
                    }
                    match errno() {
                        libc::EINTR => continue,
                        e => return woke_one(Some(e)),
                    }
                };
                if all {
                    once(*wake_all)
                } else {
                    count(n, || once(*wake_any))
                }
            }
            Api::Ulock { wake, .. } => {
                let once = |flags: u32| loop {
                    // SAFETY: a valid aligned word, the operation its waiters used.
                    let r =
                        unsafe { wake(UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO | flags, a, 0) };
                    if r >= 0 {
                        return 1;
                    }
                    match -r {
                        libc::EINTR => continue,
                        e => return woke_one(Some(e)),
                    }
                };
                if all {
                    once(ULF_WAKE_ALL)
                } else {
                    count(n, || once(0))
                }
            }
            // sleepers poll; report a possible sleeper, so no caller drops its flag
            Api::Poll => usize::from(n > 0),
        }
    }

    /// Wake one at a time, up to `n`, until nobody is left; how many.
    fn count(n: u32, mut one: impl FnMut() -> usize) -> usize {
        let mut k = 0;
        while k < n as usize {
            if one() == 0 {
                break;
            }
            k += 1;
        }
        k
    }

    #[cfg(test)]
    mod tests {
        use super::{wait, wake};
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::sync::Arc;
        use std::time::{Duration, Instant};

        #[test]
        fn a_wait_times_out_returns_on_a_changed_word_and_a_lone_wake_wakes_nobody() {
            let w = AtomicU32::new(7);
            assert!(!wait(w.as_ptr(), 7, Some(Duration::from_millis(5))));
            assert!(!wait(w.as_ptr(), 7, Some(Duration::ZERO)));
            assert!(wait(w.as_ptr(), 8, Some(Duration::from_secs(5))));
            assert!(wait(w.as_ptr(), 8, None));
            assert_eq!(wake(w.as_ptr(), 1), 0);
            assert_eq!(wake(w.as_ptr(), u32::MAX), 0);
        }

        #[test]
        fn a_sleeping_thread_is_woken_and_counted() {
            let w = Arc::new(AtomicU32::new(0));
            let w2 = w.clone();
            let t = std::thread::spawn(move || {
                while w2.load(Ordering::Acquire) == 0 {
                    wait(w2.as_ptr(), 0, Some(Duration::from_secs(10)));
                }
            });
            // a wake that finds the thread asleep counts it; before that it finds nobody
            let start = Instant::now();
            loop {
                w.store(1, Ordering::Release);
                if wake(w.as_ptr(), 1) == 1 || t.is_finished() {
                    break;
                }
                assert!(start.elapsed() < Duration::from_secs(10), "never woke");
                w.store(0, Ordering::Release);
                std::thread::sleep(Duration::from_millis(1));
            }
            w.store(1, Ordering::Release);
            wake(w.as_ptr(), u32::MAX);
            t.join().unwrap();
        }

        #[test]
        fn a_process_sleeping_on_a_shared_word_is_woken_by_another() {
            // SAFETY: a fresh shared anonymous page, unmapped at the end.
            let page = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_ANON,
                    -1,
                    0,
                )
            };
            assert_ne!(page, libc::MAP_FAILED);
            let word = page.cast::<u32>();
            // SAFETY: the page is mapped, aligned and zeroed.
            let w = unsafe { AtomicU32::from_ptr(word) };
            // SAFETY: the child only waits on the word and exits (no allocation, no lock).
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // asleep until the parent changes the word (or 10 s pass: exit code 1)
                let end = Instant::now() + Duration::from_secs(10);
                while w.load(Ordering::Acquire) == 0 && Instant::now() < end {
                    wait(word, 0, Some(Duration::from_secs(10)));
                }
                // SAFETY: leaving the forked child at once.
                unsafe { libc::_exit(i32::from(w.load(Ordering::Acquire) != 1)) };
            }
            assert!(pid > 0);
            // wake it once it sleeps: a wake that finds it counts 1
            let start = Instant::now();
            while wake(word, 1) == 0 {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "child never slept"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            w.store(1, Ordering::Release);
            // (the wake above may have come between its check and its sleep: wake again)
            while wake(word, u32::MAX) != 0 {}
            let mut status = 0;
            // SAFETY: reaping our child with a valid out-pointer.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
            // SAFETY: unmapping the page mapped above.
            unsafe { libc::munmap(page, 4096) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_and_are_cut_to_what_ulock_takes() {
        assert_eq!(timeout_ns(Duration::from_nanos(1)), (1, false));
        assert_eq!(timeout_ns(Duration::from_millis(5)), (5_000_000, false));
        assert_eq!(timeout_us(Duration::from_nanos(1)), (1, false));
        assert_eq!(timeout_us(Duration::from_nanos(1500)), (2, false));
        assert_eq!(timeout_us(Duration::from_micros(7)), (7, false));
        assert_eq!(timeout_us(LONGEST_SLEEP), (u32::MAX, false));
        let long = Duration::from_secs(86_400);
        assert_eq!(timeout_us(long), (u32::MAX, true));
        assert_eq!(timeout_ns(long), (LONGEST_SLEEP.as_nanos() as u64, true));
        assert!(timeout_ns(Duration::MAX).1);
    }

    #[test]
    fn only_a_real_timeout_is_a_timeout_and_only_enoent_is_nobody() {
        assert!(!wait_result(Some(libc::ETIMEDOUT), false));
        // a cut timeout expired early: a spurious wake-up, the caller waits again
        assert!(wait_result(Some(libc::ETIMEDOUT), true));
        for e in [
            None,
            Some(libc::EINTR),
            Some(libc::EFAULT),
            Some(libc::ENOMEM),
        ] {
            assert!(wait_result(e, false));
        }
        assert_eq!(woke_one(None), 1);
        assert_eq!(woke_one(Some(libc::ENOENT)), 0);
        // an unexpected error never reads as "nobody waits"
        assert_eq!(woke_one(Some(libc::EINVAL)), 1);
    }
}
