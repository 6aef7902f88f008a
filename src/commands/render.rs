//! `render PATH`: what `serve` would answer, without a server or a signature. The body goes to
//! stdout byte for byte as `serve` sends it, for every status (the TwiML, or `not found` and
//! `service unavailable` as `serve` words them); the status and which template answered go to
//! stderr. Not pure (reads files, prints); the answer comes from `authoring::preview`, as the
//! server's does.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use http::StatusCode;

use super::template_inputs::{parse_role, shown_default, TemplateFlags, TemplateInputs};
use super::{print, Failure, Outcome};
use crate::authoring::preview::{self, Request};
use crate::operator_file;
use crate::server::respond;
use crate::twilio::Role;
use crate::webhook::{parse_form, Params};

/// Flags of `render`.
#[derive(Debug, Args)]
#[command(mut_arg("role", |arg| shown_default(arg, Role::Primary.as_str())))]
pub struct RenderArgs {
    /// The webhook path, as Twilio would request it: `/voice`, `/menu?lang=en`.
    #[arg(value_name = "PATH")]
    pub path: String,
    /// Which role answers: primary or fallback.
    #[arg(long, env = "TWIML_FAILOVER_ROLE", value_name = "ROLE")]
    pub role: Option<String>,
    /// A request parameter as NAME=VALUE (repeat the flag, or a name, for several).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// A file holding a form-encoded request body (`From=%2B1555...&Digits=1`), sent before --param.
    #[arg(long, value_name = "FILE")]
    pub params_file: Option<PathBuf>,
    /// `--templates` and `--config`.
    #[command(flatten)]
    pub inputs: TemplateFlags,
}

/// Exit 0 when `serve` would answer 200, 1 on its 404 or 503.
pub fn run(args: RenderArgs) -> Outcome {
    let role = parse_role(args.role.as_deref())?;
    let mut body = match &args.params_file {
        Some(path) => {
            let raw = operator_file::read(path, operator_file::MAX_DOCUMENT_BYTES)
                .map_err(|e| Failure::new(format!("params-file: {e}")))?;
            // A file saved by an editor ends with a newline that is not part of the last value.
            parse_form(raw.trim_ascii_end())
                .map_err(|_| Failure::new(format!("params-file: {}: not UTF-8", path.display())))?
        }
        None => Params::new(),
    };
    for pair in &args.params {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| Failure::new(format!("param {pair:?}: expected NAME=VALUE")))?;
        body.push(name, value);
    }
    let request =
        Request::new("", &args.path, &body).map_err(|e| Failure::new(format!("path: {e}")))?;
    let inputs = TemplateInputs::load(args.inputs.templates, args.inputs.config)?;
    let templates = inputs.templates(role)?;
    let outcome = preview::answer(&templates, &request);
    // Whatever the status, the body `serve` sends: the TwiML, or its fixed error text.
    let body = match &outcome.twiml {
        Some(twiml) => twiml.as_str(),
        None => StatusCode::from_u16(outcome.status).map_or("", respond::error_body),
    };
    print(body);
    // Out before the note on stderr, for anyone reading both in one stream.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // A document has no final newline (nor does serve's); the note starts on a line of its own on
    // a terminal without adding a byte to stdout.
    if !body.ends_with('\n') {
        eprintln!();
    }
    eprintln!("{}", outcome.describe(&request.name));
    Ok(if outcome.status == 200 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
