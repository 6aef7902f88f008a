//! Every file an operator names, for every command that reads one, against the real binary: a
//! device (`/dev/zero`), a FIFO without a writer and a file over its size cap are each refused
//! within a second, exit 2, with a message that names the setting or the path (issue 23).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_twiml-failover");

/// The three kinds of file that must not be read whole.
struct Bad {
    fifo: PathBuf,
    /// Sparse, 64 MiB: over every cap, and reading it whole would take seconds and the memory.
    huge: PathBuf,
    _dir: tempfile::TempDir,
}

impl Bad {
    fn new() -> Bad {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo is needed here");
        let huge = dir.path().join("huge");
        std::fs::File::create(&huge)
            .unwrap()
            .set_len(64 * 1024 * 1024)
            .unwrap();
        Bad {
            fifo,
            huge,
            _dir: dir,
        }
    }

    /// Each bad file with the words its refusal must contain.
    fn each(&self) -> [(PathBuf, &'static str); 3] {
        [
            (
                "/dev/zero".into(),
                "is a character device, not a regular file",
            ),
            (self.fifo.clone(), "is a FIFO, not a regular file"),
            (self.huge.clone(), "larger than"),
        ]
    }
}

/// Runs the binary in `dir` with `env` only; kills it after 10 s (a read that does not stop).
fn run_in(dir: &Path, args: &[String], env: &[(&str, &str)]) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = started + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
    }
    (status, err, elapsed)
}

/// A command line with `{}` where the bad file goes, and what else the message must say.
struct Case {
    name: &'static str,
    args: Vec<String>,
    /// The setting the message names (besides the path).
    setting: &'static str,
    env: Vec<(&'static str, &'static str)>,
    /// A config file to write first, `{}` standing for the bad file.
    config: Option<&'static str>,
}

fn case(name: &'static str, args: &[&str], setting: &'static str) -> Case {
    Case {
        name,
        args: args.iter().map(ToString::to_string).collect(),
        setting,
        env: vec![("TWILIO_AUTH_TOKEN", common::TOKEN)],
        config: None,
    }
}

fn templates() -> String {
    common::shipped_templates().display().to_string()
}

fn cases(pem: &Path, key: &Path) -> Vec<Case> {
    let t = templates();
    let example = common::example_config().display().to_string();
    // The templates load before the TLS files are read: they need the example's [vars].
    let serve = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--templates", &t];
        if !extra.contains(&"--config") {
            args.extend(["--config", &example]);
        }
        args.extend_from_slice(extra);
        args.iter().map(ToString::to_string).collect()
    };
    let (pem, key) = (pem.to_str().unwrap(), key.to_str().unwrap());
    vec![
        Case {
            args: serve(&["--config", "{}"]),
            ..case("serve --config", &[], "config file")
        },
        Case {
            args: serve(&["--auth-token-file", "{}"]),
            env: Vec::new(),
            ..case("serve --auth-token-file", &[], "auth-token-file")
        },
        Case {
            args: serve(&["--secondary-auth-token-file", "{}"]),
            ..case(
                "serve --secondary-auth-token-file",
                &[],
                "secondary-auth-token-file",
            )
        },
        Case {
            args: serve(&["--config", "config.toml"]),
            config: Some("[accounts.AC00000000000000000000000000000001]\nfile = \"{}\"\n"),
            ..case("serve [accounts] file", &[], "accounts")
        },
        Case {
            args: serve(&["--config", "config.toml"]),
            config: Some("[shared_keys.k1]\nfile = \"{}\"\n"),
            ..case("serve [shared_keys] file", &[], "shared_keys")
        },
        Case {
            args: serve(&["--tls-cert", "{}", "--tls-key", key]),
            ..case("serve --tls-cert", &[], "tls")
        },
        Case {
            args: serve(&["--tls-cert", pem, "--tls-key", "{}"]),
            ..case("serve --tls-key", &[], "tls")
        },
        Case {
            args: serve(&[
                "--upstream",
                "https://127.0.0.1:9",
                "--upstream-ca-file",
                "{}",
            ]),
            ..case("serve --upstream-ca-file", &[], "upstream")
        },
        Case {
            args: serve(&[
                "--upstream",
                "https://127.0.0.1:9",
                "--upstream-client-cert",
                "{}",
                "--upstream-client-key",
                key,
            ]),
            ..case("serve --upstream-client-cert", &[], "upstream")
        },
        Case {
            args: serve(&[
                "--upstream",
                "https://127.0.0.1:9",
                "--upstream-client-cert",
                pem,
                "--upstream-client-key",
                "{}",
            ]),
            ..case("serve --upstream-client-key", &[], "upstream")
        },
        case(
            "check --config",
            &["check", "--templates", &t, "--config", "{}"],
            "config file",
        ),
        case(
            "render --config",
            &["render", "/sms", "--templates", &t, "--config", "{}"],
            "config file",
        ),
        case(
            "render --params-file",
            &["render", "/sms", "--templates", &t, "--params-file", "{}"],
            "params-file",
        ),
        case(
            "test --config",
            &["test", "--templates", &t, "--config", "{}"],
            "config file",
        ),
        case("import-bin", &["import-bin", "{}"], ""),
        case(
            "sign --json",
            &["sign", "--url", "https://x.example/h", "--json", "{}"],
            "json",
        ),
        case(
            "numbers --wiring",
            &["numbers", "audit", "--wiring", "{}"],
            "wiring",
        ),
        case(
            "journal --config",
            &["journal", "stats", "--config", "{}"],
            "config file",
        ),
        case(
            "journal sslrootcert",
            &[
                "journal",
                "stats",
                "--journal",
                "postgres://u@127.0.0.1:9/j?sslmode=verify-full&sslrootcert={}",
            ],
            "sslrootcert",
        ),
    ]
}

