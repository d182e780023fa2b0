//! The chat endpoint streams the model's answer to the browser as the endpoint sends it.

mod support;

use std::time::Instant;

use futures::StreamExt as _;
use reqwest::StatusCode;
use serde_json::json;
use support::{browser, csrf_token, sign_in, TestApp};

const ENDPOINT: &str = "databricks-claude-sonnet-4";

async fn app_with_serving() -> (TestApp, support::serving_double::ServingDouble) {
    TestApp::start_with_serving(&[ENDPOINT]).await
}

#[tokio::test]
async fn chat_answer_streams_as_it_arrives() {
    let (app, double) = app_with_serving().await;
    let client = browser();
    let page = sign_in(&client, &app, "taro").await;
    let token = csrf_token(&page);

    let question = "東京の天気は晴れ、午後から雨の予報です。傘を忘れずに持って行きましょう。";
    let response = client
        .post(app.url("/api/chat"))
        .header("x-csrf-token", &token)
        .json(&json!({ "messages": [{ "role": "user", "content": question }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");

    let mut pieces = Vec::new();
    let mut received_at = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        received_at.push(Instant::now());
        pieces.push(chunk.unwrap());
    }
    let answer: Vec<u8> = pieces.concat();
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("要約: "), "{answer}");
    assert!(pieces.len() >= 3, "the answer came in {} piece(s)", pieces.len());

    let sent = double.stream_frames_sent_at(ENDPOINT);
    let last_sent = *sent.last().expect("the double streamed");
    assert!(received_at[0] < last_sent, "the first piece reached the browser only after the model finished");

    let request = double.last_body(ENDPOINT).unwrap();
    assert_eq!(request["stream"], true);
    assert_eq!(request["messages"][0]["role"], "user");
}

#[tokio::test]
async fn chat_without_csrf_header_is_rejected() {
    let (app, double) = app_with_serving().await;
    let client = browser();
    sign_in(&client, &app, "hanako").await;

    let response = client
        .post(app.url("/api/chat"))
        .json(&json!({ "messages": [{ "role": "user", "content": "hi" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(double.requests(ENDPOINT), 0, "the model was called without a CSRF token");
}

#[tokio::test]
async fn chat_without_session_is_unauthorized() {
    let (app, _double) = app_with_serving().await;
    let response = browser()
        .post(app.url("/api/chat"))
        .json(&json!({ "messages": [{ "role": "user", "content": "hi" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
