//! Registered user types across real processes: typed calls, typed method errors, unknown
//! methods, panics, proxies inside a user type's state.

use multiproc::managers::{
    CallError, DictProxy, Managed, ManagerError, Method, Methods, ServerError, UserProxy,
};
use multiproc::{Manager, Process, StartMethod};
use serde::{Deserialize, Serialize};

multiproc::test_support!();

#[path = "../../process/tests/integration/bounded.rs"]
mod bounded;
use bounded::JoinBounded;

struct Counter {
    n: i64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum CounterError {
    WouldGoNegative { have: i64, want: i64 },
}

impl Counter {
    const ADD: Method<Counter, i64, i64> = Method::new("add");
    const GET: Method<Counter, (), i64> = Method::new("get");
    const TAKE: Method<Counter, i64, i64, CounterError> = Method::new("take");
    const BOOM: Method<Counter, (), ()> = Method::new("boom");
}

impl Managed for Counter {
    const NAME: &'static str = "Counter";
    type Init = i64;
    fn new(n: i64) -> Counter {
        Counter { n }
    }
    fn methods(m: &mut Methods<Counter>) {
        m.method(Counter::ADD, |c, d| {
            c.n += d;
            c.n
        });
        m.method(Counter::GET, |c, ()| c.n);
        m.fallible(Counter::TAKE, |c, want| {
            if c.n < want {
                return Err(CounterError::WouldGoNegative { have: c.n, want });
            }
            c.n -= want;
            Ok(c.n)
        });
        m.method(Counter::BOOM, |_, ()| panic!("boom on purpose"));
    }
}

fn add_100(c: UserProxy<Counter>) {
    for _ in 0..100 {
        c.call(Counter::ADD, &1).unwrap();
    }
}

#[test]
fn a_registered_type_is_shared_by_processes_of_every_start_method() {
    for &method in StartMethod::available() {
        let m = Manager::builder()
            .register::<Counter>()
            .start_method(method)
            .start()
            .unwrap();
        let c = m.make::<Counter>(&5).unwrap();
        let ps: Vec<Process> = (0..3)
            .map(|_| Process::new(add_100, c.clone()).start_method(method))
            .collect();
        for p in &ps {
            p.start().unwrap();
        }
        for p in &ps {
            assert_eq!(p.join_bounded(), 0, "{method:?}");
        }
        assert_eq!(c.call(Counter::GET, &()).unwrap(), 305, "{method:?}");
        m.shutdown().unwrap();
    }
}

#[test]
fn a_method_error_comes_back_typed_and_the_object_goes_on() {
    let m = Manager::builder().register::<Counter>().start().unwrap();
    let c = m.make::<Counter>(&3).unwrap();
    assert_eq!(
        c.try_call(Counter::TAKE, &10).unwrap(),
        Err(CounterError::WouldGoNegative { have: 3, want: 10 })
    );
    match c.call_or_err(Counter::TAKE, &10) {
        Err(CallError::Method(CounterError::WouldGoNegative { have: 3, want: 10 })) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(c.call_or_err(Counter::TAKE, &2).unwrap(), 1);
    // a user proxy is a value like any proxy: stored in a dict, read back, the same object
    let d = m.dict::<String, UserProxy<Counter>>().unwrap();
    d.set("c".into(), c.clone()).unwrap();
    drop(c);
    let back = d.get("c").unwrap().unwrap();
    assert_eq!(back.call(Counter::ADD, &10).unwrap(), 11);
    assert_eq!(m.object_count().unwrap(), 2);
    drop(back);
    d.clear().unwrap();
    assert_eq!(m.object_count().unwrap(), 1);
}

#[test]
fn unknown_methods_bad_arguments_and_panics_are_typed_errors() {
    let m = Manager::builder().register::<Counter>().start().unwrap();
    let c = m.make::<Counter>(&1).unwrap();
    match c.call_by_name::<i64, i64>("no_such", &1) {
        Err(ManagerError::Server(ServerError::UnknownMethod { type_name, method })) => {
            assert_eq!(
                (type_name.as_str(), method.as_str()),
                ("Counter", "no_such")
            );
        }
        other => panic!("{other:?}"),
    }
    // an argument of the wrong shape: a string where an i64 is wanted
    assert!(matches!(
        c.call_by_name::<String, i64>("add", &"x".repeat(20)),
        Err(ManagerError::Server(ServerError::Malformed(_)))
    ));
    match c.call(Counter::BOOM, &()) {
        Err(ManagerError::Server(ServerError::Panicked(why))) => assert!(why.contains("boom")),
        other => panic!("{other:?}"),
    }
    // the server and the object go on
    assert_eq!(c.call(Counter::ADD, &1).unwrap(), 2);
    assert_eq!(m.object_count().unwrap(), 1);
}

#[test]
fn an_unregistered_type_is_refused_and_registration_works_in_process() {
    let m = Manager::start().unwrap();
    assert!(matches!(
        m.make::<Counter>(&0),
        Err(ManagerError::Server(ServerError::UnknownType(t))) if t == "Counter"
    ));
    let served = Manager::builder()
        .register::<Counter>()
        .serve("127.0.0.1:0", b"user-key")
        .unwrap();
    let c = served.make::<Counter>(&40).unwrap();
    assert_eq!(c.call(Counter::ADD, &2).unwrap(), 42);
}

fn serve_counters_forever(report: multiproc::Connection) {
    Manager::builder()
        .register::<Counter>()
        .serve_forever("127.0.0.1:0", b"counters", |a| {
            report.send(&a.to_string()).unwrap()
        })
        .unwrap();
}

#[test]
fn a_type_registered_on_a_serve_forever_child_is_made_by_a_client_that_connects() {
    for &method in StartMethod::available() {
        let (rx, tx) = multiproc::pipe(false).unwrap();
        let p = Process::new(serve_counters_forever, tx).start_method(method);
        p.start().unwrap();
        let addr: String = bounded::RecvBounded::recv_bounded(&rx);
        let m = Manager::connect(addr.as_str(), b"counters").unwrap();
        let c = m.make::<Counter>(&1).unwrap();
        assert_eq!(c.call(Counter::ADD, &1).unwrap(), 2, "{method:?}");
        m.shutdown().unwrap();
        assert_eq!(p.join_bounded(), 0, "{method:?}");
    }
}

/// A user type whose state holds a proxy of a dict on the same server.
struct Registry {
    seen: DictProxy<String, u32>,
}

impl Registry {
    const SEE: Method<Registry, String, u32> = Method::new("see");
    const TABLE: Method<Registry, (), DictProxy<String, u32>> = Method::new("table");
    const REPLACE: Method<Registry, DictProxy<String, u32>, ()> = Method::new("replace");
}

impl Managed for Registry {
    const NAME: &'static str = "Registry";
    type Init = DictProxy<String, u32>;
    fn new(seen: DictProxy<String, u32>) -> Registry {
        Registry { seen }
    }
    fn methods(m: &mut Methods<Registry>) {
        m.method(Registry::SEE, |r, k| r.seen.add(k, 1).unwrap());
        m.method(Registry::TABLE, |r, ()| r.seen.clone());
        m.method(Registry::REPLACE, |r, d| r.seen = d);
    }
}

fn see_twice(r: UserProxy<Registry>) {
    r.call(Registry::SEE, &"child".to_string()).unwrap();
    r.call(Registry::SEE, &"child".to_string()).unwrap();
}

#[test]
fn a_user_type_may_hold_proxies_which_live_while_it_does() {
    let m = Manager::builder().register::<Registry>().start().unwrap();
    let d = m.dict::<String, u32>().unwrap();
    let r = m.make::<Registry>(&d).unwrap();
    drop(d); // the registry keeps the dict alive
    assert_eq!(m.object_count().unwrap(), 2);
    assert_eq!(r.call(Registry::SEE, &"a".to_string()).unwrap(), 1);
    let p = Process::new(see_twice, r.clone());
    p.start().unwrap();
    assert_eq!(p.join_bounded(), 0);
    let table = r.call(Registry::TABLE, &()).unwrap();
    assert_eq!(table.get("child").unwrap(), Some(2));
    drop(table);
    // a proxy as an argument: the old dict goes once nothing refers to it
    let fresh = m.dict::<String, u32>().unwrap();
    r.call(Registry::REPLACE, &fresh).unwrap();
    drop(fresh);
    let deadline = std::time::Instant::now() + bounded::BOUND;
    while m.object_count().unwrap() != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the old dict was not released"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(r);
    while m.object_count().unwrap() != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the registry's dict was not released"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
