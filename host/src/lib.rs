//! `wasi-serve`: serves any `wasi:http/proxy` component over HTTP, running
//! every request in a fresh, isolated instance of it.
//!
//! # Layout
//!
//! Data flows one way, from the socket to the guest and back:
//!
//! - [`config`]: the command line (every flag also an environment variable);
//!   [`units`]: the sizes and durations written on it.
//! - [`limits`]: the limits, each declared once with where it is enforced;
//!   admission into instance slots; the memory limiter.
//!   [`client_limit`]: the requests each client address has at once.
//! - [`runtime`]: built once: engine (pooling allocator, epoch ticker) and
//!   linker; compiles and checks components, so a bad one never serves.
//!   [`pagemap`]: whether the kernel's page scan can tell which memory
//!   pages an instance wrote, which decides how its slot is reset.
//! - [`state`]: what each request's store holds, and what it grants the guest:
//!   [`guest_config`] (`wasi:config`), [`preopens`] (`--dir`), [`keyvalue`]
//!   (`wasi:keyvalue` on SQLite or Redis).
//! - [`outbound`]: the allow-list for the guests' outgoing HTTP.
//! - [`p3_client`]: WASI 0.3's outgoing `send`, repaired for requests
//!   without a path.
//! - [`guest_output`]: the guests' stdout and stderr, into the log.
//! - [`proxy`]: the component being served, and one request through it:
//!   admission, fresh store, instantiate, call the handler under a timeout.
//! - [`abi`]: the two handler ABIs (WASI 0.2 `incoming-handler`, WASI 0.3
//!   `handler`) behind one interface, and which one a component has.
//! - [`body`]: the request body under its limit, the response body as the
//!   client gets it.
//! - [`response_body`]: a WASI 0.2 response body the guest left open is cut
//!   off, not ended as if complete.
//! - [`reload`]: hot swap on SIGHUP or file change.
//! - [`access_log`]: the line per request, formatted without the
//!   subscriber's generic machinery when the log is plain text.
//! - [`logging`]: the log on stderr, written by a thread of its own through
//!   a bounded queue; lines dropped when it is full are counted.
//! - [`metrics`]: Prometheus metrics.
//! - [`admin`]: the admin listener (`/metrics`, `/healthz`, `/readyz`), given
//!   the metrics and a readiness handle.
//! - [`request_head`]: the HTTP/1 head rules hyper leaves to us (`Host`,
//!   the request target's form): 400 before any guest runs.
//! - [`linger`]: early answers (413, 431, 503) that still reach a client
//!   busy sending its request: lingering close, HTTP/2 bodies drained.
//! - [`server`]: accept loop, HTTP/1.1 and HTTP/2 connections,
//!   errors turned into responses, graceful drain. [`connections`]: how
//!   many are open at once.
//! - [`listen`]: the listening sockets: passed by systemd (socket
//!   activation) or bound from the flags.
//! - [`shutdown`]: the stop signals (Ctrl-C and SIGTERM).
//! - [`open_files`]: the open-files limit, raised at start (`main.rs`).
//! - [`tls`]: the HTTPS acceptor (rustls, ALPN h2 and http/1.1).
//!
//! [`app`] starts all of it in one call ([`app::App::start`], given the
//! bound listeners). `main.rs` only parses the command line, starts logging,
//! binds, calls it and waits for a stop signal, so tests run the same server
//! in-process on port 0, admin, TLS and reload included.

pub mod abi;
pub mod access_log;
pub mod admin;
pub mod app;
pub mod body;
pub mod client_limit;
pub mod config;
pub mod connections;
pub mod guest_config;
pub mod guest_output;
pub mod idle;
pub mod keyvalue;
pub mod limits;
pub mod linger;
pub mod listen;
pub mod logging;
pub mod metrics;
pub mod open_files;
pub mod outbound;
pub mod p3_client;
pub mod pagemap;
pub mod preopens;
pub mod proxy;
pub mod reload;
pub mod request_head;
pub mod response_body;
pub mod response_head;
pub mod runtime;
pub mod send_timeout;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod tls;
pub mod units;

pub use config::Config;
pub use proxy::Proxy;
