//! The test guest for WASI 0.3: a `wasi:http/service` component exporting
//! `wasi:http/handler@0.3.0`, the twin of the 0.2 test guest.
//!
//! It answers as that one does (so the tests can be shared) and misbehaves
//! on request, one path per way a guest can go wrong:
//!
//! | path | behaviour |
//! | --- | --- |
//! | `/{name}` | 200 `Howdy, {name}!` (no decoding) |
//! | `/trap` | traps before returning a response |
//! | `/error-code` | returns the error `internal-error("asked to fail")` instead of a response |
//! | `/trap-after-headers` | returns 200; its body task writes `partial`, then traps |
//! | `/loop` | spins forever |
//! | `/await-forever` | waits forever (a day at a time) without answering |
//! | `/alloc` | allocates memory without end |
//! | `/sleep/{ms}` | waits `ms` milliseconds, then 200 `slept {ms}ms` |
//! | `/stream/{n}` | 200 with a body of `n` bytes |
//! | `/echo` | 200 with the request body |
//! | `/print/{n}` | writes a line to stdout and stderr, then `n` 100-byte lines to stdout; 200 |
//! | `/status/{code}` | answers `code` with the body `status {code}` |
//! | `/fetch?{url}` | GETs `url` through `wasi:http/client` (with no path if `url` has none); 200 with its body, or 502 with the error |
//! | `/env` | 200 with the guest's environment, one `KEY=VALUE` line each |
//! | `/hoard` | creates header-field resources without end, never dropping one |
//! | `/print-lines` | writes `before`, an empty line and `after` to stdout; 200 |
//! | `/count` | 200 with how many requests this instance has served, this one included |
//! | `/empty-writes` | returns 200; its body task writes `start`, then empty chunks forever |
//! | `/empty-prints` | writes empty chunks to stdout forever, never answering |
//! | `/config/{key}` | 200 with `wasi:config`'s value for `key`, 404 if absent |
//! | `/incr/{key}` | increments `key` in the default `wasi:keyvalue` bucket; 200 with the count, 503 `store error: …` |
//!
//! Bodies are written by tasks spawned before `handle` returns: the host
//! reads a body only once it has the response. A write the host refuses (it
//! dropped the body or stdout) traps, as a failed write does in the 0.2 guest.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use guest_rt as _;

wit_bindgen::generate!({
    path: ["../../wit/p3", "../../wit/config", "../../wit/keyvalue", "../../wit/p3-grants"],
    world: "greeter:grants-p3/test-guest",
    generate_all,
});

use exports::wasi::http::handler::Guest;
use wasi::cli::{stderr, stdout};
use wasi::clocks::monotonic_clock::wait_for;
use wasi::http::client;
use wasi::http::types::{ErrorCode, Fields, Method, Request, Response, Scheme, Trailers};
use wit_bindgen::{FutureReader, StreamReader, StreamResult, StreamWriter, spawn_local};

const CHUNK: usize = 4096;
const MS: u64 = 1_000_000;
const DAY: u64 = 24 * 60 * 60 * 1000 * MS;

/// Requests this instance has served, for `/count`.
static SERVED: AtomicU32 = AtomicU32::new(0);

struct TestGuest;

impl Guest for TestGuest {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let target = request.get_path_with_query().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let (first, rest) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path.trim_start_matches('/'), ""));
        Ok(match first {
            "trap" => panic!("asked to trap"),
            "error-code" => {
                return Err(ErrorCode::InternalError(Some("asked to fail".into())));
            }
            "trap-after-headers" => {
                let (response, mut body) = start(200, None);
                spawn_local(async move {
                    send(&mut body, b"partial".to_vec()).await;
                    panic!("asked to trap after headers");
                });
                response
            }
            "loop" => {
                let mut n = 0u64;
                loop {
                    n = core::hint::black_box(n.wrapping_add(1));
                }
            }
            // Waiting on a clock, not on `core::future::pending()`: with
            // nothing to wait for, wit-bindgen's executor traps (it asserts
            // that a sleeping task has a waitable).
            "await-forever" => loop {
                wait_for(DAY).await;
            },
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(core::hint::black_box(alloc::vec![1u8; 1 << 20]));
                }
            }
            "sleep" => {
                let ms: u64 = rest.parse().unwrap_or(0);
                wait_for(ms * MS).await;
                respond(200, format!("slept {ms}ms").into_bytes())
            }
            "stream" => {
                let len: usize = rest.parse().unwrap_or(0);
                let (response, mut body) = start(200, Some(len));
                spawn_local(async move {
                    // One buffer for all chunks: `send` hands it back.
                    let mut chunk = Vec::with_capacity(CHUNK);
                    let mut left = len;
                    while left > 0 {
                        let n = left.min(CHUNK);
                        chunk.resize(n, b'x');
                        chunk = send(&mut body, chunk).await;
                        left -= n;
                    }
                });
                response
            }
            "echo" => {
                let (body, trailers) = Request::consume_body(request, unit_future());
                let bytes = read_all(body, trailers).await;
                respond(200, bytes.expect("read request body"))
            }
            "print" => {
                let line = format!(
                    "hello from {method:?} {path}\n",
                    method = request.get_method()
                );
                let (mut out, out_done) = output(stdout::write_via_stream);
                send(&mut out, line.into_bytes()).await;
                let (mut err, err_done) = output(stderr::write_via_stream);
                send(&mut err, b"and to stderr\n".to_vec()).await;
                drop(err);
                err_done.await.expect("print to stderr");
                let mut dots = Vec::with_capacity(100);
                for _ in 0..rest.parse::<usize>().unwrap_or(0) {
                    dots.resize(99, b'.');
                    dots.push(b'\n');
                    dots = send(&mut out, dots).await;
                }
                drop(out);
                out_done.await.expect("print to stdout");
                respond(200, b"printed".to_vec())
            }
            "env" => {
                let mut text = String::new();
                for (key, value) in wasi::cli::environment::get_environment() {
                    text.push_str(&format!("{key}={value}\n"));
                }
                respond(200, text.into_bytes())
            }
            "hoard" => loop {
                core::mem::forget(Fields::new());
            },
            "print-lines" => {
                let (mut out, out_done) = output(stdout::write_via_stream);
                send(&mut out, b"before\n\nafter\n".to_vec()).await;
                drop(out);
                out_done.await.expect("print to stdout");
                respond(200, b"printed".to_vec())
            }
            "count" => {
                let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
                respond(200, format!("{served}").into_bytes())
            }
            "empty-writes" => {
                let (response, mut body) = start(200, None);
                spawn_local(async move {
                    send(&mut body, b"start".to_vec()).await;
                    loop {
                        let (result, _) = body.write(Vec::new()).await;
                        assert!(result != StreamResult::Dropped, "empty write");
                    }
                });
                response
            }
            "empty-prints" => {
                let (mut out, _done) = output(stdout::write_via_stream);
                loop {
                    let (result, _) = out.write(Vec::new()).await;
                    assert!(result != StreamResult::Dropped, "empty print");
                }
            }
            "status" => {
                let status = rest.parse().unwrap_or(500);
                respond(status, format!("status {status}").into_bytes())
            }
            "fetch" => match fetch(query).await {
                Ok(body) => respond(200, body),
                Err(err) => respond(502, err.into_bytes()),
            },
            "config" => match wasi::config::store::get(rest) {
                Ok(Some(value)) => respond(200, value.into_bytes()),
                Ok(None) => respond(404, b"absent".to_vec()),
                Err(err) => respond(500, format!("{err:?}").into_bytes()),
            },
            "incr" => {
                use wasi::keyvalue::{atomics, store};
                let counted =
                    store::open("").and_then(|bucket| atomics::increment(&bucket, rest, 1));
                match counted {
                    Ok(n) => respond(200, format!("{n}").into_bytes()),
                    Err(err) => respond(503, format!("store error: {err:?}").into_bytes()),
                }
            }
            name => respond(200, format!("Howdy, {name}!").into_bytes()),
        })
    }
}

