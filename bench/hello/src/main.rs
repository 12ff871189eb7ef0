//! The physical reference for `make bench`: the same greeting as the greeter
//! component, answered by native code on the same stack as `wasi-serve`
//! (tokio + hyper, HTTP/1.1 and HTTP/2) with no WebAssembly in between.
//!
//! Usage: `hello-native [ADDR]` (default `127.0.0.1:8080`).

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(
                |request: hyper::Request<hyper::body::Incoming>| async move {
                    let name = request.uri().path().trim_start_matches('/');
                    let name = if name.is_empty() { "Anonymous" } else { name };
                    let response = hyper::Response::builder()
                        .header("content-type", "text/plain; charset=utf-8")
                        .body(Full::new(Bytes::from(format!("Hello, {name}!"))))
                        .expect("valid response");
                    Ok::<_, Infallible>(response)
                },
            );
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
