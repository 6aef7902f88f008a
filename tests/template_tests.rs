//! `twiml-failover test` on the shipped template tests (so every `cargo test` runs them, as CI does)
//! and on mutated templates, which must fail with a readable diff and exit 1.

mod common;

use std::path::Path;

use common::process::copy_dir;
use common::{example_config, shipped_templates};

/// Runs `test` on `root` with the example config: (exit code, stdout, stderr).
fn test(root: &Path) -> (i32, String, String) {
    let config = example_config();
    let args = [
        "test",
        "--templates",
        root.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    common::run_bin(&args, &[])
}

#[test]
fn the_shipped_template_tests_pass_for_both_roles() {
    let (code, out, err) = test(&shipped_templates());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok   ") && !out.contains("FAIL"), "{out}");
    for file in ["tests/primary.toml", "tests/fallback.toml"] {
        assert!(out.contains(file), "{file} runs: {out}");
    }
    assert!(err.contains(" passed, 0 failed"), "{err}");
}

#[test]
fn a_mutated_template_fails_with_a_diff() {
    let root = tempfile::tempdir().unwrap();
    copy_dir(&shipped_templates(), root.path());
    let edit = |file: &str, from: &str, to: &str| {
        let path = root.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} holds {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    };
    // A wording change in the fallback, and the menu's 1 and 2 swapped in the primary.
    edit("fallback/voice.xml", "our backup line", "our backup team");
    edit("primary/menu.xml", "Digits == \"1\"", "Digits == \"2\"");
    let (code, out, err) = test(root.path());
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("FAIL ")
            && out.contains(
                "a call during an outage is apologised to and dialled to the backup line"
            ),
        "{out}"
    );
    assert!(out.contains("document differs:"), "{out}");
    assert!(out.contains("-   <Say>We are sorry. Example Corp is having technical difficulties. Please hold while we connect you to our backup line.</Say>"), "{out}");
    assert!(out.contains("+   <Say>We are sorry. Example Corp is having technical difficulties. Please hold while we connect you to our backup team.</Say>"), "{out}");
    assert!(
        out.contains(
            "step 2 (menu): verbs: expected [\"Say\", \"Dial\"], got [\"Say\", \"Redirect\"]"
        ),
        "{out}"
    );
    assert!(err.contains("failed"), "{err}");
}

#[test]
fn no_tests_is_an_error_not_a_pass() {
    let root = tempfile::tempdir().unwrap();
    copy_dir(&shipped_templates(), root.path());
    std::fs::remove_dir_all(root.path().join("tests")).unwrap();
    let (code, _, err) = test(root.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("tests:"), "{err}");
}
