//! Running as a system service: the systemd units in `docs/` are valid, as
//! `systemd-analyze verify` sees them, and socket activation keeps every
//! connection through restarts of the host.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{SERVE_BIN, STEP, greeter, scratch};

/// Runs `systemd-analyze verify` on the service `unit` text, with the
/// socket unit beside it; returns its complaints.
fn verify(unit: &str) -> String {
    let dir = scratch("unit");
    let path = dir.join("wasi-serve.service");
    std::fs::write(&path, unit).unwrap();
    std::fs::copy(docs("wasi-serve.socket"), dir.join("wasi-serve.socket")).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .arg(dir.join("wasi-serve.socket"))
        .output()
        .expect("systemd-analyze runs (Debian package systemd)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.contains("wasi-serve."))
        .collect::<Vec<_>>()
        .join("\n")
}

fn docs(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(file)
}

/// `docs/wasi-serve.service` and `docs/wasi-serve.socket`, with paths pointed at the files this build
/// made, passes `systemd-analyze verify` without a warning; a broken copy
/// does not, so the check can fail.
#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(docs("wasi-serve.service")).unwrap();
    let unit = unit
        .replace("/usr/local/bin/wasi-serve", SERVE_BIN)
        .replace(
            "/usr/local/lib/wasi-serve/greeter.wasm",
            greeter().to_str().unwrap(),
        );
    assert_eq!(verify(&unit), "", "no complaints");
    let broken = unit.replace("Type=exec", "Type=sometimes");
    assert!(
        verify(&broken).contains("sometimes"),
        "a bad unit is reported"
    );
}

/// Plays systemd's part in `systemctl restart` for a socket-activated
/// service. `systemd-socket-activate` opens the listening socket and runs
/// this script with it as fd 3; the script keeps it open while it stops
/// wasi-serve (SIGTERM: the drain), waits for the exit and starts the next
/// one, which inherits the same socket with `LISTEN_PID` set to its own pid,
/// as systemd does. `restart` and `stop` files in `$1` ask for each step;
/// `events` records them.
const RESTARTER: &str = r#"#!/bin/sh
dir=$1; shift
start() { sh -c 'LISTEN_PID=$$ exec "$@"' sh "$@" & pid=$!; echo started >> "$dir/events"; }
stop() { kill -TERM $pid; wait $pid; echo "exited $?" >> "$dir/events"; }
start "$@"
while :; do
  if [ -e "$dir/restart" ]; then rm "$dir/restart"; stop; start "$@"; fi
  if [ -e "$dir/stop" ]; then stop; exit 0; fi
  sleep 0.02
done
"#;

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One request on a connection of its own: the greeting, or why not.
fn greet_once(addr: SocketAddr) -> Result<(), String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, STEP).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(STEP)).unwrap();
    stream
        .write_all(b"GET /World HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .map_err(|e| format!("read: {e}"))?;
    if reply.starts_with("HTTP/1.1 200 ") && reply.ends_with("Hello, World!") {
        Ok(())
    } else {
        Err(format!("unexpected reply {reply:?}"))
    }
}

/// Waits until `events` in `dir` holds `count` lines starting with `what`.
fn wait_events(dir: &Path, what: &str, count: usize) -> String {
    let deadline = Instant::now() + STEP;
    loop {
        let events = std::fs::read_to_string(dir.join("events")).unwrap_or_default();
        if events.lines().filter(|l| l.starts_with(what)).count() >= count {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "no {count} `{what}` events: {events:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Under socket activation (`docs/wasi-serve.socket`), the host is
/// restarted three times while six clients keep opening new connections:
/// not one connection attempt fails and every request gets its greeting.
/// Connections that arrive between two processes wait in the socket's
/// backlog; the ones a process accepted finish in its drain.
#[test]
fn restarts_under_socket_activation_lose_no_connection() {
    let dir = scratch("socket-activation");
    std::fs::write(dir.join("restarter.sh"), RESTARTER).unwrap();
    let addr = free_port();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let mut activator = Command::new("systemd-socket-activate")
        .args(["-l", &addr.to_string(), "sh"])
        .arg(dir.join("restarter.sh"))
        .arg(&dir)
        .args([SERVE_BIN, "--cache-dir"])
        .arg(dir.join("cache"))
        .arg(greeter())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("systemd-socket-activate runs (Debian package systemd)");
    // The first connection makes systemd-socket-activate start the script.
    let deadline = Instant::now() + STEP;
    while let Err(err) = greet_once(addr) {
        assert!(Instant::now() < deadline, "never served: {err}");
        std::thread::sleep(Duration::from_millis(50));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (stop, served, failures) = (stop.clone(), served.clone(), failures.clone());
            std::thread::spawn(move || {
                // Runs until told to stop, whatever the machine's speed, so
                // the load spans every restart; bounded in count and time.
                let deadline = Instant::now() + Duration::from_secs(120);
                for _ in 0..200_000 {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    match greet_once(addr) {
                        Ok(()) => served.fetch_add(1, Ordering::Relaxed),
                        Err(err) => {
                            failures.lock().unwrap().push(err);
                            0
                        }
                    };
                }
            })
        })
        .collect();

    let mut before_restart = Vec::new();
    for restart in 1..=3 {
        std::thread::sleep(Duration::from_millis(400));
        before_restart.push(served.load(Ordering::Relaxed));
        std::fs::write(dir.join("restart"), b"").unwrap();
        wait_events(&dir, "started", restart + 1);
    }
    let after_last_restart = served.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(400));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    std::fs::write(dir.join("stop"), b"").unwrap();
    let events = wait_events(&dir, "exited", 4);
    let status = activator.wait().unwrap();
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap();

    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, first: {:?}; log:\n{log}",
        failures.len(),
        served.load(Ordering::Relaxed) + failures.len(),
        failures.first()
    );
    assert!(status.success(), "{status}; log:\n{log}");
    assert_eq!(
        events.lines().filter(|l| *l == "exited 0").count(),
        4,
        "each host drained and exited 0: {events:?}"
    );
    assert_eq!(
        log.matches("serving on the sockets systemd passed").count(),
        4,
        "every host used the passed socket:\n{log}"
    );
    let total = served.load(Ordering::Relaxed);
    eprintln!(
        "socket activation: {total} requests, each on a new connection, through 3 restarts: 0 failed"
    );
    assert!(
        before_restart.windows(2).all(|w| w[0] < w[1]) && after_last_restart < total,
        "load ran throughout: {before_restart:?}, {after_last_restart}, {total}"
    );
}

