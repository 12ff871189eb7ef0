//! The `wasi-serve` binary: its start-up line, its refusals, its signals,
//! and serving whatever component it is given.

use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;

use crate::support::{ServeProcess, get, greeter, run_to_exit, test_guest};

/// On start the binary prints the address it actually bound, so `--addr
/// 127.0.0.1:0` is usable by scripts; the address serves.
#[tokio::test(flavor = "multi_thread")]
async fn prints_the_bound_address_and_serves_there() {
    let serve = ServeProcess::start(&[greeter().to_str().unwrap()]).await;
    assert_ne!(serve.addr.port(), 0);
    assert_eq!(get(serve.addr, "/World").await.body, "Hello, World!");
}

/// The same binary serves another component given on its command line: the
/// guest changes without rebuilding the host.
#[tokio::test(flavor = "multi_thread")]
async fn the_same_binary_serves_a_different_component() {
    let greeter = ServeProcess::start(&[greeter().to_str().unwrap()]).await;
    let other = ServeProcess::start(&[test_guest().to_str().unwrap()]).await;
    assert_eq!(get(greeter.addr, "/World").await.body, "Hello, World!");
    assert_eq!(get(other.addr, "/World").await.body, "Howdy, World!");
}

/// `--help` documents every option with its environment variable: each
/// argument clap knows of is listed, and each has an `env:` form.
#[test]
fn help_documents_every_option_and_its_environment_variable() {
    use clap::CommandFactory;
    let output = std::process::Command::new(crate::support::SERVE_BIN)
        .arg("--help")
        .output()
        .expect("runs");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    let command = wasi_serve::Config::command();
    let mut checked = 0;
    for arg in command.get_arguments() {
        let name = match arg.get_long() {
            Some(long) => format!("--{long}"),
            None => format!("<{}>", arg.get_id().as_str().to_uppercase()),
        };
        if matches!(name.as_str(), "--help" | "--version") {
            continue;
        }
        assert!(help.contains(&name), "{name} in --help:\n{help}");
        let env = arg
            .get_env()
            .unwrap_or_else(|| panic!("{name} has an environment variable"));
        assert!(
            help.contains(&format!("env: {}", env.to_string_lossy())),
            "{env:?} in --help:\n{help}"
        );
        checked += 1;
    }
    assert!(checked >= 19, "every option checked, {checked} found");
}

