//! The command line: every option documented, typed, and readable from the
//! environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::outbound::OriginPattern;

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
    /// Defaults to `$XDG_CACHE_HOME/wasi-serve` (or `~/.cache/wasi-serve`).
    /// Entries are keyed by wasmtime version and engine settings. Only the
    /// `compiled` subdirectory is written (and pruned); nothing else in DIR.
    #[arg(long, env = "WASI_SERVE_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Compile the component from scratch on every start.
    #[arg(long, env = "WASI_SERVE_NO_CACHE", conflicts_with = "cache_dir")]
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
    /// `wasi_serve_log_lines_dropped_total`.
    #[arg(
        long,
        env = "WASI_SERVE_LOG_QUEUE_LINES",
        value_name = "LINES",
        default_value_t = 65536,
        value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u32).range(1..), |lines| lines as usize)
    )]
    pub log_queue_lines: usize,

    /// Reload the component when its file changes (SIGHUP reloads it too,
    /// with or without this flag). Requests in flight finish on the old one.
    #[arg(long, env = "WASI_SERVE_WATCH")]
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

    /// Longest a request may take, from its arrival to the guest's last byte;
    /// past it a guest is interrupted (even in an endless loop) and the
    /// client gets 504.
    #[arg(
        long,
        env = "WASI_SERVE_REQUEST_TIMEOUT",
        default_value = "30s",
        value_parser = parse_duration,
    )]
    pub request_timeout: Duration,

    /// Most linear memory one instance may grow to (e.g. `128MiB`); a guest
    /// that needs more fails alone with a 500.
    #[arg(
        long,
        env = "WASI_SERVE_MAX_MEMORY",
        default_value = "128MiB",
        value_parser = parse_size,
    )]
    pub max_memory: u64,

    /// Most requests served at once; each holds one instance. As many again
    /// may wait up to `--queue-timeout` for a slot, then get 503; past that
    /// queue, 503 at once.
    #[arg(
        long,
        env = "WASI_SERVE_MAX_CONCURRENT_REQUESTS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u32).range(1..=100_000),
    )]
    pub max_concurrent_requests: u32,

    /// How long a request may wait for a free slot before it gets 503.
    #[arg(
        long,
        env = "WASI_SERVE_QUEUE_TIMEOUT",
        default_value = "1s",
        value_parser = parse_duration,
    )]
    pub queue_timeout: Duration,

    /// Largest request body accepted (e.g. `10MiB`); larger ones get 413.
    #[arg(
        long,
        env = "WASI_SERVE_MAX_REQUEST_BODY",
        default_value = "10MiB",
        value_parser = parse_size,
    )]
    pub max_request_body: u64,

    /// Largest request head (request line and headers) accepted, 8KiB to
    /// 1MiB; larger ones get 431.
    #[arg(
        long,
        env = "WASI_SERVE_MAX_HEADER_SIZE",
        default_value = "64KiB",
        value_parser = parse_size,
    )]
    pub max_header_size: u64,

    /// How long a client may take to send a request's headers (and to start
    /// talking after connecting); slower connections are closed.
    #[arg(
        long,
        env = "WASI_SERVE_HEADER_READ_TIMEOUT",
        default_value = "10s",
        value_parser = parse_duration,
    )]
    pub header_read_timeout: Duration,

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
    /// The compile cache directory in effect, if any.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        self.cache_dir.clone().or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache"))
                })?;
            Some(base.join("wasi-serve"))
        })
    }
}

/// The longest duration accepted for any timeout.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// A duration such as `30s`, `500ms` or `2m`, from zero (refused) to a day.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if duration.is_zero() {
        return Err("must be more than zero".into());
    }
    if duration > MAX_DURATION {
        return Err("must be at most a day (24h)".into());
    }
    Ok(duration)
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

/// A byte size such as `128MiB`, `64KiB`, `1GiB` or a plain number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as `64KiB` or `128MiB`"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        other => return Err(format!("unknown unit `{other}` (use B, KiB, MiB or GiB)")),
    };
    match number.checked_mul(scale) {
        Some(0) => Err("must be more than zero".into()),
        Some(bytes) => Ok(bytes),
        None => Err(format!("`{text}` is too large")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("128MiB"), Ok(128 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }

    #[test]
    fn durations_must_be_positive() {
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("300000000000y").is_err());
        assert_eq!(parse_duration("24h"), Ok(MAX_DURATION));
    }

    /// Properties of the size and duration parsers, over arbitrary input.
    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        const UNITS: [(&str, u64); 7] = [
            ("", 1),
            ("B", 1),
            ("KiB", 1 << 10),
            ("K", 1 << 10),
            ("MiB", 1 << 20),
            ("MB", 1 << 20),
            ("GiB", 1 << 30),
        ];

        proptest! {
            /// Any text parses or is refused with a message; nothing panics.
            #[test]
            fn parsers_never_panic(text in any::<String>()) {
                let _ = parse_size(&text);
                let _ = parse_duration(&text);
                let _ = parse_env_var(&text);
            }

            /// `N<unit>` is N times the unit, or refused when that is zero
            /// or does not fit in 64 bits.
            #[test]
            fn sizes_scale_by_their_unit(n in any::<u64>(), unit in 0..UNITS.len()) {
                let (suffix, scale) = UNITS[unit];
                let parsed = parse_size(&format!("{n}{suffix}"));
                match n.checked_mul(scale) {
                    Some(0) | None => prop_assert!(parsed.is_err()),
                    Some(bytes) => prop_assert_eq!(parsed, Ok(bytes)),
                }
            }

            /// A duration in milliseconds is accepted from 1 ms to a day,
            /// and refused outside.
            #[test]
            fn durations_are_bounded(ms in 0u64..200_000_000) {
                let parsed = parse_duration(&format!("{ms}ms"));
                if ms == 0 || ms > 86_400_000 {
                    prop_assert!(parsed.is_err());
                } else {
                    prop_assert_eq!(parsed, Ok(Duration::from_millis(ms)));
                }
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
