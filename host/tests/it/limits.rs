//! Each limit, pushed by a misbehaving guest or client: the client gets a
//! clean answer, and the host still serves a normal request afterwards.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    STEP, ServeProcess, TestServer, build, connect_from, get, get_from, http2_connection,
    http2_over, read, sample, test_guest, test_guest_p3, test_guests,
};

async fn still_serves(server: &TestServer) {
    let reply = get(server.addr, "/after").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "Howdy, after!");
}

/// A guest in an endless loop is interrupted at the request timeout: 504.
#[tokio::test(flavor = "multi_thread")]
async fn a_looping_guest_is_interrupted_with_504() {
    for guest in test_guests() {
        let server = TestServer::with_flags(&guest, &["--request-timeout", "500ms"]).await;
        let reply = get(server.addr, "/loop").await;
        assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(reply.body, "504: Gateway Timeout");
        assert_eq!(reply.header("content-type"), "text/plain; charset=utf-8");
        still_serves(&server).await;
    }
}

/// A guest blocked in a host call (sleeping) times out the same way.
#[tokio::test(flavor = "multi_thread")]
async fn a_sleeping_guest_is_interrupted_with_504() {
    for guest in test_guests() {
        let server = TestServer::with_flags(&guest, &["--request-timeout", "300ms"]).await;
        let reply = get(server.addr, "/sleep/5000").await;
        assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
        still_serves(&server).await;
    }
}

/// A WASI 0.3 guest awaiting something that never comes (a timer a day
/// away, in a loop) is interrupted the same way.
#[tokio::test(flavor = "multi_thread")]
async fn an_awaiting_guest_is_interrupted_with_504() {
    let server = TestServer::with_flags(&test_guest_p3(), &["--request-timeout", "300ms"]).await;
    let reply = get(server.addr, "/await-forever").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    still_serves(&server).await;
}

/// While guests spin in loops on every worker thread, other requests are
/// still served: all of them finish before any loop is interrupted. (The
/// loops run for 8 s: the greetings take well under one, but on a machine
/// busy with other work they once took more than 4.)
#[tokio::test(flavor = "multi_thread")]
async fn looping_guests_do_not_starve_other_requests() {
    for guest in test_guests() {
        let server = TestServer::with_flags(&guest, &["--request-timeout", "8s"]).await;
        greetings_pass_looping_guests(server.addr, 4, 20).await;
    }
}

/// Starts `loops` guests spinning, checks that `greetings` requests are all
/// answered while every loop still runs, then that each loop gets 504.
async fn greetings_pass_looping_guests(addr: std::net::SocketAddr, loops: usize, greetings: usize) {
    let loops: Vec<_> = (0..loops)
        .map(|_| tokio::spawn(async move { get(addr, "/loop").await }))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..greetings {
        let reply = get(addr, &format!("/meanwhile{i}")).await;
        assert_eq!(reply.body, format!("Howdy, meanwhile{i}!"));
    }
    assert!(
        loops.iter().all(|task| !task.is_finished()),
        "the greetings were served while the loops still ran"
    );
    for task in loops {
        assert_eq!(task.await.unwrap().status, StatusCode::GATEWAY_TIMEOUT);
    }
}

/// On one CPU the binary runs a single-threaded scheduler, and guests still
/// share it: requests run concurrently, and while guests spin in loops
/// greetings are answered, then the loops are interrupted.
#[tokio::test(flavor = "multi_thread")]
async fn on_one_cpu_guests_still_share_the_scheduler() {
    let mut serve = ServeProcess::start_on_one_cpu(&[
        "--request-timeout",
        "3s",
        test_guest().to_str().unwrap(),
    ])
    .await;
    serve
        .wait_for_log(&["async runtime started", "workers=1"])
        .await;
    let addr = serve.addr;
    // Each sleeper holds its instance for 300 ms: run one after another,
    // 20 would take 6 s.
    let started = std::time::Instant::now();
    let sleepers: Vec<_> = (0..20)
        .map(|_| tokio::spawn(async move { get(addr, "/sleep/300").await }))
        .collect();
    for sleeper in sleepers {
        assert_eq!(sleeper.await.unwrap().status, StatusCode::OK);
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the sleeping guests overlapped"
    );
    greetings_pass_looping_guests(addr, 2, 10).await;
}