/// Flags are checked too: a bad value is a usage error, not a crash.
#[test]
fn a_bad_flag_value_is_a_usage_error() {
    let (code, stderr) = run_to_exit(&["--shutdown-timeout", "soon", "x.wasm"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--shutdown-timeout"), "{stderr}");
    for bad in [
        ["--max-concurrent-requests", "0"],
        ["--max-memory", "lots"],
        ["--allow-outbound", "example.com"],
        ["--request-timeout", "0s"],
        ["--header-read-timeout", "300000000000y"],
        ["--log-format", "xml"],
        ["--env", "=value"],
        ["--env", "WASI_SERVE_TEST_SURELY_UNSET"],
        ["--max-header-size", "1KiB"],
        ["--max-header-size", "2MiB"],
        ["--max-memory", "8GiB"],
        ["--max-memory", "1B"],
        ["--max-memory", "63KiB"],
        ["--log-queue-lines", "0"],
        // Its slots are allocated at start: 128 GiB of them.
        ["--log-queue-lines", "4294967295"],
        ["--send-timeout", "0s"],
        ["--max-requests-per-client", "0"],
        ["--max-connections", "0"],
        // SQLite would open a temporary database, gone at exit.
        ["--keyvalue", ""],
        // Only with a store.
        ["--keyvalue-max-key-size", "2KiB"],
        ["--keyvalue-max-value-size", "2MiB"],
    ] {
        let (code, stderr) = run_to_exit(&[bad[0], bad[1], "x.wasm"]);
        assert_eq!(code, Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains(bad[0]), "{bad:?}: {stderr}");
    }
    // A range is checked where the limit is declared, and the message says it.
    let (_, stderr) = run_to_exit(&["--max-header-size", "1KiB", "x.wasm"]);
    assert!(stderr.contains("must be at least 8KiB"), "{stderr}");
    // Not blamed on the component, which no memory that small could hold.
    let (_, stderr) = run_to_exit(&["--max-memory", "1B", "x.wasm"]);
    assert!(stderr.contains("at least 64KiB"), "{stderr}");
}

/// The limits on open files of process `pid`: soft, hard.
fn open_files_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .expect("a `Max open files` line");
    let mut values = line.split_whitespace().map(|value| value.parse().unwrap());
    (values.next().unwrap(), values.next().unwrap())
}

/// At start the soft limit on open files is raised to the hard one (a
/// service under systemd starts at 1024, far below), and a limit still too
/// low for `--max-concurrent-requests` connections is warned about.
#[tokio::test]
async fn the_open_files_limit_is_raised_at_start() {
    let greeter = greeter();
    let greeter = greeter.to_str().unwrap();
    let (_, hard) = open_files_limits(std::process::id());
    assert!(
        hard > 256,
        "the test needs a hard limit above 256, not {hard}"
    );
    let mut serve = ServeProcess::start_after("ulimit -Sn 256", &[greeter]).await;
    let pid = serve.child.id().expect("running");
    assert_eq!(open_files_limits(pid), (hard, hard));
    let raised = format!("open files limit raised from 256 to {hard}");
    serve.wait_for_log(&[&raised]).await;
    assert_eq!(get(serve.addr, "/World").await.body, "Hello, World!");

    // A hard limit of 200 cannot be raised; 1,000 requests need more.
    let mut low = ServeProcess::start_after("ulimit -n 200", &[greeter]).await;
    let pid = low.child.id().expect("running");
    assert_eq!(open_files_limits(pid), (200, 200));
    low.wait_for_log(&["the open files limit is 200", "--max-concurrent-requests"])
        .await;
    assert_eq!(get(low.addr, "/World").await.body, "Hello, World!");
    // With fewer slots, 200 is enough (2 × 50 + 64): no warning.
    let mut enough = ServeProcess::start_after(
        "ulimit -n 200",
        &[greeter, "--max-concurrent-requests", "50"],
    )
    .await;
    // The warning would come before the runtime's start is logged.
    loop {
        let line = enough.wait_for_log(&[""]).await;
        assert!(!line.contains("open files limit is"), "{line}");
        if line.contains("async runtime started") {
            break;
        }
    }
    assert_eq!(get(enough.addr, "/World").await.body, "Hello, World!");
}

/// A bad value from a flag's environment variable is the same usage error,
/// and the message names the variable, since the flag it names is nowhere
/// on the command line; a bad value given as the flag gets no such note.
#[test]
fn a_bad_value_from_the_environment_names_its_variable() {
    let run = |var: &str, value: &str, args: &[&str]| {
        let output = std::process::Command::new(crate::support::SERVE_BIN)
            .args(args)
            .arg("x.wasm")
            .env(var, value)
            .output()
            .expect("wasi-serve runs");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stderr)
    };
    let note = "tip: that value comes from the environment variable";
    for (var, value) in [
        ("WASI_SERVE_MAX_MEMORY", "1B"),
        ("WASI_SERVE_SEND_TIMEOUT", "soon"),
        ("WASI_SERVE_NO_CACHE", "maybe"),
    ] {
        let (code, stderr) = run(var, value, &[]);
        assert_eq!(code, Some(2), "{var}={value}: {stderr}");
        assert!(stderr.contains(&format!("{note} {var}")), "{var}: {stderr}");
    }
    let (code, stderr) = run("WASI_SERVE_MAX_MEMORY", "128MiB", &["--max-memory", "1B"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("at least 64KiB"), "{stderr}");
    assert!(!stderr.contains(note), "{stderr}");
}

/// A component with one function `$f`, lifted from a core module, and
/// `exports` (WAT) naming it.
fn one_function_component(exports: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(component
             (core module $m (func (export "f")))
             (core instance $i (instantiate $m))
             (func $f (canon lift (core func $i "f")))
             {exports})"#
    ))
    .unwrap()
}

