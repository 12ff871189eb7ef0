//! Hot swap: on SIGHUP, or (with `--watch`) when the component's file
//! changes, compile the new file in the background and switch to it
//! atomically. Requests in flight finish on the old component; a file that
//! fails to load is rejected and the old one keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::Notify;

use crate::proxy::{Proxy, one_line};
use crate::runtime::content_hash;

/// How long the file must stay quiet before it is loaded: editors and build
/// tools write in several steps, or write a new file and rename it over.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// How often a watched file is looked at besides, for the changes a
/// directory watch cannot see.
pub const LOOK_AGAIN: Duration = Duration::from_secs(1);

/// The SIGHUP handler, installed early: SIGHUP's default action ends the
/// process, so it is caught from start-up on, before the first compile.
pub struct Hangup {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Hangup {
    /// Catches SIGHUP from now on.
    pub fn install() -> Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signal = signal(SignalKind::hangup()).context("failed to handle SIGHUP")?;
            Ok(Self { signal })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }
}

/// Asks for a reload, as SIGHUP does.
#[derive(Clone)]
pub struct Reloader {
    wake: Arc<Notify>,
}

impl Reloader {
    /// Loads the component file again (after the debounce); a file that
    /// did not change is not reloaded.
    pub fn reload(&self) {
        self.wake.notify_one();
    }
}

/// Starts reloading `proxy`'s component on SIGHUP (when `hangup` is given),
/// on [`Reloader::reload`], and, if `watch`, whenever its file changes.
/// Runs until the runtime ends; reloads never overlap.
pub fn spawn(proxy: Arc<Proxy>, watch: bool, hangup: Option<Hangup>) -> Result<Reloader> {
    let wake = Arc::new(Notify::new());
    let mut watchers = Vec::new();
    if watch {
        watchers.push(watch_changes(proxy.path(), &wake)?);
        if let Some(file) = proxy.grants().config.file() {
            watchers.push(watch_changes(file, &wake)?);
        }
    }
    #[cfg(unix)]
    if let Some(hangup) = hangup {
        let mut hangup = hangup.signal;
        let wake = wake.clone();
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("received SIGHUP, reloading the component");
                wake.notify_one();
            }
        });
    }
    #[cfg(not(unix))]
    let _ = hangup;
    let reloader = Reloader { wake: wake.clone() };
    tokio::spawn(async move {
        let _watchers = watchers; // watching stops when they are dropped
        loop {
            wake.notified().await;
            // Debounce: wait until no change has come for a while.
            while tokio::time::timeout(DEBOUNCE, wake.notified())
                .await
                .is_ok()
            {}
            reload(&proxy).await;
        }
    });
    Ok(reloader)
}

/// A file's state, told apart cheaply: device, inode, size, modification
/// time; `None` if it cannot be read.
type Identity = Option<(u64, u64, u64, Option<std::time::SystemTime>)>;

fn identity(path: &Path) -> Identity {
    use std::os::unix::fs::MetadataExt;
    let file = std::fs::metadata(path).ok()?;
    Some((file.dev(), file.ino(), file.len(), file.modified().ok()))
}

/// Wakes `wake` when `path` changes, seen by [`watch_file`] or by
/// [`look_again`]; both note the state they woke for in one place, so a
/// change one of them saw does not wake the other too.
fn watch_changes(path: &Path, wake: &Arc<Notify>) -> Result<notify::RecommendedWatcher> {
    let seen = Arc::new(std::sync::Mutex::new(identity(path)));
    let watcher = watch_file(path, wake.clone(), seen.clone())?;
    tokio::spawn(look_again(path.to_path_buf(), wake.clone(), seen));
    Ok(watcher)
}