/// A guest growing memory past `--max-memory` fails alone with a 500.
#[tokio::test(flavor = "multi_thread")]
async fn a_guest_over_the_memory_limit_fails_alone() {
    for guest in test_guests() {
        let server = TestServer::with_flags(&guest, &["--max-memory", "16MiB"]).await;
        let reply = get(server.addr, "/alloc").await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(reply.body, "500: Internal Server Error");
        still_serves(&server).await;
    }
}

/// The memory failure is logged as what it is.
#[tokio::test(flavor = "multi_thread")]
async fn the_memory_limit_is_named_in_the_log() {
    for guest in test_guests() {
        let mut serve =
            ServeProcess::start(&["--max-memory", "8MiB", guest.to_str().unwrap()]).await;
        assert_eq!(get(serve.addr, "/alloc").await.status, 500);
        serve
            .wait_for_log(&["guest failed", "memory limit of 8388608 bytes", "/alloc"])
            .await;
    }
}

/// Past `--max-concurrent-requests`, requests wait up to `--queue-timeout`
/// for a slot, then get 503 with `Retry-After`.
#[tokio::test(flavor = "multi_thread")]
async fn requests_past_the_concurrency_limit_wait_then_get_503() {
    for guest in test_guests() {
        let server = TestServer::with_flags(
            &guest,
            &["--max-concurrent-requests", "2", "--queue-timeout", "200ms"],
        )
        .await;
        let addr = server.addr;
        let busy: Vec<_> = (0..2)
            .map(|_| tokio::spawn(async move { get(addr, "/sleep/1500").await }))
            .collect();
        server.wait_in_flight(2).await;
        let reply = get(addr, "/turned-away").await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reply.body, "503: Service Unavailable");
        assert_eq!(reply.header("retry-after"), "1");
        for task in busy {
            assert_eq!(task.await.unwrap().body, "slept 1500ms");
        }
        still_serves(&server).await;
    }
}

/// With `--max-requests-per-client`, a client address at its limit waits for
/// one of its own requests to finish; with as many waiting already, more get
/// 429 with `Retry-After` at once. Its HTTP/1.1 connections and HTTP/2
/// streams count together, and another address is served meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_past_its_limit_waits_then_gets_429_while_others_are_served() {
    let busy_client: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let other_client: std::net::IpAddr = "127.0.0.3".parse().unwrap();
    for guest in test_guests() {
        let server = TestServer::with_flags(
            &guest,
            &[
                "--max-requests-per-client",
                "1",
                "--queue-timeout",
                "20s",
                "--admin-addr",
                "127.0.0.1:0",
            ],
        )
        .await;
        let addr = server.addr;
        // One request in flight on an HTTP/1.1 connection, one waiting on
        // an HTTP/2 one.
        let started = std::time::Instant::now();
        let first = tokio::spawn(async move { get_from(busy_client, addr, "/sleep/1500").await });
        server.wait_guest_tasks(1).await;
        let (mut h2, _connection) = http2_over(connect_from(busy_client, addr).await).await;
        let waiting = {
            let request = h2.send_request(build(Method::GET, addr, "/waited"));
            tokio::spawn(async move { read(request.await.unwrap()).await })
        };
        server.wait_waiting(1).await;

        // Well before the queue timeout: refused without waiting.
        let refused = get_from(busy_client, addr, "/third").await;
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.body, "429: Too Many Requests");
        assert_eq!(refused.header("retry-after"), "1");
        assert!(started.elapsed() < Duration::from_secs(15));

        let other = get_from(other_client, addr, "/other").await;
        assert_eq!(other.body, "Howdy, other!");

        assert_eq!(first.await.unwrap().body, "slept 1500ms");
        let waited = waiting.await.unwrap();
        assert_eq!(waited.body, "Howdy, waited!");
        // It could only be served once the first had finished.
        assert!(started.elapsed() >= Duration::from_millis(1500));
        let metrics = get(server.admin.unwrap(), "/metrics").await.body;
        assert_eq!(sample(&metrics, "wasi_serve_client_limited_total"), 1.0);
        assert_eq!(sample(&metrics, "wasi_serve_rejected_total"), 0.0);
    }
}