#[test]
fn every_named_file_is_refused_when_a_device_a_fifo_or_too_large_within_a_second() {
    let bad = Bad::new();
    let work = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let pem = work.path().join("cert.pem");
    let key = work.path().join("key.pem");
    std::fs::write(&pem, pair.cert.pem()).unwrap();
    std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
    let mut failures = Vec::new();
    let mut slowest = Duration::ZERO;
    for c in cases(&pem, &key) {
        for (file, reason) in bad.each() {
            let file = file.display().to_string();
            if let Some(config) = c.config {
                std::fs::write(work.path().join("config.toml"), config.replace("{}", &file))
                    .unwrap();
            }
            let args: Vec<String> = c.args.iter().map(|a| a.replace("{}", &file)).collect();
            let (code, err, elapsed) = run_in(work.path(), &args, &c.env);
            slowest = slowest.max(elapsed);
            let ok = code == Some(2)
                && elapsed < Duration::from_secs(1)
                && err.contains(&file)
                && err.contains(reason)
                && err.contains(c.setting)
                && err.lines().count() <= 2;
            if !ok {
                failures.push(format!(
                    "{} with {file}: exit {code:?} after {elapsed:?}:\n{err}",
                    c.name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("slowest refusal: {slowest:?}");
}

/// Template files and test suites are read from folders: a FIFO or a link to a device there is
/// refused too, naming the file, instead of blocking `serve` or `test`.
#[test]
fn a_fifo_or_device_in_the_template_folders_is_refused_within_a_second() {
    let bad = Bad::new();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("templates");
    common::process::copy_dir(&common::shipped_templates(), &root);
    let config = common::example_config().display().to_string();
    let root_s = root.display().to_string();
    for (file, reason) in bad.each() {
        // A link reaches the device or FIFO the way a ConfigMap mount's links reach its files.
        for place in ["primary/extra.xml", "tests/extra.toml"] {
            let link = root.join(place);
            std::os::unix::fs::symlink(&file, &link).unwrap();
            let command = if place.starts_with("tests") {
                vec!["test", "--templates", &root_s, "--config", &config]
            } else {
                vec![
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--templates",
                    &root_s,
                    "--config",
                    &config,
                ]
            };
            let args: Vec<String> = command.iter().map(ToString::to_string).collect();
            let env = [("TWILIO_AUTH_TOKEN", common::TOKEN)];
            let (code, err, elapsed) = run_in(dir.path(), &args, &env);
            assert_eq!(code, Some(2), "{place} -> {}: {err}", file.display());
            assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
            assert!(err.contains(place), "{err}");
            let reason = match (reason, place.starts_with("tests")) {
                ("larger than", false) => "over 256 KiB",
                (reason, _) => reason,
            };
            assert!(err.contains(reason), "{err}");
            std::fs::remove_file(&link).unwrap();
        }
    }
}
