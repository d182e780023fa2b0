//! The sign-in harness: the real OpenID provider from `tests/oidc` (the npm package
//! `oidc-provider`, configured like a Databricks workspace) and the app on a real socket, driven
//! by a cookie-keeping HTTP client that follows redirects by hand.

#![allow(dead_code)]

#[path = "serving_double.rs"]
pub mod serving_double;

#[path = "../../../tests/harness/ready_line.rs"]
mod ready_line;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ready_line::read_ready_line;

use app::{AppState, Config};
use reqwest::header::LOCATION;
use reqwest::{Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const CLIENT_ID: &str = "local-app";
/// How long the OpenID provider may take to print its ready line; it takes about a second.
const READY_LIMIT: Duration = Duration::from_secs(30);
/// The limit of each request a test makes to a server of its own.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
pub const CLIENT_SECRET: &str = "local-secret-for-tests";
/// Base64 of 64 bytes, the size the deployer generates.
pub const SESSION_KEY: &str =
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Returns the last lines of the log at `path`.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The OpenID provider process; killed on drop.
pub struct OidcServer {
    pub issuer: String,
    child: Child,
    /// The provider's stderr, removed on drop unless the test failed.
    log: PathBuf,
}

impl OidcServer {
    pub fn start(redirect_uri: &str, post_logout_uri: &str) -> Self {
        Self::start_with_ttl(redirect_uri, post_logout_uri, 60)
    }

    /// Starts the provider with access tokens that live `access_token_ttl` seconds.
    ///
    /// A provider that prints no ready line within [`READY_LIMIT`] is killed and started once
    /// more. When that start fails too, this panics with the end of the provider's log.
    pub fn start_with_ttl(redirect_uri: &str, post_logout_uri: &str, access_token_ttl: u32) -> Self {
        assert!(
            repo_root().join("tests/oidc/node_modules").exists(),
            "tests/oidc/node_modules is missing; run `scripts/setup.sh` (it runs `npm ci` there)"
        );
        let start = || Self::try_start(redirect_uri, post_logout_uri, access_token_ttl);
        start().unwrap_or_else(|first| {
            eprintln!("the OpenID provider did not start ({first}); starting it once more");
            start().unwrap_or_else(|second| panic!("the OpenID provider did not start twice: {second}"))
        })
    }

    fn try_start(redirect_uri: &str, post_logout_uri: &str, access_token_ttl: u32) -> Result<Self, String> {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let number = STARTED.fetch_add(1, Ordering::SeqCst);
        let log = std::env::temp_dir().join(format!("app-tests-oidc-{}-{number}.log", std::process::id()));
        let log_file = File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let mut child = Command::new("node")
            .arg(repo_root().join("tests/oidc/server.mjs"))
            .args(["--port", "0"])
            .env("OIDC_CLIENT_ID", CLIENT_ID)
            .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
            .env("OIDC_REDIRECT_URIS", redirect_uri)
            .env("OIDC_POST_LOGOUT_REDIRECT_URIS", post_logout_uri)
            .env("OIDC_ACCESS_TOKEN_TTL", access_token_ttl.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start node tests/oidc/server.mjs: {e}"))?;
        let issuer = read_ready_line(&mut child, READY_LIMIT).and_then(|line| {
            let ready: serde_json::Value =
                serde_json::from_str(&line).map_err(|e| format!("invalid ready line {line:?}: {e}"))?;
            ready["issuer"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("no `issuer` in the ready line {line:?}"))
        });
        match issuer {
            Ok(issuer) => Ok(OidcServer { issuer, child, log }),
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("{error}; the provider's log {} ends with:\n{}", log.display(), log_tail(&log)))
            }
        }    }

    /// Returns the workspace URL whose `/oidc` is this issuer.
    pub fn host(&self) -> String {
        self.issuer.trim_end_matches("/oidc").to_owned()
    }
}

impl OidcServer {
    /// Stops the provider, as an outage of the workspace's sign-in would.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OidcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("the OpenID provider's log is kept in {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// The app on a real socket, with sign-in against `OidcServer`; stopped on drop.
pub struct TestApp {
    pub base: String,
    pub oidc: OidcServer,
    stop: Option<oneshot::Sender<()>>,
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with_ttl(60).await
    }

    /// Starts the app against a provider whose access tokens live `access_token_ttl` seconds.
    pub async fn start_with_ttl(access_token_ttl: u32) -> Self {
        let (listener, base, oidc) = Self::prepare(access_token_ttl).await;
        Self::launch(listener, base, oidc, Vec::new())
    }

    /// Starts the app with a Model Serving double that trusts the provider's keys and serves
    /// `endpoints`; the app's `SERVING_URL` points at the double.
    pub async fn start_with_serving(endpoints: &[&str]) -> (Self, serving_double::ServingDouble) {
        let (listener, base, oidc) = Self::prepare(60).await;
        let jwks_uri = serving_double::discover_jwks_uri(&oidc.issuer).await;
        let double = serving_double::ServingDouble::start(&oidc.issuer, &jwks_uri).await;
        for endpoint in endpoints {
            double.add_endpoint(endpoint);
        }
        let app = Self::launch(listener, base, oidc, vec![("SERVING_URL", double.host().to_owned())]);
        (app, double)
    }