/// A waiting request that sees none of its client's requests finish within
/// `--queue-timeout` gets 429.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_waiting_past_the_queue_timeout_gets_429() {
    let client: std::net::IpAddr = "127.0.0.4".parse().unwrap();
    let server = TestServer::with_flags(
        &test_guest(),
        &["--max-requests-per-client", "1", "--queue-timeout", "200ms"],
    )
    .await;
    let addr = server.addr;
    let first = tokio::spawn(async move { get_from(client, addr, "/sleep/1500").await });
    server.wait_guest_tasks(1).await;
    let asked = std::time::Instant::now();
    let refused = get_from(client, addr, "/too-late").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(asked.elapsed() >= Duration::from_millis(150), "it waited");
    assert_eq!(first.await.unwrap().body, "slept 1500ms");
}

/// A client at `--max-requests-per-client 1` that sends one request after
/// another on a keep-alive connection is never refused, though a WASI 0.3
/// guest finishes a moment after its client has the whole response, often
/// after the next request has arrived; nor is a count ever left behind.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_at_its_limit_sending_one_request_after_another_is_served() {
    let client: std::net::IpAddr = "127.0.0.5".parse().unwrap();
    for greeter in crate::support::greeters() {
        let server = TestServer::with_flags(&greeter, &["--max-requests-per-client", "1"]).await;
        let addr = server.addr;
        let mut sender = crate::support::http1_over(connect_from(client, addr).await).await;
        for i in 0..300 {
            let path = format!("/n{i}");
            sender.ready().await.expect("the connection is kept alive");
            let response = sender
                .send_request(build(Method::GET, addr, &path))
                .await
                .unwrap();
            let reply = read(response).await;
            assert_eq!(reply.status, StatusCode::OK, "request {i}: {}", reply.body);
            assert_eq!(reply.body, format!("Hello, n{i}!"));
        }
    }
}

/// Past `--max-connections`, a new connection is not taken: it waits in the
/// listen backlog until one of those open closes, and is then served. The
/// gauge counts the connections open.
#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_limit_wait_until_one_closes() {
    let server = TestServer::with_flags(
        &test_guest(),
        &["--max-connections", "2", "--admin-addr", "127.0.0.1:0"],
    )
    .await;
    let addr = server.addr;
    let mut first = crate::support::http1(addr).await;
    let mut second = crate::support::http1(addr).await;
    for (sender, path) in [(&mut first, "/one"), (&mut second, "/two")] {
        let response = sender
            .send_request(build(Method::GET, addr, path))
            .await
            .unwrap();
        assert_eq!(read(response).await.status, StatusCode::OK);
    }
    let third = tokio::spawn(async move { get(addr, "/third").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!third.is_finished(), "a third connection was served");
    let metrics = get(server.admin.unwrap(), "/metrics").await.body;
    assert_eq!(sample(&metrics, "wasi_serve_connections"), 2.0);

    // The client closes its first connection: the third takes its place.
    drop(first);
    let reply = third.await.unwrap();
    assert_eq!(reply.body, "Howdy, third!");
    drop(second);
}

/// A request that finds every slot busy waits for one (backpressure) and is
/// served when it frees up within the queue timeout.
#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_request_is_served_when_a_slot_frees() {
    for guest in test_guests() {
        let server = TestServer::with_flags(
            &guest,
            &["--max-concurrent-requests", "1", "--queue-timeout", "10s"],
        )
        .await;
        let addr = server.addr;
        let first = tokio::spawn(async move { get(addr, "/sleep/500").await });
        server.wait_in_flight(1).await;
        let asked = std::time::Instant::now();
        let second = get(addr, "/waited").await;
        assert_eq!(second.status, StatusCode::OK);
        assert_eq!(second.body, "Howdy, waited!");
        // The only slot was held by a guest sleeping until ~500 ms: the second
        // request can only have been served after waiting for it.
        assert!(
            asked.elapsed() >= Duration::from_millis(300),
            "the second request waited for the first"
        );
        assert_eq!(first.await.unwrap().body, "slept 500ms");
    }
}

