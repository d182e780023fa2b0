//! One person-like run in headless Chromium: type a text before signing in, sign in at the
//! provider's login form, and see the summary. The screenshot goes under the target directory.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::TestApp;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The folder for test output: `$CARGO_TARGET_DIR/test-output`, or `target/test-output`.
fn output_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let dir = target.join("test-output");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn person_signs_in_and_summarizes() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        Path::new(&chromium).exists(),
        "Chromium not found at `{chromium}`; run `scripts/setup.sh` (it installs Debian's `chromium`) or set CHROMIUM"
    );
    assert!(
        repo_root().join("tests/browser/node_modules").exists(),
        "tests/browser/node_modules is missing; run `scripts/setup.sh`"
    );

    let (app, double) = TestApp::start_with_serving(&["databricks-claude-sonnet-4"]).await;

    let screenshot = output_dir().join("summarize.png");
    let _ = std::fs::remove_file(&screenshot);
    let script = repo_root().join("tests/browser/sign_in_and_summarize.mjs");
    let app_url = app.base.clone();
    let screenshot_arg = screenshot.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args(["--app", &app_url, "--login", "yamada"])
            .args(["--expect", "要約: 東京の天気は晴れ"])
            .arg("--screenshot")
            .arg(&screenshot_arg)
            .env("CHROMIUM", chromium)
            .output()
            .unwrap()
    })
    .await
    .unwrap();

    assert!(
        output.status.success(),
        "the browser run failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(screenshot.exists(), "no screenshot at {}", screenshot.display());
    assert_eq!(double.requests("databricks-claude-sonnet-4"), 1);
}
