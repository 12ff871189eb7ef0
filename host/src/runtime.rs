//! Built once per process: the engine (pooling allocator, epoch ticker) and
//! the linker. Components are compiled and checked here, at start-up and on
//! every reload, so a bad one never serves.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::abi::{self, HandlerPre};
use crate::limits::Limits;
use crate::state::GuestState;
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Cache, CacheConfig, Config, Enabled, Engine, EngineWeak, InstanceAllocationStrategy,
    PoolingAllocationConfig,
};

/// Bytes of each memory and table slot kept mapped between instances.
const KEEP_RESIDENT: usize = 1 << 20;

/// The subdirectory of `--cache-dir` that wasmtime's cache manages.
pub const CACHE_SUBDIR: &str = "compiled";

/// How often the engine's epoch advances. A running guest yields to the
/// scheduler at every tick, so one that loops cannot hold a worker thread,
/// and the request timeout can interrupt it.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The engines and linkers components are compiled and linked with.
///
/// Two of each: the component model's concurrency (WASI 0.3's async calls,
/// streams and futures) adds bookkeeping to every store and call once an
/// engine enables it, about 14 µs per request for the 0.2 greeter
/// (docs/performance.md). WASI 0.2 components run on an engine without it;
/// components that need it (all of WASI 0.3) on one with it.
///
/// Each is built the first time a component needs it: an engine reserves
/// its pools up front, a guard page for every fiber stack among them
/// (5,000 `mprotect` calls for both at the default 1,000 requests, most of
/// a cached start), which a server of 0.2 components never needs for 0.3.
#[derive(Clone)]
pub struct Runtime {
    /// `[without, with]` concurrency, once built: [`Runtime::flavor`].
    flavors: Arc<Mutex<[Option<Flavor>; 2]>>,
    /// How an engine is built.
    limits: Limits,
    /// Whether slots are reset with the page scan ([`crate::pagemap`]).
    exact_scan: bool,
    /// The engines' compile cache (a handle on the same state), to tell a
    /// compile from a cache hit in the logs.
    cache: Option<Cache>,
    /// The engines built so far, whose epoch the ticker thread advances.
    ticked: Arc<Mutex<Vec<EngineWeak>>>,
}

/// One engine and the linker over it.
#[derive(Clone)]
struct Flavor {
    engine: Engine,
    linker: Arc<Linker<GuestState>>,
}

impl Flavor {
    /// An engine sized by `limits`, and a linker with WASI 0.2 and, if
    /// `concurrent`, WASI 0.3; see [`new_engine`].
    fn new(
        limits: &Limits,
        cache: Option<Cache>,
        concurrent: bool,
        exact_scan: bool,
    ) -> Result<Self> {
        let engine = new_engine(limits, cache, concurrent, exact_scan)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)?;
        crate::state::io_without_wasi_ctx(&mut linker)?;
        crate::response_body::add_to_linker(&mut linker)?;
        // Granted by flags; without them, no values and no store.
        wasmtime_wasi_config::add_to_linker(&mut linker, GuestState::config)
            .map_err(anyhow::Error::from)?;
        crate::keyvalue::add_to_linker(&mut linker)?;
        if concurrent {
            // WASI 0.3 beside it: its interfaces are `@0.3.x`, no clashes.
            wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(anyhow::Error::from)?;
            wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(anyhow::Error::from)?;
            crate::p3_client::link(&mut linker)?;
        }
        Ok(Self {
            engine,
            linker: Arc::new(linker),
        })
    }
}

/// A component ready to serve: compiled, linked, checked, pre-instantiated.
pub struct Guest {
    /// What every request instantiates, with its handler ABI.
    pub pre: HandlerPre,
    /// SHA-256 of the file, hex, shortened for logs.
    pub hash: String,
    /// How its compile went.
    report: CompileReport,
    /// The engine it was compiled for, which its stores must use.
    engine: Engine,
    /// Whether that engine has the component model's concurrency.
    concurrent: bool,
}

impl Guest {
    /// The engine every store for this component is created in.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whether it runs on the engine with the component model's
    /// concurrency (WASI 0.3), or on the cheaper one without.
    pub fn concurrent(&self) -> bool {
        self.concurrent
    }

    /// The WASI release of the component's handler: `0.2` or `0.3`.
    pub fn wasi(&self) -> &'static str {
        self.pre.version().as_str()
    }

    /// Logs how its compile went (size, time, cache hit), the
    /// `compiled component` line.
    pub fn log_compiled(&self) {
        self.report.log(self);
    }
}