/// Runs the host under `systemd-socket-activate` with `args`, triggers it
/// with one connection and returns its stderr once it exits.
fn activated_error(args: &[&str]) -> String {
    let addr = free_port();
    let mut activator = Command::new("systemd-socket-activate")
        .args(["-l", &addr.to_string(), SERVE_BIN])
        .args(args)
        .arg(greeter())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate runs");
    let deadline = Instant::now() + STEP;
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "systemd-socket-activate never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, stderr) = exit_and_stderr(&mut activator);
    assert_eq!(status.code(), Some(1), "{stderr}");
    stderr
}

/// Waits at most [`STEP`] for `child` to exit (killing it then); returns
/// its status and stderr.
fn exit_and_stderr(child: &mut std::process::Child) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + STEP;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the host did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    let mut pipe = child.stderr.take().unwrap();
    pipe.read_to_string(&mut stderr).unwrap();
    (status, stderr)
}

/// Mistakes under socket activation are one clear error each: `--addr`
/// given as well as a passed socket, a passed descriptor that is not a
/// socket, and a `LISTEN_FDS` that is not a number or more than two.
#[test]
fn socket_activation_mistakes_are_clear_errors() {
    let both = activated_error(&["--addr", "127.0.0.1:0"]);
    assert!(
        both.contains("error: `--addr 127.0.0.1:0` given, but systemd passed a listening socket"),
        "{both}"
    );

    let run = |script: &str| {
        let mut child = Command::new("sh")
            .args(["-c", script, "sh", SERVE_BIN])
            .arg(greeter())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (status, stderr) = exit_and_stderr(&mut child);
        assert_eq!(status.code(), Some(1), "{stderr}");
        stderr
    };
    for (script, error) in [
        (
            r#"exec 3</dev/null; LISTEN_FDS=1 exec "$@""#,
            "error: socket activation: fd 3 is not a TCP socket",
        ),
        (
            r#"LISTEN_FDS=two exec "$@""#,
            "LISTEN_FDS=\"two\" is not a number of sockets",
        ),
        // More than two are refused before any descriptor is looked at or
        // listed, however many.
        (
            r#"LISTEN_FDS=4000000000 exec "$@""#,
            "error: socket activation: 4000000000 sockets passed (LISTEN_FDS)",
        ),
        (
            r#"LISTEN_FDS=3 exec "$@""#,
            "error: socket activation: 3 sockets passed (LISTEN_FDS)",
        ),
    ] {
        let stderr = run(script);
        assert!(stderr.contains(error), "{script}: {stderr}");
    }
}

/// Sockets passed to another process (`LISTEN_PID` names it) are none of
/// wasi-serve's business, however many: it binds `--addr` and serves.
#[tokio::test]
async fn sockets_passed_to_another_process_are_ignored() {
    let greeter = greeter();
    let serve = crate::support::ServeProcess::start_after(
        "export LISTEN_FDS=3 LISTEN_PID=1",
        &[greeter.to_str().unwrap()],
    )
    .await;
    assert_eq!(
        crate::support::get(serve.addr, "/World").await.body,
        "Hello, World!"
    );
}
