//! Outgoing HTTP from guests: denied by default, allowed per origin.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::support::{TestServer, get, test_guest_p3, test_guests};

/// A plain HTTP server on loopback that answers every request.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(
                TokioIo::new(stream),
                service_fn(
                    |request: hyper::Request<hyper::body::Incoming>| async move {
                        let text = format!("upstream saw {}", request.uri().path());
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(text))))
                    },
                ),
            ));
        }
    });
    addr
}

/// Without `--allow-outbound` the guest's request fails with the wasi:http
/// `HTTP-request-denied` error, and the guest chooses its answer (502).
#[tokio::test(flavor = "multi_thread")]
async fn outgoing_requests_are_denied_by_default() {
    let upstream = upstream().await;
    for guest in test_guests() {
        let server = TestServer::start(&guest).await;
        let reply = get(server.addr, &format!("/fetch?http://{upstream}/data")).await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", guest.display());
        assert_eq!(reply.body, "ErrorCode::HttpRequestDenied");
    }
}

/// An allowed origin is reached; another port on the same host is not.
#[tokio::test(flavor = "multi_thread")]
async fn allowed_origins_are_reached_and_others_denied() {
    let allowed = upstream().await;
    let other = upstream().await;
    for guest in test_guests() {
        let server =
            TestServer::with_flags(&guest, &["--allow-outbound", &format!("http://{allowed}")])
                .await;
        let reply = get(server.addr, &format!("/fetch?http://{allowed}/data")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", guest.display());
        assert_eq!(reply.body, "upstream saw /data");
        let reply = get(server.addr, &format!("/fetch?http://{other}/data")).await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
        assert_eq!(reply.body, "ErrorCode::HttpRequestDenied");
    }
}

/// A WASI 0.3 request with no path goes out as `/` (WASI issue 949), and
/// the allow-list still applies to it.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_without_a_path_goes_out_as_slash() {
    let allowed = upstream().await;
    let other = upstream().await;
    let server = TestServer::with_flags(
        &test_guest_p3(),
        &["--allow-outbound", &format!("http://{allowed}")],
    )
    .await;
    let reply = get(server.addr, &format!("/fetch?http://{allowed}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, "upstream saw /");
    let reply = get(server.addr, &format!("/fetch?http://{other}")).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.body, "ErrorCode::HttpRequestDenied");
}
