//! HTTP on the wire: keep-alive, pipelining, HTTP/2, many requests at once.

use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use std::time::Duration;

use crate::support::{STEP, ServeProcess, TestServer, build, greeter, http1, http2, read};

/// Several requests, one after another, on one HTTP/1.1 connection.
#[tokio::test(flavor = "multi_thread")]
async fn http1_keep_alive_serves_many_requests_on_one_connection() {
    let server = TestServer::start(&greeter()).await;
    let mut sender = http1(server.addr).await;
    for i in 0..5 {
        sender.ready().await.expect("connection still open");
        let path = format!("/visitor{i}");
        let response = sender
            .send_request(build(Method::GET, server.addr, &path))
            .await
            .expect("response on the same connection");
        let reply = read(response).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, format!("Hello, visitor{i}!"));
    }
}

/// Pipelined HTTP/1.1 requests, written at once, are answered in order.
#[tokio::test(flavor = "multi_thread")]
async fn http1_pipelined_requests_are_answered_in_order() {
    let server = TestServer::start(&greeter()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let requests = "GET /first HTTP/1.1\r\nHost: t\r\n\r\n\
                    HEAD /second HTTP/1.1\r\nHost: t\r\n\r\n\
                    GET /third HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    stream.write_all(requests.as_bytes()).await.expect("write");
    let mut raw = String::new();
    tokio::time::timeout(STEP, stream.read_to_string(&mut raw))
        .await
        .expect("responses in time")
        .expect("read");
    assert_eq!(raw.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{raw}");
    let first = raw.find("Hello, first!").expect("first answered");
    let third = raw.find("Hello, third!").expect("third answered");
    assert!(first < third, "answered in order: {raw}");
    assert!(!raw.contains("Hello, second!"), "HEAD has no body: {raw}");
}

/// HTTP/2 with prior knowledge on the same port, several streams at once.
#[tokio::test(flavor = "multi_thread")]
async fn http2_prior_knowledge_is_served() {
    let server = TestServer::start(&greeter()).await;
    let sender = http2(server.addr).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut sender = sender.clone();
        let request = build(Method::GET, server.addr, &format!("/stream{i}"));
        tasks.push(tokio::spawn(async move {
            let response = sender.send_request(request).await.expect("h2 response");
            assert_eq!(response.version(), http::Version::HTTP_2);
            (i, read(response).await)
        }));
    }
    for task in tasks {
        let (i, reply) = task.await.expect("task");
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, format!("Hello, stream{i}!"));
    }
}

/// 1000 requests in flight at once (500 on their own HTTP/1.1 connections,
/// 500 multiplexed over 5 HTTP/2 connections): each gets its own greeting.
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_requests_are_all_answered_correctly() {
    let server = TestServer::with_flags(&greeter(), &["--max-concurrent-requests", "1000"]).await;
    let addr = server.addr;
    let mut h2 = Vec::new();
    for _ in 0..5 {
        h2.push(http2(addr).await);
    }
    let mut tasks = Vec::with_capacity(1000);
    for i in 0..1000usize {
        let name = format!("user{i}");
        let request = build(Method::GET, addr, &format!("/{name}"));
        let h2 = (i % 2 == 0).then(|| h2[i % 5].clone());
        tasks.push(tokio::spawn(async move {
            let response = match h2 {
                Some(mut sender) => sender.send_request(request).await,
                None => http1(addr).await.send_request(request).await,
            };
            let reply = read(response.expect("response")).await;
            (name, reply)
        }));
    }
    let mut answered = 0;
    for task in tasks {
        let (name, reply) = tokio::time::timeout(STEP, task)
            .await
            .expect("answered in time")
            .expect("task");
        assert_eq!(reply.status, StatusCode::OK, "{name}");
        assert_eq!(reply.body, format!("Hello, {name}!"));
        answered += 1;
    }
    assert_eq!(answered, 1000);
}

