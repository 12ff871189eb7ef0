//! Test harness: the real host, in-process on `127.0.0.1:0` or as the built
//! binary, the real guest components, and plain HTTP clients over loopback.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use wasi_serve::Config;
use wasi_serve::app::{App, Listeners};

/// The `wasi-serve` binary cargo built for these tests.
pub const SERVE_BIN: &str = env!("CARGO_BIN_EXE_wasi-serve");

/// How long any single step of a test may take before it is a failure.
pub const STEP: Duration = Duration::from_secs(20);

/// The greeter component, as `make build` leaves it.
pub fn greeter() -> PathBuf {
    guest("greeter.wasm")
}

/// The greeter built for WASI 0.3.
pub fn greeter_p3() -> PathBuf {
    guest("greeter_p3.wasm")
}

/// The greeter for each handler ABI, WASI 0.2 then 0.3: both answer alike.
pub fn greeters() -> [PathBuf; 2] {
    [greeter(), greeter_p3()]
}

/// The test guest (answers `Howdy`, misbehaves on request).
pub fn test_guest() -> PathBuf {
    guest("test_guest.wasm")
}

/// The test guest built for WASI 0.3: the same paths, the same answers.
pub fn test_guest_p3() -> PathBuf {
    guest("test_guest_p3.wasm")
}

/// The test guest for each handler ABI, WASI 0.2 then 0.3: a promise the
/// host makes holds for both.
pub fn test_guests() -> [PathBuf; 2] {
    [test_guest(), test_guest_p3()]
}

/// The example guest `visits` (config, directories, key-value state).
pub fn visits() -> PathBuf {
    guest("visits.wasm")
}

