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
    pub url: String,
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
            url,
        });
    };

    let spec = match found.task_definition() {
        Some(arn) => super::describe_task_definition(cx, arn).await?.as_ref().and_then(TaskSpec::observed),
        None => None,
    };
    let version = spec.as_ref().and_then(|spec| {
        spec.environment
            .iter()
            .find(|(name, _)| name == "APP_VERSION")
            .map(|(_, value)| value.clone())
    });
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
        url,
    })
}