/// Stopping the server lets a request in flight finish before `run` returns.
#[tokio::test(flavor = "multi_thread")]
async fn stopping_lets_a_request_in_flight_finish() {
    let server = TestServer::start(&crate::support::test_guest()).await;
    let addr = server.addr;
    let in_flight = tokio::spawn(async move { crate::support::get(addr, "/sleep/700").await });
    server.wait_in_flight(1).await;
    server.stop().await;
    let reply = in_flight.await.expect("request task");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "slept 700ms");
}

/// Writes `request` on a new connection and reads what comes back until the
/// server closes the connection.
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut raw))
        .await
        .expect("the server answers and closes in time")
        .expect("read");
    String::from_utf8_lossy(&raw).into_owned()
}

/// A malformed HTTP/1 request gets a 400 and the connection closed, never a
/// silent close (RFC 9112); so do the head rules hyper leaves to the host:
/// more than one `Host`, an invalid `Host`, HTTP/1.1 without `Host`, a target
/// that is neither a path nor an absolute URL. The host serves on.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_400() {
    let server = TestServer::start(&greeter()).await;
    let cases: [(&str, &[u8]); 16] = [
        ("garbage request line", b"GARBAGE\r\n\r\n"),
        ("binary junk", b"\x00\x01\x02\r\n\r\n"),
        (
            "space in the target",
            b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n",
        ),
        (
            "tab in the target",
            b"GET /a\tb HTTP/1.1\r\nHost: t\r\n\r\n",
        ),
        ("unknown version", b"GET / HTTP/9.9\r\nHost: t\r\n\r\n"),
        (
            "header without colon",
            b"GET / HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n",
        ),
        (
            "space before colon",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-A : 1\r\n\r\n",
        ),
        (
            "control byte in a name",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-B\x01d: v\r\n\r\n",
        ),
        (
            "two Content-Lengths",
            b"POST /World HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        ),
        (
            "negative Content-Length",
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
        ),
        (
            "two Host lines",
            b"GET /World HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ),
        (
            "Host with a space",
            b"GET /World HTTP/1.1\r\nHost: a b\r\n\r\n",
        ),
        (
            "Host with a bad port",
            b"GET /World HTTP/1.1\r\nHost: t:99999\r\n\r\n",
        ),
        ("HTTP/1.1 without Host", b"GET /World HTTP/1.1\r\n\r\n"),
        (
            "target not a path",
            b"GET World HTTP/1.1\r\nHost: t\r\n\r\n",
        ),
        ("target not a path, 1.0", b"GET World HTTP/1.0\r\n\r\n"),
    ];
    for (case, request) in cases {
        let raw = exchange(server.addr, request).await;
        assert!(
            raw.starts_with("HTTP/1.1 400 Bad Request\r\n")
                || raw.starts_with("HTTP/1.0 400 Bad Request\r\n"),
            "{case}: {raw:?}"
        );
        assert!(!raw.contains("Hello"), "{case}: {raw:?}");
    }
    let reply = crate::support::get(server.addr, "/after").await;
    assert_eq!(reply.body, "Hello, after!");
}

/// A head hyper cannot parse is answered by hyper itself (400, 414, 431);
/// it is still logged, with `-` for the method and path nobody could read,
/// and counted in the metrics, like every other request.
#[tokio::test(flavor = "multi_thread")]
async fn requests_hyper_refuses_are_logged_and_counted() {
    let mut serve = ServeProcess::start(&[
        "--admin-addr",
        "127.0.0.1:0",
        // hyper reads heads up to twice this (80 KiB): a 70,000-byte
        // target fits, and is over hyper's limit for a URI.
        "--max-header-size",
        "40KiB",
        greeter().to_str().unwrap(),
    ])
    .await;
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(70_000));
    let big_head = format!(
        "GET /World HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(400 * 1024)
    );
    let cases: [(&[u8], u16, &str); 3] = [
        (b"GARBAGE\r\n\r\n", 400, "Bad Request"),
        (long_target.as_bytes(), 414, "URI Too Long"),
        (big_head.as_bytes(), 431, "Request Header Fields Too Large"),
    ];
    for (request, status, reason) in cases {
        let raw = exchange(serve.addr, request).await;
        assert!(
            raw.starts_with(&format!("HTTP/1.1 {status} {reason}\r\n")),
            "{status}: {:?}",
            &raw[..raw.len().min(200)]
        );
        let line = serve
            .wait_for_log(&["wasi_serve::access", &format!("status={status}")])
            .await;
        assert!(line.contains("method=- path=\"-\""), "{line}");
    }
    let admin = serve.admin.expect("an admin listener");
    let page = crate::support::get(admin, "/metrics").await.body;
    assert_eq!(
        crate::support::sample(&page, "wasi_serve_requests_total{class=\"4xx\"}"),
        3.0
    );
    let reply = crate::support::get(serve.addr, "/after").await;
    assert_eq!(reply.body, "Hello, after!");
}