/// A file that cannot be served ends the program before it listens: exit
/// code 1 and one line naming the file and the reason, no backtrace.
#[test]
fn a_bad_component_is_refused_with_one_clear_line() {
    let dir = crate::support::scratch("bad-components");
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let missing = dir.join("missing.wasm");
    let text = write("text.wasm", b"GET / HTTP/1.1\r\n");
    let truncated = write("truncated.wasm", &std::fs::read(greeter()).unwrap()[..4000]);
    let core = write(
        "core.wasm",
        &wat::parse_str("(module (func (export \"f\")))").unwrap(),
    );
    let other_world = write(
        "other-world.wasm",
        &one_function_component(r#"(export "hello" (func $f))"#),
    );
    let release_candidate = write(
        "release-candidate.wasm",
        &one_function_component(
            r#"(instance $h (export "handle" (func $f)))
               (export "wasi:http/handler@0.3.0-rc-2025-09-16" (instance $h))"#,
        ),
    );
    let unsatisfiable = write(
        "unsatisfiable.wasm",
        &wat::parse_str(
            r#"(component
                 (import "acme:missing/api@1.0.0" (instance (export "f" (func)))))"#,
        )
        .unwrap(),
    );
    // Read, these would never end: a FIFO nobody writes, and a device.
    let fifo = dir.join("fifo.wasm");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.expect("mkfifo runs").success());
    let device = PathBuf::from("/dev/zero");
    let cases: [(&PathBuf, &str); 10] = [
        (&fifo, "not a regular file"),
        (&device, "not a regular file"),
        (&dir, "not a regular file"),
        (&missing, "No such file"),
        (&text, "not a WebAssembly file"),
        (&truncated, "invalid component"),
        (&core, "core WebAssembly module, not a component"),
        (
            &other_world,
            "it exports `hello`, no wasi:http handler; wasi-serve serves components that export `wasi:http/incoming-handler@0.2.x` (world wasi:http/proxy) or `wasi:http/handler@0.3.x`",
        ),
        (
            &release_candidate,
            "it exports `wasi:http/handler@0.3.0-rc-2025-09-16`, from a WASI release candidate",
        ),
        (&unsatisfiable, "acme:missing/api@1.0.0"),
    ];
    for (path, reason) in cases {
        let (code, stderr) = run_to_exit(&[path.to_str().unwrap()]);
        assert_eq!(code, Some(1), "{}: {stderr}", path.display());
        let errors: Vec<_> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "one error line: {stderr}");
        assert!(
            errors[0].contains(&format!("`{}`", path.display())),
            "{stderr}"
        );
        assert!(errors[0].contains(reason), "{reason:?} in {stderr}");
        assert!(!stderr.contains("backtrace"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.contains("listening"), "{stderr}");
    }
}

/// Under `--log-format json` even a refusal at start is a JSON line.
#[test]
fn a_refusal_is_a_json_line_under_json_logs() {
    let (code, stderr) = run_to_exit(&["--log-format", "json", "missing.wasm"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("missing.wasm"), "{stderr}");
    for line in stderr.lines() {
        assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    }
}

/// Ctrl-C and SIGTERM: stop accepting, finish the request in flight, exit 0.
#[tokio::test(flavor = "multi_thread")]
async fn signals_drain_requests_in_flight_then_exit_zero() {
    for signal in ["INT", "TERM"] {
        let mut serve = ServeProcess::start(&[
            "--admin-addr",
            "127.0.0.1:0",
            test_guest().to_str().unwrap(),
        ])
        .await;
        let addr = serve.addr;
        let in_flight = tokio::spawn(async move { get(addr, "/sleep/1500").await });
        serve.wait_in_flight(1.0).await;
        serve.signal(signal);
        serve.wait_for_log(&["stopped accepting"]).await;
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "SIG{signal}: no new connections once draining"
        );
        let reply = in_flight.await.expect("request task");
        assert_eq!(reply.status, StatusCode::OK, "SIG{signal}");
        assert_eq!(reply.body, "slept 1500ms", "SIG{signal}");
        assert_eq!(serve.exit_code().await, Some(0), "SIG{signal}");
    }
}

/// Past `--shutdown-timeout`, requests still in flight are cut and the
/// process exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn requests_past_the_shutdown_timeout_are_cut() {
    let mut serve = ServeProcess::start(&[
        "--admin-addr",
        "127.0.0.1:0",
        "--shutdown-timeout",
        "500ms",
        test_guest().to_str().unwrap(),
    ])
    .await;
    let addr = serve.addr;
    let in_flight = tokio::spawn(async move { try_get(addr, "/sleep/8000").await });
    serve.wait_in_flight(1.0).await;
    serve.signal("TERM");
    serve.wait_for_log(&["cutting them off"]).await;
    assert_eq!(serve.exit_code().await, Some(0));
    assert!(
        in_flight.await.unwrap().is_none(),
        "the request was cut, not answered"
    );
}

