//! The `serve` lifecycle in one place, run alike by the binary and the tests. I/O.
//!
//! [`Service::load`] turns a [`Config`] into the shared state (templates, TLS pair, the journal's
//! writer threads): every start-up error happens here or when [`Service::start`] binds, never once
//! requests are served. [`Running`] owns every task and thread started for serving and stops them in
//! one order: lame duck -> drain (both in [`server::run`]) -> the durable side, started and stopped
//! as one value (`Durable`: end the spill import, stop the forwarder and flush the journal,
//! spilling what it did not take; side by side, each bounded in time whatever the store does) ->
//! the exit status.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{Config, JournalConfig, StartupError};
use crate::forward::{Deliverer, Settings as ForwardSettings};
use crate::journal::spill;
use crate::journal::writer::{self, Journal};
use crate::journal::{JournalUrl, Unavailable};
use crate::keyring::KeyRing;
use crate::metrics::{ForwardMetrics, Metrics};
use crate::server::app::{App, Settings};
use crate::server::tls::CertStore;
use crate::templates::Templates;
use crate::upstream::Upstream;
use crate::{journal, reload, server};

/// How `serve` ended, as the process's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Drained, and every acknowledged event is in the journal.
    Clean,
    /// The journal did not take every acknowledged event and they are lost.
    EventsLost,
    /// The journal did not take every event, but they are safe in the spill folder.
    EventsSpilled,
}

impl Exit {
    /// The exit status: 0, 1 (events lost) or 3 (events spilled).
    pub fn code(self) -> u8 {
        match self {
            Exit::Clean => 0,
            Exit::EventsLost => 1,
            Exit::EventsSpilled => 3,
        }
    }
}

/// The shared state, loaded and checked, with what starting it needs.
#[derive(Debug)]
pub struct Service {
    app: Arc<App>,
    listen: SocketAddr,
    /// Folders whose changes trigger a reload; empty with `--watch false`.
    watch: Vec<PathBuf>,
    durable: Durable,
}

impl Service {
    /// Loads the templates and the TLS pair and starts the journal's writer. Blocks (reads files).
    pub fn load(config: Config) -> Result<Service, StartupError> {
        let templates = Templates::load(&config.templates, config.role, &config.template_settings)
            .map_err(|diagnostics| {
                let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
                StartupError::Templates(format!(
                    "{} problem(s), as `{}` reports them:\n{}",
                    diagnostics.len(),
                    crate::templates::check_command(
                        &config.templates,
                        config.config_file.as_deref()
                    ),
                    lines.join("\n")
                ))
            })?;
        let tls = match &config.tls {
            Some(files) => Some(CertStore::load(files).map_err(StartupError::Tls)?),
            None => None,
        };
        let watch = if config.watch {
            watched_folders(&config)
        } else {
            Vec::new()
        };
        let mut metrics = Metrics::new(config.role.as_str());
        let durable = Durable::load(config.journal, config.forward, &mut metrics)?;
        let upstream = match &config.upstream {
            Some(settings) => {
                let upstream =
                    Upstream::new(settings.clone()).map_err(|message| StartupError::Invalid {
                        setting: "upstream",
                        message,
                    })?;
                metrics.enable_upstream(upstream.metrics());
                Some(upstream)
            }
            None => None,
        };
        let settings = Settings {
            role: config.role,
            public_url: config.public_url,
            trust_forwarded_headers: config.trust_forwarded_headers,
            keyring: config.keyring,
            limits: config.limits,
            templates: config.templates,
            template_settings: config.template_settings,
        };
        Ok(Service {
            app: App::new(
                settings,
                templates,
                tls,
                durable.writer.clone(),
                upstream,
                metrics,
            ),
            listen: config.listen,
            watch,
            durable,
        })
    }

