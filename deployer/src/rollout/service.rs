//! The ECS service: created or updated to run a task definition, then watched until ECS reports
//! the new deployment complete.

use std::time::Duration;

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, DeploymentCircuitBreaker, DeploymentConfiguration, DeploymentRolloutState,
    LaunchType, LoadBalancer, NetworkConfiguration, PropagateTags, Service,
};

use crate::error::{Error, Result};
use crate::plan::{diff_field, Change, Cx, FieldChange};
use crate::resources::ecs_tags;
use crate::wait::poll_until;

pub const SERVICE: &str = "ecs:service";

const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Returns the active service of ours, if any.
pub async fn find(cx: &Cx) -> Result<Option<Service>> {
    let name = cx.names.service();
    let found = cx
        .aws
        .ecs
        .describe_services()
        .cluster(cx.names.cluster())
        .services(&name)
        .send()
        .await;
    let found = match found {
        Ok(found) => found,
        // A cluster that does not exist yet has no services.
        Err(error) if error.as_service_error().is_some_and(|e| e.is_cluster_not_found_exception()) => return Ok(None),
        Err(error) => return Err(Error::aws("describe ECS service", &name, error)),
    };
    Ok(found
        .services()
        .iter()
        .find(|service| service.status() == Some("ACTIVE"))
        .cloned())
}

/// The changes that bring `current` to the manifest's count running `task_definition`.
pub fn differences(cx: &Cx, current: &Service, task_definition: &str) -> Vec<FieldChange> {
    let mut fields = Vec::new();
    diff_field(
        &mut fields,
        "desired_count",
        current.desired_count(),
        cx.manifest.service.desired_count as i32,
    );
    diff_field(
        &mut fields,
        "task_definition",
        current.task_definition().map(super::task_definition::short_arn),
        Some(super::task_definition::short_arn(task_definition)),
    );
    fields
}

/// Creates the service, or updates it when `differences` is not empty or a secret changed.
/// Returns the change made.
pub async fn apply(cx: &Cx, current: Option<&Service>, task_definition: &str) -> Result<Option<Change>> {
    let name = cx.names.service();
    let Some(current) = current else {
        create(cx, task_definition).await?;
        return Ok(Some(Change::create(SERVICE, &name)));
    };
    let mut fields = differences(cx, current, task_definition);
    let secrets_changed = cx.outputs().secrets_changed;
    if secrets_changed {
        fields.push(FieldChange {
            field: "tasks".into(),
            from: "(running with the old secret values)".into(),
            to: "(replaced to read the new values)".into(),
        });
    }
    let Some(change) = Change::update(SERVICE, &name, fields) else {
        return Ok(None);
    };
    cx.aws
        .ecs
        .update_service()
        .cluster(cx.names.cluster())
        .service(&name)
        .task_definition(task_definition)
        .desired_count(cx.manifest.service.desired_count as i32)
        .network_configuration(network_configuration(cx)?)
        .deployment_configuration(deployment_configuration())
        .force_new_deployment(secrets_changed)
        .send()
        .await
        .map_err(|e| Error::aws("update ECS service", &name, e))?;
    cx.progress.say(format!("updated {SERVICE} `{name}`"));
    Ok(Some(change))
}

async fn create(cx: &Cx, task_definition: &str) -> Result<()> {
    let name = cx.names.service();
    let target_group = cx
        .outputs()
        .target_group_arn
        .clone()
        .ok_or_else(|| Error::Failed("internal error: no target group for the service".into()))?;
    cx.aws
        .ecs
        .create_service()
        .cluster(cx.names.cluster())
        .service_name(&name)
        .task_definition(task_definition)
        .desired_count(cx.manifest.service.desired_count as i32)
        .launch_type(LaunchType::Fargate)
        .network_configuration(network_configuration(cx)?)
        .load_balancers(
            LoadBalancer::builder()
                .target_group_arn(target_group)
                .container_name(cx.names.container())
                .container_port(i32::from(cx.manifest.service.port))
                .build(),
        )
        .health_check_grace_period_seconds(30)
        .deployment_configuration(deployment_configuration())
        .propagate_tags(PropagateTags::Service)
        .set_tags(Some(ecs_tags(cx)))
        .send()
        .await
        .map_err(|e| Error::aws("create ECS service", &name, e))?;
    cx.progress.say(format!("created {SERVICE} `{name}`"));
    Ok(())
}

