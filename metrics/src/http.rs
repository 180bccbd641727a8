//! The HTTP listener of a role's `--http ADDR`: `/metrics` and `/`.

use std::future::Future;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::Metrics;

/// The content type of `/metrics`: the OpenMetrics text format, which Prometheus scrapes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `addr` (a role's `--http`) and serves `metrics` there on a task of the current
/// runtime until the task is aborted; logs the bound address (`serving metrics at /metrics`,
/// field `http`). The error names the address and the flag.
pub async fn serve_on(
    addr: &str,
    metrics: Metrics,
) -> std::io::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("listen on {addr} (--http): {e}")))?;
    let bound = listener.local_addr()?;
    tracing::info!(http = %bound, "serving metrics at /metrics");
    let task = tokio::spawn(async move {
        if let Err(e) = serve(listener, metrics, std::future::pending()).await {
            tracing::warn!(error = %e, "the HTTP listener stopped");
        }
    });
    Ok((bound, task))
}

/// Serves `metrics` over HTTP on `listener` until `shutdown` resolves: `GET /metrics` in the
/// OpenMetrics text format, `GET /` the status page a role set (else a link to `/metrics`).
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .route("/", get(page))
        .with_state(metrics);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn scrape(State(metrics): State<Metrics>) -> impl IntoResponse {
    // Refreshers may take a role's locks: off the async workers.
    let text = tokio::task::spawn_blocking(move || metrics.encode())
        .await
        .unwrap_or_default();
    ([(CONTENT_TYPE, OPENMETRICS)], text)
}

async fn page(State(metrics): State<Metrics>) -> Html<String> {
    let page = tokio::task::spawn_blocking(move || metrics.status_page())
        .await
        .ok()
        .flatten();
    Html(page.unwrap_or_else(|| {
        "<!doctype html><title>Cairn</title><p><a href=\"/metrics\">/metrics</a></p>".to_owned()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_the_status_page() {
        let metrics = Metrics::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, metrics.clone(), async {
            let _ = stopped.await;
        }));
        let scraped = get(addr, "/metrics").await;
        assert!(scraped.starts_with("HTTP/1.1 200"), "{scraped}");
        assert!(
            scraped.contains("application/openmetrics-text"),
            "{scraped}"
        );
        assert!(scraped.trim_end().ends_with("# EOF"), "{scraped}");
        assert!(get(addr, "/").await.contains("href=\"/metrics\""));
        metrics.set_status_page(|| "<p>status here</p>".to_owned());
        assert!(get(addr, "/").await.contains("status here"));
        assert!(get(addr, "/nothing").await.starts_with("HTTP/1.1 404"));
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
