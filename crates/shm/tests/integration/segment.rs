//! Anonymous segments across processes: they travel as OS handles, and every copy maps the
//! same memory.

use crate::bounded::JoinBounded;
use multiproc_process::{Process, StartMethod};
use multiproc_shm::Segment;

fn write_both((a, b): (Segment, Segment)) {
    assert_eq!(a.read(0, 6).unwrap(), b"parent");
    a.write(0, b"child!").unwrap();
    // a clone of the same memory: the write shows through it
    assert_eq!(b.read(0, 6).unwrap(), b"child!");
    b.write(a.len() - 1, &[7]).unwrap();
    assert!(a.write(a.len(), &[1]).is_err());
}

#[test]
fn a_segment_written_by_a_child_is_read_by_the_parent() {
    for &m in StartMethod::available() {
        let a = Segment::new(1 << 16).unwrap();
        a.write(0, b"parent").unwrap();
        let b = a.try_clone().unwrap();
        let p = Process::new(write_both, (a.try_clone().unwrap(), b.try_clone().unwrap()))
            .start_method(m);
        p.start().unwrap();
        assert_eq!(p.join_bounded(), 0, "{m:?}: {:?}", p.panic_message());
        assert_eq!(a.read(0, 6).unwrap(), b"child!", "{m:?}");
        assert_eq!(b.read(a.len() - 1, 1).unwrap(), [7], "{m:?}");
        assert_eq!(a.len(), 1 << 16);
    }
}
