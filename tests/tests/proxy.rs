//! The nemesis proxy against a tiny echo server on loopback: byte-exact pass-through, blackhole
//! (held, then delivered), one-way blackhole, delay, reset, cut, a dead target, and drop; then a
//! whole cluster behind proxies.
//!
//! No assertion here depends on the machine being fast: held bytes are checked to be absent
//! after a short wait (the proxy never delivers them while the mode lasts, however slow the
//! machine), and delays only as lower bounds.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use cairn_tests::proxy::{Counters, Direction, Mode, Proxy};
use cairn_tests::{Cluster, ClusterOpts, LogOpts, Role, check_runs, wait_until, workload};

/// Deadline of every blocking socket call of these tests.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

/// An echo server on 127.0.0.1: every connection gets back what it sends. Stops when dropped.
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Echo {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        thread::spawn(move || echo(stream));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Echoes one connection until end of stream, an error, or [`IO_TIMEOUT`] of silence.
fn echo(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let mut buf = vec![0; 64 << 10];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// A client connection through `proxy` with a read deadline.
fn connect(proxy: &Proxy) -> TcpStream {
    let stream = TcpStream::connect_timeout(&proxy.addr(), IO_TIMEOUT).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads exactly `n` bytes.
fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).unwrap();
    buf
}

/// Panics if any byte arrives on `stream` within [`QUIET`].
fn assert_nothing_arrives(stream: &mut TcpStream, what: &str) {
    stream.set_read_timeout(Some(QUIET)).unwrap();
    let mut buf = [0; 64];
    match stream.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("{what}: expected nothing, got {other:?}"),
    }
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
}

/// Panics unless the connection is reset (a read fails with a connection error).
fn assert_reset(stream: &mut TcpStream, what: &str) {
    let mut buf = [0; 64];
    match stream.read(&mut buf) {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("{what}: expected a connection reset, got {other:?}"),
    }
}

/// Panics unless a new connection through `proxy` is reset: at connect, while setting its
/// options (the reset may already have arrived), or at the first read.
fn assert_new_connection_reset(proxy: &Proxy, what: &str) {
    let reset = |e: &std::io::Error| e.kind() == ErrorKind::ConnectionReset;
    let mut stream = match TcpStream::connect_timeout(&proxy.addr(), IO_TIMEOUT) {
        Ok(s) => s,
        Err(e) if reset(&e) => return,
        Err(e) => panic!("{what}: connect failed: {e}"),
    };
    match stream.set_read_timeout(Some(IO_TIMEOUT)) {
        Ok(()) => assert_reset(&mut stream, what),
        Err(e) if reset(&e) => {}
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Waits (bounded) until the proxy's counters satisfy `f`, and returns them.
fn counters_until(proxy: &Proxy, what: &str, f: impl Fn(&Counters) -> bool) -> Counters {
    wait_until(what, Duration::from_secs(10), || {
        let c = proxy.counters();
        f(&c).then_some(c)
    })
}

/// Proves that Pass forwards 8 MiB of random bytes both ways byte for byte, over one connection
/// written and read concurrently, and that the counters say so.
#[test]
fn pass_through_is_byte_exact_for_large_payloads() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr);
    let mut rng = workload::Rng::new(7);
    let payload: Vec<u8> = (0..8 << 20).map(|_| rng.range(0, 256) as u8).collect();
    let mut stream = connect(&proxy);
    let mut writer = stream.try_clone().unwrap();
    let sent = payload.clone();
    let write = thread::spawn(move || writer.write_all(&sent).unwrap());
    let back = read_n(&mut stream, payload.len());
    write.join().unwrap();
    assert!(
        back == payload,
        "the echoed bytes differ from the sent ones"
    );
    let n = payload.len() as u64;
    let c = counters_until(&proxy, "every byte is counted", |c| {
        c.client_to_server == n && c.server_to_client == n
    });
    assert_eq!((c.accepted, c.resets), (1, 0), "{c:?}");
}

/// Proves that Blackhole holds bytes of current and new connections (nothing arrives, nothing
/// reaches the server) and that lifting it delivers the held bytes, in order.
#[test]
fn blackhole_holds_bytes_and_pass_delivers_them() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr);
    let mut old = connect(&proxy);
    old.write_all(b"ping").unwrap();
    assert_eq!(read_n(&mut old, 4), b"ping");

    proxy.set(Mode::Blackhole);
    old.write_all(b"held-1").unwrap();
    old.write_all(b"held-2").unwrap();
    let mut new = connect(&proxy);
    new.write_all(b"new").unwrap();
    assert_nothing_arrives(&mut old, "old connection in blackhole");
    assert_nothing_arrives(&mut new, "new connection in blackhole");
    let c = counters_until(&proxy, "the new connection is accepted", |c| {
        c.accepted == 2
    });
    assert_eq!(c.client_to_server, 4, "bytes crossed the blackhole: {c:?}");

    proxy.set(Mode::Pass);
    assert_eq!(read_n(&mut old, 12), b"held-1held-2");
    assert_eq!(read_n(&mut new, 3), b"new");
}

