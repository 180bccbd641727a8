//! A userspace TCP "nemesis" proxy: netem is unavailable on the test kernel,
//! so network faults are injected by putting a [`Proxy`] in front of a server and telling it what
//! to do with the bytes of each direction.
//!
//! A proxy listens on an ephemeral loopback port and forwards every accepted connection to its
//! target, byte-exact in both directions. It runs on its own thread with its own single-threaded
//! tokio runtime, so synchronous `#[test]` functions control it directly.
//!
//! # Modes (per direction: client → server and server → client)
//! - [`Mode::Pass`]: forward at once.
//! - [`Mode::Blackhole`]: a partition. Bytes of that direction are **held, not dropped**: the
//!   proxy stops reading them (so the sender's kernel buffers fill, as they would when packets
//!   vanish) and keeps any chunk already read. Nothing reaches the other side while the mode
//!   lasts; when it is lifted, the held bytes are delivered in order, as TCP retransmission does
//!   after a short partition. A byte stream never loses bytes in its middle, so dropping them
//!   would only test HTTP/2 framing errors, not partitions. To model a partition long enough for
//!   TCP to give up, call [`Proxy::cut_all`] before lifting it. A connection accepted while
//!   either direction is blackholed is held too: the proxy connects to the target only once
//!   neither direction is (a handshake needs both).
//! - [`Mode::Delay`]: each chunk read is delivered no earlier than the delay after it was read,
//!   in order (latency, not a bandwidth cap).
//! - [`Mode::Reset`]: a TCP connection cannot be reset one way, so `Reset` on either direction
//!   resets every current connection (RST: `SO_LINGER` 0) and every new one while it is set.
//!
//! [`Proxy::cut_all`] resets the current connections once; new ones are served by the mode.
//! A connection whose target refuses, or that breaks on one side, is reset on the other side.
//!
//! Dropping the proxy resets every connection and stops its thread (bounded wait).

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long a proxied connection may take to reach its target before the client is reset.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long dropping a proxy waits for its thread to stop before leaving it behind.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes read from a socket at a time: one chunk of [`Mode::Delay`].
const CHUNK_BYTES: usize = 64 << 10;

/// Chunks read but not yet delivered, per direction of a connection (bounds a delayed backlog).
const QUEUED_CHUNKS_MAX: usize = 256;

/// What a proxy does with the bytes of one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward at once.
    Pass,
    /// Hold every byte until the mode changes (see the module docs).
    Blackhole,
    /// Deliver each chunk this long after it was read, in order.
    Delay(Duration),
    /// Reset every connection, current and new (on either direction: the whole connection).
    Reset,
}

/// A direction of a proxied connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the connecting client to the target server.
    ClientToServer,
    /// From the target server back to the client.
    ServerToClient,
}

/// A snapshot of a proxy's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Bytes delivered to the server.
    pub client_to_server: u64,
    /// Bytes delivered to the client.
    pub server_to_client: u64,
    /// Connections accepted (including those reset at once).
    pub accepted: u64,
    /// Connections reset by the proxy (modes, cuts, broken peers, refused targets).
    pub resets: u64,
}

/// The control state every connection watches.
#[derive(Clone, Copy, Debug)]
struct Control {
    client_to_server: Mode,
    server_to_client: Mode,
    /// Bumped by `cut_all`: connections accepted under an older generation are reset.
    generation: u64,
    /// Set when the proxy is dropped.
    stopping: bool,
}

impl Control {
    fn mode(&self, direction: Direction) -> Mode {
        match direction {
            Direction::ClientToServer => self.client_to_server,
            Direction::ServerToClient => self.server_to_client,
        }
    }

    fn resetting(&self) -> bool {
        self.client_to_server == Mode::Reset || self.server_to_client == Mode::Reset
    }

    fn blackholed(&self) -> bool {
        self.client_to_server == Mode::Blackhole || self.server_to_client == Mode::Blackhole
    }
}

/// Counters shared with the proxy thread.
#[derive(Debug, Default)]
struct Stats {
    client_to_server: AtomicU64,
    server_to_client: AtomicU64,
    accepted: AtomicU64,
    resets: AtomicU64,
}

impl Stats {
    fn delivered(&self, direction: Direction) -> &AtomicU64 {
        match direction {
            Direction::ClientToServer => &self.client_to_server,
            Direction::ServerToClient => &self.server_to_client,
        }
    }
}

