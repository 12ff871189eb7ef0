//! The `wasi-serve` command: parse the command line, start logging, load the
//! component, bind, serve until a shutdown signal.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use tracing_subscriber::EnvFilter;
use wasi_serve::{Config, Runtime, runtime::Limits, server, shutdown};

fn main() -> ExitCode {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> Result<()> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    tokio.block_on(async {
        let shutdown = shutdown::signal()?;
        let limits = Limits {
            max_instances: config.max_concurrent_requests,
        };
        let runtime = Runtime::load(&config.component, limits)?;
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("failed to listen on `{}`", config.addr))?;
        let addr = listener.local_addr()?;
        println!("listening on http://{addr}");
        server::run(listener, runtime, shutdown, config.shutdown_timeout).await
    })
}
