//! The `twiml-failover` binary: parse the command line, then hand over to the library.

mod commands;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use twiml_failover::cli::{
    CheckArgs, Cli, Command, DrillArgs, JournalArgs, JournalCommand, JournalFormat, NumbersArgs,
    ReplayArgs, ReplayProgress, ServeArgs, SignArgs,
};
use twiml_failover::config::{self, Config, LogFormat};
use twiml_failover::service::Service;
use twiml_failover::signature::{self, Algorithm};
use twiml_failover::templates::check::check_all;
use twiml_failover::{log_line, log_writer, numbers, signals};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Check(args) => check(args),
        Command::Sign(args) => sign(args),
        Command::Drill(args) => drill(args),
        Command::Journal(args) => journal(args),
        Command::Numbers(args) => numbers(args),
        Command::Render(args) => commands::render::run(args),
        Command::Test(args) => commands::test::run(args),
        Command::ImportBin(args) => commands::import_bin::run(args),
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("twiml-failover: error: {e}");
    ExitCode::from(2)
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.event_format(log_line::TextLine).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    guard
}

fn serve(mut args: ServeArgs) -> ExitCode {
    let discovered = config::discover_config_file(&mut args.config);
    let config = match Config::load(&args, &config::process_env) {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    let log_guard = init_logging(config.log_format);
    if let Some(path) = discovered {
        tracing::info!(config = %path.display(), "no --config given: read the config file found in the working directory");
    }
    let service = match Service::load(config) {
        Ok(service) => service,
        Err(e) => {
            drop(log_guard);
            return fail(e);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    runtime.block_on(async move {
        match service.start(signals::shutdown()).await {
            Ok(running) => ExitCode::from(running.finished().await.code()),
            Err(e) => fail(e),
        }
    })
}

fn check(mut args: CheckArgs) -> ExitCode {
    if let Some(path) = config::discover_config_file(&mut args.config) {
        eprintln!("no --config given: reading {}", path.display());
    }
    let settings = match config::load_template_settings(args.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let root = args
        .templates
        .unwrap_or_else(|| std::path::PathBuf::from("twiml-templates"));
    if !root.is_dir() {
        return fail(format!("templates: {} is not a directory", root.display()));
    }
    let diagnostics = check_all(&root, &settings);
    for d in &diagnostics {
        println!("{d}");
    }
    if diagnostics.is_empty() {
        eprintln!("{}: both template sets are fine", root.display());
        ExitCode::SUCCESS
    } else {
        eprintln!("{} problem(s)", diagnostics.len());
        ExitCode::from(1)
    }
}

fn sign(args: SignArgs) -> ExitCode {
    let Some(algorithm) = Algorithm::from_name(&args.algorithm) else {
        return fail("algorithm: use HMAC_SHA1 or HMAC_SHA256");
    };
    if !args.url.starts_with("http://") && !args.url.starts_with("https://") {
        return fail("url: must start with http:// or https://");
    }
    // Connection overrides after `#` are not part of what Twilio signs.
    let url = args.url.split('#').next().unwrap_or("").to_string();
    if let Some(path) = args.json {
        let body = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => return fail(format!("json: {}: {e}", path.display())),
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}bodySHA256={}", signature::body_sha256_hex(&body));
        let sig = signature::sign(
            algorithm,
            args.token.as_bytes(),
            &url,
            &signature::NO_PARAMS,
        );
        println!("{sig}");
        println!("{url}");
        return ExitCode::SUCCESS;
    }
    let mut params = Vec::new();
    for p in &args.params {
        let Some((name, value)) = p.split_once('=') else {
            return fail(format!("parameter {p:?}: expected NAME=VALUE"));
        };
        params.push((name.to_string(), value.to_string()));
    }
    let sig = signature::sign(algorithm, args.token.as_bytes(), &url, &params);
    println!("{sig}");
    ExitCode::SUCCESS
}

fn drill(args: DrillArgs) -> ExitCode {
    use twiml_failover::cli::{DrillFormat, DrillProgress};
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let (mut primary, mut fallback) = (args.primary, args.fallback);
    let (mut sms_primary, mut sms_fallback) = (args.sms_primary, args.sms_fallback);
    if let Some(number) = &args.number {
        // The wiring Twilio actually has, read through the same code as `numbers`.
        let api_base = std::env::var("TWIML_FAILOVER_TWILIO_API_BASE").ok();
        let urls = match runtime.block_on(numbers::command::drill_urls(number, api_base)) {
            Ok(urls) => urls,
            Err(e) => return fail(e),
        };
        for note in &urls.notes {
            eprintln!("{number} {note}");
        }
        (primary, fallback) = (urls.primary, urls.fallback);
        (sms_primary, sms_fallback) = (urls.sms_primary, urls.sms_fallback);
    }
    let opts = twiml_failover::drill::Options {
        primary,
        fallback,
        sms_primary,
        sms_fallback,
        token: args.token,
        scenarios: args.scenario,
        simulate: args.simulate_primary_failure,
        digits: args.digits,
        from: args.from,
        to: args.to,
        body: args.body,
        account_sid: args.account_sid,
        progress: match args.progress {
            DrillProgress::Always => true,
            DrillProgress::Never => false,
            DrillProgress::Auto => std::io::IsTerminal::is_terminal(&std::io::stderr()),
        },
    };
    let report = match runtime.block_on(twiml_failover::drill::run(&opts)) {
        Ok(report) => report,
        Err(e) => return fail(e),
    };
    let text = match args.format {
        DrillFormat::Text => report.to_text(),
        DrillFormat::Json => report.to_json() + "\n",
    };
    // A closed pipe (`| head`) must not turn a finished drill into a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    if report.passes(args.fail_on) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn journal(args: JournalArgs) -> ExitCode {
    use twiml_failover::journal::{self, inspect, time, JournalUrl};
    let raw = match (args.journal, &args.config) {
        (Some(url), _) => url,
        (None, Some(path)) => match config::load_journal_url(path) {
            Ok(Some(url)) => url,
            Ok(None) => return fail(format!("journal: {} has no [journal] url", path.display())),
            Err(e) => return fail(e),
        },
        (None, None) => {
            return fail("journal: give --journal URL (or --config with [journal] url)")
        }
    };
    let url: JournalUrl = match raw.parse() {
        Ok(url) => url,
        Err(e) => return fail(format!("journal: {e}")),
    };
    // Reading must not create an empty journal where the operator mistyped a path.
    if let JournalUrl::Sqlite(path) = &url {
        if !path.is_file() {
            return fail(format!("journal: no journal at {}", path.display()));
        }
    }
    let mut store = match journal::open(&url) {
        Ok(store) => store,
        Err(e) => return fail(e),
    };
    let now = time::now_ms();
    let json = args.format == JournalFormat::Json;
    let text = match args.command {
        JournalCommand::Stats => match store.stats() {
            Ok(s) if json => inspect::stats_json(&s, now),
            Ok(s) => inspect::stats_text(&s, now),
            Err(e) => return fail(e),
        },
        JournalCommand::List { since, limit } => {
            let since = match since.map(|s| time::parse_since(&s, now)).transpose() {
                Ok(since) => since,
                Err(e) => return fail(format!("since: {e}")),
            };
            match store.list(since, limit) {
                Ok(events) if json => inspect::list_json(&events),
                Ok(events) => inspect::list_text(&events),
                Err(e) => return fail(e),
            }
        }
        JournalCommand::Replay(replay) => {
            return journal_replay(replay, store, args.config.as_deref(), json)
        }
        JournalCommand::Show { id } => match store.get(id) {
            Ok(Some(e)) if json => inspect::event_json(&e) + "\n",
            Ok(Some(e)) => inspect::show_text(&e),
            Ok(None) => {
                eprintln!("twiml-failover: no event {id}");
                return ExitCode::from(1);
            }
            Err(e) => return fail(e),
        },
    };
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    ExitCode::SUCCESS
}

fn journal_replay(
    args: ReplayArgs,
    store: Box<dyn twiml_failover::journal::Store>,
    config_file: Option<&std::path::Path>,
    json: bool,
) -> ExitCode {
    use twiml_failover::journal::forward::client::Client;
    use twiml_failover::journal::forward::replay::Replay;
    use twiml_failover::journal::time;
    let (keyring, configured) =
        match config::load_replay_settings(config_file, &config::process_env) {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
    let Some(to) = args.to.or(configured) else {
        return fail("replay: give --to URL (or TWIML_FAILOVER_FORWARD_TO, or [forward] to)");
    };
    let client = match config::forward_url(&to).and_then(|url| Client::new(&url, 1)) {
        Ok(c) => c,
        Err(e) => return fail(format!("to: {e}")),
    };
    let since = match args
        .since
        .map(|s| time::parse_since(&s, time::now_ms()))
        .transpose()
    {
        Ok(since) => since,
        Err(e) => return fail(format!("since: {e}")),
    };
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 3600.0) {
        return fail("timeout: must be a number of seconds above 0 and at most 3600");
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let show_progress = args.progress == ReplayProgress::Auto
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
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
            .run(&client, &keyring, since, timeout, |s| {
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
    let summary = match result {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
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
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn numbers(args: NumbersArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    ExitCode::from(runtime.block_on(numbers::command::run(args)))
}
