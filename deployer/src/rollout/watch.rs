//! Watches a deployment until ECS finishes it, and fails as soon as ECS reports that it will not:
//! a circuit-breaker rollback, a failed rollout, or tasks that keep stopping for one reason.
//! Along the way it prints the service's events, each stopped task with its reason and exit
//! codes, and changes in target health.

use std::collections::{BTreeMap, HashSet};

use aws_sdk_ecs::types::{DeploymentRolloutState, DesiredStatus, Service, Task};
use aws_sdk_elasticloadbalancingv2::types::TargetHealthDescription;
use tokio::time::Instant;

use super::service::{self, SERVICE};
use super::task_definition::short_arn;
use crate::error::{Error, Result};
use crate::plan::Cx;

/// The end of a watched deployment that did not fail outright.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The deployment is the only one and runs the desired count.
    Stable,
    /// The circuit breaker rolled the service back to `restored` (an ARN) for `reason`.
    RolledBackByEcs { reason: String, restored: String },
}

/// The cause of stopped tasks of the new revision. Some causes never fix themselves, so fewer stops are
/// enough to give up.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum StopCause {
    ImagePull,
    ResourceInitialization,
    LoadBalancerHealthCheck,
    ContainerHealthCheck,
    EssentialContainerExited,
    Other,
}

impl StopCause {
    fn from_task(task: &Task) -> Self {
        let reason = task.stopped_reason().unwrap_or_default();
        let container_reasons = task.containers().iter().filter_map(|c| c.reason()).collect::<Vec<_>>().join(" ");
        let text = format!("{reason} {container_reasons}");
        if text.contains("CannotPullContainerError") || text.contains("pull image") {
            StopCause::ImagePull
        } else if text.contains("ResourceInitializationError") {
            StopCause::ResourceInitialization
        } else if text.contains("ELB health checks") {
            StopCause::LoadBalancerHealthCheck
        } else if text.contains("health checks") {
            StopCause::ContainerHealthCheck
        } else if text.contains("Essential container in task exited") {
            StopCause::EssentialContainerExited
        } else {
            StopCause::Other
        }
    }

    /// Stopped tasks with this cause after which the deployer stops waiting.
    fn limit(&self) -> usize {
        match self {
            StopCause::ImagePull | StopCause::ResourceInitialization => 2,
            _ => 3,
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            StopCause::ImagePull => "the image could not be pulled",
            StopCause::ResourceInitialization => "the task could not be set up (secrets, logs or network)",
            StopCause::LoadBalancerHealthCheck => "the load balancer's health checks failed",
            StopCause::ContainerHealthCheck => "the container's health check failed",
            StopCause::EssentialContainerExited => "the app exited",
            StopCause::Other => "tasks stopped",
        }
    }

    fn hint(&self, cx: &Cx) -> String {
        match self {
            StopCause::ImagePull => "check that the image exists and the execution role may pull it".to_owned(),
            StopCause::ResourceInitialization => {
                "check the execution role's access to the secrets and the NAT route of the private subnets".to_owned()
            }
            _ => format!("read the app's log with `deployer logs` (log group `{}`)", cx.names.app_log_group()),
        }
    }
}

/// The events and tasks the watch has already reported, so that each is printed once.
#[derive(Debug, Default)]
struct Seen {
    events: HashSet<String>,
    stopped_tasks: HashSet<String>,
    stops: BTreeMap<StopCause, Vec<String>>,
    targets: Option<String>,
    primed: bool,
    tasks_primed: bool,
}

/// Waits until the service runs `task_definition` steadily, failing fast on what ECS reports.
/// The deployment's own bound is `deploy.timeout`.
pub async fn until_stable(cx: &Cx, task_definition: &str) -> Result<Outcome> {
    let name = cx.names.service();
    let revision = short_arn(task_definition).to_owned();
    cx.progress.say(format!("waiting for {SERVICE} `{name}` to run `{revision}`"));
    let deadline = Instant::now() + cx.manifest.deploy.timeout;
    let started = cx.outputs().started_deployment.take();
    let mut seen = Seen::default();
    loop {
        let service = service::find(cx)
            .await?
            .ok_or_else(|| Error::Failed(format!("{SERVICE} `{name}` disappeared during the deployment")))?;
        report_events(cx, &service, &mut seen);
        if let Some(outcome) = check_deployment(&service, task_definition, started.as_deref())? {
            if outcome == Outcome::Stable {
                cx.progress.say(format!("{SERVICE} `{name}` runs `{revision}` steadily"));
            }
            return Ok(outcome);
        }
        check_stopped_tasks(cx, task_definition, &mut seen).await?;
        report_targets(cx, &mut seen).await?;
        if Instant::now() >= deadline {
            return Err(Error::Failed(format!(
                "{SERVICE} `{name}` did not finish the deployment of `{revision}` within {}: {}",
                humantime::format_duration(cx.manifest.deploy.timeout),
                progress_text(&service)
            )));
        }
        tokio::time::sleep(cx.timing.service_poll.min(deadline - Instant::now())).await;
    }
}

