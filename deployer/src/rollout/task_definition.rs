//! The Fargate task definition: compared field by field with the one the service runs, and
//! registered as a new revision only when something the manifest sets differs.

use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, HealthCheck, KeyValuePair, LogConfiguration, LogDriver, NetworkMode,
    PortMapping, Secret, TaskDefinition, TransportProtocol,
};

use crate::error::{Error, Result};
use crate::plan::{diff_field, diff_pairs, Cx, FieldChange};
use crate::resources::ecs_tags;

/// The uid:gid of the distroless `nonroot` user the Dockerfile runs the app as.
const APP_USER: &str = "65532:65532";

/// The parts of a task definition the deployer sets, in a form that compares cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    pub image: String,
    pub cpu: String,
    pub memory: String,
    pub port: i32,
    /// Sorted by name.
    pub environment: Vec<(String, String)>,
    /// Sorted by name: variable name and the secret ARN it comes from.
    pub secrets: Vec<(String, String)>,
    pub execution_role_arn: String,
    pub task_role_arn: String,
    pub log_group: String,
}

impl TaskSpec {
    /// What the manifest and the converged resources ask for, running `image`.
    pub fn desired(cx: &Cx, image: &str, version: &str) -> Self {
        let manifest = &cx.manifest;
        let outputs = cx.outputs();
        let after_apply = || "(known after apply)".to_owned();
        let mut environment = vec![
            ("APP_VERSION".to_owned(), version.to_owned()),
            ("DATABRICKS_CLIENT_ID".to_owned(), manifest.databricks.client_id.clone()),
            ("DATABRICKS_HOST".to_owned(), manifest.databricks.host.as_str().trim_end_matches('/').to_owned()),
            ("LOG_FORMAT".to_owned(), "json".to_owned()),
            ("OAUTH_REDIRECT_PATH".to_owned(), manifest.databricks.redirect_path.clone()),
            ("OAUTH_SCOPES".to_owned(), manifest.databricks.scopes.join(" ")),
            ("PORT".to_owned(), manifest.service.port.to_string()),
            ("PUBLIC_URL".to_owned(), format!("https://{}", manifest.https.domain)),
            ("SERVING_ENDPOINT".to_owned(), manifest.databricks.serving_endpoint.clone()),
        ];
        environment.sort();
        let mut secrets = vec![
            (
                "DATABRICKS_CLIENT_SECRET".to_owned(),
                outputs.client_secret_arn.clone().unwrap_or_else(after_apply),
            ),
            ("SESSION_KEY".to_owned(), outputs.session_key_arn.clone().unwrap_or_else(after_apply)),
        ];
        secrets.sort();

        TaskSpec {
            image: image.to_owned(),
            cpu: manifest.service.cpu.to_string(),
            memory: manifest.service.memory.to_string(),
            port: i32::from(manifest.service.port),
            environment,
            secrets,
            execution_role_arn: outputs.execution_role_arn.clone().unwrap_or_else(after_apply),
            task_role_arn: outputs.task_role_arn.clone().unwrap_or_else(after_apply),
            log_group: cx.names.app_log_group(),
        }
    }

    /// Reads the fields the deployer sets back from a registered task definition.
    pub fn observed(definition: &TaskDefinition) -> Option<Self> {
        let container = definition.container_definitions().first()?;
        let mut environment: Vec<(String, String)> = container
            .environment()
            .iter()
            .map(|pair| (pair.name().unwrap_or_default().to_owned(), pair.value().unwrap_or_default().to_owned()))
            .collect();
        environment.sort();
        let mut secrets: Vec<(String, String)> = container
            .secrets()
            .iter()
            .map(|secret| (secret.name().to_owned(), secret.value_from().to_owned()))
            .collect();
        secrets.sort();
        let log_group = container
            .log_configuration()
            .and_then(|config| config.options())
            .and_then(|options| options.get("awslogs-group"))
            .cloned()
            .unwrap_or_default();

        Some(TaskSpec {
            image: container.image().unwrap_or_default().to_owned(),
            cpu: definition.cpu().unwrap_or_default().to_owned(),
            memory: definition.memory().unwrap_or_default().to_owned(),
            port: container.port_mappings().first().and_then(|mapping| mapping.container_port()).unwrap_or_default(),
            environment,
            secrets,
            execution_role_arn: definition.execution_role_arn().unwrap_or_default().to_owned(),
            task_role_arn: definition.task_role_arn().unwrap_or_default().to_owned(),
            log_group,
        })
    }

