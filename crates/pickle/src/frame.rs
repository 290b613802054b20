//! The frame format: a length, then that many bytes.
//!
//! It is byte for byte the format of CPython's `multiprocessing.connection`, so our connections
//! and CPython's can talk: a 4-byte big-endian signed length, or, for messages of 2 GiB and
//! more, the 4 bytes `ff ff ff ff` (−1) followed by an 8-byte big-endian length.
//!
//! ```
//! use multiproc_pickle::frame::{encode_header, parse_prefix, Prefix};
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
/// let (h, n) = multiproc_pickle::frame::encode_header(3 << 30);
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
/// assert!(multiproc_pickle::frame::parse_prefix([0x80, 0, 0, 0]).is_err());
/// ```
pub fn parse_prefix(p: [u8; 4]) -> Result<Prefix, PickleError> {
    match i32::from_be_bytes(p) {
        -1 => Ok(Prefix::Long),
        n if n < 0 => Err(PickleError::BadFrame(format!("negative length {n}"))),
        n => Ok(Prefix::Len(n as u64)),
    }
}

/// Check an announced length against a maximum.
///
/// ```
/// use multiproc_pickle::{frame::check_size, PickleError};
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
}
