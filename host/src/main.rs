//! The `wasi-serve` command: parse the command line, start logging, load the
//! component, bind, serve until a shutdown signal.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use wasi_serve::config::LogFormat;
use wasi_serve::shutdown::Signals;
use wasi_serve::{Config, Proxy, logging, reload, server, tls};

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
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            _ => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let proxy = Proxy::load(&config)?;
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("failed to listen on `{}`", config.addr))?;
        // The first line on stderr names the URL (test harnesses such as the
        // WASI test suite's read it there), followed by a space even in
        // JSON, where a quote would otherwise end it.
        let url = format!("{scheme}://{}", listener.local_addr()?);
        let guest = proxy.current();
        tracing::info!(
            component = %config.component.display(),
            "listening on {url} (WASI {} component)",
            guest.wasi()
        );
        guest.log_compiled();
        drop(guest);
        tracing::info!(workers = cpus, "async runtime started");
        // Watch before announcing the address: a change made as soon as the
        // server is up must not be missed.
        reload::spawn(proxy.clone(), config.watch, hangup)?;
        let admin = match config.admin_addr {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("failed to listen on `{addr}` (--admin-addr)"))?,
            ),
            None => None,
        };
        println!("listening on {url}");
        if let Some(admin) = admin {
            println!("admin on http://{}", admin.local_addr()?);
            tokio::spawn(wasi_serve::metrics::serve_admin(admin, proxy.clone()));
        }

        // The first signal drains; a second one exits at once.
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let first = signals.recv().await;
            tracing::info!("received {first}, shutting down");
            let _ = stop.send(());
            let second = signals.recv().await;
            tracing::warn!("received {second} again, exiting without waiting");
            logging::flush();
            std::process::exit(1);
        });
        let shutdown = async {
            let _ = stopped.await;
        };
        server::run(listener, proxy, tls, shutdown, config.shutdown_timeout).await
    })
}