/// A second signal while draining exits at once, with exit code 1.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_exits_at_once() {
    let mut serve = ServeProcess::start(&[
        "--admin-addr",
        "127.0.0.1:0",
        test_guest().to_str().unwrap(),
    ])
    .await;
    let addr = serve.addr;
    let in_flight = tokio::spawn(async move { try_get(addr, "/sleep/8000").await });
    serve.wait_in_flight(1.0).await;
    serve.signal("TERM");
    serve.wait_for_log(&["stopped accepting"]).await;
    serve.signal("INT");
    assert_eq!(serve.exit_code().await, Some(1));
    assert!(
        in_flight.await.unwrap().is_none(),
        "the request was cut, not answered"
    );
}

/// `GET path`, or `None` if the connection fails before a whole response.
async fn try_get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    use http_body_util::BodyExt;
    let mut sender = crate::support::http1(addr).await;
    let response = sender
        .send_request(crate::support::build(http::Method::GET, addr, path))
        .await
        .ok()?;
    let body = response.into_body().collect().await.ok()?;
    Some(String::from_utf8_lossy(&body.to_bytes()).into_owned())
}

/// Compiled code is cached: the second start loads it instead of compiling
/// (the log line says which). wasmtime's cache prunes files it does not know
/// in its directory, so it is confined to `compiled/` under `--cache-dir`:
/// a user's files beside it survive its clean-up.
#[tokio::test(flavor = "multi_thread")]
async fn the_compile_cache_is_reused_and_touches_nothing_else() {
    let dir = crate::support::scratch("cache");
    std::fs::create_dir_all(dir.join("notes")).unwrap();
    std::fs::write(dir.join("keep.txt"), "mine").unwrap();
    std::fs::write(dir.join("notes/keep.txt"), "mine too").unwrap();
    let cache = dir.to_str().unwrap();
    let component = greeter();
    let component = component.to_str().unwrap();

    let mut first = ServeProcess::start(&["--cache-dir", cache, component]).await;
    first
        .wait_for_log(&["compiled component", "cache=\"miss\""])
        .await;
    // The first entry written starts wasmtime's clean-up, which takes a lock
    // file in the directory it manages.
    let compiled = dir.join("compiled");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let cleaned = loop {
        let lock = std::fs::read_dir(&compiled).ok().and_then(|entries| {
            entries
                .flatten()
                .find(|entry| entry.file_name().to_string_lossy().starts_with(".cleanup"))
        });
        if lock.is_some() || std::time::Instant::now() > deadline {
            break lock.is_some();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(cleaned, "wasmtime's cache clean-up ran in {compiled:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.signal("TERM");
    assert_eq!(first.exit_code().await, Some(0));

    let mut second = ServeProcess::start(&["--cache-dir", cache, component]).await;
    second
        .wait_for_log(&["compiled component", "cache=\"hit\""])
        .await;
    assert_eq!(get(second.addr, "/World").await.body, "Hello, World!");
    assert_eq!(
        std::fs::read_to_string(dir.join("keep.txt")).unwrap(),
        "mine"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("notes/keep.txt")).unwrap(),
        "mine too"
    );
}

/// A component whose compiling takes seconds (about two here, with
/// `--no-cache`): many functions for Cranelift. It serves nothing, which is
/// found only once it is compiled.
fn slow_to_compile_component() -> Vec<u8> {
    let mut functions = String::new();
    for n in 0..100_000 {
        functions.push_str(&format!(
            "(func (param i32) (result i32) local.get 0 i32.const {n} i32.add i32.const 3 \
             i32.mul local.get 0 i32.xor i32.const 7 i32.rotl)\n"
        ));
    }
    wat::parse_str(format!(
        r#"(component
             (core module $m {functions} (func (export "f")))
             (core instance $i (instantiate $m))
             (func $f (canon lift (core func $i "f")))
             (export "hello" (func $f)))"#
    ))
    .unwrap()
}

/// A signal while the component is still compiling at start ends the
/// start: the process exits 0 without ever listening, instead of finishing
/// the compile and announcing an address first.
#[tokio::test(flavor = "multi_thread")]
async fn a_signal_while_starting_ends_the_start() {
    let path = crate::support::scratch("slow-start").join("slow.wasm");
    std::fs::write(&path, slow_to_compile_component()).unwrap();
    let child = tokio::process::Command::new(crate::support::SERVE_BIN)
        .args([
            "--addr",
            "127.0.0.1:0",
            "--no-cache",
            path.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("wasi-serve starts");
    // Its signal handlers are in place once it has a socket: the signal
    // driver's, then the listener, both before the component is read.
    let fds = format!("/proc/{}/fd", child.id().expect("running"));
    let deadline = std::time::Instant::now() + crate::support::STEP;
    while !std::fs::read_dir(&fds).unwrap().any(|fd| {
        std::fs::read_link(fd.unwrap().path())
            .is_ok_and(|to| to.to_string_lossy().starts_with("socket:"))
    }) {
        assert!(std::time::Instant::now() < deadline, "no socket opened");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let sent = std::time::Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = tokio::time::timeout(crate::support::STEP, child.wait_with_output())
        .await
        .expect("exits in time")
        .unwrap();
    eprintln!("exited {:?} after the signal", sent.elapsed());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stdout.contains("listening on"), "{stdout}");
    assert!(
        stderr.contains("received SIGTERM while starting"),
        "{stderr}"
    );
}

/// Without `--cache-dir`, a default cache place that cannot be used (here
/// `HOME` is a file) is warned about, and the server serves uncached; a
/// `--cache-dir` that cannot be used is an error naming the flag.
#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_default_cache_is_skipped_and_a_given_one_refused() {
    let dir = crate::support::scratch("cache-home");
    let home = dir.join("not-a-directory");
    std::fs::write(&home, b"").unwrap();
    let component = greeter();
    let mut serve = ServeProcess::start_at_home(&home, &[component.to_str().unwrap()]).await;
    let warning = serve
        .wait_for_log(&["compiled code is not cached", "--cache-dir"])
        .await;
    assert!(warning.contains("WARN"), "{warning}");
    assert_eq!(get(serve.addr, "/World").await.body, "Hello, World!");
    assert!(!home.join(".cache").exists());

    let given = home.join("cache");
    let (code, stderr) = run_to_exit(&[
        "--cache-dir",
        given.to_str().unwrap(),
        component.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--cache-dir"), "{stderr}");
    assert!(stderr.contains("failed to use compile cache"), "{stderr}");
}

/// A switch's environment variable takes `1`/`0`, `yes`/`no`, `on`/`off` and
/// `true`/`false`; one that says no does not count as the switch given
/// (`WASI_SERVE_NO_CACHE=0` beside `--cache-dir` is no conflict).
#[test]
fn switches_take_the_usual_words_from_the_environment() {
    let dir = crate::support::scratch("switch-env");
    let cache = dir.to_str().unwrap();
    let component = greeter();
    let run = |value: &str| {
        let mut child = std::process::Command::new(crate::support::SERVE_BIN)
            .args(["--addr", "127.0.0.1:0", "--cache-dir", cache])
            .arg(&component)
            .env("WASI_SERVE_NO_CACHE", value)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("wasi-serve runs");
        let mut line = String::new();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        (line, String::from_utf8_lossy(&output.stderr).into_owned())
    };
    for yes in ["1", "yes", "on", "true"] {
        let (listening, stderr) = run(yes);
        assert_eq!(listening, "", "WASI_SERVE_NO_CACHE={yes}: {stderr}");
        assert!(
            stderr.contains("cannot be used together"),
            "{yes}: {stderr}"
        );
    }
    for no in ["0", "no", "off", "false"] {
        let (listening, stderr) = run(no);
        assert!(
            listening.starts_with("listening on"),
            "WASI_SERVE_NO_CACHE={no}: {stderr}"
        );
    }
    let (listening, stderr) = run("maybe");
    assert_eq!(listening, "");
    assert!(stderr.contains("--no-cache"), "{stderr}");
}

/// `--admin-addr` the same as `--addr` is refused with a line saying so, not
/// a bare "address in use".
#[test]
fn the_admin_address_must_differ_from_the_served_one() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let output = std::process::Command::new(crate::support::SERVE_BIN)
        .args(["--addr", &addr, "--admin-addr", &addr, "--no-cache"])
        .arg(greeter())
        .output()
        .expect("wasi-serve runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is the address requests are served on"),
        "{stderr}"
    );
}