impl Runtime {
    /// The engines and linkers, sized by `limits`, caching compiled code in
    /// `cache_dir`; starts the epoch ticker.
    pub fn new(limits: &Limits, cache: Option<Cache>) -> Result<Self> {
        let exact_scan = crate::pagemap::scan_finds_only_written_pages();
        tracing::debug!(
            exact_scan,
            "memory slots are reset {}",
            if exact_scan {
                "page by page, as PAGEMAP_SCAN finds them written"
            } else {
                "whole (PAGEMAP_SCAN is missing or cannot tell)"
            }
        );
        let ticked = Arc::new(Mutex::new(Vec::new()));
        start_epoch_ticker(ticked.clone());
        let runtime = Self {
            flavors: Arc::default(),
            limits: limits.clone(),
            exact_scan,
            cache,
            ticked,
        };
        // The engine most components need, and the check of `limits`
        // against this machine, at start rather than at the first load.
        runtime.flavor(false)?;
        Ok(runtime)
    }

    /// The engine and linker with the component model's concurrency or
    /// without, built on first use.
    fn flavor(&self, concurrent: bool) -> Result<Flavor> {
        let mut flavors = self
            .flavors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let slot = &mut flavors[usize::from(concurrent)];
        if let Some(flavor) = slot {
            return Ok(flavor.clone());
        }
        let flavor = Flavor::new(
            &self.limits,
            self.cache.clone(),
            concurrent,
            self.exact_scan,
        )?;
        self.ticked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(flavor.engine.weak());
        Ok(slot.insert(flavor).clone())
    }

    /// Loads the component at `path`, or explains in one line why it can't
    /// be served. Compiling a large component takes seconds: on a terminal a
    /// spinner shows it is under way. Logs nothing: the caller logs the
    /// compile ([`Guest::log_compiled`]) once its address is announced.
    pub fn load(&self, path: &Path) -> Result<Guest> {
        let name = path.display();
        let bytes =
            read_component(path).with_context(|| format!("failed to read component `{name}`"))?;
        let progress = compile_progress(path, bytes.len());
        let built = self.build(&bytes);
        // Gone before the log line, which would otherwise sit under it.
        progress.finish_and_clear();
        built.with_context(|| format!("failed to load component `{name}`"))
    }

    /// Compiles, links and checks a component given as bytes, and logs it.
    pub fn compile(&self, bytes: &[u8]) -> Result<Guest> {
        let guest = self.build(bytes)?;
        guest.log_compiled();
        Ok(guest)
    }

    fn build(&self, bytes: &[u8]) -> Result<Guest> {
        check_header(bytes)?;
        let started = Instant::now();
        let hits = self.cache.as_ref().map(Cache::cache_hits);
        // A component that validates without the async component model is
        // served without it; any other (every WASI 0.3 one) needs it.
        let sync = self.flavor(false)?;
        let (flavor, component, concurrent) = match Component::new(&sync.engine, bytes) {
            Ok(component) => (sync, component, false),
            Err(_) => {
                let flavor = self.flavor(true)?;
                let component = Component::new(&flavor.engine, bytes)
                    .map_err(anyhow::Error::from)
                    .context("invalid component")?;
                (flavor, component, true)
            }
        };
        let engine = &flavor.engine;
        // A component that does not link or has no usable handler may be
        // built against a WASI release candidate: then that is what is said.
        let explain = |err: anyhow::Error| {
            abi::refuse_release_candidates(&component, engine)
                .err()
                .unwrap_or(err)
        };
        let pre = flavor
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("it imports something this host does not provide")
            .map_err(explain)?;
        let version = abi::detect(&component, engine).map_err(explain)?;
        let pre = HandlerPre::new(version, pre)
            .with_context(|| {
                format!(
                    "its `wasi:http` handler does not match WASI {}",
                    version.as_str()
                )
            })
            .map_err(explain)?;
        let cache = match (hits, &self.cache) {
            (Some(before), Some(cache)) if cache.cache_hits() > before => "hit",
            (Some(_), _) => "miss",
            _ => "off",
        };
        let report = CompileReport {
            size: bytes.len(),
            elapsed: started.elapsed(),
            cache,
        };
        let hash = content_hash(bytes);
        Ok(Guest {
            pre,
            hash,
            report,
            engine: engine.clone(),
            concurrent,
        })
    }
}

/// What the log says about a compile.
struct CompileReport {
    size: usize,
    elapsed: Duration,
    /// `hit`, `miss`, or `off`.
    cache: &'static str,
}

