//! The tour: a few seconds of real work across processes, narrated, covering what multiproc
//! does today. It is the first command of the README:
//!
//! ```text
//! cargo run --release -p multiproc-examples --bin tour
//! ```
//!
//! `tour --sections connections,wait` runs only the sections named (or numbered) there, in the
//! tour's order; `cargo xtask test --windows` runs the process sections this way under Wine.
//!
//! Sections: exit codes; the three start methods; a `Connection` passed to a child and a
//! ping-pong timing; parallel Fibonacci; `Listener`/`Client` over TCP with an authkey;
//! `wait()` over several children with `active_children()`; a `Pool` mapping CPU-bound work
//! and surviving a crashed worker; a `Queue` feeding workers that add into a shared `Value`, and
//! a `Lock` whose holder is killed; a `Manager` whose dict four workers count into, nested
//! proxies, and a manager served over TCP with a key.
//!
//! Every target below is a plain `fn` taking one serde argument (a tuple for several), as
//! `Process::new` requires: it reaches the child as its position in this very binary.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use multiproc::connection::{wait_timeout, Client, Listener, Waitable};
use multiproc::managers::DictProxy;
use multiproc::{Connection, Manager, Process, StartMethod};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Set by `main` at run time: a forked child sees the parent's value, a spawned one does not.
static MARK: AtomicU32 = AtomicU32::new(0);

