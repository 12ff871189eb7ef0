//! What a hostile guest cannot do to the host. `docs/security.md` lists each
//! claim with the test here that shows it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use http::{Method, StatusCode};

use crate::support::{STEP, ServeProcess, TestServer, build, get, http1, read, test_guests};

/// The request timeout these tests run the host with.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// How much the host's resident memory may grow while one hostile request
/// runs. Before the fix, a guest writing empty chunks to an HTTP/2 client
/// that had stopped reading grew it by hundreds of MiB a second.
const RSS_GROWTH_BOUND_KIB: u64 = 64 * 1024;

/// Every request runs in a fresh instance: a guest's global state never
/// carries over, not on one keep-alive connection, nor across concurrent
/// requests.
#[tokio::test(flavor = "multi_thread")]
async fn no_state_survives_from_one_request_to_the_next() {
    for guest in test_guests() {
        let server = TestServer::start(&guest).await;
        let mut sender = http1(server.addr).await;
        for _ in 0..10 {
            sender.ready().await.expect("connection still open");
            let response = sender
                .send_request(build(Method::GET, server.addr, "/count"))
                .await
                .expect("response");
            assert_eq!(read(response).await.body, "1");
        }
        let concurrent: Vec<_> = (0..10)
            .map(|_| tokio::spawn(get(server.addr, "/count")))
            .collect();
        for reply in concurrent {
            assert_eq!(reply.await.expect("request task").body, "1");
        }
    }
}

/// Guests see no environment variables but those `--env` gives: `KEY=VALUE`
/// as written, `KEY` alone with the host's own value.
#[tokio::test(flavor = "multi_thread")]
async fn guests_get_only_the_environment_variables_they_are_given() {
    for guest in test_guests() {
        let bare = TestServer::start(&guest).await;
        assert_eq!(get(bare.addr, "/env").await.body, "");
        let path = std::env::var("PATH").expect("PATH is set for the tests");
        let flags = [
            "--env",
            "GREETING=hi there, you",
            "--env",
            "PATH",
            "--env",
            "EMPTY=",
        ];
        let given = TestServer::with_flags(&guest, &flags).await;
        assert_eq!(
            get(given.addr, "/env").await.body,
            format!("GREETING=hi there, you\nPATH={path}\nEMPTY=\n")
        );
    }
}

/// A guest that creates host resources without end is stopped at the
/// per-instance cap (a 500, the reason logged), and the host serves on.
#[tokio::test(flavor = "multi_thread")]
async fn a_guest_hoarding_host_resources_is_stopped_at_the_cap() {
    for guest in test_guests() {
        let mut server = ServeProcess::start(&[guest.to_str().unwrap()]).await;
        let reply = get(server.addr, "/hoard").await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        server.wait_for_log(&["guest failed", "/hoard"]).await;
        assert_eq!(get(server.addr, "/after").await.body, "Howdy, after!");
    }
}

#[derive(Clone, Copy, Debug)]
enum Protocol {
    Http1,
    Http2,
}

/// Empty writes to the response body, forever, to a client that sent its
/// request and reads nothing: over HTTP/1.1 the host's memory stays within
/// the bound, the request ends at `--request-timeout`, and the response is
/// cut off, not ended as complete.
#[tokio::test(flavor = "multi_thread")]
async fn empty_body_writes_to_a_stalled_http1_client_stay_bounded() {
    empty_writes_stay_bounded(Protocol::Http1, "/empty-writes").await;
}

/// The same over HTTP/2, where each empty write was a DATA frame that needs
/// no flow-control window, queued in the host without limit
/// (GHSA-f8mm-ggr3-89wh).
#[tokio::test(flavor = "multi_thread")]
async fn empty_body_writes_to_a_stalled_http2_client_stay_bounded() {
    empty_writes_stay_bounded(Protocol::Http2, "/empty-writes").await;
}

/// Empty writes to stdout, forever, while an HTTP/1.1 client waits without
/// reading: memory stays bounded and the client gets 504 at the timeout.
#[tokio::test(flavor = "multi_thread")]
async fn empty_stdout_writes_stay_bounded_over_http1() {
    empty_writes_stay_bounded(Protocol::Http1, "/empty-prints").await;
}

/// The same with an HTTP/2 client.
#[tokio::test(flavor = "multi_thread")]
async fn empty_stdout_writes_stay_bounded_over_http2() {
    empty_writes_stay_bounded(Protocol::Http2, "/empty-prints").await;
}

async fn empty_writes_stay_bounded(protocol: Protocol, path: &str) {
    for guest in test_guests() {
        empty_writes_stay_bounded_in(&guest, protocol, path).await;
    }
}

