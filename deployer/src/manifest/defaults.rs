//! Values used for keys the manifest leaves out. They carry over the settings of the
//! Terraform sample this deployer replaces.

pub const VPC_CIDR: &str = "10.0.0.0/16";
pub const PUBLIC_SUBNET_CIDRS: [&str; 2] = ["10.0.1.0/24", "10.0.2.0/24"];
pub const PRIVATE_SUBNET_CIDRS: [&str; 2] = ["10.0.11.0/24", "10.0.12.0/24"];

pub const CPU: u32 = 256;
/// MiB.
pub const MEMORY: u32 = 512;
pub const DESIRED_COUNT: u32 = 1;
pub const PORT: u16 = 8080;
pub const HEALTH_CHECK_PATH: &str = "/health";

pub const SERVING_ENDPOINT: &str = "databricks-claude-sonnet-4";
pub const SCOPES: [&str; 5] = ["openid", "email", "profile", "all-apis", "offline_access"];
pub const REDIRECT_PATH: &str = "/oauth/callback";

/// Relative to the manifest's folder, so `manifests/x.toml` bundles the repository root.
pub const SOURCE_DIR: &str = "..";
/// Relative to the source folder.
pub const DOCKERFILE: &str = "templates/Dockerfile";
pub const COMPUTE_TYPE: &str = "BUILD_GENERAL1_SMALL";
pub const BUILD_IMAGE: &str = "aws/codebuild/amazonlinux2-x86_64-standard:5.0";
pub const BUILD_TIMEOUT_MINUTES: u32 = 30;

pub const LOG_RETENTION_DAYS: i32 = 7;

pub const DEPLOY_TIMEOUT: &str = "15m";
