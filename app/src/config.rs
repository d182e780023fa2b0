//! Settings read from the environment once at start and validated there.
//!
//! Every invalid variable is reported in one [`ConfigError`], so an operator
//! fixes a task definition in one round instead of one variable per restart.
//! An empty variable counts as unset, because ECS and `docker run -e NAME=`
//! both pass empty values where the operator meant "not set".

use std::env::VarError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use crate::secret::Secret;

pub const APP_BIND_ADDR: &str = "APP_BIND_ADDR";
pub const PORT: &str = "PORT";
pub const LOG_FORMAT: &str = "LOG_FORMAT";
pub const APP_VERSION: &str = "APP_VERSION";
pub const DATABRICKS_HOST: &str = "DATABRICKS_HOST";
pub const DATABRICKS_CLIENT_ID: &str = "DATABRICKS_CLIENT_ID";
pub const DATABRICKS_CLIENT_SECRET: &str = "DATABRICKS_CLIENT_SECRET";
pub const SESSION_KEY: &str = "SESSION_KEY";
pub const SERVING_ENDPOINT: &str = "SERVING_ENDPOINT";
pub const PUBLIC_URL: &str = "PUBLIC_URL";
pub const OAUTH_REDIRECT_PATH: &str = "OAUTH_REDIRECT_PATH";
pub const OAUTH_SCOPES: &str = "OAUTH_SCOPES";
pub const COOKIE_SECURE: &str = "COOKIE_SECURE";
pub const SERVING_URL: &str = "SERVING_URL";
pub const SERVING_TIMEOUT_SECONDS: &str = "SERVING_TIMEOUT_SECONDS";
pub const SUMMARIZE_PROMPT: &str = "SUMMARIZE_PROMPT";

pub const DEFAULT_SERVING_ENDPOINT: &str = "databricks-claude-sonnet-4";
pub const DEFAULT_SERVING_TIMEOUT_SECONDS: u64 = 60;

pub const DEFAULT_REDIRECT_PATH: &str = "/oauth/callback";
pub const DEFAULT_SCOPES: &str = "openid email profile all-apis offline_access";

pub const DEFAULT_BIND_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
pub const DEFAULT_PORT: u16 = 8080;

/// The app's settings.
///
/// Sign-in is on when the Databricks settings, the session key and `PUBLIC_URL`
/// are all set ([`Config::oidc`]); with none of them set the app serves
/// `/health` and its pages without sign-in. Setting only some is an error.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the HTTP server binds to (`APP_BIND_ADDR`, default `0.0.0.0`).
    pub bind_addr: IpAddr,
    /// TCP port of the HTTP server (`PORT`, default 8080).
    pub port: u16,
    /// Log line format (`LOG_FORMAT`, default `json`).
    pub log_format: LogFormat,
    /// Version string that `/health` reports (`APP_VERSION`).
    pub app_version: Option<String>,
    /// Databricks workspace URL with its scheme and no trailing slash.
    pub databricks_host: Option<String>,
    pub databricks_client_id: Option<String>,
    pub databricks_client_secret: Option<Secret>,
    /// Key that encrypts session cookies: base64 of at least 64 random bytes.
    pub session_key: Option<Secret>,
    /// Name of the Model Serving endpoint.
    pub serving_endpoint: Option<String>,
    /// Sign-in settings, when sign-in is configured.
    pub oidc: Option<OidcConfig>,
    /// Base URL for Model Serving calls (`SERVING_URL`); the workspace URL when unset.
    pub serving_url: Option<String>,
    /// Bound on one Model Serving call, retries included (`SERVING_TIMEOUT_SECONDS`, default 60).
    pub serving_timeout: std::time::Duration,
    /// The summarize form's default instruction (`SUMMARIZE_PROMPT`); the page's language
    /// picks a default when unset.
    pub summarize_prompt: Option<String>,
}

