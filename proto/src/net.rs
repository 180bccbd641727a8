//! How every Cairn process makes gRPC channels and servers: one set of HTTP/2 and TCP settings,
//! and one seam, [`Connector`], through which every outgoing channel is made. Production uses
//! [`TcpConnector`] (the OS's TCP); a test or a simulator hands its own connector to the roles
//! and the client, and so carries every byte between them over a network it controls.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Server};

use crate::GRPC_MESSAGE_BYTES_MAX;

pub mod auth;
mod link;
#[cfg(feature = "memory-net")]
pub mod memory;
pub mod tls;

pub use link::{Link, LinkFuture, NOT_LEADER_METADATA, connection_refused, not_leader};

/// HTTP/2 initial stream window of every channel and server (16 MiB): a maximal batch flows
/// without waiting for window updates.
pub const HTTP2_STREAM_WINDOW_BYTES: u32 = 16 << 20;

/// HTTP/2 initial connection window of every channel and server (32 MiB): room for two maximal
/// batches in flight on one connection.
pub const HTTP2_CONNECTION_WINDOW_BYTES: u32 = 32 << 20;

/// Period of HTTP/2 keep-alive pings, on idle channels too, so a dead peer is noticed.
pub const HTTP2_KEEPALIVE: Duration = Duration::from_secs(5);

/// How long a keep-alive ping may go unanswered before its connection is closed (and the next
/// call dials a new one). A connection a network fault left half-open (segments dropped,
/// nothing reset) holds every call on it until then; with tonic's default (20 s, on top of the
/// ping period) the cluster simulator saw a chunkserver's heartbeats and a client's calls stuck
/// for half a minute after a flaky link healed.
pub const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

// A maximal message fits the connection window, so one call never stalls on window updates.
const _: () = assert!(GRPC_MESSAGE_BYTES_MAX <= HTTP2_CONNECTION_WINDOW_BYTES as usize);
const _: () = assert!(HTTP2_STREAM_WINDOW_BYTES <= HTTP2_CONNECTION_WINDOW_BYTES);

/// An address that is neither `HOST:PORT` nor a URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadAddress {
    /// The address as given.
    pub addr: String,
    /// Why it was refused.
    pub message: String,
}

impl fmt::Display for BadAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad address {:?}: {}", self.addr, self.message)
    }
}

impl std::error::Error for BadAddress {}

/// The endpoint of `addr` (`HOST:PORT`, or a URI) with Cairn's settings: `TCP_NODELAY`, the
/// HTTP/2 windows above, keep-alive pings, and `connect_timeout`. Per-call deadlines are the
/// caller's (on each request, or [`Endpoint::timeout`]).
///
/// With this process's TLS set ([`tls::use_tls`]) the endpoint is `https` with it; a plain
/// `http://` address is then refused, and without it an `https://` one is (never a silent
/// plaintext connection where TLS was asked for), as is every address while a token is set
/// ([`auth::use_token`]: a token never travels in the clear).
pub fn endpoint(addr: &str, connect_timeout: Duration) -> Result<Endpoint, BadAddress> {
    let bad = |message: String| BadAddress {
        addr: addr.to_owned(),
        message,
    };
    let tls = tls::client_tls();
    let uri = match (addr.split_once("://"), tls) {
        (Some(("https", _)), None) => {
            return Err(bad(
                "an https:// address needs TLS configured (--tls-dir or CAIRN_TLS_DIR)".into(),
            ));
        }
        (Some(("http", _)), Some(_)) => {
            return Err(bad(
                "TLS is configured (--tls-dir): give HOST:PORT or an https:// address".into(),
            ));
        }
        (_, None) if auth::client_token().is_some() => {
            return Err(bad(
                "a token is only sent over TLS: give --tls-dir DIR (or CAIRN_TLS_DIR; with a \
                 token the cluster's ca.pem is enough)"
                    .into(),
            ));
        }
        (Some(_), _) => addr.to_owned(),
        (None, Some(_)) => format!("https://{addr}"),
        (None, None) => format!("http://{addr}"),
    };
    let mut endpoint = Endpoint::from_shared(uri).map_err(|e| bad(e.to_string()))?;
    if let Some(files) = tls {
        endpoint = endpoint
            .tls_config(files.client_config())
            .map_err(|e| bad(format!("TLS: {e}")))?;
    }
    Ok(endpoint
        .tcp_nodelay(true)
        .connect_timeout(connect_timeout)
        .initial_stream_window_size(HTTP2_STREAM_WINDOW_BYTES)
        .initial_connection_window_size(HTTP2_CONNECTION_WINDOW_BYTES)
        .http2_keep_alive_interval(HTTP2_KEEPALIVE)
        .keep_alive_timeout(HTTP2_KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true))
}

