//! What every resource step reads: the manifest, names, clients, the mode and the outputs of the
//! steps before it.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::aws::Clients;
use crate::manifest::Manifest;
use crate::names::Names;
use crate::output::Progress;
use crate::secret::SecretString;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read only, and report what would change.
    Plan,
    /// Read, then create, update or delete.
    Apply,
}

/// Identifiers that one step finds or creates and later steps need. `None` means the resource
/// does not exist yet, which in plan mode makes the dependent resources "create" too.
#[derive(Debug, Default, Clone)]
pub struct Outputs {
    pub vpc_id: Option<String>,
    pub internet_gateway_id: Option<String>,
    pub public_subnet_ids: Vec<String>,
    pub private_subnet_ids: Vec<String>,
    pub nat_gateway_id: Option<String>,
    pub alb_security_group_id: Option<String>,
    pub task_security_group_id: Option<String>,
    pub execution_role_arn: Option<String>,
    pub task_role_arn: Option<String>,
    pub codebuild_role_arn: Option<String>,
    pub repository_uri: Option<String>,
    pub bucket: Option<String>,
    pub client_secret_arn: Option<String>,
    pub session_key_arn: Option<String>,
    pub certificate_arn: Option<String>,
    pub load_balancer_arn: Option<String>,
    pub load_balancer_dns: Option<String>,
    pub load_balancer_zone_id: Option<String>,
    pub target_group_arn: Option<String>,
    pub cluster_arn: Option<String>,
    /// Set when this run stored a new secret value, which running tasks only read at start.
    pub secrets_changed: bool,
    /// Set once the rollout asked ECS to run a new revision: the revision and the one before.
    pub switch: Option<Switch>,
    /// The id of the PRIMARY deployment that the last `CreateService` or `UpdateService` returned.
    /// The next wait takes it and waits until ECS reports that deployment as PRIMARY.
    pub started_deployment: Option<String>,
}

/// A change of the service's revision that the rollout started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    pub to: String,
    pub from: Option<String>,
    /// Set when `to` is the earlier revision that a rollback returns to, after `from` failed.
    pub rolling_back: bool,
}

/// How often and how long the deployer polls. Tests shorten these; the defaults suit AWS.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Between reads of a build's status and log.
    pub build_poll: Duration,
    /// Between reads of the service, its stopped tasks and its targets during a rollout.
    pub service_poll: Duration,
    /// Tries of each live-check step (DNS, `/health`, login redirect).
    pub live_attempts: u32,
    /// Between tries of a live-check step.
    pub live_interval: Duration,
    /// Bound on one HTTP request of the live check.
    pub live_request_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            build_poll: Duration::from_secs(5),
            service_poll: Duration::from_secs(5),
            live_attempts: 10,
            live_interval: Duration::from_secs(3),
            live_request_timeout: Duration::from_secs(5),
        }
    }
}

/// The context shared by every step of one command.
#[derive(Debug)]
pub struct Cx {
    pub manifest: Manifest,
    pub names: Names,
    pub aws: Clients,
    pub account_id: String,
    pub region: String,
    pub mode: Mode,
    pub progress: Progress,
    /// The Databricks client secret read from the manifest's `{ env = ... }` reference; `None`
    /// when the manifest names an existing Secrets Manager secret or the variable is unset in plan mode.
    pub client_secret: Option<SecretString>,
    pub timing: Timing,
    outputs: Mutex<Outputs>,
}

impl Cx {
    pub fn new(manifest: Manifest, aws: Clients, account_id: String, mode: Mode, progress: Progress) -> Self {
        Cx {
            names: Names::new(&manifest),
            region: manifest.aws.region.clone(),
            manifest,
            aws,
            account_id,
            mode,
            progress,
            client_secret: None,
            timing: Timing::default(),
            outputs: Mutex::new(Outputs::default()),
        }
    }

    pub fn applying(&self) -> bool {
        self.mode == Mode::Apply
    }

    /// Locks the outputs for a short read or write. Never hold the guard across an `.await`.
    pub fn outputs(&self) -> MutexGuard<'_, Outputs> {
        self.outputs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The bundle bucket's name.
    pub fn bucket(&self) -> String {
        self.names.bucket(&self.account_id, &self.region)
    }

    /// The ARN partition of the region (`aws`, `aws-cn` or `aws-us-gov`).
    pub fn partition(&self) -> &'static str {
        match self.region.as_str() {
            region if region.starts_with("cn-") => "aws-cn",
            region if region.starts_with("us-gov-") => "aws-us-gov",
            _ => "aws",
        }
    }
}
