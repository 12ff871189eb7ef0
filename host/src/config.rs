//! The command line: every option documented, typed, and readable from the
//! environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
// For the environment variables of switches: `1`, `yes`, `on`, `0`, `no`,
// `off` as well as `true` and `false`.
use clap::builder::BoolishValueParser;

use crate::guest_config::ConfigArgs;
use crate::keyvalue::KeyValueArgs;
use crate::limits::Limits;
use crate::outbound::OriginPattern;
use crate::preopens::{Preopen, parse_dir};
use crate::units::parse_duration;

/// The most `--log-queue-lines`: the queue's slots are allocated at start.
const MAX_LOG_QUEUE_LINES: i64 = 1 << 20;

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

    /// Where compiled code is cached, so a restart does not compile again.
    /// Defaults to `$XDG_CACHE_HOME/wasi-serve` (or `~/.cache/wasi-serve`);
    /// if that cannot be used, the server warns and runs uncached. Entries are keyed by wasmtime version and engine settings. Only the
    /// `compiled` subdirectory is written (and pruned); nothing else in DIR.
    #[arg(long, env = "WASI_SERVE_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Compile the component from scratch on every start.
    // Not clap's `conflicts_with`, which takes `WASI_SERVE_NO_CACHE=0` as
    // the flag given: see `Config::check`.
    #[arg(long, env = "WASI_SERVE_NO_CACHE", value_parser = BoolishValueParser::new())]
    pub no_cache: bool,

    /// Serve HTTPS with this certificate chain (PEM file); needs
    /// `--tls-key`. HTTP/2 and HTTP/1.1 are offered by ALPN.
    #[arg(
        long,
        env = "WASI_SERVE_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM file) for `--tls-cert`.
    #[arg(
        long,
        env = "WASI_SERVE_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Serve `/metrics` (Prometheus), `/healthz` and `/readyz` on this
    /// address (off by default). Port 0 picks a free port; the address
    /// actually bound is printed on start.
    #[arg(long, env = "WASI_SERVE_ADMIN_ADDR", value_name = "ADDR")]
    pub admin_addr: Option<SocketAddr>,

    /// Log format on stderr: `text` for people, `json` (one object per line)
    /// for log collectors.
    #[arg(long, env = "WASI_SERVE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log lines queued for the thread that writes stderr. When stderr
    /// cannot keep up and the queue is full, further lines are dropped (a
    /// request never waits for its log line) and counted in
    /// `wasi_serve_log_lines_dropped_total`. The queue's slots are
    /// allocated at start, 32 bytes each: 16,384 lines hold a third of a
    /// second of a busy server's access log (46,000 requests/s measured) in
    /// 512 KiB; 65,536 cost 1.5 MiB more of resident memory. At most
    /// 1,048,576 (32 MiB of slots).
    #[arg(
        long,
        env = "WASI_SERVE_LOG_QUEUE_LINES",
        value_name = "LINES",
        default_value_t = 16384,
        value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u32).range(1..=MAX_LOG_QUEUE_LINES), |lines| lines as usize)
    )]
    pub log_queue_lines: usize,

    /// Reload the component when its file changes (SIGHUP reloads it too,
    /// with or without this flag). Requests in flight finish on the old one.
    #[arg(long, env = "WASI_SERVE_WATCH", value_parser = BoolishValueParser::new())]
    pub watch: bool,

    /// Let guests make outgoing HTTP requests to these origins:
    /// `scheme://host[:port]`, comma-separated or repeated; `*.example.com`
    /// matches subdomains. A missing port means the scheme's default. By
    /// default every outgoing request is denied.
    #[arg(
        long,
        env = "WASI_SERVE_ALLOW_OUTBOUND",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub allow_outbound: Vec<OriginPattern>,

    /// Give guests the environment variable KEY with VALUE; `KEY` alone
    /// passes the host's own value. Repeatable (the environment variable
    /// form holds one). Guests see no environment variables otherwise.
    #[arg(
        long = "env",
        env = "WASI_SERVE_ENV",
        value_name = "KEY[=VALUE]",
        value_parser = parse_env_var,
    )]
    pub env: Vec<(String, String)>,

    /// Give guests a host directory: `HOST[::GUEST][:ro|:rw]`, read-only
    /// unless `:rw`, seen at GUEST (by default the host path). Repeatable
    /// (the environment variable form holds one).
    #[arg(long = "dir", env = "WASI_SERVE_DIR", value_name = "HOST[::GUEST]", value_parser = parse_dir)]
    pub dirs: Vec<Preopen>,

    /// `wasi:config` values (see [`ConfigArgs`]).
    #[command(flatten)]
    pub guest_config: ConfigArgs,

    /// The `wasi:keyvalue` store (see [`KeyValueArgs`]).
    #[command(flatten)]
    pub keyvalue: KeyValueArgs,

    /// The limits on guests and clients (see [`Limits`]).
    #[command(flatten)]
    pub limits: Limits,

    /// How long requests in flight may take to finish once Ctrl-C or SIGTERM
    /// is received; then they are cut. A second signal exits at once.
    #[arg(
        long,
        env = "WASI_SERVE_SHUTDOWN_TIMEOUT",
        default_value = "10s",
        value_parser = parse_duration,
    )]
    pub shutdown_timeout: Duration,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// What clap cannot check itself; a usage error (exit 2) otherwise.
    pub fn check(&self) -> Result<(), clap::Error> {
        if self.no_cache && self.cache_dir.is_some() {
            return Err(<Self as clap::CommandFactory>::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "--no-cache and --cache-dir cannot be used together",
            ));
        }
        Ok(())
    }

    /// The compile cache directory in effect, if any; a relative one is
    /// taken from the working directory (wasmtime's cache wants it absolute).
    /// Without `--cache-dir`: `$XDG_CACHE_HOME/wasi-serve`, else
    /// `$HOME/.cache/wasi-serve`, where an empty or relative value counts
    /// as unset (as the XDG base directory rules say).
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        let absolute = |name| {
            std::env::var_os(name)
                .map(PathBuf::from)
                .filter(|dir| dir.is_absolute())
        };
        let dir = self.cache_dir.clone().or_else(|| {
            let base = absolute("XDG_CACHE_HOME")
                .or_else(|| absolute("HOME").map(|home| home.join(".cache")))?;
            Some(base.join("wasi-serve"))
        })?;
        Some(std::path::absolute(&dir).unwrap_or(dir))
    }
}

