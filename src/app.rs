//! The shared state every request sees, built once in `main` (or a test) and handed down.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;

use crate::config::{Config, StartupError};
use crate::journal::writer::{self, Journal};
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::server::limits::BodyBudget;
use crate::server::tls::CertStore;
use crate::templates::{Diagnostic, Templates};

/// Configuration, hot-swappable templates, metrics, readiness and the concurrency limit.
#[derive(Debug)]
pub struct App {
    /// Validated settings.
    pub config: Config,
    /// The template sets in use; replaced whole by a successful reload.
    pub templates: ArcSwap<Templates>,
    /// Metric handles.
    pub metrics: Metrics,
    /// Lifecycle phase for `/readyz`.
    pub readiness: Readiness,
    /// Permits for requests past their body; none left means shed with 503.
    pub concurrency: Arc<Semaphore>,
    /// What bodies being read may hold between them.
    pub bodies: BodyBudget,
    /// The TLS certificate, when serving HTTPS.
    pub tls: Option<Arc<CertStore>>,
    /// The webhook journal's writer, when `--journal` is set.
    pub journal: Option<Journal>,
    /// Held while a reload runs, so two triggers never load at once.
    reloading: std::sync::Mutex<()>,
}

impl App {
    /// Builds the state from a config and what was loaded for it.
    /// Starts the journal's writer thread when one is configured.
    pub fn new(
        config: Config,
        templates: Templates,
        tls: Option<Arc<CertStore>>,
    ) -> Result<Arc<App>, StartupError> {
        let mut metrics = Metrics::new(config.role.as_str());
        let journal = match &config.journal {
            Some(j) => {
                metrics.enable_journal();
                let settings = writer::Settings {
                    timeout: j.timeout,
                    forwarding: config.forward.is_some(),
                    retention: j.retention,
                    ..writer::Settings::default()
                };
                Some(
                    Journal::start(j.url.clone(), settings, metrics.journal.clone()).map_err(
                        |e| StartupError::Invalid {
                            setting: "journal",
                            message: format!("cannot start the writer: {e}"),
                        },
                    )?,
                )
            }
            None => None,
        };
        if config.forward.is_some() {
            metrics.enable_forward();
        }
        let concurrency = Arc::new(Semaphore::new(config.limits.max_concurrency));
        let limits = &config.limits;
        let bodies = BodyBudget::new(
            limits.max_body_reads,
            limits.body_buffer_bytes,
            limits.body_grace,
        );
        Ok(Arc::new(App {
            journal,
            templates: ArcSwap::from_pointee(templates),
            metrics,
            readiness: Readiness::default(),
            concurrency,
            bodies,
            tls,
            config,
            reloading: std::sync::Mutex::new(()),
        }))
    }

    /// Loads the config's templates and TLS pair and builds the state.
    pub fn load(config: Config) -> Result<Arc<App>, StartupError> {
        let templates = Templates::load(&config.templates, config.role, &config.template_settings)
            .map_err(|diagnostics| {
                let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
                StartupError::Templates(format!(
                    "{} problem(s); see them all with `{}`:\n{}",
                    diagnostics.len(),
                    check_command(&config),
                    lines.join("\n")
                ))
            })?;
        let tls = match &config.tls {
            Some(files) => Some(CertStore::load(files).map_err(StartupError::Tls)?),
            None => None,
        };
        App::new(config, templates, tls)
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
            &self.config.templates,
            self.config.role,
            &self.config.template_settings,
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

/// The `check` command that judges the same templates with the same config as this server.
fn check_command(config: &Config) -> String {
    let mut command = format!(
        "twiml-failover check --templates {}",
        config.templates.display()
    );
    if let Some(file) = &config.config_file {
        command.push_str(&format!(" --config {}", file.display()));
    }
    command
}
