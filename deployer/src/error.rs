//! Errors of the deployer library and the exit codes the CLI maps them to.

use std::time::Duration;

use crate::manifest::ManifestError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid manifest")]
    Manifest(#[source] ManifestError),

    #[error("{0}")]
    Input(String),

    #[error("failed to {action} `{resource}`")]
    Aws {
        action: String,
        resource: String,
        #[source]
        source: AwsError,
    },

    #[error("{kind} `{name}` already exists but was not created by this deployer (no `deployer:app`/`deployer:stage` tags for `{app}`)")]
    NotOwned {
        kind: &'static str,
        name: String,
        app: String,
    },

    #[error("timed out after {} waiting for {waiting_for}", humantime::format_duration(*.after))]
    Timeout { waiting_for: String, after: Duration },

    #[error("{0}")]
    Failed(String),

    /// The new version failed after ECS started switching to it, and the previous version was
    /// restored and verified.
    #[error("{reason}; rolled back to `{restored}`, which is running and healthy")]
    RolledBack { reason: String, restored: String },

    /// The new version failed after ECS started switching to it, and the previous version could
    /// not be restored: a person has to look.
    #[error("{reason}; the rollback did not restore a healthy version: {problem}")]
    NotRolledBack { reason: String, problem: String },

    /// A signal stopped the command. `state` describes what it left behind.
    #[error("interrupted by {signal}; {state}")]
    Interrupted { signal: &'static str, state: String },

    /// A bug in the deployer: a state it should never reach.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The documented exit codes, which CI pipelines branch on.
pub mod exit {
    /// The command failed and the running version did not change.
    pub const FAILED: u8 = 1;
    /// Invalid input: the manifest, the command line, the credentials or a name to change.
    pub const INPUT: u8 = 2;
    /// The new version failed after the switch and the previous one runs again.
    pub const ROLLED_BACK: u8 = 3;
    /// The new version failed after the switch and the rollback did not restore a healthy version.
    pub const NOT_ROLLED_BACK: u8 = 4;
    /// A bug in the deployer.
    pub const INTERNAL: u8 = 5;
    /// Interrupted by SIGINT or SIGTERM, as shells report a process that a signal ended.
    pub const INTERRUPTED: u8 = 130;
}

/// An AWS SDK error rendered as its chain of causes, each `Display`ed once.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AwsError(String);

impl Error {
    /// Wraps an SDK error with the action that failed and the resource it was for.
    pub fn aws<E>(action: impl Into<String>, resource: impl Into<String>, source: E) -> Self
    where
        E: std::error::Error,
    {
        Error::Aws {
            action: action.into(),
            resource: resource.into(),
            source: AwsError(cause_chain(&source)),
        }
    }

    /// A hint for the person reading the error, where one helps.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::NotOwned { .. } => Some(
                "choose another `app.name` or `app.stage`, or delete or tag the existing resource if it is yours"
                    .into(),
            ),
            Error::Aws { source, .. } if is_credentials_problem(&source.0) => Some(
                "check the AWS credentials: set `AWS_PROFILE`, run `aws sso login`, or export `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`"
                    .into(),
            ),
            Error::Aws { source, .. } if is_connection_problem(&source.0) => Some(
                "check the network path to the AWS endpoint (`AWS_ENDPOINT_URL` when set) and that `aws.region` in the manifest names a region that exists and is enabled for the account, then retry".into(),
            ),
            Error::NotRolledBack { .. } => Some(
                "run `deployer status` to see what runs now, then `deployer rollback` or `deployer update` once the cause is fixed"
                    .into(),
            ),
            Error::Internal(_) => Some("this is a bug in the deployer; please report it with the output of `-v`".into()),
            _ => None,
        }
    }

    /// The process exit code; see [`exit`].
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Manifest(_) | Error::Input(_) | Error::NotOwned { .. } => exit::INPUT,
            Error::Aws { source, .. } if is_credentials_problem(&source.0) => exit::INPUT,
            Error::RolledBack { .. } => exit::ROLLED_BACK,
            Error::NotRolledBack { .. } => exit::NOT_ROLLED_BACK,
            Error::Internal(_) => exit::INTERNAL,
            Error::Interrupted { .. } => exit::INTERRUPTED,
            _ => exit::FAILED,
        }
    }
}

/// Joins the `Display` of an error and its sources with `: `, skipping a cause whose text the
/// previous one already contains. `DisplayErrorContext` would append the `Debug` form as well,
/// which repeats everything in a form people cannot read.
pub fn cause_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

fn is_credentials_problem(text: &str) -> bool {
    ["NoCredentialsProviders", "no credentials", "InvalidClientTokenId", "ExpiredToken", "UnrecognizedClient"]
        .iter()
        .any(|needle| text.contains(needle))
}

fn is_connection_problem(text: &str) -> bool {
    ["dispatch failure", "io error", "Connection refused", "timed out"]
        .iter()
        .any(|needle| text.contains(needle))
}

impl From<ManifestError> for Error {
    fn from(error: ManifestError) -> Self {
        Error::Manifest(error)
    }
}
