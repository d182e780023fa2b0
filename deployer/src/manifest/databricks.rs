//! Validation of `[databricks]`: the workspace host, the OAuth client and the serving endpoint.

use std::collections::BTreeSet;

use toml::Spanned;
use url::{Host, Url};

use super::check::{item_key, Checker};
use super::defaults;
use super::model::{DatabricksConfig, SecretRef};
use super::raw::{RawDatabricks, RawSecret};
use super::validate::{is_account_id, is_region, url_path};

const SECRET_EXAMPLE: &str = "client_secret = { env = \"DATABRICKS_CLIENT_SECRET\" }";

pub(super) fn databricks(cx: &mut Checker, raw: Option<RawDatabricks>) -> Option<DatabricksConfig> {
    let Some(raw) = raw else {
        cx.missing_table("databricks", "`host`, `client_id` and `client_secret`");
        return None;
    };

    let host = cx.required(
        "databricks",
        "host",
        raw.host,
        "host = \"https://adb-1234567890123456.7.azuredatabricks.net\"",
    );
    let host = host.and_then(|host| workspace_host(cx, &host));
    let client_id = cx.required("databricks", "client_id", raw.client_id, "client_id = \"...\"");
    let client_id = client_id.and_then(|client_id| oauth_client_id(cx, &client_id));
    let client_secret = cx.required("databricks", "client_secret", raw.client_secret, SECRET_EXAMPLE);
    let client_secret = client_secret.and_then(|secret| secret_ref(cx, secret));
    let serving_endpoint = match &raw.serving_endpoint {
        Some(name) => serving_endpoint(cx, name),
        None => Some(defaults::SERVING_ENDPOINT.to_owned()),
    };
    let scopes = match &raw.scopes {
        Some(list) => scopes(cx, list),
        None => Some(defaults::SCOPES.map(str::to_owned).to_vec()),
    };
    let redirect_path = match &raw.redirect_path {
        Some(path) => url_path(cx, "databricks.redirect_path", path, defaults::REDIRECT_PATH),
        None => Some(defaults::REDIRECT_PATH.to_owned()),
    };

    Some(DatabricksConfig {
        host: host?,
        client_id: client_id?,
        client_secret: client_secret?,
        serving_endpoint: serving_endpoint?,
        scopes: scopes?,
        redirect_path: redirect_path?,
    })
}

/// Parses a workspace URL of any form (AWS `*.cloud.databricks.com`, Azure
/// `*.azuredatabricks.net`, GCP `*.gcp.databricks.com` or a custom host), keeping only the
/// scheme, host and port. Plain `http` is accepted for loopback hosts only, which tests use.
fn workspace_host(cx: &mut Checker, value: &Spanned<String>) -> Option<Url> {
    let text = value.get_ref();
    let example = "https://adb-1234567890123456.7.azuredatabricks.net";
    let (message, hint) = match host_problem(text) {
        None => return Some(origin_of(text)),
        Some(HostProblem::NoScheme) => (
            format!("workspace URL `{text}` has no scheme"),
            format!("write `https://{}`", text.trim_end_matches('/')),
        ),
        Some(HostProblem::Invalid(error)) => (
            format!("invalid workspace URL `{text}`: {error}"),
            format!("write the URL of the workspace, such as `{example}`"),
        ),
        // The user name or password may be a credential, so the message does not show the URL.
        Some(HostProblem::Credentials) => (
            "workspace URL contains a user name or password".to_owned(),
            "remove the user name and password: the deployer signs in with the OAuth client".to_owned(),
        ),
        Some(HostProblem::PlainHttp(origin)) => (
            format!("workspace URL `{text}` uses plain `http`"),
            format!(
                "write `{}`, because plain `http` is accepted only for `localhost`, `127.0.0.1` and `[::1]`",
                origin.replacen("http://", "https://", 1)
            ),
        ),
        Some(HostProblem::Scheme(scheme)) => (
            format!("workspace URL `{text}` has the scheme `{scheme}`"),
            format!("use `https`, such as `{example}`"),
        ),
        Some(HostProblem::Extra(origin)) => (
            format!("workspace URL `{text}` has a path, query or fragment"),
            format!("write only the scheme and host: `{origin}`"),
        ),
    };
    cx.report("databricks.host", &value.span(), message, hint);
    None
}

enum HostProblem {
    NoScheme,
    Invalid(url::ParseError),
    Credentials,
    /// Holds the URL's origin, such as `http://dbc.example.com`.
    PlainHttp(String),
    Scheme(String),
    /// A path, query or fragment after the host. Holds the URL's origin.
    Extra(String),
}

fn host_problem(text: &str) -> Option<HostProblem> {
    // Without `://`, `Url` would read `localhost:9031` as the scheme `localhost`.
    if !text.contains("://") {
        return Some(HostProblem::NoScheme);
    }
    let url = match Url::parse(text) {
        Ok(url) => url,
        Err(error) => return Some(HostProblem::Invalid(error)),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Some(HostProblem::Credentials);
    }

    let origin = url.origin().ascii_serialization();
    let loopback = match url.host() {
        Some(Host::Domain(domain)) => domain == "localhost",
        Some(Host::Ipv4(address)) => address.is_loopback(),
        Some(Host::Ipv6(address)) => address.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => return Some(HostProblem::PlainHttp(origin)),
        other => return Some(HostProblem::Scheme(other.to_owned())),
    }

    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Some(HostProblem::Extra(origin));
    }
    None
}