/// A running proxy in front of one target address. See the module docs.
pub struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    control: watch::Sender<Control>,
    stats: Arc<Stats>,
    done: std_mpsc::Receiver<()>,
    thread: Option<thread::JoinHandle<()>>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let control = *self.control.borrow();
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("target", &self.target)
            .field("client_to_server", &control.client_to_server)
            .field("server_to_client", &control.server_to_client)
            .field("counters", &self.counters())
            .finish()
    }
}

impl Proxy {
    /// Starts a proxy on `127.0.0.1:0` forwarding to `target`, in [`Mode::Pass`].
    ///
    /// # Panics
    /// If it cannot bind or start its thread.
    pub fn start(target: SocketAddr) -> Self {
        let listener = StdListener::bind("127.0.0.1:0").expect("bind a proxy on 127.0.0.1:0");
        let addr = listener.local_addr().expect("a bound proxy address");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking proxy listener");
        let (control, watcher) = watch::channel(Control {
            client_to_server: Mode::Pass,
            server_to_client: Mode::Pass,
            generation: 0,
            stopping: false,
        });
        let stats = Arc::new(Stats::default());
        let (done_tx, done) = std_mpsc::channel();
        let thread_stats = Arc::clone(&stats);
        let thread = thread::Builder::new()
            .name(format!("proxy-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a proxy runtime");
                runtime.block_on(serve(listener, target, watcher, thread_stats));
                runtime.shutdown_timeout(DRAIN_TIMEOUT);
                let _ = done_tx.send(());
            })
            .expect("spawn the proxy thread");
        Self {
            addr,
            target,
            control,
            stats,
            done,
            thread: Some(thread),
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address connections are forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Sets the mode of both directions.
    pub fn set(&self, mode: Mode) {
        self.control.send_modify(|c| {
            c.client_to_server = mode;
            c.server_to_client = mode;
        });
    }

    /// Sets the mode of one direction; the other keeps its mode.
    pub fn set_direction(&self, direction: Direction, mode: Mode) {
        self.control.send_modify(|c| match direction {
            Direction::ClientToServer => c.client_to_server = mode,
            Direction::ServerToClient => c.server_to_client = mode,
        });
    }

    /// The current mode of one direction.
    pub fn mode(&self, direction: Direction) -> Mode {
        self.control.borrow().mode(direction)
    }

    /// Resets every current connection once (held bytes are lost with them); new connections
    /// are served according to the modes.
    pub fn cut_all(&self) {
        self.control.send_modify(|c| c.generation += 1);
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        Counters {
            client_to_server: self.stats.client_to_server.load(Ordering::Relaxed),
            server_to_client: self.stats.server_to_client.load(Ordering::Relaxed),
            accepted: self.stats.accepted.load(Ordering::Relaxed),
            resets: self.stats.resets.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.control.send_modify(|c| c.stopping = true);
        match self.done.recv_timeout(STOP_TIMEOUT) {
            Ok(()) => {
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
            }
            // Never hang a test on a stuck proxy: leave its thread behind (it owns only sockets).
            Err(_) => eprintln!(
                "cairn-tests: proxy {} did not stop within {STOP_TIMEOUT:?}",
                self.addr
            ),
        }
    }
}

/// How long a stopping proxy waits for its connections to reset themselves.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// The accept loop: one task per connection, until the proxy stops; then every connection resets
/// itself (bounded wait).
async fn serve(
    listener: StdListener,
    target: SocketAddr,
    mut control: watch::Receiver<Control>,
    stats: Arc<Stats>,
) {
    let listener = TcpListener::from_std(listener).expect("a tokio proxy listener");
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            changed = control.changed() => {
                if changed.is_err() || control.borrow().stopping {
                    break;
                }
                continue;
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let Ok((client, _)) = accepted else {
            // EMFILE and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let now = *control.borrow();
        if now.resetting() || now.stopping {
            reset(&client, &stats);
            continue;
        }
        connections.spawn(connection(
            client,
            target,
            control.clone(),
            now.generation,
            Arc::clone(&stats),
        ));
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drained).await;
}

/// One proxied connection, from its accept to its end.
async fn connection(
    mut client: TcpStream,
    target: SocketAddr,
    control: watch::Receiver<Control>,
    generation: u64,
    stats: Arc<Stats>,
) {
    let _ = client.set_nodelay(true);
    // Hold the connection while blackholed; give up on a reset, a cut or a stop.
    let mut ready = control.clone();
    let opened = tokio::select! {
        ok = open_when_passable(&mut ready) => ok,
        () = killed(control.clone(), generation) => false,
    };
    let server = if opened {
        tokio::select! {
            s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)) => s.ok().and_then(Result::ok),
            () = killed(control.clone(), generation) => None,
        }
    } else {
        None
    };
    let Some(mut server) = server else {
        reset(&client, &stats);
        return;
    };
    let _ = server.set_nodelay(true);
    let graceful = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let forward = async {
            tokio::try_join!(
                pump(
                    client_read,
                    server_write,
                    Direction::ClientToServer,
                    control.clone(),
                    &stats
                ),
                pump(
                    server_read,
                    client_write,
                    Direction::ServerToClient,
                    control.clone(),
                    &stats
                ),
            )
        };
        tokio::select! {
            done = forward => done.is_ok(),
            () = killed(control.clone(), generation) => false,
        }
    };
    if !graceful {
        reset(&client, &stats);
        let _ = server.set_zero_linger();
    }
}

