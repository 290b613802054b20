//! The facade re-exports every workspace crate under Python's names: this test touches each
//! re-export, and starts a real child through the facade alone.

multiproc::test_support!();

#[path = "../../process/tests/integration/bounded.rs"]
mod bounded;

use std::time::Duration;

use bounded::{AcceptBounded, JoinBounded, RecvBounded, ThreadJoinBounded, BOUND};

use multiproc::connection::{
    wait_timeout, Address, Client, Connection, Listener, RawWaitHandle, ToAddress, Waitable,
};
use multiproc::pool::{Data, IMapIter};
use multiproc::{
    active_children, cpu_count, current_process, get_context, get_start_method, init,
    parent_process, pickle, pipe, AsyncResult, Context, ParentProcess, Pipe, Pool, PoolBuilder,
    PoolError, Process, ProcessInfo, StartMethod, ThreadPool,
};

fn child(conn: Connection) {
    let me: ProcessInfo = current_process();
    let parent: ParentProcess = parent_process().unwrap();
    conn.send(&(me.name, parent.pid())).unwrap();
}

#[test]
fn every_reexport_is_reachable() {
    init();
    assert!(cpu_count() >= 1);
    assert_eq!(get_start_method(), StartMethod::Spawn);
    // the last method of the platform: forkserver on Unix, spawn (the only one) on Windows
    let method = *StartMethod::available().last().unwrap();
    let ctx: Context = get_context(method).unwrap();
    let (a, b) = Pipe(true).unwrap();
    let p: Process = ctx.process(child, b).with_name("facade-child");
    p.start().unwrap();
    assert!(
        !wait_timeout(&[&a as &dyn Waitable], Duration::from_secs(30))
            .unwrap()
            .is_empty()
    );
    let (name, ppid): (String, u32) = a.recv_bounded();
    assert_eq!((name.as_str(), ppid), ("facade-child", std::process::id()));
    assert_eq!(p.join_bounded(), 0);
    assert!(active_children().is_empty() || active_children().iter().all(|c| c.pid() != p.pid()));
    let _: Option<RawWaitHandle> = a.wait_handle();

    let (x, y) = pipe(false).unwrap();
    y.send_bytes(b"one-way").unwrap();
    assert_eq!(x.recv_bytes_bounded(), b"one-way");

    let l = Listener::bind("127.0.0.1:0", None).unwrap();
    let addr: Address = l.address();
    let addr2 = (&addr).to_address().unwrap();
    let t = std::thread::spawn(move || Client::connect(addr2, None).unwrap().send(&1u8).unwrap());
    assert_eq!(l.accept_bounded().unwrap().recv_bounded::<u8>(), 1);
    t.join_bounded();

    let bytes = pickle::encode(&pickle::Bytes(vec![1, 2, 3])).unwrap();
    assert_eq!(
        pickle::decode::<pickle::Bytes>(&bytes).unwrap().0,
        [1, 2, 3]
    );
    assert!(matches!(
        multiproc::set_start_method(StartMethod::Spawn),
        Ok(()) | Err(multiproc::ProcessError::StartMethodAlreadySet)
    ));
    multiproc::set_executable(std::env::current_exe().unwrap());
}

fn triple(x: i32) -> i32 {
    x * 3
}

fn takes_data<T: Data>(_: &T) {}

#[test]
fn pool_reexports() {
    let builder: PoolBuilder = Pool::builder().processes(2);
    let pool: Pool = builder.build().unwrap();
    let r: AsyncResult<i32> = pool.apply_async(triple, 2).unwrap();
    assert_eq!(r.get_timeout(BOUND).unwrap(), 6);
    let it: IMapIter<'_, i32, i32, _> = pool.imap(triple, 0..3, 1).unwrap();
    assert_eq!(it.map(Result::unwrap).collect::<Vec<_>>(), [0, 3, 6]);
    pool.close();
    assert!(matches!(pool.apply(triple, 1), Err(PoolError::Closed)));
    let tp = ThreadPool::new(1).unwrap();
    assert_eq!(tp.map(triple, [1, 2]).unwrap(), [3, 6]);
    takes_data(&1u8);
}

