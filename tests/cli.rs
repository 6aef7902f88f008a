//! Black-box tests of the real binary: start-up errors, `check`, `sign`, and `serve` end to end.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_twiml-failover");
const TOKEN: &str = "test-token-0123456789abcdef";

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    common::run_bin(args, env)
}

#[test]
fn check_accepts_the_shipped_templates() {
    let (code, out, err) = run(
        &[
            "check",
            "--templates",
            &repo("twiml-templates"),
            "--config",
            &repo("twiml-failover.toml"),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn check_reports_file_line_col_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    for role in ["primary", "fallback"] {
        let d = dir.path().join(role);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("voice.xml"),
            "<Response>\n  <Say>hi</Say>\n</Response>\n",
        )
        .unwrap();
        std::fs::write(
            d.join("sms.xml"),
            "<Response>\n  <Say>hi</Say>\n</Response>\n",
        )
        .unwrap();
    }
    let (code, out, _) = run(&["check", "--templates", dir.path().to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    let expected = format!(
        "{}/primary/sms.xml:2:3: <Say> is voice TwiML, not allowed in a messaging template",
        dir.path().display()
    );
    assert!(out.contains(&expected), "{out}");
    assert_eq!(out.lines().count(), 2, "{out}");
}

/// Issue 24, point 9: a loop that can write more than Twilio's 64 kB is a warning naming the
/// template and the loop; `check` still exits 0. A messaging template leading into voice TwiML
/// through `<Message action>` is an error.
#[test]
fn check_warns_of_a_loop_over_64_kb_and_refuses_messaging_into_voice() {
    let dir = sets(
        "<Response><Say>hi</Say></Response>",
        "<Response><Message>hi</Message></Response>",
    );
    let templates = dir.path().to_str().unwrap();
    std::fs::write(
        dir.path().join("primary/echo.xml"),
        "<Response>\n  <Message>{% for i in range(50) %}{{ Body }}{% endfor %}</Message>\n</Response>\n",
    )
    .unwrap();
    let (code, out, err) = run(&["check", "--templates", templates], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "{templates}/primary/echo.xml:2:12: warning: the loop `{{% for i in range(50) %}}` can \
             write 50 × 9600 = 480000 bytes"
        )),
        "{out}"
    );
    assert!(
        err.contains("both template sets are fine (1 warning(s) above)"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("primary/sms.xml"),
        "<Response><Message action=\"status-check\">hi</Message></Response>\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("primary/status-check.xml"),
        "<Response><Hangup/></Response>\n",
    )
    .unwrap();
    let (code, out, _) = run(&["check", "--templates", templates], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "{templates}/primary/sms.xml:1:28: <Message action> leads to /status-check, a voice \
             template; messaging never leads into voice TwiML"
        )),
        "{out}"
    );
}