    /// The shared state requests will see.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Binds the configured address and starts serving until `shutdown` resolves (or
    /// [`Running::shutdown`] is called). Call from inside a runtime.
    pub async fn start(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Running, StartupError> {
        let listener = server::listener::bind(self.listen).map_err(|e| StartupError::Bind {
            addr: self.listen.to_string(),
            message: e.to_string(),
        })?;
        self.start_on(listener, shutdown)
    }

    /// Like [`Service::start`] on a listener already bound (tests bind port 0, or share a socket).
    pub fn start_on(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Running, StartupError> {
        let app = self.app;
        let settings = app.settings();
        let addr = listener.local_addr().unwrap_or(self.listen);
        tracing::info!(
            listen = %addr,
            role = settings.role.as_str(),
            public_url = settings.public_url.as_ref().map(|u| u.as_str()),
            "listening"
        );
        if settings.public_url.is_none() && !addr.ip().is_loopback() {
            tracing::warn!(
                listen = %addr,
                "no --public-url: signatures are checked against a URL rebuilt from the Host header \
                 (or X-Forwarded-* when trusted); behind a load balancer or proxy, set --public-url \
                 to the URL configured in Twilio"
            );
        }
        let mut reloaders = vec![tokio::spawn(reload::on_sighup(app.clone()))];
        if !self.watch.is_empty() {
            reloaders.push(tokio::spawn(reload::on_file_change(
                app.clone(),
                self.watch,
            )));
        }
        let mut durable = self.durable;
        durable.start(&settings.keyring, &app.metrics().forward)?;
        let (trigger, triggered) = oneshot::channel::<()>();
        let stop = async move {
            // A dropped trigger (the `Running` went away) also stops the server.
            tokio::select! {
                _ = triggered => {}
                () = shutdown => {}
            }
        };
        let task = tokio::spawn(serve_then_stop(
            listener,
            app.clone(),
            stop,
            reloaders,
            durable,
        ));
        Ok(Running {
            addr,
            app,
            trigger: Some(trigger),
            task,
        })
    }
}

/// How long start-up waits for the journal's first answer.
const JOURNAL_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Start-up tells the truth about the journal: one that can never work as configured stops
/// start-up (exit 2, naming `journal`); one that is only unreachable now (a server restarting or
/// not up yet) is logged and served around: the server answers, holds events in memory and
/// retries, and `journal_up` says 0. Returns whether it answered.
fn check_journal(url: &JournalUrl) -> Result<bool, StartupError> {
    match journal::probe(url, JOURNAL_PROBE_TIMEOUT) {
        Ok(()) => {
            tracing::info!(journal = %url.describe(), "journal ready");
            Ok(true)
        }
        Err(Unavailable::ForNow(e)) => {
            tracing::warn!(
                journal = %url.describe(),
                error = %e,
                "journal unreachable at start-up; serving anyway: events are held in memory and \
                 retried until it answers"
            );
            Ok(false)
        }
        Err(Unavailable::Never(e)) => Err(StartupError::Invalid {
            setting: "journal",
            message: match url {
                JournalUrl::Sqlite(_) => e.0,
                JournalUrl::Postgres(_) => format!("{}: {}", url.describe(), e.0),
            },
        }),
    }
}

/// The folders to watch: the template root, and each TLS file's folder (cert-manager and editors
/// replace files by renaming, which a watch on the file itself misses).
fn watched_folders(config: &Config) -> Vec<PathBuf> {
    let mut paths = vec![config.templates.clone()];
    if let Some(tls) = &config.tls {
        for file in [&tls.cert, &tls.key] {
            let dir = file.parent().filter(|p| !p.as_os_str().is_empty());
            paths.push(dir.unwrap_or(Path::new(".")).to_path_buf());
        }
    }
    paths
}

/// A service serving; it owns every task and thread started for it.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    app: Arc<App>,
    trigger: Option<oneshot::Sender<()>>,
    task: JoinHandle<Exit>,
}

impl Running {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state requests see.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Starts the shutdown (as SIGTERM does) without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(trigger) = self.trigger.take() {
            let _ = trigger.send(());
        }
    }

