//! The `wasi-serve` command: parse the command line, start logging, bind,
//! start the server ([`App::start`]), stop it on a signal.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use tokio::net::TcpListener;
use wasi_serve::app::{App, Listeners};
use wasi_serve::config::LogFormat;
use wasi_serve::shutdown::Signals;
use wasi_serve::{Config, logging, reload};

/// A request makes about 130 small heap allocations; mimalloc serves them
/// faster than glibc's malloc (measured in docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = Config::parse();
    logging::init(config.log_format, config.log_queue_lines);
    let json = matches!(config.log_format, LogFormat::Json);
    let result = run(config);
    match result {
        Ok(()) => {
            logging::flush();
            ExitCode::SUCCESS
        }
        // Every stderr line is JSON when asked for.
        Err(err) if json => {
            tracing::error!("{err:#}");
            logging::flush();
            ExitCode::FAILURE
        }
        Err(err) => {
            logging::flush();
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> Result<()> {
    // One worker per CPU this process may use (affinity and cgroup quota
    // count). With a single CPU, tokio's single-threaded scheduler does the
    // same job without the work-stealing machinery; see docs/performance.md.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let tokio = if cpus > 1 {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    }
    .enable_all()
    .build()
    .context("failed to start the async runtime")?;
    tokio.block_on(async {
        let mut signals = Signals::new()?;
        let hangup = reload::Hangup::install()?;
        let http = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("failed to listen on `{}`", config.addr))?;
        let admin = match config.admin_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("failed to listen on `{addr}` (--admin-addr)"))?,
            ),
            None => None,
        };
        let app = App::start(&config, Listeners { http, admin }, Some(hangup)).await?;
        tracing::info!(workers = cpus, "async runtime started");
        println!("listening on {}", app.url());
        if let Some(admin) = app.admin_addr() {
            println!("admin on http://{admin}");
        }

        // The first signal drains; a second one exits at once.
        let first = signals.recv().await;
        tracing::info!("received {first}, shutting down");
        tokio::spawn(async move {
            let second = signals.recv().await;
            tracing::warn!("received {second} again, exiting without waiting");
            logging::flush();
            std::process::exit(1);
        });
        app.stop().await
    })
}