    /// The fields that differ from `current`. Environment values are shown; secrets only by ARN.
    pub fn differences(&self, current: &TaskSpec) -> Vec<FieldChange> {
        let mut fields = Vec::new();
        diff_field(&mut fields, "image", &current.image, &self.image);
        diff_field(&mut fields, "cpu", &current.cpu, &self.cpu);
        diff_field(&mut fields, "memory", &current.memory, &self.memory);
        diff_field(&mut fields, "port", current.port, self.port);
        diff_pairs(&mut fields, "environment", &current.environment, &self.environment);
        diff_pairs(&mut fields, "secrets", &current.secrets, &self.secrets);
        diff_field(&mut fields, "execution_role_arn", &current.execution_role_arn, &self.execution_role_arn);
        diff_field(&mut fields, "task_role_arn", &current.task_role_arn, &self.task_role_arn);
        diff_field(&mut fields, "log_group", &current.log_group, &self.log_group);
        fields
    }
}

/// Registers `spec` as a new revision of the family and returns its ARN.
pub async fn register(cx: &Cx, spec: &TaskSpec) -> Result<String> {
    let family = cx.names.task_family();
    let container = container_definition(cx, spec);
    let registered = cx
        .aws
        .ecs
        .register_task_definition()
        .family(&family)
        .requires_compatibilities(Compatibility::Fargate)
        .network_mode(NetworkMode::Awsvpc)
        .cpu(&spec.cpu)
        .memory(&spec.memory)
        .execution_role_arn(&spec.execution_role_arn)
        .task_role_arn(&spec.task_role_arn)
        .container_definitions(container)
        .set_tags(Some(ecs_tags(cx)))
        .send()
        .await
        .map_err(|e| Error::aws("register task definition", &family, e))?;
    let arn = registered
        .task_definition()
        .and_then(|definition| definition.task_definition_arn())
        .ok_or_else(|| Error::Failed(format!("ECS registered `{family}` but returned no ARN")))?
        .to_owned();
    cx.progress.say(format!("registered task definition `{}`", short_arn(&arn)));
    Ok(arn)
}

fn container_definition(cx: &Cx, spec: &TaskSpec) -> ContainerDefinition {
    let environment = spec
        .environment
        .iter()
        .map(|(name, value)| KeyValuePair::builder().name(name).value(value).build())
        .collect();
    let secrets = spec
        .secrets
        .iter()
        .map(|(name, arn)| Secret::builder().name(name).value_from(arn).build().expect("secret has name and ARN"))
        .collect();
    let logs = LogConfiguration::builder()
        .log_driver(LogDriver::Awslogs)
        .options("awslogs-group", &spec.log_group)
        .options("awslogs-region", &cx.region)
        .options("awslogs-stream-prefix", "app")
        .build()
        .expect("log configuration has a driver");
    let health_check = HealthCheck::builder()
        .command("CMD")
        .command("/usr/local/bin/app")
        .command("healthcheck")
        .interval(15)
        .timeout(5)
        .retries(3)
        .start_period(10)
        .build()
        .expect("health check has a command");

    ContainerDefinition::builder()
        .name(cx.names.container())
        .image(&spec.image)
        .essential(true)
        .user(APP_USER)
        .readonly_root_filesystem(true)
        .port_mappings(
            PortMapping::builder()
                .container_port(spec.port)
                .protocol(TransportProtocol::Tcp)
                .build(),
        )
        .set_environment(Some(environment))
        .set_secrets(Some(secrets))
        .log_configuration(logs)
        .health_check(health_check)
        .build()
}

/// `family:revision` from a task definition ARN.
pub fn short_arn(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}
