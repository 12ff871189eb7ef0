//! Hot swap: the component changes while the host runs, under load, and no
//! request fails.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::{Method, StatusCode};

use crate::support::{
    STEP, ServeProcess, TestServer, build, get, greeter, greeter_p3, http1, read, scratch,
    test_guest, test_guest_p3,
};

const GREETER: &str = "Hello, World!";
const TEST_GUEST: &str = "Howdy, World!";

/// Replaces `target` the way build tools do: write a temporary file beside
/// it, then rename it over.
fn replace_by_rename(target: &Path, source: &Path) {
    let temp = target.with_extension("tmp");
    std::fs::copy(source, &temp).unwrap();
    std::fs::rename(&temp, target).unwrap();
}

/// Rewrites `target` in place in two writes with a pause between them, the
/// way a slow copy does; the half-written file must never be loaded.
async fn rewrite_in_two_steps(target: &Path, source: &Path) {
    use tokio::io::AsyncWriteExt;
    let bytes = std::fs::read(source).unwrap();
    let mut file = tokio::fs::File::create(target).await.unwrap();
    file.write_all(&bytes[..bytes.len() / 2]).await.unwrap();
    file.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    file.write_all(&bytes[bytes.len() / 2..]).await.unwrap();
    file.flush().await.unwrap();
}

