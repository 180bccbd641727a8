//! [`Link`]: a channel that dials a new connection after a call failed in the channel itself.
//!
//! A network fault can leave a connection half-open: segments are dropped, nothing is reset, and
//! every call on it waits until its deadline, then the next one does the same, until HTTP/2
//! keep-alive gives up on the connection ([`HTTP2_KEEPALIVE`](super::HTTP2_KEEPALIVE) plus
//! [`HTTP2_KEEPALIVE_TIMEOUT`](super::HTTP2_KEEPALIVE_TIMEOUT)). A `Link` cuts that short: a
//! call that fails in the channel — its deadline passed with no answer, the connection broke or
//! could not be made — replaces the channel, so the next call dials anew. A status the peer sent
//! (any code, `UNAVAILABLE` included) proves the connection works and replaces nothing. Calls
//! already in flight on the old channel run to their end on it.
//!
//! A link may have several endpoints (the masters of a group): each replacement dials the next
//! one in turn, so a call that failed on a dead master is followed by calls to the next. A
//! master that does not lead answers with [`NOT_LEADER_METADATA`]: that too moves the link on
//! (the call itself fails, `UNAVAILABLE`, and the caller's retry reaches the next master).
//!
//! Every call also carries this process's token, if it has one ([`super::auth::use_token`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http;
use tonic::transport::{Channel, Endpoint};
use tower::Service;

use super::Connector;

/// A lazily connected channel to one endpoint, replaced by a fresh one after a call fails in
/// the channel (see the module doc). Use it where a `Channel` goes: `FooClient::new(link)`.
/// Clones share the channel and its replacements.
#[derive(Clone)]
pub struct Link {
    shared: Arc<Shared>,
    /// The channel this clone calls on, and the generation it belongs to.
    current: Current,
}

#[derive(Clone)]
struct Current {
    channel: Channel,
    generation: u64,
}

struct Shared {
    connector: Arc<dyn Connector>,
    /// Generation `g` dials `endpoints[(first + g) % len]`.
    endpoints: Vec<Endpoint>,
    first: usize,
    latest: Mutex<Current>,
    replacements: AtomicU64,
}

impl Link {
    /// A link to `endpoint` through `connector`; it connects on first use.
    pub fn lazy(connector: Arc<dyn Connector>, endpoint: Endpoint) -> Link {
        let channel = connector.lazy(endpoint.clone());
        Link::with_channel(connector, endpoint, channel)
    }

    /// A link whose first channel is `channel`, already made (e.g. connected now to fail fast
    /// on a bad address) by `connector` to `endpoint`; its replacements are made lazily.
    pub fn with_channel(
        connector: Arc<dyn Connector>,
        endpoint: Endpoint,
        channel: Channel,
    ) -> Link {
        Link::among(connector, vec![endpoint], 0, channel)
    }

    /// A link to any of `endpoints` (not empty), whose first channel is `channel`, made to
    /// `endpoints[first]`; each replacement dials the next endpoint, lazily.
    pub fn among(
        connector: Arc<dyn Connector>,
        endpoints: Vec<Endpoint>,
        first: usize,
        channel: Channel,
    ) -> Link {
        assert!(!endpoints.is_empty(), "a link needs an endpoint");
        let current = Current {
            channel,
            generation: 0,
        };
        Link {
            shared: Arc::new(Shared {
                connector,
                first: first % endpoints.len(),
                endpoints,
                latest: Mutex::new(current.clone()),
                replacements: AtomicU64::new(0),
            }),
            current,
        }
    }

    /// The endpoint the link calls now.
    pub fn endpoint(&self) -> &Endpoint {
        self.shared.endpoint(self.shared.latest().generation)
    }

    /// How many times the channel was replaced after a failed call.
    pub fn replacements(&self) -> u64 {
        self.shared.replacements.load(Ordering::Relaxed)
    }
}

impl Shared {
    fn endpoint(&self, generation: u64) -> &Endpoint {
        let n = self.endpoints.len() as u64;
        &self.endpoints[((self.first as u64 + generation) % n) as usize]
    }

    fn latest(&self) -> Current {
        self.latest
            .lock()
            .expect("link lock is never held across a panic")
            .clone()
    }

    /// Replaces the channel of `generation` by a new one, unless another failed call on it
    /// already did: many calls failing together on one dead connection dial once.
    fn replace(&self, generation: u64) {
        let mut latest = self
            .latest
            .lock()
            .expect("link lock is never held across a panic");
        if latest.generation == generation {
            let next = self.endpoint(generation + 1);
            *latest = Current {
                channel: self.connector.lazy(next.clone()),
                generation: generation + 1,
            };
            self.replacements.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(failed = %self.endpoint(generation).uri(), next = %next.uri(), generation, "a call failed in the channel: dialling anew");
        }
    }
}

/// The gRPC metadata key a master that does not lead its group sets on its `UNAVAILABLE`
/// answers (value `1`).
pub const NOT_LEADER_METADATA: &str = "cairn-not-leader";

/// Whether `status` is a master's answer that it does not lead its group
/// ([`NOT_LEADER_METADATA`]): it did nothing, and the leader is another master.
pub fn not_leader(status: &tonic::Status) -> bool {
    status.metadata().get(NOT_LEADER_METADATA).is_some()
}