/// What the OpenID Connect login needs, all validated.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The workspace URL; the issuer is `{host}/oidc`.
    pub host: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// The decoded session key bytes.
    pub session_key: Secret,
    /// Where users reach the app, such as `https://chat.example.co.jp`, without a trailing slash.
    pub public_url: String,
    /// Path of the OAuth redirect, such as `/oauth/callback`.
    pub redirect_path: String,
    pub scopes: Vec<String>,
    /// Whether cookies carry `Secure`. Off only for a plain-HTTP loopback `PUBLIC_URL`.
    pub cookie_secure: bool,
}

impl OidcConfig {
    /// The issuer URL of a Databricks workspace.
    pub fn issuer(&self) -> String {
        format!("{}/oidc", self.host)
    }

    /// The redirect URI registered with the OAuth app.
    pub fn redirect_uri(&self) -> String {
        format!("{}{}", self.public_url, self.redirect_path)
    }
}

/// Format of the log lines written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for CloudWatch Logs and other collectors.
    Json,
    /// Human-readable lines, for a terminal.
    Text,
}

impl FromStr for LogFormat {
    type Err = ();

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            _ => Err(()),
        }
    }
}

/// All the problems found in the environment, in the order the variables are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

/// One invalid environment variable, with what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub variable: &'static str,
    pub problem: String,
    pub hint: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        let noun = if count == 1 { "variable" } else { "variables" };
        write!(
            formatter,
            "invalid configuration in {count} environment {noun}"
        )?;
        for problem in &self.problems {
            write!(formatter, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "`{}`: {}\n    hint: {}",
            self.variable, self.problem, self.hint
        )
    }
}

impl Config {
    /// Reads and validates the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name))
    }

    /// Reads only `APP_BIND_ADDR` and `PORT`, for `app healthcheck`, which must not fail on
    /// settings it does not use.
    pub fn listen_address_from_env() -> Result<(IpAddr, u16), ConfigError> {
        let mut reader = EnvReader {
            lookup: |name: &str| std::env::var(name),
            problems: Vec::new(),
        };
        let address = (reader.bind_addr(), reader.port());
        if reader.problems.is_empty() {
            Ok(address)
        } else {
            Err(ConfigError {
                problems: reader.problems,
            })
        }
    }

    /// Reads and validates the settings from `lookup`, which has the contract
    /// of [`std::env::var`]. Tests pass a map here instead of changing the
    /// process environment.
    pub fn from_lookup<F>(lookup: F) -> Result<Self, ConfigError>
    where
        F: Fn(&str) -> Result<String, VarError>,
    {
        let mut reader = EnvReader {
            lookup,
            problems: Vec::new(),
        };

        let mut config = Config {
            bind_addr: reader.bind_addr(),
            port: reader.port(),
            log_format: reader.log_format(),
            app_version: reader.text(APP_VERSION),
            databricks_host: reader.databricks_host(),
            databricks_client_id: reader.text(DATABRICKS_CLIENT_ID),
            databricks_client_secret: reader.secret(DATABRICKS_CLIENT_SECRET),
            session_key: reader.secret(SESSION_KEY),
            serving_endpoint: reader.serving_endpoint(),
            oidc: None,
            serving_url: reader.serving_url(),
            serving_timeout: reader.serving_timeout(),
            summarize_prompt: reader.text(SUMMARIZE_PROMPT),
        };
        config.oidc = reader.oidc(&config);

        if reader.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                problems: reader.problems,
            })
        }
    }
}

/// Reads variables and collects problems. An invalid variable yields its
/// default so that reading goes on and every problem is found in one pass.
struct EnvReader<F> {
    lookup: F,
    problems: Vec<ConfigProblem>,
}

