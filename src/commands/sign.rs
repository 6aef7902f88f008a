//! `sign`: the `X-Twilio-Signature` Twilio would send for a URL and its parameters (or JSON body).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{Failure, Outcome};
use crate::operator_file;
use crate::signature::{self, Algorithm};

/// Flags of `sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The full URL Twilio would request (scheme, host, path and query; no #fragment needed).
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// The auth token or shared key secret (default: $TWILIO_AUTH_TOKEN).
    #[arg(
        long,
        env = "TWILIO_AUTH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// HMAC_SHA1 (auth tokens) or HMAC_SHA256 (shared keys).
    #[arg(long, default_value = "HMAC_SHA1", value_name = "NAME")]
    pub algorithm: String,
    /// Sign a JSON body: adds ?bodySHA256=<hex sha256 of FILE> to the URL and prints that URL too.
    #[arg(long, value_name = "FILE", conflicts_with = "params")]
    pub json: Option<PathBuf>,
    /// Form parameters as NAME=VALUE (repeat a name for several values).
    #[arg(value_name = "NAME=VALUE")]
    pub params: Vec<String>,
}

/// Prints the signature (and, for a JSON body, the URL with its `bodySHA256`).
pub fn run(args: SignArgs) -> Outcome {
    // Optional on the command line so that its absence is explained here, naming the variable.
    let Some(token) = args.token.as_deref().filter(|t| !t.is_empty()) else {
        return Err(Failure::new(
            "token: no token to sign with: export TWILIO_AUTH_TOKEN=<the account's auth token> \
             (the variable serve reads), or pass --token TOKEN (a shared key's secret with \
             --algorithm HMAC_SHA256)",
        ));
    };
    let Some(algorithm) = Algorithm::from_name(&args.algorithm) else {
        return Err(Failure::new("algorithm: use HMAC_SHA1 or HMAC_SHA256"));
    };
    if !args.url.starts_with("http://") && !args.url.starts_with("https://") {
        return Err(Failure::new("url: must start with http:// or https://"));
    }
    // Connection overrides after `#` are not part of what Twilio signs.
    let url = args.url.split('#').next().unwrap_or("").to_string();
    if let Some(path) = args.json {
        let body = operator_file::read(&path, operator_file::MAX_DOCUMENT_BYTES)
            .map_err(|e| Failure::new(format!("json: {e}")))?;
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}bodySHA256={}", signature::body_sha256_hex(&body));
        let sig = signature::sign(algorithm, token.as_bytes(), &url, &signature::NO_PARAMS);
        println!("{sig}");
        println!("{url}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut params = Vec::new();
    for p in &args.params {
        let Some((name, value)) = p.split_once('=') else {
            return Err(Failure::new(format!(
                "parameter {p:?}: expected NAME=VALUE"
            )));
        };
        params.push((name.to_string(), value.to_string()));
    }
    let sig = signature::sign(algorithm, token.as_bytes(), &url, &params);
    println!("{sig}");
    Ok(ExitCode::SUCCESS)
}
