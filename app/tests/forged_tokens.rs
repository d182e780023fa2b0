//! The login rejects every forged or mismatched id_token. The provider's test-only
//! `/admin/tamper` switch replaces the id_token of the next token response with a forgery built
//! from the genuine one, so each case differs from a valid login in exactly one way.

mod support;

use reqwest::StatusCode;
use support::{browser, finish_callback, sign_in, sign_in_until_callback, TestApp};

/// Signs in once with the switch armed for `mode` and returns the callback's status and the
/// home page that follows.
async fn sign_in_with_forgery(app: &TestApp, mode: &str) -> (StatusCode, String) {
    app.oidc.admin(&format!("/admin/tamper?mode={mode}")).await;
    let client = browser();
    let callback = sign_in_until_callback(&client, app, "/login", "mallory").await;
    let status = finish_callback(&client, &callback).await.status();
    let home = client.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    (status, home)
}

#[tokio::test]
async fn forged_id_tokens_are_rejected() {
    let app = TestApp::start().await;
    let modes = [
        "bad-signature",
        "alg-none",
        "hs256-public-key",
        "wrong-issuer",
        "wrong-audience",
        "expired",
        "missing-nonce",
        "wrong-nonce",
        "unknown-kid",
        "future-iat",
    ];
    for mode in modes {
        let (status, home) = sign_in_with_forgery(&app, mode).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "a `{mode}` id_token was accepted");
        assert!(!home.contains("Signed in as"), "a `{mode}` id_token signed the user in");
    }

    // The switch fires once, so the next login is genuine and succeeds.
    let page = sign_in(&browser(), &app, "after").await;
    assert!(page.contains("Signed in as"), "{page}");
}

#[tokio::test]
async fn rotated_signing_key_is_accepted() {
    let app = TestApp::start().await;
    sign_in(&browser(), &app, "before").await;

    let rotated = app.oidc.admin("/admin/rotate-keys?drop_old=1").await;
    assert!(rotated["signing_kid"].is_string(), "{rotated}");

    let page = sign_in(&browser(), &app, "after-rotation").await;
    assert!(page.contains("Signed in as"), "a token signed with the new key was rejected: {page}");
}

#[tokio::test]
async fn reused_authorization_code_is_rejected() {
    let app = TestApp::start().await;
    let client = browser();
    let first = sign_in_until_callback(&client, &app, "/login", "olivia").await;
    assert_eq!(finish_callback(&client, &first).await.status(), StatusCode::SEE_OTHER);
    let used_code = url::Url::parse(&first)
        .unwrap()
        .query_pairs()
        .find(|(key, _)| key == "code")
        .map(|(_, value)| value.into_owned())
        .unwrap();

    // A new login in the same browser gives a valid state; the used code goes with it.
    let second = sign_in_until_callback(&client, &app, "/login", "olivia").await;
    let mut replay = url::Url::parse(&second).unwrap();
    let pairs: Vec<(String, String)> = replay
        .query_pairs()
        .map(|(key, value)| {
            let value = if key == "code" { used_code.clone() } else { value.into_owned() };
            (key.into_owned(), value)
        })
        .collect();
    replay.query_pairs_mut().clear().extend_pairs(pairs);

    let response = finish_callback(&client, replay.as_str()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
