//! What operators see: metrics after real traffic, health and readiness,
//! structured logs.

use http::StatusCode;

use crate::support::{
    STEP, ServeProcess, TestServer, get, greeter_p3, sample, test_guest, test_guests,
};

/// After known traffic (three 200s, a trap, a timeout, a 404 from the
/// admin's neighbour), `/metrics` counts each: requests by status class,
/// traps, timeouts, in-flight back at zero, latency and instantiation
/// histograms, and the component's hash and WASI release; for both
/// handler ABIs. In-process.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_real_traffic() {
    for (guest, wasi) in test_guests().into_iter().zip(["0.2", "0.3"]) {
        metrics_count_traffic_to(&guest, wasi).await;
    }
}

async fn metrics_count_traffic_to(guest: &std::path::Path, wasi: &str) {
    let serve = TestServer::with_flags(
        guest,
        &["--admin-addr", "127.0.0.1:0", "--request-timeout", "300ms"],
    )
    .await;
    let admin = serve.admin.expect("an admin listener");
    let hash = wasi_serve::runtime::content_hash(&std::fs::read(guest).unwrap());
    for name in ["a", "b", "c"] {
        assert_eq!(
            get(serve.addr, &format!("/{name}")).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(get(serve.addr, "/trap").await.status, 500);
    assert_eq!(get(serve.addr, "/loop").await.status, 504);

    let page = get(admin, "/metrics").await;
    assert_eq!(page.status, StatusCode::OK);
    let page = page.body;
    assert_eq!(
        sample(&page, "wasi_serve_requests_total{class=\"2xx\"}"),
        3.0
    );
    assert_eq!(
        sample(&page, "wasi_serve_requests_total{class=\"5xx\"}"),
        2.0
    );
    assert_eq!(sample(&page, "wasi_serve_guest_traps_total"), 1.0);
    assert_eq!(sample(&page, "wasi_serve_timeouts_total"), 1.0);
    assert_eq!(sample(&page, "wasi_serve_rejected_total"), 0.0);
    assert_eq!(sample(&page, "wasi_serve_requests_in_flight"), 0.0);
    assert_eq!(
        sample(&page, "wasi_serve_request_duration_seconds_count"),
        5.0
    );
    assert_eq!(
        sample(&page, "wasi_serve_instantiation_duration_seconds_count"),
        5.0
    );
    let info = format!("wasi_serve_component_info{{hash=\"{hash}\",wasi=\"{wasi}\"}}");
    assert!(page.contains(&format!("{info} 1")), "{info} in:\n{page}");
}

/// `/healthz` answers while the process lives; `/readyz` is 200 while
/// serving; other admin paths are 404. In-process.
#[tokio::test(flavor = "multi_thread")]
async fn health_and_readiness() {
    let server = TestServer::with_flags(&test_guest(), &["--admin-addr", "127.0.0.1:0"]).await;
    let admin = server.admin.expect("an admin listener");
    let health = get(admin, "/healthz").await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::OK, "ok\n")
    );
    let ready = get(admin, "/readyz").await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (StatusCode::OK, "ready\n")
    );
    assert_eq!(get(admin, "/nope").await.status, StatusCode::NOT_FOUND);
}

