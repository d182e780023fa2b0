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
                "check the network path to the AWS endpoint (`AWS_ENDPOINT_URL` when set) and retry".into(),
            ),
            _ => None,
        }
    }

    /// The process exit code: 2 for invalid input, missing or rejected credentials, or a name
    /// the user must change, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Manifest(_) | Error::Input(_) | Error::NotOwned { .. } => 2,
            Error::Aws { source, .. } if is_credentials_problem(&source.0) => 2,
            _ => 1,
        }
    }
}

/// Joins the `Display` of an error and its sources with `: `, skipping a cause whose text the
/// previous one already contains. `DisplayErrorContext` would append the `Debug` form as well,
/// which repeats everything in a form people cannot read.
fn cause_chain(error: &dyn std::error::Error) -> String {
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
