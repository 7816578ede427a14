//! Shutdown signals: [`shutdown_signal`] resolves on Ctrl-C or SIGTERM
//! (axum's `graceful-shutdown` example), for the command line, the gateway
//! and your own binaries.
//!
//! ```no_run
//! # async fn run(mut runner: enoki::ServiceRunner) -> enoki::Result<()> {
//! runner.run_until(enoki::shutdown::shutdown_signal()).await
//! # }
//! ```

use std::future::Future;

/// Resolves on Ctrl-C or SIGTERM. The signal handlers are installed when
/// this is called, not when first polled, so a signal that arrives in
/// between is not lost.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {},
                () = wait(terminate) => {},
            }
            tracing::info!("shutdown signal received");
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutdown signal received");
        }
    }
}
