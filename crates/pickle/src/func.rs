//! Function identity: a `fn` sent as its distance from an anchor in the same binary.

use crate::{decode_with_handles, encode, Bytes, OsHandle, PickleError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// The anchor all offsets are measured from. Never inlined, so it has one address per binary.
#[inline(never)]
fn anchor() -> u64 {
    0x6d75_6c74_6970_726f // "multipro"
}

fn anchor_addr() -> i64 {
    std::hint::black_box(anchor as fn() -> u64) as usize as i64
}

/// A plain function (a `fn` item or a non-capturing closure) named by its position in the binary.
///
/// Position-independent executables load at a different address in every process, but the
/// distance between two functions of one binary stays the same, so an offset from a fixed anchor
/// names the same function in a parent and in its child. It means nothing in another build:
/// [`Call`] carries the [`fingerprint`] that guards against that.
///
/// ```
/// use multiproc::pickle::FnRef;
/// fn double(x: u32) -> u32 { x * 2 }
/// let r = FnRef::of(double as fn(u32) -> u32);
/// // SAFETY: resolved in the same process, with the same signature.
/// let f: fn(u32) -> u32 = unsafe { r.resolve() };
/// assert_eq!(f(21), 42);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FnRef {
    offset: i64,
}

impl FnRef {
    /// The identity of `f`.
    pub fn of<A, R>(f: fn(A) -> R) -> FnRef {
        FnRef {
            offset: f as usize as i64 - anchor_addr(),
        }
    }

    /// The identity of a function without arguments (a barrier's action, say).
    ///
    /// ```
    /// use multiproc::pickle::FnRef;
    /// fn hello() {}
    /// let r = FnRef::of_action(hello);
    /// // SAFETY: resolved in the same process, made by `of_action`.
    /// let f: fn() = unsafe { r.resolve_action() };
    /// f();
    /// ```
    pub fn of_action(f: fn()) -> FnRef {
        FnRef {
            offset: f as usize as i64 - anchor_addr(),
        }
    }

    /// Turn an identity made by [`FnRef::of_action`] back into the function.
    ///
    /// # Safety
    /// As for [`resolve`](Self::resolve): made by `of_action`, in the same build.
    pub unsafe fn resolve_action(self) -> fn() {
        let addr = (anchor_addr() + self.offset) as usize as *const ();
        // SAFETY: the caller guarantees that `addr` is the address of a `fn()` of this binary.
        unsafe { std::mem::transmute::<*const (), fn()>(addr) }
    }

    fn of_entry(f: Entry) -> FnRef {
        FnRef {
            offset: f as usize as i64 - anchor_addr(),
        }
    }

    /// Turn the identity back into a callable function.
    ///
    /// # Safety
    /// The reference must have been made by [`FnRef::of`] with exactly this signature, in a
    /// process running the same build of the same binary (see [`fingerprint`]).
    pub unsafe fn resolve<A, R>(self) -> fn(A) -> R {
        let addr = (anchor_addr() + self.offset) as usize as *const ();
        // SAFETY: the caller guarantees that `addr` is the address of a `fn(A) -> R` of this
        // binary; function pointers and data pointers have the same size on every target we build.
        unsafe { std::mem::transmute::<*const (), fn(A) -> R>(addr) }
    }
}

