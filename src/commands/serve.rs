//! `serve`: load the configuration, start logging, run the [`Service`] until SIGTERM or SIGINT,
//! and exit with the status its shutdown chose (see [`crate::service::Exit`]).

use std::io::IsTerminal;
use std::process::ExitCode;

use super::{Failure, Outcome};
use crate::cli::ServeArgs;
use crate::config::{self, Config, LogFormat};
use crate::service::Service;
use crate::{log_line, log_writer, signals};

/// Serves until a signal; start-up problems are a [`Failure`] before any request is taken.
pub fn run(mut args: ServeArgs) -> Outcome {
    let discovered = config::discover_config_file(&mut args.config);
    let config = Config::load(&args, &config::process_env)?;
    // Dropped when `run` returns, after the service: the last log lines are written out first.
    let _log_guard = init_logging(config.log_format);
    if let Some(path) = discovered {
        tracing::info!(config = %path.display(), "no --config given: read the config file found in the working directory");
    }
    let service = Service::load(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Failure::new)?;
    runtime.block_on(async move {
        let running = service.start(signals::shutdown()).await?;
        Ok(ExitCode::from(running.finished().await.code()))
    })
}

/// Logs to stderr through a buffer a background thread writes out, so no request waits on a
/// write; the guard writes out the rest when `serve` returns.
fn init_logging(format: LogFormat) -> log_writer::LogGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TWIML_FAILOVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = log_writer::buffered(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.event_format(log_line::TextLine).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    guard
}
