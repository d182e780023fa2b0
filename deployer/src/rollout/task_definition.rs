//! The Fargate task definition: compared field by field with the one the service runs, and
//! registered as a new revision only when something the manifest sets differs.

use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, HealthCheck, KeyValuePair, LogConfiguration, LogDriver, NetworkMode,
    PortMapping, Secret, TaskDefinition, TaskDefinitionStatus, TransportProtocol,
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

    /// Reads the fields the deployer sets back from a registered task definition: those of the
    /// container named `container_name`, or of the first container when none has that name.
    pub fn observed(definition: &TaskDefinition, container_name: &str) -> Option<Self> {
        let containers = definition.container_definitions();
        let container = containers
            .iter()
            .find(|container| container.name() == Some(container_name))
            .or_else(|| containers.first())?;
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

    /// `APP_VERSION`: the bundle's image tag, or what `--image` gave.
    pub fn version(&self) -> Option<String> {
        self.environment
            .iter()
            .find(|(name, _)| name == "APP_VERSION")
            .map(|(_, value)| value.clone())
    }

    /// The fields that differ from `current`. Environment values are shown; secrets only by ARN.
    /// Variables and secrets the deployer does not set are someone else's and do not count.
    pub fn differences(&self, current: &TaskSpec) -> Vec<FieldChange> {
        let current = TaskSpec {
            environment: only_names_of(&current.environment, &self.environment),
            secrets: only_names_of(&current.secrets, &self.secrets),
            ..current.clone()
        };
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

/// Returns the pairs of `pairs` whose names also appear in `wanted`.
fn only_names_of(pairs: &[(String, String)], wanted: &[(String, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .filter(|(name, _)| wanted.iter().any(|(wanted, _)| wanted == name))
        .cloned()
        .collect()
}

/// Registers `spec` as a new revision of the family and returns its ARN. With `base`, the
/// running task definition, everything the deployer does not set is kept: other containers,
/// volumes, extra variables, the container's health check and limits.
pub async fn register(cx: &Cx, spec: &TaskSpec, base: Option<&TaskDefinition>) -> Result<String> {
    let family = cx.names.task_family();
    let containers = match base {
        Some(base) => merged_containers(cx, spec, base),
        None => vec![container_definition(cx, spec)],
    };
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
        .set_container_definitions(Some(containers))
        .set_volumes(base.map(|base| base.volumes().to_vec()))
        .set_placement_constraints(base.map(|base| base.placement_constraints().to_vec()))
        .set_ephemeral_storage(base.and_then(|base| base.ephemeral_storage().cloned()))
        .set_runtime_platform(base.and_then(|base| base.runtime_platform().cloned()))
        .set_proxy_configuration(base.and_then(|base| base.proxy_configuration().cloned()))
        .set_pid_mode(base.and_then(|base| base.pid_mode().cloned()))
        .set_ipc_mode(base.and_then(|base| base.ipc_mode().cloned()))
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

/// Returns the base's containers with ours changed to `spec`: managed variables and secrets are
/// replaced, and the others are kept.
fn merged_containers(cx: &Cx, spec: &TaskSpec, base: &TaskDefinition) -> Vec<ContainerDefinition> {
    let name = cx.names.container();
    let containers = base.container_definitions();
    if !containers.iter().any(|container| container.name() == Some(name)) {
        let mut all = vec![container_definition(cx, spec)];
        all.extend(containers.iter().cloned());
        return all;
    }
    containers
        .iter()
        .map(|container| {
            if container.name() != Some(name) {
                return container.clone();
            }
            let fresh = container_definition(cx, spec);
            let mut merged = container.clone();
            merged.environment = Some(keep_unmanaged(container.environment(), fresh.environment(), |pair| pair.name()));
            merged.secrets = Some(keep_unmanaged(container.secrets(), fresh.secrets(), |secret| Some(secret.name())));
            merged.image = fresh.image;
            merged.port_mappings = fresh.port_mappings;
            merged.log_configuration = fresh.log_configuration;
            merged
        })
        .collect()
}

/// `managed` plus the items of `current` whose names `managed` lacks, sorted by name.
fn keep_unmanaged<T: Clone>(current: &[T], managed: &[T], name: impl Fn(&T) -> Option<&str>) -> Vec<T> {
    let mut all: Vec<T> = managed.to_vec();
    all.extend(
        current
            .iter()
            .filter(|item| !managed.iter().any(|m| name(m) == name(item)))
            .cloned(),
    );
    all.sort_by(|a, b| name(a).cmp(&name(b)));
    all
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

/// Returns the revision number of a task definition ARN or `family:revision`.
fn revision_number(arn: &str) -> Option<u32> {
    short_arn(arn).rsplit_once(':').and_then(|(_, revision)| revision.parse().ok())
}

/// Lists every active revision of our family, oldest first.
pub async fn revisions(cx: &Cx) -> Result<Vec<String>> {
    revisions_with_status(cx, TaskDefinitionStatus::Active).await
}

/// Returns the ARNs of the revisions of the app's family that have `status`, oldest first.
pub async fn revisions_with_status(cx: &Cx, status: TaskDefinitionStatus) -> Result<Vec<String>> {
    let family = cx.names.task_family();
    let mut pages = cx
        .aws
        .ecs
        .list_task_definitions()
        .family_prefix(&family)
        .status(status)
        .into_paginator()
        .items()
        .send();
    let mut arns = Vec::new();
    while let Some(arn) = pages.next().await {
        let arn = arn.map_err(|e| Error::aws("list the task definitions of", &family, e))?;
        // The prefix also matches other families that start with ours, such as `app-prod2`.
        if short_arn(&arn).rsplit_once(':').map(|(name, _)| name) == Some(family.as_str()) {
            arns.push(arn);
        }
    }
    arns.sort_by_key(|arn| revision_number(arn));
    Ok(arns)
}

/// The tag on a revision whose rollout failed, so that `rollback` without `--to` passes over it.
pub const FAILED_TAG: (&str, &str) = ("deployer:rollout", "failed");

/// Tags `arn` as a revision whose rollout failed. A tag that cannot be written is only logged,
/// because the rollback that follows matters more.
pub async fn mark_failed(cx: &Cx, arn: &str) {
    let tag = aws_sdk_ecs::types::Tag::builder().key(FAILED_TAG.0).value(FAILED_TAG.1).build();
    if let Err(error) = cx.aws.ecs.tag_resource().resource_arn(arn).tags(tag).send().await {
        let error = Error::aws("tag task definition", arn, error);
        tracing::warn!(%error, "could not mark the failed revision; `deployer rollback` may choose it");
    }
}

/// Removes [`FAILED_TAG`] from `arn` after the revision passed the watch and the live check. A
/// tag that cannot be removed is only logged.
pub async fn clear_failed(cx: &Cx, arn: &str) {
    if let Err(error) = cx.aws.ecs.untag_resource().resource_arn(arn).tag_keys(FAILED_TAG.0).send().await {
        let error = Error::aws("untag task definition", arn, error);
        tracing::warn!(%error, "could not clear the failed mark; a plain `deployer rollback` passes over this revision");
    }
}

/// True when `arn` carries [`FAILED_TAG`].
pub async fn is_marked_failed(cx: &Cx, arn: &str) -> Result<bool> {
    let described = cx
        .aws
        .ecs
        .describe_task_definition()
        .task_definition(arn)
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await
        .map_err(|e| Error::aws("describe task definition", arn, e))?;
    Ok(described
        .tags()
        .iter()
        .any(|tag| tag.key() == Some(FAILED_TAG.0) && tag.value() == Some(FAILED_TAG.1)))
}

/// Chooses the revision `rollback` goes to: `to` (`REVISION`, `family:REVISION` or an ARN), or the
/// newest one older than `running`.
pub fn choose_rollback(
    family: &str,
    region: &str,
    revisions: &[String],
    running: &str,
    to: Option<&str>,
) -> Result<String> {
    let listed = || {
        let recent: Vec<&str> = revisions.iter().rev().take(5).map(|arn| short_arn(arn)).collect();
        if recent.is_empty() {
            "none".to_owned()
        } else {
            recent.join(", ")
        }
    };
    let Some(to) = to else {
        let running_number = revision_number(running);
        return revisions
            .iter()
            .rev()
            .find(|arn| revision_number(arn) < running_number)
            .cloned()
            .ok_or_else(|| {
                Error::Input(format!(
                    "`{}` is the oldest revision of `{family}`, so there is nothing to roll back to; the revisions are: {}",
                    short_arn(running),
                    listed()
                ))
            });
    };
    match parse_rollback_target(family, region, to)? {
        // An ARN must be one of ours exactly: the same account, region and family.
        RollbackTarget::Arn(arn) => revisions.iter().find(|listed| *listed == arn).cloned().ok_or_else(|| {
            Error::Input(format!(
                "`--to` `{}` is not an active revision of `{family}` in this account and region; the newest are: {}",
                arn.escape_debug(),
                listed()
            ))
        }),
        RollbackTarget::Number(wanted) => revisions
            .iter()
            .find(|arn| revision_number(arn) == Some(wanted))
            .cloned()
            .ok_or_else(|| {
                Error::Input(format!(
                    "`{family}:{wanted}` is not an active revision; the newest are: {}",
                    listed()
                ))
            }),
    }
}

/// The revision that `rollback --to` names.
#[derive(Debug, PartialEq, Eq)]
pub enum RollbackTarget<'a> {
    Arn(&'a str),
    Number(u32),
}

/// Reads `rollback --to`: a revision number such as `12`, `{family}:12`, or the ARN of a revision
/// of `family` in `region`. Needs no AWS call, so a typo fails before the command reads the stack.
pub fn parse_rollback_target<'a>(family: &str, region: &str, to: &'a str) -> Result<RollbackTarget<'a>> {
    // ECS numbers revisions from 1.
    let number = |text: &str| {
        (!text.is_empty() && text.len() <= 9 && text.chars().all(|c| c.is_ascii_digit()))
            .then(|| text.parse::<u32>().ok())
            .flatten()
            .filter(|number| *number > 0)
    };
    if to.starts_with("arn:") {
        let parts: Vec<&str> = to.split(':').collect();
        let ours = matches!(
            parts.as_slice(),
            ["arn", partition, "ecs", arn_region, account, resource, revision]
                if !partition.is_empty()
                    && *arn_region == region
                    && account.len() == 12
                    && account.chars().all(|c| c.is_ascii_digit())
                    && resource.strip_prefix("task-definition/") == Some(family)
                    && number(revision).is_some()
        );
        return if ours {
            Ok(RollbackTarget::Arn(to))
        } else {
            Err(Error::Input(format!(
                "`--to` `{}` is not the ARN of a revision of `{family}` in region `{region}`, such as `arn:aws:ecs:{region}:123456789012:task-definition/{family}:12`; or give the revision number alone",
                to.escape_debug()
            )))
        };
    }
    let wanted = match to.split_once(':') {
        None => number(to),
        Some((name, revision)) if name == family => number(revision),
        Some(_) => None,
    };
    wanted.map(RollbackTarget::Number).ok_or_else(|| {
        Error::Input(format!(
            "invalid `--to` `{}`; give a revision number from 1, such as `12`, `{family}:12` or the revision's ARN",
            to.escape_debug()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGION: &str = "ap-northeast-1";

    fn arns(numbers: &[u32]) -> Vec<String> {
        numbers
            .iter()
            .map(|n| format!("arn:aws:ecs:ap-northeast-1:123456789012:task-definition/app-prod:{n}"))
            .collect()
    }

    #[test]
    fn rollback_target_is_read_without_aws() {
        assert_eq!(parse_rollback_target("app-prod", REGION, "12").unwrap(), RollbackTarget::Number(12));
        assert_eq!(parse_rollback_target("app-prod", REGION, "app-prod:3").unwrap(), RollbackTarget::Number(3));
        let arn = "arn:aws:ecs:ap-northeast-1:123456789012:task-definition/app-prod:4";
        assert_eq!(parse_rollback_target("app-prod", REGION, arn).unwrap(), RollbackTarget::Arn(arn));
        for bad in ["", "0", "00", "app-prod:0", "+6", "-1", "1.5", "other:3", "app-prod:", "9999999999", "１２"] {
            let error = parse_rollback_target("app-prod", REGION, bad).unwrap_err().to_string();
            assert!(error.contains("invalid `--to`"), "{bad}: {error}");
        }
        for bad in [
            "arn:x",
            "arn:aws:ecs:us-east-1:123456789012:task-definition/app-prod:4",
            "arn:aws:ecs:ap-northeast-1:123456789012:task-definition/other:4",
            "arn:aws:ecs:ap-northeast-1:1234:task-definition/app-prod:4",
            "arn:aws:ecs:ap-northeast-1:123456789012:task-definition/app-prod:0",
            "arn:aws:ecs:ap-northeast-1:123456789012:service/app-prod:4",
        ] {
            let error = parse_rollback_target("app-prod", REGION, bad).unwrap_err().to_string();
            assert!(error.contains("is not the ARN of a revision of `app-prod`"), "{bad}: {error}");
        }
    }

    #[test]
    fn rollback_goes_to_the_newest_older_revision() {
        let revisions = arns(&[3, 5, 6, 9]);
        assert!(choose_rollback("app-prod", REGION, &revisions, &revisions[3], None).unwrap().ends_with(":6"));
        assert!(choose_rollback("app-prod", REGION, &revisions, "app-prod:6", None).unwrap().ends_with(":5"));
        let error = choose_rollback("app-prod", REGION, &revisions, &revisions[0], None).unwrap_err().to_string();
        assert!(error.contains("oldest revision"), "{error}");
    }

    #[test]
    fn rollback_to_accepts_number_family_and_arn() {
        let revisions = arns(&[3, 5, 6]);
        for to in ["5", "app-prod:5", revisions[1].as_str()] {
            assert_eq!(choose_rollback("app-prod", REGION, &revisions, &revisions[2], Some(to)).unwrap(), revisions[1]);
        }
        let missing = choose_rollback("app-prod", REGION, &revisions, &revisions[2], Some("4")).unwrap_err().to_string();
        assert!(missing.contains("`app-prod:4` is not an active revision"), "{missing}");
        assert!(missing.contains("app-prod:6"), "{missing}");
        for bad in [
            "other:5",
            "five",
            "-1",
            "+5",
            "",
            "garbage/app-prod:5",
            "arn:aws:ecs:us-east-1:999999999999:task-definition/app-prod:5",
        ] {
            let error = choose_rollback("app-prod", REGION, &revisions, &revisions[2], Some(bad)).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{bad}: {error}");
        }
    }
}
