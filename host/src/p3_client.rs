//! WASI 0.3's `wasi:http/client.send`, as wasmtime-wasi-http implements it,
//! with one repair: a request whose path-with-query is none goes out as `/`,
//! as wasi:http says (WebAssembly/WASI#949). wasmtime-wasi-http 50 builds
//! the URI without a path, which the `http` crate refuses, and the guest
//! gets `HTTP-request-URI-invalid` before any hook sees the request.
//!
//! The function is linked over wasmtime-wasi-http's own; everything else
//! (the allow-list in [`crate::outbound`] included) runs as before.

use anyhow::Result;
use http::uri::PathAndQuery;
use wasmtime::component::{Accessor, Linker, Resource};
use wasmtime_wasi_http::p3::bindings::http::client::HostWithStore;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p3::{Request, Response};
use wasmtime_wasi_http::{WasiHttp, WasiHttpView};

use crate::state::GuestState;

/// The interface `send` belongs to, at the version the linker provides.
const CLIENT: &str = "wasi:http/client@0.3.0";

/// Links `send` with the repair, over the one `wasmtime_wasi_http::p3`
/// linked before.
pub fn link(linker: &mut Linker<GuestState>) -> Result<()> {
    linker.allow_shadowing(true);
    linker
        .instance(CLIENT)
        .map_err(anyhow::Error::from)?
        .func_wrap_concurrent(
            "send",
            |accessor: &Accessor<GuestState>, (request,): (Resource<Request>,)| {
                Box::pin(send(accessor, request))
            },
        )
        .map_err(anyhow::Error::from)?;
    linker.allow_shadowing(false);
    Ok(())
}

type Sent = Result<Resource<Response>, ErrorCode>;

async fn send(
    accessor: &Accessor<GuestState>,
    request: Resource<Request>,
) -> wasmtime::Result<(Sent,)> {
    accessor.with(|mut access| -> wasmtime::Result<()> {
        let request = access.data_mut().http().table.get_mut(&request)?;
        if request.path_with_query.is_none() {
            request.path_with_query = Some(PathAndQuery::from_static("/"));
        }
        Ok(())
    })?;
    let http = accessor.with_getter::<WasiHttp>(GuestState::http);
    match <WasiHttp as HostWithStore<GuestState>>::send(&http, request).await {
        Ok(response) => Ok((Ok(response),)),
        // An error code is the guest's to handle; anything else traps.
        Err(err) => Ok((Err(err.downcast()?),)),
    }
}
