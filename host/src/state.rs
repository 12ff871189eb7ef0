//! The per-request store data, and what it grants the guest: nothing, unless
//! a flag says otherwise.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// What one instance's store holds. Built fresh for every request and dropped
/// with it, so nothing survives from one request to the next.
pub struct GuestState {
    /// WASI 0.2: no preopened directories, no environment variables, no
    /// arguments, closed stdin, discarded stdout/stderr, every socket address
    /// denied (the builder's defaults).
    wasi: WasiCtx,
    /// `wasi:http` state for this request.
    http: WasiHttpCtx,
    /// Handles of the guest's resources (request, streams, ...).
    table: ResourceTable,
    /// Decides the fate of the guest's outgoing HTTP requests.
    hooks: DenyOutbound,
}

impl GuestState {
    /// A state that grants nothing.
    pub fn new() -> Self {
        Self {
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: DenyOutbound,
        }
    }
}

impl Default for GuestState {
    fn default() -> Self {
        Self::new()
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Refuses every outgoing request with `wasi:http`'s `HTTP-request-denied`
/// error; the guest decides what to answer.
struct DenyOutbound;

impl WasiHttpHooks for DenyOutbound {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
                )>,
            > + Send,
    > {
        tracing::warn!(uri = %request.uri(), "outgoing request denied");
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}
