//! Validated manifest values. Everything here was checked at parse time, so the rest of the
//! deployer never re-validates names, CIDRs, hosts or ARNs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use url::Url;

/// A whole, validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Folder of the manifest file; relative paths in the manifest resolve against it.
    pub base_dir: PathBuf,
    pub app: AppConfig,
    pub aws: AwsConfig,
    pub network: NetworkConfig,
    pub service: ServiceConfig,
    pub https: HttpsConfig,
    pub databricks: DatabricksConfig,
    pub build: BuildConfig,
    pub logs: LogsConfig,
    pub deploy: DeployConfig,
    /// User tags added to every resource, beside `deployer:app` and `deployer:stage`.
    pub tags: BTreeMap<String, String>,
}

/// A lower-case DNS-style name: letters, digits and inner hyphens.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(pub(crate) String);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone)]
pub struct AppConfig {
    pub name: Name,
    pub stage: Name,
}

#[derive(Debug, Clone)]
pub struct AwsConfig {
    /// Region code such as `ap-northeast-1`.
    pub region: String,
    /// When set, the deployer stops unless the credentials belong to this account.
    pub account_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub layout: NetworkLayout,
    /// Who may reach the load balancer on ports 80 and 443.
    pub allowed_cidrs: Vec<IpNet>,
}

#[derive(Debug, Clone)]
pub enum NetworkLayout {
    /// The deployer creates the VPC, subnets, gateways and routes.
    Managed(ManagedNetwork),
    /// The deployer uses a VPC and subnets that already exist and never changes them.
    Existing(ExistingNetwork),
}

#[derive(Debug, Clone)]
pub struct ManagedNetwork {
    pub vpc_cidr: Ipv4Net,
    /// Two subnets for the load balancer, one per availability zone, inside `vpc_cidr`.
    pub public_subnet_cidrs: Vec<Ipv4Net>,
    /// Two subnets for the tasks, one per availability zone, inside `vpc_cidr`.
    pub private_subnet_cidrs: Vec<Ipv4Net>,
    /// Zone names; empty means the first two zones the region reports.
    pub availability_zones: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ExistingNetwork {
    pub vpc_id: String,
    pub public_subnet_ids: Vec<String>,
    pub private_subnet_ids: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Fargate CPU units (256, 512, 1024, 2048, 4096, 8192 or 16384).
    pub cpu: u32,
    /// Memory in MiB, valid for `cpu` on Fargate.
    pub memory: u32,
    pub desired_count: u32,
    /// Container port the app listens on.
    pub port: u16,
    pub health_check_path: String,
}

#[derive(Debug, Clone)]
pub struct HttpsConfig {
    /// Fully qualified domain name the app is served at.
    pub domain: String,
    pub certificate: CertificateSource,
}

#[derive(Debug, Clone)]
pub enum CertificateSource {
    /// The deployer requests an ACM certificate with DNS validation. With a hosted zone the
    /// validation records and the alias record are written to Route 53; without one they are printed.
    Managed { hosted_zone_id: Option<String> },
    /// An ACM certificate that already exists in the region.
    Existing { arn: String },
}

#[derive(Debug, Clone)]
pub struct DatabricksConfig {
    /// Workspace URL: scheme, host and port only (`https://adb-1.7.azuredatabricks.net/`). The path
    /// is always `/`, and `host_origin` returns the URL without it.
    pub host: Url,
    pub client_id: String,
    pub client_secret: SecretRef,
    pub serving_endpoint: String,
    pub scopes: Vec<String>,
    /// Path of the OAuth redirect, such as `/oauth/callback`.
    pub redirect_path: String,
}

impl DatabricksConfig {
    /// Returns the workspace URL without the trailing slash, such as
    /// `https://adb-1.7.azuredatabricks.net`. `host` itself always ends in `/`, because `Url`
    /// gives every `http` and `https` URL a path.
    pub fn host_origin(&self) -> &str {
        self.host.as_str().trim_end_matches('/')
    }
}

/// Where a secret value comes from. The manifest never contains the value itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// Read from this environment variable when the deployer runs and stored in Secrets Manager.
    Env(String),
    /// An existing Secrets Manager secret, used as is.
    SecretsManager(String),
}

#[derive(Debug, Clone)]
pub struct BuildConfig {
    /// Folder of the app source that is bundled and built. A relative path in the manifest is
    /// joined to `base_dir` here, so the default `..` bundles the parent of the manifest's folder.
    pub source_dir: PathBuf,
    /// Dockerfile path relative to `source_dir`, such as `templates/Dockerfile`. It has no `..`
    /// component, so the Dockerfile is always inside the bundle.
    pub dockerfile: PathBuf,
    /// CodeBuild compute type, such as `BUILD_GENERAL1_SMALL`.
    pub compute_type: String,
    /// CodeBuild build image.
    pub image: String,
    pub timeout_minutes: u32,
}

#[derive(Debug, Clone)]
pub struct LogsConfig {
    /// One of the retention periods CloudWatch Logs accepts.
    pub retention_days: i32,
}

#[derive(Debug, Clone)]
pub struct DeployConfig {
    /// Bound on the whole rollout wait.
    pub timeout: Duration,
    /// Where the deployer checks the app after a rollout; defaults to `https://{domain}/health`.
    pub health_url: Option<Url>,
}
