//! `monitor`: the wiring file and credentials from flags and the environment, then rounds until
//! SIGTERM or SIGINT with the listener beside them, or one round with `--once` (status JSON on
//! stdout; exit 1 when a number fails). See [`crate::monitor`]. I/O (environment, terminal,
//! signals); the decisions are the monitor's.

use std::process::ExitCode;

use super::numbers::wiring_and_api;
use super::{print, Failure, Outcome};
use crate::monitor::{http, Monitor, MonitorArgs, Setup};
use crate::secrets::{self, process_env};
use crate::{logging, net, signals};

/// Runs the monitor.
pub fn run(args: MonitorArgs) -> Outcome {
    if let Some(problem) = args.problem() {
        return Err(Failure::new(problem));
    }
    let (wiring, api) = wiring_and_api(args.wiring.as_deref(), args.api_base.clone(), args.rate)?;
    let token = match &args.auth_token_file {
        // Read as `serve` reads its token file: bounded, the trailing newline dropped, not empty.
        Some(path) => {
            let secret = secrets::read_file("auth-token-file", path)
                .map_err(|e| Failure::new(format!("{}: {}", e.setting, e.message)))?;
            Some(String::from_utf8_lossy(secret.expose()).into_owned())
        }
        None => process_env("TWILIO_AUTH_TOKEN").filter(|t| !t.is_empty()),
    };
    let roots = net::tls::roots(args.probe_ca_file.as_deref())
        .map_err(|e| Failure::new(format!("probe-ca-file: {e}")))?;
    let listen = args.listen_addr().map_err(Failure::new)?;
    let format = args.log_format().map_err(Failure::new)?;
    let once = args.once;
    let interval = args.interval().as_secs_f64();
    // Dropped when `run` returns: the last lines are written out.
    let _logging = logging::init(format);
    if token.is_none() {
        tracing::warn!(
            target: "twiml_failover::monitor",
            "no auth token (TWILIO_AUTH_TOKEN or --auth-token-file): probes check reachability and certificates only, no signed webhook"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Failure::new)?;
    let mut monitor = Monitor::new(Setup {
        args,
        wiring,
        api,
        token,
        roots,
    });
    runtime.block_on(async move {
        if once {
            let status = monitor.round().await;
            print(&(serde_json::to_string_pretty(&status).unwrap_or_default() + "\n"));
            // Reads that did not end leave nothing to judge from in a single round.
            return Ok(if !status.api.complete {
                ExitCode::from(2)
            } else if status.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        let (listener, bound) = http::bind(listen)
            .await
            .map_err(|e| Failure::new(format!("listen: {listen}: {e}")))?;
        tracing::info!(
            target: "twiml_failover::monitor",
            listen = %bound,
            interval_seconds = interval,
            "monitor started"
        );
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            signals::shutdown().await;
            let _ = stop.send(true);
        });
        let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let listener_task = tokio::spawn(http::serve(
            listener,
            monitor.published(),
            until_stopped(stopped.clone()),
        ));
        monitor.run(until_stopped(stopped)).await;
        let _ = listener_task.await;
        Ok(ExitCode::SUCCESS)
    })
}
