//! The built greeter component itself, and the WIT it is built against.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::support::{greeter, greeter_p3};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The interfaces `world proxy` in `wit/deps/http.wit` imports and exports,
/// fully qualified (`wasi:http/types@0.2.12`).
fn proxy_world() -> (BTreeSet<String>, BTreeSet<String>) {
    http_world("wit/deps/http.wit", "proxy")
}

/// The interfaces world `name` of the wasi:http package in `file` imports
/// and exports, fully qualified.
fn http_world(file: &str, name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let wit = std::fs::read_to_string(workspace().join(file)).expect("read WIT");
    let version = wit
        .lines()
        .find_map(|line| line.trim().strip_prefix("package wasi:http@"))
        .expect("package line")
        .trim_end_matches(';')
        .to_owned();
    let world = wit
        .split(&format!("world {name} {{"))
        .nth(1)
        .expect("the world")
        .split('}')
        .next()
        .expect("world body");
    let qualify = |name: &str| {
        if name.contains(':') {
            name.to_owned()
        } else {
            format!("wasi:http/{name}@{version}")
        }
    };
    let (mut imports, mut exports) = (BTreeSet::new(), BTreeSet::new());
    for line in world.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("import ") {
            imports.insert(qualify(name.trim_end_matches(';')));
        } else if let Some(name) = line.strip_prefix("export ") {
            exports.insert(qualify(name.trim_end_matches(';')));
        }
    }
    (imports, exports)
}

/// The greeter imports nothing outside `wasi:http/proxy` and exports exactly
/// the incoming handler, so hosts that link only that world can run it.
#[test]
fn greeter_imports_only_the_proxy_world_and_exports_the_handler() {
    let (allowed, expected_exports) = proxy_world();
    assert!(allowed.contains("wasi:http/types@0.2.12"), "{allowed:?}");
    imports_within_and_exports(&greeter(), &allowed, &expected_exports);
}

/// The WASI 0.3 greeter imports nothing outside `wasi:http/service` and
/// exports exactly its handler.
#[test]
fn greeter_p3_imports_only_the_service_world_and_exports_the_handler() {
    let (allowed, expected_exports) = http_world("wit/p3/deps/http.wit", "service");
    assert!(allowed.contains("wasi:http/types@0.3.0"), "{allowed:?}");
    assert!(
        expected_exports.contains("wasi:http/handler@0.3.0"),
        "{expected_exports:?}"
    );
    imports_within_and_exports(&greeter_p3(), &allowed, &expected_exports);
}

/// Checks that `component` imports only (and something of) `allowed` and
/// exports exactly `expected_exports`.
fn imports_within_and_exports(
    component: &Path,
    allowed: &BTreeSet<String>,
    expected_exports: &BTreeSet<String>,
) {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model_async(true);
    let engine = Engine::new(&config).unwrap();
    let component = Component::from_file(&engine, component).expect("a component");
    let ty = component.component_type();
    let imports: BTreeSet<String> = ty
        .imports(&engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let exports: BTreeSet<String> = ty
        .exports(&engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    assert!(!imports.is_empty());
    let outside: Vec<_> = imports.difference(allowed).collect();
    assert!(outside.is_empty(), "imports outside the world: {outside:?}");
    assert_eq!(&exports, expected_exports);
}

/// `wit/deps` and `wit/p3/deps` are verbatim copies of the WIT that the linked
/// wasmtime-wasi-http implements; a version bump that forgets it fails here.
#[test]
fn vendored_wit_matches_the_hosts_wasi_http() {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(workspace())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The manifest of the wasmtime-wasi-http package cargo resolved.
    let metadata = String::from_utf8(output.stdout).expect("utf-8");
    let manifest = metadata
        .split("\"manifest_path\":\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|path| {
            Path::new(path)
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|dir| dir.to_string_lossy().starts_with("wasmtime-wasi-http-"))
        })
        .expect("wasmtime-wasi-http is a dependency");
    let crate_dir = Path::new(&manifest).parent().unwrap();
    for (ours, upstream) in [("wit/deps", "wit/deps"), ("wit/p3/deps", "src/p3/wit/deps")] {
        same_files(&workspace().join(ours), &crate_dir.join(upstream));
    }
}

/// `ours` holds the same files as `upstream`, byte for byte.
fn same_files(ours: &Path, upstream: &Path) {
    let names = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(
        names(ours),
        names(upstream),
        "same files in {}",
        ours.display()
    );
    for name in names(ours) {
        let a = std::fs::read(ours.join(&name)).unwrap();
        let b = std::fs::read(upstream.join(&name)).unwrap();
        assert!(
            a == b,
            "{}/{name} differs from {}",
            ours.display(),
            upstream.display()
        );
    }
}

/// Runs `GET path` through a fresh instance of `component` as the server
/// does (same runtime, the server's own store set-up), checks the guest answered 200,
/// and says whether the request's store had to build a WASI context.
async fn builds_a_wasi_context(component: &Path, path: &str) -> bool {
    use clap::Parser;
    use http_body_util::{BodyExt, Empty};
    use wasi_serve::guest_output::RequestTag;
    use wasi_serve::{Config, Proxy};

    let config = Config::parse_from(["wasi-serve", "--no-cache", component.to_str().unwrap()]);
    let proxy = Proxy::load(&config).expect("component loads");
    let uri: http::Uri = format!("http://localhost{path}").parse().unwrap();
    let tag = RequestTag {
        method: http::Method::GET,
        uri: uri.clone(),
    };
    let guest = proxy.current();
    let mut store = proxy.new_store(&guest, tag);
    let request = hyper::Request::get(uri)
        .body(Empty::new().map_err(|never| match never {}).boxed_unsync())
        .unwrap();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let call = guest
        .pre
        .prepare(&mut store, request, http::uri::Scheme::HTTP, sender)
        .expect("a request the guest can take");
    guest
        .pre
        .run(&mut store, call, &wasi_serve::metrics::Metrics::new())
        .await
        .expect("handler returns");
    let response = receiver.await.unwrap().expect("a response");
    assert_eq!(response.status(), 200, "{path}");
    store.data().wasi_built()
}

#[tokio::test]
async fn the_wasi_context_is_built_only_for_guests_that_use_it() {
    // The greeter uses wasi:http and wasi:io only, the body stream included:
    // its requests never pay for a WASI context.
    assert!(!builds_a_wasi_context(&greeter(), "/World").await);
    // Printing goes through wasi:cli/stdout, which needs one.
    assert!(builds_a_wasi_context(&crate::support::test_guest(), "/print/0").await);
}

/// A WASI 0.2 component runs on the engine without the component model's
/// concurrency, whose bookkeeping would cost every request; a WASI 0.3 one
/// on the engine with it.
#[test]
fn only_components_that_need_it_get_component_model_concurrency() {
    use clap::Parser;
    for (component, concurrent) in [(greeter(), false), (greeter_p3(), true)] {
        let config = wasi_serve::Config::parse_from([
            "wasi-serve",
            "--no-cache",
            component.to_str().unwrap(),
        ]);
        let proxy = wasi_serve::Proxy::load(&config).expect("component loads");
        assert_eq!(
            proxy.current().concurrent(),
            concurrent,
            "{}",
            component.display()
        );
    }
}
