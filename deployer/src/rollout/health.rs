//! The live check after a rollout: `GET /health` until it answers 200, with a bound.

use std::time::Duration;

use url::Url;

use crate::error::{Error, Result};
use crate::plan::Cx;

const ATTEMPTS: u32 = 10;
const INTERVAL: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The URL the live check reads: `deploy.health_url`, or `https://{domain}{health_check_path}`.
pub fn health_url(cx: &Cx) -> Result<Url> {
    if let Some(url) = &cx.manifest.deploy.health_url {
        return Ok(url.clone());
    }
    let text = format!("https://{}{}", cx.manifest.https.domain, cx.manifest.service.health_check_path);
    Url::parse(&text).map_err(|e| Error::Input(format!("cannot build the health URL `{text}`: {e}")))
}

/// Reads the health URL until it answers 200. Says whether the app was unhealthy or could not be
/// reached from here, which are different problems.
pub async fn check(cx: &Cx) -> Result<()> {
    let url = health_url(cx)?;
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::Failed(format!("failed to build the HTTP client for the health check: {e}")))?;

    let mut last_problem = String::new();
    for attempt in 1..=ATTEMPTS {
        match client.get(url.clone()).send().await {
            Ok(response) if response.status() == reqwest::StatusCode::OK => {
                cx.progress.say(format!("`{url}` answered 200: the app is healthy"));
                return Ok(());
            }
            Ok(response) => last_problem = format!("answered HTTP {}", response.status()),
            Err(error) if error.is_timeout() => {
                last_problem = format!("did not answer within {} s", REQUEST_TIMEOUT.as_secs());
            }
            Err(error) if error.is_connect() => {
                last_problem = format!("could not be reached from here ({})", root_cause(&error));
            }
            Err(error) => last_problem = format!("failed: {}", root_cause(&error)),
        }
        cx.progress.say(format!("health check {attempt}/{ATTEMPTS}: `{url}` {last_problem}"));
        if attempt < ATTEMPTS {
            tokio::time::sleep(INTERVAL).await;
        }
    }
    Err(Error::Failed(format!(
        "the health check `{url}` {last_problem} after {ATTEMPTS} attempts; check the app's log in `{}`, or set `deploy.health_url` to an address this machine can reach",
        cx.names.app_log_group()
    )))
}

/// The innermost cause, which says what went wrong on the network (refused, reset, DNS).
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