/// Reads the deployment state: `Some` when it ended, `None` while it runs, an error when ECS
/// marked it failed without a rollback. `started` is the id of the deployment that the update
/// started, when ECS returned one: until ECS reports it as PRIMARY, the read is stale.
pub fn check_deployment(service: &Service, task_definition: &str, started: Option<&str>) -> Result<Option<Outcome>> {
    let deployments = service.deployments();
    let Some(primary) = deployments.iter().find(|deployment| deployment.status() == Some("PRIMARY")) else {
        return Ok(None);
    };
    let revision = short_arn(task_definition);
    // The service's task definition is the revision ECS converges to: a circuit-breaker
    // rollback sets it back to the previous one.
    if let Some(running) = service.task_definition().filter(|running| *running != task_definition) {
        let reason = deployments
            .iter()
            .filter(|deployment| deployment.task_definition() == Some(task_definition))
            .find_map(|deployment| deployment.rollout_state_reason())
            .unwrap_or("ECS gave no reason");
        return Ok(Some(Outcome::RolledBackByEcs {
            reason: format!("the deployment of `{revision}` failed and ECS rolled it back: {reason}"),
            restored: running.to_owned(),
        }));
    }
    if started.is_some_and(|started| primary.id() != Some(started)) {
        return Ok(None);
    }
    if primary.rollout_state() == Some(&DeploymentRolloutState::Failed) {
        return Err(Error::Failed(format!(
            "the deployment of `{revision}` failed: {}",
            primary.rollout_state_reason().unwrap_or("ECS gave no reason")
        )));
    }
    let completed = matches!(primary.rollout_state(), None | Some(DeploymentRolloutState::Completed));
    let steady = completed && deployments.len() == 1 && primary.running_count() == service.desired_count();
    Ok(steady.then_some(Outcome::Stable))
}

fn progress_text(service: &Service) -> String {
    let deployments = service
        .deployments()
        .iter()
        .map(|deployment| {
            format!(
                "{} `{}` {} ({} running, {} pending of {})",
                deployment.status().unwrap_or("?"),
                short_arn(deployment.task_definition().unwrap_or_default()),
                deployment.rollout_state().map(|state| state.as_str()).unwrap_or("-"),
                deployment.running_count(),
                deployment.pending_count(),
                deployment.desired_count()
            )
        })
        .collect::<Vec<_>>();
    if deployments.is_empty() {
        "no deployment".to_owned()
    } else {
        deployments.join("; ")
    }
}

/// Prints service events that arrived since the watch started. The first read only marks the
/// older events as seen.
fn report_events(cx: &Cx, service: &Service, seen: &mut Seen) {
    let mut fresh = Vec::new();
    for event in service.events() {
        let Some(id) = event.id() else { continue };
        if seen.events.insert(id.to_owned()) && seen.primed {
            fresh.push(event.message().unwrap_or_default());
        }
    }
    seen.primed = true;
    // ECS lists the newest event first.
    for message in fresh.into_iter().rev() {
        cx.progress.say(format!("ecs: {message}"));
    }
}

/// Reads the tasks of `task_definition` that stopped, prints each once and fails when one cause
/// repeats past its limit. ECS lists stopped tasks for about an hour, so those already stopped
/// at the first read belong to an earlier deployment, possibly of the same revision, and do not count.
async fn check_stopped_tasks(cx: &Cx, task_definition: &str, seen: &mut Seen) -> Result<()> {
    let cluster = cx.names.cluster();
    let listed = cx
        .aws
        .ecs
        .list_tasks()
        .cluster(&cluster)
        .service_name(cx.names.service())
        .desired_status(DesiredStatus::Stopped)
        .send()
        .await
        .map_err(|e| Error::aws("list the stopped tasks of", cx.names.service(), e))?;
    if !seen.tasks_primed {
        seen.tasks_primed = true;
        seen.stopped_tasks.extend(listed.task_arns().iter().cloned());
        return Ok(());
    }
    let fresh: Vec<String> =
        listed.task_arns().iter().filter(|arn| !seen.stopped_tasks.contains(*arn)).take(100).cloned().collect();
    if fresh.is_empty() {
        return Ok(());
    }
    let described = cx
        .aws
        .ecs
        .describe_tasks()
        .cluster(&cluster)
        .set_tasks(Some(fresh.clone()))
        .send()
        .await
        .map_err(|e| Error::aws("describe the stopped tasks of", cx.names.service(), e))?;
    seen.stopped_tasks.extend(fresh);

    for task in described.tasks() {
        // Tasks of the old revision stop as the deployment replaces them; that is expected.
        if task.task_definition_arn() != Some(task_definition) {
            continue;
        }
        let text = stopped_task_text(task);
        cx.progress.say(format!("task stopped: {text}"));
        let cause = StopCause::from_task(task);
        let stops = seen.stops.entry(cause.clone()).or_default();
        stops.push(text);
        if stops.len() >= cause.limit() {
            return Err(Error::Failed(format!(
                "{} tasks of `{}` stopped because {}; the last: {}; {}",
                stops.len(),
                short_arn(task_definition),
                cause.describe(),
                stops.last().map(String::as_str).unwrap_or_default(),
                cause.hint(cx)
            )));
        }
    }
    Ok(())
}

