//! The documentation runs as printed. Every ```` ```sh ````, ```` ```bash ```` and ```` ```console ````
//! block of README.md and docs/*.md runs in a temporary copy of the repository, with the binary under
//! test on `PATH` as `twiml-failover`, inside a network namespace of its own (`unshare -rn`) where the
//! machine allows one, so the examples' fixed ports (8080, 8081) cannot collide with anything and
//! nothing leaves the machine; elsewhere on the machine's own loopback. A `console`
//! block's `$ ` lines are commands and the other lines their expected output (`...` stands for any
//! lines). Blocks marked `no-run`, crontabs, and every block of deploy/README.md, are run by bash with every
//! command stubbed out. Either way each `twiml-failover` command line must parse with the binary's own
//! clap definition. docs/configuration.md's table is held to `serve --help` (flag, environment twin,
//! default, help) and to the config keys the binary accepts, each key to its flag's setting. Not
//! pure: spawns bash, unshare and the binary.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::{CommandFactory, Parser};
use common::process::copy_dir;
use twiml_failover::cli::Cli;

/// The binary the examples call, as `cargo install --path .` would put it on `PATH`.
const BIN: &str = env!("CARGO_BIN_EXE_twiml-failover");

/// Longest one block may take (the server examples wait out a 2 s lame duck).
const BLOCK_SECONDS: &str = "120";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// How a document's blocks are treated.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Run the blocks unless marked `no-run`.
    Run,
    /// Only parse them (deploy commands, real clouds and real numbers).
    ParseOnly,
}

fn documents() -> Vec<(PathBuf, Mode)> {
    let mut docs = vec![(repo().join("README.md"), Mode::Run)];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.sort();
    docs.extend(pages.into_iter().map(|page| (page, Mode::Run)));
    docs.push((repo().join("deploy/README.md"), Mode::ParseOnly));
    docs
}

/// One fenced shell block.
struct Block {
    /// `file:line` of its opening fence, for messages.
    place: String,
    console: bool,
    no_run: bool,
    text: String,
}

/// The shell blocks of a Markdown text; fences may be indented (inside list items).
fn blocks(place: &str, markdown: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut lines = markdown.lines().enumerate();
    while let Some((number, line)) = lines.next() {
        let Some(info) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let mut words = info.split_whitespace();
        let language = words.next().unwrap_or("");
        let no_run = words.any(|word| word == "no-run");
        let mut text = String::new();
        for (_, body) in lines.by_ref() {
            if body.trim_start() == "```" {
                break;
            }
            text.push_str(body.get(indent..).unwrap_or(body.trim_start()));
            text.push('\n');
        }
        if matches!(language, "sh" | "bash" | "console" | "cron") {
            found.push(Block {
                place: format!("{place}:{}", number + 1),
                console: language == "console",
                // A crontab is parsed: its commands, without the five schedule fields.
                no_run: no_run || language == "cron",
                text: if language == "cron" {
                    crontab_commands(&text)
                } else {
                    text
                },
            });
        }
    }
    found
}

/// The commands of crontab lines (comments and `NAME=value` lines dropped). A crontab sources its
/// token from a file the docs cannot show, so a stand-in token comes first.
fn crontab_commands(text: &str) -> String {
    let token = "export TWILIO_AUTH_TOKEN=stands-for-the-sourced-file\n".to_string();
    token
        + &text
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .filter_map(|line| {
                let fields: Vec<&str> = line.splitn(6, ' ').collect();
                (fields.len() == 6 && !fields[0].contains('='))
                    .then(|| fields[5].to_string() + "\n")
            })
            .collect::<String>()
}

/// A console block as (command, expected output lines) pairs; a command continues over lines
/// ending in `\`.
fn console_steps(text: &str) -> Vec<(String, Vec<String>)> {
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    let mut continuing = false;
    for line in text.lines() {
        if continuing {
            let (command, _) = steps.last_mut().unwrap();
            command.push('\n');
            command.push_str(line);
            continuing = line.ends_with('\\');
        } else if let Some(command) = line.strip_prefix("$ ") {
            steps.push((command.to_string(), Vec::new()));
            continuing = command.ends_with('\\');
        } else {
            let (_, output) = steps
                .last_mut()
                .expect("console output before any `$ ` command");
            output.push(line.to_string());
        }
    }
    steps
}

