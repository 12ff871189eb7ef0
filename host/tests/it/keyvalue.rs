//! `wasi:keyvalue` on real stores: an SQLite file, and a `redis-server`
//! these tests start themselves (skipped, saying so, where none is
//! installed). Each promise runs against both, through the example guest
//! `visits`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::{STEP, ServeProcess, TestServer, greeter, raw, run_to_exit, scratch, visits};

/// Where the data goes.
enum Backend {
    Sqlite(PathBuf),
    Redis(RedisServer),
}

impl Backend {
    fn sqlite() -> Backend {
        Backend::Sqlite(scratch("kv").join("store.db"))
    }

    /// A Redis server of the test's own, or `None` (and a line saying the
    /// test is skipped) where `redis-server` is not installed.
    fn redis() -> Option<Backend> {
        RedisServer::start().map(Backend::Redis)
    }

    /// The `--keyvalue` argument.
    fn flag(&self) -> String {
        match self {
            Backend::Sqlite(path) => path.to_str().unwrap().to_string(),
            Backend::Redis(redis) => redis.url(),
        }
    }

    /// `--keyvalue` for it, then `extra`, then the visits component.
    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec!["--keyvalue".to_string(), self.flag()];
        args.extend(extra.iter().map(|arg| arg.to_string()));
        args.push(visits().to_str().unwrap().to_string());
        args
    }
}

