//! The `wasi-serve` command: parse the command line, take any sockets
//! systemd passed, start logging, bind, start the server ([`App::start`]),
//! stop it on a signal.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use wasi_serve::app::App;
use wasi_serve::config::LogFormat;
use wasi_serve::listen::Inherited;
use wasi_serve::shutdown::Signals;
use wasi_serve::{Config, logging, open_files, reload};

/// A request makes about 130 small heap allocations; mimalloc serves them
/// faster than glibc's malloc (measured in docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    no_error_backtraces();
    let matches = Config::command()
        .try_get_matches()
        .unwrap_or_else(|err| usage_error(err));
    let config = Config::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    config.check().unwrap_or_else(|err| err.exit());
    // `--addr` set on the command line or in the environment, not defaulted.
    let addr_given = matches!(
        matches.value_source("addr"),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    );
    // Before any thread starts: this clears LISTEN_FDS and LISTEN_PID.
    let inherited = Inherited::take();
    logging::init(config.log_format, config.log_queue_lines);
    let json = matches!(config.log_format, LogFormat::Json);
    let result = inherited.and_then(|inherited| run(config, addr_given, inherited));
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
            // Not `eprintln!`, which panics when stderr is a closed pipe.
            let _ = writeln!(std::io::stderr(), "error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Exits on a command-line error (or prints `--help` or `--version`),
/// naming the environment variable a bad value came from.
fn usage_error(mut err: clap::Error) -> ! {
    use clap::error::{ContextKind, ContextValue};
    let args: Vec<_> = std::env::args_os().collect();
    if let Some(var) = wasi_serve::config::value_from_env(&err, &args) {
        let mut tips = match err.get(ContextKind::Suggested) {
            Some(ContextValue::StyledStrs(tips)) => tips.clone(),
            _ => Vec::new(),
        };
        tips.push(format!("that value comes from the environment variable {var}").into());
        err.insert(ContextKind::Suggested, ContextValue::StyledStrs(tips));
    }
    err.exit()
}

/// Raises the open-files limit ([`open_files`]), and says so; warns when it
/// is still below what `--max-concurrent-requests` needs: a connection for
/// each request in flight and for each waiting for a slot (as many again),
/// and [`open_files::RESERVED`] more.
fn raise_open_files(config: &Config) {
    let requests = u64::from(config.limits.max_concurrent_requests);
    let needed = 2 * requests + open_files::RESERVED;
    let limit = match open_files::raise() {
        Ok(limit) => limit,
        Err(err) => {
            tracing::warn!("could not read the open files limit: {err}");
            return;
        }
    };
    if limit.now > limit.before {
        tracing::info!(
            "open files limit raised from {} to {}",
            limit.before,
            limit.now
        );
    }
    if let Some(err) = &limit.refused {
        tracing::warn!("could not raise the open files limit: {err}");
    }
    if limit.now < needed {
        tracing::warn!(
            "the open files limit is {}, below the {needed} descriptors \
             --max-concurrent-requests {requests} needs (a connection for each request in \
             flight and each waiting, and {} more): past it, new connections wait while \
             accept fails. Raise the hard limit (`ulimit -Hn`, or LimitNOFILE= under systemd)",
            limit.now,
            open_files::RESERVED
        );
    }
}

/// Errors built inside wasmtime capture a stack backtrace whenever
/// `RUST_BACKTRACE` is set, and wasmtime builds one on every WASI 0.3
/// request (to cancel the finished guest's fiber): 8% of that request's
/// time, measured. The host never prints those backtraces, so unless the
/// operator asks for them with `RUST_LIB_BACKTRACE`, error backtraces are
/// off. Panics still print theirs as `RUST_BACKTRACE` says.
fn no_error_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: called first thing in `main`, before any other thread
        // exists, so nothing reads the environment concurrently.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
}

fn run(config: Config, addr_given: bool, inherited: Inherited) -> Result<()> {
    raise_open_files(&config);
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
    let result = tokio.block_on(async {
        let mut signals = Signals::new()?;
        let hangup = reload::Hangup::install()?;
        if !inherited.is_empty() {
            tracing::info!("serving on the sockets systemd passed (socket activation)");
        }
        let listeners = inherited
            .into_listeners(config.addr, addr_given, config.admin_addr)
            .await?;
        // A signal while the component is read and compiled stops the start.
        let app = tokio::select! {
            app = App::start(&config, listeners, Some(hangup)) => app?,
            signal = signals.recv() => {
                tracing::info!("received {signal} while starting; exiting");
                return Ok(());
            }
        };
        tracing::info!(workers = cpus, "async runtime started");
        // Not `println!`, which panics when stdout is a closed pipe (as
        // behind `| head -1`): the server runs on whether anyone reads this.
        let mut stdout = std::io::stdout();
        let _ = writeln!(stdout, "listening on {}", app.url());
        if let Some(admin) = app.admin_addr() {
            let _ = writeln!(stdout, "admin on http://{admin}");
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
    });
    // A reload still compiling, or a component still being read at start
    // (from a slow disk, say), is not waited for: dropping the runtime would
    // wait for it, past `--shutdown-timeout`. The worker threads are given a
    // moment to drop the tasks left, whose log lines (a 499, a response cut
    // off) are then flushed below.
    tokio.shutdown_timeout(std::time::Duration::from_millis(250));
    result
}