/// `method path` with `body`, on a connection of its own, the path sent as
/// written (`..` included); the status and the body.
pub async fn raw(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    let reply = tokio::time::timeout(STEP, exchange)
        .await
        .expect("answered in time")
        .expect("answered");
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = reply.split_once("\r\n\r\n").expect("a whole response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    )
}

/// The data of a chunked body.
fn dechunk(mut body: &str) -> String {
    let mut data = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        data.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    data
}

fn guest(file: &str) -> PathBuf {
    let target = option_env!("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("wasm32-wasip2/release").join(file);
    assert!(
        path.exists(),
        "{} is missing: build the guests first (`make build`)",
        path.display()
    );
    path
}

/// A host serving one component in-process; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The admin listener's address, when started with `--admin-addr`.
    pub admin: Option<SocketAddr>,
    app: Option<App>,
}

impl TestServer {
    /// Serves `component` with room for 64 concurrent requests.
    pub async fn start(component: &Path) -> Self {
        Self::with_flags(component, &["--max-concurrent-requests", "64"]).await
    }

    /// Serves `component` configured by command-line `flags`, as a user
    /// would run it: the same [`App`] the binary runs, on port 0 (the admin
    /// listener too, with `--admin-addr`).
    pub async fn with_flags(component: &Path, flags: &[&str]) -> Self {
        Self::try_with_flags(component, flags)
            .await
            .expect("the server starts")
    }

    /// As [`Self::with_flags`], or why the server would not start.
    pub async fn try_with_flags(component: &Path, flags: &[&str]) -> anyhow::Result<Self> {
        let mut args = vec![
            "wasi-serve".to_owned(),
            component.to_str().unwrap().to_owned(),
        ];
        args.extend(flags.iter().map(|flag| flag.to_string()));
        args.extend(own_cache(flags));
        let config = Config::try_parse_from(args).expect("valid flags");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = http.local_addr().expect("local addr");
        let admin = match config.admin_addr {
            Some(_) => Some(TcpListener::bind("127.0.0.1:0").await.expect("bind")),
            None => None,
        };
        let app = App::start(&config, Listeners { http, admin }, None).await?;
        Ok(Self {
            addr,
            admin: app.admin_addr(),
            app: Some(app),
        })
    }

    /// Waits (up to [`STEP`]) until `n` requests are being handled.
    pub async fn wait_in_flight(&self, n: i64) {
        self.wait_for(
            n,
            "in flight",
            wasi_serve::metrics::Metrics::requests_in_flight,
        )
        .await;
    }

    /// Waits (up to [`STEP`]) until `n` guests run on tasks of their own:
    /// admitted, and waiting on something (a sleep, say).
    pub async fn wait_guest_tasks(&self, n: i64) {
        self.wait_for(
            n,
            "on tasks of their own",
            wasi_serve::metrics::Metrics::guest_tasks,
        )
        .await;
    }

    /// Waits (up to [`STEP`]) until `n` requests wait for admission.
    pub async fn wait_waiting(&self, n: i64) {
        self.wait_for(n, "waiting", wasi_serve::metrics::Metrics::requests_waiting)
            .await;
    }

    async fn wait_for(&self, n: i64, what: &str, count: fn(&wasi_serve::metrics::Metrics) -> i64) {
        let metrics = self.app.as_ref().expect("running").proxy().metrics();
        let deadline = tokio::time::Instant::now() + STEP;
        while count(metrics.as_ref()) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} requests never {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Loads the component file again, as SIGHUP does.
    pub fn reload(&self) {
        self.app.as_ref().expect("running").reload();
    }

    /// Asks the server to stop and waits until it has drained.
    pub async fn stop(mut self) {
        let app = self.app.take().expect("running");
        tokio::time::timeout(STEP, app.stop())
            .await
            .expect("server stops in time")
            .expect("server returned Ok");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let (Some(app), Ok(runtime)) = (self.app.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(app.stop());
        }
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The value of header `name`, which must be present once.
    pub fn header(&self, name: &str) -> &str {
        let mut values = self.headers.get_all(name).iter();
        let value = values
            .next()
            .unwrap_or_else(|| panic!("no `{name}` header"));
        assert!(values.next().is_none(), "`{name}` sent more than once");
        value.to_str().expect("header is text")
    }
}

/// An HTTP/1.1 connection to `addr`.
pub async fn http1(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    http1_over(TcpStream::connect(addr).await.expect("connect")).await
}

/// An HTTP/1.1 connection over `stream`.
pub async fn http1_over(
    stream: TcpStream,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http1 handshake");
    tokio::spawn(connection);
    sender
}

/// An HTTP/2 (cleartext, prior knowledge) connection to `addr`.
pub async fn http2(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    http2_connection(addr).await.0
}

/// As [`http2`], with the task driving the connection, which ends when the
/// connection does.
pub async fn http2_connection(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    http2_over(TcpStream::connect(addr).await.expect("connect")).await
}

/// As [`http2_connection`], over `stream`.
pub async fn http2_over(
    stream: TcpStream,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("http2 handshake");
    (sender, tokio::spawn(connection))
}

/// Builds a request for `path` on `addr`.
pub fn build(method: Method, addr: SocketAddr, path: &str) -> Request<Empty<Bytes>> {
    Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("host", addr.to_string())
        .body(Empty::new())
        .expect("valid request")
}

/// Reads a response whole.
pub async fn read(response: hyper::Response<hyper::body::Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(STEP, body.collect())
        .await
        .expect("body in time")
        .expect("body read")
        .to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(body.to_vec()).expect("utf-8 body"),
    }
}

/// `method path` on a new HTTP/1.1 connection to `addr`.
pub async fn send(addr: SocketAddr, method: Method, path: &str) -> Reply {
    ask(http1(addr).await, method, addr, path).await
}

/// `method path` to `addr` on `sender`, the response read whole.
async fn ask(
    mut sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    method: Method,
    addr: SocketAddr,
    path: &str,
) -> Reply {
    let response = tokio::time::timeout(STEP, sender.send_request(build(method, addr, path)))
        .await
        .expect("response in time")
        .expect("response");
    read(response).await
}

/// `GET path` on a new HTTP/1.1 connection to `addr`.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(addr, Method::GET, path).await
}

/// A TCP connection to `addr` from the loopback address `from` (any of
/// 127.0.0.0/8 on Linux), so that a test can be several clients.
pub async fn connect_from(from: IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(from, 0))
        .expect("bind to a loopback address");
    socket.connect(addr).await.expect("connect")
}

/// `GET path` on a new HTTP/1.1 connection to `addr` from `from`.
pub async fn get_from(from: IpAddr, addr: SocketAddr, path: &str) -> Reply {
    let sender = http1_over(connect_from(from, addr).await).await;
    ask(sender, Method::GET, addr, path).await
}