/// `task 0123abcd: Essential container in task exited (container app exit code 1: ...)`.
pub fn stopped_task_text(task: &Task) -> String {
    let id = task.task_arn().unwrap_or_default().rsplit('/').next().unwrap_or_default();
    let containers = task
        .containers()
        .iter()
        .filter(|container| container.exit_code().is_some() || container.reason().is_some())
        .map(|container| {
            let mut text = format!("container {}", container.name().unwrap_or("?"));
            if let Some(code) = container.exit_code() {
                text.push_str(&format!(" exit code {code}"));
            }
            if let Some(reason) = container.reason() {
                text.push_str(&format!(": {reason}"));
            }
            text
        })
        .collect::<Vec<_>>();
    let reason = task.stopped_reason().unwrap_or("no reason given");
    if containers.is_empty() {
        format!("task {id}: {reason}")
    } else {
        format!("task {id}: {reason} ({})", containers.join("; "))
    }
}

/// Prints the load balancer's view of the targets when it changes.
async fn report_targets(cx: &Cx, seen: &mut Seen) -> Result<()> {
    let Some(target_group) = cx.outputs().target_group_arn.clone() else {
        return Ok(());
    };
    let text = targets_text(&target_health(cx, &target_group).await?);
    if seen.targets.as_deref() != Some(text.as_str()) {
        if !text.is_empty() {
            cx.progress.say(format!("targets: {text}"));
        }
        seen.targets = Some(text);
    }
    Ok(())
}

/// Reads the load balancer's health of every target in `target_group`.
pub async fn target_health(cx: &Cx, target_group: &str) -> Result<Vec<TargetHealthDescription>> {
    let health = cx
        .aws
        .elb
        .describe_target_health()
        .target_group_arn(target_group)
        .send()
        .await
        .map_err(|e| Error::aws("read the target health of", target_group, e))?;
    Ok(health.target_health_descriptions().to_vec())
}

/// Formats target health as `10.0.1.5:8000 healthy, 10.0.2.7:8000 unhealthy (Target.ResponseCodeMismatch)`.
pub fn targets_text(targets: &[TargetHealthDescription]) -> String {
    targets
        .iter()
        .map(|description| {
            let target = description
                .target()
                .map(|target| format!("{}:{}", target.id().unwrap_or("?"), target.port().unwrap_or_default()))
                .unwrap_or_default();
            let health = description.target_health();
            let state = health.and_then(|h| h.state()).map(|s| s.as_str()).unwrap_or("unknown");
            match health.and_then(|h| h.reason()) {
                Some(reason) => format!("{target} {state} ({})", reason.as_str()),
                None => format!("{target} {state}"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::Deployment;

    use super::*;

    const OLD: &str = "arn:aws:ecs:ap-northeast-1:123456789012:task-definition/app-prod:1";
    const NEW: &str = "arn:aws:ecs:ap-northeast-1:123456789012:task-definition/app-prod:2";

    fn primary(id: &str, task_definition: &str) -> Deployment {
        Deployment::builder()
            .id(id)
            .status("PRIMARY")
            .task_definition(task_definition)
            .rollout_state(DeploymentRolloutState::Completed)
            .running_count(1)
            .desired_count(1)
            .build()
    }

    fn service(task_definition: &str, deployment: Deployment) -> Service {
        Service::builder()
            .task_definition(task_definition)
            .desired_count(1)
            .deployments(deployment)
            .build()
    }

    #[test]
    fn stale_primary_is_not_stable() {
        // A read from before the update: the old deployment, complete, is still PRIMARY.
        let stale = service(NEW, primary("ecs-svc/1", OLD));
        assert_eq!(check_deployment(&stale, NEW, Some("ecs-svc/2")).unwrap(), None);
    }

    #[test]
    fn started_primary_is_stable() {
        let current = service(NEW, primary("ecs-svc/2", NEW));
        assert_eq!(check_deployment(&current, NEW, Some("ecs-svc/2")).unwrap(), Some(Outcome::Stable));
        // Without an id from the update, the count and the rollout state decide.
        assert_eq!(check_deployment(&current, NEW, None).unwrap(), Some(Outcome::Stable));
    }

    #[test]
    fn circuit_breaker_wins_over_stale_read() {
        let rolled_back = service(OLD, primary("ecs-svc/3", OLD));
        let outcome = check_deployment(&rolled_back, NEW, Some("ecs-svc/2")).unwrap();
        assert!(matches!(outcome, Some(Outcome::RolledBackByEcs { .. })), "{outcome:?}");
    }
}
