//! The greeter for WASI 0.3: a `wasi:http/service` component exporting
//! `wasi:http/handler@0.3.0`, answering exactly as the 0.2 greeter does.
//!
//! This file is only protocol glue; what to answer is decided by
//! [`greeting::respond`], the same file the 0.2 greeter uses. `no_std` for
//! the same reason as that one: the standard library would import
//! `wasi:cli/*@0.2`, outside `wasi:http/service`. wit-bindgen's async
//! runtime needs only `core` and `alloc`.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

// What to answer, decided in one place for both greeters.
#[path = "../../src/greeting.rs"]
pub mod greeting;

use guest_rt::OrTrap;

use greeting::{Reply, Verb};

wit_bindgen::generate!({
    path: "../../wit/p3",
    world: "greeter",
    generate_all,
});

use exports::wasi::http::handler::Guest;
use wasi::http::types::{ErrorCode, Fields, Method, Request, Response};

struct Greeter;

impl Guest for Greeter {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let verb = match request.get_method() {
            Method::Get => Verb::Get,
            Method::Head => Verb::Head,
            _ => Verb::Other,
        };
        let path = request.get_path_with_query().unwrap_or_default();
        // The request body is never read: dropping the request tells the
        // host so, whatever the client sent.
        drop(request);
        Ok(response(greeting::respond(verb, &path)))
    }
}

/// Builds the response for `reply`. Its body, if any, is written by a task
/// that runs after `handle` has returned: the host starts reading the body
/// stream only once it has the response, so writing it inside `handle`
/// would wait forever.
fn response(reply: Reply) -> Response {
    // `or_trap`, not `expect`: see `greeting.rs`.
    let fields = Fields::from_list(&reply.headers()).or_trap();

    // HEAD: the GET headers (its `content-length` included) and no body
    // stream at all. An empty stream would not do: the host checks the bytes
    // written against `content-length` and would fail the response.
    let contents = reply.send_body.then(|| {
        let (mut writer, reader) = wit_stream::new();
        let body = reply.body.into_bytes();
        wit_bindgen::spawn_local(async move {
            // Whatever is left unwritten had nobody to read it (the client
            // went away); there is nobody to tell. Dropping the writer at the
            // end closes the stream: the end of the body.
            let _unsent = writer.write_all(body).await;
        });
        reader
    });

    // No trailers. A dropped writer sends the default given here, `Ok(None)`,
    // in the background; the task lives until the host has read it.
    let (trailers_writer, trailers) = wit_future::new(|| Ok(None));
    drop(trailers_writer);

    // The second value reports whether the response was sent; nobody waits
    // for it.
    let (response, _sent) = Response::new(fields, contents, trailers);
    // A new response is a 200; saying so again would be one more host call
    // on every greeting.
    if reply.status != 200 {
        response.set_status_code(reply.status).or_trap();
    }
    response
}

export!(Greeter);
