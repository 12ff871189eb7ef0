//! A `wasi:http/proxy` component for the host's tests.
//!
//! It answers differently from the greeter (so a test can tell which of the
//! two served a request) and misbehaves on request, one path per way a guest
//! can go wrong:
//!
//! | path | behaviour |
//! | --- | --- |
//! | `/{name}` | 200 `Howdy, {name}!` (no decoding) |
//! | `/trap` | traps before setting a response |
//! | `/no-response` | returns without setting a response |
//! | `/trap-after-headers` | sends 200 and part of a body, then traps |
//! | `/unfinished` | sends 200 and part of a body, then returns without finishing or dropping the body |
//! | `/loop` | spins forever |
//! | `/alloc` | allocates memory without end |
//! | `/sleep/{ms}` | waits `ms` milliseconds, then 200 `slept {ms}ms` |
//! | `/stream/{n}` | 200 with a body of `n` bytes |
//! | `/echo` | 200 with the request body |
//! | `/print/{n}` | writes a line to stdout and stderr, then `n` 100-byte lines to stdout; 200 |
//! | `/status/{code}` | answers `code` with the body `status {code}` |
//! | `/fetch?{url}` | GETs `url` through `wasi:http/outgoing-handler`; 200 with its body, or 502 with the error |
//! | `/env` | 200 with the guest's environment, one `KEY=VALUE` line each |
//! | `/print-lines` | writes `before`, an empty line and `after` to stdout; 200 |
//! | `/count` | 200 with how many requests this instance has served, this one included |
//! | `/hoard` | creates header-field resources without end, never dropping one |
//! | `/empty-writes` | sends 200 and `start`, then writes empty chunks to its body forever |
//! | `/empty-prints` | writes empty chunks to stdout forever, never answering |

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use guest_rt as _;

wit_bindgen::generate!({
    path: "../wit",
    world: "test-guest",
    generate_all,
});

use exports::wasi::http::incoming_handler::Guest;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};
use wasi::io::streams::{InputStream, OutputStream, StreamError};

const CHUNK: usize = 4096;

/// Requests this instance has served, for `/count`.
static SERVED: AtomicU32 = AtomicU32::new(0);

struct TestGuest;