/// Returns the scheme, host and port of a URL that `host_problem` accepted.
fn origin_of(text: &str) -> Url {
    let url = Url::parse(text).expect("host_problem accepted the URL");
    Url::parse(&url.origin().ascii_serialization()).expect("an origin is a valid URL")
}

fn oauth_client_id(cx: &mut Checker, value: &Spanned<String>) -> Option<String> {
    let id = value.get_ref();
    if !id.is_empty() && !id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(id.clone());
    }
    cx.report(
        "databricks.client_id",
        &value.span(),
        format!("invalid client id `{id}`: it is empty or contains whitespace"),
        "copy the client id of the app connection from the Databricks account console".into(),
    );
    None
}

/// Turns a secret reference into `SecretRef`. Messages never show a value that may be the
/// secret itself: a literal string is dropped while parsing, and an invalid variable name is
/// not quoted.
fn secret_ref(cx: &mut Checker, value: Spanned<RawSecret>) -> Option<SecretRef> {
    let key = "databricks.client_secret";
    let span = value.span();
    let env_hint = format!("write `{SECRET_EXAMPLE}` and set the variable when the deployer runs");
    match value.into_inner() {
        RawSecret::Env(name) if is_env_name(name.get_ref()) => Some(SecretRef::Env(name.into_inner())),
        RawSecret::Env(name) => {
            cx.report(
                &format!("{key}.env"),
                &name.span(),
                "`env` is not a valid environment variable name".into(),
                "use letters, digits and `_`, not starting with a digit, such as `DATABRICKS_CLIENT_SECRET`".into(),
            );
            None
        }
        RawSecret::Arn { value, span: arn_span } => {
            let arn_span = arn_span.unwrap_or(span);
            if is_secrets_manager_arn(&value) {
                return Some(SecretRef::SecretsManager(value));
            }
            cx.report(
                key,
                &arn_span,
                format!("invalid Secrets Manager ARN `{value}`"),
                "copy the ARN from the Secrets Manager console, such as `arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:name-AbCdEf`".into(),
            );
            None
        }
        RawSecret::Literal => {
            cx.report(
                key,
                &span,
                "a literal secret is not allowed in the manifest".into(),
                format!("{env_hint}, or use `{{ arn = \"arn:aws:secretsmanager:...\" }}`, and rotate the secret if this file was shared"),
            );
            None
        }
        RawSecret::Both => {
            cx.report(
                key,
                &span,
                "`env` and `arn` cannot both be set".into(),
                "keep `env` to read the secret from the environment, or `arn` to use an existing Secrets Manager secret".into(),
            );
            None
        }
        RawSecret::Neither => {
            cx.report(key, &span, "the secret reference has neither `env` nor `arn`".into(), env_hint);
            None
        }
        RawSecret::WrongType { kind } => {
            cx.report(key, &span, format!("expected a secret reference, found {kind}"), env_hint);
            None
        }
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks `arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME`.
fn is_secrets_manager_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    let [prefix, partition, service, region, account, kind, name] = parts.as_slice() else {
        return false;
    };
    *prefix == "arn"
        && partition.starts_with("aws")
        && *service == "secretsmanager"
        && is_region(region)
        && is_account_id(account)
        && *kind == "secret"
        && !name.is_empty()
}

fn serving_endpoint(cx: &mut Checker, value: &Spanned<String>) -> Option<String> {
    let name = value.get_ref();
    let valid = (1..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        return Some(name.clone());
    }
    cx.report(
        "databricks.serving_endpoint",
        &value.span(),
        format!("invalid serving endpoint name `{name}`"),
        format!("write the endpoint's name (1 to 63 letters, digits, `-`, `_` or `.`), such as `{}`", defaults::SERVING_ENDPOINT),
    );
    None
}

fn scopes(cx: &mut Checker, list: &Spanned<Vec<Spanned<String>>>) -> Option<Vec<String>> {
    let key = "databricks.scopes";
    let mut seen = BTreeSet::new();
    let mut valid = true;

    for (index, scope) in list.get_ref().iter().enumerate() {
        let text = scope.get_ref();
        let message = if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            format!("invalid scope `{text}`: scopes are single words")
        } else if !seen.insert(text.as_str()) {
            format!("scope `{text}` is listed twice")
        } else {
            continue;
        };
        cx.report(
            &item_key(key, index),
            &scope.span(),
            message,
            "list each scope once as its own string, such as `[\"openid\", \"all-apis\"]`".into(),
        );
        valid = false;
    }

    if !seen.contains("openid") {
        cx.report(
            key,
            &list.span(),
            "`scopes` does not include `openid`".into(),
            "add `\"openid\"`: the app signs users in with OpenID Connect, which needs it".into(),
        );
        valid = false;
    }
    valid.then(|| list.get_ref().iter().map(|scope| scope.get_ref().clone()).collect())
}
