//! Lists, arrays, values and namespaces of a manager, across real processes with every start
//! method: nested proxies (a list of dicts, a dict of lists) seen by everyone, a dict of lists
//! built by a pool, atomic updates from four processes with no update lost, typed errors for bad
//! requests, and objects released when their proxies go.

use std::time::{Duration, Instant};

use multiproc::managers::{
    ArrayProxy, DictProxy, ListProxy, ManagerError, NamespaceProxy, ServerError, ValueProxy,
};
use multiproc::{Manager, Pool, Process, StartMethod};

multiproc::test_support!();

#[path = "../../process/tests/integration/bounded.rs"]
mod bounded;
use bounded::{JoinBounded, BOUND};

/// The start methods of this platform (spawn only on Windows).
fn methods() -> impl Iterator<Item = StartMethod> {
    StartMethod::available().iter().copied()
}

/// Run `f` in one child per argument with `method`, and check they all end well.
fn run_children<A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static>(
    method: StartMethod,
    f: fn(A),
    args: Vec<A>,
) {
    let ps: Vec<Process> = args
        .into_iter()
        .map(|a| Process::new(f, a).start_method(method))
        .collect();
    for p in &ps {
        p.start().unwrap();
    }
    for p in &ps {
        assert_eq!(p.join_bounded(), 0, "{method:?}");
    }
}

