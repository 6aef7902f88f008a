//! `serve`: load the configuration, start logging, run the [`Service`] until SIGTERM or SIGINT,
//! and exit with the status its shutdown chose (see [`crate::service::Exit`]).

use std::process::ExitCode;
use std::time::Duration;

use super::template_inputs::no_config_file;
use super::{Failure, Outcome};
use crate::config::{self, Config, ServeArgs, StartupError};
use crate::secrets::process_env;
use crate::service::Service;
use crate::{logging, signals};

/// Serves until a signal; start-up problems are a [`Failure`] before any request is taken.
pub fn run(mut args: ServeArgs) -> Outcome {
    let given = args.config.is_some();
    let discovered = config::discover_config_file(&mut args.config);
    let config = Config::load(&args, &process_env)?;
    // Dropped when `run` returns, after the service has shut down: its last lines are written out.
    let _logging = logging::init(config.log_format);
    let no_config = !given && discovered.is_none();
    if let Some(path) = discovered {
        tracing::info!(config = %path.display(), "no --config given: read the config file found in the working directory");
    }
    let service = Service::load(config).map_err(|e| match e {
        // Templates that name [vars] fail without a config file: say there was none, once.
        StartupError::Templates(problems) if no_config => {
            Failure::new(format!("templates: {problems}\n{}", no_config_file()))
        }
        other => Failure::from(other),
    })?;
    if no_config {
        tracing::warn!("{}", no_config_file());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Failure::new)?;
    let outcome = runtime.block_on(async move {
        let running = service.start(signals::shutdown()).await?;
        Ok(ExitCode::from(running.finished().await.code()))
    });
    // A blocking task still waiting on a store that does not answer must not hold the exit: the
    // shutdown has already spilled or counted what it holds.
    runtime.shutdown_timeout(Duration::from_millis(500));
    outcome
}