async fn post(
    server: &TestServer,
    body: impl hyper::body::Body<Data = Bytes, Error = std::convert::Infallible> + Send + 'static,
) -> (StatusCode, String) {
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::builder()
        .method(Method::POST)
        .uri("/echo")
        .header("host", "test")
        .body(body)
        .unwrap();
    let response = tokio::time::timeout(STEP, sender.send_request(request))
        .await
        .expect("in time")
        .expect("response");
    let status = response.status();
    let body = response.into_body().collect().await.map(|b| b.to_bytes());
    (
        status,
        String::from_utf8_lossy(&body.unwrap_or_default()).into_owned(),
    )
}

/// Bodies over `--max-request-body` get 413, whether their length is
/// declared up front or only found out while reading (chunked).
#[tokio::test(flavor = "multi_thread")]
async fn request_bodies_over_the_limit_get_413() {
    for guest in test_guests() {
        let server = TestServer::with_flags(&guest, &["--max-request-body", "1KiB"]).await;

        let (status, body) = post(&server, Full::new(Bytes::from(vec![b'a'; 500]))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            "a".repeat(500),
            "a body under the limit reaches the guest"
        );

        // Declared too large: refused from the head alone, before any body byte
        // is read (the client waits for an answer, as with `Expect: 100-continue`).
        let raw = exchange(
            &server,
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n",
        )
        .await;
        assert!(
            raw.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
            "{raw}"
        );
        assert!(raw.ends_with("413: Payload Too Large"), "{raw}");

        // Chunked, so no length up front: the host counts while the guest reads
        // and stops reading past the limit.
        let mut request =
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..4 {
            request.extend_from_slice(format!("12c\r\n{}\r\n", "b".repeat(300)).as_bytes());
        }
        let raw = exchange(&server, &request).await;
        assert!(
            raw.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
            "{raw}"
        );

        still_serves(&server).await;
    }
}

/// Writes `request` on a new connection and reads until the server closes it.
async fn exchange(server: &TestServer, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(STEP, stream.read_to_end(&mut raw)).await;
    String::from_utf8_lossy(&raw).into_owned()
}

/// A client that sends its headers too slowly, nothing at all, or only part
/// of the HTTP/2 preface is disconnected after `--header-read-timeout`.
#[tokio::test(flavor = "multi_thread")]
async fn slow_and_silent_clients_are_disconnected() {
    let server = TestServer::with_flags(&test_guest(), &["--header-read-timeout", "500ms"]).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let connected = std::time::Instant::now();
    for stream in [&mut silent, &mut slow] {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(STEP, stream.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the server closed the connection");
        assert!(!String::from_utf8_lossy(&buf).contains("Howdy"));
    }
    // The flag, not the 10 s default, decided when: closed well before the
    // default would have fired.
    let waited = connected.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "disconnected after {waited:?}"
    );
    still_serves(&server).await;
}

