//! The frame format: a length, then that many bytes.
//!
//! It is byte for byte the format of CPython's `multiprocessing.connection`, so our connections
//! and CPython's can talk: a 4-byte big-endian signed length, or, for messages of 2 GiB and
//! more, the 4 bytes `ff ff ff ff` (−1) followed by an 8-byte big-endian length.
//!
//! ```
//! use multiproc::pickle::frame::{encode_header, parse_prefix, Prefix};
//! let (h, n) = encode_header(64);
//! assert_eq!(&h[..n], &[0, 0, 0, 64]);
//! assert_eq!(parse_prefix([0, 0, 0, 64]).unwrap(), Prefix::Len(64));
//! assert_eq!(parse_prefix([0xff; 4]).unwrap(), Prefix::Long);
//! ```

use crate::PickleError;

/// The default largest message a connection accepts: 1 GiB. Each connection can change it.
pub const DEFAULT_MAX_MESSAGE: u64 = 1 << 30;

/// The largest header: the −1 marker and an 8-byte length.
pub const MAX_HEADER: usize = 12;

/// Encode the header for a `len`-byte message; returns the buffer and how many bytes of it to send.
///
/// ```
/// let (h, n) = multiproc::pickle::frame::encode_header(3 << 30);
/// assert_eq!(n, 12);
/// assert_eq!(&h[..4], &[0xff; 4]);
/// ```
pub fn encode_header(len: usize) -> ([u8; MAX_HEADER], usize) {
    let mut h = [0u8; MAX_HEADER];
    if len <= i32::MAX as usize {
        h[..4].copy_from_slice(&(len as u32).to_be_bytes());
        (h, 4)
    } else {
        h[..4].copy_from_slice(&(-1i32).to_be_bytes());
        h[4..].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 12)
    }
}

/// What the first four bytes of a frame say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// The message is this many bytes long.
    Len(u64),
    /// An 8-byte big-endian length follows.
    Long,
}

/// Read the first four bytes of a frame. Negative lengths other than the −1 marker are malformed.
///
/// ```
/// assert!(multiproc::pickle::frame::parse_prefix([0x80, 0, 0, 0]).is_err());
/// ```
pub fn parse_prefix(p: [u8; 4]) -> Result<Prefix, PickleError> {
    match i32::from_be_bytes(p) {
        -1 => Ok(Prefix::Long),
        n if n < 0 => Err(PickleError::BadFrame(format!("negative length {n}"))),
        n => Ok(Prefix::Len(n as u64)),
    }
}

/// The first four bytes of a frame that carries OS handles (−2, which CPython never sends):
/// then a 4-byte big-endian count of handles and an 8-byte big-endian length, 16 bytes in all
/// ([`HANDLES_HEADER`]). The handles travel beside the bytes (`SCM_RIGHTS` on a Unix socket),
/// attached to the frame's first bytes.
///
/// ```
/// use multiproc::pickle::frame::{encode_handles_header, HANDLES_MARKER};
/// let h = encode_handles_header(5, 2);
/// assert_eq!(h[..4], HANDLES_MARKER);
/// assert_eq!(u32::from_be_bytes(h[4..8].try_into().unwrap()), 2);
/// assert_eq!(u64::from_be_bytes(h[8..].try_into().unwrap()), 5);
/// ```
pub const HANDLES_MARKER: [u8; 4] = [0xff, 0xff, 0xff, 0xfe];

/// The size of the header of a frame that carries OS handles (see [`HANDLES_MARKER`]).
pub const HANDLES_HEADER: usize = 16;

/// The header of a `len`-byte message that carries `count` OS handles (see [`HANDLES_MARKER`]).
pub fn encode_handles_header(len: usize, count: u32) -> [u8; HANDLES_HEADER] {
    let mut h = [0u8; HANDLES_HEADER];
    h[..4].copy_from_slice(&HANDLES_MARKER);
    h[4..8].copy_from_slice(&count.to_be_bytes());
    h[8..].copy_from_slice(&(len as u64).to_be_bytes());
    h
}

