//! The accept loop: HTTP/1.1 (keep-alive, pipelining) and HTTP/2 (cleartext,
//! prior knowledge) on one port, an access-log line per request, errors
//! turned into plain-text responses in one place, and a bounded drain.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http::uri::Scheme;
use http::{StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use wasmtime_wasi_http::WasiBody;

use crate::access_log;
use crate::connections::ConnectionLimit;
use crate::idle::{Idle, Tracked};
use crate::linger::{Drained, Lingering};
use crate::proxy::{self, Proxy, ProxyError};
use crate::request_head;
use crate::send_timeout;

/// Ping interval (and answer deadline) on HTTP/2 connections.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// The HTTP/2 connection preface; an HTTP/1 request differs from it early.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits until the client has sent enough to tell HTTP/1 from HTTP/2, which
/// hyper's protocol detection then reads without a timeout of its own.
/// `false` if the client closed the connection first.
async fn await_protocol(stream: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut pause = Duration::from_millis(10);
    loop {
        match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) if n == buf.len() || !H2_PREFACE.starts_with(&buf[..n]) => return true,
            // Part of the HTTP/2 preface: peeking does not consume it, and
            // the socket stays readable, so wait for the rest rather than
            // spin, longer each time: a client that stops halfway costs a
            // few wake-ups until `--header-read-timeout`, not a hundred a
            // second.
            Ok(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Serves `proxy` on `listener` until `shutdown` resolves, then stops
/// accepting, lets requests in flight finish for up to `drain_timeout`, and
/// cuts what is left.
/// With `tls`, connections are TLS (the request scheme is `https`).
pub async fn run(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) -> Result<()> {
    let scheme = if tls.is_some() {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    };
    let limits = proxy.limits();
    let header_timeout = limits.header_read_timeout;
    let send_timeout = limits.send_timeout;
    let timeouts = Timeouts {
        idle: header_timeout,
        send: send_timeout,
    };
    // Each HTTP/2 stream's task is watched for a client that stops taking
    // its response; an HTTP/1 connection, which sends one response at a
    // time, is watched as a whole (`until_drained`).
    let mut builder = auto::Builder::new(send_timeout::Executor {
        timeout: send_timeout,
    });
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        // Heads up to twice the limit are parsed, so that `serve` can answer
        // 431; hyper itself closes the connection on anything larger.
        .max_buf_size(2 * limits.max_header_size as usize); // at most 2 MiB: see `Limits`
    // (No `pipeline_flush`: with it, hyper 1.12 never sends the 400 it
    // writes for a head it cannot parse.)
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_size).unwrap_or(u32::MAX))
        // A peer that stops answering pings is disconnected.
        .keep_alive_interval(H2_KEEP_ALIVE)
        .keep_alive_timeout(H2_KEEP_ALIVE);

    // Every connection task holds a receiver; the drain ends when all are
    // gone.
    let (drain, draining) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut connections =
        ConnectionLimit::new(limits.max_connections, proxy.metrics().connections());
    loop {
        let place = tokio::select! {
            place = connections.place() => place,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
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
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let server = proxy.clone();
        let proxy = proxy.clone();
        let scheme = scheme.clone();
        let first = Arc::new(FirstRequest::default());
        let started = first.clone();
        let idle = Idle::new();
        let requests = idle.clone();
        let service = service_fn(move |request| {
            started.mark();
            let open = requests.open();
            let proxy = proxy.clone();
            let scheme = scheme.clone();
            async move {
                let response = serve(&proxy, request, scheme, local, peer.ip()).await;
                Ok::<_, Infallible>(response.map(|body| Tracked::new(body, open)))
            }
        });
        let builder = builder.clone();
        let draining = draining.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _place = place;
            // A client that connects and never speaks (or stops halfway
            // through the TLS handshake or the HTTP/2 preface) holds nothing
            // for long: hyper's header timeout only starts once it has picked
            // a protocol.
            let served = match tls {
                None => {
                    if timeout(header_timeout, await_protocol(&stream)).await != Ok(true) {
                        return;
                    }
                    let io = TokioIo::new(Lingering::new(stream, idle.clone()));
                    let connection = builder.serve_connection(io, service);
                    until_drained(connection, &first, draining, &idle, timeouts).await
                }
                Some(tls) => {
                    let accept = tls.accept(Lingering::new(stream, idle.clone()));
                    let Ok(Ok(stream)) = timeout(header_timeout, accept).await else {
                        return;
                    };
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    until_drained(connection, &first, draining, &idle, timeouts).await
                }
            };
            if let Err(err) = served {
                match request_head::answered_by_hyper(&*err) {
                    Some(status) => unparsed(&server, status, idle.quiet_for(), &*err),
                    None => tracing::debug!("connection ended with an error: {err}"),
                }
            }
        });
    }

    drop(listener);
    drop(draining);
    proxy.readiness().set_draining();
    tracing::info!("stopped accepting; draining requests in flight");
    let _ = drain.send(true);
    tokio::select! {
        () = drain.closed() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(drain_timeout) => {
            tracing::warn!("requests still in flight after {drain_timeout:?}; cutting them off");
        }
    }
    Ok(())
}