    /// Binds the app's socket and starts the provider that redirects to it, so that more
    /// servers can be started against the provider before the app itself.
    pub async fn prepare(access_token_ttl: u32) -> (TcpListener, String, OidcServer) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let oidc = OidcServer::start_with_ttl(&format!("{base}/oauth/callback"), &format!("{base}/"), access_token_ttl);
        (listener, base, oidc)
    }

    /// Starts the app on `listener` with sign-in against `oidc` and the extra settings `extra`.
    pub fn launch(listener: TcpListener, base: String, oidc: OidcServer, extra: Vec<(&str, String)>) -> Self {
        let vars = Arc::new(std::collections::HashMap::from([
            ("DATABRICKS_HOST".to_owned(), oidc.host()),
            ("DATABRICKS_CLIENT_ID".to_owned(), CLIENT_ID.to_owned()),
            ("DATABRICKS_CLIENT_SECRET".to_owned(), CLIENT_SECRET.to_owned()),
            ("SESSION_KEY".to_owned(), SESSION_KEY.to_owned()),
            ("PUBLIC_URL".to_owned(), base.clone()),
            ("LOG_FORMAT".to_owned(), "text".to_owned()),
        ]));
        let vars = {
            let mut vars = Arc::try_unwrap(vars).unwrap();
            vars.extend(extra.into_iter().map(|(name, value)| (name.to_owned(), value)));
            Arc::new(vars)
        };
        let config = Config::from_lookup(|name| vars.get(name).cloned().ok_or(std::env::VarError::NotPresent))
            .expect("valid test configuration");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app::startup::run_until(listener, AppState::new(config), async move {
            let _ = stopped.await;
        }));
        TestApp {
            base,
            oidc,
            stop: Some(stop),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Builds a browser stand-in that keeps cookies and never follows redirects on its own.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(HTTP_TIMEOUT)
        .build()
        .unwrap()
}

pub fn location(response: &Response) -> String {
    let base = response.url().clone();
    let raw = response
        .headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("no Location on {} from {}", response.status(), response.url()))
        .to_str()
        .unwrap();
    base.join(raw).unwrap().to_string()
}

/// Signs in as `login` starting from `start` (an app URL such as `/login`), following the
/// provider's redirects and submitting its login form. Stops at the app's callback and returns
/// its URL without requesting it.
pub async fn sign_in_until_callback(client: &reqwest::Client, app: &TestApp, start: &str, login: &str) -> String {
    let mut url = app.url(start);
    for _ in 0..20 {
        if url.starts_with(&app.url("/oauth/callback")) {
            return url;
        }
        let response = client.get(&url).send().await.unwrap();
        if response.status().is_redirection() {
            url = location(&response);
            continue;
        }
        assert_eq!(response.status(), StatusCode::OK, "unexpected answer from {url}");
        let page_url = response.url().clone();
        let html = response.text().await.unwrap();
        let (action, fields) = login_form(&html, login);
        let target = page_url.join(&action).unwrap();
        let posted = client.post(target.clone()).form(&fields).send().await.unwrap();
        assert!(posted.status().is_redirection(), "the login form at {target} answered {}", posted.status());
        url = location(&posted);
    }
    panic!("the sign-in did not reach the app's callback within 20 steps");
}

/// Reads the provider's login form: its action and hidden fields, plus the login name.
fn login_form(html: &str, login: &str) -> (String, Vec<(String, String)>) {
    let form_start = html.find("<form").unwrap_or_else(|| panic!("no form in the page:\n{html}"));
    let form = &html[form_start..];
    let action = attribute(form, "action").expect("form action");
    let mut fields = Vec::new();
    for input in form.split("<input").skip(1) {
        let tag = &input[..input.find('>').unwrap_or(input.len())];
        let name = attribute(tag, "name");
        let kind = attribute(tag, "type").unwrap_or_default();
        match (name.as_deref(), kind.as_str()) {
            (Some("login"), _) => fields.push(("login".to_owned(), login.to_owned())),
            (Some("password"), _) => fields.push(("password".to_owned(), "any-password".to_owned())),
            (Some(name), "hidden") => fields.push((name.to_owned(), attribute(tag, "value").unwrap_or_default())),
            _ => {}
        }
    }
    (action, fields)
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!("{name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(tag[start..end].replace("&amp;", "&"))
}

/// Requests the callback URL on the app and returns the response.
pub async fn finish_callback(client: &reqwest::Client, callback: &str) -> Response {
    client.get(callback).send().await.unwrap()
}

/// Signs in as `login` and returns the home page's HTML.
pub async fn sign_in(client: &reqwest::Client, app: &TestApp, login: &str) -> String {
    let callback = sign_in_until_callback(client, app, "/login", login).await;
    let finished = finish_callback(client, &callback).await;
    assert_eq!(finished.status(), StatusCode::SEE_OTHER, "callback answered {}", finished.status());
    client.get(app.url("/")).send().await.unwrap().text().await.unwrap()
}

/// Returns the CSRF token of the sign-out form on a signed-in page.
pub fn csrf_token(html: &str) -> String {
    let at = html.find("name=\"csrf_token\"").expect("a sign-out form");
    attribute(&html[at..], "value").expect("a CSRF token")
}

impl OidcServer {
    /// Posts to one of the provider's test-only admin endpoints, such as `/admin/rotate-keys`.
    pub async fn admin(&self, path_and_query: &str) -> serde_json::Value {
        let url = format!("{}{path_and_query}", self.host());
        let response = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .unwrap()
            .post(&url)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "POST {url}");
        response.json().await.unwrap()
    }
}
