//! Access-token refresh against a provider that rotates refresh tokens: each refresh token works
//! once, and presenting a used one again revokes the grant.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use support::{browser, sign_in, TestApp};

async fn me(client: &reqwest::Client, app: &TestApp) -> (StatusCode, Value) {
    let response = client.get(app.url("/api/me")).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn expired_access_token_is_refreshed() {
    let app = TestApp::start_with_ttl(2).await;
    let client = browser();
    sign_in(&client, &app, "judy").await;
    let (status, before) = me(&client, &app).await;
    assert_eq!(status, StatusCode::OK);

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, after) = me(&client, &app).await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert!(
        after["token_expires_at"].as_i64() > before["token_expires_at"].as_i64(),
        "no refresh: {before} then {after}"
    );
}

#[tokio::test]
async fn concurrent_requests_refresh_once() {
    let app = TestApp::start_with_ttl(2).await;
    let client = browser();
    sign_in(&client, &app, "kim").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let (first, second) = tokio::join!(me(&client, &app), me(&client, &app));
    assert_eq!(first.0, StatusCode::OK, "{}", first.1);
    assert_eq!(second.0, StatusCode::OK, "{}", second.1);
    assert_eq!(first.1["token_expires_at"], second.1["token_expires_at"]);

    // Had both requests refreshed, the provider would have revoked the grant, and this later
    // refresh would fail and sign the user out.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, later) = me(&client, &app).await;
    assert_eq!(status, StatusCode::OK, "{later}");
}

#[tokio::test]
async fn api_without_session_is_unauthorized() {
    let app = TestApp::start().await;
    let (status, body) = me(&browser(), &app).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "not_signed_in");
}

#[tokio::test]
async fn provider_outage_keeps_session() {
    let mut app = TestApp::start_with_ttl(2).await;
    let client = browser();
    sign_in(&client, &app, "outage").await;

    app.oidc.stop();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, body) = me(&client, &app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");

    // The session is still there: the same answer, not "not signed in".
    let (status, body) = me(&client, &app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}
