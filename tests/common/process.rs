//! The real binary as a child process: `serve` on port 0 with its log in a file, plain HTTP/1 over
//! std sockets with timeouts, signals, and a bounded wait for exit. Every wait here has a deadline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running `twiml-failover serve`, killed when dropped.
pub struct Serve {
    pub child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Serve {
    /// Starts `serve --listen 127.0.0.1:0 ARGS` (unless ARGS has a `--listen`) with the test token and `env`, and waits (at most
    /// 20 s) for its `listening` line. Panics with the log when it exits first.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Serve {
        Serve::try_start(args, env)
            .unwrap_or_else(|(status, log)| panic!("serve exited at start-up ({status:?}):\n{log}"))
    }

    /// Like `start`, but a process that exits before listening is returned as (status, log).
    pub fn try_start(
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Serve, (Option<ExitStatus>, String)> {
        Serve::try_start_with_umask(None, args, env)
    }

    /// Like `try_start`, with the process's umask set first (`Some("022")`) through `sh`.
    pub fn try_start_with_umask(
        umask: Option<&str>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Serve, (Option<ExitStatus>, String)> {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serve.log");
        let bin = env!("CARGO_BIN_EXE_twiml-failover");
        let mut command = match umask {
            None => Command::new(bin),
            Some(mask) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("umask {mask} && exec \"$0\" \"$@\""), bin]);
                sh
            }
        };
        command.arg("serve");
        if !args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = command
            .args(args)
            .env_clear()
            .env("TWILIO_AUTH_TOKEN", super::TOKEN)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("binary starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(addr) = listening_addr(&text) {
                return Ok(Serve {
                    child,
                    addr,
                    log,
                    _dir: dir,
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err((
                    Some(status),
                    std::fs::read_to_string(&log).unwrap_or_default(),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err((None, std::fs::read_to_string(&log).unwrap_or_default()))
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `request` and returns the whole answer, or `None` when none came within `timeout`.
    pub fn send(&self, request: &[u8], timeout: Duration) -> Option<String> {
        let mut s = TcpStream::connect_timeout(&self.addr, timeout).ok()?;
        s.set_read_timeout(Some(timeout)).ok()?;
        s.set_write_timeout(Some(timeout)).ok()?;
        s.write_all(request).ok()?;
        let mut out = Vec::new();
        match s.read_to_end(&mut out) {
            Ok(_) => {}
            Err(_) if !out.is_empty() => {}
            Err(_) => return None,
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    /// `GET path` (connection closed after the answer); `None` when unanswered within 3 s.
    pub fn get(&self, path: &str) -> Option<String> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        self.send(request.as_bytes(), Duration::from_secs(3))
    }

    /// A genuinely signed `POST /sms`; `None` when unanswered within 3 s.
    pub fn sms(&self, body: &'static str) -> Option<String> {
        let mut request = super::signed_sms_request(self.addr, body);
        // The helper's request is keep-alive; close so the answer ends the read.
        let head_end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        request.splice(head_end..head_end, b"\r\nConnection: close".iter().copied());
        self.send(&request, Duration::from_secs(3))
    }

    /// A `POST path` signed like Twilio signs it (for `http://ADDR/path`, the test token), the
    /// connection closed after the answer; `None` when unanswered within 5 s.
    pub fn post_signed(&self, path: &str, params: &[(&str, &str)]) -> Option<String> {
        let url = format!("http://{}{path}", self.addr);
        let sig = twiml_failover::signature::sign(
            twiml_failover::signature::Algorithm::HmacSha1,
            super::TOKEN.as_bytes(),
            &url,
            params,
        );
        let body = super::form(params);
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             X-Twilio-Signature: {sig}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        self.send(request.as_bytes(), Duration::from_secs(5))
    }

    /// Sends signed SMS webhooks whose MessageSids are `SM` and the number, 32 digits, for each
    /// number in `range`, and checks each got 200.
    pub fn acknowledge_sms(&self, range: std::ops::Range<usize>) {
        for i in range {
            let sid = format!("SM{i:032}");
            let params = [
                ("AccountSid", "AC00000000000000000000000000000001"),
                ("MessageSid", sid.as_str()),
                ("From", "+15005550006"),
                ("To", "+15005550001"),
                ("Body", "hi"),
            ];
            let answer = self.post_signed("/sms", &params);
            assert!(
                answer
                    .as_deref()
                    .is_some_and(|a| a.starts_with("HTTP/1.1 200")),
                "{answer:?}"
            );
        }
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to the process.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{signal} failed");
    }

    /// SIGTERM, then the exit code (-1 for a signal); panics with the log when there is no exit
    /// within 30 s.
    pub fn terminate(&mut self) -> i32 {
        self.signal("TERM");
        let status = self
            .wait_exit(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("no exit within 30 s after SIGTERM:\n{}", self.log()));
        status.code().unwrap_or(-1)
    }

    /// Waits at most `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in the `listening listen=ADDR ...` start-up line (`"listen":"ADDR"` in JSON).
fn listening_addr(log: &str) -> Option<SocketAddr> {
    log.lines()
        .filter(|l| l.contains("listening"))
        .find_map(|l| {
            l.split("listen=")
                .nth(1)
                .or_else(|| l.split("\"listen\":\"").nth(1))?
                .split([' ', '"'])
                .find(|s| !s.is_empty())?
                .parse()
                .ok()
        })
}

/// Copies a folder tree (files and folders only).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

impl Serve {
    /// `start` on the shipped templates and example config, plus `extra` flags.
    pub fn shipped(extra: &[&str]) -> Serve {
        Serve::shipped_with(extra, &[])
    }

    /// `shipped` with a journal at `journal`, its spill folder `spill_dir`, callers answered after
    /// 0.2 s whatever the store does, no lame duck, plus `extra` flags.
    pub fn spilling(journal: &str, spill_dir: &std::path::Path, extra: &[&str]) -> Serve {
        let mut args = vec![
            "--journal",
            journal,
            "--journal-spill-dir",
            spill_dir.to_str().unwrap(),
            "--watch",
            "false",
            "--lame-duck",
            "0",
            "--journal-timeout",
            "0.2",
        ];
        args.extend_from_slice(extra);
        Serve::shipped(&args)
    }

    /// `shipped` with `env` in its environment too.
    pub fn shipped_with(extra: &[&str], env: &[(&str, &str)]) -> Serve {
        let templates = super::shipped_templates();
        let config = super::example_config();
        let mut args = vec![
            "--templates",
            templates.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        Serve::start(&args, env)
    }
}
