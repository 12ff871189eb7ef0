//! The whole server, started with one call: what `main.rs` runs after
//! parsing the command line, and what tests run in-process (admin, TLS and
//! reload included).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::proxy::Proxy;
use crate::reload::{self, Hangup, Reloader};
use crate::{admin, server, tls};

/// Where the server listens, bound by the caller (port 0 works).
pub struct Listeners {
    /// Guests are served here.
    pub http: TcpListener,
    /// `--admin-addr`: metrics, health and readiness.
    pub admin: Option<TcpListener>,
}

/// A running server.
pub struct App {
    url: String,
    admin: Option<SocketAddr>,
    proxy: Arc<Proxy>,
    reloader: Reloader,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<Result<()>>,
}

impl App {
    /// Loads `config.component` (failing with one line if it cannot be
    /// served), then serves it on `listeners`, with TLS, reloads (on SIGHUP
    /// when `hangup` is given) and the admin listener as `config` asks.
    pub async fn start(
        config: &Config,
        listeners: Listeners,
        hangup: Option<Hangup>,
    ) -> Result<Self> {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            _ => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        // Reading and compiling take seconds for a large component: off the
        // async threads, so that a signal meanwhile is still heard.
        let loading = config.clone();
        let proxy = tokio::task::spawn_blocking(move || Proxy::load(&loading))
            .await
            .context("loading the component failed")??;
        // The first line on stderr names the URL (test harnesses such as the
        // WASI test suite's read it there), followed by a space even in
        // JSON, where a quote would otherwise end it.
        let url = format!("{scheme}://{}", listeners.http.local_addr()?);
        let guest = proxy.current();
        tracing::info!(
            component = %config.component.display(),
            "listening on {url} (WASI {} component)",
            guest.wasi()
        );
        guest.log_compiled();
        drop(guest);
        // Watch before the address is announced: a change made as soon as
        // the server is up must not be missed.
        let reloader = reload::spawn(proxy.clone(), config.watch, hangup)?;
        let admin = match listeners.admin {
            Some(listener) => {
                let addr = listener
                    .local_addr()
                    .context("the admin listener has no address")?;
                tokio::spawn(admin::serve(
                    listener,
                    proxy.metrics().clone(),
                    proxy.readiness().clone(),
                    proxy.limits().header_read_timeout,
                ));
                Some(addr)
            }
            None => None,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(server::run(
            listeners.http,
            proxy.clone(),
            tls,
            async {
                let _ = stopped.await;
            },
            config.shutdown_timeout,
        ));
        Ok(Self {
            url,
            admin,
            proxy,
            reloader,
            stop: Some(stop),
            served,
        })
    }

    /// The URL guests are served on: `http://` or `https://`, and the
    /// address bound.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The admin listener's address, if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// The component being served, its limits and metrics.
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// Loads the component file again, as SIGHUP does.
    pub fn reload(&self) {
        self.reloader.reload();
    }

    /// Stops accepting, lets requests in flight finish for up to
    /// `--shutdown-timeout`, cuts what is left, and returns once done.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.served).await.context("the server task failed")?
    }
}
