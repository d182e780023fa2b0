//! The live check after a rollout. It runs in steps that each retry with a bound and reports the
//! step that failed: DNS resolves, TLS is valid for the host, `/health` returns 200, and `/login`
//! redirects to the Databricks authorize endpoint with the expected `redirect_uri` and PKCE parameters.
//!
//! A runner outside the load balancer's allowlist cannot connect at all. That is not an
//! unhealthy app: the check says so and falls back to the target health that the load balancer
//! itself reports.

use std::future::Future;

use aws_sdk_elasticloadbalancingv2::types::TargetHealthStateEnum;
use url::Url;

use crate::error::{Error, Result};
use crate::plan::Cx;

/// The path of the app's sign-in route.
const LOGIN_PATH: &str = "/login";

/// Returns the URL the live check reads: `deploy.health_url`, or `https://{domain}{health_check_path}`.
pub fn health_url(cx: &Cx) -> Result<Url> {
    if let Some(url) = &cx.manifest.deploy.health_url {
        return Ok(url.clone());
    }
    let text = format!("https://{}{}", cx.manifest.https.domain, cx.manifest.service.health_check_path);
    Url::parse(&text).map_err(|e| Error::Input(format!("cannot build the health URL `{text}`: {e}")))
}

/// The result of one try of a step.
type Try = std::result::Result<(), Failure>;

/// The reason one try of a step failed.
#[derive(Debug)]
enum Failure {
    /// The app responded wrongly. Retrying may help while it starts.
    Wrong(String),
    /// No connection from here: a timeout, a refusal or a network that does not route.
    Unreachable(String),
    /// The TLS handshake failed: the certificate does not match or is not trusted.
    Tls(String),
}

impl Failure {
    fn problem(&self) -> &str {
        match self {
            Failure::Wrong(problem) | Failure::Unreachable(problem) | Failure::Tls(problem) => problem,
        }
    }
}

/// Runs every step; the first that fails ends the check with its name and last problem.
pub async fn check(cx: &Cx) -> Result<()> {
    let url = health_url(cx)?;
    let client = http_client(cx)?;

    // A domain that does not resolve yet, often before its DNS record exists, is one this
    // machine cannot reach, not an unhealthy app.
    if let Err(failure) = retry(cx, "dns", || resolve(&url)).await {
        return unreachable_fallback(cx, "dns", &url, failure.problem()).await;
    }
    let health = retry(cx, "health", || health_try(&client, &url)).await;
    match health {
        Ok(()) => cx.progress.say(format!("live check: `{url}` answered 200")),
        Err(Failure::Unreachable(problem)) => return unreachable_fallback(cx, "health", &url, &problem).await,
        Err(Failure::Tls(problem)) => return Err(step_failed(cx, "tls", &url, &problem)),
        Err(Failure::Wrong(problem)) => return Err(step_failed(cx, "health", &url, &problem)),
    }

    let login = url.join(LOGIN_PATH).map_err(|e| Error::Internal(format!("cannot build the login URL: {e}")))?;
    let expected = Expected::from_cx(cx, &url);
    retry(cx, "login", || login_try(&client, &login, &expected))
        .await
        .map_err(|failure| step_failed(cx, "login", &login, failure.problem()))?;
    cx.progress.say(format!("live check: `{login}` redirects to the Databricks sign-in with PKCE"));
    Ok(())
}

fn http_client(cx: &Cx) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(cx.timing.live_request_timeout)
        .timeout(cx.timing.live_request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::Internal(format!("failed to build the HTTP client for the live check: {e}")))
}

fn step_failed(cx: &Cx, step: &str, url: &Url, problem: &str) -> Error {
    step_failed_with(cx, step, url, problem, "")
}

/// Builds the error of a failed step. `detail` follows the problem, such as the target health.
fn step_failed_with(cx: &Cx, step: &str, url: &Url, problem: &str, detail: &str) -> Error {
    let hint = match step {
        "dns" => format!(
            "point `{}` at the load balancer{}, or set `deploy.health_url` to an address this machine can reach",
            url.host_str().unwrap_or_default(),
            cx.outputs().load_balancer_dns.as_deref().map(|dns| format!(" `{dns}`")).unwrap_or_default()
        ),
        "tls" => "check that the certificate covers the domain and is `ISSUED`".to_owned(),
        _ => format!("read the app's log with `deployer logs` (log group `{}`)", cx.names.app_log_group()),
    };
    Error::Failed(format!(
        "the live check failed at step `{step}`: `{url}` {problem} after {} tries{detail}; {hint}",
        cx.timing.live_attempts
    ))
}

/// Tries `step` up to `live_attempts` times, printing each failed try.
async fn retry<F, Fut>(cx: &Cx, step: &str, mut attempt: F) -> Try
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Try>,
{
    let attempts = cx.timing.live_attempts.max(1);
    let mut number = 1;
    loop {
        let failure = match attempt().await {
            Ok(()) => return Ok(()),
            Err(failure) => failure,
        };
        cx.progress.say(format!("live check `{step}` {number}/{attempts}: {}", failure.problem()));
        if number == attempts {
            return Err(failure);
        }
        number += 1;
        tokio::time::sleep(cx.timing.live_interval).await;
    }
}