fn network_configuration(cx: &Cx) -> Result<NetworkConfiguration> {
    let outputs = cx.outputs();
    let security_group = outputs
        .task_security_group_id
        .clone()
        .ok_or_else(|| Error::Failed("internal error: no task security group for the service".into()))?;
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(outputs.private_subnet_ids.clone()))
        .security_groups(security_group)
        .assign_public_ip(AssignPublicIp::Disabled)
        .build()
        .map_err(|e| Error::Failed(format!("internal error: invalid network configuration: {e}")))?;
    Ok(NetworkConfiguration::builder().awsvpc_configuration(vpc).build())
}

/// Rolling updates that keep full capacity, with the circuit breaker rolling back a failed deployment.
fn deployment_configuration() -> DeploymentConfiguration {
    DeploymentConfiguration::builder()
        .minimum_healthy_percent(100)
        .maximum_percent(200)
        .deployment_circuit_breaker(DeploymentCircuitBreaker::builder().enable(true).rollback(true).build())
        .build()
}

/// Waits until one deployment remains, it runs `task_definition` and its running count is the
/// desired count. A failed rollout ends the wait at once with ECS's reason.
pub async fn wait_until_stable(cx: &Cx, task_definition: &str) -> Result<()> {
    let name = cx.names.service();
    cx.progress.say(format!("waiting for {SERVICE} `{name}` to finish its deployment"));
    poll_until(
        &format!("{SERVICE} `{name}` to reach a steady state"),
        cx.manifest.deploy.timeout,
        POLL_INTERVAL,
        || async {
            let service = find(cx)
                .await?
                .ok_or_else(|| Error::Failed(format!("{SERVICE} `{name}` disappeared during the deployment")))?;
            check_deployment(&service, task_definition)
        },
    )
    .await?;
    cx.progress.say(format!("{SERVICE} `{name}` is stable"));
    Ok(())
}

fn check_deployment(service: &Service, task_definition: &str) -> Result<Option<()>> {
    let deployments = service.deployments();
    let primary = deployments.iter().find(|deployment| deployment.status() == Some("PRIMARY"));
    let Some(primary) = primary else {
        return Ok(None);
    };
    if primary.rollout_state() == Some(&DeploymentRolloutState::Failed) {
        return Err(Error::Failed(format!(
            "the deployment of `{}` failed: {}",
            super::task_definition::short_arn(task_definition),
            primary.rollout_state_reason().unwrap_or("ECS gave no reason")
        )));
    }
    // The service's task definition is the revision ECS converges to: a circuit-breaker
    // rollback sets it back to the previous one.
    if service.task_definition() != Some(task_definition) {
        return Err(Error::Failed(format!(
            "ECS rolled the service back to `{}`; the deployment of `{}` failed",
            service.task_definition().map(super::task_definition::short_arn).unwrap_or("unknown"),
            super::task_definition::short_arn(task_definition)
        )));
    }
    let steady = deployments.len() == 1 && primary.running_count() == service.desired_count();
    Ok(steady.then_some(()))
}

/// Deletes the service and deregisters every revision of the task definition family.
pub async fn destroy(cx: &Cx) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    let name = cx.names.service();
    if find(cx).await?.is_some() {
        cx.aws
            .ecs
            .delete_service()
            .cluster(cx.names.cluster())
            .service(&name)
            .force(true)
            .send()
            .await
            .map_err(|e| Error::aws("delete ECS service", &name, e))?;
        cx.progress.say(format!("deleted {SERVICE} `{name}`"));
        changes.push(Change::delete(SERVICE, &name));
    }

    let family = cx.names.task_family();
    let mut pages = cx
        .aws
        .ecs
        .list_task_definitions()
        .family_prefix(&family)
        .into_paginator()
        .items()
        .send();
    let mut arns = Vec::new();
    while let Some(arn) = pages.next().await {
        let arn = arn.map_err(|e| Error::aws("list the task definitions of", &family, e))?;
        // The prefix also matches other families that start with ours, such as `app-prod2`.
        if super::task_definition::short_arn(&arn).rsplit_once(':').map(|(name, _)| name) == Some(family.as_str()) {
            arns.push(arn);
        }
    }
    for arn in arns {
        cx.aws
            .ecs
            .deregister_task_definition()
            .task_definition(&arn)
            .send()
            .await
            .map_err(|e| Error::aws("deregister task definition", &arn, e))?;
        changes.push(Change::delete("ecs:task-definition", super::task_definition::short_arn(&arn)));
    }
    Ok(changes)
}