/// How many times a block's text calls `twiml-failover` in command position.
fn written_calls(text: &str) -> usize {
    let mut count = 0;
    for line in text.lines() {
        let line = line.trim_start().trim_start_matches("$ ");
        if line.starts_with('#') {
            continue;
        }
        let mut rest = line;
        // Leading VAR=value assignments.
        while let Some((word, after)) = rest.split_once(' ') {
            if word.contains('=') && !word.starts_with('-') {
                rest = after;
            } else {
                break;
            }
        }
        if rest.starts_with("twiml-failover ") {
            count += 1;
        }
        for glue in [
            "$(twiml-failover ",
            "&& twiml-failover ",
            "; twiml-failover ",
            "| twiml-failover ",
        ] {
            count += line.matches(glue).count();
        }
    }
    count
}

/// Expected lines, where `...` matches any number of lines, against actual lines.
fn lines_match(expected: &[String], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first == "..." => {
            (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..]))
        }
        Some((first, rest)) => {
            actual
                .first()
                .is_some_and(|line| line.trim_end() == first.trim_end())
                && lines_match(rest, &actual[1..])
        }
    }
}

/// Finds a program on the test's own `PATH`, so the shim can name it absolutely.
fn which(program: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
}

/// A temporary copy of what the examples use, a `twiml-failover` shim that records every call, and a
/// folder for the records.
struct Sandbox {
    _root: tempfile::TempDir,
    work: PathBuf,
    bin: PathBuf,
    calls: PathBuf,
    logs: PathBuf,
}

impl Sandbox {
    fn new(mode_run: bool) -> Sandbox {
        let root = tempfile::tempdir().unwrap();
        let work = root.path().join("repo");
        let bin = root.path().join("bin");
        let calls = root.path().join("calls");
        let logs = root.path().join("logs");
        for dir in [&work, &bin, &calls, &logs, &root.path().join("home")] {
            std::fs::create_dir_all(dir).unwrap();
        }
        if mode_run {
            copy_dir(
                &repo().join("twiml-templates"),
                &work.join("twiml-templates"),
            );
            copy_dir(&repo().join("deploy"), &work.join("deploy"));
            std::fs::copy(
                repo().join("twiml-failover.toml"),
                work.join("twiml-failover.toml"),
            )
            .unwrap();
        }
        // Records the arguments (NUL-separated) and the environment, then runs the binary or not.
        let then = if mode_run {
            format!("exec '{BIN}' \"$@\"")
        } else {
            "exit 0".to_string()
        };
        let shim = format!(
            "#!/bin/sh\nf=$('{}' \"$DOCS_CALLS/call.XXXXXX\")\nprintf '%s\\0' \"$@\" > \"$f\"\n'{}' -0 > \"$f.env\"\n{then}\n",
            which("mktemp").display(),
            which("env").display(),
        );
        let shim_path = bin.join("twiml-failover");
        std::fs::write(&shim_path, shim).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim_path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Sandbox {
            _root: root,
            work,
            bin,
            calls,
            logs,
        }
    }