/// A number that differs between builds of a binary and is the same in every process running
/// one: the executable's [`build_id`](crate::build_id) (the same for every copy of the file, on
/// any host) and the version of this crate; where the executable has no build-id, a hash of the
/// executable's file instead (the same for every copy too, read once per process: about a
/// millisecond for each few megabytes). Computed once per process (two threads asking at once may
/// both compute it, and the first answer stays). Lock-free, unlike a `OnceLock`, so a child
/// forked while another thread was computing it never waits for that thread.
///
/// ```
/// assert_eq!(multiproc::pickle::fingerprint(), multiproc::pickle::fingerprint());
/// ```
pub fn fingerprint() -> u64 {
    static FP: AtomicU64 = AtomicU64::new(0); // 0: not computed yet
    let known = FP.load(Ordering::Acquire);
    if known != 0 {
        return known;
    }
    let h = {
        // FNV-1a over the identifying facts: stable across processes, no allocation-order effects.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= b as u64;
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(env!("CARGO_PKG_VERSION").as_bytes());
        match crate::build_id() {
            Some(id) => {
                eat(b"build-id");
                eat(id);
            }
            None => match std::env::current_exe().and_then(|p| hash_file(&p)) {
                Ok(file) => {
                    eat(b"file");
                    eat(&file.to_le_bytes());
                }
                Err(e) => {
                    tracing::warn!("cannot read the current executable for its fingerprint: {e}")
                }
            },
        }
        h.max(1)
    };
    match FP.compare_exchange(0, h, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => h,
        Err(first) => first,
    }
}

/// A 64-bit hash of a file's bytes, read in 1 MiB pieces, eight bytes at a time (a
/// multiply-xorshift mix, not cryptographic: it tells builds apart, it does not resist forgery).
fn hash_file(path: &std::path::Path) -> std::io::Result<u64> {
    use std::io::Read;
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut h, mut len) = (K, 0u64);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        len += n as u64;
        let (words, tail) = buf[..n].split_at(n - n % 8);
        for w in words.chunks_exact(8) {
            let w = u64::from_le_bytes(w.try_into().expect("eight bytes"));
            h = (h ^ w).wrapping_mul(K);
            h ^= h >> 29;
        }
        for &b in tail {
            h = (h ^ b as u64).wrapping_mul(K);
        }
    }
    Ok(h ^ len)
}

type Entry = fn(FnRef, &[u8], Vec<OsHandle>) -> Result<Vec<u8>, PickleError>;

fn entry<A: DeserializeOwned, R: Serialize>(
    func: FnRef,
    args: &[u8],
    handles: Vec<OsHandle>,
) -> Result<Vec<u8>, PickleError> {
    let args: A = decode_with_handles(args, handles)?;
    // SAFETY: `Call::invoke`'s contract (same build, checked by fingerprint) and `Call::new`,
    // which paired this `entry::<A, R>` with a `fn(A) -> R`.
    let f: fn(A) -> R = unsafe { func.resolve() };
    encode(&f(args))
}

/// A function and its encoded arguments, ready to run in another process of the same build.
///
/// ```
/// use multiproc::pickle::{decode, Call};
/// fn add((a, b): (i32, i32)) -> i32 { a + b }
/// let (call, handles) = Call::new(add, &(2, 3)).unwrap();
/// // SAFETY: made by this very process.
/// let out = unsafe { call.invoke(handles) }.unwrap();
/// assert_eq!(decode::<i32>(&out).unwrap(), 5);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Call {
    fingerprint: u64,
    entry: FnRef,
    func: FnRef,
    args: Bytes,
}

impl Call {
    /// Package `f(args)`. OS handles inside `args` are duplicated into the returned list, which
    /// the transport must deliver beside the call.
    pub fn new<A, R>(f: fn(A) -> R, args: &A) -> Result<(Call, Vec<OsHandle>), PickleError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize,
    {
        Call::new_encoding_as(f, args)
    }

    /// [`new`](Self::new) with the arguments in any form that encodes as an `A` does (a slice
    /// for a `Vec`, a tuple of references for a tuple), so they need not be copied into an `A`
    /// first. Arguments that do not encode as an `A` fail when the call runs, with a decode
    /// error.
    ///
    /// ```
    /// use multiproc::pickle::{decode, Call};
    /// fn total(v: Vec<u32>) -> u32 { v.iter().sum() }
    /// let data = [1u32, 2, 3, 4];
    /// let (call, handles) = Call::new_encoding_as(total, &data[1..]).unwrap();
    /// // SAFETY: made by this very process.
    /// let out = unsafe { call.invoke(handles) }.unwrap();
    /// assert_eq!(decode::<u32>(&out).unwrap(), 9);
    /// ```
    pub fn new_encoding_as<A, R, S>(
        f: fn(A) -> R,
        args: &S,
    ) -> Result<(Call, Vec<OsHandle>), PickleError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize,
        S: Serialize + ?Sized,
    {
        let (bytes, handles) = crate::encode_with_handles(args)?;
        let call = Call {
            fingerprint: fingerprint(),
            entry: FnRef::of_entry(entry::<A, R>),
            func: FnRef::of(f),
            args: Bytes(bytes),
        };
        Ok((call, handles))
    }