/// Waits until neither direction is blackholed; `false` if the proxy stops first.
async fn open_when_passable(control: &mut watch::Receiver<Control>) -> bool {
    loop {
        if !control.borrow_and_update().blackholed() {
            return true;
        }
        if control.changed().await.is_err() {
            return false;
        }
    }
}

/// Returns when a connection of `generation` must be reset: a `Reset` mode, a newer cut, or a
/// stop.
async fn killed(mut control: watch::Receiver<Control>, generation: u64) {
    loop {
        {
            let c = control.borrow_and_update();
            if c.resetting() || c.generation != generation || c.stopping {
                return;
            }
        }
        if control.changed().await.is_err() {
            return;
        }
    }
}

/// Waits while `direction` is blackholed and returns its mode then (`None`: the proxy stopped).
async fn passable(control: &mut watch::Receiver<Control>, direction: Direction) -> Option<Mode> {
    loop {
        let mode = control.borrow_and_update().mode(direction);
        if mode != Mode::Blackhole {
            return Some(mode);
        }
        control.changed().await.ok()?;
    }
}

/// Forwards one direction until end of stream (then half-closes the other side), applying the
/// direction's mode. An error ends the whole connection with resets.
async fn pump(
    mut from: tokio::net::tcp::ReadHalf<'_>,
    mut to: tokio::net::tcp::WriteHalf<'_>,
    direction: Direction,
    control: watch::Receiver<Control>,
    stats: &Stats,
) -> io::Result<()> {
    let (queue, mut queued) = mpsc::channel::<(Vec<u8>, Instant)>(QUEUED_CHUNKS_MAX);
    let mut read_control = control.clone();
    let read = async move {
        let mut buf = vec![0; CHUNK_BYTES];
        loop {
            if passable(&mut read_control, direction).await.is_none() {
                return Err(stopped());
            }
            let n = from.read(&mut buf).await?;
            if n == 0 {
                // Dropping `queue` tells the writer that the stream ended.
                return Ok(());
            }
            // The mode may have changed while the read waited: the current one applies.
            let due = match read_control.borrow().mode(direction) {
                Mode::Delay(delay) => Instant::now() + delay,
                _ => Instant::now(),
            };
            if queue.send((buf[..n].to_vec(), due)).await.is_err() {
                return Err(stopped());
            }
        }
    };
    let mut write_control = control;
    let write = async move {
        while let Some((bytes, due)) = queued.recv().await {
            tokio::time::sleep_until(due).await;
            if passable(&mut write_control, direction).await.is_none() {
                return Err(stopped());
            }
            to.write_all(&bytes).await?;
            stats
                .delivered(direction)
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        to.shutdown().await
    };
    tokio::try_join!(read, write).map(|_| ())
}

/// The error of a pump cut short by the proxy stopping.
fn stopped() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "proxy stopping")
}

/// Resets a connection: `SO_LINGER` 0, so closing it sends RST instead of FIN.
fn reset(stream: &TcpStream, stats: &Stats) {
    let _ = stream.set_zero_linger();
    stats.resets.fetch_add(1, Ordering::Relaxed);
}
