//! `render` against `serve`: the same templates, config and parameters give the same status and the
//! same body bytes, for ordinary and hostile parameters, a template that fails (degraded to the
//! fallback set, or 503 when nothing can answer) and a path without a template (404): every
//! status `render` can produce.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::process::{copy_dir, Serve};
use common::{example_config, form, parse_reply, shipped_templates, TOKEN};
use twiml_failover::signature::{sign, Algorithm};

/// Markup, quotes, a CDATA end, characters XML forbids, and a character outside the BMP.
const HOSTILE: &str =
    "</Say><Redirect>https://evil.example/</Redirect> ]]> \"' & \u{1}\u{b}\u{fffe} 😀";

/// The shipped templates plus `boom`, which fails at run time when `Digits` is 42, in both sets.
fn templates_with_a_failing_one() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    copy_dir(&shipped_templates(), root.path());
    let boom = "<Response><Say>{% if Digits == \"42\" %}{{ Digits | int // 0 }}{% endif %}ok</Say></Response>\n";
    std::fs::write(root.path().join("primary/boom.xml"), boom).unwrap();
    std::fs::write(root.path().join("fallback/boom.xml"), boom).unwrap();
    root
}

/// What `serve` answered: status and body.
fn served(serve: &Serve, target: &str, params: &[(&str, &str)]) -> (u16, String) {
    let url = format!("http://{}{target}", serve.addr);
    let sig = sign(Algorithm::HmacSha1, TOKEN.as_bytes(), &url, params);
    let body = form(params);
    let request = format!(
        "POST {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {sig}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        serve.addr,
        body.len()
    );
    let reply = parse_reply(
        &serve
            .send(request.as_bytes(), Duration::from_secs(5))
            .expect("serve answers"),
    );
    (reply.status, reply.body)
}

/// What `render` printed: exit code, stdout, stderr. The parameters go through `--params-file` (the
/// same form body serve got) or one `--param` each.
fn rendered(
    root: &Path,
    role: &str,
    target: &str,
    params: &[(&str, &str)],
    as_file: bool,
) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_twiml-failover"));
    command
        .args(["render", target, "--role", role, "--templates"])
        .arg(root)
        .arg("--config")
        .arg(example_config())
        .env_clear();
    if as_file {
        let file = dir.path().join("params");
        std::fs::write(&file, form(params) + "\n").unwrap();
        command.arg("--params-file").arg(file);
    } else {
        for (k, v) in params {
            command.arg("--param").arg(format!("{k}={v}"));
        }
    }
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Path, parameters, the status serve answers, and what render's stderr says.
type Case = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    u16,
    &'static str,
);

fn call(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut params = common::call_params();
    params.extend_from_slice(extra);
    params
}

#[test]
fn render_prints_exactly_what_serve_answers() {
    let root = templates_with_a_failing_one();
    let config = example_config();
    let mut seen = std::collections::BTreeSet::new();
    for role in ["primary", "fallback"] {
        let serve = Serve::start(
            &[
                "--role",
                role,
                "--templates",
                root.path().to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
            ],
            &[],
        );
        let sms_hostile = {
            let mut p = common::sms_params(HOSTILE);
            p.push(("company", HOSTILE));
            p
        };
        let cases: Vec<Case> = vec![
            (
                "/voice",
                call(&[("CallerName", HOSTILE), ("From", HOSTILE)]),
                200,
                "",
            ),
            ("/menu", call(&[("Digits", "1"), ("To", HOSTILE)]), 200, ""),
            ("/menu?Digits=2", call(&[]), 200, ""),
            ("/menu", call(&[("Digits", HOSTILE)]), 200, ""),
            ("/sms", sms_hostile, 200, ""),
            // A template failing at run time: the fallback set's voice answers instead...
            (
                "/boom",
                call(&[("Digits", "42")]),
                200,
                "failed (template error",
            ),
            // ...and without CallSid or MessageSid there is no channel default: 503.
            (
                "/boom",
                vec![("Digits", "42")],
                503,
                "no template could answer",
            ),
            ("/nope", vec![("From", HOSTILE)], 404, "no template"),
        ];
        for (i, (target, params, status, says)) in cases.iter().enumerate() {
            // Without a channel, the fallback role has no default either.
            let status = if role == "fallback" && *target == "/nope" {
                404
            } else {
                *status
            };
            let (served_status, served_body) = served(&serve, target, params);
            let (code, stdout, stderr) = rendered(root.path(), role, target, params, i % 2 == 0);
            let case = format!("{role} {target} {params:?}");
            assert_eq!(served_status, status, "{case}: {served_body}");
            // Every status: stdout holds exactly the body serve sent (`not found\n` on a 404).
            assert_eq!(stdout, served_body, "{case}: same bytes");
            assert_eq!(code, if status == 200 { 0 } else { 1 }, "{case}: {stderr}");
            assert!(
                stderr.trim_start().starts_with(&format!("{status}: ")),
                "{case}: {stderr}"
            );
            seen.insert(status);
            assert!(stderr.contains(says), "{case}: {stderr}");
            if *target == "/boom" && status == 200 {
                assert!(
                    stderr.contains("the fallback set's voice template"),
                    "{stderr}"
                );
            }
        }
    }
    // Each status `render` can produce (`preview::Outcome`) was compared with serve's.
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [200, 404, 503]);
}

#[test]
fn render_usage_errors_exit_2_and_say_which_setting() {
    let root = templates_with_a_failing_one();
    let (code, _, err) = rendered(root.path(), "backup", "/voice", &[], false);
    assert_eq!(code, 2);
    assert!(err.contains("role:"), "{err}");
    let (code, _, err) = rendered(
        root.path(),
        "primary",
        "https://evil.example/voice",
        &[],
        false,
    );
    assert_eq!(code, 2);
    assert!(err.contains("path:"), "{err}");
    let (code, _, err) = rendered(root.path(), "primary", "/status", &[], false);
    assert_eq!(code, 2);
    assert!(err.contains("path:"), "{err}");
}