/// A response with `status` whose body is written to the returned writer;
/// dropping the writer ends the body. No trailers.
fn start(status: u16, len: Option<usize>) -> (Response, StreamWriter<u8>) {
    let mut headers = alloc::vec![("content-type".to_string(), b"text/plain".to_vec())];
    if let Some(len) = len {
        headers.push(("content-length".to_string(), len.to_string().into_bytes()));
    }
    let fields = Fields::from_list(&headers).expect("headers");
    let (writer, reader) = wit_stream::new();
    // A dropped writer sends its default, `Ok(None)`: no trailers.
    let (trailers, trailers_reader) = wit_future::new(|| Ok(None));
    drop(trailers);
    let (response, _sent) = Response::new(fields, Some(reader), trailers_reader);
    if status != 200 {
        response.set_status_code(status).expect("status");
    }
    (response, writer)
}

/// A response with `status` and body `bytes`.
fn respond(status: u16, bytes: Vec<u8>) -> Response {
    let (response, mut body) = start(status, Some(bytes.len()));
    spawn_local(async move {
        send(&mut body, bytes).await;
    });
    response
}

/// Writes all of `bytes` to `stream`; hands back the emptied buffer, for
/// reuse.
async fn send(stream: &mut StreamWriter<u8>, bytes: Vec<u8>) -> Vec<u8> {
    let unsent = stream.write_all(bytes).await;
    assert!(unsent.is_empty(), "write");
    unsent
}

/// A stream to stdout or stderr (`write`: their `write-via-stream`), and the
/// future that tells when the host has written all of it.
fn output<E>(
    write: fn(StreamReader<u8>) -> FutureReader<Result<(), E>>,
) -> (StreamWriter<u8>, FutureReader<Result<(), E>>) {
    let (writer, reader) = wit_stream::new();
    (writer, write(reader))
}

/// A future for `consume-body`'s `res`: resolves to `Ok` (we read it all).
fn unit_future() -> FutureReader<Result<(), ErrorCode>> {
    let (writer, reader) = wit_future::new(|| Ok(()));
    drop(writer);
    reader
}

/// Reads a body to its end, then its trailers, which tell whether the body
/// arrived whole.
async fn read_all(
    body: StreamReader<u8>,
    trailers: FutureReader<Result<Option<Trailers>, ErrorCode>>,
) -> Result<Vec<u8>, ErrorCode> {
    let bytes = body.collect().await;
    trailers.await?;
    Ok(bytes)
}

/// GETs `url` (`http://host[:port]/path`) and returns the response body.
async fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest),
        Some(("https", rest)) => (Scheme::Https, rest),
        _ => return Err(format!("not an http(s) url: {url}")),
    };
    // No path in `url`: the request goes out with none (the host sends `/`).
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let (trailers, trailers_reader) = wit_future::new(|| Ok(None));
    drop(trailers);
    let (request, _sent) = Request::new(Fields::new(), None, trailers_reader, None);
    request.set_method(&Method::Get).expect("method");
    request.set_scheme(Some(&scheme)).expect("scheme");
    request.set_authority(Some(authority)).expect("authority");
    request.set_path_with_query(path).expect("path");
    let response = client::send(request).await.map_err(|e| format!("{e:?}"))?;
    let (body, trailers) = Response::consume_body(response, unit_future());
    read_all(body, trailers).await.map_err(|e| format!("{e:?}"))
}

export!(TestGuest);
