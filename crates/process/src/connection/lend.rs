//! Windows: OS handles with a message on a [`pipe`](crate::pipe)'s connection.
//!
//! A Windows pipe cannot carry a handle as a Unix socket carries a descriptor, so handles are
//! *lent*, as CPython's `reduction.DupHandle` does: the sender duplicates each handle within
//! its own process and writes the duplicates' values, after its identity (pid and creation
//! tag), between the handle frame's header and the bytes; the receiver opens the sender
//! (`PROCESS_DUP_HANDLE`), checks its creation time against the identity, and takes each
//! duplicate over (`DuplicateHandle` with `DUPLICATE_CLOSE_SOURCE`): the sender's copy is gone
//! and the receiver owns the handle. A receiver that never reads the message leaves the
//! duplicates open in the sender until it exits.
//!
//! Only the two ends of a `pipe()` (and their copies in children) lend and take: their peers
//! are processes of this program. A listener's peer may be another program, or on another
//! host (a named pipe can be remote): its pid would name a process here that it does not
//! own, so its handle frames are refused (the values are not touched).

use std::os::windows::io::{AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle, RawHandle};

use windows_sys::Win32::Foundation::{
    CloseHandle, DuplicateHandle, DUPLICATE_CLOSE_SOURCE, DUPLICATE_SAME_ACCESS, FILETIME, HANDLE,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetCurrentProcessId, GetProcessTimes, OpenProcess, PROCESS_DUP_HANDLE,
    PROCESS_QUERY_LIMITED_INFORMATION,
};

use crate::Error;

/// The bytes of the lent block for `count` handles: the sender's identity, then the values.
pub(super) fn block_len(count: u32) -> usize {
    8 + 8 * count as usize
}

/// The low 32 bits of a process's creation time (1 where they are 0), as its identity's tag.
fn creation_tag(h: HANDLE) -> Option<u32> {
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut c, mut e, mut k, mut u) = (zero, zero, zero, zero);
    // SAFETY: a process handle with query rights and four valid out-buffers.
    let ok = unsafe { GetProcessTimes(h, &mut c, &mut e, &mut k, &mut u) };
    (ok != 0).then(|| c.dwLowDateTime.max(1))
}

/// Duplicates of `handles` in this process, to lend with one message.
pub(super) struct Lent {
    dups: Vec<RawHandle>,
    /// The block to write after the frame's header.
    pub(super) block: Vec<u8>,
}

impl Lent {
    /// Duplicate `handles` (their originals stay the caller's).
    pub(super) fn new(handles: &[BorrowedHandle<'_>]) -> std::io::Result<Lent> {
        // SAFETY: no preconditions; the pseudo handle of this process needs no closing.
        let (me, pid) = unsafe { (GetCurrentProcess(), GetCurrentProcessId()) };
        let tag = creation_tag(me).unwrap_or(1);
        let mut lent = Lent {
            dups: Vec::with_capacity(handles.len()),
            block: Vec::with_capacity(block_len(handles.len() as u32)),
        };
        lent.block
            .extend_from_slice(&((u64::from(tag) << 32) | u64::from(pid)).to_le_bytes());
        for h in handles {
            let mut dup: HANDLE = std::ptr::null_mut();
            // SAFETY: duplicates a live handle the caller lends us, within this process.
            let ok = unsafe {
                DuplicateHandle(
                    me,
                    h.as_raw_handle(),
                    me,
                    &mut dup,
                    0,
                    0,
                    DUPLICATE_SAME_ACCESS,
                )
            };
            if ok == 0 {
                return Err(std::io::Error::last_os_error()); // (`lent` closes the others)
            }
            lent.dups.push(dup);
            lent.block
                .extend_from_slice(&(dup as usize as u64).to_le_bytes());
        }
        Ok(lent)
    }

    /// The message went out: the duplicates are the receiver's to take now.
    pub(super) fn sent(mut self) {
        self.dups.clear();
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        for &h in &self.dups {
            // SAFETY: duplicates made in `new`, never sent, closed once.
            unsafe { CloseHandle(h) };
        }
    }
}

/// Take over the `count` handles that `block` (read after a handle frame's header) lends.
/// Every handle taken before a failure is closed.
pub(super) fn take(block: &[u8], count: u32) -> Result<Vec<OwnedHandle>, Error> {
    let word = |i: usize| u64::from_le_bytes(block[8 * i..8 * i + 8].try_into().expect("8 bytes"));
    let identity = word(0);
    let pid = identity as u32;
    let mismatch = |received| Error::HandleCountMismatch {
        announced: count,
        received,
    };
    // SAFETY: OpenProcess has no memory preconditions; the handle is not inheritable.
    let raw = unsafe {
        OpenProcess(
            PROCESS_DUP_HANDLE | PROCESS_QUERY_LIMITED_INFORMATION,
            0,
            pid,
        )
    };
    if raw.is_null() {
        return Err(mismatch(0)); // the sender is gone, and its duplicates with it
    }
    // SAFETY: a fresh handle owned by us.
    let sender = unsafe { OwnedHandle::from_raw_handle(raw) };
    if creation_tag(sender.as_raw_handle()).map(|t| (u64::from(t) << 32) | u64::from(pid))
        != Some(identity)
    {
        return Err(mismatch(0)); // another process got the sender's pid
    }
    let mut got = Vec::with_capacity(count as usize);
    for i in 1..=count as usize {
        let mut mine: HANDLE = std::ptr::null_mut();
        // SAFETY: takes the duplicate the sender lent (closing it there) into this process.
        let ok = unsafe {
            DuplicateHandle(
                sender.as_raw_handle(),
                word(i) as usize as HANDLE,
                GetCurrentProcess(),
                &mut mine,
                0,
                0,
                DUPLICATE_SAME_ACCESS | DUPLICATE_CLOSE_SOURCE,
            )
        };
        if ok == 0 {
            return Err(mismatch(got.len()));
        }
        // SAFETY: a fresh handle owned by us.
        got.push(unsafe { OwnedHandle::from_raw_handle(mine) });
    }
    Ok(got)
}
