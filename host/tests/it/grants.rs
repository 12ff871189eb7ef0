//! What guests get only when a flag says so: configuration values
//! (`--config`, `--config-file`) and directories (`--dir`), through the
//! example guest `visits`.

use std::time::{Duration, Instant};

use crate::support::{ServeProcess, TestServer, raw, run_to_exit, scratch, visits};

/// Values come from the file and the flags (flags win); numbers read as
/// text; unknown keys are absent.
#[tokio::test(flavor = "multi_thread")]
async fn config_values_from_flags_and_file() {
    let file = scratch("config").join("app.toml");
    std::fs::write(&file, "greeting = \"Howdy\"\nport = 8080\ndebug = true\n").unwrap();
    let server = TestServer::with_flags(
        &visits(),
        &[
            "--config-file",
            file.to_str().unwrap(),
            "--config",
            "debug=no",
        ],
    )
    .await;
    assert_eq!(
        raw(server.addr, "GET", "/config/greeting", b"").await,
        (200, "Howdy".into())
    );
    assert_eq!(
        raw(server.addr, "GET", "/config/port", b"").await,
        (200, "8080".into())
    );
    assert_eq!(
        raw(server.addr, "GET", "/config/debug", b"").await,
        (200, "no".into())
    );
    assert_eq!(raw(server.addr, "GET", "/config/missing", b"").await.0, 404);

    let bare = TestServer::start(&visits()).await;
    assert_eq!(
        raw(bare.addr, "GET", "/config/greeting", b"").await.0,
        404,
        "nothing unless granted"
    );
}

/// A reload rereads the file under continuous requests, none failing; a
/// bad file on reload is rejected with one log line and the values in
/// force stay.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_rereads_the_config_file() {
    let file = scratch("config-reload").join("app.toml");
    std::fs::write(&file, "greeting = \"Howdy\"\n").unwrap();
    let mut serve = ServeProcess::start(&[
        "--watch",
        "--config-file",
        file.to_str().unwrap(),
        visits().to_str().unwrap(),
    ])
    .await;
    let addr = serve.addr;
    let load = tokio::spawn(async move {
        let mut seen = std::collections::BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            let (status, body) = raw(addr, "GET", "/config/greeting", b"").await;
            assert_eq!(status, 200, "{body}");
            seen.insert(body);
        }
        seen
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::write(&file, "greeting = \"Bonjour\"\n").unwrap();
    serve.wait_for_log(&["configuration reloaded"]).await;
    let seen = load.await.unwrap();
    assert!(
        seen.contains("Howdy") && seen.contains("Bonjour") && seen.len() == 2,
        "{seen:?}"
    );

    std::fs::write(&file, "greeting = \"Hallo\"\nbroken =\n").unwrap();
    let line = serve.wait_for_log(&["configuration reload rejected"]).await;
    assert!(line.contains("line 2"), "{line}");
    assert_eq!(
        raw(addr, "GET", "/config/greeting", b"").await,
        (200, "Bonjour".into())
    );

    serve.signal("HUP");
    serve.wait_for_log(&["configuration reload rejected"]).await;
    std::fs::write(&file, "greeting = \"Hallo\"\n").unwrap();
    serve.wait_for_log(&["configuration reloaded"]).await;
    assert_eq!(
        raw(addr, "GET", "/config/greeting", b"").await,
        (200, "Hallo".into())
    );
}

/// A bad file at start is one `error:` line naming the file and the line.
#[test]
fn a_bad_config_file_is_one_error_at_start() {
    let dir = scratch("config-bad");
    let cases = [
        ("greeting = \"Howdy\"\nport = \n", "line 2"),
        (
            "a = 1\n[server]\nport = 8080\n",
            "line 2: `server` is a table",
        ),
        ("x = [1, 2]\n", "line 1: `x` is a array"),
    ];
    for (text, expected) in cases {
        let file = dir.join("bad.toml");
        std::fs::write(&file, text).unwrap();
        let path = file.to_str().unwrap();
        let (code, stderr) = run_to_exit(&["--config-file", path, visits().to_str().unwrap()]);
        assert_eq!(code, Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("error: --config-file {path}: {expected}")),
            "{stderr}"
        );
    }
    let (code, stderr) = run_to_exit(&[
        "--config-file",
        "/nonexistent.toml",
        visits().to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with("error: --config-file /nonexistent.toml: "),
        "{stderr}"
    );
}