/// Serves `connection` until it ends; once the drain starts, or once no
/// request has been open on it for `idle_timeout` (see `idle`), asks it to
/// close after the requests it is serving. Closed for idleness, it is cut
/// off if it still has not closed after another `idle_timeout` in which no
/// request was open and nothing was written: what it holds then is response
/// bytes its client is not taking.
///
/// A connection that has not begun its first request yet is left to begin
/// it: its request may already be on the way (sent as soon as the client
/// connected, or waiting in the listen backlog when the drain began), and
/// closing the connection under it would reset it unanswered. Such a
/// connection is still bounded: hyper closes it if no head arrives within
/// `--header-read-timeout`, and the whole drain by `--shutdown-timeout`.
async fn until_drained<C: GracefulConnection>(
    connection: C,
    first: &FirstRequest,
    mut draining: watch::Receiver<bool>,
    idle: &Idle,
    timeouts: Timeouts,
) -> Result<(), C::Error> {
    let Timeouts {
        idle: idle_timeout,
        send: send_timeout,
    } = timeouts;
    let mut connection = std::pin::pin!(connection);
    let idle_close = tokio::select! {
        served = connection.as_mut() => return served,
        // An HTTP/1 response its client takes nothing of: the connection
        // goes, and with it the response and its guest.
        () = idle.sending().stalled(send_timeout) => {
            tracing::info!(
                "the client took no part of a response for {send_timeout:?} \
                 (--send-timeout); its connection is closed"
            );
            return Ok(());
        }
        () = async {
            // An error means the server is gone: drain as well.
            let _ = draining.wait_for(|draining| *draining).await;
            first.wait().await;
        } => false,
        () = idle.elapsed(idle_timeout) => {
            tracing::debug!("closing an idle connection");
            true
        }
    };
    connection.as_mut().graceful_shutdown();
    if !idle_close {
        // The drain, bounded by `--shutdown-timeout` as a whole.
        return connection.await;
    }
    tokio::select! {
        served = connection.as_mut() => served,
        // A request that raced the GOAWAY is served first, and bytes still
        // going out are waited for.
        () = idle.stalled(idle_timeout) => {
            tracing::info!(
                "the client of an idle connection took nothing for {idle_timeout:?}; \
                 connection closed"
            );
            Ok(())
        }
    }
}

/// `--header-read-timeout`, which also closes idle connections, and
/// `--send-timeout`.
#[derive(Clone, Copy)]
struct Timeouts {
    idle: Duration,
    send: Duration,
}

/// Whether a connection has begun a request.
#[derive(Default)]
struct FirstRequest {
    seen: AtomicBool,
    notify: Notify,
}

impl FirstRequest {
    fn mark(&self) {
        if !self.seen.load(Ordering::Relaxed) && !self.seen.swap(true, Ordering::Relaxed) {
            self.notify.notify_one();
        }
    }

    async fn wait(&self) {
        if !self.seen.load(Ordering::Relaxed) {
            // A `mark` between the check and here leaves a permit.
            self.notify.notified().await;
        }
    }
}

/// One request, start to response head: the one place where errors become
/// responses, and where the access log is written.
async fn serve(
    proxy: &Proxy,
    request: hyper::Request<Incoming>,
    scheme: Scheme,
    local: SocketAddr,
    client: IpAddr,
) -> hyper::Response<WasiBody> {
    let started = Instant::now();
    // Whoever drops the body unread, an HTTP/2 client still sending it
    // gets its answer (see `linger`).
    let version = request.version();
    let mut request = request.map(|body| Drained::new(version, body));
    let _in_flight = proxy.metrics().in_flight();
    let method = request.method().clone();
    let uri = request.uri().clone();
    let unanswered = Unanswered {
        proxy,
        method: &method,
        path: uri.path(),
        started,
    };
    let response = if let Err(reason) = request_head::check(&mut request, local) {
        tracing::info!(%method, path = uri.path(), "bad request: {reason}");
        closing(plain_response(StatusCode::BAD_REQUEST))
    } else if head_size(&request) > proxy.limits().max_header_size {
        tracing::info!(%method, path = uri.path(), "request head too large");
        closing(plain_response(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE))
    } else {
        respond(proxy, request, scheme, client).await
    };
    unanswered.answered(response.status());
    response
}

