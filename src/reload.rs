//! Reload triggers: SIGHUP, and changes under the template directory (debounced), each leading to one
//! whole reload through [`App::reload`]: templates and TLS pair, each kept as it was if the new one fails.
//!
//! A reload reads files and compiles templates, which can take a while for a big set: it runs on
//! tokio's blocking pool, never on the threads that serve requests, and `App::reload` lets only one
//! run at a time. The watcher re-arms itself when a watched folder is deleted and created again
//! (or replaced by a rename), and says so in the log and in `template_watch_active`.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::server::app::App;
use crate::signals;

/// How long to wait for an editor, `git checkout` or a ConfigMap swap to finish writing.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// How often the watcher checks that each folder is still the one it watches. A folder deleted and
/// created again sends no event to the old watch, so this is how the new one is found.
pub const RECHECK: Duration = Duration::from_secs(1);

/// Runs one whole reload off the request-serving threads and waits for it.
pub async fn reload(app: &Arc<App>) {
    let app = app.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || app.reload()).await {
        tracing::error!(error = %e, "reload did not finish; keeping what was loaded");
    }
}

/// Reloads on every SIGHUP until the process ends.
pub async fn on_sighup(app: Arc<App>) {
    let Some(mut hups) = signals::reloads() else {
        tracing::warn!("cannot listen for SIGHUP; reload by restarting");
        return;
    };
    while hups.recv().await.is_some() {
        tracing::info!(signal = "SIGHUP", "reloading");
        reload(&app).await;
    }
}

/// One watched folder and the identity (device, inode) of what the watch was set on.
struct Watched {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

fn identity(path: &std::path::Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl Watched {
    /// Re-arms the watch when the folder was replaced, created again or is gone; true when it changed.
    fn refresh(&mut self, watcher: &mut impl Watcher) -> bool {
        let now = identity(&self.path);
        if now == self.identity {
            return false;
        }
        // The old watch died with the old folder; removing it may fail, which is fine.
        let _ = watcher.unwatch(&self.path);
        let was_watched = self.identity.is_some();
        self.identity = None;
        if now.is_none() {
            tracing::error!(
                path = %self.path.display(),
                "watched folder is gone; keeping what is loaded, watching for it to come back"
            );
            return true;
        }
        match watcher.watch(&self.path, RecursiveMode::Recursive) {
            Ok(()) => {
                self.identity = now;
                if was_watched {
                    tracing::warn!(path = %self.path.display(), "watched folder was replaced; watching the new one");
                } else {
                    tracing::info!(path = %self.path.display(), "watching for changes");
                }
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot watch; reload with SIGHUP");
            }
        }
        true
    }
}

/// Watches `paths` and reloads once per burst of changes. The watch is armed before this returns,
/// so a change made once the server answers is never missed (arming it inside the task left a
/// moment after start-up in which a change went unseen). The returned loop runs until the process
/// ends; it ends at once (with a log line, and `template_watch_active` 0) if the platform cannot
/// watch files, leaving SIGHUP as the trigger.
pub fn on_file_change(
    app: Arc<App>,
    paths: Vec<PathBuf>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let armed = arm(&app, paths);
    async move {
        if let Some((watcher, watched, rx)) = armed {
            reload_on_change(app, watcher, watched, rx).await;
        }
    }
}

type Armed = (notify::RecommendedWatcher, Vec<Watched>, mpsc::Receiver<()>);

fn arm(app: &App, paths: Vec<PathBuf>) -> Option<Armed> {
    let (tx, rx) = mpsc::channel::<()>(1);
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            // A full channel already holds a pending reload; dropping this event loses nothing.
            let _ = tx.try_send(());
        }
    };
    // Links are not followed: the template reader refuses directory links, and a link loop must
    // not make the watcher walk forever either.
    let config = notify::Config::default().with_follow_symlinks(false);
    let mut watcher = match notify::RecommendedWatcher::new(handler, config) {
        Ok(w) => w,
        Err(e) => {
            app.metrics().template_watch(false);
            tracing::error!(error = %e, "cannot watch files; reload with SIGHUP");
            return None;
        }
    };
    let mut watched: Vec<Watched> = paths
        .into_iter()
        .map(|path| Watched {
            path,
            identity: None,
        })
        .collect();
    for w in &mut watched {
        w.refresh(&mut watcher);
    }
    app.metrics()
        .template_watch(watched.iter().all(|w| w.identity.is_some()));
    Some((watcher, watched, rx))
}

async fn reload_on_change(
    app: Arc<App>,
    mut watcher: notify::RecommendedWatcher,
    mut watched: Vec<Watched>,
    mut rx: mpsc::Receiver<()>,
) {
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = rx.recv() => {
                if event.is_none() {
                    break;
                }
            }
            _ = recheck.tick() => {
                if !watched.iter().any(|w| identity(&w.path) != w.identity) {
                    continue;
                }
            }
        }
        tokio::time::sleep(DEBOUNCE).await;
        while rx.try_recv().is_ok() {}
        for w in &mut watched {
            w.refresh(&mut watcher);
        }
        app.metrics()
            .template_watch(watched.iter().all(|w| w.identity.is_some()));
        tracing::info!("files changed; reloading");
        reload(&app).await;
    }
    app.metrics().template_watch(false);
    tracing::error!("file watcher stopped; reload with SIGHUP");
}
