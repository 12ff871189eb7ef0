//! The per-request store data, and what it grants the guest: nothing, unless
//! a flag says otherwise.

use std::sync::Arc;

use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::body::HostOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::guest_output::{self, RequestTag};
use crate::limits::{MAX_GUEST_FIELD_SIZE, MAX_GUEST_RESOURCES, MemoryLimiter};
use crate::outbound::Outbound;

/// What one instance's store holds. Built fresh for every request and dropped
/// with it, so nothing survives from one request to the next.
pub struct GuestState {
    /// WASI (0.2 and 0.3): no preopened directories, no arguments, closed
    /// stdin, every socket address denied (the builder's defaults), the
    /// environment variables `--env` gives and no others; stdout and stderr
    /// go to the log. Built on the guest's
    /// first call that needs it: most HTTP handlers never make one, and
    /// building it (random generators seeded, streams boxed) is a few
    /// percent of a request.
    wasi: Option<WasiCtx>,
    /// The request, to tag the guest's output with.
    tag: RequestTag,
    /// The guest's environment variables (`--env`).
    env: Arc<[(String, String)]>,
    /// `wasi:http` state for this request.
    http: WasiHttpCtx,
    /// Handles of the guest's resources (request, streams, ...).
    table: ResourceTable,
    /// Decides the fate of the guest's outgoing HTTP requests.
    outbound: Outbound,
    /// Caps linear memory.
    pub limiter: MemoryLimiter,
    /// The table index of the response's `outgoing-body`, once the guest has
    /// taken it (see [`crate::runtime`]).
    response_body: Option<u32>,
}

impl GuestState {
    /// The state for the request `tag`: nothing granted but outgoing HTTP to
    /// the origins `outbound` allows and the environment variables `env`,
    /// memories capped at `max_memory` bytes.
    pub fn new(
        tag: RequestTag,
        outbound: Outbound,
        env: Arc<[(String, String)]>,
        max_memory: usize,
    ) -> Self {
        // Host memory a guest can make the host spend is bounded too.
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_GUEST_RESOURCES);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(MAX_GUEST_FIELD_SIZE);
        Self {
            wasi: None,
            tag,
            env,
            http,
            table,
            outbound,
            limiter: MemoryLimiter::new(max_memory),
            response_body: None,
        }
    }

    /// The resource table alone: what `wasi:io` needs, without building the
    /// WASI context (see [`crate::runtime`]).
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// Whether the WASI context was built (the guest called something that
    /// needs it).
    pub fn wasi_built(&self) -> bool {
        self.wasi.is_some()
    }

    /// Notes `body` as the response's body.
    pub fn response_body_taken(&mut self, body: &Resource<HostOutgoingBody>) {
        self.response_body = Some(body.rep());
    }

    /// Whether the response's body is still open: taken by the guest, and
    /// neither finished nor dropped. Once the guest's handler has returned,
    /// that body can never be completed.
    ///
    /// (Should the guest finish the body and then leak a new outgoing body
    /// that reuses its table slot, this would say yes wrongly; a guest that
    /// leaks bodies is broken anyway.)
    pub fn response_body_open(&self) -> bool {
        self.response_body.is_some_and(|rep| {
            self.table
                .get(&Resource::<HostOutgoingBody>::new_borrow(rep))
                .is_ok()
        })
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (tag, env) = (&self.tag, &self.env);
        let ctx = self.wasi.get_or_insert_with(|| {
            let (stdout, stderr) = guest_output::pair(tag.clone());
            WasiCtx::builder()
                .stdout(stdout)
                .stderr(stderr)
                .envs(&env[..])
                .build()
        });
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}
