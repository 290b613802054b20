//! `SharedMemory`: a named segment, like Python's `multiprocessing.shared_memory.SharedMemory`.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{sys, Segment, ShmError};

/// Longest name accepted: macOS allows 31 bytes for the whole name including the leading `/`
/// the OS needs, so portable names have at most 30.
pub const MAX_NAME_LEN: usize = 30;

/// A named block of shared memory that unrelated processes can attach to.
///
/// Names given to [`create`](Self::create) must be portable across Linux, macOS and
/// Windows: 1 to 30 characters from `[A-Za-z0-9_.-]` (no `/`; the leading `/` POSIX wants is
/// added internally, exactly as CPython does, so a segment created by Python's
/// `SharedMemory(name="x")` is ours under `"x"` too). [`attach`](Self::attach) is wider: it
/// takes any name the operating system itself accepts (see [`MAX_ATTACH_NAME_LEN`]), so a
/// segment another program created under a longer or stranger name is still reachable.
///
/// **Ownership is explicit.** The process that *creates* a segment owns its name and unlinks
/// it when dropped (or with [`unlink`](Self::unlink)); processes that [`attach`](Self::attach)
/// never destroy it (unlike CPython before 3.13, whose resource tracker also destroyed
/// segments that were merely attached, gh-82300). A creator may give the name up with
/// [`persist`](Self::persist).
///
/// **On Windows a block lives while a handle is open.** Windows has no names to unlink: a
/// section backed by the paging file exists while some process holds a handle to it or a
/// view of it, and goes with the last one — dropping every `SharedMemory` of a block (in
/// every process) frees it, whoever created it, and [`unlink`](Self::unlink) is the
/// documented no-op (as in CPython). Names are used as given (no leading `/`), so Python's
/// `SharedMemory(name="wnsm_1a2b3c4d")` and ours meet under the same name; random names are
/// CPython's Windows form, `wnsm_` and 8 hex digits.
///
/// Passed to a child process as an argument, it arrives attached (not owning).
///
/// ```
/// use multiproc::shm::SharedMemory;
/// let a = SharedMemory::create(None, 1024).unwrap();
/// a.write(0, b"shared").unwrap();
/// let b = SharedMemory::attach(a.name()).unwrap();
/// assert_eq!(b.read(0, 6).unwrap(), b"shared");
/// assert!(b.size() >= 1024);
/// drop(b); // attached: the segment stays
/// assert!(SharedMemory::attach(a.name()).is_ok());
/// let name = a.name().to_string();
/// drop(a); // the creator unlinks
/// assert!(SharedMemory::attach(&name).is_err());
/// ```
pub struct SharedMemory {
    name: String,
    seg: Segment,
    owner: bool,
    unlinked: AtomicBool,
}

impl std::fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name)
            .field("size", &self.size())
            .field("owner", &self.owner)
            .finish()
    }
}

/// The name the OS knows the block by: with the leading `/` POSIX wants; as given on Windows.
fn os_name(name: &str) -> String {
    if cfg!(windows) {
        name.to_string()
    } else {
        format!("/{name}")
    }
}

/// Longest name [`SharedMemory::attach`] accepts (without the leading `/`): what `shm_open`
/// takes on this platform (`NAME_MAX`, 255 bytes, on Linux; 30 on macOS, whose limit is 31
/// bytes with the `/`); on Windows the kernel object name limit, `MAX_PATH` (260).
pub const MAX_ATTACH_NAME_LEN: usize = if cfg!(target_os = "linux") {
    255
} else if cfg!(windows) {
    260
} else {
    MAX_NAME_LEN
};

/// Check that `name` is one the OS accepts for an existing segment: not empty, no `/`
/// (the single leading one is stripped before), no NUL, at most [`MAX_ATTACH_NAME_LEN`]
/// bytes. Spaces, `:` and any other character are the OS's business, as in CPython.
fn validate_attach(name: &str) -> Result<(), ShmError> {
    if name.is_empty() {
        return Err(ShmError::InvalidName(name.into(), "empty"));
    }
    if name.contains('/') {
        return Err(ShmError::InvalidName(
            name.into(),
            "contains '/' after its first character",
        ));
    }
    if name.contains('\0') {
        return Err(ShmError::InvalidName(name.into(), "contains NUL"));
    }
    if name.len() > MAX_ATTACH_NAME_LEN {
        return Err(ShmError::InvalidName(
            name.into(),
            "longer than the operating system allows",
        ));
    }
    Ok(())
}