impl<F> EnvReader<F>
where
    F: Fn(&str) -> Result<String, VarError>,
{
    /// Returns the raw value, or `None` when the variable is unset, empty or
    /// not UTF-8 (the last is recorded as a problem).
    fn raw(&mut self, variable: &'static str) -> Option<String> {
        match (self.lookup)(variable) {
            Ok(value) if value.is_empty() => None,
            Ok(value) => Some(value),
            Err(VarError::NotPresent) => None,
            Err(VarError::NotUnicode(_)) => {
                self.report(
                    variable,
                    "value is not valid UTF-8".to_string(),
                    format!("set `{variable}` to a UTF-8 string, or unset it"),
                );
                None
            }
        }
    }

    /// Returns the trimmed value, or `None` when it is unset or blank.
    fn text(&mut self, variable: &'static str) -> Option<String> {
        let value = self.raw(variable)?;
        let trimmed = value.trim();
        (!trimmed.is_empty()).then(|| trimmed.to_string())
    }

    /// Returns the value untrimmed, because a secret is used byte for byte.
    fn secret(&mut self, variable: &'static str) -> Option<Secret> {
        self.raw(variable).map(Secret::new)
    }

    fn report(&mut self, variable: &'static str, problem: String, hint: String) {
        self.problems.push(ConfigProblem {
            variable,
            problem,
            hint,
        });
    }

    fn bind_addr(&mut self) -> IpAddr {
        let Some(value) = self.text(APP_BIND_ADDR) else {
            return DEFAULT_BIND_ADDR;
        };
        match value.parse() {
            Ok(addr) => addr,
            Err(_) => {
                self.report(
                    APP_BIND_ADDR,
                    format!("invalid IP address `{value}`"),
                    format!(
                        "set `{APP_BIND_ADDR}` to an IP address such as `0.0.0.0` (all interfaces) \
                         or `127.0.0.1`, or unset it to use `{DEFAULT_BIND_ADDR}`"
                    ),
                );
                DEFAULT_BIND_ADDR
            }
        }
    }

    fn port(&mut self) -> u16 {
        let Some(value) = self.text(PORT) else {
            return DEFAULT_PORT;
        };
        match value.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => {
                self.report(
                    PORT,
                    format!("invalid port number `{value}`"),
                    format!(
                        "set `{PORT}` to a number from 1 to 65535, or unset it to use `{DEFAULT_PORT}`"
                    ),
                );
                DEFAULT_PORT
            }
        }
    }

    fn log_format(&mut self) -> LogFormat {
        let Some(value) = self.text(LOG_FORMAT) else {
            return LogFormat::Json;
        };
        match value.parse() {
            Ok(format) => format,
            Err(()) => {
                self.report(
                    LOG_FORMAT,
                    format!("unknown log format `{value}`"),
                    format!("set `{LOG_FORMAT}` to `json` or `text`, or unset it to use `json`"),
                );
                LogFormat::Json
            }
        }
    }

    /// Builds the sign-in settings when every part is set; reports the missing
    /// parts when only some are.
    fn oidc(&mut self, config: &Config) -> Option<OidcConfig> {
        let public_url = self.public_url();
        let parts = [
            (DATABRICKS_HOST, config.databricks_host.is_some() || (self.lookup)(DATABRICKS_HOST).is_ok_and(|v| !v.is_empty())),
            (DATABRICKS_CLIENT_ID, config.databricks_client_id.is_some()),
            (DATABRICKS_CLIENT_SECRET, config.databricks_client_secret.is_some()),
            (SESSION_KEY, config.session_key.is_some()),
            (PUBLIC_URL, (self.lookup)(PUBLIC_URL).is_ok_and(|v| !v.is_empty())),
        ];
        if parts.iter().all(|(_, set)| !set) {
            return None;
        }
        for (variable, set) in parts {
            if !set {
                self.report(
                    variable,
                    "missing, but other sign-in settings are set".to_string(),
                    format!(
                        "set `{variable}` too, or unset all of `{DATABRICKS_HOST}`, `{DATABRICKS_CLIENT_ID}`, \
                         `{DATABRICKS_CLIENT_SECRET}`, `{SESSION_KEY}` and `{PUBLIC_URL}` to run without sign-in"
                    ),
                );
            }
        }

        let session_key = config.session_key.as_ref().and_then(|key| self.session_key(key));
        let redirect_path = self.redirect_path();
        let scopes = self.scopes();
        let public_url = public_url?;
        let cookie_secure = self.cookie_secure(&public_url);
        Some(OidcConfig {
            host: config.databricks_host.clone()?,
            client_id: config.databricks_client_id.clone()?,
            client_secret: config.databricks_client_secret.clone()?,
            session_key: session_key?,
            public_url,
            redirect_path,
            scopes,
            cookie_secure,
        })
    }

    /// Decodes the base64 session key and checks that it has at least 64 bytes, the size the
    /// cookie encryption key is made from.
    fn session_key(&mut self, key: &Secret) -> Option<Secret> {
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD.decode(key.expose().trim());
        match decoded {
            Ok(bytes) if bytes.len() >= 64 => Some(Secret::from_bytes(bytes)),
            Ok(bytes) => {
                self.report(
                    SESSION_KEY,
                    format!("key is {} bytes long, shorter than 64", bytes.len()),
                    "set it to base64 of at least 64 random bytes, as `openssl rand -base64 64` prints".to_string(),
                );
                None
            }
            Err(_) => {
                self.report(
                    SESSION_KEY,
                    "value is not valid base64".to_string(),
                    "set it to base64 of at least 64 random bytes, as `openssl rand -base64 64` prints".to_string(),
                );
                None
            }
        }
    }

    fn public_url(&mut self) -> Option<String> {
        let value = self.text(PUBLIC_URL)?;
        let trimmed = value.trim_end_matches('/');
        match url::Url::parse(trimmed) {
            Ok(url) if url.path() == "/" && url.query().is_none() && check_workspace_url(trimmed).is_ok() => {
                Some(trimmed.to_string())
            }
            _ => {
                self.report(
                    PUBLIC_URL,
                    format!("invalid public URL `{value}`"),
                    format!(
                        "set `{PUBLIC_URL}` to the scheme and host users open, such as `https://chat.example.co.jp`, \
                         with no path (`http://` only for a loopback host)"
                    ),
                );
                None
            }
        }
    }

    fn redirect_path(&mut self) -> String {
        let Some(value) = self.text(OAUTH_REDIRECT_PATH) else {
            return DEFAULT_REDIRECT_PATH.to_string();
        };
        if value.starts_with('/') && !value.starts_with("//") && !value.contains(['?', '#']) {
            return value;
        }
        self.report(
            OAUTH_REDIRECT_PATH,
            format!("invalid redirect path `{value}`"),
            format!("set it to a path such as `{DEFAULT_REDIRECT_PATH}`"),
        );
        DEFAULT_REDIRECT_PATH.to_string()
    }

    fn scopes(&mut self) -> Vec<String> {
        let value = self.text(OAUTH_SCOPES).unwrap_or_else(|| DEFAULT_SCOPES.to_string());
        let scopes: Vec<String> = value.split_whitespace().map(str::to_string).collect();
        if !scopes.iter().any(|scope| scope == "openid") {
            self.report(
                OAUTH_SCOPES,
                format!("scopes `{value}` do not include `openid`"),
                format!("add `openid`, as in `{DEFAULT_SCOPES}`"),
            );
        }
        scopes
    }

    /// `Secure` cookies, unless `COOKIE_SECURE=false` and the public URL is plain-HTTP loopback.
    fn cookie_secure(&mut self, public_url: &str) -> bool {
        let Some(value) = self.text(COOKIE_SECURE) else {
            return !public_url.starts_with("http://");
        };
        match value.to_ascii_lowercase().as_str() {
            "true" | "1" => true,
            "false" | "0" if public_url.starts_with("http://") => false,
            _ => {
                self.report(
                    COOKIE_SECURE,
                    format!("invalid value `{value}`"),
                    format!("set `true`, or `false` only with a plain-HTTP loopback `{PUBLIC_URL}`"),
                );
                true
            }
        }
    }

    /// The endpoint name as the workspace's Serving page shows it: 1 to 63 letters, digits,
    /// `-`, `_` and `.`.
    fn serving_endpoint(&mut self) -> Option<String> {
        let value = self.text(SERVING_ENDPOINT)?;
        let valid = value.len() <= 63 && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if valid {
            return Some(value);
        }
        self.report(
            SERVING_ENDPOINT,
            format!("invalid serving endpoint name `{}`", value.escape_debug()),
            format!("set the name shown on the workspace's Serving page, such as `{DEFAULT_SERVING_ENDPOINT}`"),
        );
        None
    }

    fn serving_url(&mut self) -> Option<String> {
        let value = self.text(SERVING_URL)?;
        match check_workspace_url(&value) {
            Ok(()) => Some(value.trim_end_matches('/').to_string()),
            Err((problem, _)) => {
                self.report(
                    SERVING_URL,
                    problem,
                    format!("set `{SERVING_URL}` to an `https://` URL, or unset it to call the workspace URL"),
                );
                None
            }
        }
    }

    fn serving_timeout(&mut self) -> std::time::Duration {
        let default = std::time::Duration::from_secs(DEFAULT_SERVING_TIMEOUT_SECONDS);
        let Some(value) = self.text(SERVING_TIMEOUT_SECONDS) else {
            return default;
        };
        match value.parse::<u64>() {
            Ok(seconds) if (1..=600).contains(&seconds) => std::time::Duration::from_secs(seconds),
            _ => {
                self.report(
                    SERVING_TIMEOUT_SECONDS,
                    format!("invalid timeout `{value}`"),
                    format!("set a whole number of seconds from 1 to 600, or unset it to use {DEFAULT_SERVING_TIMEOUT_SECONDS}"),
                );
                default
            }
        }
    }

    fn databricks_host(&mut self) -> Option<String> {
        let value = self.text(DATABRICKS_HOST)?;
        match check_workspace_url(&value) {
            Ok(()) => Some(value.trim_end_matches('/').to_string()),
            Err((problem, hint)) => {
                self.report(DATABRICKS_HOST, problem, hint);
                None
            }
        }
    }
}

