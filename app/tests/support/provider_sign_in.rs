//! Signs in at the test OpenID provider without the app, to get a real access token: the
//! authorization-code flow with PKCE (S256) driven like a browser, then the code exchange.
//!
//! The app cannot hand out its users' tokens because its session cookie is encrypted, so tests of
//! the Model Serving client sign in here instead.

#![allow(dead_code)]

use std::time::Duration;

use openidconnect::{CsrfToken, PkceCodeChallenge};
use reqwest::header::LOCATION;
use reqwest::{Response, StatusCode};
use serde::Deserialize;
use serde_json::Value;

/// The scopes the app requests from a Databricks workspace.
pub const SCOPES: &str = "openid email profile offline_access all-apis";
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests in a sign-in: authorize, login form, login post, authorize resume, and some slack.
const MAX_STEPS: usize = 10;

/// The token endpoint's response.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderTokens {
    pub access_token: String,
    pub id_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
}

/// The client registration to sign in with. `redirect_uri` must be registered with the provider,
/// but nothing needs to listen there: the flow stops at the redirect and reads the code from it.
pub struct Client<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub redirect_uri: &'a str,
}

/// Signs in as `login` with a fresh cookie jar and returns the tokens.
pub async fn sign_in_at_provider(client: &Client<'_>, login: &str) -> ProviderTokens {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(HTTP_TIMEOUT)
        .build()
        .unwrap();
    let discovery: Value = browser
        .get(format!("{}/.well-known/openid-configuration", client.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let authorization_endpoint = discovery["authorization_endpoint"]
        .as_str()
        .expect("authorization_endpoint");
    let token_endpoint = discovery["token_endpoint"].as_str().expect("token_endpoint");

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let state = CsrfToken::new_random();
    let nonce = CsrfToken::new_random();
    let authorize = url::Url::parse_with_params(
        authorization_endpoint,
        [
            ("client_id", client.client_id),
            ("response_type", "code"),
            ("redirect_uri", client.redirect_uri),
            ("scope", SCOPES),
            ("state", state.secret()),
            ("nonce", nonce.secret()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
    )
    .unwrap();

    let callback = follow_to_callback(&browser, authorize, client.redirect_uri, login).await;
    let parameter = |name: &str| {
        callback
            .query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
            .unwrap_or_else(|| panic!("no `{name}` in the callback {callback}"))
    };
    assert_eq!(
        &parameter("state"),
        state.secret(),
        "the provider returned another `state`"
    );
    let code = parameter("code");

    let response = browser
        .post(token_endpoint)
        .basic_auth(client.client_id, Some(client.client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", client.redirect_uri),
            ("code_verifier", verifier.secret().as_str()),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "the code exchange failed: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("invalid token response ({e}): {body}"))
}

/// Follows the provider's redirects and submits its login form, and returns the redirect to
/// `redirect_uri` without requesting it.
async fn follow_to_callback(
    browser: &reqwest::Client,
    authorize: url::Url,
    redirect_uri: &str,
    login: &str,
) -> url::Url {
    let mut response = browser.get(authorize).send().await.unwrap();
    for _ in 0..MAX_STEPS {
        if response.status().is_redirection() {
            let next = location(&response);
            if next.as_str().starts_with(redirect_uri) {
                return next;
            }
            response = browser.get(next).send().await.unwrap();
            continue;
        }

        // The only page on the way is the login form, which posts back to its own URL.
        let status = response.status();
        let page = response.url().clone();
        assert_eq!(
            status,
            StatusCode::OK,
            "unexpected status from {page}: {}",
            response.text().await.unwrap()
        );
        response = browser
            .post(page)
            .form(&[("prompt", "login"), ("login", login), ("password", "any-password")])
            .send()
            .await
            .unwrap();
    }
    panic!("the sign-in did not reach `{redirect_uri}` within {MAX_STEPS} requests");
}

fn location(response: &Response) -> url::Url {
    let raw = response
        .headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("no `Location` on {} from {}", response.status(), response.url()))
        .to_str()
        .unwrap();
    response.url().join(raw).unwrap()
}