    /// The encoded arguments (as `encode_with_handles` wrote them), so a caller that knows
    /// their type can decode them without running the call.
    ///
    /// ```
    /// use multiproc::pickle::{decode, Call};
    /// fn add((a, b): (i32, i32)) -> i32 { a + b }
    /// let (call, _) = Call::new(add, &(2, 3)).unwrap();
    /// assert_eq!(decode::<(i32, i32)>(call.args()).unwrap(), (2, 3));
    /// ```
    pub fn args(&self) -> &[u8] {
        &self.args.0
    }

    /// Check that this call was made by the same build as the running binary.
    pub fn check_build(&self) -> Result<(), PickleError> {
        let actual = fingerprint();
        if self.fingerprint != actual {
            return Err(PickleError::BuildMismatch {
                expected: self.fingerprint,
                actual,
            });
        }
        Ok(())
    }

    /// Run the call here and return the encoded result. A panic in the function unwinds out of
    /// this call; callers that must survive it use `catch_unwind`.
    ///
    /// # Safety
    /// The call must come from a trusted process of the same build (its fingerprint is checked
    /// here, which catches accidents, not forgeries): never run a `Call` read from an untrusted
    /// peer.
    pub unsafe fn invoke(&self, handles: Vec<OsHandle>) -> Result<Vec<u8>, PickleError> {
        self.check_build()?;
        // SAFETY: same build (checked above, trusted origin per the contract), and `entry` was
        // made from an `Entry` by `Call::new`.
        let e: Entry =
            unsafe { std::mem::transmute::<fn(()), Entry>(self.entry.resolve::<(), ()>()) };
        e(self.func, &self.args, handles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neg(x: i64) -> i64 {
        -x
    }

    #[test]
    fn the_file_hash_is_the_same_for_copies_and_differs_for_any_byte_or_length() {
        let dir = std::env::temp_dir().join(format!("mp-hash-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).unwrap();
            hash_file(&p).unwrap()
        };
        // (over a 1 MiB piece, with a tail that is not a whole word)
        let a: Vec<u8> = (0..(1usize << 20) + 13)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let h = write("a", &a);
        assert_eq!(write("copy", &a), h);
        let mut b = a.clone();
        b[(1 << 20) + 3] ^= 1;
        assert_ne!(write("late-byte", &b), h);
        let mut c = a.clone();
        c[5] ^= 0x80;
        assert_ne!(write("early-byte", &c), h);
        let mut d = a.clone();
        d.push(0);
        assert_ne!(write("longer", &d), h);
        assert!(hash_file(&dir.join("missing")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn call_roundtrip_through_bytes() {
        let (call, h) = Call::new(neg, &5).unwrap();
        let wire = encode(&call).unwrap();
        let back: Call = crate::decode(&wire).unwrap();
        // SAFETY: same process.
        let out = unsafe { back.invoke(h) }.unwrap();
        assert_eq!(crate::decode::<i64>(&out).unwrap(), -5);
    }

    #[test]
    fn foreign_fingerprint_refused() {
        let (mut call, h) = Call::new(neg, &5).unwrap();
        call.fingerprint ^= 1;
        // SAFETY: the fingerprint check refuses before anything is resolved.
        let err = unsafe { call.invoke(h) }.unwrap_err();
        assert!(matches!(err, PickleError::BuildMismatch { .. }));
    }
}