/// HTTP/1.0 does not require `Host`: such a request is served, with the
/// address it came in on as its authority; an absolute-form target needs
/// no `Host` either.
#[tokio::test(flavor = "multi_thread")]
async fn http1_0_without_host_is_served() {
    let server = TestServer::start(&greeter()).await;
    let raw = exchange(server.addr, b"GET /World HTTP/1.0\r\n\r\n").await;
    assert!(raw.starts_with("HTTP/1.0 200 OK\r\n"), "{raw:?}");
    assert!(raw.ends_with("Hello, World!"), "{raw:?}");
    let absolute = format!("GET http://{}/World HTTP/1.0\r\n\r\n", server.addr);
    let raw = exchange(server.addr, absolute.as_bytes()).await;
    assert!(raw.ends_with("Hello, World!"), "{raw:?}");
}

/// A burst of new connections while the host is not accepting (here it is
/// stopped with SIGSTOP) waits in the listen backlog, 600 of them, far past
/// the 128 that std and tokio ask for; once the host runs again, every one
/// is answered. With a backlog of 128 the kernel drops the extra SYNs and
/// those connects time out.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_connections_waits_in_the_backlog() {
    // The kernel caps any backlog at `net.core.somaxconn`.
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(4096);
    let burst = 600.min(somaxconn - 1);
    let greeter = greeter();
    let serve = ServeProcess::start(&[greeter.to_str().unwrap()]).await;
    let addr = serve.addr;
    let pid = serve.child.id().expect("running") as libc::pid_t;
    // SAFETY: signals to the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let connected = tokio::task::spawn_blocking(move || {
        (0..burst)
            .map(|n| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(800))
                    .unwrap_or_else(|err| panic!("connection {n} of {burst}: {err}"))
            })
            .collect::<Vec<_>>()
    })
    .await;
    // SAFETY: as above; the host runs again whatever the connects did.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let streams = connected.expect("every connection completed while the host was stopped");
    let answered = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut answered = 0;
        for mut stream in streams {
            stream.set_read_timeout(Some(STEP)).unwrap();
            stream
                .write_all(b"GET /World HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut reply = String::new();
            stream.read_to_string(&mut reply).unwrap();
            assert!(reply.ends_with("Hello, World!"), "{reply:?}");
            answered += 1;
        }
        answered
    })
    .await
    .unwrap();
    assert_eq!(answered, burst);
}