/// Whether a call failed because its connection was refused (nothing listens there): it never
/// reached a server, so it did nothing.
pub fn connection_refused(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// What a call on a [`Link`] returns.
pub type LinkFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Body>, tonic::transport::Error>> + Send>>;

impl Service<http::Request<Body>> for Link {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = LinkFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let latest = self.shared.latest();
        if latest.generation != self.current.generation {
            self.current = latest;
        }
        self.current.channel.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        if let Some(token) = super::auth::client_token() {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, token.clone());
        }
        let shared = self.shared.clone();
        let generation = self.current.generation;
        let call = self.current.channel.call(request);
        Box::pin(async move {
            let result = call.await;
            let move_on = match &result {
                Err(_) => true,
                Ok(response) => {
                    shared.endpoints.len() > 1
                        && response.headers().contains_key(NOT_LEADER_METADATA)
                }
            };
            if move_on {
                shared.replace(generation);
            }
            result
        })
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("uri", self.shared.endpoint(self.current.generation).uri())
            .field("generation", &self.current.generation)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpListener;

    use super::*;
    use crate::net::{TcpConnector, endpoint};
    use crate::v1::ListLogsRequest;
    use crate::v1::master_client::MasterClient;

    /// A [`Connector`] over TCP that counts the channels it makes.
    #[derive(Default)]
    struct Counting(AtomicU64);

    impl Connector for Counting {
        fn lazy(&self, endpoint: Endpoint) -> Channel {
            self.0.fetch_add(1, Ordering::Relaxed);
            TcpConnector.lazy(endpoint)
        }

        fn connect(&self, endpoint: Endpoint) -> crate::net::Connecting {
            self.0.fetch_add(1, Ordering::Relaxed);
            TcpConnector.connect(endpoint)
        }
    }

    async fn list_logs(link: &Link) -> tonic::Status {
        MasterClient::new(link.clone())
            .list_logs(ListLogsRequest::default())
            .await
            .expect_err("no master answers OK here")
    }

    // Proves: a call whose deadline passes on a connection that never answers (accepted, then
    // silent, as a half-open connection is) replaces the channel, so the next call dials a new
    // connection; calls failing on the replaced channel do not replace the new one again.
    #[tokio::test]
    async fn a_call_that_times_out_dials_anew() {
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((conn, _)) = silent.accept().await {
                conns.push(conn); // held open, never read or answered
            }
        });
        let connector = Arc::new(Counting::default());
        let ep = endpoint(&addr.to_string(), Duration::from_secs(1))
            .unwrap()
            .timeout(Duration::from_millis(200));
        let link = Link::lazy(connector.clone(), ep);
        let stale = link.clone();

        let status = list_logs(&link).await;
        assert_eq!(status.code(), tonic::Code::Cancelled, "{status:?}");
        assert_eq!(link.replacements(), 1);
        assert_eq!(
            connector.0.load(Ordering::Relaxed),
            2,
            "one channel, then one more"
        );

        // A clone that still held the first channel picks up the new one on its next call.
        list_logs(&stale).await;
        assert_eq!(link.replacements(), 2);
        assert_eq!(connector.0.load(Ordering::Relaxed), 3);
        held.abort();
    }

    // Proves: a link among several endpoints moves to the next one after a call failed in the
    // channel (here: a dead address), and stays there while calls succeed.
    #[tokio::test]
    async fn a_link_among_endpoints_moves_on_from_a_dead_one() {
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(live);
        let server = tokio::spawn(
            crate::net::server()
                .add_service(refusing_master())
                .serve_with_incoming(incoming),
        );
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead); // nothing listens there now: connections are refused
        let ep = |a: std::net::SocketAddr| {
            endpoint(&a.to_string(), Duration::from_secs(1))
                .unwrap()
                .timeout(Duration::from_secs(5))
        };
        let connector: Arc<dyn Connector> = Arc::new(TcpConnector);
        let first = connector.lazy(ep(dead_addr));
        let link = Link::among(connector, vec![ep(dead_addr), ep(live_addr)], 0, first);
        let status = list_logs(&link).await;
        assert_ne!(status.message(), "not today", "the dead one cannot answer");
        assert_eq!(link.endpoint().uri(), ep(live_addr).uri());
        for _ in 0..3 {
            assert_eq!(list_logs(&link).await.message(), "not today");
        }
        assert_eq!(link.replacements(), 1);
        server.abort();
    }

    /// A master service that answers every call `UNAVAILABLE "not today"`.
    fn refusing_master() -> Refuses {
        Refuses
    }

    #[derive(Clone)]
    struct Refuses;
    impl Service<http::Request<Body>> for Refuses {
        type Response = http::Response<Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<Body>) -> Self::Future {
            std::future::ready(Ok(tonic::Status::unavailable("not today").into_http()))
        }
    }
    impl tonic::server::NamedService for Refuses {
        const NAME: &'static str = "cairn.v1.Master";
    }

    // Proves: a status the peer sent, UNAVAILABLE included, keeps the channel: the connection
    // works, so nothing is dialled again.
    #[tokio::test]
    async fn a_status_from_the_peer_keeps_the_channel() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let server = tokio::spawn(
            crate::net::server()
                .add_service(refusing_master())
                .serve_with_incoming(incoming),
        );
        let connector = Arc::new(Counting::default());
        let ep = endpoint(&addr.to_string(), Duration::from_secs(1))
            .unwrap()
            .timeout(Duration::from_secs(5));
        let link = Link::lazy(connector.clone(), ep);
        for _ in 0..3 {
            let status = list_logs(&link).await;
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
            assert_eq!(status.message(), "not today");
        }
        assert_eq!(link.replacements(), 0);
        assert_eq!(connector.0.load(Ordering::Relaxed), 1);
        server.abort();
    }
}