/// A `redis-server` on a free loopback port, without persistence; killed
/// when dropped.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start() -> Option<RedisServer> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!(
                "SKIPPED: redis-server is not installed (Debian package redis-server; `make test` installs it)"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Self::spawn(port);
        Some(RedisServer { child, port })
    }

    fn spawn(port: u16) -> Child {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let deadline = Instant::now() + STEP;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port (empty: nothing was saved).
    fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(backend: &Backend, extra: &[&str]) -> ServeProcess {
    let args = backend.args(extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ServeProcess::start(&args).await
}

/// `POST /kv/{key}/increment`: the status and the answer, newline cut.
async fn increment(addr: SocketAddr, key: &str) -> (u16, String) {
    let (status, body) = raw(addr, "POST", &format!("/kv/{key}/increment"), b"").await;
    (status, body.trim_end().to_string())
}

/// Runs `test` against SQLite, then against Redis where it can run.
macro_rules! on_each_backend {
    ($sqlite:ident, $redis:ident, $test:ident) => {
        #[tokio::test(flavor = "multi_thread")]
        async fn $sqlite() {
            $test(Backend::sqlite()).await;
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn $redis() {
            if let Some(backend) = Backend::redis() {
                $test(backend).await;
            }
        }
    };
}

on_each_backend!(
    data_survives_a_restart_and_a_hot_swap_sqlite,
    data_survives_a_restart_and_a_hot_swap_redis,
    survives_restart_and_swap
);

/// Counts written before a restart of the host, and before two swaps of
/// the component (to the greeter and back), are all still there.
async fn survives_restart_and_swap(backend: Backend) {
    let mut serve = serve(&backend, &[]).await;
    for n in 1..=3 {
        assert_eq!(increment(serve.addr, "kept").await, (200, n.to_string()));
    }
    assert_eq!(
        raw(serve.addr, "PUT", "/kv/note", b"written before")
            .await
            .0,
        204
    );
    serve.signal("TERM");
    assert_eq!(serve.exit_code().await, Some(0));

    let serve = serve_again(&backend).await;
    assert_eq!(increment(serve.addr, "kept").await, (200, "4".into()));
    assert_eq!(
        raw(serve.addr, "GET", "/kv/note", b"").await,
        (200, "written before".into())
    );
    drop(serve);

    // In-process: swapped to another component and back.
    let dir = scratch("kv-swap");
    let served = dir.join("served.wasm");
    std::fs::copy(visits(), &served).unwrap();
    let flag = backend.flag();
    let server = TestServer::with_flags(&served, &["--keyvalue", &flag]).await;
    assert_eq!(increment(server.addr, "kept").await, (200, "5".into()));
    // Polled with reads only: an increment sent before a swap would count.
    for (component, path, expected) in [
        (greeter(), "/kept", "Hello, kept!"),
        (visits(), "/kv/kept", "5"),
    ] {
        std::fs::copy(component, dir.join("next.wasm")).unwrap();
        std::fs::rename(dir.join("next.wasm"), &served).unwrap();
        server.reload();
        let deadline = Instant::now() + STEP;
        while raw(server.addr, "GET", path, b"").await.1 != expected {
            assert!(
                Instant::now() < deadline,
                "the swap to {path} never happened"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(increment(server.addr, "kept").await, (200, "6".into()));
}

async fn serve_again(backend: &Backend) -> ServeProcess {
    serve(backend, &[]).await
}

on_each_backend!(
    concurrent_increments_sum_exactly_sqlite,
    concurrent_increments_sum_exactly_redis,
    concurrent_increments
);

/// 1,000 increments at once, each its own request in its own fresh
/// instance: the answers are exactly 1 to 1,000, and the counter reads
/// 1,000 afterwards.
async fn concurrent_increments(backend: Backend) {
    let serve = serve(&backend, &[]).await;
    let addr = serve.addr;
    let requests: Vec<_> = (0..1000)
        .map(|_| tokio::spawn(async move { increment(addr, "hits").await }))
        .collect();
    let mut seen = BTreeSet::new();
    for request in requests {
        let (status, body) = request.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(seen.insert(body.parse::<u64>().unwrap()), "{body} twice");
    }
    assert_eq!(seen, (1..=1000).collect::<BTreeSet<u64>>());
    assert_eq!(
        raw(addr, "GET", "/kv/hits", b"").await,
        (200, "1000".into())
    );
}

on_each_backend!(
    acknowledged_writes_survive_sigkill_sqlite,
    acknowledged_writes_survive_sigkill_redis,
    acknowledged_writes_survive_sigkill
);

/// Four writers store keys as fast as they are answered; the host is
/// killed with SIGKILL in the middle. Restarted, it has every write that
/// was answered 204.
async fn acknowledged_writes_survive_sigkill(backend: Backend) {
    let mut serve = serve(&backend, &[]).await;
    let addr = serve.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for n in 0..5000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let key = format!("w{writer}-{n}");
                    match try_put(addr, &key).await {
                        Some(204) => acknowledged.push(key),
                        _ => break, // killed: the answer never came
                    }
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    serve.child.start_kill().unwrap();
    let _ = serve.child.wait().await;
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    assert!(
        acknowledged.len() > 20,
        "only {} writes",
        acknowledged.len()
    );

    let serve = serve_again(&backend).await;
    for key in &acknowledged {
        assert_eq!(
            raw(serve.addr, "GET", &format!("/kv/{key}"), b"").await,
            (200, format!("value of {key}")),
            "{key}, of {} acknowledged",
            acknowledged.len()
        );
    }
    eprintln!(
        "{} acknowledged writes, all there after SIGKILL",
        acknowledged.len()
    );
}

/// PUT of one key; its status, or `None` if the host went away.
async fn try_put(addr: SocketAddr, key: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let value = format!("value of {key}");
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let head = format!(
        "PUT /kv/{key} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{value}",
        value.len()
    );
    stream.write_all(head.as_bytes()).await.ok()?;
    let mut reply = String::new();
    tokio::time::timeout(STEP, stream.read_to_string(&mut reply))
        .await
        .ok()?
        .ok()?;
    reply.split(' ').nth(1)?.parse().ok()
}

on_each_backend!(
    oversized_keys_and_values_are_errors_sqlite,
    oversized_keys_and_values_are_errors_redis,
    oversized_keys_and_values
);

/// Past `--keyvalue-max-key-size` and `--keyvalue-max-value-size`, the
/// guest gets `wasi:keyvalue`'s error (and answers 503 with it); nothing is
/// stored, and the host serves on.
async fn oversized_keys_and_values(backend: Backend) {
    let serve = serve(
        &backend,
        &[
            "--keyvalue-max-key-size",
            "64",
            "--keyvalue-max-value-size",
            "1KiB",
        ],
    )
    .await;
    let (status, body) = raw(serve.addr, "PUT", "/kv/big", &[b'x'; 1025]).await;
    assert_eq!(status, 503);
    assert!(
        body.contains("store error: other: value of 1025 bytes is larger than --keyvalue-max-value-size (1024 bytes)"),
        "{body}"
    );
    assert_eq!(raw(serve.addr, "GET", "/kv/big", b"").await.0, 404);
    let long = "k".repeat(65);
    let (status, body) = raw(serve.addr, "PUT", &format!("/kv/{long}"), b"v").await;
    assert_eq!(status, 503);
    assert!(body.contains("key of 65 bytes is longer"), "{body}");
    assert_eq!(
        raw(serve.addr, "PUT", "/kv/fits", &[b'x'; 1024]).await.0,
        204
    );
    assert_eq!(raw(serve.addr, "GET", "/kv/fits", b"").await.1.len(), 1024);
}

on_each_backend!(
    buckets_batches_and_seed_data_sqlite,
    buckets_batches_and_seed_data_redis,
    buckets_batches_and_seed_data
);

/// Buckets are apart, batches and listing work, and `--keyvalue-data`
/// seeds the default bucket without overwriting what guests wrote.
async fn buckets_batches_and_seed_data(backend: Backend) {
    let serve = serve(&backend, &["--keyvalue-data", "motd=hello"]).await;
    let addr = serve.addr;
    assert_eq!(
        raw(addr, "GET", "/kv/motd", b"").await,
        (200, "hello".into())
    );
    assert_eq!(raw(addr, "PUT", "/kv/motd", b"changed").await.0, 204);
    assert_eq!(raw(addr, "PUT", "/kv/x?bucket=a", b"in a").await.0, 204);
    assert_eq!(raw(addr, "GET", "/kv/x?bucket=b", b"").await.0, 404);
    assert_eq!(
        raw(addr, "GET", "/kv/x?bucket=a", b"").await,
        (200, "in a".into())
    );
    assert_eq!(
        raw(addr, "POST", "/kv-batch?bucket=b", b"one=1\ntwo=2")
            .await
            .0,
        204
    );
    assert_eq!(
        raw(addr, "GET", "/kv-batch?one,three,two&bucket=b", b"")
            .await
            .1,
        "one=1\nthree\ntwo=2\n"
    );
    assert_eq!(raw(addr, "GET", "/kv?bucket=b", b"").await.1, "one\ntwo\n");
    assert_eq!(raw(addr, "DELETE", "/kv/one?bucket=b", b"").await.0, 204);
    assert_eq!(raw(addr, "GET", "/kv?bucket=b", b"").await.1, "two\n");
    drop(serve);

    let serve = serve_again_seeded(&backend).await;
    assert_eq!(
        raw(serve.addr, "GET", "/kv/motd", b"").await,
        (200, "changed".into()),
        "the seed does not overwrite"
    );
}

async fn serve_again_seeded(backend: &Backend) -> ServeProcess {
    serve(backend, &["--keyvalue-data", "motd=hello"]).await
}

/// A failing store is an error value: the guest answers 503 with it, the
/// host logs the store and the cause, and requests succeed again once the
/// store is back. SQLite: another process holds the database's write lock.
/// A slow store slows only the requests that use it.
#[tokio::test(flavor = "multi_thread")]
async fn a_locked_sqlite_store_is_an_error_not_a_trap() {
    let backend = Backend::sqlite();
    let mut serve = serve(&backend, &[]).await;
    assert_eq!(increment(serve.addr, "n").await, (200, "1".into()));
    let Backend::Sqlite(path) = &backend else {
        unreachable!()
    };
    let locker = rusqlite::Connection::open(path).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();

    // The store holds this request up (it waits for the lock, up to 2 s);
    // requests that do not use the store are answered meanwhile.
    let addr = serve.addr;
    let waiting = tokio::spawn(async move { increment(addr, "n").await });
    for _ in 0..20 {
        assert_eq!(raw(addr, "GET", "/config/x", b"").await.0, 404);
    }
    assert!(!waiting.is_finished(), "the other requests went first");
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("store error: other: sqlite: database is locked"),
        "{body}"
    );
    let line = serve.wait_for_log(&["key-value increment failed"]).await;
    assert!(
        line.contains(path.to_str().unwrap()) && line.contains("locked"),
        "{line}"
    );

    locker.execute_batch("ROLLBACK").unwrap();
    assert_eq!(increment(serve.addr, "n").await, (200, "2".into()));
}

/// Redis: no server at the start, then one that comes and goes. Each
/// failure is an error value and a log line naming the URL; the host
/// connects when the server is there.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_redis_store_is_an_error_not_a_trap() {
    let Some(Backend::Redis(mut redis)) = Backend::redis() else {
        return;
    };
    redis.stop();
    let url = redis.url();
    let mut serve = ServeProcess::start(&["--keyvalue", &url, visits().to_str().unwrap()]).await;
    let (status, body) = increment(serve.addr, "n").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("store error: other: redis: "), "{body}");
    let line = serve.wait_for_log(&["key-value increment failed"]).await;
    assert!(line.contains(&url), "{line}");

    redis.restart();
    let deadline = Instant::now() + STEP;
    while increment(serve.addr, "n").await != (200, "1".into()) {
        assert!(Instant::now() < deadline, "never reconnected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    redis.stop();
    let (status, body) = increment(serve.addr, "n").await;
    assert_eq!(status, 503, "{body}");
}

/// A store that cannot be opened or written (SQLite), or a URL that names
/// no server (Redis), stops the start with one `error:` line naming it.
#[test]
fn a_bad_store_path_is_one_error_at_start() {
    let dir = scratch("kv-bad");
    let not_a_db = dir.join("notes.txt");
    std::fs::write(
        &not_a_db,
        "this is not a database, and it is long enough to have a header\n".repeat(20),
    )
    .unwrap();
    let cases = [
        (dir.join("missing/store.db"), "unable to open database file"),
        (dir.clone(), "is a directory"),
        (not_a_db, "file is not a database"),
        // Redis: a URL that names no server. (A server that is down is no
        // error at start: the host connects when it comes.)
        (PathBuf::from("redis://127.0.0.1:notaport"), ""),
    ];
    for (path, cause) in cases {
        let path = path.to_str().unwrap();
        let (code, stderr) = run_to_exit(&["--keyvalue", path, visits().to_str().unwrap()]);
        assert_eq!(code, Some(1), "{stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].starts_with(&format!("error: --keyvalue {path}")) && lines[0].contains(cause),
            "{stderr}"
        );
    }
}

/// Without `--keyvalue`, nothing is granted: opening a bucket is
/// `access-denied`, which the guest answers.
#[tokio::test(flavor = "multi_thread")]
async fn no_store_unless_granted() {
    let server = TestServer::start(&visits()).await;
    assert_eq!(
        increment(server.addr, "n").await,
        (503, "store error: access-denied".into())
    );
}