fn bump_all((lock, queue): (multiproc::Lock, multiproc::Queue<u32>)) {
    let _g = lock.lock();
    queue.put(7).unwrap();
}

#[test]
fn sync_and_shm_reexports() {
    use multiproc::shared_memory::{SharedMemory, ShmError};
    use multiproc::{
        Barrier, BoundedSemaphore, Condition, Event, JoinableQueue, Lock, LockGuard, LockResult,
        PutError, Queue, QueueError, RLock, RLockGuard, Semaphore, SimpleQueue, SyncError,
    };
    let lock = Lock::new().unwrap();
    let q: Queue<u32> = Queue::new().unwrap();
    let p = Process::new(bump_all, (lock.clone(), q.clone()));
    p.start().unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(30)), Ok(7));
    assert_eq!(p.join_bounded(), 0);
    let g: LockGuard<'_> = lock.lock();
    assert_eq!(lock.try_acquire(), LockResult::TimedOut);
    drop(g);
    let r = RLock::new().unwrap();
    let _rg: RLockGuard<'_> = r.lock();
    assert!(Semaphore::new(1).unwrap().try_acquire());
    assert_eq!(
        BoundedSemaphore::new(0).unwrap().release(),
        Err(SyncError::TooManyReleases)
    );
    assert!(!Event::new().unwrap().is_set());
    assert!(Condition::new().unwrap().notify(1).is_err());
    assert_eq!(Barrier::new(1).unwrap().wait_timeout(BOUND), Ok(0));
    let sq: SimpleQueue<u8> = SimpleQueue::new().unwrap();
    assert!(sq.is_empty());
    let jq: JoinableQueue<u8> = JoinableQueue::new().unwrap();
    assert!(jq.join());
    let full: Queue<u8> = Queue::with_maxsize(1).unwrap();
    full.put(1).unwrap();
    let e: PutError<u8> = full.try_put(2).unwrap_err();
    assert_eq!(e.error, QueueError::Full);
    use multiproc::shared_memory::{Item, ShareableList};
    let sl = ShareableList::new(None, &[Item::Int(1), "two".into()]).unwrap();
    assert_eq!(sl.get(-1).unwrap(), Item::Str("two".into()));
    let shm = SharedMemory::create(None, 64).unwrap();
    assert!(matches!(
        SharedMemory::attach("mp-no-such-block"),
        Err(ShmError::NotFound(_))
    ));
    let seg = multiproc::shm::Segment::new(8).unwrap();
    assert_eq!(seg.len(), 8);
    drop(shm);
}

#[test]
fn sharedctypes_reexports() {
    use multiproc::sharedctypes::{ArrayGuard, HasAtomic, SharedMutex, ShmError, ValueGuard};
    use multiproc::{Array, RawArray, RawValue, Value};
    fn atomic_ok<T: HasAtomic>() {}
    atomic_ok::<u64>();
    let v = Value::new(1i64).unwrap();
    {
        let mut g: ValueGuard<'_, i64> = v.lock();
        *g += 1;
    }
    assert_eq!(v.get(), 2);
    let a = Array::<f64>::new(3).unwrap();
    {
        let mut g: ArrayGuard<'_, f64> = a.lock();
        g[1] = 2.5;
    }
    assert_eq!(a.to_vec(), [0.0, 2.5, 0.0]);
    let _: &SharedMutex = a.get_lock();
    let rv = RawValue::new(7u32).unwrap();
    assert_eq!(rv.get(), 7);
    let ra = RawArray::<u8>::new(2).unwrap();
    assert!(matches!(ra.get(5), Err(ShmError::IndexOutOfRange { .. })));
}
