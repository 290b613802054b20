//! The facade re-exports every workspace crate under Python's names: this test touches each
//! re-export, and starts a real child through the facade alone.

multiproc::test_support!();

use std::time::Duration;

use multiproc::connection::{
    wait, Address, Client, Connection, Listener, RawWaitHandle, ToAddress, Waitable,
};
use multiproc::pool::{Data, IMapIter};
use multiproc::{
    active_children, cpu_count, current_process, get_context, get_start_method, init,
    parent_process, pickle, pipe, AsyncResult, Context, Error, ParentProcess, Pipe, Pool,
    PoolBuilder, PoolError, Process, ProcessInfo, StartMethod, ThreadPool,
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
    let ctx: Context = get_context(StartMethod::Forkserver).unwrap();
    let (a, b) = Pipe(true).unwrap();
    let p: Process = ctx.process(child, b).name("facade-child");
    p.start().unwrap();
    assert!(!wait(&[&a as &dyn Waitable], Some(Duration::from_secs(30)))
        .unwrap()
        .is_empty());
    let (name, ppid): (String, u32) = a.recv().unwrap();
    assert_eq!((name.as_str(), ppid), ("facade-child", std::process::id()));
    assert_eq!(p.join().unwrap(), 0);
    assert!(active_children().is_empty() || active_children().iter().all(|c| c.pid() != p.pid()));
    let _: Option<RawWaitHandle> = a.wait_handle();

    let (x, y) = pipe(false).unwrap();
    y.send_bytes(b"one-way").unwrap();
    assert_eq!(x.recv_bytes().unwrap(), b"one-way");

    let l = Listener::bind("127.0.0.1:0", None).unwrap();
    let addr: Address = l.address();
    let addr2 = (&addr).to_address().unwrap();
    let t = std::thread::spawn(move || Client::connect(addr2, None).unwrap().send(&1u8).unwrap());
    assert_eq!(l.accept().unwrap().recv::<u8>().unwrap(), 1);
    t.join().unwrap();

    let bytes = pickle::encode(&pickle::Bytes(vec![1, 2, 3])).unwrap();
    assert_eq!(
        pickle::decode::<pickle::Bytes>(&bytes).unwrap().0,
        [1, 2, 3]
    );
    assert!(matches!(
        multiproc::set_start_method(StartMethod::Spawn),
        Ok(()) | Err(Error::StartMethodAlreadySet)
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
    assert_eq!(r.get(None).unwrap(), 6);
    let it: IMapIter<'_, i32, i32, _> = pool.imap(triple, 0..3, 1).unwrap();
    assert_eq!(it.map(Result::unwrap).collect::<Vec<_>>(), [0, 3, 6]);
    pool.close();
    assert!(matches!(pool.apply(triple, 1), Err(PoolError::Closed)));
    let tp = ThreadPool::new(1).unwrap();
    assert_eq!(tp.map(triple, [1, 2]).unwrap(), [3, 6]);
    takes_data(&1u8);
}

#[multiproc::main]
#[allow(dead_code)]
fn main_with_attribute_compiles() {}
