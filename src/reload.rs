//! Reload triggers: SIGHUP, and changes under the template directory (debounced), each leading to one
//! whole reload through [`App::reload`]: templates and TLS pair, each kept as it was if the new one fails.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::app::App;
use crate::signals;

/// How long to wait for an editor, `git checkout` or a ConfigMap swap to finish writing.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Reloads on every SIGHUP until the process ends.
pub async fn on_sighup(app: Arc<App>) {
    let Some(mut hups) = signals::reloads() else {
        tracing::warn!("cannot listen for SIGHUP; reload by restarting");
        return;
    };
    while hups.recv().await.is_some() {
        tracing::info!(signal = "SIGHUP", "reloading");
        app.reload();
    }
}

/// Watches `paths` and reloads once per burst of changes. Runs until the process ends; returns at
/// once (with a log line) if the platform cannot watch files, leaving SIGHUP as the trigger.
pub async fn on_file_change(app: Arc<App>, paths: Vec<PathBuf>) {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            // A full channel already holds a pending reload; dropping this event loses nothing.
            let _ = tx.try_send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch files; reload with SIGHUP");
            return;
        }
    };
    for path in &paths {
        if let Err(e) = watcher.watch(path, RecursiveMode::Recursive) {
            tracing::warn!(path = %path.display(), error = %e, "cannot watch; reload with SIGHUP");
        }
    }
    while rx.recv().await.is_some() {
        tokio::time::sleep(DEBOUNCE).await;
        while rx.try_recv().is_ok() {}
        tracing::info!("files changed; reloading");
        app.reload();
    }
}
