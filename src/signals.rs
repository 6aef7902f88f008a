//! Process signals: SIGTERM and SIGINT start a graceful drain, SIGHUP asks for a reload.

use tokio::signal::unix::{signal, SignalKind};

/// Resolves on the first SIGTERM (Kubernetes, ECS) or SIGINT (Ctrl-C, Fly.io).
pub async fn shutdown() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process can only be killed; never return early.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "shutdown requested"),
    }
}

/// A stream of SIGHUPs; `None` if the handler cannot be installed.
pub fn reloads() -> Option<tokio::signal::unix::Signal> {
    signal(SignalKind::hangup()).ok()
}
