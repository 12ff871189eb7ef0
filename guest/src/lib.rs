//! The greeter: a `wasi:http/proxy` component answering `GET /{name}` with
//! `Hello, {name}!`.
//!
//! This file is only protocol glue; what to answer is decided by the pure
//! [`greeting::respond`]. On wasm the crate is `no_std`: the standard library
//! of `wasm32-wasip2` would import `wasi:cli/environment`, `exit` and
//! `terminal-*`, which are outside the proxy world, so hosts that link only
//! that world could not run us.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

pub mod greeting;

use guest_rt::OrTrap;

use greeting::{Reply, Verb};

wit_bindgen::generate!({
    path: "../wit",
    world: "greeter",
    generate_all,
});

use exports::wasi::http::incoming_handler::Guest;
use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// Most bytes `blocking-write-and-flush` takes in one call.
const WRITE_CHUNK: usize = 4096;

struct Greeter;

impl Guest for Greeter {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let verb = match request.method() {
            Method::Get => Verb::Get,
            Method::Head => Verb::Head,
            _ => Verb::Other,
        };
        let path = request.path_with_query().unwrap_or_default();
        drop(request);
        send(greeting::respond(verb, &path), response_out);
    }
}

/// Sends `reply` as the response. Failures here mean the host or the client
/// went away; there is nobody left to answer, so they trap (`or_trap`: an
/// `expect` would pull `core::fmt` into every instance, see `greeting.rs`).
fn send(reply: Reply, response_out: ResponseOutparam) {
    let fields = Fields::from_list(&reply.headers()).or_trap();
    let response = OutgoingResponse::new(fields);
    // A new response is a 200; saying so again would be one more host call
    // on every greeting.
    if reply.status != 200 {
        response.set_status_code(reply.status).or_trap();
    }
    let body = response.body().or_trap();
    ResponseOutparam::set(response_out, Ok(response));
    if reply.send_body {
        let stream = body.write().or_trap();
        for chunk in reply.body.as_bytes().chunks(WRITE_CHUNK) {
            stream.blocking_write_and_flush(chunk).or_trap();
        }
    }
    let finished = OutgoingBody::finish(body, None);
    // A HEAD response declares the GET body's length but sends no body; a
    // host that checks the written length against it refuses the finish,
    // which is expected here and not an error.
    if reply.send_body {
        finished.or_trap();
    }
}

export!(Greeter);
