//! The log never holds a request up, and what it cannot write is counted.

use http::{Method, StatusCode};
use tokio::io::AsyncReadExt;

use crate::support::{STEP, ServeProcess, build, get, http1, read, sample, test_guest};

/// Requests sent while stderr is a pipe nobody reads.
const REQUESTS: usize = 3000;

/// With stderr blocked and a 16-line queue, every request is still answered
/// at once; the lines that did not fit are dropped and counted in
/// `/metrics`, and once stderr is read again, the access lines written plus
/// the lines counted as dropped account for every request.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_log_queue_drops_lines_counts_them_and_holds_no_request_up() {
    let guest = test_guest();
    let mut serve = ServeProcess::start_unread(&[
        "--admin-addr",
        "127.0.0.1:0",
        "--log-queue-lines",
        "16",
        guest.to_str().unwrap(),
    ])
    .await;
    let admin = serve.admin.expect("admin address printed");
    let mut sender = http1(serve.addr).await;
    for n in 0..REQUESTS {
        let request = build(Method::GET, serve.addr, &format!("/log-{n}"));
        let reply = tokio::time::timeout(STEP, async {
            sender.ready().await.expect("connection open");
            read(sender.send_request(request).await.expect("a response")).await
        })
        .await
        .unwrap_or_else(|_| panic!("request {n} held up"));
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, format!("Howdy, log-{n}!"));
    }

    let page = get(admin, "/metrics").await.body;
    let dropped = sample(&page, "wasi_serve_log_lines_dropped_total") as usize;
    assert!(dropped > 0, "a blocked stderr drops lines: {page}");

    serve.signal("TERM");
    let mut stderr = serve.stderr.take().expect("stderr left unread");
    let mut log = String::new();
    tokio::time::timeout(STEP, stderr.read_to_string(&mut log))
        .await
        .expect("stderr ends when the server exits")
        .expect("stderr is text");
    let written = log
        .lines()
        .filter(|line| line.contains("wasi_serve::access") && line.contains("path=\"/log-"))
        .count();
    assert!(written < REQUESTS, "some lines were dropped");
    assert!(
        written + dropped >= REQUESTS,
        "{written} access lines written and {dropped} lines dropped for {REQUESTS} requests"
    );
    assert_eq!(serve.exit_code().await, Some(0));
}

/// With stderr a pipe whose reader has gone, every request is still
/// answered, the lines stderr refuses are counted as dropped, and SIGTERM
/// still ends the process cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stderr_counts_the_lines_it_refuses_and_serving_goes_on() {
    const SENT: usize = 200;
    let guest = test_guest();
    let mut serve =
        ServeProcess::start_unread(&["--admin-addr", "127.0.0.1:0", guest.to_str().unwrap()]).await;
    let admin = serve.admin.expect("admin address printed");
    drop(serve.stderr.take());

    let mut sender = http1(serve.addr).await;
    for n in 0..SENT {
        let request = build(Method::GET, serve.addr, &format!("/gone-{n}"));
        sender.ready().await.expect("connection open");
        let reply = read(sender.send_request(request).await.expect("a response")).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, format!("Howdy, gone-{n}!"));
    }

    // The writer thread takes the lines after their requests are answered.
    let deadline = tokio::time::Instant::now() + STEP;
    let dropped = loop {
        let page = get(admin, "/metrics").await.body;
        let dropped = sample(&page, "wasi_serve_log_lines_dropped_total") as usize;
        if dropped >= SENT || tokio::time::Instant::now() > deadline {
            break dropped;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(
        dropped >= SENT,
        "{dropped} lines counted as dropped for {SENT} access lines stderr refused"
    );

    serve.signal("TERM");
    assert_eq!(serve.exit_code().await, Some(0));
}