/// The `wasi-serve` binary, running; killed when dropped. Its stderr is
/// read continuously (a full pipe would stall the server) into `logs`.
pub struct ServeProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// The admin server's address, when started with `--admin-addr`.
    pub admin: Option<SocketAddr>,
    logs: mpsc::UnboundedReceiver<String>,
    /// Stderr, when it is left unread (see [`Self::start_unread`]).
    pub stderr: Option<tokio::process::ChildStderr>,
}

impl Drop for ServeProcess {
    /// A test failing with the server running prints what the server
    /// logged and the test had not read, for the failure's context.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let lines = self.drain_logs();
            eprintln!("--- wasi-serve's log, unread lines ({}) ---", lines.len());
            for line in lines {
                eprintln!("{line}");
            }
            eprintln!("--- end of wasi-serve's log ---");
        }
    }
}

impl ServeProcess {
    /// Starts the binary on a free port and waits for the address it prints.
    pub async fn start(args: &[&str]) -> Self {
        Self::spawn(Command::new(SERVE_BIN), args, true).await
    }

    /// As [`Self::start`], but nobody reads stderr: once the pipe is full,
    /// the server's log cannot be written. `stderr` is there to read later.
    pub async fn start_unread(args: &[&str]) -> Self {
        Self::spawn(Command::new(SERVE_BIN), args, false).await
    }

    /// Starts the binary with its default compile cache, found from `home`
    /// (as `HOME`; `XDG_CACHE_HOME` unset).
    pub async fn start_at_home(home: &std::path::Path, args: &[&str]) -> Self {
        let mut command = Command::new(SERVE_BIN);
        command.env("HOME", home).env_remove("XDG_CACHE_HOME");
        Self::spawn(command, args, true).await
    }

    /// Starts the binary allowed onto one CPU only (`taskset`, which runs it
    /// in place), where it picks tokio's single-threaded scheduler.
    pub async fn start_on_one_cpu(args: &[&str]) -> Self {
        let mut taskset = Command::new("taskset");
        taskset.args(["--cpu-list", "0", SERVE_BIN]);
        Self::spawn(taskset, args, true).await
    }

    /// Starts the binary after the shell command `before` (such as
    /// `ulimit -Sn 256`), whose settings it inherits through `exec`.
    pub async fn start_after(before: &str, args: &[&str]) -> Self {
        let mut sh = Command::new("sh");
        let script = format!(r#"{before} && exec "$@""#);
        sh.args(["-c", &script, "sh", SERVE_BIN]);
        Self::spawn(sh, args, true).await
    }

    async fn spawn(mut command: Command, args: &[&str], read_stderr: bool) -> Self {
        // A test that sets `HOME` tests the default cache.
        let home_set = command.as_std().get_envs().any(|(name, _)| name == "HOME");
        let cache = if home_set {
            Vec::new()
        } else {
            own_cache(args)
        };
        let mut child = command
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .args(cache)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("wasi-serve starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout piped"));
        let mut read_addr = async |prefix: &str| -> SocketAddr {
            let mut line = String::new();
            tokio::time::timeout(STEP, stdout.read_line(&mut line))
                .await
                .expect("address printed in time")
                .expect("stdout readable");
            line.trim()
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("expected {prefix}..., got {line:?}"))
                .parse()
                .expect("printed address parses")
        };
        let listening = if args.contains(&"--tls-cert") {
            "listening on https://"
        } else {
            "listening on http://"
        };
        let addr = read_addr(listening).await;
        let admin = if args.contains(&"--admin-addr") {
            Some(read_addr("admin on http://").await)
        } else {
            None
        };
        let (sender, logs) = mpsc::unbounded_channel();
        let stderr = child.stderr.take().expect("stderr piped");
        let stderr = if read_stderr {
            let mut lines = BufReader::new(stderr).lines();
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            });
            None
        } else {
            Some(stderr)
        };
        Self {
            child,
            addr,
            admin,
            logs,
            stderr,
        }
    }

    /// Waits (up to [`STEP`]) until `n` requests are being handled, as the
    /// admin listener reports (the process must run with `--admin-addr`).
    pub async fn wait_in_flight(&self, n: f64) {
        let admin = self.admin.expect("started with --admin-addr");
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let page = get(admin, "/metrics").await.body;
            if sample(&page, "wasi_serve_requests_in_flight") >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} requests never in flight"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Sends `signal` (e.g. `TERM`) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("still running").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Reads log lines until one contains all of `needles`; returns it.
    pub async fn wait_for_log(&mut self, needles: &[&str]) -> String {
        loop {
            let line = tokio::time::timeout(STEP, self.logs.recv())
                .await
                .unwrap_or_else(|_| panic!("no log line with {needles:?} in time"))
                .unwrap_or_else(|| panic!("stderr closed before a line with {needles:?}"));
            if needles.iter().all(|needle| line.contains(needle)) {
                return line;
            }
        }
    }

    /// The log lines that arrived so far.
    pub fn drain_logs(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.logs.try_recv().ok()).collect()
    }

    /// The log lines that arrived so far and contain `needle`.
    pub fn logged(&mut self, needle: &str) -> Vec<String> {
        let mut lines = self.drain_logs();
        lines.retain(|line| line.contains(needle));
        lines
    }

    /// Waits (up to [`STEP`]) for the process to exit by itself; its code.
    pub async fn exit_code(&mut self) -> Option<i32> {
        tokio::time::timeout(STEP, self.child.wait())
            .await
            .expect("exits in time")
            .expect("wait")
            .code()
    }
}