/// A read-only directory: its files are served; `..` and a symlink out of
/// it reach nothing outside; a write fails inside the guest, which answers.
/// With `:rw` the write lands.
#[tokio::test(flavor = "multi_thread")]
async fn directories_are_read_only_and_closed() {
    let dir = scratch("dir");
    let public = dir.join("public");
    std::fs::create_dir(&public).unwrap();
    std::fs::write(public.join("index.txt"), "served").unwrap();
    std::fs::write(dir.join("secret.txt"), "SECRET").unwrap();
    std::os::unix::fs::symlink(dir.join("secret.txt"), public.join("escape.txt")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", public.join("relative.txt")).unwrap();
    let grant = format!("{}::/static", public.display());
    let server = TestServer::with_flags(&visits(), &["--dir", &grant]).await;
    let addr = server.addr;

    assert_eq!(
        raw(addr, "GET", "/static/index.txt", b"").await,
        (200, "served".into())
    );
    for path in [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/escape.txt",
        "/static/relative.txt",
        "/static//etc/passwd",
    ] {
        let (status, body) = raw(addr, "GET", path, b"").await;
        assert!(status == 403 || status == 404, "{path}: {status} {body}");
        assert!(
            !body.contains("SECRET") && !body.contains("root:"),
            "{path}: {body}"
        );
    }
    let (status, body) = raw(addr, "PUT", "/static/new.txt", b"data").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.starts_with("cannot write new.txt"), "{body}");
    assert!(!public.join("new.txt").exists());

    let writable = format!("{}::/static:rw", public.display());
    let server = TestServer::with_flags(&visits(), &["--dir", &writable]).await;
    assert_eq!(
        raw(server.addr, "PUT", "/static/new.txt", b"data").await.0,
        201
    );
    assert_eq!(
        std::fs::read_to_string(public.join("new.txt")).unwrap(),
        "data"
    );
    let (status, _) = raw(server.addr, "PUT", "/static/../outside.txt", b"data").await;
    assert_eq!(status, 403);
    assert!(!dir.join("outside.txt").exists());

    let bare = TestServer::start(&visits()).await;
    assert_eq!(
        raw(bare.addr, "GET", "/static/index.txt", b"").await.0,
        404,
        "nothing unless granted"
    );
}

/// A missing directory, or a file given as one, is a clear error at start.
#[test]
fn a_missing_directory_is_an_error_at_start() {
    let file = scratch("dir-bad").join("file.txt");
    std::fs::write(&file, "x").unwrap();
    for (dir, expected) in [
        ("/nonexistent/public", "No such file or directory"),
        (file.to_str().unwrap(), "not a directory"),
    ] {
        let (code, stderr) = run_to_exit(&["--dir", dir, visits().to_str().unwrap()]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.starts_with(&format!("error: --dir {dir}: ")) && stderr.contains(expected),
            "{stderr}"
        );
    }
    let (code, stderr) = run_to_exit(&["--dir", "::/static", visits().to_str().unwrap()]);
    assert_eq!(code, Some(2), "a usage error: {stderr}");
}

/// The greeting word comes from configuration and the count from the
/// store: all three grants at once, as the README runs it.
#[tokio::test(flavor = "multi_thread")]
async fn visits_with_every_grant() {
    let dir = scratch("visits");
    std::fs::create_dir(dir.join("public")).unwrap();
    std::fs::write(dir.join("public/hi.txt"), "hi").unwrap();
    let store = dir.join("visits.db");
    let grant = format!("{}::/static", dir.join("public").display());
    let server = TestServer::with_flags(
        &visits(),
        &[
            "--config",
            "greeting=Howdy",
            "--keyvalue",
            store.to_str().unwrap(),
            "--dir",
            &grant,
        ],
    )
    .await;
    for n in 1..=2 {
        assert_eq!(
            raw(server.addr, "GET", "/World", b"").await,
            (200, format!("Howdy, World! Visit {n}.\n"))
        );
    }
    assert_eq!(
        raw(server.addr, "GET", "/static/hi.txt", b"").await,
        (200, "hi".into())
    );
}

/// WASI 0.3 components get the same grants: the 0.3 test guest reads a
/// configuration value and counts in the store, which a 0.2 guest then
/// reads, and without the flags it gets nothing.
#[tokio::test(flavor = "multi_thread")]
async fn wasi_0_3_components_get_the_same_grants() {
    let store = scratch("grants-p3").join("store.db");
    let store = store.to_str().unwrap();
    let flags = ["--config", "greeting=Howdy", "--keyvalue", store];
    let server = TestServer::with_flags(&crate::support::test_guest_p3(), &flags).await;
    assert_eq!(
        raw(server.addr, "GET", "/config/greeting", b"").await,
        (200, "Howdy".into())
    );
    assert_eq!(raw(server.addr, "GET", "/config/other", b"").await.0, 404);
    for n in 1..=3 {
        assert_eq!(
            raw(server.addr, "GET", "/incr/shared", b"").await,
            (200, n.to_string())
        );
    }
    drop(server);
    let server = TestServer::with_flags(&visits(), &["--keyvalue", store]).await;
    assert_eq!(
        raw(server.addr, "GET", "/kv/shared", b"").await,
        (200, "3".into())
    );

    let bare = TestServer::start(&crate::support::test_guest_p3()).await;
    assert_eq!(raw(bare.addr, "GET", "/config/greeting", b"").await.0, 404);
    let (status, body) = raw(bare.addr, "GET", "/incr/shared", b"").await;
    assert_eq!(
        (status, body.as_str()),
        (503, "store error: Error::AccessDenied")
    );
}
