//! Integration tests: the real `wasi-serve` host, the real guest components,
//! real HTTP over loopback.

mod cli;
mod component;
mod deploy;
mod grants;
mod greeting;
mod guest_failures;
mod keyvalue;
mod limits;
mod linger;
mod logging;
mod operations;
mod outbound;
mod protocol;
mod reload;
mod security;
mod support;
mod tls;