/// Runs the step `dns`: the host resolves. An address in the URL needs no lookup.
async fn resolve(url: &Url) -> Try {
    let Some(url::Host::Domain(host)) = url.host() else {
        return Ok(());
    };
    let port = url.port_or_known_default().unwrap_or(443);
    match tokio::net::lookup_host((host, port)).await.map(|mut addresses| addresses.next()) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Failure::Unreachable(format!("`{host}` resolved to no address"))),
        Err(error) => Err(Failure::Unreachable(format!("`{host}` does not resolve ({error})"))),
    }
}

async fn health_try(client: &reqwest::Client, url: &Url) -> Try {
    match client.get(url.clone()).send().await {
        Ok(response) if response.status() == reqwest::StatusCode::OK => Ok(()),
        Ok(response) => Err(Failure::Wrong(format!("answered HTTP {}", response.status()))),
        Err(error) => Err(transport_problem(&error)),
    }
}

/// Classifies a request that got no response.
fn transport_problem(error: &reqwest::Error) -> Failure {
    let cause = root_cause(error);
    if cause.contains("certificate") || cause.contains("CertificateExpired") || cause.contains("UnknownIssuer") {
        return Failure::Tls(format!("failed the TLS handshake ({cause})"));
    }
    // A connection that never opens means the network does not let this machine through. One that
    // opens and then gets no response means the app hangs.
    if error.is_connect() {
        return Failure::Unreachable(format!("could not be reached from here ({cause})"));
    }
    if error.is_timeout() {
        return Failure::Wrong("accepted the connection but did not answer in time".to_owned());
    }
    Failure::Wrong(format!("failed: {cause}"))
}

/// Returns the innermost cause, which names what went wrong on the network (refused, reset, certificate).
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// When the live URL cannot be reached from here, the load balancer's own view decides.
async fn unreachable_fallback(cx: &Cx, step: &str, url: &Url, problem: &str) -> Result<()> {
    cx.progress.say(format!(
        "live check: `{url}` {problem}, so reading the load balancer's target health instead; this machine may be outside `network.allowed_cidrs` or the domain may not point at the load balancer yet"
    ));
    let Some(target_group) = cx.outputs().target_group_arn.clone() else {
        return Err(step_failed(cx, step, url, problem));
    };
    let targets = super::watch::target_health(cx, &target_group).await?;
    let states: Vec<_> = targets
        .iter()
        .map(|description| description.target_health().and_then(|health| health.state()).cloned())
        .collect();
    let healthy = states.iter().filter(|state| *state == &Some(TargetHealthStateEnum::Healthy)).count();
    if healthy > 0 && healthy == states.len() {
        cx.progress.say(format!(
            "live check: unreachable from here, but the load balancer reports {healthy} healthy target(s); set `deploy.health_url` to an address this machine can reach for a full check"
        ));
        return Ok(());
    }
    let detail = format!(
        ", and the load balancer reports {healthy} of {} target(s) healthy (for a direct check, set `deploy.health_url` to an address this machine can reach)",
        states.len()
    );
    Err(step_failed_with(cx, step, url, problem, &detail))
}

/// The parameters the login redirect must carry.
#[derive(Debug, Clone)]
pub struct Expected {
    /// `scheme://host[:port]` of the Databricks workspace.
    pub authorize_origin: String,
    pub client_id: String,
    pub redirect_path: String,
    /// The public host the callback must go to; `None` when `deploy.health_url` points elsewhere,
    /// where the app may be configured with a local address.
    pub redirect_host: Option<String>,
}

impl Expected {
    fn from_cx(cx: &Cx, checked: &Url) -> Self {
        let domain = &cx.manifest.https.domain;
        Expected {
            authorize_origin: cx.manifest.databricks.host.origin().ascii_serialization(),
            client_id: cx.manifest.databricks.client_id.clone(),
            redirect_path: cx.manifest.databricks.redirect_path.clone(),
            redirect_host: (checked.host_str() == Some(domain.as_str())).then(|| domain.clone()),
        }
    }
}

async fn login_try(client: &reqwest::Client, login: &Url, expected: &Expected) -> Try {
    let response = client.get(login.clone()).send().await.map_err(|error| transport_problem(&error))?;
    if !response.status().is_redirection() {
        return Err(Failure::Wrong(format!("answered HTTP {} instead of a redirect", response.status())));
    }
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| login.join(value).ok());
    let location = location.ok_or_else(|| Failure::Wrong("redirected without a valid `Location`".to_owned()))?;
    check_login_redirect(&location, expected).map_err(Failure::Wrong)
}

