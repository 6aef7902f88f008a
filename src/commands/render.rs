//! `twiml-failover render PATH`: what `serve` would answer, without a server or a signature. The
//! TwiML goes to stdout byte for byte as `serve` sends it; which template answered goes to stderr.
//! Not pure (reads files, prints); the answer comes from `templates::preview`, as the server's does.

use std::process::ExitCode;

use twiml_failover::cli::RenderArgs;
use twiml_failover::templates::preview::{self, Request};
use twiml_failover::webhook::{parse_form, Params};

use super::{fail, parse_role, TemplateInputs};

/// Runs `render`: exit 0 when `serve` would answer 200, 1 on its 404 or 503, 2 on a usage error.
pub fn run(args: RenderArgs) -> ExitCode {
    let role = match parse_role(args.role.as_deref()) {
        Ok(role) => role,
        Err(e) => return fail(e),
    };
    let mut body = match &args.params_file {
        Some(path) => match std::fs::read(path) {
            // A file saved by an editor ends with a newline that is not part of the last value.
            Ok(raw) => match parse_form(raw.trim_ascii_end()) {
                Ok(params) => params,
                Err(_) => return fail(format!("params-file: {}: not UTF-8", path.display())),
            },
            Err(e) => return fail(format!("params-file: {}: {e}", path.display())),
        },
        None => Params::new(),
    };
    for pair in &args.params {
        let Some((name, value)) = pair.split_once('=') else {
            return fail(format!("param {pair:?}: expected NAME=VALUE"));
        };
        body.push(name, value);
    }
    let request = match Request::new("", &args.path, &body) {
        Ok(request) => request,
        Err(e) => return fail(format!("path: {e}")),
    };
    let inputs = match TemplateInputs::load(args.templates, args.config) {
        Ok(inputs) => inputs,
        Err(e) => return fail(e),
    };
    let templates = match inputs.templates(role) {
        Ok(templates) => templates,
        Err(e) => return fail(e),
    };
    let outcome = preview::answer(&templates, &request);
    if let Some(twiml) = &outcome.twiml {
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), twiml.as_bytes());
    }
    eprintln!("{}", outcome.describe(&request.name));
    if outcome.status == 200 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
