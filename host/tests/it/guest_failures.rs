//! Misbehaving guests: the client gets a plain 500, the host keeps serving.

use http::StatusCode;

use crate::support::{ServeProcess, TestServer, get, test_guest, test_guest_p3, test_guests};

/// A trap before any response: a plain 500 that leaks nothing, then the
/// next request is served normally.
#[tokio::test(flavor = "multi_thread")]
async fn a_trapping_guest_gets_a_plain_500_and_the_host_keeps_serving() {
    for guest in test_guests() {
        a_trapping_guest_gets_a_plain_500(&guest).await;
    }
}

async fn a_trapping_guest_gets_a_plain_500(guest: &std::path::Path) {
    let server = TestServer::start(guest).await;
    for _ in 0..3 {
        let reply = get(server.addr, "/trap").await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(reply.body, "500: Internal Server Error");
        assert_eq!(reply.header("content-type"), "text/plain; charset=utf-8");
        let after = get(server.addr, "/still-here").await;
        assert_eq!(after.status, StatusCode::OK);
        assert_eq!(after.body, "Howdy, still-here!");
    }
}

/// A guest that returns without setting a response: 500, then 200.
#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_never_answers_gets_a_500() {
    let server = TestServer::start(&test_guest()).await;
    let reply = get(server.addr, "/no-response").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.body, "500: Internal Server Error");
    assert_eq!(get(server.addr, "/next").await.status, StatusCode::OK);
}

/// A WASI 0.3 guest that returns an error code instead of a response: a
/// plain 500, the code logged, and the host serves on.
#[tokio::test(flavor = "multi_thread")]
async fn a_guest_returning_an_error_code_gets_a_500() {
    let mut serve = ServeProcess::start(&[test_guest_p3().to_str().unwrap()]).await;
    let reply = get(serve.addr, "/error-code").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.body, "500: Internal Server Error");
    serve
        .wait_for_log(&["guest failed", "error code", "asked to fail", "/error-code"])
        .await;
    assert_eq!(get(serve.addr, "/next").await.body, "Howdy, next!");
}

/// The host logs the guest's real error with the request's method and path,
/// and an access-log line with the status, for both handler ABIs.
#[tokio::test(flavor = "multi_thread")]
async fn the_guest_error_is_logged_with_method_and_path() {
    for guest in test_guests() {
        the_guest_error_is_logged(&guest).await;
    }
}

async fn the_guest_error_is_logged(guest: &std::path::Path) {
    let mut serve = ServeProcess::start(&[guest.to_str().unwrap()]).await;
    let reply = get(serve.addr, "/trap").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    let line = serve
        .wait_for_log(&["guest failed", "method=GET", "path=\"/trap\""])
        .await;
    assert!(line.contains("unreachable"), "the trap itself: {line}");
    let access = serve
        .wait_for_log(&["wasi_serve::access", "path=\"/trap\""])
        .await;
    assert!(access.contains("status=500"), "{access}");
}