/// Checks the authorize URL the app redirects to: the workspace's OIDC endpoint with an
/// authorization-code request, our client, our callback, a nonce, a state and an S256 PKCE
/// challenge. The message names the first thing that is wrong.
pub fn check_login_redirect(location: &Url, expected: &Expected) -> std::result::Result<(), String> {
    let shown = format!("{}{}", location.origin().ascii_serialization(), location.path());
    if location.origin().ascii_serialization() != expected.authorize_origin || !location.path().starts_with("/oidc/") {
        return Err(format!(
            "redirected to `{shown}`, not to the workspace's sign-in under `{}/oidc/`",
            expected.authorize_origin
        ));
    }
    let param = |name: &str| location.query_pairs().find(|(key, _)| key == name).map(|(_, value)| value.into_owned());
    let require = |name: &str, wanted: &str| match param(name) {
        Some(value) if value == wanted => Ok(()),
        Some(value) => Err(format!("redirected with `{name}={value}`, expected `{wanted}`")),
        None => Err(format!("redirected to `{shown}` without `{name}`")),
    };
    require("response_type", "code")?;
    require("client_id", &expected.client_id)?;
    require("code_challenge_method", "S256")?;
    for name in ["state", "nonce"] {
        if param(name).is_none_or(|value| value.len() < 16) {
            return Err(format!("redirected without a random `{name}` of at least 16 characters"));
        }
    }
    // RFC 7636: the S256 challenge is 43 characters of base64url.
    if param("code_challenge").is_none_or(|value| value.len() != 43) {
        return Err("redirected without a PKCE `code_challenge` of 43 characters".to_owned());
    }
    if !param("scope").is_some_and(|scope| scope.split(' ').any(|s| s == "openid")) {
        return Err("redirected without the `openid` scope".to_owned());
    }
    let redirect_uri = param("redirect_uri").ok_or("redirected without `redirect_uri`")?;
    let callback = Url::parse(&redirect_uri).map_err(|_| format!("redirected with an invalid `redirect_uri` `{redirect_uri}`"))?;
    let host_matches = match &expected.redirect_host {
        Some(host) => callback.scheme() == "https" && callback.host_str() == Some(host.as_str()),
        None => true,
    };
    if callback.path() != expected.redirect_path || !host_matches {
        let wanted = match &expected.redirect_host {
            Some(host) => format!("https://{host}{}", expected.redirect_path),
            None => format!("a URL with the path `{}`", expected.redirect_path),
        };
        return Err(format!("redirected with `redirect_uri={redirect_uri}`, expected {wanted}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected() -> Expected {
        Expected {
            authorize_origin: "https://adb-1.2.azuredatabricks.net".into(),
            client_id: "client".into(),
            redirect_path: "/oauth/callback".into(),
            redirect_host: Some("app.example.com".into()),
        }
    }

    fn location(query: &str) -> Url {
        Url::parse(&format!("https://adb-1.2.azuredatabricks.net/oidc/v1/authorize?{query}")).unwrap()
    }

    const GOOD: &str = "response_type=code&client_id=client&redirect_uri=https%3A%2F%2Fapp.example.com%2Foauth%2Fcallback\
        &scope=openid+all-apis+offline_access&state=0123456789abcdef0123&nonce=0123456789abcdef0123\
        &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256";

    #[test]
    fn accepts_the_apps_redirect() {
        assert_eq!(check_login_redirect(&location(GOOD), &expected()), Ok(()));
    }

    #[test]
    fn names_what_is_wrong() {
        let cases = [
            (GOOD.replace("code_challenge_method=S256", "code_challenge_method=plain"), "code_challenge_method=plain"),
            (GOOD.replace("&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", ""), "code_challenge"),
            (GOOD.replace("client_id=client", "client_id=other"), "client_id=other"),
            (GOOD.replace("app.example.com", "evil.example.com"), "redirect_uri=https://evil.example.com"),
            (GOOD.replace("%2Foauth%2Fcallback", "%2Fcallback"), "expected https://app.example.com/oauth/callback"),
            (GOOD.replace("&nonce=0123456789abcdef0123", ""), "nonce"),
            (GOOD.replace("openid+", ""), "openid"),
        ];
        for (query, needle) in cases {
            let problem = check_login_redirect(&location(&query), &expected()).unwrap_err();
            assert!(problem.contains(needle), "`{problem}` does not name `{needle}`");
        }
        let elsewhere = Url::parse(&format!("https://login.example.com/oidc/v1/authorize?{GOOD}")).unwrap();
        assert!(check_login_redirect(&elsewhere, &expected()).unwrap_err().contains("login.example.com"));
    }

    #[test]
    fn local_health_url_checks_the_callback_path_only() {
        let local = Expected {
            redirect_host: None,
            ..expected()
        };
        let query = GOOD.replace("https%3A%2F%2Fapp.example.com", "http%3A%2F%2F127.0.0.1%3A8080");
        assert_eq!(check_login_redirect(&location(&query), &local), Ok(()));
    }
}