async fn empty_writes_stay_bounded_in(guest: &std::path::Path, protocol: Protocol, path: &str) {
    let timeout = format!("{}s", REQUEST_TIMEOUT.as_secs());
    let mut server =
        ServeProcess::start(&[guest.to_str().unwrap(), "--request-timeout", &timeout]).await;
    let pid = server.child.id().expect("running");
    // One ordinary request first, so the baseline includes a used instance
    // slot.
    assert_eq!(get(server.addr, "/warm-up").await.body, "Howdy, warm-up!");
    let baseline = rss_kib(pid);

    let mut client = stalled_client(server.addr, protocol, path).await;
    let mut peak = baseline;
    let sampling = tokio::time::Instant::now();
    while sampling.elapsed() < REQUEST_TIMEOUT + Duration::from_millis(500) {
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let growth = peak.saturating_sub(baseline);
    assert!(
        growth < RSS_GROWTH_BOUND_KIB,
        "{} {protocol:?} {path}: RSS grew by {growth} KiB (from {baseline} KiB), bound {RSS_GROWTH_BOUND_KIB} KiB",
        guest.display()
    );

    server
        .wait_for_log(&["guest interrupted", path, "still running after"])
        .await;
    let raw = read_until_closed_or_reset(&mut client, protocol).await;
    match (protocol, path) {
        (Protocol::Http1, "/empty-writes") => {
            let text = String::from_utf8_lossy(&raw);
            assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
            assert!(text.contains("\r\n5\r\nstart\r\n"), "{text}");
            assert!(
                !text.ends_with("0\r\n\r\n"),
                "cut off, not complete: {text}"
            );
        }
        (Protocol::Http1, _) => {
            let text = String::from_utf8_lossy(&raw);
            assert!(
                text.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"),
                "{text}"
            );
        }
        (Protocol::Http2, "/empty-writes") => {
            let frames = h2_frames(&raw);
            assert!(
                frames.iter().any(|f| f.kind == HEADERS && f.stream == 1),
                "response head sent: {frames:?}"
            );
            assert!(
                frames.iter().any(|f| f.kind == RST_STREAM && f.stream == 1),
                "stream reset, not ended as complete: {frames:?}"
            );
            assert!(
                !frames.iter().any(|f| f.stream == 1 && f.end_stream()),
                "{frames:?}"
            );
        }
        (Protocol::Http2, _) => {
            let frames = h2_frames(&raw);
            assert!(
                frames.iter().any(|f| f.stream == 1 && f.end_stream()),
                "a whole response: {frames:?}"
            );
            server
                .wait_for_log(&["wasi_serve::access", path, "status=504"])
                .await;
        }
    }
}

/// The resident set of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in proc status")
}

/// A connection with a small receive buffer that sends `GET path` and then
/// reads nothing until the test says so.
async fn stalled_client(addr: SocketAddr, protocol: Protocol, path: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let mut stream = socket.connect(addr).await.expect("connect");
    let request = match protocol {
        Protocol::Http1 => format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes(),
        Protocol::Http2 => h2_request(path),
    };
    stream.write_all(&request).await.expect("send request");
    stream
}

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;

/// The HTTP/2 preface, an empty SETTINGS frame and one HEADERS frame for
/// `GET path` on stream 1, ending the stream. The header block uses HPACK's
/// static table and plain literals, no Huffman coding.
fn h2_request(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    for (index, value) in [(0x04, path), (0x01, "t")] {
        // Literal without indexing, name from the static table (:path,
        // :authority).
        block.push(index);
        block.push(u8::try_from(value.len()).expect("short value"));
        block.extend_from_slice(value.as_bytes());
    }
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // SETTINGS
    let len = u32::try_from(block.len())
        .expect("short block")
        .to_be_bytes();
    bytes.extend_from_slice(&[len[1], len[2], len[3], HEADERS, 0x5, 0, 0, 0, 1]);
    bytes.extend_from_slice(&block);
    bytes
}

/// One HTTP/2 frame's header.
#[derive(Debug)]
struct FrameHead {
    kind: u8,
    flags: u8,
    stream: u32,
}

impl FrameHead {
    fn end_stream(&self) -> bool {
        matches!(self.kind, 0x0 | HEADERS) && self.flags & 0x1 != 0
    }
}

/// The frames in `raw`, what the server sent after its preface.
fn h2_frames(raw: &[u8]) -> Vec<FrameHead> {
    let mut frames = Vec::new();
    let mut rest = raw;
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        frames.push(FrameHead {
            kind: rest[3],
            flags: rest[4],
            stream: u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff,
        });
        rest = &rest[(9 + len).min(rest.len())..];
    }
    frames
}

/// Reads what the server sent until it closes the connection or, over
/// HTTP/2, ends stream 1 one way or the other.
async fn read_until_closed_or_reset(client: &mut TcpStream, protocol: Protocol) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let read = tokio::time::timeout_at(deadline, client.read(&mut buf))
            .await
            .expect("the server answers in time");
        match read {
            Ok(0) | Err(_) => return raw,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
        if let Protocol::Http2 = protocol {
            let frames = h2_frames(&raw);
            let over = frames
                .iter()
                .any(|f| f.stream == 1 && (f.kind == RST_STREAM || f.end_stream()));
            if over {
                return raw;
            }
        }
    }
}