/// The environment variable a rejected value came from, when it did: clap's
/// message names only the flag (`--max-memory`), which then appears nowhere
/// on the command line `args`.
pub fn value_from_env(err: &clap::Error, args: &[std::ffi::OsString]) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        err.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    // `--max-memory <MAX_MEMORY>`
    let long = arg.split(' ').next()?.strip_prefix("--")?;
    let command = <Config as clap::CommandFactory>::command();
    let var = command
        .get_arguments()
        .find(|flag| flag.get_long() == Some(long))?
        .get_env()?
        .to_str()?
        .to_owned();
    let flag = format!("--{long}");
    let on_command_line = args.iter().any(|arg| {
        arg.to_str()
            .is_some_and(|arg| arg == flag || arg.starts_with(&format!("{flag}=")))
    });
    (!on_command_line && std::env::var_os(&var).is_some()).then_some(var)
}

/// `KEY=VALUE`, or `KEY` for the host's own value of it.
fn parse_env_var(text: &str) -> Result<(String, String), String> {
    let (key, value) = match text.split_once('=') {
        Some((key, value)) => (key, value.to_string()),
        None => {
            let value = std::env::var(text)
                .map_err(|_| format!("`{text}` is not set in wasi-serve's own environment"))?;
            (text, value)
        }
    };
    if key.is_empty() {
        return Err(format!(
            "`{text}` names no variable (expected KEY=VALUE or KEY)"
        ));
    }
    Ok((key.to_string(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A relative `--cache-dir` is taken from the working directory: wasmtime
    /// refuses a relative one, and the server would not start.
    #[test]
    fn a_relative_cache_dir_is_made_absolute() {
        let config =
            Config::try_parse_from(["wasi-serve", "g.wasm", "--cache-dir", "cache/x"]).unwrap();
        let dir = config.cache_dir().unwrap();
        assert!(dir.is_absolute(), "{}", dir.display());
        assert_eq!(dir, std::env::current_dir().unwrap().join("cache/x"));
    }

    /// Properties of the environment-variable parser, over arbitrary input.
    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any text parses or is refused with a message; nothing panics.
            #[test]
            fn parsers_never_panic(text in any::<String>()) {
                let _ = parse_env_var(&text);
            }

            /// `KEY=VALUE` splits at the first `=`; the value may hold more.
            #[test]
            fn env_assignments_split_at_the_first_equals(
                key in "[A-Za-z_][A-Za-z0-9_]{0,12}",
                value in any::<String>(),
            ) {
                let parsed = parse_env_var(&format!("{key}={value}"));
                prop_assert_eq!(parsed, Ok((key, value)));
            }
        }
    }
}
