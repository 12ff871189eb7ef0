//! Where the per-request cost goes, phase by phase, in-process: the store
//! alone; the store and an instance of the greeter, never called; and the
//! bare wasmtime path (store, instance, handler, whole body, drop) with none
//! of wasi-serve's own request handling. Set against `instance.rs`, which
//! runs the whole of `Proxy::handle`, they split one request's cost into
//! store, instantiation, the guest's call and the server around it. Run by
//! `make bench`.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use tokio::sync::oneshot;
use wasi_serve::abi::HandlerPre;
use wasi_serve::guest_output::RequestTag;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

/// The request every phase stands for.
fn tag() -> RequestTag {
    RequestTag {
        method: http::Method::GET,
        uri: http::Uri::from_static("http://localhost/World"),
    }
}

fn phases(c: &mut Criterion) {
    let (runtime, proxy) = instance_bench::load();
    let guest = proxy.current();
    let HandlerPre::P2(pre) = &guest.pre else {
        panic!("the phases are those of a WASI 0.2 component");
    };

    c.bench_function("phase: store", |b| {
        b.iter(|| drop(proxy.new_store(&guest, tag())))
    });
    c.bench_function("phase: store + instance, never called", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut store = proxy.new_store(&guest, tag());
                pre.instantiate_async(&mut store).await.unwrap();
            })
        })
    });
    c.bench_function("phase: store + instance + handler, wasmtime only", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut store = proxy.new_store(&guest, tag());
                let request = hyper::Request::builder()
                    .uri("http://localhost/World")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let (sender, receiver) = oneshot::channel();
                let mut http = store.data_mut().http();
                let request = http.new_incoming_request(Scheme::Http, request).unwrap();
                let out = http.new_response_outparam(sender).unwrap();
                let proxy = pre.instantiate_async(&mut store).await.unwrap();
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, out)
                    .await
                    .unwrap();
                drop(store);
                let response = receiver.await.unwrap().unwrap();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(&body[..], b"Hello, World!");
            })
        })
    });
}

criterion_group!(benches, phases);
criterion_main!(benches);
