//! The greeter's behaviour, end to end through the host: the WASI 0.2 and
//! the WASI 0.3 build answer every case alike.

use http::{Method, StatusCode};

use crate::support::{TestServer, get, greeters, send};

/// Every greeting carries the same text/plain headers and an exact length.
#[tokio::test(flavor = "multi_thread")]
async fn greets_by_name_with_plain_text_headers() {
    for guest in greeters() {
        let server = TestServer::start(&guest).await;
        let reply = get(server.addr, "/World").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, "Hello, World!");
        assert_eq!(reply.header("content-type"), "text/plain; charset=utf-8");
        assert_eq!(reply.header("content-length"), "13");
        assert_eq!(reply.header("x-content-type-options"), "nosniff");
    }
}

/// `/` greets the default name the original program meant to have.
#[tokio::test(flavor = "multi_thread")]
async fn root_greets_anonymous() {
    for guest in greeters() {
        let server = TestServer::start(&guest).await;
        let reply = get(server.addr, "/").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, "Hello, Anonymous!");
    }
}

/// Names are percent-decoded once as UTF-8; bad escapes stay as written;
/// `+` is not a space; the query string is ignored.
#[tokio::test(flavor = "multi_thread")]
async fn decodes_names_and_ignores_the_query() {
    for guest in greeters() {
        let server = TestServer::start(&guest).await;
        let cases = [
            ("/John%20Doe", "Hello, John Doe!"),
            ("/J%C3%BCrgen", "Hello, Jürgen!"),
            ("/%E4%B8%96%E7%95%8C", "Hello, 世界!"),
            ("/a%2Fb", "Hello, a/b!"),
            ("/100%25", "Hello, 100%!"),
            ("/%252F", "Hello, %2F!"),
            ("/a+b", "Hello, a+b!"),
            ("/bad%zz", "Hello, bad%zz!"),
            ("/x%FFy", "Hello, x%FFy!"),
            ("/%C3%BC%FF", "Hello, ü%FF!"),
            ("/World?x=1", "Hello, World!"),
            ("/World?name=Other&y=%2F", "Hello, World!"),
            ("/?name=World", "Hello, Anonymous!"),
        ];
        for (path, expected) in cases {
            let reply = get(server.addr, path).await;
            assert_eq!(reply.status, StatusCode::OK, "{path}");
            assert_eq!(reply.body, expected, "{path}");
            assert_eq!(
                reply.header("content-length"),
                expected.len().to_string(),
                "{path}: length counts bytes, not characters"
            );
        }
    }
}

/// HEAD answers with the GET headers, including its length, and no body.
#[tokio::test(flavor = "multi_thread")]
async fn head_sends_get_headers_without_a_body() {
    for guest in greeters() {
        let server = TestServer::start(&guest).await;
        let head = send(server.addr, Method::HEAD, "/J%C3%BCrgen").await;
        let get = get(server.addr, "/J%C3%BCrgen").await;
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.body, "");
        assert_eq!(head.header("content-length"), get.header("content-length"));
        assert_eq!(head.header("content-type"), get.header("content-type"));
    }
}

/// HEAD over HTTP/2 too: the headers, no body, and the guest does not fail
/// (it declares a length it does not write).
#[tokio::test(flavor = "multi_thread")]
async fn head_over_http2_is_answered_cleanly() {
    for guest in greeters() {
        let mut serve = crate::support::ServeProcess::start(&[guest.to_str().unwrap()]).await;
        let mut sender = crate::support::http2(serve.addr).await;
        let response = sender
            .send_request(crate::support::build(Method::HEAD, serve.addr, "/World"))
            .await
            .expect("h2 response");
        let reply = crate::support::read(response).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("content-length"), "13");
        assert_eq!(reply.body, "");
        let access = serve
            .wait_for_log(&["wasi_serve::access", "method=HEAD"])
            .await;
        assert!(access.contains("status=200"), "{access}");
        assert_eq!(get(serve.addr, "/after").await.body, "Hello, after!");
        let failures = serve.logged("guest failed");
        assert!(
            failures.is_empty(),
            "HEAD made the guest fail: {failures:?}"
        );
    }
}

/// Other methods on a greeting path: 405 with `Allow`.
#[tokio::test(flavor = "multi_thread")]
async fn other_methods_are_not_allowed() {
    for guest in greeters() {
        let server = TestServer::start(&guest).await;
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            for path in ["/World", "/"] {
                let reply = send(server.addr, method.clone(), path).await;
                assert_eq!(
                    reply.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}"
                );
                assert_eq!(reply.body, "405: Method Not Allowed");
                assert_eq!(reply.header("allow"), "GET, HEAD");
                assert_eq!(reply.header("content-type"), "text/plain; charset=utf-8");
            }
        }
    }
}

/// Anything but `/` or one non-empty segment is 404, whatever the method.
#[tokio::test(flavor = "multi_thread")]
async fn other_paths_are_not_found() {
    for guest in greeters() {
        let server = TestServer::start(&guest).await;
        for path in ["/a/b", "/World/", "//World", "//", "/a/b/c?x=1"] {
            let reply = get(server.addr, path).await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(reply.body, "404: Not Found", "{path}");
            assert_eq!(reply.header("content-length"), "14");
        }
        let reply = send(server.addr, Method::POST, "/a/b").await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
    }
}