fn section(n: u32, title: &str) {
    println!("\n{n}. {title}");
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

// ---------------------------------------------------------------------------------------------
// 1. exit codes

fn returns(_: ()) {}

fn panics(text: String) {
    let n: u32 = text.parse().expect("a number");
    println!("unreachable: {n}");
}

fn exits(code: i32) {
    std::process::exit(code)
}

fn sleeps_until_stopped(ready: Connection) {
    ready.send(&()).expect("the parent is listening");
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn exit_codes() -> Res {
    section(1, "Start and join: exit codes follow Python");
    let p = Process::new(returns, ()).with_name("returns");
    p.start()?;
    println!(
        "   {:<8} returned normally   -> exitcode {}",
        p.name(),
        p.join()?
    );

    println!("   (the next child panics: its report on stderr is the Rust twin of a traceback)");
    let p = Process::new(panics, "forty-two".to_string()).with_name("panics");
    p.start()?;
    let code = p.join()?;
    println!(
        "   {:<8} panicked           -> exitcode {code}, panic_message() = {:?}",
        p.name(),
        p.panic_message().unwrap_or_default()
    );

    let p = Process::new(exits, 3).with_name("exits");
    p.start()?;
    println!(
        "   {:<8} called exit(3)     -> exitcode {}",
        p.name(),
        p.join()?
    );

    let (here, there) = multiproc::pipe(true)?;
    let p = Process::new(sleeps_until_stopped, there).with_name("sleeper");
    p.start()?;
    here.recv::<()>()?; // running for sure
    p.terminate()?;
    println!(
        "   {:<8} was terminate()d   -> exitcode {} (killed by SIGTERM, signal 15)",
        p.name(),
        p.join()?
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. start methods

fn report_in(conn: Connection) {
    let me = multiproc::current_process();
    let parent = multiproc::parent_process().map(|p| p.pid()).unwrap_or(0);
    conn.send(&(me.name, me.pid, parent, MARK.load(Ordering::Relaxed)))
        .expect("the parent is listening");
}

fn start_methods() -> Res {
    section(2, "Three start methods: spawn (default), fork, forkserver");
    MARK.store(42, Ordering::Relaxed);
    println!(
        "   main set a static to 42 at run time; pid {}",
        std::process::id()
    );
    let runs = [
        (StartMethod::Spawn, "re-executes this binary"),
        (StartMethod::Fork, "copies the parent, memory included"),
        (StartMethod::Forkserver, "first use starts the fork server"),
        (StartMethod::Forkserver, "the server is running now"),
    ];
    for (method, note) in runs {
        let ctx = multiproc::get_context(method)?;
        let (here, there) = multiproc::pipe(true)?;
        let t = Instant::now();
        let p = ctx
            .process(report_in, there)
            .with_name(format!("{}-child", method.name()));
        p.start()?;
        let (name, pid, parent, mark): (String, u32, u32, u32) = here.recv()?;
        let took = t.elapsed();
        p.join()?;
        println!(
            "   {name:<16} pid {pid:<7} parent {parent:<7} sees the static = {mark:<2}  ready {:>8} after start ({note})",
            ms(took)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. a Connection passed to a child; ping-pong

fn squarer(conn: Connection) {
    while let Ok(Some(x)) = conn.recv::<Option<u64>>() {
        conn.send(&(x * x)).expect("the parent is listening");
    }
}

fn connections() -> Res {
    section(3, "A Connection passed to a child, then a ping-pong");
    let (here, there) = multiproc::pipe(true)?;
    let p = Process::new(squarer, there).with_name("squarer");
    p.start()?;
    let mut squares = Vec::new();
    for x in 1..=6u64 {
        here.send(&Some(x))?;
        squares.push(here.recv::<u64>()?);
    }
    println!("   sent 1..=6 to '{}', got back {squares:?}", p.name());

    const ROUNDS: u64 = 10_000;
    let t = Instant::now();
    for x in 0..ROUNDS {
        here.send(&Some(x))?;
        let back: u64 = here.recv()?;
        debug_assert_eq!(back, x * x);
    }
    let took = t.elapsed();
    println!(
        "   {ROUNDS} round trips in {}: {:.1} µs per send + recv + send + recv",
        ms(took),
        took.as_secs_f64() * 1e6 / ROUNDS as f64
    );
    here.send(&None::<u64>)?;
    p.join()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 4. parallel Fibonacci

fn fib(n: u32) -> u64 {
    if n < 2 {
        n as u64
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

fn fib_worker((n, conn): (u32, Connection)) {
    conn.send(&fib(n)).expect("the parent is listening");
}

fn fibonacci() -> Res {
    section(4, "Parallel Fibonacci: one process per number");
    let numbers = [33, 34, 35, 36];
    let t = Instant::now();
    let mut jobs = Vec::new();
    for n in numbers {
        let (here, there) = multiproc::pipe(true)?;
        let p = Process::new(fib_worker, (n, there)).with_name(format!("fib-{n}"));
        p.start()?;
        jobs.push((n, p, here));
    }
    for (n, p, here) in &jobs {
        let value: u64 = here.recv()?;
        println!("   fib({n}) = {value:<9} from '{}'", p.name());
        p.join()?;
    }
    let parallel = t.elapsed();

    let t = Instant::now();
    let sequential: Vec<u64> = numbers.iter().map(|&n| fib(n)).collect();
    let sequential_time = t.elapsed();
    std::hint::black_box(sequential);
    println!(
        "   {} processes, starts included: {}; one after another in this process: {} \
         ({:.2}x with {} CPUs)",
        jobs.len(),
        ms(parallel),
        ms(sequential_time),
        sequential_time.as_secs_f64() / parallel.as_secs_f64(),
        multiproc::cpu_count()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5. Listener / Client over TCP with an authkey

fn tcp_client((address, authkey, report): (String, Vec<u8>, Connection)) {
    let outcome = Client::connect(address.as_str(), Some(&authkey)).and_then(|conn| {
        conn.send(&(multiproc::current_process().name, vec![3u64, 4, 5]))?;
        conn.recv::<u64>()
    });
    report
        .send(&outcome.map_err(|e| e.to_string()))
        .expect("the parent is listening");
}

fn listener_and_client() -> Res {
    section(
        5,
        "Listener and Client over TCP, authenticated with an authkey",
    );
    let listener = Listener::bind("127.0.0.1:0", Some(b"tour secret"))?;
    let address = listener.address().to_string();
    println!("   listening on {address}");

    let (report, there) = multiproc::pipe(true)?;
    let args = (address.clone(), b"tour secret".to_vec(), there);
    let p = Process::new(tcp_client, args).with_name("tcp-client");
    p.start()?;
    let conn = listener.accept()?;
    let (name, numbers): (String, Vec<u64>) = conn.recv()?;
    conn.send(&numbers.iter().sum::<u64>())?;
    let answer: Result<u64, String> = report.recv()?;
    p.join()?;
    println!("   '{name}' authenticated and sent {numbers:?}; it got back the sum {answer:?}");

    let (report, there) = multiproc::pipe(true)?;
    let args = (address, b"a wrong guess".to_vec(), there);
    let p = Process::new(tcp_client, args).with_name("intruder");
    p.start()?;
    let server_side = listener.accept().map(|_| ()).map_err(|e| e.to_string());
    let client_side: Result<u64, String> = report.recv()?;
    p.join()?;
    println!("   a client with the wrong authkey is rejected on both sides:");
    println!("     listener.accept() -> {server_side:?}");
    println!("     Client::connect() -> {client_side:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 6. wait() and active_children()

fn nap((millis, code): (u64, i32)) {
    std::thread::sleep(Duration::from_millis(millis));
    std::process::exit(code)
}

fn waiting() -> Res {
    section(6, "wait() on several children; active_children()");
    let t = Instant::now();
    let mut running = Vec::new();
    for (millis, code) in [(90, 0), (30, 7), (60, 0)] {
        let p = Process::new(nap, (millis, code)).with_name(format!("nap-{millis}ms"));
        p.start()?;
        running.push(p);
    }
    let names: Vec<String> = multiproc::active_children()
        .iter()
        .map(Process::name)
        .collect();
    println!("   active_children() = {names:?}");
    while !running.is_empty() {
        let mut ready = {
            let objects: Vec<&dyn Waitable> = running.iter().map(|p| p as &dyn Waitable).collect();
            wait_timeout(&objects, Duration::from_secs(10))?
        };
        if ready.is_empty() {
            return Err("children did not end within 10 s".into());
        }
        ready.sort_unstable();
        for &i in ready.iter().rev() {
            let p = running.remove(i);
            println!(
                "   wait() -> {:<9} ended after {:>8}, exitcode {}",
                p.name(),
                ms(t.elapsed()),
                p.join()?
            );
        }
    }
    println!("   active_children() = {:?}", multiproc::active_children());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 7. Pool

/// Primes below `n`, counted the slow way: a CPU-bound task.
fn count_primes(n: u64) -> usize {
    (2..n)
        .filter(|&k| (2..).take_while(|d| d * d <= k).all(|d| k % d != 0))
        .count()
}

/// A task that crashes its worker for one input, as a buggy native library would.
fn fragile(x: u64) -> u64 {
    if x == 3 {
        std::process::abort();
    }
    x * x
}

fn pool() -> Res {
    section(
        7,
        "Pool: map, imap_unordered, apply_async, and a worker that crashes",
    );
    let pool = multiproc::Pool::new(multiproc::cpu_count())?;
    let limits: Vec<u64> = (1..=8).map(|k| k * 20_000).collect();
    let t = Instant::now();
    let counts = pool.map(count_primes, limits.clone())?;
    let pooled = t.elapsed();
    let t = Instant::now();
    let sequential: Vec<usize> = limits.iter().map(|&n| count_primes(n)).collect();
    let sequential_time = t.elapsed();
    assert_eq!(counts, sequential);
    println!(
        "   map(count_primes, 20k..=160k) = {counts:?}\n   pool of {}: {}; sequential: {} ({:.2}x)",
        pool.processes(),
        ms(pooled),
        ms(sequential_time),
        sequential_time.as_secs_f64() / pooled.as_secs_f64()
    );
    let firsts: Vec<u64> = pool
        .imap_unordered(fragile, [4u64, 5, 6], 1)?
        .collect::<Result<_, _>>()?;
    println!("   imap_unordered(fragile, [4, 5, 6]) yielded {firsts:?} (completion order)");
    let r = pool.apply_async(fragile, 12)?;
    println!("   apply_async(fragile, 12).get() = {}", r.get()?);
    let outcomes = pool.map_each(fragile, 1..=5, Some(1))?;
    for (x, o) in (1..=5).zip(&outcomes) {
        match o {
            Ok(v) => println!("   fragile({x}) = {v}"),
            Err(e) => println!("   fragile({x}) failed: {e} (Python's Pool would hang here)"),
        }
    }
    println!(
        "   the pool replaced its worker and goes on: map(fragile, [7, 8]) = {:?}",
        pool.map(fragile, [7, 8])?
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 8. Locks, queues and shared values

/// A worker of the queue pipeline: squares what it gets until `None`, adds to a shared total.
fn squarer_worker((jobs, total): (multiproc::Queue<Option<u64>>, multiproc::Value<u64>)) {
    while let Ok(Some(x)) = jobs.get() {
        *total.lock() += x * x;
    }
}

/// Takes the lock and never lets go: killed while holding it.
fn hold_forever((lock, ready): (multiproc::Lock, multiproc::Event)) {
    let _g = lock.lock();
    ready.set();
    std::thread::sleep(Duration::from_secs(600));
}

fn shared_state() -> Res {
    section(8, "Locks, queues and shared values");
    let jobs: multiproc::Queue<Option<u64>> = multiproc::Queue::with_maxsize(1000)?;
    let total = multiproc::Value::new(0u64)?;
    let workers: Vec<Process> = (0..3)
        .map(|_| Process::new(squarer_worker, (jobs.clone(), total.clone())))
        .collect();
    let t = Instant::now();
    for w in &workers {
        w.start()?;
    }
    let n = 100_000u64;
    for x in 0..n {
        jobs.put(Some(x)).map_err(|e| e.error)?;
    }
    for _ in &workers {
        jobs.put(None).map_err(|e| e.error)?;
    }
    for w in &workers {
        w.join()?;
    }
    let expected: u64 = (0..n).map(|x| x * x).sum();
    println!(
        "   3 processes squared {n} numbers from a Queue into a shared Value: {} (expected {expected}) in {}",
        total.get(),
        ms(t.elapsed())
    );
    let lock = multiproc::Lock::new()?;
    let ready = multiproc::Event::new()?;
    let holder = Process::new(hold_forever, (lock.clone(), ready.clone()));
    holder.start()?;
    ready.wait_timeout(Duration::from_secs(20));
    holder.kill()?;
    holder.join()?;
    let t = Instant::now();
    let r = lock.acquire_timeout(Duration::from_secs(5));
    println!(
        "   a process killed while holding a Lock: the next acquire returns {r:?} after {} (CPython would wait forever)",
        ms(t.elapsed())
    );
    lock.release()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 9. a manager

/// Counts words into a managed dict, each count one atomic step on the server.
fn count_words((words, counts): (Vec<String>, DictProxy<String, u64>)) {
    for w in words {
        counts.add(w, 1).expect("add on the manager");
    }
}

/// Connects to a manager over TCP with its key and adds to a counter there.
fn remote_adder((address, key, n): (String, Vec<u8>, u64)) {
    let m = Manager::connect(address.as_str(), &key).expect("connect with the key");
    let d: DictProxy<String, u64> = m.dict().expect("a dict on the remote server");
    d.set("remote".into(), n).expect("set");
    assert_eq!(d.get("remote").expect("get"), Some(n));
}

fn manager() -> Res {
    section(
        9,
        "A Manager: a server process owning a dict, proxies in four workers",
    );
    let m = Manager::start()?;
    let counts = m.dict::<String, u64>()?;
    let text = "the quick brown fox jumps over the lazy dog the end";
    let words: Vec<String> = text.split(' ').map(String::from).collect();
    let t = Instant::now();
    let workers: Vec<Process> = (0..4)
        .map(|_| Process::new(count_words, (words.clone(), counts.clone())))
        .collect();
    for w in &workers {
        w.start()?;
    }
    for w in &workers {
        w.join()?;
    }
    let the = counts.get("the")?.unwrap_or(0);
    println!(
        "   4 workers x {} words counted in {}: \"the\" = {the} (4 x 3; add() is one atomic step on the server, where Python's d[k] += 1 loses updates)",
        words.len(),
        ms(t.elapsed())
    );
    assert_eq!(the, 12);
    // a dict of dicts: the inner one is the same object for everyone
    let nested = m.dict::<String, DictProxy<String, u64>>()?;
    nested.set("counts".into(), counts.clone())?;
    let again = nested.get("counts")?.ok_or("stored")?;
    println!(
        "   a proxy stored in another dict and read back is the same object: {} keys there too; {} objects live on the server",
        again.len()?,
        m.object_count()?
    );
    // over TCP, with a key
    let server = Manager::serve("127.0.0.1:0", b"tour-key")?;
    let p = Process::new(
        remote_adder,
        (server.address().to_string(), b"tour-key".to_vec(), 7),
    );
    p.start()?;
    p.join()?;
    let wrong = Manager::connect(server.address().clone(), b"wrong key");
    println!(
        "   a client on {} connected with the key; a wrong key: {}",
        server.address(),
        match wrong {
            Ok(_) => "accepted (BUG)".to_string(),
            Err(e) => format!("refused ({e})"),
        }
    );
    m.shutdown()?;
    Ok(())
}

#[multiproc::main]
fn main() -> Res {
    let sections = chosen_sections()?;
    let t = Instant::now();
    let me = multiproc::current_process();
    println!("multiproc tour: Python's multiprocessing, in Rust");
    println!(
        "{} (pid {}), cpu_count() = {}, default start method: {}",
        me.name,
        me.pid,
        multiproc::cpu_count(),
        multiproc::get_start_method().name()
    );
    if let Some(load) = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
    {
        // The speed-ups of sections 4 and 7 need idle cores: say how busy they are.
        println!(
            "load average now: {load:.2} (other programs on the cores lower the speed-ups below)"
        );
    }
    for (_, run) in sections {
        run()?;
    }
    println!("\ntour done in {}", ms(t.elapsed()));
    Ok(())
}

/// A section: the name `--sections` takes, and the function that runs it.
type Section = (&'static str, fn() -> Res);

/// The sections, in the order they run.
const SECTIONS: &[Section] = &[
    ("exit-codes", exit_codes),
    ("start-methods", start_methods),
    ("connections", connections),
    ("fibonacci", fibonacci),
    ("listener", listener_and_client),
    ("wait", waiting),
    ("pool", pool),
    ("shared-state", shared_state),
    ("manager", manager),
];

/// All sections, or those `--sections a,b` names (by name or number), in the tour's order.
fn chosen_sections() -> Res<Vec<Section>> {
    let mut args = std::env::args().skip(1);
    let list = match (args.next().as_deref(), args.next()) {
        (None, _) => return Ok(SECTIONS.to_vec()),
        (Some("--sections"), Some(list)) if args.next().is_none() => list,
        _ => {
            let names: Vec<&str> = SECTIONS.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "usage: tour [--sections NAME,...] (names: {})",
                names.join(",")
            )
            .into());
        }
    };
    let mut wanted = vec![false; SECTIONS.len()];
    for item in list.split(',').filter(|s| !s.is_empty()) {
        let i = SECTIONS
            .iter()
            .position(|(n, _)| *n == item)
            .or_else(|| item.parse::<usize>().ok().and_then(|n| n.checked_sub(1)))
            .filter(|&i| i < SECTIONS.len())
            .ok_or_else(|| format!("no tour section {item:?}"))?;
        wanted[i] = true;
    }
    Ok(SECTIONS
        .iter()
        .zip(wanted)
        .filter_map(|(s, w)| w.then_some(*s))
        .collect())
}
