//! The command line: every option documented, typed, and readable from the
//! environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Serve a `wasi:http/proxy` WebAssembly component over HTTP.
///
/// Every request runs in a fresh instance of the component, which is granted
/// nothing by default: no files, no environment variables, no network.
#[derive(Debug, Clone, Parser)]
#[command(name = "wasi-serve", version)]
pub struct Config {
    /// The component to serve: a `.wasm` file targeting `wasi:http/proxy`.
    #[arg(value_name = "COMPONENT", env = "WASI_SERVE_COMPONENT")]
    pub component: PathBuf,

    /// Address to listen on. Port 0 picks a free port; the address actually
    /// bound is printed on start.
    #[arg(long, env = "WASI_SERVE_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Most requests served at once; each holds one instance. Further
    /// requests wait for a free slot.
    #[arg(
        long,
        env = "WASI_SERVE_MAX_CONCURRENT_REQUESTS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u32).range(1..=100_000),
    )]
    pub max_concurrent_requests: u32,

    /// How long requests in flight may take to finish once Ctrl-C or SIGTERM
    /// is received (e.g. `10s`, `500ms`).
    #[arg(
        long,
        env = "WASI_SERVE_SHUTDOWN_TIMEOUT",
        default_value = "10s",
        value_parser = humantime::parse_duration,
    )]
    pub shutdown_timeout: Duration,
}
