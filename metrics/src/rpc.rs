//! [`RpcLayer`]: a tower layer on a gRPC server that counts its answers by method and status
//! code (`cairn_rpc_responses_total`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tower::{Layer, Service};

use crate::Metrics;

/// The labels of one count: which server (role and address), which method, which outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    role: &'static str,
    address: String,
    method: String,
    code: &'static str,
}

struct RpcFamilies {
    responses: Family<RpcLabels, Counter>,
}

/// Counts a gRPC server's answers in `cairn_rpc_responses_total{role, address, method, code}`.
/// The code is the `grpc-status` of the answer's headers: a handler's error travels there (a
/// trailers-only answer), so errors are counted by code; an answer without one is counted `OK`
/// (its status comes in the trailers, after the handler succeeded). Built with
/// [`RpcLayer::disabled`], it counts nothing and costs one branch per call.
#[derive(Clone)]
pub struct RpcLayer {
    counts: Option<Arc<ServerCounts>>,
}

/// One server's counters, cached by method and code so that counting an answer takes a read
/// lock and no allocation once the pair was seen.
struct ServerCounts {
    families: Arc<RpcFamilies>,
    role: &'static str,
    address: String,
    by_method: RwLock<HashMap<String, HashMap<&'static str, Counter>>>,
}

impl ServerCounts {
    fn count(&self, method: &str, code: &'static str) {
        let cache = self
            .by_method
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(counter) = cache.get(method).and_then(|codes| codes.get(code)) {
            counter.inc();
            return;
        }
        drop(cache);
        let counter = self.families.responses.get_or_create_owned(&RpcLabels {
            role: self.role,
            address: self.address.clone(),
            method: method.to_owned(),
            code,
        });
        counter.inc();
        self.by_method
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(method.to_owned())
            .or_default()
            .insert(code, counter);
    }
}

impl RpcLayer {
    /// Counts the answers of the server of `role` at `address` in `metrics`.
    pub fn new(metrics: &Metrics, role: &'static str, address: &str) -> RpcLayer {
        let families = metrics.families(|registry| {
            let responses = Family::<RpcLabels, Counter>::default();
            registry.register(
                "cairn_rpc_responses",
                "gRPC answers of a server, by method and status code",
                responses.clone(),
            );
            RpcFamilies { responses }
        });
        RpcLayer {
            counts: Some(Arc::new(ServerCounts {
                families,
                role,
                address: address.to_owned(),
                by_method: RwLock::default(),
            })),
        }
    }

    /// A layer that counts nothing.
    pub fn disabled() -> RpcLayer {
        RpcLayer { counts: None }
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> RpcService<S> {
        RpcService {
            inner,
            counts: self.counts.clone(),
        }
    }
}

/// The service [`RpcLayer`] wraps around a server.
#[derive(Clone)]
pub struct RpcService<S> {
    inner: S,
    counts: Option<Arc<ServerCounts>>,
}

impl<S, B, RB> Service<http::Request<B>> for RpcService<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Some(counts) = self.counts.clone() else {
            return Box::pin(self.inner.call(request));
        };
        // The path's bytes are shared with the request (no copy).
        let uri = request.uri().clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map_or("OK", code_name);
            counts.count(uri.path(), code);
            Ok(response)
        })
    }
}

/// The gRPC name of status code `code` (as in the gRPC specification).
fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    #[tokio::test]
    async fn counts_answers_by_method_and_code() {
        let metrics = Metrics::new();
        let layer = RpcLayer::new(&metrics, "chunkserver", "127.0.0.1:7001");
        let mut service = layer.layer(tower::service_fn(|req: http::Request<()>| async move {
            let mut response = http::Response::new(());
            if req.uri().path().ends_with("Seal") {
                response
                    .headers_mut()
                    .insert("grpc-status", http::HeaderValue::from_static("7"));
            }
            Ok::<_, Infallible>(response)
        }));
        for path in ["/cairn.v1.Chunkserver/Append", "/cairn.v1.Chunkserver/Seal"] {
            let request = http::Request::builder().uri(path).body(()).unwrap();
            service.call(request).await.unwrap();
        }
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"cairn_rpc_responses_total{role="chunkserver",address="127.0.0.1:7001",method="/cairn.v1.Chunkserver/Append",code="OK"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"method="/cairn.v1.Chunkserver/Seal",code="PERMISSION_DENIED"} 1"#),
            "{text}"
        );
    }
}