impl CompileReport {
    fn log(&self, guest: &Guest) {
        tracing::info!(
            size = self.size,
            hash = guest.hash,
            wasi = guest.wasi(),
            elapsed = ?self.elapsed,
            cache = self.cache,
            "compiled component"
        );
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

/// Reads the component file at `path`. It must be a regular file (after
/// symlinks): a FIFO or a device would be read forever.
pub fn read_component(path: &Path) -> Result<Vec<u8>> {
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_file() {
        bail!("not a regular file");
    }
    Ok(std::fs::read(path)?)
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

/// A spinner with the file's name and size and the time so far, drawn on
/// stderr only when it is a terminal (hidden otherwise: the log line that
/// follows the compile carries the same facts).
fn compile_progress(path: &Path, size: usize) -> ProgressBar {
    let file = path.file_name().unwrap_or(path.as_os_str()).display();
    let progress = ProgressBar::new_spinner()
        .with_message(format!("compiling {file} ({:.1} MB)", size as f64 / 1e6));
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}, {elapsed}") {
        progress.set_style(style);
    }
    progress.enable_steady_tick(Duration::from_millis(100));
    progress
}

/// wasmtime's own compile cache, in `dir/compiled`: entries are keyed by the
/// wasmtime version, the engine's settings and the component, so stale code
/// never loads. wasmtime's cleanup deletes files it does not recognise in
/// its directory, so it gets a subdirectory of its own: whatever else is in
/// `dir` (say `--cache-dir .`) is never touched.
/// The compile cache kept in `dir` (in its `compiled` subdirectory).
pub fn open_cache(dir: &Path) -> Result<Cache> {
    let dir = dir.join(CACHE_SUBDIR);
    let mut config = CacheConfig::new();
    config.with_directory(&dir);
    Cache::new(config)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("failed to use compile cache `{}`", dir.display()))
}

/// An engine with epoch interruption and the pooling allocator, sized by
/// `limits`; with the component model's concurrency if `concurrent`; slots
/// reset with PAGEMAP_SCAN if `exact_scan`.
fn new_engine(
    limits: &Limits,
    cache: Option<Cache>,
    concurrent: bool,
    exact_scan: bool,
) -> Result<Engine> {
    let n = limits.max_concurrent_requests;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        // A component is several core instances: 3 for a Rust one (its code
        // plus wit-component's shims), 4 for componentize-js, 14 for
        // componentize-py (libc, libpython, extensions, adapters). This is
        // only a count, nothing is reserved per instance, so leave room.
        .total_core_instances(n.saturating_mul(32))
        .total_memories(n)
        .total_tables(n.saturating_mul(4))
        // A WASI 0.3 guest may run a few tasks at once (one streams the
        // body after the handler returns), each on a stack of its own.
        .total_stacks(if concurrent { n.saturating_mul(4) } else { n })
        .max_memory_size(limits.max_memory)
        // Reset a freed slot in place instead of unmapping it: no page-table
        // churn, no TLB shootdown, no page faults for the next instance.
        // Where Linux's PAGEMAP_SCAN tells the pages the instance wrote from
        // the rest, only those are rewritten; where it does not (it names
        // untouched pages too), the scan would have the whole memory
        // rewritten anyway, so the first KEEP_RESIDENT bytes are rewritten
        // without the system call. See docs/performance.md.
        .pagemap_scan(if exact_scan {
            Enabled::Auto
        } else {
            Enabled::No
        })
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        // A reloaded component is a new module: with wasmtime's default (up
        // to 100 idle slots kept for other modules) it would warm fresh
        // slots while the old ones stay resident, and RSS would grow with
        // every reload (`make soak` saw +80 MiB a reload). With 0 it takes
        // over the old component's slots, so the slots ever used stay as
        // many as the most requests served at once.
        .max_unused_warm_slots(0);

    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .concurrency_support(concurrent)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config.cache(cache);
    // The pool reserves address space for every slot up front: too many
    // slots of too much memory fail here, so say which flags set them.
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .with_context(|| {
            format!(
                "failed to create the WebAssembly engine for {n} concurrent requests \
                 (--max-concurrent-requests) of up to {} bytes of memory each (--max-memory)",
                limits.max_memory
            )
        })
}

/// One thread advances the epoch of the engines in `engines` every
/// [`EPOCH_TICK`]; it ends once the runtime and every engine are dropped.
fn start_epoch_ticker(engines: Arc<Mutex<Vec<EngineWeak>>>) {
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            // No allocation per tick: each engine is upgraded, ticked and
            // let go in turn.
            loop {
                let mut live = false;
                for engine in engines
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .iter()
                    .filter_map(EngineWeak::upgrade)
                {
                    engine.increment_epoch();
                    live = true;
                }
                // Only this thread holds the list: the runtime is gone, and
                // no engine can be added any more.
                if !live && Arc::strong_count(&engines) == 1 {
                    return;
                }
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn the epoch ticker thread");
}
