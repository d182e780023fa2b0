//! The rollout after the stack converged: bundle → image → task definition → service → wait →
//! live health check.

pub mod bundle;
pub mod health;
pub mod image;
pub mod service;
pub mod status;
pub mod task_definition;

use aws_sdk_ecs::types::{Service, TaskDefinition};

use crate::error::{Error, Result};
use crate::plan::{Change, Cx};
use bundle::Bundle;
use task_definition::TaskSpec;

const IMAGE: &str = "ecr:image";
const TASK_DEFINITION: &str = "ecs:task-definition";

/// Which image to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageChoice {
    /// Bundle `build.source_dir` and build it unless its tag already exists.
    Build,
    /// Run this image as given and skip the build.
    Uri(String),
}

/// The image and version a rollout would run, without building anything.
struct Target {
    image: String,
    version: String,
    needs_build: Option<Bundle>,
}

async fn target(cx: &Cx, choice: &ImageChoice) -> Result<Target> {
    if let ImageChoice::Uri(uri) = choice {
        return Ok(Target {
            image: uri.clone(),
            version: image_version(uri),
            needs_build: None,
        });
    }
    let bundle = bundle::create(&cx.manifest.build.source_dir, &cx.manifest.build.dockerfile)?;
    let tag = bundle.image_tag();
    let repository_uri = cx.outputs().repository_uri.clone();
    let digest = match &repository_uri {
        Some(_) => image::find_digest(cx, &cx.names.repository(), &tag).await?,
        None => None,
    };
    Ok(match (repository_uri, digest) {
        (Some(uri), Some(digest)) => Target {
            image: format!("{uri}@{digest}"),
            version: tag,
            needs_build: None,
        },
        _ => Target {
            image: format!("(image `{tag}`, known after the build)"),
            version: tag,
            needs_build: Some(bundle),
        },
    })
}

/// The version `/health` reports for an image given as is: its digest, its tag, or `latest`.
fn image_version(uri: &str) -> String {
    if let Some((_, digest)) = uri.split_once('@') {
        return digest.to_owned();
    }
    let last_segment = uri.rsplit('/').next().unwrap_or(uri);
    match last_segment.split_once(':') {
        Some((_, tag)) => tag.to_owned(),
        None => "latest".to_owned(),
    }
}

/// The current service and the spec of the task definition it runs.
async fn current(cx: &Cx) -> Result<(Option<Service>, Option<TaskSpec>)> {
    let Some(service) = service::find(cx).await? else {
        return Ok((None, None));
    };
    let Some(arn) = service.task_definition() else {
        return Ok((Some(service), None));
    };
    let definition = describe_task_definition(cx, arn).await?;
    let spec = definition.as_ref().and_then(TaskSpec::observed);
    Ok((Some(service), spec))
}

pub(crate) async fn describe_task_definition(cx: &Cx, arn: &str) -> Result<Option<TaskDefinition>> {
    let described = cx
        .aws
        .ecs
        .describe_task_definition()
        .task_definition(arn)
        .send()
        .await
        .map_err(|e| Error::aws("describe task definition", arn, e))?;
    Ok(described.task_definition().cloned())
}

/// Reports what a rollout would change, without building or registering anything.
pub async fn plan(cx: &Cx, choice: &ImageChoice) -> Result<Vec<Change>> {
    let target = target(cx, choice).await?;
    let (service, current_spec) = current(cx).await?;
    let desired = TaskSpec::desired(cx, &target.image, &target.version);
    let mut changes = Vec::new();

    if target.needs_build.is_some() {
        changes.push(Change::create(IMAGE, &target.version));
    }
    let family = cx.names.task_family();
    let new_revision = match &current_spec {
        None => {
            changes.push(Change::create(TASK_DEFINITION, &family));
            true
        }
        Some(current) => {
            let fields = desired.differences(current);
            let differs = !fields.is_empty();
            changes.extend(Change::update(TASK_DEFINITION, &family, fields));
            differs
        }
    };

    match &service {
        None => changes.push(Change::create(service::SERVICE, cx.names.service())),
        Some(service) => {
            let running = service.task_definition().unwrap_or_default();
            let next = if new_revision { format!("{family}:(next revision)") } else { running.to_owned() };
            changes.extend(Change::update(service::SERVICE, cx.names.service(), service::differences(cx, service, &next)));
        }
    }
    Ok(changes)
}

/// Builds the image if needed, registers a task definition when it changed, updates the
/// service, waits for ECS to finish the deployment, and checks the live `/health`.
pub async fn apply(cx: &Cx, choice: &ImageChoice) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    let mut target = target(cx, choice).await?;
    match target.needs_build.take() {
        Some(bundle) => {
            let built = image::ensure(cx, &bundle).await?;
            target.image = built.uri;
            changes.push(Change::create(IMAGE, &target.version));
        }
        None if *choice == ImageChoice::Build => {
            cx.progress.say(format!("image `{}` already exists, skipping the build", target.version));
        }
        None => cx.progress.say(format!("running image `{}` as given, without a build", target.image)),
    }

    let (service, current_spec) = current(cx).await?;
    let desired = TaskSpec::desired(cx, &target.image, &target.version);
    let task_definition = match (&service, &current_spec) {
        (Some(service), Some(current)) if *current == desired => service.task_definition().unwrap_or_default().to_owned(),
        _ => {
            let arn = task_definition::register(cx, &desired).await?;
            changes.push(Change::create(TASK_DEFINITION, task_definition::short_arn(&arn)));
            arn
        }
    };

    changes.extend(service::apply(cx, service.as_ref(), &task_definition).await?);
    service::wait_until_stable(cx, &task_definition).await?;
    health::check(cx).await?;
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::image_version;

    #[test]
    fn image_version_forms() {
        assert_eq!(image_version("repo/app:1.2"), "1.2");
        assert_eq!(image_version("localhost:5000/app"), "latest");
        assert_eq!(image_version("localhost:5000/app:v3"), "v3");
        assert_eq!(image_version("repo/app@sha256:abc"), "sha256:abc");
    }
}