/// An HTTP/2 connection with no request open for `--header-read-timeout`
/// is closed, though its client answers the server's pings: one that never
/// sends a request, and one whose last request has ended. A request that
/// takes longer than the timeout, or whose body the client reads slowly,
/// keeps its connection open: a request after it is still served there.
#[tokio::test(flavor = "multi_thread")]
async fn idle_http2_connections_are_closed() {
    for guest in test_guests() {
        let server = TestServer::with_flags(&guest, &["--header-read-timeout", "500ms"]).await;
        let addr = server.addr;
        let request = |path: &str| crate::support::build(Method::GET, addr, path);

        let (_silent, silent_connection) = http2_connection(addr).await;
        let connected = std::time::Instant::now();
        let (mut sender, connection) = http2_connection(addr).await;

        // Longer than the timeout in the guest.
        let response = sender.send_request(request("/sleep/1200")).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"slept 1200ms", "{guest:?}");

        // Longer than the timeout in the body: more than the client's
        // flow-control window, so the rest waits until it reads again.
        let size = 8 << 20;
        let response = sender
            .send_request(request(&format!("/stream/{size}")))
            .await
            .unwrap();
        let mut body = response.into_body();
        let mut read = body
            .frame()
            .await
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap()
            .len();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        while let Some(frame) = body.frame().await {
            read += frame.unwrap().into_data().map_or(0, |data| data.len());
        }
        assert_eq!(read, size, "{guest:?}");

        // Neither was taken for idleness: the connection still takes requests.
        sender.ready().await.expect("the connection is still open");
        let response = sender.send_request(request("/again")).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"Howdy, again!", "{guest:?}");
        let answered = std::time::Instant::now();

        // Then both connections end: GOAWAY, and the server closes them.
        for (connection, since) in [(silent_connection, connected), (connection, answered)] {
            tokio::time::timeout(STEP, connection)
                .await
                .expect("an idle connection is closed")
                .unwrap()
                .expect("closed cleanly");
            let idle = since.elapsed();
            assert!(
                idle >= Duration::from_millis(450),
                "closed after {idle:?} idle"
            );
        }
        still_serves(&server).await;
    }
}

/// A request head over `--max-header-size` gets 431; a far larger one has
/// its connection closed without being read to the end.
#[tokio::test(flavor = "multi_thread")]
async fn huge_headers_get_431_or_a_closed_connection() {
    for guest in test_guests() {
        let server = TestServer::with_flags(&guest, &["--max-header-size", "16KiB"]).await;
        for (kib, expect_431) in [(17, true), (100, false)] {
            let mut stream = TcpStream::connect(server.addr).await.unwrap();
            let big = "x".repeat(kib * 1024);
            let request = format!("GET /big HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n");
            let _ = stream.write_all(request.as_bytes()).await;
            let mut buf = Vec::new();
            let read = tokio::time::timeout(STEP, stream.read_to_end(&mut buf)).await;
            assert!(read.is_ok(), "{kib} KiB: the connection ends");
            let text = String::from_utf8_lossy(&buf);
            if expect_431 {
                assert!(
                    text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
                    "{text}"
                );
                assert!(
                    text.ends_with("431: Request Header Fields Too Large"),
                    "{text}"
                );
            } else {
                assert!(!text.contains("Howdy"), "{kib} KiB: not served: {text}");
            }
        }
        still_serves(&server).await;
    }
}

/// A guest that traps after sending headers and part of the body: the client
/// sees the response cut off, not a complete-looking short body.
#[tokio::test(flavor = "multi_thread")]
async fn a_trap_after_the_headers_cuts_the_response_off() {
    for guest in test_guests() {
        let server = TestServer::start(&guest).await;
        for _ in 0..3 {
            assert_cut_off(server.addr, "/trap-after-headers").await;
        }
        still_serves(&server).await;
    }
}

/// GETs `path` and checks the client sees a failure, never a complete
/// response: hyper may or may not have flushed the head before the guest
/// failed, but a body that arrives must end in an error.
async fn assert_cut_off(addr: std::net::SocketAddr, path: &str) {
    let mut sender = crate::support::http1(addr).await;
    let request = crate::support::build(Method::GET, addr, path);
    if let Ok(response) = tokio::time::timeout(STEP, sender.send_request(request))
        .await
        .expect("in time")
    {
        assert_eq!(response.status(), StatusCode::OK);
        let body = tokio::time::timeout(STEP, response.into_body().collect())
            .await
            .expect("in time");
        assert!(body.is_err(), "the body must end in an error, got {body:?}");
    }
}

