//! What the in-process benchmarks (`benches/`) share: the allocator, the
//! component they run, and how it is loaded.

use std::path::Path;
use std::sync::Arc;

use clap::Parser;
use wasi_serve::{Config, Proxy};

// The `wasi-serve` binary's allocator, so the benchmarks measure what it
// runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The built greeter, or the component `BENCH_COMPONENT` names (to compare
/// builds of a guest).
pub fn component() -> String {
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

/// A single-threaded runtime (the server's on one CPU) and the component
/// loaded as `wasi-serve` loads it, with its default flags.
pub fn load() -> (tokio::runtime::Runtime, Arc<Proxy>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let config = Config::parse_from(["wasi-serve", &component()]);
    let proxy = runtime
        .block_on(async { Proxy::load(&config) })
        .expect("the component loads");
    (runtime, proxy)
}
