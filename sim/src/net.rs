//! Cairn's network seams over turmoil's simulated TCP: [`SimConnector`] makes the channels of
//! every role and client (`cairn_proto::net::Connector`), [`incoming`] is a server's stream of
//! accepted connections. Host names are turmoil's (`master`, `cs0`, …), so a chunkserver's
//! advertised `cs0:7001` is dialed on the simulated network.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use cairn_proto::net::{Connecting, Connector};
use futures_util::Stream;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Channel, Endpoint, Uri};
use turmoil::net::{TcpListener, TcpStream};

/// Dials on turmoil's network.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimConnector;

fn dial() -> impl tower::Service<
    Uri,
    Response = TokioIo<TcpStream>,
    Error = io::Error,
    Future = impl Send + 'static,
> + Clone
+ Send
+ 'static {
    tower::service_fn(|uri: Uri| async move {
        let authority = uri
            .authority()
            .map(|a| a.to_string())
            .ok_or_else(|| io::Error::other(format!("no host in {uri}")))?;
        Ok(TokioIo::new(TcpStream::connect(authority).await?))
    })
}

impl Connector for SimConnector {
    fn lazy(&self, endpoint: Endpoint) -> Channel {
        endpoint.connect_with_connector_lazy(dial())
    }

    fn connect(&self, endpoint: Endpoint) -> Connecting {
        Box::pin(async move { endpoint.connect_with_connector(dial()).await })
    }
}

/// One accepted simulated connection, as tonic's server wants it.
pub struct Accepted(TcpStream);

impl Connected for Accepted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        TcpConnectInfo {
            local_addr: self.0.local_addr().ok(),
            remote_addr: self.0.peer_addr().ok(),
        }
    }
}

impl AsyncRead for Accepted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Accepted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The connections accepted on `port` of this host, for `serve_with`.
pub async fn incoming(
    port: u16,
) -> io::Result<impl Stream<Item = io::Result<Accepted>> + Send + 'static> {
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    Ok(futures_util::stream::unfold(
        listener,
        |listener| async move {
            let next = listener.accept().await.map(|(s, _)| Accepted(s));
            Some((next, listener))
        },
    ))
}
