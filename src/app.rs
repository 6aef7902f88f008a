//! The shared state every request sees, built once in `main` (or a test) and handed down.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::readiness::Readiness;
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
    /// Permits for requests in progress; none left means shed with 503.
    pub concurrency: Arc<Semaphore>,
}

impl App {
    /// Builds the state from a config and the templates loaded for it.
    pub fn new(config: Config, templates: Templates) -> Arc<App> {
        let metrics = Metrics::new(config.role.as_str());
        let concurrency = Arc::new(Semaphore::new(config.limits.max_concurrency));
        Arc::new(App {
            templates: ArcSwap::from_pointee(templates),
            metrics,
            readiness: Readiness::default(),
            concurrency,
            config,
        })
    }

    /// Loads the config's templates and builds the state; diagnostics when the set is bad.
    pub fn load(config: Config) -> Result<Arc<App>, Vec<Diagnostic>> {
        let templates = Templates::load(&config.templates, config.role, &config.template_settings)?;
        Ok(App::new(config, templates))
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
