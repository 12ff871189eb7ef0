//! The accept loop: HTTP/1.1 (keep-alive, pipelining) and HTTP/2 (cleartext,
//! prior knowledge) on one port, an access-log line per request, errors
//! turned into plain-text responses in one place, and a bounded drain.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http::{StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::proxy::{self, ProxyError};
use crate::runtime::Runtime;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `runtime` on `listener` until `shutdown` resolves, then stops
/// accepting and waits up to `drain_timeout` for requests in flight.
pub async fn run(
    listener: TcpListener,
    runtime: Runtime,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) -> Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .pipeline_flush(true);
    builder.http2().timer(TokioTimer::new());

    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    // Typically out of file descriptors: back off instead of
                    // spinning, and keep serving the connections we have.
                    tracing::warn!("failed to accept a connection: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let runtime = runtime.clone();
        let service = service_fn(move |request| {
            let runtime = runtime.clone();
            async move { Ok::<_, Infallible>(serve(&runtime, request).await) }
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!("connection ended with an error: {err}");
            }
        });
    }

    drop(listener);
    tracing::info!("stopped accepting; draining requests in flight");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(drain_timeout) => {
            tracing::warn!("requests still in flight after {drain_timeout:?}; stopping anyway");
        }
    }
    Ok(())
}

/// One request, start to response head: the one place where errors become
/// responses, and where the access log is written.
async fn serve(
    runtime: &Runtime,
    request: hyper::Request<Incoming>,
) -> hyper::Response<HyperOutgoingBody> {
    let started = Instant::now();
    let method = request.method().clone();
    let uri = request.uri().clone();
    let response = match proxy::handle(runtime, request).await {
        Ok(response) => response,
        Err(err) => {
            match &err {
                ProxyError::BadRequest(error) => {
                    tracing::info!(%method, path = uri.path(), "bad request: {}", proxy::one_line(error));
                }
                ProxyError::Guest { error, logged } if !logged => {
                    tracing::error!(%method, path = uri.path(), "guest failed: {}", proxy::one_line(error));
                }
                ProxyError::Guest { .. } => {}
            }
            plain_response(err.status())
        }
    };
    tracing::info!(
        target: "wasi_serve::access",
        %method,
        path = uri.path(),
        status = response.status().as_u16(),
        elapsed = ?started.elapsed(),
    );
    response
}

/// A plain-text response such as `500: Internal Server Error`: the status and
/// nothing internal.
fn plain_response(status: StatusCode) -> hyper::Response<HyperOutgoingBody> {
    let text = format!(
        "{}: {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let body = Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed_unsync();
    hyper::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(body)
        .expect("a static status and headers make a valid response")
}
