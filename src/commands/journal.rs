//! `journal stats|list|show|replay`: read the webhook journal, or send its events again.
//! Reading never creates a journal: a mistyped SQLite path is an error, not an empty journal.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::journal_args::{
    self, JournalArgs, JournalCommand, JournalFormat, ReplayArgs, ReplayProgress,
};
use super::{current_thread_runtime, print, Failure, Outcome};
use crate::config;
use crate::forward::client::Client;
use crate::forward::replay::Replay;
use crate::journal::{self, inspect, time, JournalUrl, Store};
use crate::secrets::process_env;

/// Runs one `journal` subcommand against `--journal` (or the config file's `[journal] url`).
pub fn run(args: JournalArgs) -> Outcome {
    let (raw, file_password) = match (args.journal, &args.config) {
        (Some(url), _) => (url, None),
        (None, Some(path)) => match journal_args::load_journal_url(path)? {
            (Some(url), password_file) => (url, password_file),
            (None, _) => {
                return Err(Failure::new(format!(
                    "journal: {} has no [journal] url",
                    path.display()
                )))
            }
        },
        (None, None) => {
            return Err(Failure::new(
                "journal: give --journal URL (or --config with [journal] url)",
            ))
        }
    };
    let password_file = args.journal_password_file.or(file_password);
    let url = config::journal_url(&raw, password_file.as_deref(), &process_env)?;
    // Reading must not create an empty journal where the operator mistyped a path.
    if let JournalUrl::Sqlite(path) = &url {
        if !path.is_file() {
            return Err(Failure::new(format!(
                "journal: no journal at {}",
                path.display()
            )));
        }
    }
    let mut store = journal::open(&url).map_err(Failure::new)?;
    let now = time::now_ms();
    let json = args.format == JournalFormat::Json;
    let text = match args.command {
        JournalCommand::Stats => {
            let stats = store.stats().map_err(Failure::new)?;
            if json {
                inspect::stats_json(&stats, now)
            } else {
                inspect::stats_text(&stats, now)
            }
        }
        JournalCommand::List { since, limit } => {
            let since = since
                .map(|s| time::parse_since(&s, now))
                .transpose()
                .map_err(|e| Failure::new(format!("since: {e}")))?;
            let events = store.list(since, limit).map_err(Failure::new)?;
            if json {
                inspect::list_json(&events)
            } else {
                inspect::list_text(&events)
            }
        }
        JournalCommand::Replay(replay_args) => {
            return replay(replay_args, store, args.config.as_deref(), json)
        }
        JournalCommand::Show { id } => match store.get(id).map_err(Failure::new)? {
            Some(e) if json => inspect::event_json(&e) + "\n",
            Some(e) => inspect::show_text(&e),
            None => {
                eprintln!("twiml-failover: {}", inspect::no_event(id));
                return Ok(ExitCode::from(1));
            }
        },
    };
    print(&text);
    Ok(ExitCode::SUCCESS)
}

/// `journal replay`: sends the journaled events again, signed, to `--to` (or the configured
/// forward target); exit 1 when any was not accepted.
// Long on purpose: the replay loop with its per-event outcome and summary, as the operator reads them.
fn replay(
    args: ReplayArgs,
    store: Box<dyn Store>,
    config_file: Option<&Path>,
    json: bool,
) -> Outcome {
    let (keyring, configured) = journal_args::load_replay_settings(config_file, &process_env)?;
    let Some(to) = args.to.or(configured) else {
        return Err(Failure::new(
            "replay: give --to URL (or TWIML_FAILOVER_FORWARD_TO, or [forward] to)",
        ));
    };
    let to = config::forward_url(&to).map_err(|e| Failure::new(format!("to: {e}")))?;
    let since = args
        .since
        .map(|s| time::parse_since(&s, time::now_ms()))
        .transpose()
        .map_err(|e| Failure::new(format!("since: {e}")))?;
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 3600.0) {
        return Err(Failure::new(
            "timeout: must be a number of seconds above 0 and at most 3600",
        ));
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let client = Client::new(&to, 1, timeout).map_err(|e| Failure::new(format!("to: {e}")))?;
    let show_progress = args.progress == ReplayProgress::Auto && std::io::stderr().is_terminal();
    let runtime = current_thread_runtime()?;
    let replay = Replay::new(store);
    let result = runtime.block_on(async {
        let bar = if show_progress {
            let bar = indicatif::ProgressBar::new(replay.count(since).await?);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} events ({per_sec}), {msg}, eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_message("0 failed");
            Some(bar)
        } else {
            None
        };
        let summary = replay
            .run(&client, &keyring, since, |s| {
                if let Some(bar) = &bar {
                    bar.inc(1);
                    bar.set_message(format!("{} failed", s.failed));
                }
            })
            .await;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        summary
    });
    let summary = result.map_err(Failure::new)?;
    let text = if json {
        let failures: Vec<_> = summary
            .failures
            .iter()
            .map(|(id, error)| serde_json::json!({ "id": id, "error": error }))
            .collect();
        let report = serde_json::json!({
            "to": client.url(),
            "sent": summary.sent,
            "failed": summary.failed,
            "failures": failures,
        });
        format!("{report}\n")
    } else {
        let mut text = format!(
            "replayed to {}: {} sent, {} failed\n",
            client.url(),
            summary.sent,
            summary.failed
        );
        for (id, error) in &summary.failures {
            text.push_str(&format!("  event {id}: {error}\n"));
        }
        text
    };
    print(&text);
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