    /// Runs a bash script; returns (success, stdout, stderr).
    fn bash(&self, script: &str, name: &str, isolated: bool, path: &str) -> (bool, String, String) {
        let script_path = self.logs.join(format!("{name}.sh"));
        std::fs::write(&script_path, script).unwrap();
        let out_path = self.logs.join(format!("{name}.out"));
        let err_path = self.logs.join(format!("{name}.err"));
        // Absolute paths: the block's PATH may hold nothing but the shim.
        let mut command = Command::new(which("timeout"));
        command.args(["--kill-after=5", BLOCK_SECONDS]);
        if isolated {
            command
                .arg(which("unshare"))
                .arg("-rn")
                .arg(which("bash"))
                .args(["-c", "ip link set lo up && exec bash \"$0\""]);
        } else {
            command.arg(which("bash"));
        }
        let status = command
            .arg(&script_path)
            .current_dir(&self.work)
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.work.parent().unwrap().join("home"))
            .env("LANG", "C.UTF-8")
            .env("DOCS_CALLS", &self.calls)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .status()
            .unwrap();
        (
            status.success(),
            std::fs::read_to_string(out_path).unwrap(),
            std::fs::read_to_string(err_path).unwrap(),
        )
    }

    /// Takes the recorded calls: (arguments, TWILIO_*/TWIML_FAILOVER_* environment).
    fn take_calls(&self) -> Vec<(Vec<String>, BTreeMap<String, String>)> {
        let mut calls = Vec::new();
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.calls)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_none_or(|ext| ext != "env"))
            .collect();
        names.sort();
        for path in names {
            let args = nul_split(&std::fs::read(&path).unwrap());
            let env_path = PathBuf::from(format!("{}.env", path.display()));
            let env = nul_split(&std::fs::read(&env_path).unwrap())
                .into_iter()
                .filter_map(|pair| {
                    let (name, value) = pair.split_once('=')?;
                    (name.starts_with("TWILIO_") || name.starts_with("TWIML_FAILOVER_"))
                        .then(|| (name.to_string(), value.to_string()))
                })
                .collect();
            std::fs::remove_file(&path).unwrap();
            std::fs::remove_file(&env_path).unwrap();
            calls.push((args, env));
        }
        calls
    }
}

fn nul_split(bytes: &[u8]) -> Vec<String> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .split_terminator('\0')
        .map(str::to_string)
        .collect()
}

/// Parses one recorded call with the binary's own command line, in the environment it was made in.
/// The caller holds the only test of this process that touches the environment.
fn parse_error(args: &[String], env: &BTreeMap<String, String>) -> Option<String> {
    for (name, value) in env {
        std::env::set_var(name, value);
    }
    let result = Cli::try_parse_from(
        std::iter::once("twiml-failover".to_string()).chain(args.iter().cloned()),
    );
    for name in env.keys() {
        std::env::remove_var(name);
    }
    match result {
        Ok(_) => None,
        Err(error)
            if matches!(
                error.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            None
        }
        Err(error) => Some(error.to_string()),
    }
}

/// Runs a console block command by command; returns a description of every difference.
fn run_console(
    sandbox: &Sandbox,
    block: &Block,
    name: &str,
    isolated: bool,
    path: &str,
) -> Vec<String> {
    let steps = console_steps(&block.text);
    let mut script = String::from(CLEANUP);
    for (index, (command, _)) in steps.iter().enumerate() {
        script.push_str(&format!(
            "printf '\\n@@docs-step-{index}@@\\n'\n{{ {command}\n}} 2>&1\nstatus=$?\nif [ $status -ne 0 ]; then printf '\\n@@docs-failed %s@@\\n' $status; exit 1; fi\n"
        ));
    }
    let (_, stdout, stderr) = sandbox.bash(&script, name, isolated, path);
    let mut problems = Vec::new();
    for (index, (command, expected)) in steps.iter().enumerate() {
        let marker = format!("\n@@docs-step-{index}@@\n");
        let Some(start) = stdout.find(&marker) else {
            problems.push(format!(
                "{}: `$ {command}` did not run\n{stdout}{stderr}",
                block.place
            ));
            break;
        };
        let rest = &stdout[start + marker.len()..];
        let (output, after) = rest.split_at(rest.find("\n@@docs-").unwrap_or(rest.len()));
        if let Some(status) = after.strip_prefix("\n@@docs-failed ") {
            let status = status.split('@').next().unwrap_or("?");
            problems.push(format!(
                "{}: `$ {command}` exited {status}\n{output}\n{stderr}",
                block.place
            ));
            break;
        }
        let actual: Vec<&str> = output.lines().collect();
        if !lines_match(expected, &actual) {
            problems.push(format!(
                "{}: `$ {command}` printed\n{}\nbut the docs say\n{}",
                block.place,
                actual.join("\n"),
                expected.join("\n")
            ));
        }
    }
    problems
}

