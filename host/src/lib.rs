//! `wasi-serve`: serves any `wasi:http/proxy` component over HTTP, running
//! every request in a fresh, isolated instance of it.
//!
//! # Layout
//!
//! Data flows one way, from the socket to the guest and back:
//!
//! - [`config`]: the command line (every flag also an environment variable).
//! - [`runtime`]: built once at start-up: engine, linker, compiled component,
//!   pre-instance. Rejects a bad component before anything listens.
//! - [`state`]: what each request's store holds, and what it grants the guest.
//! - [`proxy`]: one request: fresh store, instantiate, call the guest's
//!   handler, await its response.
//! - [`server`]: accept loop, HTTP/1.1 and HTTP/2 connections, the access log,
//!   errors turned into responses, graceful drain.
//! - [`shutdown`]: the signal future (Ctrl-C and SIGTERM).
//!
//! `main.rs` only parses the command line, starts logging and calls
//! [`server::run`] with a bound listener, so tests run the same server
//! in-process on port 0.

pub mod config;
pub mod proxy;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod state;

pub use config::Config;
pub use runtime::Runtime;
