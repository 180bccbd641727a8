//! A network of in-memory connections (feature `memory-net`), for tests and simulations: a
//! [`MemoryNet`] is a [`Connector`] whose every connection is a `tokio::io::duplex` pair; the
//! server half goes to the [`Listener`] registered under the dialed `HOST:PORT`. No socket is
//! opened. Dialing a name nobody listens on fails like a refused TCP connection.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use futures_util::Stream;
use hyper_util::rt::TokioIo;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint, Uri};

use super::{Connecting, Connector};

/// Bytes buffered in each direction of one in-memory connection.
pub const MEMORY_PIPE_BYTES: usize = 1 << 20;

/// An in-memory network: names (`HOST:PORT`) to listeners. Cheap to clone; clones share it.
#[derive(Clone, Default)]
pub struct MemoryNet {
    listeners: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<DuplexStream>>>>,
    dialed: Arc<Mutex<Vec<String>>>,
}

/// The connections made to one name, as a server's `incoming` stream.
pub struct Listener {
    accepted: mpsc::UnboundedReceiver<DuplexStream>,
}

impl Listener {
    /// The accepted connections, for `serve_with_incoming_shutdown`.
    pub fn incoming(self) -> impl Stream<Item = io::Result<DuplexStream>> + Send + 'static {
        futures_util::stream::unfold(self.accepted, |mut rx| async move {
            rx.recv().await.map(|conn| (Ok(conn), rx))
        })
    }
}

impl MemoryNet {
    /// An empty network.
    pub fn new() -> MemoryNet {
        MemoryNet::default()
    }

    /// Listens on `addr` (`HOST:PORT`), replacing an earlier listener of that name (a restart).
    pub fn listen(&self, addr: &str) -> Listener {
        let (tx, accepted) = mpsc::unbounded_channel();
        self.listeners
            .lock()
            .expect("memory net lock poisoned")
            .insert(addr.to_owned(), tx);
        Listener { accepted }
    }

    /// Every address dialed so far, in order.
    pub fn dialed(&self) -> Vec<String> {
        self.dialed
            .lock()
            .expect("memory net lock poisoned")
            .clone()
    }

    /// Connects to the listener named by a URI's authority.
    fn dial(
        &self,
    ) -> impl tower::Service<
        Uri,
        Response = TokioIo<DuplexStream>,
        Error = io::Error,
        Future = impl Send + 'static,
    > + Clone
    + Send
    + 'static {
        let net = self.clone();
        tower::service_fn(move |uri: Uri| {
            let addr = uri.authority().map(|a| a.to_string()).unwrap_or_default();
            net.dialed
                .lock()
                .expect("memory net lock poisoned")
                .push(addr.clone());
            let (client, server) = tokio::io::duplex(MEMORY_PIPE_BYTES);
            let sent = net
                .listeners
                .lock()
                .expect("memory net lock poisoned")
                .get(&addr)
                .is_some_and(|tx| tx.send(server).is_ok());
            async move {
                if !sent {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        format!("nothing listens on {addr} in this memory net"),
                    ));
                }
                Ok(TokioIo::new(client))
            }
        })
    }
}

impl Connector for MemoryNet {
    fn lazy(&self, endpoint: Endpoint) -> Channel {
        endpoint.connect_with_connector_lazy(self.dial())
    }

    fn connect(&self, endpoint: Endpoint) -> Connecting {
        let dial = self.dial();
        Box::pin(async move { endpoint.connect_with_connector(dial).await })
    }
}
