//! The toolchain check's handler in Rust with `wstd`, an async library that
//! is not wit-bindgen glue of our own: `wasi-serve` must serve what it builds
//! (a std binary, so it imports `wasi:cli` and more besides the proxy world).

use percent_encoding::percent_decode_str;
use wstd::http::{Body, Error, Method, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let path = request.uri().path().to_owned();
    match (request.method(), path.as_str()) {
        (&Method::POST, "/echo") => Ok(Response::new(request.into_body())),
        (&Method::GET, _) => {
            let name = percent_decode_str(&path[1..]).decode_utf8_lossy();
            let text = if name.is_empty() {
                "Hello from wstd!".to_owned()
            } else {
                format!("Hello from wstd, {name}!")
            };
            Ok(Response::builder()
                .header("content-type", "text/plain; charset=utf-8")
                .body(text.into())?)
        }
        _ => Ok(Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header("allow", "GET, POST")
            .body(Body::empty())?),
    }
}