/// Proves that a one-way blackhole (server → client) lets requests through but holds the
/// answers, until lifted.
#[test]
fn one_way_blackhole_holds_only_its_direction() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr);
    let mut stream = connect(&proxy);
    stream.write_all(b"a").unwrap();
    assert_eq!(read_n(&mut stream, 1), b"a");

    proxy.set_direction(Direction::ServerToClient, Mode::Blackhole);
    assert_eq!(proxy.mode(Direction::ClientToServer), Mode::Pass);
    stream.write_all(b"bc").unwrap();
    counters_until(&proxy, "the request reaches the server", |c| {
        c.client_to_server == 3
    });
    assert_nothing_arrives(&mut stream, "answer in a one-way blackhole");

    proxy.set_direction(Direction::ServerToClient, Mode::Pass);
    assert_eq!(read_n(&mut stream, 2), b"bc");
}

/// Proves that Delay delivers each chunk no sooner than the delay (an echo crosses the proxy
/// twice, so it takes at least twice the delay) and keeps the order of the chunks.
#[test]
fn delay_delivers_late_and_in_order() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr);
    let delay = Duration::from_millis(200);
    let mut stream = connect(&proxy);
    proxy.set(Mode::Delay(delay));
    let started = Instant::now();
    for part in [&b"one,"[..], b"two,", b"three"] {
        stream.write_all(part).unwrap();
    }
    assert_eq!(read_n(&mut stream, 13), b"one,two,three");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= 2 * delay,
        "echo took {elapsed:?} with {delay:?} each way"
    );

    proxy.set(Mode::Pass);
    stream.write_all(b"fast").unwrap();
    assert_eq!(read_n(&mut stream, 4), b"fast");
}

/// Proves that Reset resets current connections and every new one while set, and that Pass
/// serves new connections again.
#[test]
fn reset_gives_clients_a_connection_error() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr);
    let mut old = connect(&proxy);
    old.write_all(b"x").unwrap();
    assert_eq!(read_n(&mut old, 1), b"x");

    proxy.set(Mode::Reset);
    assert_reset(&mut old, "current connection under Reset");
    assert_new_connection_reset(&proxy, "new connection under Reset");
    assert!(proxy.counters().resets >= 2, "{:?}", proxy.counters());

    proxy.set(Mode::Pass);
    let mut again = connect(&proxy);
    again.write_all(b"y").unwrap();
    assert_eq!(read_n(&mut again, 1), b"y");
}

/// Proves that `cut_all` resets the current connections once and leaves new ones alone, and
/// that a proxy whose target refuses resets its client.
#[test]
fn cut_all_resets_current_connections_and_dead_targets_reset() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr);
    let mut old = connect(&proxy);
    old.write_all(b"x").unwrap();
    assert_eq!(read_n(&mut old, 1), b"x");
    proxy.cut_all();
    assert_reset(&mut old, "connection after cut_all");
    let mut new = connect(&proxy);
    new.write_all(b"y").unwrap();
    assert_eq!(read_n(&mut new, 1), b"y");

    let dead = Proxy::start(cairn_tests::cluster::free_addr());
    assert_new_connection_reset(&dead, "connection to a dead target");
}

/// Proves that dropping a proxy resets its connections and closes its port, promptly.
#[test]
fn drop_resets_connections_and_closes_the_port() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr);
    let addr = proxy.addr();
    let mut stream = connect(&proxy);
    stream.write_all(b"x").unwrap();
    assert_eq!(read_n(&mut stream, 1), b"x");
    drop(proxy);
    assert_reset(&mut stream, "connection after drop");
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "the port of a dropped proxy still accepts"
    );
}

/// Proves that a proxied cluster routes every role through its proxies: it becomes ready (probe
/// appends cross them), `stat` names replicas by their proxies' addresses, every proxy carried
/// bytes both ways, appends and replay agree; and that resetting the master's proxy makes a
/// client command fail until the cluster is healed.
#[test]
fn proxied_cluster_routes_through_its_proxies() {
    let _serial = cairn_tests::serial();
    let opts = ClusterOpts {
        proxied: true,
        ..ClusterOpts::default()
    };
    let cluster = Cluster::start(3, opts);
    cluster.create_log("/proxied", LogOpts::chunk_bytes(64 << 10));
    let seed = workload::seed("proxied_cluster_routes_through_its_proxies");
    let lines = workload::lines("proxied", 200, seed, |rng, _| rng.range(100, 700));
    let run = cluster.append("w", "/proxied", lines, Duration::from_secs(60));
    run.assert_all_acked();
    let dedup = cluster.replay("/proxied", false, Duration::from_secs(60));
    let full = cluster.replay("/proxied", true, Duration::from_secs(60));
    check_runs(&[run], &dedup, &full).assert_ok();

    let names = cluster.chunkserver_addrs();
    for chunk in cluster.stat("/proxied").chunks {
        for replica in &chunk.replicas {
            assert!(
                names.contains(replica),
                "replica {replica} is not a proxy: {names:?}"
            );
        }
    }
    for role in [
        Role::Master,
        Role::Chunkserver(0),
        Role::Chunkserver(1),
        Role::Chunkserver(2),
    ] {
        assert_ne!(cluster.advertised_addr(role), cluster.listen_addr(role));
        let c = cluster.proxy(role).counters();
        assert!(
            c.accepted > 0 && c.client_to_server > 0 && c.server_to_client > 0,
            "{role:?}'s proxy carried nothing: {c:?}"
        );
    }

    cluster.proxy(Role::Master).set(Mode::Reset);
    let refused = cluster
        .cairn(&["ls"])
        .timeout(Duration::from_secs(60))
        .run();
    assert!(
        !refused.success(),
        "ls succeeded through a resetting proxy: {refused:?}"
    );
    cluster.heal();
    cluster.ls();
}
