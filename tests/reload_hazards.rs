//! Reload hazards against the real binary: a symlink loop dropped into a watched template folder,
//! a loop present at start-up, `check` on such a layout, and the template folder deleted and
//! created again while `serve` watches it. Each wait is bounded.

mod common;

use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use common::process::{copy_dir, Serve};
use common::{example_config, shipped_templates};

fn templates_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_templates(), dir.path());
    dir
}

fn serve(templates: &std::path::Path) -> Serve {
    let config = example_config();
    Serve::start(
        &[
            "--templates",
            templates.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    )
}

fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for: {what}");
}

fn ok_200(answer: Option<String>) -> bool {
    answer.is_some_and(|a| a.starts_with("HTTP/1.1 200"))
}

#[test]
fn a_symlink_loop_in_a_watched_folder_is_refused_and_serving_goes_on() {
    let dir = templates_copy();
    let mut server = serve(dir.path());
    assert!(ok_200(server.sms("hi")));
    let primary = dir.path().join("primary");
    symlink(".", primary.join("a")).unwrap();
    symlink(".", primary.join("b")).unwrap();
    until("the reload is refused", || {
        server.log().contains("directory symlinks are not followed")
    });
    for _ in 0..20 {
        assert!(ok_200(server.get("/healthz")), "{}", server.log());
        assert!(ok_200(server.sms("hi")), "{}", server.log());
    }
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        server.log()
    );
}

#[test]
fn a_symlink_loop_at_start_up_stops_serve_and_check_with_the_path() {
    let dir = templates_copy();
    let primary = dir.path().join("primary");
    symlink(".", primary.join("a")).unwrap();
    symlink(".", primary.join("b")).unwrap();
    let started = Instant::now();
    let Err((status, log)) = Serve::try_start(&["--templates", dir.path().to_str().unwrap()], &[])
    else {
        panic!("serve started on a set with a symlink loop");
    };
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{log}");
    assert!(
        log.contains("primary/a:1:1: directory symlinks are not followed"),
        "{log}"
    );
    let (code, out, _) =
        common::run_bin(&["check", "--templates", dir.path().to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("primary/b:1:1: directory symlinks"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn the_watcher_survives_the_folder_being_deleted_and_created_again() {
    let dir = templates_copy();
    let server = serve(dir.path());
    until("the watch is active", || {
        server
            .get("/metrics")
            .is_some_and(|m| m.contains("template_watch_active 1"))
    });
    std::fs::remove_dir_all(dir.path()).unwrap();
    until("the watcher says the folder is gone", || {
        server.log().contains("watched folder is gone")
    });
    assert!(server
        .get("/metrics")
        .is_some_and(|m| m.contains("template_watch_active 0")));
    // The set in memory keeps answering meanwhile.
    assert!(ok_200(server.sms("hi")));
    copy_dir(&shipped_templates(), dir.path());
    until("the watch is active again", || {
        server
            .get("/metrics")
            .is_some_and(|m| m.contains("template_watch_active 1"))
    });
    // A change in the new folder is picked up by the file watcher alone (no SIGHUP).
    std::fs::write(
        dir.path().join("primary/sms.xml"),
        "<Response><Message>After the new folder</Message></Response>",
    )
    .unwrap();
    until("the change is served", || {
        server
            .sms("hi")
            .is_some_and(|a| a.contains("After the new folder"))
    });
}
