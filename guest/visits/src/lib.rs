//! `visits`: an example `wasi:http` component that uses each grant
//! wasi-serve can give it: configuration (`--config`), key-value state
//! (`--keyvalue`) and a directory (`--dir`).
//!
//! ```text
//! make build    # or: cargo build --release --target wasm32-wasip2 -p visits
//! wasi-serve --config greeting=Howdy --keyvalue visits.db --dir ./public::/static \
//!     target/wasm32-wasip2/release/visits.wasm
//! curl localhost:8080/World          # Howdy, World! Visit 1.
//! ```
//!
//! Unlike the greeter it links the standard library: `std::fs` on
//! `wasm32-wasip2` goes through `wasi:filesystem` to the preopened
//! directories, which is what `--dir` grants. The price is imports beyond the
//! proxy world (`wasi:cli/*`, `wasi:filesystem/*`), which wasi-serve links.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /{name}`, `GET /` (`World`) | `{greeting}, {name}! Visit {n}.`; config `greeting` (default `Hello`), `n` counted under `visits:{name}` in the default bucket |
//! | `GET /static/{path}` | the file `{static_dir}/{path}` (config `static_dir`, default `/static`); 404 missing, 403 permission denied (escapes from the directory land here), 500 any other error |
//! | `PUT /static/{path}` | writes the body there; 201, or 403 `cannot write {path}: {error}` on any error |
//! | `GET /config/{key}` | the value; 404 absent |
//! | `GET /kv/{key}` | the value; 404 absent |
//! | `PUT /kv/{key}` | stores the body; 204 |
//! | `DELETE /kv/{key}` | 204 |
//! | `POST /kv/{key}/increment?by=N` | adds `N` (default 1); 200 with the new value |
//! | `GET /kv` | every key, sorted, one per line |
//! | `POST /kv-batch` | stores each `key=value` line of the body; 204 |
//! | `GET /kv-batch?k1,k2` | `k=value` per key, or `k` alone when absent |
//!
//! The key-value routes take `?bucket=NAME` (default `""`, the default
//! bucket). Stored values, config values and files are sent exactly as they
//! are; everything else is one line of text. Every error is an answer: 400 a
//! name that does not decode or holds a control character, 404 an unknown
//! path, 405 a wrong method (`HEAD` included) with `Allow`, 413 a body over
//! 2 MiB, 500 a config error, 503 `store error: {error}` when the key-value
//! store refuses (opening the bucket included). Only losing the client
//! traps. `route.rs` says exactly how a target is read.

mod route;

use route::{KvOp, Reply, Route, Verb};

wit_bindgen::generate!({
    path: ["../../wit", "../../wit/config", "../../wit/keyvalue", "../../wit/visits"],
    world: "greeter:visits/visits",
    generate_all,
});

use exports::wasi::http::incoming_handler::Guest;
use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasi::io::streams::StreamError;
use wasi::keyvalue::{atomics, batch, store};

/// The largest request body read; a bigger one is refused with 413 rather
/// than held in memory.
const BODY_LIMIT: usize = 2 << 20;

/// Most bytes asked of the request stream per read.
const READ_CHUNK: u64 = 64 << 10;

/// Most bytes `blocking-write-and-flush` takes in one call.
const WRITE_CHUNK: usize = 4096;

struct Visits;

impl Guest for Visits {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let reply = answer(&request).unwrap_or_else(|refusal| refusal);
        drop(request);
        send(reply, response_out);
    }
}

/// Errors are replies too: `Err` only lets `?` cut the work short.
fn answer(request: &IncomingRequest) -> Result<Reply, Reply> {
    let verb = match request.method() {
        Method::Get => Verb::Get,
        Method::Put => Verb::Put,
        Method::Post => Verb::Post,
        Method::Delete => Verb::Delete,
        _ => Verb::Other,
    };
    let route = route::route(verb, &request.path_with_query().unwrap_or_default())?;
    let body = if route.takes_body() {
        read_body(request)?
    } else {
        Vec::new()
    };
    match route {
        Route::Greet { name } => greet(&name),
        Route::ReadFile { path } => read_file(&path),
        Route::WriteFile { path } => write_file(&path, &body),
        Route::Config { key } => match config(&key)? {
            Some(value) => Ok(Reply::bytes(200, value.into_bytes())),
            None => Err(Reply::text(404, format!("no config key {key}"))),
        },
        Route::Kv { bucket, op } => kv(&store::open(&bucket)?, op, &body),
    }
}

fn greet(name: &str) -> Result<Reply, Reply> {
    let word = config("greeting")?.unwrap_or_else(|| "Hello".into());
    let bucket = store::open("")?;
    let visit = atomics::increment(&bucket, &format!("visits:{name}"), 1)?;
    Ok(Reply::text(200, format!("{word}, {name}! Visit {visit}.")))
}

/// The file at `path` under the `static_dir` directory.
///
/// `path` is used as given, `..` and all: what keeps it inside the directory
/// is the host's sandbox, and an escape comes back as permission denied.
fn file(path: &str) -> Result<String, Reply> {
    let dir = config("static_dir")?.unwrap_or_else(|| "/static".into());
    // Not `Path::join`: an absolute `path` would replace `dir` instead of
    // landing under it.
    Ok(format!("{dir}/{path}"))
}