/// Check that `name` is portable (see [`SharedMemory`]).
pub(crate) fn validate(name: &str) -> Result<(), ShmError> {
    if name.is_empty() {
        return Err(ShmError::InvalidName(name.into(), "empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(ShmError::InvalidName(
            name.into(),
            "longer than 30 characters (the macOS limit)",
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(ShmError::InvalidName(
            name.into(),
            "only letters, digits, '_', '.' and '-' are portable",
        ));
    }
    Ok(())
}

/// A fresh random name: `mp_` and 12 hex digits; on Windows CPython's form, `wnsm_` and 8 hex
/// digits (`_make_filename`: 14 characters in all).
fn random_name() -> Result<String, ShmError> {
    let (prefix, mut r) = if cfg!(windows) {
        ("wnsm_", vec![0u8; 4])
    } else {
        ("mp_", vec![0u8; 6])
    };
    getrandom::getrandom(&mut r).map_err(std::io::Error::from)?;
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{prefix}{hex}"))
}

/// Create the named object `os_name` of `size` zero bytes and map it.
#[cfg(unix)]
fn create_segment(os_name: &str, size: usize) -> Result<Segment, ShmError> {
    let fd = sys::create_named(os_name, size)?;
    Segment::from_handle(fd, size).inspect_err(|_| {
        let _ = sys::unlink(os_name);
    })
}

/// Create the named section `os_name` of `size` zero bytes and map it.
#[cfg(windows)]
fn create_segment(os_name: &str, size: usize) -> Result<Segment, ShmError> {
    sys::View::create_named(os_name, size).map(Segment::from_view)
}

/// Open the named object `os_name` and map all of it (`name` for errors).
#[cfg(unix)]
fn open_segment(name: &str, os_name: &str) -> Result<Segment, ShmError> {
    let fd = sys::open(os_name, false).map_err(|e| match e {
        ShmError::NotFound(_) => ShmError::NotFound(name.into()),
        e => e,
    })?;
    let size = sys::size_of(&fd)?;
    if size == 0 {
        return Err(ShmError::InvalidSize(0));
    }
    Segment::from_handle(fd, size)
}

/// Open the named section `os_name` and map all of it: its size is the view's (whole pages).
#[cfg(windows)]
fn open_segment(_name: &str, os_name: &str) -> Result<Segment, ShmError> {
    sys::View::open_named(os_name).map(Segment::from_view)
}

impl SharedMemory {
    /// Create a new zero-filled segment of `size` bytes, named `name` or a fresh random name.
    /// An existing name is [`ShmError::Exists`].
    pub fn create(name: Option<&str>, size: usize) -> Result<SharedMemory, ShmError> {
        if size == 0 {
            return Err(ShmError::InvalidSize(size));
        }
        let mut attempts = 0;
        loop {
            let n = match name {
                Some(n) => n.to_string(),
                None => random_name()?,
            };
            validate(&n)?;
            match create_segment(&os_name(&n), size) {
                Ok(seg) => {
                    sys::tracker_register(&os_name(&n));
                    tracing::debug!(name = %n, size, "created shared memory");
                    return Ok(SharedMemory {
                        name: n,
                        seg,
                        owner: true,
                        unlinked: AtomicBool::new(false),
                    });
                }
                Err(ShmError::Exists(_)) if name.is_none() && attempts < 8 => attempts += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Attach to the segment called `name` (a leading `/` is allowed, and ignored).
    /// Attaching never gives ownership: dropping the result leaves the segment in place.
    ///
    /// Any name the OS accepts works here, also ones [`create`](Self::create) refuses as
    /// not portable (CPython on Linux creates names with spaces, `:` or 40 characters).
    ///
    /// # Errors
    ///
    /// [`ShmError::InvalidName`] for a name the OS refuses (empty, a `/` inside, a NUL, longer
    /// than [`MAX_ATTACH_NAME_LEN`]); [`ShmError::NotFound`] only when the name is valid and
    /// no segment has it.
    ///
    /// ```
    /// use multiproc::shared_memory::{SharedMemory, ShmError};
    /// assert!(matches!(SharedMemory::attach("a/b"), Err(ShmError::InvalidName(..))));
    /// assert!(matches!(SharedMemory::attach("no such: segment"), Err(ShmError::NotFound(_))));
    /// ```
    pub fn attach(name: &str) -> Result<SharedMemory, ShmError> {
        let n = name.strip_prefix('/').unwrap_or(name);
        validate_attach(n)?;
        let seg = open_segment(n, &os_name(n))?;
        Ok(SharedMemory {
            name: n.into(),
            seg,
            owner: false,
            unlinked: AtomicBool::new(false),
        })
    }

    /// The segment's name (without the OS's leading `/`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The size in bytes (what the OS reports; may be rounded up to whole pages when attaching).
    pub fn size(&self) -> usize {
        self.seg.len()
    }

    /// Whether this handle created the segment (and will unlink it when dropped).
    pub fn is_owner(&self) -> bool {
        self.owner && !self.unlinked.load(Ordering::Relaxed)
    }

    /// Remove the name now: later `attach` calls fail; existing mappings keep working. Any
    /// process may call it (as in Python); calling it twice is [`ShmError::NotFound`].
    ///
    /// On Windows it does nothing and returns `Ok(())` (as CPython's does there): the block
    /// goes when its last handle is closed, and attaching works while one is open.
    pub fn unlink(&self) -> Result<(), ShmError> {
        self.unlinked.store(true, Ordering::Relaxed);
        if self.owner {
            sys::tracker_forget(&os_name(&self.name));
        }
        sys::unlink(&os_name(&self.name))
    }

    /// Give up ownership: the segment outlives this handle until someone calls `unlink`.
    ///
    /// On Windows no block outlives its last handle: persisting only makes dropping this one
    /// not count as the owner's (which does nothing there either).
    pub fn persist(mut self) -> SharedMemory {
        if self.owner {
            sys::tracker_forget(&os_name(&self.name));
        }
        self.owner = false;
        self
    }

    /// Unmap this handle now (dropping does the same). An owner also unlinks.
    pub fn close(self) {}

    /// The underlying segment (bounds-checked reads and writes, raw pointer).
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}

impl Deref for SharedMemory {
    type Target = Segment;
    fn deref(&self) -> &Segment {
        &self.seg
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        if self.owner && !self.unlinked.load(Ordering::Relaxed) {
            sys::tracker_forget(&os_name(&self.name));
            if let Err(e) = sys::unlink(&os_name(&self.name)) {
                tracing::debug!(name = %self.name, "unlink on drop: {e}");
            }
        }
    }
}

/// Serializes as its name and its mapping's handle; it arrives attached, never owning.
impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.name, &self.seg).serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (name, seg) = <(String, Segment)>::deserialize(d)?;
        Ok(SharedMemory {
            name,
            seg,
            owner: false,
            unlinked: AtomicBool::new(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate("ok_name-1.2").is_ok());
        assert!(validate("").is_err());
        assert!(validate("a/b").is_err());
        assert!(validate(&"x".repeat(31)).is_err());
        // attach takes what the OS takes, and says so when the OS would refuse
        for bad in ["", "/", "a/b", "x\0y"] {
            assert!(
                matches!(SharedMemory::attach(bad), Err(ShmError::InvalidName(..))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            SharedMemory::attach(&"x".repeat(MAX_ATTACH_NAME_LEN + 1)),
            Err(ShmError::InvalidName(..))
        ));
        assert!(matches!(
            SharedMemory::attach(&"x".repeat(MAX_ATTACH_NAME_LEN)),
            Err(ShmError::NotFound(_))
        ));
        assert!(matches!(
            SharedMemory::create(Some("bad/name"), 10),
            Err(ShmError::InvalidName(..))
        ));
        assert!(matches!(
            SharedMemory::create(None, 0),
            Err(ShmError::InvalidSize(0))
        ));
    }

    #[test]
    fn exclusive_create_and_explicit_unlink() {
        let a = SharedMemory::create(None, 100).unwrap();
        assert!(matches!(
            SharedMemory::create(Some(a.name()), 100),
            Err(ShmError::Exists(_))
        ));
        let b = SharedMemory::attach(a.name()).unwrap();
        assert!(!b.is_owner());
        b.unlink().unwrap();
        #[cfg(unix)]
        assert!(matches!(
            SharedMemory::attach(a.name()),
            Err(ShmError::NotFound(_))
        ));
        // Windows: unlinking is a no-op; the block lives while a handle is open
        #[cfg(windows)]
        assert!(SharedMemory::attach(a.name()).is_ok());
        // mappings survive the unlink
        a.write(0, &[9]).unwrap();
        assert_eq!(b.read(0, 1).unwrap(), [9]);
    }
}
