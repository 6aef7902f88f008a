//! Hot template reload: a good set is swapped in whole, a bad set is refused and the old one keeps
//! answering, on file change and on demand.

mod common;

use std::time::{Duration, Instant};

use common::process::copy_dir;
use common::*;

async fn sms_answer(server: &TestServer) -> String {
    let r = post_signed(
        server.addr,
        &server.url("/sms"),
        "/sms",
        TOKEN,
        &sms_params("hi"),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body
}

async fn until(mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn file_changes_reload_good_sets_and_refuse_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_templates(), dir.path());
    let mut a = args("primary");
    a.templates = Some(dir.path().to_path_buf());
    let server = TestServer::start(config(&a)).await;
    let watcher = tokio::spawn(twiml_failover::reload::on_file_change(
        server.app.clone(),
        vec![dir.path().to_path_buf()],
    ));
    // Give the watcher a moment to register before the first write.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(sms_answer(&server)
        .await
        .contains("An agent will reply soon"));

    let sms = dir.path().join("primary/sms.xml");
    std::fs::write(&sms, "<Response><Message>Version two</Message></Response>").unwrap();
    assert!(until(async || sms_answer(&server).await.contains("Version two")).await);

    // A voice verb in a messaging template fails `check`: refused, version two keeps answering.
    std::fs::write(&sms, "<Response><Say>Broken</Say></Response>").unwrap();
    assert!(
        until(async || server
            .app
            .metrics()
            .encode()
            .contains("template_reloads_total{result=\"error\"}"))
        .await
    );
    assert!(sms_answer(&server).await.contains("Version two"));
    // Half a set never shows: removing an entry point is refused as a whole.
    std::fs::remove_file(dir.path().join("fallback/voice.xml")).unwrap();
    std::fs::write(
        &sms,
        "<Response><Message>Version three</Message></Response>",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(sms_answer(&server).await.contains("Version two"));
    watcher.abort();
    server.stop().await;
}

#[tokio::test]
async fn reload_swaps_atomically_under_concurrent_requests() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_templates(), dir.path());
    let mut a = args("primary");
    a.templates = Some(dir.path().to_path_buf());
    let server = TestServer::start(config(&a)).await;
    let app = server.app.clone();
    let sms = dir.path().join("primary/sms.xml");
    let versions = [
        "<Response><Message>A</Message></Response>",
        "<Response><Message>B</Message></Response>",
    ];
    let reloader = tokio::spawn({
        let sms = sms.clone();
        async move {
            for i in 0..40 {
                std::fs::write(&sms, versions[i % 2]).unwrap();
                app.reload_templates().unwrap();
                tokio::task::yield_now().await;
            }
        }
    });
    let mut seen = std::collections::BTreeSet::new();
    while !reloader.is_finished() {
        let body = sms_answer(&server).await;
        assert!(body.contains("Message"), "{body}");
        seen.insert(body);
    }
    reloader.await.unwrap();
    assert!(server
        .app
        .metrics()
        .encode()
        .contains("template_reloads_total{result=\"ok\"} 40"));
    server.stop().await;
}
