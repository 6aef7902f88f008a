//! The state every request sees: the settings the request path reads, the hot-swappable templates
//! and TLS pair, metrics, readiness, and the bounds on work in progress. Built by
//! [`crate::service`], which also starts the threads and tasks around it; nothing here spawns.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use tokio::sync::Semaphore;

use super::limits::{BodyBudget, Limits};
use super::tls::CertStore;
use super::unverified_log::UnverifiedLog;
use crate::journal::writer::Journal;
use crate::keyring::KeyRing;
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::templates::{Diagnostic, TemplateSettings, Templates};
use crate::twilio::Role;
use crate::upstream::Upstream;
use crate::webhook::PublicUrl;

/// What the request path (and a reload) reads from the configuration, and nothing else.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Primary or fallback.
    pub role: Role,
    /// Base URL Twilio signs; `None` rebuilds it from the request.
    pub public_url: Option<PublicUrl>,
    /// Honour X-Forwarded-Proto/Host when rebuilding the URL.
    pub trust_forwarded_headers: bool,
    /// Signing secrets.
    pub keyring: KeyRing,
    /// Resource bounds.
    pub limits: Limits,
    /// Template root holding `primary/` and `fallback/`, reloaded from.
    pub templates: PathBuf,
    /// Template settings shared with `check`.
    pub template_settings: TemplateSettings,
}

/// The shared state; read through its methods, changed only by a reload.
#[derive(Debug)]
pub struct App {
    settings: Settings,
    /// The template sets in use; replaced whole by a successful reload.
    templates: ArcSwap<Templates>,
    metrics: Metrics,
    readiness: Readiness,
    /// Permits for requests past their body; none left means shed with 503.
    concurrency: Arc<Semaphore>,
    /// What bodies being read may hold between them.
    bodies: BodyBudget,
    /// How many lines unverified requests may cause.
    unverified_log: UnverifiedLog,
    tls: Option<Arc<CertStore>>,
    journal: Option<Arc<Journal>>,
    upstream: Option<Upstream>,
    /// Held while a reload runs, so two triggers never load at once.
    reloading: std::sync::Mutex<()>,
}

impl App {
    /// The state for `settings`, serving `templates` (and `tls` when set), journaling to `journal`
    /// when set (its writer already started), and asking `upstream` first when set.
    pub fn new(
        settings: Settings,
        templates: Templates,
        tls: Option<Arc<CertStore>>,
        journal: Option<Arc<Journal>>,
        upstream: Option<Upstream>,
        metrics: Metrics,
    ) -> Arc<App> {
        let limits = &settings.limits;
        let concurrency = Arc::new(Semaphore::new(limits.max_concurrency));
        let bodies = BodyBudget::new(
            limits.max_body_reads,
            limits.body_buffer_bytes,
            limits.body_grace,
        );
        Arc::new(App {
            templates: ArcSwap::from_pointee(templates),
            metrics,
            readiness: Readiness::default(),
            concurrency,
            bodies,
            unverified_log: UnverifiedLog::default(),
            tls,
            journal,
            upstream,
            settings,
            reloading: std::sync::Mutex::new(()),
        })
    }

    /// The settings the request path reads.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The template sets in use now (a reload may swap them for the next caller).
    pub fn templates(&self) -> Guard<Arc<Templates>> {
        self.templates.load()
    }

    /// Metric handles.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Lifecycle phase for `/readyz`.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// Permits for requests past their body.
    pub fn concurrency(&self) -> &Arc<Semaphore> {
        &self.concurrency
    }

    /// What bodies being read may hold between them.
    pub fn bodies(&self) -> &BodyBudget {
        &self.bodies
    }

    /// The budget of log lines about unverified requests.
    pub fn unverified_log(&self) -> &UnverifiedLog {
        &self.unverified_log
    }

    /// The TLS certificate, when serving HTTPS.
    pub fn tls(&self) -> Option<&Arc<CertStore>> {
        self.tls.as_ref()
    }

    /// The webhook journal's writer, when `--journal` is set.
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_deref()
    }

    /// The enterprise's own TwiML app, in upstream mode.
    pub fn upstream(&self) -> Option<&Upstream> {
        self.upstream.as_ref()
    }

    /// Reloads everything reloadable: templates, and the TLS pair when serving HTTPS. Blocks (reads
    /// files, compiles): call it from a blocking thread, as [`crate::reload::reload`] does.
    pub fn reload(&self) {
        // A reload that panicked left nothing half-done behind the lock: the swap is all or nothing.
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.reload_templates();
        if let Some(tls) = &self.tls {
            let result = tls.reload();
            self.metrics.certificate_reload(result.is_ok());
            match result {
                Ok(()) => tracing::info!("certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "certificate reload refused; keeping the current one")
                }
            }
        }
    }

    /// Re-reads the template directory; swaps it in only if the whole set passes `check`.
    pub fn reload_templates(&self) -> Result<(), Vec<Diagnostic>> {
        let result = Templates::load(
            &self.settings.templates,
            self.settings.role,
            &self.settings.template_settings,
        );
        self.metrics.template_reload(result.is_ok());
        match result {
            Ok(templates) => {
                self.templates.store(Arc::new(templates));
                tracing::info!("templates reloaded");
                Ok(())
            }
            Err(diagnostics) => {
                for d in &diagnostics {
                    tracing::error!(problem = %d, "template reload refused; keeping the current set");
                }
                Err(diagnostics)
            }
        }
    }
}