/// A guest that returns with its response body neither finished nor dropped
/// has sent an incomplete response: the client sees it cut off, never a
/// clean end, and the failure is logged.
#[tokio::test(flavor = "multi_thread")]
async fn a_body_left_unfinished_cuts_the_response_off() {
    let mut serve = ServeProcess::start(&[test_guest().to_str().unwrap()]).await;
    assert_cut_off(serve.addr, "/unfinished").await;
    serve
        .wait_for_log(&[
            "guest failed",
            "without finishing its response body",
            "/unfinished",
        ])
        .await;
    assert_eq!(get(serve.addr, "/World").await.body, "Howdy, World!");
}

/// A guest streaming a large body: every byte arrives.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_streamed_body_arrives_whole() {
    for guest in test_guests() {
        let server = TestServer::start(&guest).await;
        let reply = get(server.addr, "/stream/10000000").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("content-length"), "10000000");
        assert_eq!(reply.body.len(), 10_000_000);
        assert!(reply.body.bytes().all(|b| b == b'x'));
    }
}

/// Guest stdout and stderr go to the log, tagged with the request; past the
/// per-request budget the rest is dropped, with one line saying so.
#[tokio::test(flavor = "multi_thread")]
async fn guest_output_is_logged_per_request_and_bounded() {
    for guest in test_guests() {
        let mut serve = ServeProcess::start(&[guest.to_str().unwrap()]).await;
        assert_eq!(get(serve.addr, "/print/0").await.body, "printed");
        serve
            .wait_for_log(&[
                "wasi_serve::guest",
                "stdout",
                "path=\"/print/0\"",
                "hello from",
            ])
            .await;
        serve
            .wait_for_log(&[
                "wasi_serve::guest",
                "stderr",
                "path=\"/print/0\"",
                "and to stderr",
            ])
            .await;

        assert_eq!(get(serve.addr, "/print/5000").await.body, "printed");
        let mut filler_lines = 0;
        loop {
            let line = serve.wait_for_log(&["/print/5000"]).await;
            if line.contains("dropped") {
                break;
            }
            filler_lines += usize::from(line.contains("....."));
        }
        assert!(filler_lines > 100, "output up to the budget is logged");
        assert!(
            filler_lines <= 64 * 1024 / 100,
            "no more than the budget: {filler_lines}"
        );
    }
}