/// The endpoints of a comma-separated list of addresses (the masters of a group: `m1:7000,
/// m2:7000,m3:7000`), each as [`endpoint`] makes it. An empty list or entry is refused.
pub fn endpoints(list: &str, connect_timeout: Duration) -> Result<Vec<Endpoint>, BadAddress> {
    let addrs: Vec<&str> = list.split(',').map(str::trim).collect();
    if addrs.iter().any(|a| a.is_empty()) {
        return Err(BadAddress {
            addr: list.to_owned(),
            message: "an empty address in the list (give HOST:PORT[,HOST:PORT…])".into(),
        });
    }
    addrs
        .into_iter()
        .map(|a| endpoint(a, connect_timeout))
        .collect()
}

/// A server builder with the same settings as [`endpoint`]; the caller adds its service and
/// serves it on the connections it accepts (`serve_with_incoming_shutdown`).
pub fn server() -> Server {
    Server::builder()
        .initial_stream_window_size(HTTP2_STREAM_WINDOW_BYTES)
        .initial_connection_window_size(HTTP2_CONNECTION_WINDOW_BYTES)
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
        .tcp_nodelay(true)
}

/// A stream of accepted connections a Cairn server serves (`serve_with` of the master and the
/// chunkserver): TCP (`tonic`'s `TcpIncoming`), the in-memory network's, or a simulator's.
/// Exactly what tonic's `serve_with_incoming_shutdown` asks of its `incoming`, named once; every
/// such stream is one, nothing to implement.
pub trait Incoming: Stream<Item = Result<Self::Conn, Self::Error>> + Send + 'static {
    /// One accepted connection.
    type Conn: AsyncRead
        + AsyncWrite
        + Connected<ConnectInfo: Clone + Send + Sync + 'static>
        + Unpin
        + Send
        + 'static;
    /// Why accepting a connection failed.
    type Error: Into<Box<dyn std::error::Error + Send + Sync>>;
}

impl<S, IO, IE> Incoming for S
where
    S: Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Conn = IO;
    type Error = IE;
}

/// A connection attempt made by [`Connector::connect`].
pub type Connecting =
    Pin<Box<dyn Future<Output = Result<Channel, tonic::transport::Error>> + Send>>;

/// Makes the channels of one process: the one seam between Cairn's code and the network.
pub trait Connector: Send + Sync + 'static {
    /// A channel to `endpoint` that connects on first use, and again after a failure.
    fn lazy(&self, endpoint: Endpoint) -> Channel;

    /// A channel to `endpoint`, connected now (so an unreachable address is an error here).
    fn connect(&self, endpoint: Endpoint) -> Connecting;
}

/// The production [`Connector`]: the operating system's TCP.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpConnector;

impl TcpConnector {
    /// A shared [`TcpConnector`], as the roles and the client take connectors.
    pub fn shared() -> Arc<dyn Connector> {
        Arc::new(TcpConnector)
    }
}

impl Connector for TcpConnector {
    fn lazy(&self, endpoint: Endpoint) -> Channel {
        endpoint.connect_lazy()
    }

    fn connect(&self, endpoint: Endpoint) -> Connecting {
        Box::pin(async move { endpoint.connect().await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves: HOST:PORT and URIs are both accepted (HOST:PORT as http), garbage is refused with
    // the address named.
    #[test]
    fn addresses_are_host_port_or_uri() {
        let t = Duration::from_secs(1);
        assert_eq!(
            endpoint("127.0.0.1:7000", t).unwrap().uri().to_string(),
            "http://127.0.0.1:7000/"
        );
        assert_eq!(
            endpoint("http://h:1", t).unwrap().uri().to_string(),
            "http://h:1/"
        );
        let list = endpoints("a:1, b:2,c:3", t).unwrap();
        let uris: Vec<String> = list.iter().map(|e| e.uri().to_string()).collect();
        assert_eq!(uris, ["http://a:1/", "http://b:2/", "http://c:3/"]);
        assert!(endpoints("a:1,,b:2", t).is_err());
        assert!(endpoints("", t).is_err());
        let e = endpoint("not an address", t).unwrap_err();
        assert_eq!(e.addr, "not an address");
        assert!(e.to_string().contains("not an address"));
    }
}
