//! What operators see: metrics after real traffic, health and readiness,
//! structured logs.

use http::StatusCode;

use crate::support::{ServeProcess, get, greeter_p3, test_guest, test_guests};

/// The value of the sample `name` (with its labels, as printed) in a
/// Prometheus text page.
pub fn sample(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{page}"))
        .trim()
        .parse()
        .expect("a number")
}

/// After known traffic (three 200s, a trap, a timeout, a 404 from the
/// admin's neighbour), `/metrics` counts each: requests by status class,
/// traps, timeouts, in-flight back at zero, latency and instantiation
/// histograms, and the component's hash and WASI release; for both
/// handler ABIs.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_real_traffic() {
    for (guest, wasi) in test_guests().into_iter().zip(["0.2", "0.3"]) {
        metrics_count_traffic_to(&guest, wasi).await;
    }
}

async fn metrics_count_traffic_to(guest: &std::path::Path, wasi: &str) {
    let mut serve = ServeProcess::start(&[
        "--admin-addr",
        "127.0.0.1:0",
        "--request-timeout",
        "300ms",
        guest.to_str().unwrap(),
    ])
    .await;
    let admin = serve.admin.expect("admin address printed");
    let loaded = serve
        .wait_for_log(&["compiled component", &format!("wasi=\"{wasi}\"")])
        .await;
    let hash = loaded
        .split("hash=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the hash is logged")
        .to_owned();
    for name in ["a", "b", "c"] {
        assert_eq!(
            get(serve.addr, &format!("/{name}")).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(get(serve.addr, "/trap").await.status, 500);
    assert_eq!(get(serve.addr, "/loop").await.status, 504);
    serve.wait_for_log(&["path=\"/loop\"", "status=504"]).await;

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
/// serving; other admin paths are 404.
#[tokio::test(flavor = "multi_thread")]
async fn health_and_readiness() {
    let serve = ServeProcess::start(&[
        "--admin-addr",
        "127.0.0.1:0",
        test_guest().to_str().unwrap(),
    ])
    .await;
    let admin = serve.admin.unwrap();
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

/// `/readyz` turns 503 while draining, so a load balancer stops sending.
#[tokio::test(flavor = "multi_thread")]
async fn readiness_turns_off_while_draining() {
    let mut serve = ServeProcess::start(&[
        "--admin-addr",
        "127.0.0.1:0",
        test_guest().to_str().unwrap(),
    ])
    .await;
    let (addr, admin) = (serve.addr, serve.admin.unwrap());
    let in_flight = tokio::spawn(async move { get(addr, "/sleep/1500").await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    serve.signal("TERM");
    serve.wait_for_log(&["stopped accepting"]).await;
    let ready = get(admin, "/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get(admin, "/healthz").await.status, StatusCode::OK);
    assert_eq!(in_flight.await.unwrap().body, "slept 1500ms");
}

/// A freshly started host exposes every metric family, each labelled series
/// included, at 0: dashboards and `rate()` alerts see 0, not "no data".
#[tokio::test(flavor = "multi_thread")]
async fn every_metric_exists_at_zero_from_the_start() {
    let serve = ServeProcess::start(&[
        "--admin-addr",
        "127.0.0.1:0",
        test_guest().to_str().unwrap(),
    ])
    .await;
    let page = get(serve.admin.expect("admin address printed"), "/metrics")
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
/// included, with its fields.
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
    for line in serve.drain_logs() {
        assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    }
}
