//! `app healthcheck` as ECS and the demo run it: with the task's whole environment set.

use std::process::Command;

use app::{AppState, Config};
use tokio::net::TcpListener;

#[tokio::test]
async fn healthcheck_ignores_settings_it_does_not_use() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = Config::from_lookup(|_| Err(std::env::VarError::NotPresent)).unwrap();
    tokio::spawn(app::startup::run_until(listener, AppState::new(config), std::future::pending()));

    // A sign-in setting alone would stop `app serve`, but the probe needs only the address.
    let status = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_app"))
            .arg("healthcheck")
            .env_clear()
            .env("APP_BIND_ADDR", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATABRICKS_CLIENT_SECRET", "only-this-one-is-set")
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(status.success(), "healthcheck exited with {status}");
}
