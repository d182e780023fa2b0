//! The summarize form: CSRF, and text typed before sign-in kept across the sign-in round trip.

mod support;

use reqwest::StatusCode;
use support::{browser, finish_callback, location, sign_in, sign_in_until_callback, TestApp};

/// The app with sign-in and a Model Serving double that serves the default endpoint.
async fn app_with_serving() -> (TestApp, support::serving_double::ServingDouble) {
    TestApp::start_with_serving(&["databricks-claude-sonnet-4"]).await
}

/// Reads the CSRF token from the summarize form.
async fn form_token(client: &reqwest::Client, app: &TestApp) -> String {
    let page = client.get(app.url("/summarize")).send().await.unwrap().text().await.unwrap();
    support::csrf_token(&page)
}

#[tokio::test]
async fn pending_text_survives_sign_in() {
    let app = TestApp::start().await;
    let client = browser();
    let token = form_token(&client, &app).await;

    let text = "サインイン前に入力した長い文章です。";
    let posted = client
        .post(app.url("/summarize"))
        .form(&[("csrf_token", token.as_str()), ("text", text), ("prompt", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::SEE_OTHER);
    let login = location(&posted);
    assert!(login.contains("/login?return_to="), "{login}");

    let callback = sign_in_until_callback(&client, &app, "/login?return_to=%2Fsummarize%3Fresume%3D1", "pat").await;
    let finished = finish_callback(&client, &callback).await;
    assert_eq!(location(&finished), app.url("/summarize?resume=1"));

    let page = client
        .get(app.url("/summarize?resume=1"))
        .header("accept-language", "ja")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(text), "the typed text was lost: {page}");
    assert!(page.contains("サインイン前に入力したテキストを要約しました。"), "{page}");

    // The kept text is used once.
    let again = client.get(app.url("/summarize?resume=1")).send().await.unwrap().text().await.unwrap();
    assert!(!again.contains(text), "the kept text was used twice");
}

#[tokio::test]
async fn summarize_without_csrf_token_is_rejected() {
    let app = TestApp::start().await;
    let client = browser();
    sign_in(&client, &app, "quinn").await;

    let posted = client
        .post(app.url("/summarize"))
        .form(&[("csrf_token", "forged"), ("text", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn sample_button_fills_the_form() {
    let app = TestApp::start().await;
    let page = browser()
        .get(app.url("/summarize?sample=1&lang=en"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Model Serving exposes foundation models"), "{page}");
}

#[tokio::test]
async fn summary_uses_users_token() {
    let (app, _double) = app_with_serving().await;
    let client = browser();
    sign_in(&client, &app, "rina").await;
    let token = form_token(&client, &app).await;

    let text = "東京の天気は晴れ、午後から雨の予報です。傘を忘れずに持って行きましょう。";
    let response = client
        .post(app.url("/summarize"))
        .header("accept-language", "ja")
        .form(&[("csrf_token", token.as_str()), ("text", text), ("prompt", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(page.contains("要約結果"), "{page}");
    assert!(page.contains("要約: 東京の天気は晴れ、午後から雨の予報です。"), "{page}");
}

#[tokio::test]
async fn missing_endpoint_shows_friendly_error() {
    // The double serves no endpoint, so the app's default endpoint is missing.
    let (app, _double) = TestApp::start_with_serving(&[]).await;
    let client = browser();
    sign_in(&client, &app, "sato").await;
    let token = form_token(&client, &app).await;

    let page = client
        .post(app.url("/summarize"))
        .header("accept-language", "en")
        .form(&[("csrf_token", token.as_str()), ("text", "hello"), ("prompt", "")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("The model endpoint was not found"), "{page}");
    assert!(page.contains("Error id"), "{page}");
}