/// Runs the binary with `args` until it exits by itself (killed after
/// [`STEP`]); returns its exit code and stderr.
pub fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(SERVE_BIN)
        .args(["--addr", "127.0.0.1:0"])
        .args(own_cache(args))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wasi-serve runs");
    let deadline = std::time::Instant::now() + STEP;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("wasi-serve {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut stderr)
        .expect("stderr readable");
    (status.code(), stderr)
}

/// `--cache-dir` with a directory of the test's own, unless `args` choose
/// a cache (or none): tests never touch the developer's `~/.cache`.
fn own_cache(args: &[&str]) -> Vec<String> {
    if args
        .iter()
        .any(|arg| matches!(*arg, "--cache-dir" | "--no-cache"))
    {
        return Vec::new();
    }
    let dir = scratch("cache");
    vec![
        "--cache-dir".into(),
        dir.to_str().expect("UTF-8 temp dir").into(),
    ]
}

/// The prefix of the directory, in the system's temp dir, that holds one
/// test run's scratch directories; the run's process id follows it.
const SCRATCH_ROOT: &str = "wasi-serve-tests-";

/// A fresh directory for one test's files, under this run's directory in
/// the system's temp dir.
///
/// A test may end in a panic, and the harness has no hook for the end of a
/// run, so nothing is removed when a test ends. Instead the first call of a
/// run removes what earlier runs left (those whose process is gone): at
/// most one run's files stay behind, not every run's.
pub fn scratch(name: &str) -> PathBuf {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let root = ROOT.get_or_init(|| {
        remove_earlier_runs();
        std::env::temp_dir().join(format!("{SCRATCH_ROOT}{}", std::process::id()))
    });
    let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = root.join(format!("{name}-{n}"));
    std::fs::create_dir_all(&dir).expect("create a scratch dir");
    dir
}

/// Removes the scratch directories of test runs that have ended.
fn remove_earlier_runs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix(SCRATCH_ROOT))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        // A process id in use again by another process keeps its files
        // until a later run: the safe way to be wrong.
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

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

/// A scratch directory left by a run whose process has ended is removed;
/// this run's own is kept.
#[test]
fn scratch_dirs_of_ended_runs_are_removed() {
    let ours = scratch("sweep")
        .parent()
        .expect("the run's directory")
        .to_path_buf();
    let mut ended = std::process::Command::new("true")
        .spawn()
        .expect("run `true`");
    let pid = ended.id();
    ended.wait().expect("`true` ends");
    let left = std::env::temp_dir().join(format!("{SCRATCH_ROOT}{pid}"));
    std::fs::create_dir_all(left.join("cache-0")).expect("create a left-over dir");

    remove_earlier_runs();

    assert!(!left.exists(), "{} is still there", left.display());
    assert!(ours.exists(), "{} was removed", ours.display());
}