/// A request being served, logged and counted once it has its response
/// head, or, if its client goes away first (hyper then drops the request's
/// future), as 499, nginx's "client closed request".
struct Unanswered<'a> {
    proxy: &'a Proxy,
    method: &'a http::Method,
    path: &'a str,
    started: Instant,
}

/// A request head hyper could not parse, and answered itself with `status`
/// before closing the connection: logged and counted like any other
/// request. Its method and path are unknown, so the access line says `-`.
fn unparsed(proxy: &Proxy, status: StatusCode, elapsed: Duration, error: &dyn std::error::Error) {
    tracing::info!("bad request: {error}");
    proxy.metrics().answered(status, elapsed);
    let unknown = http::Method::from_bytes(b"-").expect("`-` is a method token");
    access_log::record(&unknown, "-", status, elapsed);
}

/// The status logged for a request whose client went away unanswered.
const CLIENT_CLOSED: u16 = 499;

impl Unanswered<'_> {
    fn answered(self, status: StatusCode) {
        self.record(status);
        std::mem::forget(self);
    }

    fn record(&self, status: StatusCode) {
        let elapsed = self.started.elapsed();
        self.proxy.metrics().answered(status, elapsed);
        access_log::record(self.method, self.path, status, elapsed);
    }
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        self.record(StatusCode::from_u16(CLIENT_CLOSED).expect("a status code in range"));
    }
}

/// The size of a request's head as sent: request line and header lines.
fn head_size<B>(request: &hyper::Request<B>) -> u64 {
    // Method, target and `HTTP/1.1` with spaces and CRLF; no allocation.
    let uri = request.uri();
    let target = uri
        .path_and_query()
        .map_or(1, |target| target.as_str().len())
        + uri
            .authority()
            .map_or(0, |authority| authority.as_str().len())
        + uri.scheme_str().map_or(0, |scheme| scheme.len() + 3);
    let line = request.method().as_str().len() + target + 12;
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    (line + headers) as u64
}

/// The guest's response, or the error turned into one.
async fn respond(
    proxy: &Proxy,
    request: hyper::Request<Drained<Incoming>>,
    scheme: Scheme,
    client: IpAddr,
) -> hyper::Response<WasiBody> {
    let method = request.method().clone();
    let uri = request.uri().clone();
    match proxy.handle(request, scheme, client).await {
        Ok(response) => response,
        Err(err) => {
            match &err {
                ProxyError::BadRequest(error) => {
                    tracing::info!(%method, path = uri.path(), "bad request: {}", proxy::one_line(error));
                }
                ProxyError::Guest { error, logged } if !logged => {
                    tracing::error!(%method, path = uri.path(), "guest failed: {}", proxy::one_line(error));
                }
                // Logged by the guest's run.
                ProxyError::Guest { .. } | ProxyError::Timeout | ProxyError::BodyBroke => {}
                ProxyError::BodyTooLarge => {
                    tracing::info!(%method, path = uri.path(), "request body too large");
                }
                ProxyError::Busy => {
                    proxy.metrics().rejected();
                    tracing::warn!(%method, path = uri.path(), "no instance slot free in time");
                }
                ProxyError::ClientOverLimit(over) => {
                    proxy.metrics().client_limited();
                    tracing::info!(
                        %method,
                        path = uri.path(),
                        "client {} stayed at its limit of {} requests in flight \
                         (--max-requests-per-client)",
                        over.client,
                        over.max
                    );
                }
            }
            let mut response = plain_response(err.status());
            match err {
                ProxyError::Busy | ProxyError::ClientOverLimit(_) => {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                }
                // The rest of the body is not read: the connection cannot be
                // reused.
                ProxyError::BodyTooLarge | ProxyError::BodyBroke => response = closing(response),
                _ => {}
            }
            response
        }
    }
}

/// `response`, closing the connection after it.
fn closing(mut response: hyper::Response<WasiBody>) -> hyper::Response<WasiBody> {
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

/// A plain-text response such as `500: Internal Server Error`: the status and
/// nothing internal.
fn plain_response(status: StatusCode) -> hyper::Response<WasiBody> {
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
