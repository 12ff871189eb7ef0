//! The shutdown signal: Ctrl-C (SIGINT) or SIGTERM, whichever comes first.

use anyhow::{Context, Result};

/// Resolves when the process is asked to stop.
///
/// The handlers are installed before this returns, so a signal that arrives
/// while the server is starting is not lost.
pub fn signal() -> Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).context("failed to handle SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("failed to handle SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("received Ctrl-C, shutting down"),
                _ = terminate.recv() => tracing::info!("received SIGTERM, shutting down"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("received Ctrl-C, shutting down");
        })
    }
}
