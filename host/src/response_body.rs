//! A WASI 0.2 guest that returns with its response body still open gets its
//! response cut off, not ended as if complete.
//!
//! wasmtime-wasi-http ends an `outgoing-body` cleanly when the store goes
//! away, finished or not, so a client would take a truncated response for a
//! whole one. The host therefore links its own `outgoing-response.body`, the
//! same call that also notes which body is the response's; when the handler
//! has returned, [`ResponseBody::is_open`] tells whether that body was
//! neither finished nor dropped, and the request is failed (`abi.rs`).
//!
//! If a wasmtime upgrade made the linker stop using this function (a new
//! WIT version, a renamed method), the test
//! `limits::a_body_left_unfinished_cuts_the_response_off` fails.

use anyhow::Result;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::http::types::HostOutgoingResponse as _;
use wasmtime_wasi_http::p2::body::HostOutgoingBody;
use wasmtime_wasi_http::p2::types::HostOutgoingResponse;

use crate::state::GuestState;

/// The `wasi:http/types` instance whose `outgoing-response.body` is
/// replaced: the version wasmtime-wasi-http links.
const TYPES: &str = "wasi:http/types@0.2.12";

/// The response's body, once the guest has taken it.
#[derive(Debug, Default)]
pub struct ResponseBody {
    /// Its index in the store's resource table.
    rep: Option<u32>,
}

impl ResponseBody {
    /// Whether the response's body is still open: taken by the guest, and
    /// neither finished nor dropped. Once the guest's handler has returned,
    /// that body can never be completed.
    ///
    /// (Should the guest finish the body and then leak a new outgoing body
    /// that reuses its table slot, this would say yes wrongly; a guest that
    /// leaks bodies is broken anyway.)
    pub fn is_open(&self, table: &ResourceTable) -> bool {
        self.rep.is_some_and(|rep| {
            table
                .get(&Resource::<HostOutgoingBody>::new_borrow(rep))
                .is_ok()
        })
    }
}

/// Replaces `outgoing-response.body` in `linker` (which must already hold
/// wasi:http) with the call that notes the body it hands out.
pub fn add_to_linker(linker: &mut Linker<GuestState>) -> Result<()> {
    linker.allow_shadowing(true);
    linker
        .instance(TYPES)
        .map_err(anyhow::Error::from)?
        .func_wrap(
            "[method]outgoing-response.body",
            |mut store, (response,): (Resource<HostOutgoingResponse>,)| {
                let state: &mut GuestState = store.data_mut();
                let body: Result<Resource<HostOutgoingBody>, ()> = state.http().body(response)?;
                if let Ok(body) = &body {
                    state.response_body.rep = Some(body.rep());
                }
                Ok((body,))
            },
        )
        .map_err(anyhow::Error::from)?;
    linker.allow_shadowing(false);
    Ok(())
}
