//! The admin listener (`--admin-addr`), apart from the one guests are served
//! on: `/metrics`, `/healthz` (the process answers) and `/readyz` (serving,
//! not draining).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{StatusCode, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Whether the host takes new requests: from start until shutdown begins.
/// Clones share one state.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    draining: Arc<AtomicBool>,
}

impl Readiness {
    /// Serving, not draining.
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
    }

    /// Shutdown has begun: `/readyz` answers 503 from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

/// Serves the admin paths on `listener` until the process ends. A client
/// gets `header_timeout` (`--header-read-timeout`) for each request head,
/// the wait for the next one on a kept-alive connection included, as on the
/// main listener: idle connections cannot pile up and use the process's
/// file descriptors.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    header_timeout: Duration,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, typically: back off rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let metrics = metrics.clone();
        let readiness = readiness.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let (status, content_type, body) = match request.uri().path() {
                    "/metrics" => (
                        StatusCode::OK,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        metrics.render(),
                    ),
                    "/healthz" => (StatusCode::OK, "text/plain", "ok\n".into()),
                    "/readyz" if readiness.is_ready() => {
                        (StatusCode::OK, "text/plain", "ready\n".into())
                    }
                    "/readyz" => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        "draining\n".into(),
                    ),
                    _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
                };
                let response = hyper::Response::builder()
                    .status(status)
                    .header(header::CONTENT_TYPE, content_type)
                    .body(Full::new(Bytes::from(body)))
                    .expect("valid response");
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
