//! Built once per process: the engine (pooling allocator, epoch ticker) and
//! the linker. Components are compiled and checked here, at start-up and on
//! every reload, so a bad one never serves.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Cache, CacheConfig, Config, Enabled, Engine, InstanceAllocationStrategy,
    PoolingAllocationConfig,
};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::limits::Limits;
use crate::state::GuestState;

/// Bytes of each memory and table slot kept mapped between instances.
const KEEP_RESIDENT: usize = 1 << 20;

/// How often the engine's epoch advances. A running guest yields to the
/// scheduler at every tick, so one that loops cannot hold a worker thread,
/// and the request timeout can interrupt it.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The engine and linker every component is compiled and linked with.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<GuestState>>,
}

/// A component ready to serve: compiled, linked, checked, pre-instantiated.
pub struct Guest {
    /// What every request instantiates.
    pub pre: ProxyPre<GuestState>,
    /// SHA-256 of the file, hex, shortened for logs.
    pub hash: String,
}

impl Runtime {
    /// The engine and linker, sized by `limits`, caching compiled code in
    /// `cache_dir`; starts the epoch ticker.
    pub fn new(limits: &Limits, cache_dir: Option<&Path>) -> Result<Self> {
        let engine = new_engine(limits, cache_dir)?;
        start_epoch_ticker(&engine);
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)?;
        Ok(Self {
            engine,
            linker: Arc::new(linker),
        })
    }

    /// The engine every store is created in.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads the component at `path`, or explains in one line why it can't
    /// be served.
    pub fn load(&self, path: &Path) -> Result<Guest> {
        let name = path.display();
        let bytes =
            std::fs::read(path).with_context(|| format!("failed to read component `{name}`"))?;
        self.compile(&bytes)
            .with_context(|| format!("failed to load component `{name}`"))
    }

    /// Compiles, links and checks a component given as bytes.
    pub fn compile(&self, bytes: &[u8]) -> Result<Guest> {
        check_header(bytes)?;
        let started = Instant::now();
        let component = Component::new(&self.engine, bytes)
            .map_err(anyhow::Error::from)
            .context("invalid component")?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("it imports something this host does not provide")?;
        let pre = ProxyPre::new(pre).map_err(anyhow::Error::from).context(
            "it does not export `wasi:http/incoming-handler` (is it a wasi:http/proxy component?)",
        )?;
        let hash = content_hash(bytes);
        tracing::info!(
            size = bytes.len(),
            hash,
            elapsed = ?started.elapsed(),
            "compiled component"
        );
        Ok(Guest { pre, hash })
    }
}

/// A short SHA-256 of `bytes`, enough to tell two builds apart in a log.
pub fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
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

/// An engine with epoch interruption and the pooling allocator, sized by
/// `limits`.
fn new_engine(limits: &Limits, cache_dir: Option<&Path>) -> Result<Engine> {
    let n = limits.max_concurrent_requests;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        // A component is several core instances (its code plus the adapter
        // shims toolchains add); these totals fit common toolchains' output.
        .total_core_instances(n.saturating_mul(4))
        .total_memories(n)
        .total_tables(n.saturating_mul(4))
        .total_stacks(n)
        .max_memory_size(limits.max_memory)
        // Reset a freed slot by rewriting only the pages the instance
        // touched (found with Linux's PAGEMAP_SCAN where the kernel has it)
        // instead of unmapping them: no page-table churn, no TLB shootdown,
        // no page faults for the next instance. See docs/performance.md.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT);

    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    if let Some(dir) = cache_dir {
        // wasmtime's own cache: entries are keyed by the wasmtime version,
        // the engine's settings and the component, so stale code never loads.
        let mut cache = CacheConfig::new();
        cache.with_directory(dir);
        let cache = Cache::new(cache)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("failed to use compile cache `{}`", dir.display()))?;
        config.cache(Some(cache));
    }
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("failed to create the WebAssembly engine")
}

/// One thread per engine advances its epoch every [`EPOCH_TICK`]; it ends
/// when the engine is dropped.
fn start_epoch_ticker(engine: &Engine) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn the epoch ticker thread");
}