/// Every line a guest prints is logged, empty ones included, in order and
/// tagged with the request.
#[tokio::test(flavor = "multi_thread")]
async fn empty_output_lines_are_kept() {
    for guest in test_guests() {
        let mut serve =
            ServeProcess::start(&["--log-format", "json", guest.to_str().unwrap()]).await;
        assert_eq!(get(serve.addr, "/print-lines").await.body, "printed");
        let mut messages = Vec::new();
        while messages.len() < 3 {
            let line = serve
                .wait_for_log(&["wasi_serve::guest", "\"path\":\"/print-lines\""])
                .await;
            let message = line
                .split("\"message\":\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("a message in {line}"))
                .to_owned();
            messages.push(message);
        }
        assert_eq!(messages, ["before", "", "after"], "{}", guest.display());
    }
}

/// A client that goes away before its answer, by closing its HTTP/1
/// connection or resetting its HTTP/2 stream, stops its guest: the one
/// instance slot is free for the next request at once, not at the request
/// timeout; no guest task is left; the request is logged and counted as 499.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_goes_away_frees_its_slot() {
    for guest in test_guests() {
        let mut serve = ServeProcess::start(&[
            "--admin-addr",
            "127.0.0.1:0",
            "--max-concurrent-requests",
            "1",
            "--queue-timeout",
            "1s",
            "--request-timeout",
            "60s",
            guest.to_str().unwrap(),
        ])
        .await;
        let admin = serve.admin.expect("an admin listener");

        // HTTP/1: the connection closes with the guest asleep.
        let mut stream = TcpStream::connect(serve.addr).await.unwrap();
        stream
            .write_all(b"GET /sleep/60000 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        serve.wait_in_flight(1.0).await;
        drop(stream);
        let reply = get(serve.addr, "/after-close").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", guest.display());
        serve
            .wait_for_log(&["path=\"/sleep/60000\"", "status=499"])
            .await;

        // HTTP/2: the stream is reset (hyper's client does so when the
        // response's future is dropped), the connection stays.
        let mut h2 = crate::support::http2(serve.addr).await;
        let pending = tokio::spawn(h2.send_request(crate::support::build(
            Method::GET,
            serve.addr,
            "/sleep/60001",
        )));
        serve.wait_in_flight(1.0).await;
        pending.abort();
        let reply = get(serve.addr, "/after-reset").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", guest.display());
        serve
            .wait_for_log(&["path=\"/sleep/60001\"", "status=499"])
            .await;

        // The line is written as the request's future is dropped; its gauge
        // falls a moment later, and an aborted guest task ends when the
        // runtime next gets to it: wait for both, boundedly.
        let deadline = std::time::Instant::now() + STEP;
        let page = loop {
            let page = get(admin, "/metrics").await.body;
            let settled = sample(&page, "wasi_serve_guest_tasks") == 0.0
                && sample(&page, "wasi_serve_requests_in_flight") == 0.0;
            if settled || std::time::Instant::now() > deadline {
                break page;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(sample(&page, "wasi_serve_guest_tasks"), 0.0);
        assert_eq!(sample(&page, "wasi_serve_requests_in_flight"), 0.0);
        assert_eq!(sample(&page, "wasi_serve_rejected_total"), 0.0);
        assert_eq!(
            sample(&page, "wasi_serve_requests_total{class=\"4xx\"}"),
            2.0
        );
    }
}

/// A client that stops taking a response is cut off at `--send-timeout`,
/// long before `--request-timeout`, and the instance writing the response
/// is freed: with one slot, the next request is served. Over HTTP/2 only
/// the stalled stream is reset, also when its body is a few bytes the
/// client never opened its window for; over HTTP/1 the connection is
/// closed.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_is_cut_off_at_the_send_timeout() {
    const LARGE: &str = "/stream/67108864";
    for guest in test_guests() {
        let mut serve = ServeProcess::start(&[
            "--admin-addr",
            "127.0.0.1:0",
            "--max-concurrent-requests",
            "1",
            "--request-timeout",
            "60s",
            "--send-timeout",
            "1s",
            guest.to_str().unwrap(),
        ])
        .await;
        let admin = serve.admin.expect("an admin listener");
        let guest_tasks =
            async || sample(&get(admin, "/metrics").await.body, "wasi_serve_guest_tasks");
        let settled = async || {
            let deadline = std::time::Instant::now() + STEP;
            while guest_tasks().await != 0.0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the guest was stopped"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };

        // HTTP/2: 64 MiB asked for, the body never read.
        let (mut h2, _connection) = http2_connection(serve.addr).await;
        let request = crate::support::build(Method::GET, serve.addr, LARGE);
        let stalled = h2.send_request(request).await.expect("a response head");
        assert_eq!(stalled.status(), StatusCode::OK);
        assert_eq!(guest_tasks().await, 1.0, "the guest still writes");
        serve
            .wait_for_log(&["--send-timeout", "HTTP/2 stream is reset"])
            .await;
        settled().await;
        let body = tokio::time::timeout(STEP, stalled.into_body().collect()).await;
        assert!(body.expect("ends").is_err(), "the stream is reset");
        // The slot is free, and the connection still serves.
        let request = crate::support::build(Method::GET, serve.addr, "/same-connection");
        let reply = crate::support::read(h2.send_request(request).await.unwrap()).await;
        assert_eq!(reply.body, "Howdy, same-connection!", "{}", guest.display());

        // HTTP/2 with a window of 0: not even a short body can be sent.
        let stream = TcpStream::connect(serve.addr).await.unwrap();
        let (mut shut, connection) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .initial_stream_window_size(0)
                .handshake::<_, http_body_util::Empty<Bytes>>(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("http2 handshake");
        tokio::spawn(connection);
        let request = crate::support::build(Method::GET, serve.addr, "/shut-window");
        let response = shut.send_request(request).await.expect("a response head");
        assert_eq!(response.status(), StatusCode::OK);
        let body = tokio::time::timeout(STEP, response.into_body().collect()).await;
        assert!(body.expect("ends").is_err(), "the stream is reset");

        // HTTP/1: the connection is closed part-way through the body.
        let mut http1 = TcpStream::connect(serve.addr).await.unwrap();
        let head = format!("GET {LARGE} HTTP/1.1\r\nHost: x\r\n\r\n");
        http1.write_all(head.as_bytes()).await.unwrap();
        serve
            .wait_for_log(&["--send-timeout", "its connection is closed"])
            .await;
        settled().await;
        let mut received = Vec::new();
        tokio::time::timeout(STEP, http1.read_to_end(&mut received))
            .await
            .expect("the connection closes")
            .ok();
        assert!(
            received.len() < 64 << 20,
            "cut off: {} bytes",
            received.len()
        );
        assert_eq!(get(serve.addr, "/after").await.status, StatusCode::OK);
    }
}

/// A response cut off after its head (here the guest traps halfway through
/// the body) is logged with the bytes sent and counted in
/// `wasi_serve_responses_cut_total`; whole responses, over both protocols,
/// with or without a declared length, empty or not, are not.
#[tokio::test(flavor = "multi_thread")]
async fn responses_cut_off_after_their_head_are_logged_and_counted() {
    for guest in test_guests() {
        let mut serve =
            ServeProcess::start(&["--admin-addr", "127.0.0.1:0", guest.to_str().unwrap()]).await;
        let admin = serve.admin.expect("an admin listener");
        let cut = async || {
            sample(
                &get(admin, "/metrics").await.body,
                "wasi_serve_responses_cut_total",
            )
        };

        for path in ["/World", "/stream/100000", "/stream/0", "/status/204"] {
            assert!(get(serve.addr, path).await.status.is_success(), "{path}");
        }
        let head = crate::support::send(serve.addr, Method::HEAD, "/World").await;
        assert_eq!(head.status, StatusCode::OK);
        let (mut h2, _connection) = http2_connection(serve.addr).await;
        let request = crate::support::build(Method::GET, serve.addr, "/stream/1000");
        let reply = crate::support::read(h2.send_request(request).await.unwrap()).await;
        assert_eq!(reply.body.len(), 1000);
        assert_eq!(cut().await, 0.0, "{}", guest.display());
        assert!(serve.logged("cut off").is_empty());

        let mut stream = TcpStream::connect(serve.addr).await.unwrap();
        stream
            .write_all(b"GET /trap-after-headers HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(STEP, stream.read_to_end(&mut raw)).await;
        let line = serve
            .wait_for_log(&["response cut off", "path=\"/trap-after-headers\""])
            .await;
        assert!(line.contains("sent="), "{line}");
        assert_eq!(cut().await, 1.0, "{}", guest.display());
    }
}

/// A client that reads slowly but steadily gets the whole response, however
/// short `--send-timeout` and `--header-read-timeout` are: its response is
/// not taken for a stalled one, nor, once the guest has written it all, its
/// connection for an idle one while the last bytes are still going out.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_but_steady_reader_gets_the_whole_response() {
    const SIZE: usize = 1 << 20;
    let server = TestServer::with_flags(
        &test_guest(),
        &["--send-timeout", "400ms", "--header-read-timeout", "300ms"],
    )
    .await;
    // A small receive buffer: the server can only send as fast as this
    // client reads, about 16 KiB every 50 ms, so 3.3 s in all.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut stream = socket.connect(server.addr).await.unwrap();
    let head = format!("GET /stream/{SIZE} HTTP/1.1\r\nHost: x\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buf = vec![0; 16 * 1024];
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let n = tokio::time::timeout(STEP, stream.read(&mut buf))
            .await
            .expect("data or the end in time")
            .expect("read");
        if n == 0 || std::time::Instant::now() > deadline {
            break;
        }
        received.extend_from_slice(&buf[..n]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = String::from_utf8_lossy(&received);
    let body_at = text.find("\r\n\r\n").expect("a response head") + 4;
    assert_eq!(received.len() - body_at, SIZE, "{}", &text[..body_at]);
}