/// What a parsed block runs first: missing commands succeed, and `cd`, `.` and `source` do nothing,
/// so the block stays in its sandbox.
const STUBS: &str = "command_not_found_handle() { return 0; }\ncd() { return 0; }\n.() { return 0; }\nsource() { return 0; }\n";

/// A parsed block's output redirections to absolute paths (`> /var/log/x`) go to /dev/null instead.
fn absolute_redirects_to_dev_null(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('>') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('>') {
            out.push('>');
            rest = after;
        }
        let target = rest.trim_start_matches(' ');
        if target.starts_with('/') {
            let end = target
                .find(|c: char| c.is_whitespace() || ";|&)".contains(c))
                .unwrap_or(target.len());
            out.push_str("/dev/null");
            rest = &target[end..];
        }
    }
    out.push_str(rest);
    out
}

/// Stops whatever a block left running in the background when it ends.
const CLEANUP: &str = "set -o pipefail\ntrap 'jobs=$(jobs -p); [ -z \"$jobs\" ] || { kill $jobs 2>/dev/null; wait; }' EXIT\n";

#[test]
fn every_shell_block_runs_or_parses_as_printed() {
    // Only the recorded environment of each call may reach the in-process parse.
    for (name, _) in std::env::vars() {
        if name.starts_with("TWILIO_") || name.starts_with("TWIML_FAILOVER_") {
            std::env::remove_var(name);
        }
    }
    // Without user namespaces (some CI runners) the examples still run, on the shared loopback.
    let isolated = Command::new("unshare")
        .args(["-rn", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !isolated {
        eprintln!("no `unshare -rn` here: the examples use ports 8080 and 8081 of this machine");
    }
    let mut problems = Vec::new();
    let mut ran = 0;
    let mut parsed = 0;
    for (path, mode) in documents() {
        let place = path.strip_prefix(repo()).unwrap().display().to_string();
        let markdown = std::fs::read_to_string(&path).unwrap();
        let runner = Sandbox::new(mode == Mode::Run);
        let stub = Sandbox::new(false);
        let run_path = format!(
            "{}:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
            runner.bin.display()
        );
        for (index, block) in blocks(&place, &markdown).into_iter().enumerate() {
            let name = format!("block{index}");
            let sandbox;
            if mode == Mode::Run && !block.no_run {
                sandbox = &runner;
                ran += 1;
                if block.console {
                    problems.extend(run_console(&runner, &block, &name, isolated, &run_path));
                } else {
                    let script = format!("set -eu\n{CLEANUP}{}", block.text);
                    let (ok, stdout, stderr) = runner.bash(&script, &name, isolated, &run_path);
                    if !ok {
                        problems.push(format!("{}: failed\n{stdout}{stderr}", block.place));
                    }
                }
            } else {
                sandbox = &stub;
                parsed += 1;
                let text = if block.console {
                    console_steps(&block.text)
                        .into_iter()
                        .map(|(command, _)| command + "\n")
                        .collect()
                } else {
                    block.text.clone()
                };
                // Every command but the shim is missing and succeeds; builtins that would read
                // or write outside the sandbox do nothing.
                let script = format!("{STUBS}{}", absolute_redirects_to_dev_null(&text));
                stub.bash(&script, &name, false, &stub.bin.display().to_string());
            }
            let calls = sandbox.take_calls();
            let written = written_calls(&block.text);
            if calls.len() < written {
                problems.push(format!(
                    "{}: calls twiml-failover {written} times, but only {} call(s) happened",
                    block.place,
                    calls.len()
                ));
            }
            for (args, env) in calls {
                if let Some(error) = parse_error(&args, &env) {
                    problems.push(format!(
                        "{}: `twiml-failover {}` does not parse:\n{error}",
                        block.place,
                        args.join(" ")
                    ));
                }
            }
        }
    }
    assert!(
        ran >= 5 && parsed >= 5,
        "only {ran} blocks ran and {parsed} were parsed"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// A Markdown table row's cells; `\|` stays inside a cell.
fn cells(row: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut chars = row.trim().trim_start_matches('|').chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cells.last_mut().unwrap().push(chars.next().unwrap())
            }
            '|' => cells.push(String::new()),
            _ => cells.last_mut().unwrap().push(c),
        }
    }
    if cells.last().is_some_and(|last| last.trim().is_empty()) {
        cells.pop();
    }
    cells
        .into_iter()
        .map(|cell| cell.trim().to_string())
        .collect()
}

/// The text between the first pair of backticks.
fn code(cell: &str) -> Option<&str> {
    cell.split('`').nth(1).filter(|_| cell.starts_with('`'))
}

/// A documented config key as a TOML line holding a value no setting accepts (a table).
fn toml_with(key: &str, value: &str) -> String {
    match key.strip_prefix('[').and_then(|rest| rest.split_once("] ")) {
        Some((section, name)) => format!("[{section}]\n{name} = {value}\n"),
        None => format!("{key} = {value}\n"),
    }
}

/// `check --config` on a config file; returns its stderr.
fn check_config(dir: &Path, toml: &str) -> String {
    let file = dir.join("config.toml");
    std::fs::write(&file, toml).unwrap();
    let output = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&file)
        .arg("--templates")
        .arg(repo().join("twiml-templates"))
        .env_clear()
        .output()
        .unwrap();
    String::from_utf8(output.stderr).unwrap()
}

