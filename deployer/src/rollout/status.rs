//! The running state: the service's task definition and image, its deployments and task counts.

use serde::Serialize;

use super::service;
use super::task_definition::{short_arn, TaskSpec};
use crate::error::Result;
use crate::plan::Cx;

/// The state of the running app, as `deployer status` reports it.
#[derive(Debug, Serialize)]
pub struct Status {
    pub service: String,
    /// `false` when the service does not exist yet.
    pub exists: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `APP_VERSION` of the running task definition: the bundle's image tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub desired: i32,
    pub running: i32,
    pub pending: i32,
    pub deployments: Vec<Deployment>,
    /// The load balancer's view of the tasks, such as `10.0.1.5:8000 healthy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<String>,
    pub url: String,
    /// The result of the last `up`, `update` or `rollback`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_deploy: Option<super::history::LastDeploy>,
}

#[derive(Debug, Serialize)]
pub struct Deployment {
    pub status: String,
    pub task_definition: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout_state: Option<String>,
    pub running: i32,
    pub desired: i32,
}

/// Reads the service and the task definition it runs. Makes no change.
pub async fn read(cx: &Cx) -> Result<Status> {
    let url = format!("https://{}", cx.manifest.https.domain);
    let last_deploy = super::history::read(cx).await.unwrap_or_else(|error| {
        tracing::debug!(error = %crate::error::cause_chain(&error), "no deploy record");
        None
    });
    let Some(found) = service::find(cx).await? else {
        return Ok(Status {
            service: cx.names.service(),
            exists: false,
            task_definition: None,
            image: None,
            version: None,
            desired: 0,
            running: 0,
            pending: 0,
            deployments: Vec::new(),
            targets: None,
            url,
            last_deploy,
        });
    };

    let spec = match found.task_definition() {
        Some(arn) => super::describe_task_definition(cx, arn)
            .await?
            .as_ref()
            .and_then(|definition| TaskSpec::observed(definition, cx.names.container())),
        None => None,
    };
    let version = spec.as_ref().and_then(TaskSpec::version);
    let targets = match target_group(cx, &found) {
        Some(arn) => {
            Some(super::watch::targets_text(&super::watch::target_health(cx, &arn).await?)).filter(|text| !text.is_empty())
        }
        None => None,
    };
    let deployments = found
        .deployments()
        .iter()
        .map(|deployment| Deployment {
            status: deployment.status().unwrap_or_default().to_owned(),
            task_definition: short_arn(deployment.task_definition().unwrap_or_default()).to_owned(),
            rollout_state: deployment.rollout_state().map(|state| state.as_str().to_owned()),
            running: deployment.running_count(),
            desired: deployment.desired_count(),
        })
        .collect();

    Ok(Status {
        service: cx.names.service(),
        exists: true,
        task_definition: found.task_definition().map(|arn| short_arn(arn).to_owned()),
        image: spec.as_ref().map(|spec| spec.image.clone()),
        version,
        desired: found.desired_count(),
        running: found.running_count(),
        pending: found.pending_count(),
        deployments,
        targets,
        url,
        last_deploy,
    })
}

/// Returns the target group the service registers its tasks in.
fn target_group(cx: &Cx, service: &aws_sdk_ecs::types::Service) -> Option<String> {
    let from_service = service.load_balancers().iter().find_map(|lb| lb.target_group_arn()).map(str::to_owned);
    from_service.or_else(|| cx.outputs().target_group_arn.clone())
}