/// Answers HTTP cannot carry as the guest gave them are mended or refused
/// before hyper sends them, over both protocols: 204 and 304 go without
/// body or `content-length` (HTTP/2 would reset the stream otherwise); an
/// informational status, a status past 599 (a WASI 0.2 guest may set up to
/// 999) or a 2xx to CONNECT is the guest's failure, a 500, not a dropped
/// connection or a status HTTP does not have, logged as answered.
#[tokio::test(flavor = "multi_thread")]
async fn answers_http_cannot_carry_are_mended_or_refused() {
    for guest in crate::support::test_guests() {
        let server = TestServer::start(&guest).await;
        let mut h2 = http2(server.addr).await;
        for (path, status) in [("/status/204", 204), ("/status/304", 304)] {
            let reply = exchange(
                server.addr,
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await;
            let (head, body) = reply.split_once("\r\n\r\n").expect("a whole response");
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{reply}");
            assert!(
                !head.to_ascii_lowercase().contains("content-length"),
                "{reply}"
            );
            assert_eq!(body, "", "{reply}");

            let response = h2
                .send_request(build(Method::GET, server.addr, path))
                .await
                .expect("an HTTP/2 answer, not a reset stream");
            assert!(!response.headers().contains_key("content-length"));
            let reply = read(response).await;
            assert_eq!(reply.status.as_u16(), status, "{}", guest.display());
            assert_eq!(reply.body, "");
        }
        for path in [
            "/status/100",
            "/status/101",
            "/status/103",
            "/status/600",
            "/status/999",
        ] {
            let response = h2
                .send_request(build(Method::GET, server.addr, path))
                .await
                .expect("an HTTP/2 answer");
            let reply = read(response).await;
            assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
            assert_eq!(reply.body, "500: Internal Server Error");
            let reply = exchange(
                server.addr,
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await;
            assert!(reply.starts_with("HTTP/1.1 500 "), "{path}: {reply}");
        }
        let reply = exchange(
            server.addr,
            b"CONNECT x:80 HTTP/1.1\r\nHost: x:80\r\nConnection: close\r\n\r\n",
        )
        .await;
        // The 0.2 guest answers it 200, refused as a tunnel; whatever the
        // 0.3 one is handed, the client gets a whole error response.
        let status: u16 = reply[9..12].parse().expect("a status line");
        assert!((400..600).contains(&status), "{reply}");
        assert!(reply.contains(&format!("\r\n\r\n{status}: ")), "{reply}");
    }
}

/// A request body the client breaks (a malformed chunk, or a connection
/// half-closed before the declared length) is the client's fault: a guest
/// that fails reading it gets the client a 400, is logged at info, and is
/// not counted as a trap or a 5xx.
#[tokio::test(flavor = "multi_thread")]
async fn request_bodies_that_break_off_get_400_not_a_guest_failure() {
    for guest in crate::support::test_guests() {
        let mut serve =
            ServeProcess::start(&["--admin-addr", "127.0.0.1:0", guest.to_str().unwrap()]).await;
        let admin = serve.admin.expect("an admin listener");

        let malformed = exchange(
            serve.addr,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n",
        )
        .await;
        assert!(malformed.starts_with("HTTP/1.1 400 "), "{malformed}");

        let mut stream = TcpStream::connect(serve.addr).await.expect("connect");
        stream
            .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            .await
            .expect("write");
        stream.shutdown().await.expect("half-close");
        let mut raw = Vec::new();
        tokio::time::timeout(STEP, stream.read_to_end(&mut raw))
            .await
            .expect("answered in time")
            .expect("read");
        let cut_short = String::from_utf8_lossy(&raw);
        assert!(cut_short.starts_with("HTTP/1.1 400 "), "{cut_short}");

        for _ in 0..2 {
            let line = serve
                .wait_for_log(&["request body broke off", "path=\"/echo\""])
                .await;
            assert!(line.contains("INFO"), "{line}");
        }
        let page = crate::support::get(admin, "/metrics").await.body;
        let sample = |name| crate::support::sample(&page, name);
        assert_eq!(
            sample("wasi_serve_guest_traps_total"),
            0.0,
            "{}",
            guest.display()
        );
        assert_eq!(sample("wasi_serve_requests_total{class=\"4xx\"}"), 2.0);
        assert_eq!(sample("wasi_serve_requests_total{class=\"5xx\"}"), 0.0);
        assert!(serve.logged("guest failed").is_empty());
    }
}