/// Checks that a Databricks workspace URL has a scheme the app can call:
/// `https://`, or `http://` for a loopback host such as a local test provider.
/// Returns the problem and the hint on failure.
fn check_workspace_url(value: &str) -> Result<(), (String, String)> {
    let example = "`https://adb-1234567890123456.7.azuredatabricks.net`";

    if let Some(rest) = value.strip_prefix("https://") {
        if authority(rest).is_empty() {
            return Err((
                format!("URL `{value}` has no host"),
                format!("set `{DATABRICKS_HOST}` to the workspace URL, such as {example}"),
            ));
        }
        return Ok(());
    }

    if let Some(rest) = value.strip_prefix("http://") {
        if is_loopback_authority(authority(rest)) {
            return Ok(());
        }
        return Err((
            format!("plain HTTP URL `{value}` is allowed only for loopback hosts"),
            format!("use `https://{rest}`"),
        ));
    }

    if value.contains("://") {
        return Err((
            format!("unsupported scheme in URL `{value}`"),
            format!("set `{DATABRICKS_HOST}` to an `https://` URL, such as {example}"),
        ));
    }

    Err((
        format!("URL `{value}` has no scheme"),
        format!("add the scheme, as in `https://{value}`"),
    ))
}

/// Returns the `host[:port]` part of a URL without its scheme.
fn authority(without_scheme: &str) -> &str {
    let end = without_scheme
        .find(['/', '?', '#'])
        .unwrap_or(without_scheme.len());
    &without_scheme[..end]
}