/// The server's object count, once it settles at `n` (a dropped proxy's reference goes back
/// without a reply): fails if it is not `n` within the bound.
fn assert_count(m: &Manager, n: usize) {
    let start = Instant::now();
    loop {
        let now = m.object_count().unwrap();
        if now == n {
            return;
        }
        assert!(start.elapsed() < BOUND, "{now} objects, expected {n}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn server_error(e: ManagerError) -> ServerError {
    match e {
        ManagerError::Server(e) => e,
        other => panic!("not a server error: {other:?}"),
    }
}

// ---- nested proxies ----------------------------------------------------------------------

fn push_through_dict(d: DictProxy<String, ListProxy<u32>>) {
    let l = d.get("nums").unwrap().unwrap();
    l.push(1).unwrap();
    l.extend([2, 3]).unwrap();
}

fn set_through_list(l: ListProxy<DictProxy<String, u32>>) {
    let d = l.at(-1).unwrap();
    d.set("from child".into(), 7).unwrap();
    l.get(0).unwrap().unwrap().set("first".into(), 1).unwrap();
}

#[test]
fn a_dict_of_lists_and_a_list_of_dicts_are_the_same_objects_in_every_process() {
    for method in methods() {
        let m = Manager::builder().start_method(method).start().unwrap();

        let d = m.dict::<String, ListProxy<u32>>().unwrap();
        d.set("nums".into(), m.list().unwrap()).unwrap();
        assert_count(&m, 2);
        run_children(method, push_through_dict, vec![d.clone()]);
        assert_eq!(
            d.get("nums").unwrap().unwrap().copy().unwrap(),
            [1, 2, 3],
            "{method:?}"
        );

        let l = m.list::<DictProxy<String, u32>>().unwrap();
        l.push(m.dict().unwrap()).unwrap();
        l.push(m.dict().unwrap()).unwrap();
        assert_count(&m, 5);
        run_children(method, set_through_list, vec![l.clone()]);
        let dicts = l.copy().unwrap();
        assert_eq!(dicts[0].get("first").unwrap(), Some(1), "{method:?}");
        assert_eq!(dicts[1].get("from child").unwrap(), Some(7), "{method:?}");
        drop(dicts);

        drop(d);
        assert_count(&m, 3);
        drop(l);
        assert_count(&m, 0);
        m.shutdown().unwrap();
    }
}

// ---- a pool builds a dict of lists ---------------------------------------------------------

/// A pool task: file `n` under its remainder, and count it in the list it was given.
fn file_number((d, counts, n): (DictProxy<u32, ListProxy<u32>>, ListProxy<u64>, u32)) -> u32 {
    d.get(&(n % 4)).unwrap().unwrap().push(n).unwrap();
    counts.add((n % 4) as usize, 1).unwrap();
    n
}

#[test]
fn a_pool_builds_a_dict_of_lists() {
    for method in methods() {
        let m = Manager::builder().start_method(method).start().unwrap();
        let d = m.dict::<u32, ListProxy<u32>>().unwrap();
        d.update((0..4).map(|k| (k, m.list().unwrap()))).unwrap();
        let counts = m.list_from([0u64; 4]).unwrap();
        let pool = Pool::builder()
            .processes(2)
            .start_method(method)
            .build()
            .unwrap();
        let done = pool
            .map_async(
                file_number,
                (0..40).map(|n| (d.clone(), counts.clone(), n)),
                None,
            )
            .unwrap()
            .get_timeout(BOUND)
            .unwrap();
        assert_eq!(done, (0..40).collect::<Vec<_>>());
        pool.close();
        pool.join().unwrap();
        for k in 0..4 {
            let l = d.get(&k).unwrap().unwrap();
            l.sort().unwrap();
            let want: Vec<u32> = (0..40).filter(|n| n % 4 == k).collect();
            assert_eq!(l.copy().unwrap(), want, "{method:?}");
        }
        assert_eq!(counts.copy().unwrap(), [10; 4], "{method:?}");
        drop((d, counts));
        assert_count(&m, 0);
        m.shutdown().unwrap();
    }
}

// ---- atomic updates from four processes ------------------------------------------------------

type Shared = (
    ListProxy<i64>,
    ValueProxy<u64>,
    NamespaceProxy,
    ArrayProxy<f64>,
    ValueProxy<String>,
);

fn exclaim(s: String) -> String {
    s + "!"
}

fn bump_all((l, v, ns, a, s): Shared) {
    for _ in 0..50 {
        l.add(1, 1).unwrap();
        v.add(2).unwrap();
        ns.add("hits", 1u32).unwrap();
        a.add(0, 0.5).unwrap();
    }
    for _ in 0..10 {
        s.update_with(exclaim).unwrap();
        l.update_with(0, |x| x - 1).unwrap();
    }
}

#[test]
fn four_processes_update_lists_values_arrays_and_namespaces_without_losing_an_update() {
    for method in methods() {
        let m = Manager::builder().start_method(method).start().unwrap();
        let shared: Shared = (
            m.list_from([0i64, 0]).unwrap(),
            m.value(0u64).unwrap(),
            m.namespace().unwrap(),
            m.array(1, 0.0f64).unwrap(),
            m.value(String::new()).unwrap(),
        );
        run_children(method, bump_all, vec![shared.clone(); 4]);
        let (l, v, ns, a, s) = shared;
        assert_eq!(l.copy().unwrap(), [-40, 200], "{method:?}");
        assert_eq!(v.get().unwrap(), 400, "{method:?}");
        assert_eq!(ns.get::<u32>("hits").unwrap(), 200, "{method:?}");
        assert_eq!(a.get(0).unwrap(), 100.0, "{method:?}");
        assert_eq!(s.get().unwrap().len(), 40, "{method:?}");
        drop((l, v, ns, a, s));
        assert_count(&m, 0);
        m.shutdown().unwrap();
    }
}

// ---- sort ------------------------------------------------------------------------------------

/// Ordered by its number alone, so a stable sort shows.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Keyed(u8, char);

impl PartialEq for Keyed {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Keyed {}
impl PartialOrd for Keyed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Keyed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

#[test]
fn sort_works_on_a_server_that_runs_functions_and_on_one_that_does_not() {
    for functions in [true, false] {
        let m = Manager::builder()
            .allow_functions(functions)
            .start()
            .unwrap();
        let l = m
            .list_from([(2u8, "b"), (1, "z"), (2, "a"), (0, "q")].map(|(k, s)| (k, s.to_string())))
            .unwrap();
        l.sort().unwrap();
        assert_eq!(
            l.copy().unwrap(),
            [(0, "q"), (1, "z"), (2, "a"), (2, "b")].map(|(k, s)| (k, s.to_string()))
        );
        // stable both ways: equal keys keep their order
        let keyed = [(1, 'a'), (3, 'b'), (1, 'c'), (0, 'd')].map(|(k, c)| Keyed(k, c));
        let k = m.list_from(keyed).unwrap();
        k.sort_descending().unwrap();
        let order =
            |k: &ListProxy<Keyed>| -> String { k.copy().unwrap().iter().map(|x| x.1).collect() };
        assert_eq!(order(&k), "bacd");
        k.sort().unwrap();
        assert_eq!(order(&k), "dacb");
        let empty = m.list::<u8>().unwrap();
        empty.sort().unwrap();
        assert!(empty.is_empty().unwrap());
        // a function sent to a server that refuses them: a typed error, the list as it was
        if !functions {
            let e = l.update_with(0, |x| x).unwrap_err();
            assert_eq!(server_error(e), ServerError::FunctionsNotAllowed);
        }
        m.shutdown().unwrap();
    }
}

fn push_many(l: ListProxy<u32>) {
    let base = (std::process::id() % 1000) * 1000;
    for i in 0..200 {
        l.push(base + i % 7).unwrap();
    }
}

#[test]
fn a_client_side_sort_loses_no_concurrent_push() {
    for method in [StartMethod::Spawn, StartMethod::Fork]
        .into_iter()
        .filter(|m| StartMethod::available().contains(m))
    {
        let m = Manager::builder()
            .start_method(method)
            .allow_functions(false)
            .start()
            .unwrap();
        let l = m.list::<u32>().unwrap();
        let ps: Vec<Process> = (0..2)
            .map(|_| Process::new(push_many, l.clone()).start_method(method))
            .collect();
        for p in &ps {
            p.start().unwrap();
        }
        let mut sorts = 0;
        while ps.iter().any(|p| p.is_alive()) && sorts < 10_000 {
            l.sort().unwrap();
            sorts += 1;
        }
        for p in &ps {
            assert_eq!(p.join_bounded(), 0);
        }
        l.sort().unwrap();
        let v = l.copy().unwrap();
        assert_eq!(v.len(), 400, "{method:?}: a push was lost");
        assert!(v.windows(2).all(|w| w[0] <= w[1]));
        m.shutdown().unwrap();
    }
}

// ---- the API, one process --------------------------------------------------------------------

#[test]
fn list_operations_behave_as_vec_and_python() {
    let m = Manager::start().unwrap();
    let l = m.list_from([1, 2, 3, 2]).unwrap();
    assert_eq!(l.len().unwrap(), 4);
    assert_eq!(l.index(&2).unwrap(), 1);
    assert_eq!(l.count(&2).unwrap(), 2);
    assert!(l.contains(&3).unwrap() && !l.contains(&9).unwrap());
    l.remove(&2).unwrap();
    assert_eq!(l.copy().unwrap(), [1, 3, 2]);
    l.insert(0, 0).unwrap();
    l.insert(4, 4).unwrap();
    assert_eq!(l.copy().unwrap(), [0, 1, 3, 2, 4]);
    assert_eq!(l.at(-2).unwrap(), 2);
    assert_eq!(l.slice(1..=2).unwrap(), [1, 3]);
    assert_eq!(l.slice(..).unwrap(), l.copy().unwrap());
    // a start past the end: empty, as in Python (`l[3:1]`)
    let (start, end) = (3, 1);
    assert_eq!(l.slice(start..end).unwrap(), Vec::<i32>::new());
    assert_eq!(l.splice(1..3, [9]).unwrap(), [1, 3]);
    assert_eq!(l.copy().unwrap(), [0, 9, 2, 4]);
    assert_eq!(l.drain(2..).unwrap(), [2, 4]);
    l.reverse().unwrap();
    assert_eq!(l.copy().unwrap(), [9, 0]);
    assert_eq!(l.pop().unwrap(), Some(0));
    assert_eq!(l.pop_at(0).unwrap(), 9);
    assert_eq!(l.pop().unwrap(), None);
    assert!(l.is_empty().unwrap());
    m.shutdown().unwrap();
}

#[test]
fn bad_requests_are_typed_errors() {
    let m = Manager::start().unwrap();
    let l = m.list_from([1u8, 2]).unwrap();
    let oob = |e: ManagerError| match server_error(e) {
        ServerError::IndexOutOfRange { len, .. } => len,
        other => panic!("{other:?}"),
    };
    assert_eq!(l.get(2).unwrap(), None);
    assert_eq!(oob(l.at(2).unwrap_err()), 2);
    assert_eq!(oob(l.at(-3).unwrap_err()), 2);
    assert_eq!(oob(l.at(i64::MIN).unwrap_err()), 2);
    assert_eq!(oob(l.set(5, 0).unwrap_err()), 2);
    assert_eq!(oob(l.set(usize::MAX, 0).unwrap_err()), 2);
    assert_eq!(oob(l.insert(3, 0).unwrap_err()), 2);
    assert_eq!(oob(l.pop_at(2).unwrap_err()), 2);
    assert_eq!(oob(l.add(2, 1).unwrap_err()), 2);
    assert_eq!(oob(l.update_with(2, |x| x).unwrap_err()), 2);
    assert_eq!(oob(l.compare_and_set(9, &1, 2).unwrap_err()), 2);
    assert_eq!(
        server_error(l.remove(&7).unwrap_err()),
        ServerError::ValueNotFound
    );
    assert_eq!(
        server_error(l.index(&7).unwrap_err()),
        ServerError::ValueNotFound
    );
    assert_eq!(
        server_error(l.add(1, 255).unwrap_err()),
        ServerError::Overflow
    );
    // a function that panics on the server changes nothing, and the server goes on
    let e = l.update_with(0, |_| panic!("no such thing")).unwrap_err();
    assert!(matches!(server_error(e), ServerError::Panicked(s) if s.contains("no such thing")));
    assert_eq!(l.copy().unwrap(), [1, 2]);

    // arrays keep their length
    let a = m.array(2, 0u16).unwrap();
    assert_eq!(oob(a.get(2).unwrap_err()), 2);
    assert_eq!(oob(a.set(2, 1).unwrap_err()), 2);
    assert_eq!(
        server_error(a.set_slice(0..1, [1, 2]).unwrap_err()),
        ServerError::FixedLength
    );
    a.set_slice(.., [3, 4]).unwrap();
    assert_eq!(a.to_vec().unwrap(), [3, 4]);
    // an array's proxy taken as a list's: refused when decoded
    let ns = m.namespace().unwrap();
    ns.set("a", &a).unwrap();
    assert!(matches!(
        ns.get::<ListProxy<u16>>("a").unwrap_err(),
        ManagerError::Pickle(_)
    ));

    // values
    let v = m.value(i8::MAX).unwrap();
    assert_eq!(server_error(v.add(1).unwrap_err()), ServerError::Overflow);
    assert_eq!(v.get().unwrap(), i8::MAX);

    // namespaces: missing fields, fields read as another type
    assert_eq!(
        server_error(ns.get::<u8>("nope").unwrap_err()),
        ServerError::NoAttribute("nope".into())
    );
    assert_eq!(
        server_error(ns.del("nope").unwrap_err()),
        ServerError::NoAttribute("nope".into())
    );
    ns.set("text", "hello").unwrap();
    assert!(matches!(
        ns.get::<u64>("text").unwrap_err(),
        ManagerError::Pickle(_)
    ));
    assert!(matches!(
        server_error(ns.add("text", 1u64).unwrap_err()),
        ServerError::NotANumber(_)
    ));
    assert_eq!(ns.get::<String>("text").unwrap(), "hello");
    // a list of strings read as a list of numbers: its elements fail to decode
    let words = m.list_from(["ab".to_string()]).unwrap();
    ns.set("words", &words).unwrap();
    let wrong: ListProxy<u64> = ns.get("words").unwrap();
    assert!(matches!(wrong.get(0).unwrap_err(), ManagerError::Pickle(_)));
    assert!(matches!(wrong.copy().unwrap_err(), ManagerError::Pickle(_)));
    m.shutdown().unwrap();
}

// ---- lifetimes -------------------------------------------------------------------------------

#[test]
fn objects_held_by_lists_values_arrays_and_namespaces_go_when_released() {
    let m = Manager::start().unwrap();
    let l = m.list::<ListProxy<u8>>().unwrap();
    for _ in 0..5 {
        l.push(m.list().unwrap()).unwrap();
    }
    assert_count(&m, 6);
    drop(l.pop().unwrap());
    assert_count(&m, 5);
    drop(l.pop_at(0).unwrap());
    assert_count(&m, 4);
    drop(l.drain(..1).unwrap());
    assert_count(&m, 3);
    let inner = m.list_from([1u8]).unwrap();
    drop(l.splice(0..1, [inner.clone()]).unwrap());
    assert_count(&m, 3);
    // the same object twice, then removed by value
    l.push(inner.clone()).unwrap();
    assert_eq!(l.count(&inner).unwrap(), 2);
    l.remove(&inner).unwrap();
    assert_eq!(l.index(&inner).unwrap(), 1);
    l.set(1, m.list().unwrap()).unwrap();
    assert_count(&m, 4);
    drop(inner);
    assert_count(&m, 3);
    l.clear().unwrap();
    assert_count(&m, 1);
    drop(l);
    assert_count(&m, 0);

    let inner = m.list_from([7u8]).unwrap();
    let a = m.array(3, inner.clone()).unwrap();
    let v = m.value(inner.clone()).unwrap();
    let ns = m.namespace().unwrap();
    ns.set("l", &inner).unwrap();
    drop(inner);
    assert_count(&m, 4);
    assert_eq!(a.get(2).unwrap().copy().unwrap(), [7]);
    drop(v.swap(m.list().unwrap()).unwrap());
    ns.del("l").unwrap();
    drop(a);
    assert_count(&m, 3);
    drop(v);
    assert_count(&m, 1);
    drop(ns);
    assert_count(&m, 0);
    m.shutdown().unwrap();
}

fn use_theirs_from_a_child(l: ListProxy<ListProxy<u8>>) {
    let theirs = l.get(0).unwrap().unwrap();
    theirs.push(9).unwrap();
}

#[test]
fn proxies_of_another_server_stored_here_stay_theirs() {
    // Two servers whose ids overlap: the second's first list has the id of the first's list.
    // Storing the second's proxies in the first's objects (push, extend, splice, a new list or
    // dict made from them) must neither count them on the first server by id (an unrelated
    // object, or `NoSuchObject`) nor lose them: read back, in this process or a child, they
    // reach their own server's objects.
    let m = Manager::start().unwrap();
    let other = Manager::start().unwrap();
    let l = m.list::<ListProxy<u8>>().unwrap();
    let theirs: Vec<ListProxy<u8>> = (0..3).map(|_| other.list().unwrap()).collect();
    assert_eq!(l.proxy().id(), theirs[0].proxy().id());
    theirs[0].push(5).unwrap();
    l.extend([theirs[0].clone(), theirs[2].clone()]).unwrap();
    l.push(theirs[1].clone()).unwrap();
    l.splice(2..3, [theirs[1].clone()]).unwrap();
    let made = m.list_from([theirs[2].clone()]).unwrap();
    let d = m.dict_from([("x".to_string(), theirs[0].clone())]).unwrap();
    assert_count(&m, 3);
    assert_count(&other, 3);

    let back = l.get(0).unwrap().unwrap();
    assert_eq!(back.proxy().address(), theirs[0].proxy().address());
    assert_eq!(back.copy().unwrap(), [5]);
    back.push(6).unwrap();
    assert_eq!(theirs[0].copy().unwrap(), [5, 6]);
    assert_eq!(d.get("x").unwrap().unwrap().copy().unwrap(), [5, 6]);
    made.get(0).unwrap().unwrap().push(1).unwrap();
    assert_eq!(theirs[2].copy().unwrap(), [1]);
    for method in methods() {
        run_children(method, use_theirs_from_a_child, vec![l.clone()]);
    }
    // one 9 from a child of each start method
    let mut want = vec![5, 6];
    want.resize(2 + methods().count(), 9);
    assert_eq!(theirs[0].copy().unwrap(), want);

    // Every proxy of theirs gone here: the first server's objects go when released; the
    // second server's stored ones are pinned (the first never says when it lets them go), so
    // they live until it stops.
    drop((back, theirs));
    drop((l, made, d));
    assert_count(&m, 0);
    assert_count(&other, 3);
    m.shutdown().unwrap();
    other.shutdown().unwrap();
}