    /// Starts the shutdown and waits for every step of it.
    pub async fn shutdown(mut self) -> Exit {
        self.begin_shutdown();
        self.finished().await
    }

    /// Waits until the service has stopped (after its shutdown signal) and says how it ended.
    pub async fn finished(self) -> Exit {
        let Running { trigger, task, .. } = self;
        let exit = task.await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "the serving task failed");
            Exit::EventsLost
        });
        drop(trigger);
        exit
    }
}

/// Serves until `stop`, then takes everything down in order.
async fn serve_then_stop(
    listener: TcpListener,
    app: Arc<App>,
    stop: impl Future<Output = ()>,
    reloaders: Vec<JoinHandle<()>>,
    durable: Durable,
) -> Exit {
    server::run(listener, app, stop).await;
    for task in &reloaders {
        task.abort();
    }
    durable.stop().await
}

/// What keeps acknowledged events beyond their request, started and stopped as one: the journal's
/// writer (the request path submits to the same handle, through [`App`]), the spill folder with the
/// import of what an earlier exit left there, and the forwarder.
#[derive(Debug)]
struct Durable {
    writer: Option<Arc<Journal>>,
    spill_dir: Option<PathBuf>,
    /// The forwarder's settings until [`Durable::start`] spawns it.
    forward: Option<ForwardSettings>,
    import: Option<spill::Import>,
    deliverer: Option<Deliverer>,
}

impl Durable {
    /// Before serving: checks the journal and starts its writer; start-up errors name the setting.
    fn load(
        journal: Option<JournalConfig>,
        forward: Option<ForwardSettings>,
        metrics: &mut Metrics,
    ) -> Result<Durable, StartupError> {
        let (writer, spill_dir) = match journal {
            Some(j) => {
                metrics.enable_journal();
                metrics.journal.up(check_journal(&j.url)?);
                let settings = writer::Settings {
                    timeout: j.timeout,
                    forwarding: forward.is_some(),
                    retention: j.retention,
                    ..writer::Settings::default()
                };
                let started = Journal::start(j.url, settings, metrics.journal.clone());
                let writer = started.map_err(|e| StartupError::Invalid {
                    setting: "journal",
                    message: format!("cannot start the writer: {e}"),
                })?;
                (Some(Arc::new(writer)), j.spill_dir)
            }
            None => (None, None),
        };
        if forward.is_some() {
            metrics.enable_forward();
        }
        Ok(Durable {
            writer,
            spill_dir,
            forward,
            import: None,
            deliverer: None,
        })
    }

    /// Once serving: sweeps the spill folder for what earlier exits (this replica's or, in a
    /// shared folder, any other's) left there, and starts the forwarder (inside the runtime).
    fn start(&mut self, keyring: &KeyRing, metrics: &ForwardMetrics) -> Result<(), StartupError> {
        let Some(writer) = &self.writer else {
            return Ok(());
        };
        if let Some(dir) = &self.spill_dir {
            let import = spill::Import::start(dir.clone(), writer.url().clone(), SPILL_SWEEP)
                .map_err(|e| StartupError::Invalid {
                    setting: "journal-spill-dir",
                    message: e.to_string(),
                })?;
            self.import = Some(import);
        }
        if let Some(forward) = self.forward.take() {
            let deliverer = Deliverer::spawn(
                writer.url().clone(),
                forward,
                keyring.clone(),
                metrics.clone(),
                writer.appended(),
            )
            .map_err(|message| StartupError::Invalid {
                setting: "forward-to",
                message,
            })?;
            self.deliverer = Some(deliverer);
        }
        Ok(())
    }

