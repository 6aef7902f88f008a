//! Python's expat as the independent judge of well-formedness, for the tests that hold our verdicts
//! to it (`tests/oracle/xml_wellformed.py` reads a batch of documents, answers one verdict each).
//!
//! Python is found via `PYTHON`, then `tests/oracle/.venv/bin/python`, then `python3`.

use std::io::Write;
use std::process::{Command, Stdio};

/// A Python with expat, or `None`.
fn python() -> Option<String> {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle/.venv/bin/python");
    let candidates = std::env::var("PYTHON")
        .ok()
        .into_iter()
        .chain([venv.to_string(), "python3".to_string()]);
    for c in candidates {
        let ok = Command::new(&c)
            .args(["-c", "import xml.parsers.expat"])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(c);
        }
    }
    None
}

/// The Python to ask; without one the test fails: a comparison that did not run must not count as
/// passed (`cargo test -- --skip NAME` skips it knowingly, and says so).
pub fn python_or_fail() -> String {
    python().expect(
        "Python 3 (for its expat) is needed: set PYTHON \
         (or skip this test knowingly: cargo test -- --skip NAME)",
    )
}

/// expat's verdict on each of `docs` (true: well-formed).
pub fn verdicts(python: &str, docs: &[String]) -> Vec<bool> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/oracle/xml_wellformed.py"
    );
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python starts");
    let input = serde_json::to_vec(docs).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the expat script failed");
    serde_json::from_slice(&out.stdout).unwrap()
}