impl Guest for TestGuest {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let (first, rest) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path.trim_start_matches('/'), ""));
        match first {
            "trap" => panic!("asked to trap"),
            "no-response" => {}
            "trap-after-headers" => {
                let (body, stream) = start(response_out, 200, None);
                write_all(&stream, b"partial");
                // Trap with the body still open: the response is cut short.
                let _open = (stream, body);
                panic!("asked to trap after headers");
            }
            "unfinished" => {
                let (body, stream) = start(response_out, 200, None);
                write_all(&stream, b"partial");
                drop(stream);
                // Neither finished nor dropped (a drop would abort it): the
                // handle stays in the instance's table when it returns.
                core::mem::forget(body);
            }
            "loop" => {
                let mut n = 0u64;
                loop {
                    n = core::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(core::hint::black_box(alloc::vec![1u8; 1 << 20]));
                }
            }
            "sleep" => {
                let ms: u64 = rest.parse().unwrap_or(0);
                wasi::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
                respond(response_out, 200, format!("slept {ms}ms").as_bytes());
            }
            "stream" => {
                let len: usize = rest.parse().unwrap_or(0);
                let (body, stream) = start(response_out, 200, Some(len));
                let chunk = [b'x'; CHUNK];
                let mut left = len;
                while left > 0 {
                    let n = left.min(CHUNK);
                    write_all(&stream, &chunk[..n]);
                    left -= n;
                }
                drop(stream);
                OutgoingBody::finish(body, None).expect("finish body");
            }
            "echo" => {
                let body = read_body(&request);
                respond(response_out, 200, &body);
            }
            "print" => {
                let line = format!("hello from {method:?} {path}\n", method = request.method());
                write_all(&wasi::cli::stdout::get_stdout(), line.as_bytes());
                write_all(&wasi::cli::stderr::get_stderr(), b"and to stderr\n");
                let filler = [b'.'; 99];
                let stdout = wasi::cli::stdout::get_stdout();
                for _ in 0..rest.parse::<usize>().unwrap_or(0) {
                    write_all(&stdout, &filler);
                    write_all(&stdout, b"\n");
                }
                respond(response_out, 200, b"printed");
            }
            "env" => {
                let mut text = String::new();
                for (key, value) in wasi::cli::environment::get_environment() {
                    text.push_str(&format!("{key}={value}\n"));
                }
                respond(response_out, 200, text.as_bytes());
            }
            "print-lines" => {
                write_all(&wasi::cli::stdout::get_stdout(), b"before\n\nafter\n");
                respond(response_out, 200, b"printed");
            }
            "count" => {
                let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
                respond(response_out, 200, format!("{served}").as_bytes());
            }
            "hoard" => loop {
                core::mem::forget(Fields::new());
            },
            "empty-writes" => {
                let (_body, stream) = start(response_out, 200, None);
                write_all(&stream, b"start");
                loop {
                    stream.blocking_write_and_flush(&[]).expect("empty write");
                }
            }
            "empty-prints" => {
                let stdout = wasi::cli::stdout::get_stdout();
                loop {
                    stdout.blocking_write_and_flush(&[]).expect("empty print");
                }
            }
            "status" => {
                let status = rest.parse().unwrap_or(500);
                respond(response_out, status, format!("status {status}").as_bytes());
            }
            "fetch" => match fetch(query) {
                Ok(body) => respond(response_out, 200, &body),
                Err(err) => respond(response_out, 502, err.as_bytes()),
            },
            name => respond(response_out, 200, format!("Howdy, {name}!").as_bytes()),
        }
    }
}

/// Sets a response with `status`; returns its body and the body's stream.
fn start(
    response_out: ResponseOutparam,
    status: u16,
    len: Option<usize>,
) -> (OutgoingBody, OutputStream) {
    let mut headers = alloc::vec![("content-type".to_string(), b"text/plain".to_vec())];
    if let Some(len) = len {
        headers.push(("content-length".to_string(), len.to_string().into_bytes()));
    }
    let response = OutgoingResponse::new(Fields::from_list(&headers).expect("headers"));
    response.set_status_code(status).expect("status");
    let body = response.body().expect("body");
    ResponseOutparam::set(response_out, Ok(response));
    let stream = body.write().expect("stream");
    (body, stream)
}

fn respond(response_out: ResponseOutparam, status: u16, bytes: &[u8]) {
    let (body, stream) = start(response_out, status, Some(bytes.len()));
    write_all(&stream, bytes);
    drop(stream);
    OutgoingBody::finish(body, None).expect("finish body");
}

fn write_all(stream: &OutputStream, bytes: &[u8]) {
    for chunk in bytes.chunks(CHUNK) {
        stream.blocking_write_and_flush(chunk).expect("write");
    }
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let body = request.consume().expect("body");
    read_all(&body.stream().expect("stream")).expect("read request body")
}

fn read_all(stream: &InputStream) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(bytes),
            Err(StreamError::LastOperationFailed(err)) => return Err(err.to_debug_string()),
        }
    }
}

/// GETs `url` (`http://host[:port]/path`) and returns the response body.
fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest),
        Some(("https", rest)) => (Scheme::Https, rest),
        _ => return Err(format!("not an http(s) url: {url}")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&Method::Get).expect("method");
    request.set_scheme(Some(&scheme)).expect("scheme");
    request.set_authority(Some(authority)).expect("authority");
    request.set_path_with_query(Some(path)).expect("path");
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    let response = loop {
        if let Some(result) = future.get() {
            break result.expect("taken once").map_err(|e| format!("{e:?}"))?;
        }
        future.subscribe().block();
    };
    let body = response.consume().expect("body");
    read_all(&body.stream().expect("stream"))
}

export!(TestGuest);