    /// After the drain: ends the spill import, stops the forwarder and gives the writer its last
    /// write, spilling what it did not take. The three run side by side, each bounded in time
    /// whatever the store does: the forwarder only reads what is committed, the writer only
    /// appends, and the import only appends what earlier exits left, so none waits for another and
    /// a store that hangs costs the longest bound, not their sum.
    async fn stop(self) -> Exit {
        let Durable {
            writer,
            spill_dir,
            import,
            deliverer,
            ..
        } = self;
        // Told before this server's own spill file can exist, so that the import never claims it:
        // it is left to the other replicas on the folder, or the next start.
        if let Some(import) = &import {
            import.ask_to_stop();
        }
        let import = async {
            let Some(import) = import else { return };
            // Joining waits on its thread: not on a runtime worker.
            let ended = tokio::task::spawn_blocking(move || import.stop(JOURNAL_EXIT_WAIT)).await;
            if !matches!(ended, Ok(true)) {
                tracing::warn!(
                    "the spill import did not stop in time (the journal store is not answering); \
                     the file it holds is taken over by the next importer once it goes quiet"
                );
            }
        };
        let forwarder = async {
            let Some(deliverer) = deliverer else { return };
            if tokio::time::timeout(FORWARDER_STOP_WAIT, deliverer.stop())
                .await
                .is_err()
            {
                tracing::warn!(
                    "the forwarder did not stop in time (the journal store is not answering); \
                     undelivered events stay in the journal for the next start"
                );
            }
        };
        let journal = async {
            let Some(writer) = writer else {
                return Exit::Clean;
            };
            // Draining the writer waits on its thread: not on a runtime worker.
            let finish =
                tokio::task::spawn_blocking(move || finish_journal(&writer, spill_dir.as_deref()));
            finish.await.unwrap_or(Exit::EventsLost)
        };
        tokio::join!(import, forwarder, journal).2
    }
}

/// How often the spill folder is swept for files to take back (other replicas' when it is shared),
/// and so how soon a file is tried again while the journal does not take it.
const SPILL_SWEEP: Duration = Duration::from_secs(5);

/// How long the journal's last write may take at exit before what it holds goes to the spill
/// folder: a store that answers commits in milliseconds; one that has not answered in this long
/// (a SQLite file another process keeps locked, a PostgreSQL server that accepts and never answers)
/// is treated as down. Shorter than the forwarder's stop, which runs beside it.
pub const JOURNAL_EXIT_WAIT: Duration = Duration::from_secs(3);

/// How long stopping the forwarder may take: its own grace for attempts in flight. Closing its
/// store connections after that is cut short when the store hangs (the process exit closes them).
const FORWARDER_STOP_WAIT: Duration = crate::forward::STOP_GRACE;

/// Gives events buffered during a journal outage one last chance, then spills what is left to
/// `--journal-spill-dir`. Never ends clean with acknowledged events outside the journal.
fn finish_journal(journal: &Journal, spill_dir: Option<&Path>) -> Exit {
    let Some(left) = journal.drain(JOURNAL_EXIT_WAIT) else {
        tracing::error!(
            journal = %journal.url(),
            "journal writer thread is gone at exit; the events it buffered are lost"
        );
        return Exit::EventsLost;
    };
    if left.is_empty() {
        return Exit::Clean;
    }
    let Some(dir) = spill_dir else {
        tracing::error!(
            lost = left.len(),
            "exiting with acknowledged events the journal did not take; they are lost \
             (set --journal-spill-dir to keep them)"
        );
        return Exit::EventsLost;
    };
    match journal::spill::write(dir, &left) {
        Ok(path) => {
            tracing::error!(
                spilled = left.len(),
                file = %path.display(),
                "journal unavailable at exit; events written to the spill file, taken back by the next server to sweep the folder"
            );
            Exit::EventsSpilled
        }
        Err(e) => {
            tracing::error!(
                lost = left.len(),
                dir = %dir.display(),
                error = %e,
                "cannot write the spill file; the events the journal did not take are lost"
            );
            Exit::EventsLost
        }
    }
}