/// The example of issue 12: a raw `&` in an attribute value passed `check` and was served.
#[test]
fn check_names_a_raw_ampersand_with_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    for role in ["primary", "fallback"] {
        let d = dir.path().join(role);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("sms.xml"), "<Response/>\n").unwrap();
    }
    std::fs::write(
        dir.path().join("primary/voice.xml"),
        "<Response><Say>ok</Say></Response>\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("fallback/voice.xml"),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Gather action=\"https://example.com/g?a=1&b=2\" \
         numDigits=\"1\"><Say>Press 1</Say></Gather></Response>\n",
    )
    .unwrap();
    let (code, out, _) = run(&["check", "--templates", dir.path().to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{out}");
    let expected = format!(
        "{}/fallback/voice.xml:2:52: not well-formed XML: a raw `&` is not allowed in XML (write `&amp;`)",
        dir.path().display()
    );
    assert_eq!(out.trim(), expected);
}

#[test]
fn startup_errors_name_the_setting() {
    let templates = repo("twiml-templates");
    let (code, _, err) = run(&["serve", "--templates", &templates], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("TWILIO_AUTH_TOKEN"), "{err}");
    let (code, _, err) = run(
        &["serve", "--templates", &templates, "--role", "backup"],
        &[("TWILIO_AUTH_TOKEN", TOKEN)],
    );
    assert_eq!(code, 2);
    assert!(err.contains("role: \"backup\" is not a role"), "{err}");
    let (code, _, err) = run(
        &["serve", "--templates", "/nonexistent"],
        &[("TWILIO_AUTH_TOKEN", TOKEN)],
    );
    assert_eq!(code, 2);
    assert!(err.contains("templates: /nonexistent"), "{err}");
    // Env twins work like flags.
    let (code, _, err) = run(
        &["serve", "--templates", &templates],
        &[
            ("TWILIO_AUTH_TOKEN", TOKEN),
            ("TWIML_FAILOVER_ROLE", "nope"),
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("role:"), "{err}");
    // Templates that need [vars] refuse to start without them (here no ./twiml-failover.toml either),
    // listing every problem and the `check` command that shows them, which does.
    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = common::run_bin_in(
        empty.path(),
        &["serve", "--templates", &templates],
        &[("TWILIO_AUTH_TOKEN", TOKEN)],
    );
    assert_eq!(code, 2);
    assert!(err.contains("unknown variable \"company\""), "{err}");
    assert!(!err.contains(TOKEN));
    let suggested = err
        .split('`')
        .find(|part| part.starts_with("twiml-failover check"))
        .unwrap_or_else(|| panic!("no check command suggested: {err}"));
    let args: Vec<&str> = suggested.split(' ').skip(1).collect();
    let (code, out, _) = common::run_bin_in(empty.path(), &args, &[]);
    assert_eq!(code, 1, "the suggested command shows the same problems");
    assert!(out.contains("unknown variable \"company\""), "{out}");
}

#[test]
fn a_fresh_clone_needs_no_config_flag() {
    // The repository's layout: twiml-templates/ and twiml-failover.toml side by side.
    let clone = tempfile::tempdir().unwrap();
    common::process::copy_dir(
        std::path::Path::new(&repo("twiml-templates")),
        &clone.path().join("twiml-templates"),
    );
    std::fs::copy(
        repo("twiml-failover.toml"),
        clone.path().join("twiml-failover.toml"),
    )
    .unwrap();
    let (code, out, err) = common::run_bin_in(clone.path(), &["check"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("reading twiml-failover.toml"), "{err}");
    let (code, out, err) = common::run_bin_in(
        clone.path(),
        &["render", "/voice", "--param", "CallSid=CA1"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Example Corp"), "{out}");

    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .current_dir(clone.path())
        .env_clear()
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let mut found = false;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let v: serde_json::Value = serde_json::from_str(&line).expect("json log line");
        if v["config"] == "twiml-failover.toml" {
            found = true;
        }
        if v["message"] == "listening" {
            break;
        }
    }
    drop(server);
    assert!(found, "serve logs the config file it found");
}

/// Issue 24, point 6: run outside the repository root, each command says what it looked for, where,
/// and how to point at it; a variable missing from an absent config is one line, not one per use.
#[test]
fn errors_outside_the_repository_root_point_at_the_fix() {
    let elsewhere = tempfile::tempdir().unwrap();
    let cwd = elsewhere.path().display().to_string();
    let templates = repo("twiml-templates");
    let no_config = format!(
        "no config file: none given, and no ./twiml-failover.toml in {cwd}; going on without \
         [vars] and extra_params (give one with --config FILE or TWIML_FAILOVER_CONFIG=FILE)"
    );

    let (code, out, err) =
        common::run_bin_in(elsewhere.path(), &["check", "--templates", &templates], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.lines().next(), Some(no_config.as_str()), "{err}");
    assert!(
        err.contains("no config file was read (see the first line)"),
        "{err}"
    );
    // company, agent_number, backup_number: one line each, every place named on company's.
    assert_eq!(out.lines().count(), 3, "{out}");
    let company: Vec<&str> = out.lines().filter(|l| l.contains("\"company\"")).collect();
    assert_eq!(company.len(), 1, "{out}");
    assert_eq!(company[0].matches(".xml:").count(), 4, "{out}");
    assert!(company[0].contains("give it a value under [vars]"), "{out}");

    // serve says the same once, after the problems, and does not point at a command that repeats them.
    let (code, _, err) = common::run_bin_in(
        elsewhere.path(),
        &["serve", "--templates", &templates],
        &[("TWILIO_AUTH_TOKEN", TOKEN)],
    );
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.matches("no config file").count(), 1, "{err}");
    assert_eq!(
        err.matches("unknown variable \"company\"").count(),
        1,
        "{err}"
    );
    assert!(err.trim_end().ends_with(&no_config), "{err}");

    // No templates folder: what was looked for, where, and the flag.
    for command in ["check", "render /voice", "test"] {
        let args: Vec<&str> = command.split(' ').collect();
        let (code, _, err) = common::run_bin_in(elsewhere.path(), &args, &[]);
        assert_eq!(code, 2, "{command}: {err}");
        assert!(
            err.contains(&format!(
                "templates: no --templates given, and no twiml-templates/ folder in {cwd}"
            )) && err.contains("--templates DIR"),
            "{command}: {err}"
        );
    }
    let (code, _, err) = common::run_bin_in(
        elsewhere.path(),
        &["serve"],
        &[("TWILIO_AUTH_TOKEN", TOKEN)],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "templates: no --templates given, and no twiml-templates/ folder in {cwd}"
        )) && err.contains("--templates DIR"),
        "{err}"
    );

    // sign names the variable it reads.
    let (code, out, err) = common::run_bin_in(
        elsewhere.path(),
        &["sign", "--url", "https://example.com/sms", "Body=hi"],
        &[],
    );
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert!(
        err.contains("export TWILIO_AUTH_TOKEN=") && err.contains("--token TOKEN"),
        "{err}"
    );
}

#[test]
fn sign_matches_twilios_documented_example() {
    let (code, out, _) = run(
        &[
            "sign",
            "--url",
            "https://example.com/myapp.php?foo=1&bar=2",
            "Digits=1234",
            "To=+18005551212",
            "From=+14158675310",
            "Caller=+14158675310",
            "CallSid=CA1234567890ABCDE",
        ],
        &[("TWILIO_AUTH_TOKEN", "12345")],
    );
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "L/OH5YylLD5NRKLltdqwSvS0BnU=");
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the real binary on port 0 and returns it, the address from its "listening" log line, and
/// every log line it writes from then on.
fn start_with(
    extra: &[&str],
    env: &[(&str, &str)],
) -> (
    Server,
    String,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--config", &repo("twiml-failover.toml")])
        .args(extra)
        .env_clear()
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = loop {
        assert!(Instant::now() < deadline, "no listening line");
        let line = lines.next().expect("server exited").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).expect("json log line");
        if v["message"] == "listening" {
            break v["listen"].as_str().unwrap().to_string();
        }
    };
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = log.clone();
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    (Server(child), addr, log)
}