/// Polls until `/World` answers `expected`.
async fn wait_for_body(serve: &mut ServeProcess, expected: &str) {
    let addr = serve.addr;
    let switched = tokio::time::timeout(STEP, async {
        while get(addr, "/World").await.body != expected {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if switched.is_err() {
        let logs = serve.drain_logs();
        let logs: Vec<_> = logs.iter().filter(|l| !l.contains("access")).collect();
        panic!("the host never switched to {expected:?}; its log: {logs:#?}");
    }
}

/// Under continuous concurrent load, the watched file is swapped between a
/// WASI 0.2 and a WASI 0.3 component ten times (by rename and by slow
/// in-place writes): every response is a complete 200 from one of the two,
/// and both are seen. Once starting from 0.2, once from 0.3.
#[tokio::test(flavor = "multi_thread")]
async fn swapping_under_load_loses_no_request() {
    swap_under_load(greeter(), test_guest_p3()).await;
    swap_under_load(greeter_p3(), test_guest()).await;
}

/// Serves `greeter` (answering [`GREETER`]), then swaps to `test_guest`
/// (answering [`TEST_GUEST`]) and back, under load.
async fn swap_under_load(greeter: std::path::PathBuf, test_guest: std::path::PathBuf) {
    let dir = scratch("swap-under-load");
    let served = dir.join("served.wasm");
    std::fs::copy(&greeter, &served).unwrap();
    let mut serve = ServeProcess::start(&["--watch", served.to_str().unwrap()]).await;
    let addr = serve.addr;

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let load: Vec<_> = (0..6)
        .map(|_| {
            let (stop, counts) = (stop.clone(), counts.clone());
            tokio::spawn(async move {
                // Keep-alive connections: swaps must not disturb them either.
                let mut sender = http1(addr).await;
                while !stop.load(Ordering::Relaxed) {
                    sender.ready().await.expect("connection stays usable");
                    let response = sender
                        .send_request(build(Method::GET, addr, "/World"))
                        .await
                        .expect("every request is answered");
                    let reply = read(response).await;
                    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
                    match reply.body.as_str() {
                        GREETER => counts[0].fetch_add(1, Ordering::Relaxed),
                        TEST_GUEST => counts[1].fetch_add(1, Ordering::Relaxed),
                        other => panic!("unexpected body {other:?}"),
                    };
                }
            })
        })
        .collect();

    for swap in 0..10 {
        let (source, expected) = if swap % 2 == 0 {
            (&test_guest, TEST_GUEST)
        } else {
            (&greeter, GREETER)
        };
        if swap % 4 < 2 {
            replace_by_rename(&served, source);
        } else {
            rewrite_in_two_steps(&served, source).await;
        }
        wait_for_body(&mut serve, expected).await;
        serve.wait_for_log(&["component reloaded"]).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("no load task saw a failure");
    }
    let (greeted, howdied) = (
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
    );
    assert!(
        greeted > 0 && howdied > 0,
        "both components served: {greeted} / {howdied}"
    );
    let rejected = serve.logged("rejected");
    assert!(
        rejected.is_empty(),
        "no half-written file was loaded: {rejected:?}"
    );
}

/// A new file that fails to load is rejected with a log line; the old
/// component keeps serving, and a good file afterwards is taken. The
/// reloads are counted in the metrics.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_new_file_is_rejected_and_the_old_component_keeps_serving() {
    let dir = scratch("swap-rejected");
    let served = dir.join("served.wasm");
    std::fs::copy(greeter(), &served).unwrap();
    let mut serve = ServeProcess::start(&[
        "--watch",
        "--admin-addr",
        "127.0.0.1:0",
        served.to_str().unwrap(),
    ])
    .await;

    std::fs::write(dir.join("bad.tmp"), b"this is not wasm").unwrap();
    std::fs::rename(dir.join("bad.tmp"), &served).unwrap();
    let line = serve.wait_for_log(&["reload rejected"]).await;
    assert!(line.contains("not a WebAssembly file"), "{line}");
    assert_eq!(get(serve.addr, "/World").await.body, GREETER);

    let core = wat::parse_str("(module)").unwrap();
    std::fs::write(dir.join("core.tmp"), core).unwrap();
    std::fs::rename(dir.join("core.tmp"), &served).unwrap();
    let line = serve.wait_for_log(&["reload rejected"]).await;
    assert!(line.contains("core WebAssembly module"), "{line}");
    assert_eq!(get(serve.addr, "/World").await.body, GREETER);

    replace_by_rename(&served, &test_guest());
    wait_for_body(&mut serve, TEST_GUEST).await;

    let page = get(serve.admin.unwrap(), "/metrics").await.body;
    let count = |outcome: &str| {
        crate::support::sample(
            &page,
            &format!("wasi_serve_reloads_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(count("rejected"), 2.0, "{page}");
    assert_eq!(count("ok"), 1.0, "{page}");
    assert_eq!(
        page.matches("wasi_serve_component_info{").count(),
        1,
        "{page}"
    );
}

/// SIGHUP reloads the component even without `--watch`; the swap is logged
/// with the old and new content hashes, and a SIGHUP that finds the file
/// unchanged says so.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_component() {
    let dir = scratch("sighup");
    let served = dir.join("served.wasm");
    std::fs::copy(greeter(), &served).unwrap();
    let mut serve = ServeProcess::start(&[served.to_str().unwrap()]).await;
    let loaded = serve.wait_for_log(&["compiled component"]).await;
    let old_hash = field(&loaded, "hash");

    replace_by_rename(&served, &test_guest());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        get(serve.addr, "/World").await.body,
        GREETER,
        "no watching without --watch"
    );

    serve.signal("HUP");
    let line = serve.wait_for_log(&["component reloaded"]).await;
    assert_eq!(field(&line, "old"), old_hash);
    assert_ne!(field(&line, "new"), old_hash);
    assert!(line.contains("compile="), "{line}");
    assert_eq!(get(serve.addr, "/World").await.body, TEST_GUEST);

    // Again with the file as it is: nothing is swapped, and the log says so.
    let new_hash = field(&line, "new");
    serve.signal("HUP");
    let line = serve.wait_for_log(&["component file unchanged"]).await;
    assert_eq!(field(&line, "hash"), new_hash);
    assert_eq!(get(serve.addr, "/World").await.body, TEST_GUEST);
}

/// A reload asked for in-process (what SIGHUP asks for) swaps in a new
/// file, and a broken one is rejected with the old component still
/// serving; `/metrics` counts both outcomes.
#[tokio::test(flavor = "multi_thread")]
async fn reloads_swap_or_reject_in_process() {
    let dir = scratch("reload-in-process");
    let served = dir.join("served.wasm");
    std::fs::copy(greeter(), &served).unwrap();
    let server = TestServer::with_flags(&served, &["--admin-addr", "127.0.0.1:0"]).await;
    let admin = server.admin.expect("an admin listener");
    let reloads = async |outcome: &str| {
        let page = get(admin, "/metrics").await.body;
        crate::support::sample(
            &page,
            &format!("wasi_serve_reloads_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(get(server.addr, "/World").await.body, GREETER);

    replace_by_rename(&served, &test_guest());
    server.reload();
    let deadline = tokio::time::Instant::now() + STEP;
    while reloads("ok").await < 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "no reload in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(server.addr, "/World").await.body, TEST_GUEST);

    std::fs::write(&served, b"not a component").unwrap();
    server.reload();
    while reloads("rejected").await < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rejection in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(server.addr, "/World").await.body, TEST_GUEST);
    assert_eq!(reloads("ok").await, 1.0);
    server.stop().await;
}

/// The value of `name=value` in a log line.
fn field(line: &str, name: &str) -> String {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in {line}"))
        .trim_matches('"')
        .to_owned()
}

/// `--watch` sees a Kubernetes ConfigMap update. The kubelet never writes
/// the mounted file: it fills a new hidden directory, points a `..data_tmp`
/// symlink at it and renames that over `..data`, which the file's own
/// symlink goes through. The swap is taken, and the old directory's removal
/// afterwards changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn watch_follows_a_configmap_symlink_swap() {
    use std::os::unix::fs::symlink;
    let dir = scratch("configmap");
    let version = |name: &str, source: &Path| {
        std::fs::create_dir(dir.join(name)).unwrap();
        std::fs::copy(source, dir.join(name).join("app.wasm")).unwrap();
    };
    version("..2026_11_26_v1", &greeter());
    symlink("..2026_11_26_v1", dir.join("..data")).unwrap();
    symlink("..data/app.wasm", dir.join("app.wasm")).unwrap();
    let served = dir.join("app.wasm");
    let server = TestServer::with_flags(&served, &["--watch"]).await;
    assert_eq!(get(server.addr, "/World").await.body, GREETER);

    version("..2026_11_26_v2", &test_guest());
    symlink("..2026_11_26_v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..2026_11_26_v1")).unwrap();

    let deadline = tokio::time::Instant::now() + STEP;
    while get(server.addr, "/World").await.body != TEST_GUEST {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the symlink swap was never taken"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(wasi_serve::reload::DEBOUNCE * 2).await;
    assert_eq!(get(server.addr, "/World").await.body, TEST_GUEST);
}

/// `--watch` still sees the file after its directory is replaced (a deploy
/// that recreates it, which ends a watch on the old directory), and through
/// a `current -> releases/v2` directory symlink switched to another release.
#[tokio::test(flavor = "multi_thread")]
async fn watch_survives_a_replaced_directory_and_a_switched_release() {
    use std::os::unix::fs::symlink;
    let wait_for = async |server: &TestServer, body: &str, what: &str| {
        let deadline = tokio::time::Instant::now() + STEP;
        while get(server.addr, "/World").await.body != body {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} was never taken"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let root = scratch("replaced");

    let dir = root.join("app");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(greeter(), dir.join("app.wasm")).unwrap();
    let server = TestServer::with_flags(&dir.join("app.wasm"), &["--watch"]).await;
    assert_eq!(get(server.addr, "/World").await.body, GREETER);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(test_guest(), dir.join("app.wasm")).unwrap();
    wait_for(&server, TEST_GUEST, "the new directory's file").await;
    // And the watch goes on from there.
    std::fs::copy(greeter(), dir.join("next.wasm")).unwrap();
    std::fs::rename(dir.join("next.wasm"), dir.join("app.wasm")).unwrap();
    wait_for(&server, GREETER, "a change in the new directory").await;
    server.stop().await;

    let releases = root.join("releases");
    for (release, source) in [("v1", greeter()), ("v2", test_guest())] {
        std::fs::create_dir_all(releases.join(release)).unwrap();
        std::fs::copy(source, releases.join(release).join("app.wasm")).unwrap();
    }
    symlink(releases.join("v1"), root.join("current")).unwrap();
    let server = TestServer::with_flags(&root.join("current/app.wasm"), &["--watch"]).await;
    assert_eq!(get(server.addr, "/World").await.body, GREETER);
    symlink(releases.join("v2"), root.join("current.new")).unwrap();
    std::fs::rename(root.join("current.new"), root.join("current")).unwrap();
    wait_for(&server, TEST_GUEST, "the switched release").await;
    server.stop().await;
}