/// The keys the binary names when refusing an unknown one in `section` ("" for the top level).
fn accepted_keys(dir: &Path, section: &str) -> BTreeSet<String> {
    let toml = if section.is_empty() {
        "not_a_setting = 1\n".to_string()
    } else {
        format!("[{section}]\nnot_a_setting = 1\n")
    };
    let stderr = check_config(dir, &toml);
    // serde: "expected `a`", "expected `a` or `b`", "expected one of `a`, `b`, `c`".
    let list = stderr
        .split("unknown field `not_a_setting`, expected ")
        .nth(1)
        .unwrap_or_else(|| panic!("no list of keys in: {stderr}"));
    list.lines()
        .next()
        .unwrap()
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// A value of each kind a serve flag takes: as the flag writes it, and as the config file does.
fn sample(value_name: &str) -> Option<(&'static str, &'static str)> {
    Some(match value_name {
        "SECONDS" => ("7", "7"),
        "N" | "BYTES" => ("70000", "70000"),
        "RATIO" => ("0.5", "0.5"),
        "BOOL" => ("true", "true"),
        "PATTERNS" => ("/a,/b", "[\"/a\", \"/b\"]"),
        "ADDR" => ("127.0.0.1:9", "\"127.0.0.1:9\""),
        "URL" => ("http://127.0.0.1:9/x", "\"http://127.0.0.1:9/x\""),
        "ROLE" => ("fallback", "\"fallback\""),
        "FORMAT" => ("json", "\"json\""),
        "MODE" => ("pass", "\"pass\""),
        "DURATION" => ("3h", "\"3h\""),
        "DIR" | "FILE" | "PATH" => ("/x", "\"/x\""),
        _ => return None,
    })
}

/// Whether `flag` and the config file's `key` set the same setting: a sample value given either
/// way is read into the same settings (and not into none).
fn same_setting(serve: &clap::Command, flag: &str, key: &str) -> Option<String> {
    use twiml_failover::config::ServeArgs;
    let arg = serve
        .get_arguments()
        .find(|arg| arg.get_long() == flag.strip_prefix("--"))?;
    let value_name = arg.get_value_names()?.first()?.to_string();
    let Some((flag_value, file_value)) = sample(&value_name) else {
        return Some(format!(
            "{flag}: no sample value for {value_name} in tests/docs.rs"
        ));
    };
    let from_flag = match Cli::try_parse_from(["twiml-failover", "serve", flag, flag_value])
        .map(|c| c.command)
    {
        Ok(twiml_failover::cli::Command::Serve(args)) => args,
        other => return Some(format!("{flag} {flag_value}: {other:?}")),
    };
    let from_file: ServeArgs = match toml::from_str(&toml_with(key, file_value)) {
        Ok(args) => args,
        Err(e) => return Some(format!("{key} = {file_value}: {e}")),
    };
    let (flag_set, file_set) = (format!("{from_flag:?}"), format!("{from_file:?}"));
    (flag_set != file_set || flag_set == format!("{:?}", ServeArgs::default())).then(|| {
        format!("{flag} and config key {key} are not the same setting:\n{flag_set}\n{file_set}")
    })
}

#[test]
fn configuration_table_matches_serve_help_and_config_keys() {
    let page = std::fs::read_to_string(repo().join("docs/configuration.md")).unwrap();
    let mut documented = BTreeMap::new();
    for row in page.lines().filter(|line| line.starts_with("| `--")) {
        let cells = cells(row);
        assert_eq!(
            cells.len(),
            4,
            "docs/configuration.md: a row needs 4 cells: {row}"
        );
        let flag = code(&cells[0])
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        let env = code(&cells[1]).map(str::to_string);
        let key = code(&cells[2]).map(str::to_string);
        let previous = documented.insert(flag.clone(), (env, key, cells[3].clone()));
        assert!(previous.is_none(), "docs/configuration.md: {flag} twice");
    }

    let cli = Cli::command();
    let serve = cli.find_subcommand("serve").unwrap();
    let mut problems = Vec::new();
    let mut flags = BTreeSet::new();
    for arg in serve.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" {
            continue;
        }
        let flag = format!("--{long}");
        flags.insert(flag.clone());
        let Some((env, _, default)) = documented.get(&flag) else {
            problems.push(format!(
                "{flag} is a serve flag but has no row in docs/configuration.md"
            ));
            continue;
        };
        // The environment twin follows the flag, in the binary and in the docs.
        let real_env = arg.get_env().map(|env| env.to_string_lossy().to_string());
        let twin = format!("TWIML_FAILOVER_{}", long.replace('-', "_").to_uppercase());
        if *env != real_env || real_env.as_deref() != Some(twin.as_str()) {
            problems.push(format!(
                "{flag}: docs say env {env:?}, the binary {real_env:?}, the rule {twin}"
            ));
        }
        let help = arg
            .get_help()
            .map(|help| help.to_string())
            .unwrap_or_default();
        if help
            .split(" [default: ")
            .next()
            .unwrap_or("")
            .trim()
            .is_empty()
        {
            problems.push(format!("{flag} has no help text"));
        }
        // The default --help shows (written from the code) is the docs'; no default is `none`.
        match help
            .split("[default: ")
            .nth(1)
            .and_then(|rest| rest.split(']').next())
        {
            Some(value) if code(default) != Some(value) => problems.push(format!(
                "{flag}: --help says default {value}, docs say {default}"
            )),
            None if !default.starts_with("none") => problems.push(format!(
                "{flag}: --help shows no default, docs say {default} (not `none`)"
            )),
            _ => {}
        }
    }
    for flag in documented.keys() {
        if !flags.contains(flag) {
            problems.push(format!(
                "docs/configuration.md documents {flag}, which serve does not have"
            ));
        }
    }

    // Every documented key is one the config file accepts, and every setting key is documented.
    let dir = tempfile::tempdir().unwrap();
    let mut keys = BTreeSet::new();
    for (flag, (_, key, _)) in &documented {
        let Some(key) = key else {
            if flag != "--config" {
                problems.push(format!("{flag} has no config key in docs/configuration.md"));
            }
            continue;
        };
        keys.insert(key.clone());
        if let Some(problem) = same_setting(serve, flag, key) {
            problems.push(problem);
        }
        let stderr = check_config(dir.path(), &toml_with(key, "{}"));
        if !stderr.contains("invalid type") {
            problems.push(format!(
                "config key {key} ({flag}) is not one the binary reads: {stderr}"
            ));
        }
    }
    // Tables and lists the config page describes in prose, not in the table.
    let prose = ["vars", "extra_params", "accounts", "shared_keys"];
    for section in ["", "limits", "tls", "journal", "forward", "upstream"] {
        for name in accepted_keys(dir.path(), section) {
            let key = if section.is_empty() {
                name.clone()
            } else {
                format!("[{section}] {name}")
            };
            let is_section =
                ["limits", "tls", "journal", "forward", "upstream"].contains(&name.as_str());
            if section.is_empty() && (is_section || prose.contains(&name.as_str())) {
                continue;
            }
            if !keys.contains(&key) {
                problems.push(format!(
                    "config key {key} is missing from docs/configuration.md"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Issue 24, point 7: the README's quick start cannot hang. When `serve` cannot start (the token not
/// exported, the port taken by something else), the block fails within seconds, at the readiness
/// check, and what it printed holds `serve.log`'s reason.
#[test]
fn the_quick_start_fails_fast_with_the_reason_when_serve_cannot_start() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let quick_start = blocks("README.md", &readme)
        .into_iter()
        .find(|b| b.console && b.text.contains("twiml-failover serve"))
        .expect("the README has a quick start");
    let isolated = Command::new("unshare")
        .args(["-rn", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    // Something else on 8080 that never answers HTTP, started outside the block's jobs, as another
    // program would hold it.
    let squat = "$ ( python3 -c 'import socket, time; s = socket.socket(); \
                 s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
                 s.bind((\"127.0.0.1\", 8080)); s.listen(); time.sleep(30)' & ) && sleep 0.5\n";
    let cases = [
        (
            "token not exported",
            quick_start
                .text
                .lines()
                .filter(|l| !l.starts_with("$ export TWILIO_AUTH_TOKEN"))
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
            "TWILIO_AUTH_TOKEN",
        ),
        (
            "port taken",
            format!("{squat}{}", quick_start.text),
            "listen 127.0.0.1:8080",
        ),
    ];
    for (what, text, reason) in cases {
        let sandbox = Sandbox::new(true);
        let path = format!(
            "{}:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
            sandbox.bin.display()
        );
        let block = Block {
            place: format!("README.md quick start, {what}"),
            console: true,
            no_run: false,
            text,
        };
        let started = std::time::Instant::now();
        let problems = run_console(&sandbox, &block, "quick-start", isolated, &path);
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(10),
            "{what}: the quick start took {took:?} to fail: {problems:?}"
        );
        let failed = problems
            .first()
            .unwrap_or_else(|| panic!("{what}: the block passed"));
        assert!(
            failed.contains("readyz || { cat serve.log; false; }` exited 1")
                && failed.contains(reason),
            "{what}: {failed}"
        );
        eprintln!("{what}: failed in {took:?} at the readiness check, showing {reason:?}");
    }
}

#[test]
fn the_readme_test_command_is_the_one_ci_runs() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    let command = "tests/oracle/setup.sh && cargo test";
    let in_readme = blocks("README.md", &readme)
        .iter()
        .any(|block| block.text.lines().any(|line| line.trim() == command));
    assert!(in_readme, "README.md has no shell block with `{command}`");
    assert!(
        ci.lines().any(|line| line.trim() == command),
        ".ci/run does not run `{command}`"
    );
}

#[test]
fn relative_links_lead_to_files_and_headings() {
    let mut problems = Vec::new();
    for (path, _) in documents() {
        let text = std::fs::read_to_string(&path).unwrap();
        let dir = path.parent().unwrap();
        for target in text
            .split("](")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
        {
            if target.starts_with("http") || target.contains(' ') {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let file = if file.is_empty() {
                path.clone()
            } else {
                dir.join(file)
            };
            if !file.exists() {
                problems.push(format!("{}: link to missing {target}", path.display()));
                continue;
            }
            if !anchor.is_empty() && file.extension().is_some_and(|ext| ext == "md") {
                let slugs: BTreeSet<String> = std::fs::read_to_string(&file)
                    .unwrap()
                    .lines()
                    .filter_map(|line| line.strip_prefix('#'))
                    .map(|heading| slug(heading.trim_start_matches('#')))
                    .collect();
                if !slugs.contains(anchor) {
                    problems.push(format!(
                        "{}: link to missing heading {target}",
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// GitHub's anchor for a heading: lower case, spaces to `-`, punctuation other than `-`/`_` dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}