fn start(extra: &[&str]) -> (Server, String) {
    let templates = repo("twiml-templates");
    let mut args = vec!["--templates", templates.as_str()];
    args.extend_from_slice(extra);
    let (server, addr, _) = start_with(&args, &[]);
    (server, addr)
}

fn signed_sms(addr: &str, url: &str, body_text: &str) -> String {
    let (_, sig, _) = run(
        &[
            "sign",
            "--url",
            url,
            "MessageSid=SM1",
            &format!("Body={body_text}"),
        ],
        &[("TWILIO_AUTH_TOKEN", TOKEN)],
    );
    let body = format!("MessageSid=SM1&Body={}", body_text.replace(' ', "+"));
    curl_like(
        addr,
        &format!(
            "POST /sms HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {}\r\nContent-Length: {}\r\n\r\n{body}",
            sig.trim(),
            body.len()
        ),
    )
}

/// Both roles' sets holding only `voice.xml` and `sms.xml`.
fn sets(voice: &str, sms: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for role in ["primary", "fallback"] {
        let d = dir.path().join(role);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("voice.xml"), voice).unwrap();
        std::fs::write(d.join("sms.xml"), sms).unwrap();
    }
    dir
}

#[test]
fn sighup_reloads_templates() {
    let dir = sets(
        "<Response><Say>v</Say></Response>",
        "<Response><Message>one</Message></Response>",
    );
    let templates = dir.path().to_str().unwrap().to_string();
    let (server, addr, _) = start_with(&["--templates", &templates, "--watch", "false"], &[]);
    let url = format!("http://{addr}/sms");
    assert!(signed_sms(&addr, &url, "x").contains("one"));
    std::fs::write(
        dir.path().join("primary/sms.xml"),
        "<Response><Message>two</Message></Response>",
    )
    .unwrap();
    // Without a SIGHUP (and with watching off) nothing changes.
    std::thread::sleep(Duration::from_millis(300));
    assert!(signed_sms(&addr, &url, "x").contains("one"));
    let pid = server.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !signed_sms(&addr, &url, "x").contains("two") {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn logs_never_hold_the_token_and_the_body_only_at_debug() {
    let templates = repo("twiml-templates");
    for (level, body_expected) in [("info", false), ("debug", true)] {
        let (server, addr, log) = start_with(
            &["--templates", &templates],
            &[("TWIML_FAILOVER_LOG", level)],
        );
        let url = format!("http://{addr}/sms");
        let reply = signed_sms(&addr, &url, "secret caller words");
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        let _ = curl_like(
            &addr,
            "GET /sms HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        // Log lines are written in batches, shortly after the request.
        let deadline = Instant::now() + Duration::from_secs(10);
        let request_lines = || {
            let lines = log.lock().unwrap();
            lines
                .iter()
                .filter(|l| l.contains("\"latency_us\""))
                .count()
        };
        while request_lines() < 2 {
            assert!(Instant::now() < deadline, "one line per request");
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(server);
        let text = log.lock().unwrap().join("\n");
        assert!(
            text.contains("\"status\":200"),
            "one line per request: {text}"
        );
        assert!(text.contains("\"message_sid\":\"SM1\""), "{text}");
        assert!(!text.contains(TOKEN), "token leaked at {level}");
        assert_eq!(
            text.contains("secret caller words"),
            body_expected,
            "{level}: {text}"
        );
    }
}

fn curl_like(addr: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serve_answers_a_request_signed_by_sign_and_exits_0_on_sigterm() {
    let (mut server, addr) = start(&["--public-url", "https://voice.example.com"]);
    let (_, sig, _) = run(
        &[
            "sign",
            "--url",
            "https://voice.example.com/sms#ct=1000",
            "MessageSid=SM1",
            "Body=hello world",
        ],
        &[("TWILIO_AUTH_TOKEN", TOKEN)],
    );
    let body = "MessageSid=SM1&Body=hello+world";
    let reply = curl_like(
        &addr,
        &format!(
            "POST /sms HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {}\r\nContent-Length: {}\r\n\r\n{body}",
            sig.trim(),
            body.len()
        ),
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"hello world\""), "{reply}");
    let pid = server.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The SDK oracle: twilio-python signs a few hundred random and awkward requests (both roles, GET,
/// POST, JSON, every key kind) and alters each; the real binary must accept exactly the genuine ones.
#[test]
fn twilio_python_blackbox_against_the_binary() {
    let script = repo("tests/oracle/blackbox.py");
    let python = common::oracle_python();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[vars]\ncompany = \"Example Corp\"\nagent_number = \"+15555550100\"\nbackup_number = \"+15555550199\"\n\
         [accounts.AC11111111111111111111111111111111]\nenv = \"SUB_TOKEN\"\n\
         [shared_keys.key-1]\nenv = \"SHARED_SECRET\"\n",
    )
    .unwrap();
    for (role, public) in [("primary", "https://voice.example.com"), ("fallback", "")] {
        let mut child = Command::new(BIN);
        child
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--role",
                role,
            ])
            .args([
                "--templates",
                &repo("twiml-templates"),
                "--config",
                cfg.to_str().unwrap(),
            ])
            .env_clear()
            .env("TWILIO_AUTH_TOKEN", TOKEN)
            .env("TWILIO_SECONDARY_AUTH_TOKEN", "secondary-token-for-tests")
            .env("SUB_TOKEN", "sub-account-token")
            .env("SHARED_SECRET", "shared-key-secret")
            .stderr(Stdio::piped());
        if !public.is_empty() {
            child.args(["--public-url", public]);
        }
        let mut child = child.spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("server exited").unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["message"] == "listening" {
                break v["listen"].as_str().unwrap().to_string();
            }
        };
        let server = Server(child);
        std::thread::spawn(move || for _ in lines.by_ref() {});
        let target = format!("http://{addr}");
        let mut cmd = Command::new(&python);
        cmd.args([
            &script, "--target", &target, "--token", TOKEN, "--role", role,
        ])
        .args(["--secondary-token", "secondary-token-for-tests"])
        .args([
            "--subaccount",
            "AC11111111111111111111111111111111=sub-account-token",
        ])
        .args([
            "--shared-key",
            "key-1=shared-key-secret",
            "--count",
            "300",
            "--seed",
            "7",
        ]);
        if !public.is_empty() {
            cmd.args(["--signed-base", public]);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{role}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(", 0 failed"), "{stdout}");
        drop(server);
    }
}
