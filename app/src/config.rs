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

pub const DEFAULT_BIND_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
pub const DEFAULT_PORT: u16 = 8080;

/// The app's settings.
///
/// The Databricks settings and the session key are read and kept but not yet
/// required, because the login and the Model Serving calls are not built yet.
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
    /// Key that will sign session cookies.
    // TODO: check the key length once sessions use it.
    pub session_key: Option<Secret>,
    /// Name of the Model Serving endpoint.
    pub serving_endpoint: Option<String>,
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

        let config = Config {
            bind_addr: reader.bind_addr(),
            port: reader.port(),
            log_format: reader.log_format(),
            app_version: reader.text(APP_VERSION),
            databricks_host: reader.databricks_host(),
            databricks_client_id: reader.text(DATABRICKS_CLIENT_ID),
            databricks_client_secret: reader.secret(DATABRICKS_CLIENT_SECRET),
            session_key: reader.secret(SESSION_KEY),
            serving_endpoint: reader.text(SERVING_ENDPOINT),
        };

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
            (SESSION_KEY, "session-key"),
            (SERVING_ENDPOINT, "databricks-claude-sonnet-4"),
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
            Some("session-key")
        );
        assert_eq!(
            config.serving_endpoint.as_deref(),
            Some("databricks-claude-sonnet-4")
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let config = config_from(&[
            (DATABRICKS_CLIENT_SECRET, "client-secret-value"),
            (SESSION_KEY, "session-key-value"),
        ])
        .unwrap();

        let printed = format!("{config:?}");

        assert!(!printed.contains("client-secret-value"), "{printed}");
        assert!(!printed.contains("session-key-value"), "{printed}");
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

        assert_eq!(
            problem_variables(&error),
            [APP_BIND_ADDR, PORT, LOG_FORMAT, DATABRICKS_HOST]
        );

        let message = error.to_string();
        assert!(message.starts_with("invalid configuration in 4 environment variables"));
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
