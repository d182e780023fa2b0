//! The ECS service: created or updated to run a task definition, then watched until ECS reports
//! the new deployment complete.

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, DeploymentCircuitBreaker, DeploymentConfiguration, LaunchType, LoadBalancer,
    NetworkConfiguration, PropagateTags, Service, TaskDefinitionStatus,
};

use crate::error::{Error, Result};

/// The resource kind of a task definition revision in plan output.
const TASK_DEFINITION: &str = "ecs:task-definition";
/// The maximum number of revisions in one `DeleteTaskDefinitions` request.
const MAX_DELETE_BATCH: usize = 10;
use crate::plan::{diff_field, Change, Cx, FieldChange};
use crate::resources::ecs_tags;

pub const SERVICE: &str = "ecs:service";

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
    let updated = cx
        .aws
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
    note_started_deployment(cx, updated.service());
    cx.progress.say(format!("updated {SERVICE} `{name}`"));
    Ok(Some(change))
}

async fn create(cx: &Cx, task_definition: &str) -> Result<()> {
    let name = cx.names.service();
    let target_group = cx
        .outputs()
        .target_group_arn
        .clone()
        .ok_or_else(|| Error::Internal("no target group for the service".into()))?;
    let created = cx
        .aws
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
    note_started_deployment(cx, created.service());
    cx.progress.say(format!("created {SERVICE} `{name}`"));
    Ok(())
}

fn network_configuration(cx: &Cx) -> Result<NetworkConfiguration> {
    let outputs = cx.outputs();
    let security_group = outputs
        .task_security_group_id
        .clone()
        .ok_or_else(|| Error::Internal("no task security group for the service".into()))?;
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(outputs.private_subnet_ids.clone()))
        .security_groups(security_group)
        .assign_public_ip(AssignPublicIp::Disabled)
        .build()
        .map_err(|e| Error::Internal(format!("invalid network configuration: {e}")))?;
    Ok(NetworkConfiguration::builder().awsvpc_configuration(vpc).build())
}

/// Keeps the id of the PRIMARY deployment in `service`, as ECS returned it, for the wait that
/// follows.
fn note_started_deployment(cx: &Cx, service: Option<&Service>) {
    cx.outputs().started_deployment = service
        .into_iter()
        .flat_map(|service| service.deployments())
        .find(|deployment| deployment.status() == Some("PRIMARY"))
        .and_then(|deployment| deployment.id())
        .map(str::to_owned);
}

/// Rolling updates that keep full capacity, with the circuit breaker rolling back a failed deployment.
fn deployment_configuration() -> DeploymentConfiguration {
    DeploymentConfiguration::builder()
        .minimum_healthy_percent(100)
        .maximum_percent(200)
        .deployment_circuit_breaker(DeploymentCircuitBreaker::builder().enable(true).rollback(true).build())
        .build()
}

/// Points the service at `task_definition` and nothing else: the rollback after a failed
/// deployment, or `deployer rollback`, which may also go forward to a newer revision.
pub async fn switch_to(cx: &Cx, task_definition: &str) -> Result<()> {
    let name = cx.names.service();
    let updated = cx
        .aws
        .ecs
        .update_service()
        .cluster(cx.names.cluster())
        .service(&name)
        .task_definition(task_definition)
        .send()
        .await
        .map_err(|e| Error::aws("switch ECS service", &name, e))?;
    note_started_deployment(cx, updated.service());
    cx.progress.say(format!(
        "switching {SERVICE} `{name}` to `{}`",
        super::task_definition::short_arn(task_definition)
    ));
    Ok(())
}

/// Deletes the service, then every revision of the task definition family: ECS can delete only
/// deregistered (INACTIVE) revisions, so each active one is deregistered first.
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

    let active = super::task_definition::revisions(cx).await?;
    for arn in &active {
        cx.aws
            .ecs
            .deregister_task_definition()
            .task_definition(arn)
            .send()
            .await
            .map_err(|e| Error::aws("deregister task definition", arn, e))?;
        changes.push(Change::delete(TASK_DEFINITION, super::task_definition::short_arn(arn)));
    }

    // Revisions deregistered by an earlier run, or by hand, are listed as changes too.
    let inactive = super::task_definition::revisions_with_status(cx, TaskDefinitionStatus::Inactive).await?;
    for batch in inactive.chunks(MAX_DELETE_BATCH) {
        let output = cx
            .aws
            .ecs
            .delete_task_definitions()
            .set_task_definitions(Some(batch.to_vec()))
            .send()
            .await
            .map_err(|e| Error::aws("delete task definitions", cx.names.task_family(), e))?;
        if let Some(failure) = output.failures().first() {
            return Err(Error::Failed(format!(
                "ECS did not delete task definition `{}`: {}",
                failure.arn().unwrap_or_default(),
                failure.reason().unwrap_or("ECS gave no reason")
            )));
        }
        for arn in batch.iter().filter(|arn| !active.contains(arn)) {
            changes.push(Change::delete(TASK_DEFINITION, super::task_definition::short_arn(arn)));
        }
    }
    Ok(changes)
}
