//! Per-request cost in-process, without the network: admission, a fresh
//! store and instance of the greeter, the guest's handler, the whole
//! response body, and the instance dropped. Run by `make bench`
//! (or `cargo bench -p instance-bench` after `make build`).

use std::path::Path;

use bytes::Bytes;
use clap::Parser;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use wasi_serve::{Config, Proxy};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

// The `wasi-serve` binary's allocator, so this measures what it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The greeter, or the component `BENCH_COMPONENT` names (to compare
/// builds of it).
fn greeter() -> String {
    if let Ok(path) = std::env::var("BENCH_COMPONENT") {
        return path;
    }
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target")
            .display()
            .to_string()
    });
    format!("{target}/wasm32-wasip2/release/greeter.wasm")
}

fn instance(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = Config::parse_from(["wasi-serve", &greeter()]);
    let proxy = runtime
        .block_on(async { Proxy::load(&config) })
        .expect("greeter loads");
    c.bench_function("instantiate + handle + drop (greeter)", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let request = hyper::Request::builder()
                    .uri("http://localhost/World")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let response = proxy.handle(request, Scheme::Http).await.expect("answered");
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes();
                assert_eq!(&body[..], b"Hello, World!");
            })
        })
    });
}

criterion_group!(benches, instance);
criterion_main!(benches);
