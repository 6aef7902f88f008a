//! The `twiml-failover` binary: parse the command line, then hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use twiml_failover::app::App;
use twiml_failover::cli::{CheckArgs, Cli, Command, DrillArgs, ServeArgs, SignArgs};
use twiml_failover::config::{self, Config, LogFormat, StartupError};
use twiml_failover::signature::{self, Algorithm};
use twiml_failover::templates::check::check_all;
use twiml_failover::{log_writer, reload, server, signals};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Check(args) => check(args),
        Command::Sign(args) => sign(args),
        Command::Drill(args) => drill(args),
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
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    guard
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match Config::load(&args, &config::process_env) {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    let log_guard = init_logging(config.log_format);
    let app = match App::load(config) {
        Ok(app) => app,
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
        let addr = app.config.listen;
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                return fail(StartupError::Bind {
                    addr: addr.to_string(),
                    message: e.to_string(),
                })
            }
        };
        let local = listener.local_addr().map_or(addr, |a| a);
        tracing::info!(
            listen = %local,
            role = app.config.role.as_str(),
            public_url = app.config.public_url.as_ref().map(|u| u.as_str()),
            "listening"
        );
        tokio::spawn(reload::on_sighup(app.clone()));
        if app.config.watch {
            let mut paths = vec![app.config.templates.clone()];
            // Watch the folders: cert-manager and editors replace files by renaming.
            if let Some(tls) = &app.config.tls {
                for file in [&tls.cert, &tls.key] {
                    let dir = file.parent().filter(|p| !p.as_os_str().is_empty());
                    paths.push(dir.unwrap_or(std::path::Path::new(".")).to_path_buf());
                }
            }
            tokio::spawn(reload::on_file_change(app.clone(), paths));
        }
        server::run(listener, app, signals::shutdown()).await;
        ExitCode::SUCCESS
    })
}

fn check(args: CheckArgs) -> ExitCode {
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
        let sig = signature::sign::<&str, &str>(algorithm, args.token.as_bytes(), &url, &[]);
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
    let opts = twiml_failover::drill::Options {
        primary: args.primary,
        fallback: args.fallback,
        sms_primary: args.sms_primary,
        sms_fallback: args.sms_fallback,
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
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(e),
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
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
