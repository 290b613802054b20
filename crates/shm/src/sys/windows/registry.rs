//! Which shared mapping an address of this process lies in: every view of shared memory on
//! Windows is registered here while it is mapped (see [`View`](super::mapping::View)).
//!
//! A word in shared memory has a different address in every process that maps it; what all
//! of them agree on is the mapping's *name* (every mapping on Windows gets one: a named block
//! its `wnsm_…` name, an anonymous segment a random `Local\mpa_…` name of ours) and the
//! word's offset from the start of the view. Kernel objects that stand for one word in every
//! process (the futex's events) are named after that pair.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

/// The live views of this process: start address → (length, section name).
static VIEWS: RwLock<BTreeMap<usize, (usize, Arc<str>)>> = RwLock::new(BTreeMap::new());

/// Record the view at `start`, `len` bytes long, of the section called `name`.
pub(crate) fn register(start: usize, len: usize, name: Arc<str>) {
    VIEWS.write().insert(start, (len, name));
}

/// Forget the view at `start` (before it is unmapped).
pub(crate) fn unregister(start: usize) {
    VIEWS.write().remove(&start);
}

/// For an address inside a live view of shared memory of this process: the name of its
/// section (the same in every process that maps that memory) and the offset of `addr` from
/// the start of the view. `None` for an address in no registered view.
///
/// Views always map a section from its start, so the offset is the offset in the section too.
#[allow(dead_code)] // (until the futex, its user, lands)
pub(crate) fn mapping_of(addr: usize) -> Option<(Arc<str>, usize)> {
    let views = VIEWS.read();
    let (&start, (len, name)) = views.range(..=addr).next_back()?;
    let off = addr - start;
    (off < *len).then(|| (name.clone(), off))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_map_to_their_view() {
        // (fake addresses far from any real view: only the bookkeeping is tested here)
        let base = usize::MAX / 2;
        register(base, 100, "Local\\a".into());
        register(base + 100, 50, "Local\\b".into());
        assert_eq!(
            mapping_of(base).map(|(n, o)| (n.to_string(), o)),
            Some(("Local\\a".into(), 0))
        );
        assert_eq!(mapping_of(base + 99).unwrap().1, 99);
        assert_eq!(&*mapping_of(base + 100).unwrap().0, "Local\\b");
        assert_eq!(mapping_of(base + 149).unwrap().1, 49);
        assert!(mapping_of(base + 150).is_none());
        assert!(mapping_of(base - 1).is_none());
        unregister(base);
        assert!(mapping_of(base + 5).is_none());
        unregister(base + 100);
        assert!(mapping_of(base + 120).is_none());
    }
}
