//! Everything built once at start-up: the engine, the linker, the compiled
//! component and its pre-instance. Checking happens here, so a bad component
//! fails before the server listens.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::state::GuestState;

/// Limits that size the engine's instance pool.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most instances alive at once: one per request in flight.
    pub max_instances: u32,
}

/// A component ready to serve: compiled, linked, checked, pre-instantiated.
/// Cheap to share; each request instantiates it afresh.
#[derive(Clone)]
pub struct Runtime {
    pre: ProxyPre<GuestState>,
    /// One permit per pool slot: a request takes one before instantiating,
    /// so the pool is never asked for more instances than it has.
    slots: Arc<Semaphore>,
}

impl Runtime {
    /// Loads the component at `path`, or explains in one line why it can't
    /// be served.
    pub fn load(path: &Path, limits: Limits) -> Result<Self> {
        let name = path.display();
        let bytes =
            std::fs::read(path).with_context(|| format!("failed to read component `{name}`"))?;
        Self::from_bytes(&bytes, limits)
            .with_context(|| format!("failed to load component `{name}`"))
    }

    /// Compiles, links and checks a component given as bytes.
    pub fn from_bytes(bytes: &[u8], limits: Limits) -> Result<Self> {
        check_header(bytes)?;
        let engine = new_engine(limits)?;
        let started = Instant::now();
        let component = Component::new(&engine, bytes)
            .map_err(anyhow::Error::from)
            .context("invalid component")?;
        tracing::info!(
            size = bytes.len(),
            elapsed = ?started.elapsed(),
            "compiled component"
        );

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("it imports something this host does not provide")?;
        let pre = ProxyPre::new(pre).map_err(anyhow::Error::from).context(
            "it does not export `wasi:http/incoming-handler` (is it a wasi:http/proxy component?)",
        )?;
        Ok(Self {
            pre,
            slots: Arc::new(Semaphore::new(limits.max_instances as usize)),
        })
    }

    /// The pre-instance every request is instantiated from.
    pub fn pre(&self) -> &ProxyPre<GuestState> {
        &self.pre
    }

    /// The permits bounding how many instances exist at once.
    pub fn slots(&self) -> &Arc<Semaphore> {
        &self.slots
    }
}

/// Tells a component from other files before handing it to the compiler,
/// whose messages for these cases are less direct.
fn check_header(bytes: &[u8]) -> Result<()> {
    // `\0asm`, a 2-byte version, then a 2-byte layer: 0 module, 1 component.
    match bytes {
        [0, b'a', b's', b'm', _, _, 1, 0, ..] => Ok(()),
        [0, b'a', b's', b'm', _, _, 0, 0, ..] => bail!(
            "it is a core WebAssembly module, not a component (build it as a component, e.g. for `wasm32-wasip2`)"
        ),
        _ => bail!("it is not a WebAssembly file"),
    }
}

/// An engine with the pooling allocator, sized by `limits`.
fn new_engine(limits: Limits) -> Result<Engine> {
    let n = limits.max_instances;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        // A component is several core instances (its code plus the adapter
        // shims toolchains add); sizes here fit common toolchains' output.
        .total_core_instances(n.saturating_mul(4))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(4))
        .total_stacks(n);

    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("failed to create the WebAssembly engine")
}