/// Watches the directory holding `path` (so replacement by rename is seen)
/// and wakes `wake` on any change to `path`, or to where it leads: when
/// `path` is a symlink, as in a Kubernetes ConfigMap volume (whose files are
/// replaced by swapping a `..data` symlink beside them) or a
/// `current -> releases/v2` layout, a swap elsewhere in the directory
/// changes the file `path` resolves to, and that counts too.
fn watch_file(
    path: &Path,
    wake: Arc<Notify>,
    seen: Arc<std::sync::Mutex<Identity>>,
) -> Result<notify::RecommendedWatcher> {
    let path = std::path::absolute(path)
        .with_context(|| format!("failed to watch `{}`", path.display()))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let target = path.clone();
    let resolved = std::sync::Mutex::new(std::fs::canonicalize(&path).ok());
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if !matches!(event.kind, EventKind::Access(_)) => {
                let now = std::fs::canonicalize(&target).ok();
                let moved = {
                    let mut resolved = resolved.lock().unwrap_or_else(|e| e.into_inner());
                    std::mem::replace(&mut *resolved, now.clone()) != now
                };
                if moved || event.paths.iter().any(|changed| changed == &target) {
                    *seen.lock().unwrap_or_else(|e| e.into_inner()) = identity(&target);
                    wake.notify_one();
                }
            }
            Ok(_) => {}
            Err(err) => tracing::warn!("file watcher error: {err}"),
        })
        .context("failed to start the file watcher")?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("failed to watch `{}`", dir.display()))?;
    tracing::info!(path = %path.display(), "watching the component for changes");
    Ok(watcher)
}

/// Looks at `path` every [`LOOK_AGAIN`] and wakes `wake` when the file it
/// leads to is another, or was written: what the directory watch misses.
/// That watch ends, unnoticed, when the directory itself is replaced (a
/// deploy that recreates it), and it watches where a symlinked directory
/// led at start, so `dir/current/app.wasm` with `current` switched to
/// another release looks unchanged to it.
async fn look_again(path: PathBuf, wake: Arc<Notify>, seen: Arc<std::sync::Mutex<Identity>>) {
    loop {
        tokio::time::sleep(LOOK_AGAIN).await;
        let looking = path.clone();
        let Ok(now) = tokio::task::spawn_blocking(move || identity(&looking)).await else {
            return;
        };
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        if now != *seen {
            *seen = now;
            wake.notify_one();
        }
    }
}

/// Reads `--config-file` again, if any; a file that does not parse leaves
/// the values in force.
fn reload_config(proxy: &Proxy) {
    let config = &proxy.grants().config;
    let Some(file) = config.file() else { return };
    match config.reload() {
        Ok(()) => tracing::info!(file = %file.display(), "configuration reloaded"),
        Err(err) => {
            proxy.metrics().reloaded("rejected");
            tracing::warn!("configuration reload rejected: {err:#}; the values in force stay");
        }
    }
}

/// Loads the configuration file and the component file again; swaps in
/// the component if it differs and loads.
async fn reload(proxy: &Arc<Proxy>) {
    reload_config(proxy);
    let path: PathBuf = proxy.path().to_path_buf();
    let reading = path.clone();
    let read = tokio::task::spawn_blocking(move || crate::runtime::read_component(&reading)).await;
    let bytes = match read.map_err(anyhow::Error::from).and_then(|read| read) {
        Ok(bytes) => bytes,
        Err(err) => {
            proxy.metrics().reloaded("rejected");
            tracing::warn!(path = %path.display(), "reload rejected: cannot read the file: {err:#}; still serving the old component");
            return;
        }
    };
    let old = proxy.current();
    if content_hash(&bytes) == old.hash {
        // Said at the level of the reload it stands for: whoever sent SIGHUP
        // learns that nothing was swapped, and why.
        tracing::info!(
            hash = old.hash,
            "component file unchanged; still serving it"
        );
        return;
    }
    let started = Instant::now();
    let runtime = proxy.runtime().clone();
    // Compiling takes a while: keep it off the threads serving requests.
    let compiled = tokio::task::spawn_blocking(move || runtime.compile(&bytes)).await;
    match compiled {
        Ok(Ok(guest)) => {
            let (new_hash, wasi) = (guest.hash.clone(), guest.wasi());
            let old = proxy.swap(guest);
            proxy.metrics().reloaded("ok");
            tracing::info!(
                old = old.hash,
                new = new_hash,
                wasi,
                compile = ?started.elapsed(),
                "component reloaded"
            );
        }
        Ok(Err(err)) => {
            proxy.metrics().reloaded("rejected");
            tracing::warn!(
                path = %path.display(),
                still_serving = old.hash,
                "reload rejected: {}",
                one_line(&err)
            );
        }
        Err(join) => tracing::error!("reload task failed: {join}"),
    }
}