/// `/readyz` turns 503 while draining, so a load balancer stops sending;
/// the request in flight still finishes. In-process.
#[tokio::test(flavor = "multi_thread")]
async fn readiness_turns_off_while_draining() {
    let server = TestServer::with_flags(&test_guest(), &["--admin-addr", "127.0.0.1:0"]).await;
    let (addr, admin) = (server.addr, server.admin.expect("an admin listener"));
    let in_flight = tokio::spawn(async move { get(addr, "/sleep/1500").await });
    // Wait until the request is being served before stopping.
    let deadline = tokio::time::Instant::now() + STEP;
    while sample(
        &get(admin, "/metrics").await.body,
        "wasi_serve_requests_in_flight",
    ) < 1.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let stopping = tokio::spawn(server.stop());
    while get(admin, "/readyz").await.status != StatusCode::SERVICE_UNAVAILABLE {
        assert!(tokio::time::Instant::now() < deadline, "/readyz stayed 200");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(get(admin, "/healthz").await.status, StatusCode::OK);
    assert_eq!(in_flight.await.unwrap().body, "slept 1500ms");
    stopping.await.expect("stopped");
}

/// `wasi_serve_guest_tasks` counts a guest that waits (here on a timer) on
/// a task of its own while it runs, and is back at 0 once it is done; after
/// a burst of WASI 0.3 requests, whose guests send their bodies from tasks
/// of their own, it is back at 0 too. In-process.
#[tokio::test(flavor = "multi_thread")]
async fn guest_tasks_are_counted_while_they_run() {
    let server = TestServer::with_flags(&test_guest(), &["--admin-addr", "127.0.0.1:0"]).await;
    let (addr, admin) = (server.addr, server.admin.expect("an admin listener"));
    let sleeping = tokio::spawn(async move { get(addr, "/sleep/1000").await });
    wait_for_guest_tasks(admin, |tasks| tasks == 1.0).await;
    assert_eq!(sleeping.await.unwrap().body, "slept 1000ms");
    wait_for_guest_tasks(admin, |tasks| tasks == 0.0).await;

    let server = TestServer::with_flags(&greeter_p3(), &["--admin-addr", "127.0.0.1:0"]).await;
    let (addr, admin) = (server.addr, server.admin.expect("an admin listener"));
    let burst: Vec<_> = (0..16)
        .map(|i| tokio::spawn(async move { get(addr, &format!("/n{i}")).await }))
        .collect();
    for (i, reply) in burst.into_iter().enumerate() {
        assert_eq!(reply.await.unwrap().body, format!("Hello, n{i}!"));
    }
    wait_for_guest_tasks(admin, |tasks| tasks == 0.0).await;
}

/// Polls `/metrics` on `admin` until `wasi_serve_guest_tasks` satisfies
/// `done`, failing after [`STEP`].
async fn wait_for_guest_tasks(admin: std::net::SocketAddr, done: impl Fn(f64) -> bool) {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let tasks = sample(&get(admin, "/metrics").await.body, "wasi_serve_guest_tasks");
        if done(tasks) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "wasi_serve_guest_tasks stayed at {tasks}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A freshly started host exposes every metric family, each labelled series
/// included, at 0: dashboards and `rate()` alerts see 0, not "no data".
#[tokio::test(flavor = "multi_thread")]
async fn every_metric_exists_at_zero_from_the_start() {
    let server = TestServer::with_flags(&test_guest(), &["--admin-addr", "127.0.0.1:0"]).await;
    let page = get(server.admin.expect("an admin listener"), "/metrics")
        .await
        .body;
    for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
        let name = format!("wasi_serve_requests_total{{class=\"{class}\"}}");
        assert_eq!(sample(&page, &name), 0.0, "{name}");
    }
    for outcome in ["ok", "rejected"] {
        let name = format!("wasi_serve_reloads_total{{outcome=\"{outcome}\"}}");
        assert_eq!(sample(&page, &name), 0.0, "{name}");
    }
    for name in [
        "wasi_serve_guest_traps_total",
        "wasi_serve_timeouts_total",
        "wasi_serve_rejected_total",
        "wasi_serve_log_lines_dropped_total",
        "wasi_serve_requests_in_flight",
        "wasi_serve_guest_tasks",
        "wasi_serve_request_duration_seconds_count",
        "wasi_serve_instantiation_duration_seconds_count",
    ] {
        assert_eq!(sample(&page, name), 0.0, "{name}");
    }
}

/// The first line on stderr names the URL served, followed by whitespace,
/// as test harnesses such as the WASI test suite's runner read it; in text
/// and in JSON logs, which stay one object per line.
#[tokio::test(flavor = "multi_thread")]
async fn the_first_stderr_line_names_the_url() {
    for format in ["text", "json"] {
        let mut serve =
            ServeProcess::start(&["--log-format", format, greeter_p3().to_str().unwrap()]).await;
        let first = serve.wait_for_log(&[]).await;
        let url = format!("http://{}", serve.addr);
        let start = first.find("http://").expect("a URL in the first line");
        assert_eq!(
            first[start..].split_whitespace().next(),
            Some(url.as_str()),
            "{first}"
        );
        assert!(first.contains("WASI 0.3"), "{first}");
        if format == "json" {
            assert_eq!(get(serve.addr, "/json").await.status, StatusCode::OK);
            serve.wait_for_log(&["wasi_serve::access"]).await;
            assert!(first.starts_with('{') && first.ends_with('}'), "{first}");
            for line in serve.drain_logs() {
                assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
            }
        }
    }
}

/// `--log-format json`: every log line is one JSON object, the access line
/// included, with its fields; the time taken is a number of milliseconds.
#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_one_object_per_line() {
    let mut serve =
        ServeProcess::start(&["--log-format", "json", test_guest().to_str().unwrap()]).await;
    assert_eq!(get(serve.addr, "/json").await.status, StatusCode::OK);
    let access = serve.wait_for_log(&["wasi_serve::access"]).await;
    assert!(access.starts_with('{') && access.ends_with('}'), "{access}");
    for field in [
        "\"method\":\"GET\"",
        "\"path\":\"/json\"",
        "\"status\":200",
        "\"level\":\"INFO\"",
    ] {
        assert!(access.contains(field), "{field} in {access}");
    }
    let (_, elapsed) = access
        .split_once("\"elapsed_ms\":")
        .unwrap_or_else(|| panic!("elapsed_ms in {access}"));
    let number: String = elapsed
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '-')
        .collect();
    let ms: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("elapsed_ms is a number in {access}"));
    assert!(ms > 0.0 && ms < 20_000.0, "{access}");
    for line in serve.drain_logs() {
        assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    }
}

/// The admin listener gives a client `--header-read-timeout` to send a
/// request head, as the main one does: a connection that stops halfway is
/// closed, so idle clients cannot use up the process's file descriptors.
#[tokio::test(flavor = "multi_thread")]
async fn the_admin_listener_closes_connections_that_stall() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let serve = TestServer::with_flags(
        &test_guest(),
        &[
            "--admin-addr",
            "127.0.0.1:0",
            "--header-read-timeout",
            "300ms",
        ],
    )
    .await;
    let admin = serve.admin.expect("an admin listener");
    for sent in [&b"GET /metrics HTTP/1.1\r\nHost: x\r\n"[..], b""] {
        let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
        stream.write_all(sent).await.unwrap();
        // Left open, the read would wait out the step and fail.
        let mut rest = Vec::new();
        tokio::time::timeout(STEP, stream.read_to_end(&mut rest))
            .await
            .expect("the admin listener closes the connection")
            .expect("read");
    }
    // It still answers a client that does send its request.
    assert_eq!(get(admin, "/healthz").await.body, "ok\n");
}
