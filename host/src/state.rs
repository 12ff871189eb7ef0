//! The per-request store data, and what it grants the guest: nothing, unless
//! a flag says otherwise.

use std::sync::Arc;

use anyhow::Result;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::guest_config::GuestConfig;
use crate::guest_output::{self, RequestTag};
use crate::keyvalue::{self, KeyValue};
use crate::limits::{MAX_GUEST_FIELD_SIZE, MAX_GUEST_RESOURCES, MemoryLimiter};
use crate::outbound::Outbound;
use crate::preopens::Preopen;
use crate::response_body::ResponseBody;

/// What guests get beyond HTTP, each by its own flag; built once at start.
pub struct Grants {
    /// Environment variables (`--env`).
    pub env: Box<[(String, String)]>,
    /// `wasi:config` values (`--config`, `--config-file`); empty unless given.
    pub config: GuestConfig,
    /// Directories (`--dir`).
    pub dirs: Box<[Preopen]>,
    /// The `wasi:keyvalue` store (`--keyvalue`).
    pub keyvalue: Option<Arc<keyvalue::Store>>,
}

/// What one instance's store holds. Built fresh for every request and dropped
/// with it, so nothing survives from one request to the next.
pub struct GuestState {
    /// WASI (0.2 and 0.3): no arguments, closed stdin, every socket address
    /// denied (the builder's defaults), the environment variables `--env`
    /// gives and the directories `--dir` gives, no others; stdout and
    /// stderr go to the log. Built on the guest's
    /// first call that needs it: most HTTP handlers never make one, and
    /// building it (random generators seeded, streams boxed) is a few
    /// percent of a request.
    wasi: Option<WasiCtx>,
    /// The request, to tag the guest's output with.
    tag: RequestTag,
    /// What the flags grant.
    grants: Arc<Grants>,
    /// The `wasi:config` values this request reads, taken at its first read.
    config: Option<Arc<WasiConfigVariables>>,
    /// `wasi:http` state for this request.
    http: WasiHttpCtx,
    /// Handles of the guest's resources (request, streams, ...).
    table: ResourceTable,
    /// Decides the fate of the guest's outgoing HTTP requests.
    outbound: Outbound,
    /// Caps linear memory.
    pub limiter: MemoryLimiter,
    /// The response's `outgoing-body`, once the guest has taken it.
    pub(crate) response_body: ResponseBody,
}

impl GuestState {
    /// The state for the request `tag`: nothing granted but outgoing HTTP to
    /// the origins `outbound` allows and what `grants` holds, memories
    /// capped at `max_memory` bytes.
    pub fn new(
        tag: RequestTag,
        outbound: Outbound,
        grants: Arc<Grants>,
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
            grants,
            config: None,
            http,
            table,
            outbound,
            limiter: MemoryLimiter::new(max_memory),
            response_body: ResponseBody::default(),
        }
    }

    /// The resource table alone: what `wasi:io` needs, without building the
    /// WASI context (see [`io_without_wasi_ctx`]).
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// What `wasi:config` calls see.
    pub fn config(&mut self) -> WasiConfig<'_> {
        let grants = &self.grants;
        WasiConfig::new(self.config.get_or_insert_with(|| grants.config.current()))
    }

    /// What `wasi:keyvalue` calls see.
    pub fn keyvalue(&mut self) -> KeyValue<'_> {
        KeyValue::new(self.grants.keyvalue.as_deref(), &mut self.table)
    }

    /// Whether the WASI context was built (the guest called something that
    /// needs it).
    pub fn wasi_built(&self) -> bool {
        self.wasi.is_some()
    }

    /// Whether the guest left the response's body open (see
    /// [`crate::response_body`]).
    pub fn response_body_open(&self) -> bool {
        self.response_body.is_open(&self.table)
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (tag, grants) = (&self.tag, &self.grants);
        let ctx = self.wasi.get_or_insert_with(|| {
            let (stdout, stderr) = guest_output::pair(tag.clone());
            let mut builder = WasiCtx::builder();
            builder.stdout(stdout).stderr(stderr).envs(&grants.env);
            for dir in &grants.dirs {
                dir.grant(&mut builder);
            }
            builder.build()
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

/// Links `wasi:io` (errors, polls, streams) again, to the resource table
/// alone. wasmtime-wasi reaches that table through the whole WASI context,
/// which [`GuestState`] builds only when a guest needs it; every HTTP
/// handler writes its body through `wasi:io/streams`, and should not pay for
/// random generators and clocks it never uses.
pub(crate) fn io_without_wasi_ctx(linker: &mut Linker<GuestState>) -> Result<()> {
    use wasmtime_wasi_io::bindings::wasi::io::{error, poll, streams};

    linker.allow_shadowing(true);
    error::add_to_linker::<_, TableOnly>(linker, GuestState::table).map_err(anyhow::Error::from)?;
    poll::add_to_linker::<_, TableOnly>(linker, GuestState::table).map_err(anyhow::Error::from)?;
    streams::add_to_linker::<_, TableOnly>(linker, GuestState::table)
        .map_err(anyhow::Error::from)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// What the `wasi:io` host functions get: the resource table.
struct TableOnly;

impl wasmtime::component::HasData for TableOnly {
    type Data<'a> = &'a mut wasmtime::component::ResourceTable;
}
