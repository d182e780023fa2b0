//! Sign-in against a real OpenID provider (`oidc-provider`, configured like a Databricks
//! workspace): the happy path, logout, and the rejections a forged or replayed callback gets.

mod support;

use reqwest::StatusCode;
use support::{browser, csrf_token, finish_callback, location, sign_in, sign_in_until_callback, TestApp};

#[tokio::test]
async fn login_shows_user_and_sets_secure_session() {
    let app = TestApp::start().await;
    let client = browser();

    let start = client.get(app.url("/login")).send().await.unwrap();
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let authorize = location(&start);
    assert!(authorize.starts_with(&app.oidc.issuer), "{authorize}");
    assert!(authorize.contains("code_challenge_method=S256"), "{authorize}");
    assert!(authorize.contains("nonce="), "{authorize}");
    assert!(authorize.contains("state="), "{authorize}");
    let login_cookie = start.headers().get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(login_cookie.contains("HttpOnly"), "{login_cookie}");
    assert!(login_cookie.contains("SameSite=Lax"), "{login_cookie}");

    let page = sign_in(&client, &app, "alice").await;
    assert!(page.contains("Signed in as"), "{page}");
    assert!(page.contains("alice"), "{page}");
    assert!(page.contains("name=\"csrf_token\""), "{page}");
}

#[tokio::test]
async fn logout_clears_session_and_ends_provider_session() {
    let app = TestApp::start().await;
    let client = browser();
    let page = sign_in(&client, &app, "bob").await;

    let token = csrf_token(&page);
    let logout = client
        .post(app.url("/logout"))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    let target = location(&logout);
    assert!(target.starts_with(&app.oidc.issuer), "logout did not go to the end-session endpoint: {target}");
    assert!(target.contains("post_logout_redirect_uri="), "{target}");

    let home = client.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(home.contains("Sign in with Databricks"), "{home}");
}

#[tokio::test]
async fn logout_without_csrf_token_is_rejected() {
    let app = TestApp::start().await;
    let client = browser();
    sign_in(&client, &app, "carol").await;

    let logout = client
        .post(app.url("/logout"))
        .form(&[("csrf_token", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::FORBIDDEN);
    let home = client.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(home.contains("Signed in as"), "a forged logout signed the user out");
}

#[tokio::test]
async fn replayed_callback_is_rejected() {
    let app = TestApp::start().await;
    let client = browser();
    let callback = sign_in_until_callback(&client, &app, "/login", "dave").await;

    let first = finish_callback(&client, &callback).await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let replay = finish_callback(&client, &callback).await;
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn callback_from_another_browser_is_rejected() {
    let app = TestApp::start().await;
    let callback = sign_in_until_callback(&browser(), &app, "/login", "erin").await;

    let attacker = browser();
    let response = finish_callback(&attacker, &callback).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let home = attacker.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(!home.contains("Signed in as"), "the stolen callback signed the attacker in");
}

#[tokio::test]
async fn tampered_state_is_rejected() {
    let app = TestApp::start().await;
    let client = browser();
    let callback = sign_in_until_callback(&client, &app, "/login", "frank").await;
    let mut url = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(key, value)| {
            let value = if key == "state" { format!("{value}x") } else { value.into_owned() };
            (key.into_owned(), value)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);

    let response = finish_callback(&client, url.as_str()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn missing_state_is_rejected() {
    let app = TestApp::start().await;
    let client = browser();
    let callback = sign_in_until_callback(&client, &app, "/login", "grace").await;
    let mut url = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| key != "state")
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);

    let response = finish_callback(&client, url.as_str()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn return_to_stays_inside_app() {
    let app = TestApp::start().await;

    for (requested, expected) in [("/?tab=chat", "/?tab=chat"), ("https://evil.example/", "/"), ("//evil.example", "/")] {
        let client = browser();
        let start = format!("/login?return_to={}", url::form_urlencoded::byte_serialize(requested.as_bytes()).collect::<String>());
        let callback = sign_in_until_callback(&client, &app, &start, "heidi").await;
        let finished = finish_callback(&client, &callback).await;
        assert_eq!(finished.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&finished), app.url(expected), "return_to {requested}");
    }
}

#[tokio::test]
async fn session_survives_app_restart() {
    let first = TestApp::start().await;
    let client = browser();
    sign_in(&client, &first, "ivan").await;

    // Another app process with the same key reads the cookie the first one set, as a restarted
    // task or a second task behind the load balancer does. Cookies ignore ports, so the same
    // browser sends it to the second app on 127.0.0.1 as well.
    let second = TestApp::start().await;
    let page = client.get(second.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Signed in as"), "{page}");
    assert!(page.contains("ivan"), "{page}");
}

#[tokio::test]
async fn error_page_shows_request_id() {
    let app = TestApp::start().await;
    let response = browser()
        .get(app.url("/oauth/callback?code=x&state=y"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let page = response.text().await.unwrap();
    assert!(page.contains(&request_id), "the page does not show request id {request_id}: {page}");
}

#[tokio::test]
async fn forged_request_id_is_not_echoed() {
    let app = TestApp::start().await;
    let response = browser()
        .get(app.url("/oauth/callback?code=x&state=y"))
        .header("x-request-id", "<img src=x onerror=alert(1)>")
        .send()
        .await
        .unwrap();
    let page = response.text().await.unwrap();
    assert!(!page.contains("<img"), "{page}");
}

#[tokio::test]
async fn unknown_path_gets_friendly_page() {
    let app = TestApp::start().await;
    let response = browser().get(app.url("/no-such-page")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let page = response.text().await.unwrap();
    assert!(page.contains("This page does not exist."), "{page}");
    assert!(page.contains("このページは存在しません。"), "{page}");
}