fn is_loopback_authority(authority: &str) -> bool {
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        // An IPv6 literal: `[::1]:8080`.
        bracketed.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };

    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::ffi::OsString;

    use super::*;

    fn config_from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned().ok_or(VarError::NotPresent))
    }

    fn problem_variables(error: &ConfigError) -> Vec<&'static str> {
        error
            .problems
            .iter()
            .map(|problem| problem.variable)
            .collect()
    }

    #[test]
    fn defaults_when_unset() {
        let config = config_from(&[]).unwrap();

        assert_eq!(config.bind_addr, DEFAULT_BIND_ADDR);
        assert_eq!(config.port, 8080);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.app_version, None);
        assert_eq!(config.databricks_host, None);
        assert!(config.databricks_client_secret.is_none());
        assert!(config.session_key.is_none());
    }

    #[test]
    fn empty_values_count_as_unset() {
        let config = config_from(&[(PORT, ""), (LOG_FORMAT, ""), (APP_VERSION, "  ")]).unwrap();

        assert_eq!(config.port, DEFAULT_PORT);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.app_version, None);
    }

    #[test]
    fn reads_every_variable() {
        let config = config_from(&[
            (APP_BIND_ADDR, "127.0.0.1"),
            (PORT, " 9090 "),
            (LOG_FORMAT, "TEXT"),
            (APP_VERSION, "3f2a9c1"),
            (DATABRICKS_HOST, "https://dbc-1234.cloud.databricks.com/"),
            (DATABRICKS_CLIENT_ID, "client-id"),
            (DATABRICKS_CLIENT_SECRET, "client-secret"),
            (SESSION_KEY, TEST_SESSION_KEY),
            (SERVING_ENDPOINT, "databricks-claude-sonnet-4"),
            (PUBLIC_URL, "https://chat.example.co.jp/"),
            (OAUTH_SCOPES, "openid all-apis"),
        ])
        .unwrap();

        assert_eq!(config.bind_addr, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(config.port, 9090);
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.app_version.as_deref(), Some("3f2a9c1"));
        assert_eq!(
            config.databricks_host.as_deref(),
            Some("https://dbc-1234.cloud.databricks.com")
        );
        assert_eq!(config.databricks_client_id.as_deref(), Some("client-id"));
        assert_eq!(
            config.databricks_client_secret.as_ref().map(Secret::expose),
            Some("client-secret")
        );
        assert_eq!(
            config.session_key.as_ref().map(Secret::expose),
            Some(TEST_SESSION_KEY)
        );
        assert_eq!(
            config.serving_endpoint.as_deref(),
            Some("databricks-claude-sonnet-4")
        );
        let oidc = config.oidc.expect("sign-in is configured");
        assert_eq!(oidc.issuer(), "https://dbc-1234.cloud.databricks.com/oidc");
        assert_eq!(oidc.redirect_uri(), "https://chat.example.co.jp/oauth/callback");
        assert_eq!(oidc.scopes, ["openid", "all-apis"]);
        assert_eq!(oidc.session_key.expose_bytes().len(), 64);
        assert!(oidc.cookie_secure);
    }

    /// Base64 of 64 bytes, as the deployer generates.
    const TEST_SESSION_KEY: &str =
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";

    #[test]
    fn partial_sign_in_settings_are_rejected() {
        let error = config_from(&[(DATABRICKS_CLIENT_ID, "client-id")]).unwrap_err();

        assert_eq!(
            problem_variables(&error),
            [DATABRICKS_HOST, DATABRICKS_CLIENT_SECRET, SESSION_KEY, PUBLIC_URL]
        );
    }

    #[test]
    fn short_session_key_is_rejected() {
        let error = config_from(&[
            (DATABRICKS_HOST, "https://dbc-1234.cloud.databricks.com"),
            (DATABRICKS_CLIENT_ID, "client-id"),
            (DATABRICKS_CLIENT_SECRET, "client-secret"),
            (SESSION_KEY, "c2hvcnQ="),
            (PUBLIC_URL, "https://chat.example.co.jp"),
        ])
        .unwrap_err();

        assert_eq!(problem_variables(&error), [SESSION_KEY]);
        assert!(error.to_string().contains("shorter than 64"), "{error}");
    }

    #[test]
    fn insecure_cookies_only_for_plain_http() {
        let settings = |public_url: &'static str, secure: &'static str| {
            config_from(&[
                (DATABRICKS_HOST, "http://127.0.0.1:9031"),
                (DATABRICKS_CLIENT_ID, "client-id"),
                (DATABRICKS_CLIENT_SECRET, "client-secret"),
                (SESSION_KEY, TEST_SESSION_KEY),
                (PUBLIC_URL, public_url),
                (COOKIE_SECURE, secure),
            ])
        };

        assert!(!settings("http://127.0.0.1:8080", "false").unwrap().oidc.unwrap().cookie_secure);
        assert!(settings("https://chat.example.co.jp", "true").unwrap().oidc.unwrap().cookie_secure);
        let error = settings("https://chat.example.co.jp", "false").unwrap_err();
        assert_eq!(problem_variables(&error), [COOKIE_SECURE]);
        let error = settings("http://chat.example.co.jp", "false").unwrap_err();
        assert_eq!(problem_variables(&error), [PUBLIC_URL]);
    }

    #[test]
    fn debug_redacts_secrets() {
        let config = config_from(&[
            (DATABRICKS_HOST, "https://dbc-1234.cloud.databricks.com"),
            (DATABRICKS_CLIENT_ID, "client-id"),
            (DATABRICKS_CLIENT_SECRET, "client-secret-value"),
            (SESSION_KEY, TEST_SESSION_KEY),
            (PUBLIC_URL, "https://chat.example.co.jp"),
        ])
        .unwrap();

        let printed = format!("{config:?}");

        assert!(!printed.contains("client-secret-value"), "{printed}");
        assert!(!printed.contains(TEST_SESSION_KEY), "{printed}");
        assert!(printed.contains("[redacted]"), "{printed}");
    }

    #[test]
    fn reports_all_problems_together() {
        let error = config_from(&[
            (APP_BIND_ADDR, "everywhere"),
            (PORT, "http"),
            (LOG_FORMAT, "xml"),
            (DATABRICKS_HOST, "adb-1.2.azuredatabricks.net"),
        ])
        .unwrap_err();

        // An invalid host still counts as a sign-in setting, so the other parts are missing.
        assert_eq!(
            problem_variables(&error),
            [
                APP_BIND_ADDR,
                PORT,
                LOG_FORMAT,
                DATABRICKS_HOST,
                DATABRICKS_CLIENT_ID,
                DATABRICKS_CLIENT_SECRET,
                SESSION_KEY,
                PUBLIC_URL
            ]
        );

        let message = error.to_string();
        assert!(message.starts_with("invalid configuration in 8 environment variables"));
        assert!(
            message.contains("`PORT`: invalid port number `http`"),
            "{message}"
        );
        assert!(
            message.contains("hint: set `PORT` to a number from 1 to 65535"),
            "{message}"
        );
        assert!(message.contains("unknown log format `xml`"), "{message}");
        assert!(
            message.contains("add the scheme, as in `https://adb-1.2.azuredatabricks.net`"),
            "{message}"
        );
    }

    #[test]
    fn port_zero_and_overflow_rejected() {
        for value in ["0", "65536", "-1"] {
            let error = config_from(&[(PORT, value)]).unwrap_err();

            assert_eq!(problem_variables(&error), [PORT], "PORT={value}");
        }
    }

    #[test]
    fn non_unicode_value_reported() {
        let error = Config::from_lookup(|name| {
            if name == APP_VERSION {
                Err(VarError::NotUnicode(OsString::from("v1")))
            } else {
                Err(VarError::NotPresent)
            }
        })
        .unwrap_err();

        assert_eq!(problem_variables(&error), [APP_VERSION]);
        assert_eq!(error.problems[0].problem, "value is not valid UTF-8");
    }

    #[test]
    fn workspace_url_forms() {
        let accepted = [
            "https://dbc-1234.cloud.databricks.com",
            "https://adb-1234567890123456.7.azuredatabricks.net/",
            "https://1234567890123456.7.gcp.databricks.com",
            "https://databricks.internal.example.co.jp",
            "http://127.0.0.1:8443",
            "http://localhost:8443/",
            "http://[::1]:8443",
        ];
        for value in accepted {
            assert!(
                check_workspace_url(value).is_ok(),
                "{value} should be accepted"
            );
        }

        let rejected = [
            "dbc-1234.cloud.databricks.com",
            "http://dbc-1234.cloud.databricks.com",
            "http://localhost.example.com",
            "ftp://dbc-1234.cloud.databricks.com",
            "https://",
        ];
        for value in rejected {
            assert!(
                check_workspace_url(value).is_err(),
                "{value} should be rejected"
            );
        }
    }

    #[test]
    fn plain_http_hint_suggests_https() {
        let error =
            config_from(&[(DATABRICKS_HOST, "http://dbc-1234.cloud.databricks.com")]).unwrap_err();

        assert_eq!(
            error.problems[0].hint,
            "use `https://dbc-1234.cloud.databricks.com`"
        );
    }
}