fn read_file(path: &str) -> Result<Reply, Reply> {
    use std::io::ErrorKind;
    match std::fs::read(file(path)?) {
        Ok(bytes) => Ok(Reply::bytes(200, bytes)),
        Err(err) if err.kind() == ErrorKind::NotFound => {
            Err(Reply::text(404, format!("no file {path}")))
        }
        Err(err) if err.kind() == ErrorKind::PermissionDenied => {
            Err(Reply::text(403, format!("cannot read {path}: {err}")))
        }
        Err(err) => Err(Reply::text(500, format!("cannot read {path}: {err}"))),
    }
}

/// Every failure is a 403: on a read-only grant that is the expected one,
/// and the point is that the guest still answers.
fn write_file(path: &str, body: &[u8]) -> Result<Reply, Reply> {
    match std::fs::write(file(path)?, body) {
        Ok(()) => Ok(Reply::text(201, format!("wrote {path}"))),
        Err(err) => Err(Reply::text(403, format!("cannot write {path}: {err}"))),
    }
}

/// The config value under `key`, if set.
fn config(key: &str) -> Result<Option<String>, Reply> {
    use wasi::config::store::{self as config, Error};
    config::get(key).map_err(|err| {
        let detail = match err {
            Error::Upstream(message) => format!("upstream: {message}"),
            Error::Io(message) => format!("io: {message}"),
        };
        Reply::text(500, format!("config error: {detail}"))
    })
}

fn kv(bucket: &store::Bucket, op: KvOp, body: &[u8]) -> Result<Reply, Reply> {
    match op {
        KvOp::Get(key) => match bucket.get(&key)? {
            Some(value) => Ok(Reply::bytes(200, value)),
            None => Err(Reply::text(404, format!("no key {key}"))),
        },
        KvOp::Set(key) => {
            bucket.set(&key, body)?;
            Ok(Reply::no_content())
        }
        KvOp::Delete(key) => {
            bucket.delete(&key)?;
            Ok(Reply::no_content())
        }
        KvOp::Increment { key, by } => {
            let value = atomics::increment(bucket, &key, by)?;
            Ok(Reply::text(200, value.to_string()))
        }
        KvOp::List => {
            let mut keys = Vec::new();
            let mut cursor = None;
            loop {
                let page = bucket.list_keys(cursor)?;
                keys.extend(page.keys);
                cursor = page.cursor;
                if cursor.is_none() {
                    break;
                }
            }
            keys.sort();
            Ok(Reply::bytes(200, lines(keys.iter().map(|k| k.as_bytes()))))
        }
        KvOp::SetMany => {
            batch::set_many(bucket, &route::parse_batch(body)?)?;
            Ok(Reply::no_content())
        }
        KvOp::GetMany(keys) => {
            let found = batch::get_many(bucket, &keys)?;
            let entries = keys.iter().zip(found).map(|(key, found)| match found {
                Some((_, value)) => [key.as_bytes(), b"=", &value].concat(),
                None => key.clone().into_bytes(),
            });
            Ok(Reply::bytes(200, lines(entries)))
        }
    }
}

/// Each item followed by a newline.
fn lines<I: IntoIterator<Item = T>, T: AsRef<[u8]>>(items: I) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        out.extend_from_slice(item.as_ref());
        out.push(b'\n');
    }
    out
}

/// Any key-value failure is a 503. The host's tests look for the exact
/// prefix `store error: `: it shows the guest got the error as a value and
/// answered, rather than trapping.
impl From<store::Error> for Reply {
    fn from(err: store::Error) -> Reply {
        let variant = match err {
            store::Error::NoSuchStore => "no-such-store".to_owned(),
            store::Error::AccessDenied => "access-denied".to_owned(),
            store::Error::Other(message) => format!("other: {message}"),
        };
        Reply::text(503, format!("store error: {variant}"))
    }
}

/// The whole request body, at most [`BODY_LIMIT`] bytes.
fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, Reply> {
    let body = request
        .consume()
        .map_err(|()| Reply::text(500, "request body already taken"))?;
    // Declared after `body`, so dropped before it, as a child resource must be.
    let stream = body
        .stream()
        .map_err(|()| Reply::text(500, "request body stream already taken"))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) if bytes.len() + chunk.len() > BODY_LIMIT => {
                return Err(Reply::text(413, "request body over 2 MiB"));
            }
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(bytes),
            Err(StreamError::LastOperationFailed(err)) => {
                let detail = err.to_debug_string();
                return Err(Reply::text(
                    400,
                    format!("cannot read request body: {detail}"),
                ));
            }
        }
    }
}

/// Sends `reply` as the response. Failures here mean the host or the client
/// went away; there is nobody left to answer, so they trap.
fn send(reply: Reply, response_out: ResponseOutparam) {
    let fields = Fields::from_list(&reply.headers()).expect("valid response headers");
    let response = OutgoingResponse::new(fields);
    response
        .set_status_code(reply.status)
        .expect("valid status code");
    let body = response.body().expect("body taken once");
    ResponseOutparam::set(response_out, Ok(response));
    if !reply.body.is_empty() {
        let stream = body.write().expect("stream taken once");
        for chunk in reply.body.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .expect("client reads the body");
        }
    }
    OutgoingBody::finish(body, None).expect("body finished once");
}

export!(Visits);
