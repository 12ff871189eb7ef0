//! Per-request cost in-process, without the network: admission, a fresh
//! store and instance of the greeter, the guest's handler, the whole
//! response body, and the instance dropped. Run by `make bench`
//! (or `cargo bench --profile dist -p instance-bench` after `make build`).

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};

fn instance(c: &mut Criterion) {
    let (runtime, proxy) = instance_bench::load();
    c.bench_function("instantiate + handle + drop (greeter)", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let request = hyper::Request::builder()
                    .uri("http://localhost/World")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let response = proxy
                    .handle(
                        request,
                        http::uri::Scheme::HTTP,
                        std::net::Ipv4Addr::LOCALHOST.into(),
                    )
                    .await
                    .expect("answered");
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes();
                assert_eq!(&body[..], b"Hello, World!");
            })
        })
    });
}

criterion_group!(benches, instance);
criterion_main!(benches);