/// Check an announced length against a maximum.
///
/// ```
/// use multiproc::pickle::{frame::check_size, PickleError};
/// assert!(check_size(10, 10).is_ok());
/// assert!(matches!(check_size(11, 10), Err(PickleError::TooLarge { size: 11, max: 10 })));
/// ```
pub fn check_size(size: u64, max: u64) -> Result<usize, PickleError> {
    if size > max || size > usize::MAX as u64 {
        Err(PickleError::TooLarge { size, max })
    } else {
        Ok(size as usize)
    }
}

/// The first buffer of an incoming message is at most this large (64 KiB); it then doubles as
/// bytes arrive (see [`reserve_next`]).
pub const GROW_FROM: usize = 64 * 1024;

/// Make room in `buf` for more of a `total`-byte message of which `buf` holds the first
/// `buf.len()` bytes, and return how many bytes may be read into its spare capacity now (at
/// least one while the message is incomplete).
///
/// The buffer grows with what has arrived, never with what a header announced: to 64 KiB
/// first, then by doubling, never beyond `total`. So a peer that announces 1 GiB and sends
/// nothing costs nothing, a peer has to send half of what we hold before we hold more, and a
/// real large message still costs an amortized O(n) copying. An allocation that fails is
/// [`PickleError::OutOfMemory`], not an abort.
///
/// ```
/// use multiproc::pickle::frame::{reserve_next, GROW_FROM};
/// let mut buf = Vec::new();
/// let room = reserve_next(&mut buf, 1 << 30).unwrap();
/// assert_eq!(room, GROW_FROM);
/// assert!(buf.capacity() < 1 << 20);
/// buf.resize(GROW_FROM, 0); // as if those bytes arrived
/// assert_eq!(reserve_next(&mut buf, 1 << 30).unwrap(), GROW_FROM); // doubled
/// ```
pub fn reserve_next(buf: &mut Vec<u8>, total: usize) -> Result<usize, PickleError> {
    let missing = total.saturating_sub(buf.len());
    let spare = buf.capacity() - buf.len();
    if spare > 0 || missing == 0 {
        return Ok(spare.min(missing));
    }
    let grow = missing.min(buf.len().max(GROW_FROM));
    buf.try_reserve_exact(grow)
        .map_err(|_| PickleError::OutOfMemory {
            size: (buf.len() + grow) as u64,
        })?;
    Ok(grow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_roundtrip() {
        for len in [0usize, 1, 255, 65536, i32::MAX as usize] {
            let (h, n) = encode_header(len);
            assert_eq!(n, 4);
            assert_eq!(
                parse_prefix([h[0], h[1], h[2], h[3]]).unwrap(),
                Prefix::Len(len as u64)
            );
        }
        let (h, n) = encode_header(i32::MAX as usize + 1);
        assert_eq!(n, 12);
        assert_eq!(
            u64::from_be_bytes(h[4..12].try_into().unwrap()),
            i32::MAX as u64 + 1
        );
    }

    #[test]
    fn buffers_grow_with_what_arrives() {
        let total = 1 << 30;
        let mut buf = Vec::new();
        let mut reads = 0;
        while buf.len() < 10 << 20 {
            let room = reserve_next(&mut buf, total).unwrap();
            assert!(room > 0);
            // never more than twice what arrived, plus the first 64 KiB
            assert!(buf.capacity() <= 2 * buf.len() + GROW_FROM);
            // bytes arrive in odd-sized pieces
            let got = room.min(40_000);
            buf.resize(buf.len() + got, 0);
            reads += 1;
        }
        assert!(buf.capacity() < total / 8);
        assert!(reads > 0);
        // the last step stops exactly at the message's size
        let mut small = vec![0u8; 100];
        assert_eq!(reserve_next(&mut small, 150).unwrap(), 50);
        assert_eq!(small.capacity(), 150);
        small.resize(150, 0);
        assert_eq!(reserve_next(&mut small, 150).unwrap(), 0);
    }
}
