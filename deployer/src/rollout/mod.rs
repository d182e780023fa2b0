//! The rollout after the stack converged: bundle → image → task definition → service → watch →
//! live check, and the rollback when the new version fails after ECS switched to it.

pub mod build_log;
pub mod bundle;
pub mod history;
pub mod image;
pub mod live;
pub mod reference;
pub mod service;
pub mod status;
pub mod task_definition;
pub mod watch;

use aws_sdk_ecs::types::{Service, TaskDefinition};
use serde::Serialize;

use crate::error::{cause_chain, Error, Result};
use crate::plan::{Change, Cx};
use bundle::Bundle;
use task_definition::{short_arn, TaskSpec};
use watch::Outcome;

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
        return given_image(cx, uri).await;
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

/// Resolves the image `--image` names. One in the app's own repository must exist there, and runs
/// pinned to its digest. Any other runs as given, because the deployer cannot read other registries.
async fn given_image(cx: &Cx, uri: &str) -> Result<Target> {
    let as_given = Target {
        image: uri.to_owned(),
        version: image_version(uri),
        needs_build: None,
    };
    let reference = reference::parse(uri).map_err(|problem| Error::Input(format!("invalid `--image` `{uri}`: {problem}")))?;
    let ours = cx.outputs().repository_uri.clone().filter(|ours| *ours == reference.repository);
    let Some(ours) = ours else {
        return Ok(as_given);
    };
    let repository = cx.names.repository();
    match image::find(cx, &repository, reference.tag.as_deref(), reference.digest.as_deref()).await? {
        Some(digest) => Ok(Target {
            image: format!("{ours}@{digest}"),
            ..as_given
        }),
        None => Err(Error::Input(format!(
            "`--image` `{uri}` is not in the repository `{repository}`; run `aws ecr list-images --repository-name {repository}` to see what it has, or leave out `--image` to build the source"
        ))),
    }
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

/// Reads the current service and the task definition it runs.
async fn current(cx: &Cx) -> Result<(Option<Service>, Option<TaskDefinition>)> {
    let Some(service) = service::find(cx).await? else {
        return Ok((None, None));
    };
    let definition = match service.task_definition() {
        Some(arn) => describe_task_definition(cx, arn).await?,
        None => None,
    };
    Ok((Some(service), definition))
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
    let (service, current_definition) = current(cx).await?;
    let current_spec = current_definition.as_ref().and_then(|d| TaskSpec::observed(d, cx.names.container()));
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

/// The version and revision a rollout ran.
#[derive(Debug, Clone, Serialize)]
pub struct Deployed {
    #[serde(skip)]
    pub changes: Vec<Change>,
    /// The bundle's image tag, or what `--image` gave.
    pub version: String,
    /// `family:revision`.
    pub task_definition: String,
}

/// Builds the image if needed, registers a task definition when it changed, updates the
/// service, watches the deployment and checks the live app. When the new version fails after
/// the switch, rolls back to the revision that ran before.
pub async fn apply(cx: &Cx, choice: &ImageChoice) -> Result<Deployed> {
    cx.progress.phase("build");
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
        None => cx.progress.say(format!("running image `{}` without a build", target.image)),
    }

    cx.progress.phase("rollout");
    let (service, current_definition) = current(cx).await?;
    let container = cx.names.container();
    let current_spec = current_definition.as_ref().and_then(|d| TaskSpec::observed(d, container));
    let desired = TaskSpec::desired(cx, &target.image, &target.version);
    let running = service.as_ref().and_then(|service| service.task_definition()).map(str::to_owned);
    let task_definition = match (&running, &current_spec) {
        (Some(running), Some(current)) if desired.differences(current).is_empty() => running.clone(),
        _ => {
            let arn = task_definition::register(cx, &desired, current_definition.as_ref()).await?;
            changes.push(Change::create(TASK_DEFINITION, short_arn(&arn)));
            arn
        }
    };

    let change = service::apply(cx, service.as_ref(), &task_definition).await?;
    let switched = change.is_some();
    if switched && running.as_deref() != Some(task_definition.as_str()) {
        note_switch(cx, &task_definition, running.as_deref());
    }
    changes.extend(change);
    // A new service has nothing to return to. A changed count or secret keeps the revision, so a
    // failure leaves the same version running and there is nothing to roll back either.
    match (switched, &running) {
        (true, None) => verify_switch(cx, &task_definition, None).await?,
        (true, Some(running)) if *running != task_definition => {
            verify_switch(cx, &task_definition, Some(running)).await?
        }
        _ => verify_unchanged(cx, &task_definition).await?,
    }
    Ok(Deployed {
        changes,
        version: target.version,
        task_definition: short_arn(&task_definition).to_owned(),
    })
}

/// Keeps the switch for the message of an interrupted run.
fn note_switch(cx: &Cx, to: &str, from: Option<&str>) {
    cx.outputs().switch = Some(crate::plan::Switch {
        to: short_arn(to).to_owned(),
        from: from.map(|from| short_arn(from).to_owned()),
        rolling_back: false,
    });
}

/// Keeps the rollback from `failed` to `restoring` for the message of an interrupted run.
fn note_rollback(cx: &Cx, restoring: &str) {
    let mut outputs = cx.outputs();
    let failed = outputs.switch.as_ref().map(|switch| switch.to.clone());
    outputs.switch = Some(crate::plan::Switch {
        to: short_arn(restoring).to_owned(),
        from: failed,
        rolling_back: true,
    });
}

/// Waits for a revision that was not switched to and checks it live. A failure has nothing to
/// roll back, because the service kept its revision.
async fn verify_unchanged(cx: &Cx, task_definition: &str) -> Result<()> {
    wait_and_check(cx, task_definition, Some("live check")).await
}

/// Waits until the service runs `task_definition` steadily, then checks the live app, starting
/// `phase` before the check when given. A circuit-breaker rollback is a failure here.
async fn wait_and_check(cx: &Cx, task_definition: &str, phase: Option<&'static str>) -> Result<()> {
    if let Outcome::RolledBackByEcs { reason, .. } = watch::until_stable(cx, task_definition).await? {
        return Err(Error::Failed(reason));
    }
    if let Some(phase) = phase {
        cx.progress.phase(phase);
    }
    live::check(cx).await
}

/// Watches the switch to `task_definition` and checks the live app. On failure it rolls back to
/// `previous` and returns the error that reports how the rollback went.
async fn verify_switch(cx: &Cx, task_definition: &str, previous: Option<&str>) -> Result<()> {
    let (reason, restored_by_ecs) = match watch::until_stable(cx, task_definition).await {
        Ok(Outcome::Stable) => {
            cx.progress.phase("live check");
            match live::check(cx).await {
                Ok(()) => return Ok(()),
                Err(error) => (cause_chain(&error), None),
            }
        }
        Ok(Outcome::RolledBackByEcs { reason, restored }) => (reason, Some(restored)),
        Err(error) => (cause_chain(&error), None),
    };
    task_definition::mark_failed(cx, task_definition).await;
    Err(roll_back(cx, reason, previous, restored_by_ecs).await)
}

/// Returns the service to the revision that ran before, waits for it and checks it.
async fn roll_back(cx: &Cx, reason: String, previous: Option<&str>, restored_by_ecs: Option<String>) -> Error {
    cx.progress.phase("rollback");
    cx.progress.say(format!("the new version failed: {reason}"));
    let restoring = match (&restored_by_ecs, previous) {
        (Some(restored), _) => restored.clone(),
        (None, Some(previous)) => {
            if let Err(error) = service::switch_to(cx, previous).await {
                return Error::NotRolledBack {
                    reason,
                    problem: cause_chain(&error),
                };
            }
            previous.to_owned()
        }
        (None, None) => {
            return Error::NotRolledBack {
                reason,
                problem: "the service ran no earlier revision to return to".to_owned(),
            }
        }
    };
    note_rollback(cx, &restoring);
    match wait_and_check(cx, &restoring, None).await {
        Ok(()) => Error::RolledBack {
            reason,
            restored: short_arn(&restoring).to_owned(),
        },
        Err(error) => {
            let problem = cause_chain(&error);
            let problem = if problem == reason {
                format!("`{}` failed in the same way", short_arn(&restoring))
            } else {
                problem
            };
            Error::NotRolledBack { reason, problem }
        }
    }
}

/// Switches the service to an earlier revision of the family: the one before the running one,
/// or `to` (`REVISION`, `family:REVISION` or an ARN). Waits and checks as `apply` does.
pub async fn rollback(cx: &Cx, to: Option<&str>) -> Result<Deployed> {
    cx.progress.phase("rollout");
    let Some(service) = service::find(cx).await? else {
        return Err(Error::Input(format!(
            "{} `{}` does not exist; run `deployer up` first",
            service::SERVICE,
            cx.names.service()
        )));
    };
    let running = service.task_definition().unwrap_or_default().to_owned();
    let revisions = task_definition::revisions(cx).await?;
    let target = match to {
        Some(_) => task_definition::choose_rollback(&cx.names.task_family(), &cx.manifest.aws.region, &revisions, &running, to)?,
        None => previous_good(cx, &revisions, &running).await?,
    };
    let definition = describe_task_definition(cx, &target).await?;
    let version = definition
        .as_ref()
        .and_then(|d| TaskSpec::observed(d, cx.names.container()))
        .and_then(|spec| spec.version())
        .unwrap_or_default();
    let mut changes = Vec::new();
    if target == running {
        cx.progress.say(format!("the service already runs `{}`", short_arn(&target)));
        verify_unchanged(cx, &target).await?;
    } else {
        service::switch_to(cx, &target).await?;
        note_switch(cx, &target, Some(&running));
        changes.extend(Change::update(
            service::SERVICE,
            cx.names.service(),
            vec![crate::plan::FieldChange {
                field: "task_definition".into(),
                from: short_arn(&running).to_owned(),
                to: short_arn(&target).to_owned(),
            }],
        ));
        verify_switch(cx, &target, Some(&running)).await?;
    }
    // Only `--to` can choose a revision marked failed, and it has now passed.
    if to.is_some() {
        task_definition::clear_failed(cx, &target).await;
    }
    Ok(Deployed {
        changes,
        version,
        task_definition: short_arn(&target).to_owned(),
    })
}

/// Returns the newest revision older than `running` whose rollout did not fail, passing over the
/// revisions that [`task_definition::mark_failed`] tagged.
async fn previous_good(cx: &Cx, revisions: &[String], running: &str) -> Result<String> {
    let family = cx.names.task_family();
    let mut skipped = Vec::new();
    let mut newer = running.to_owned();
    loop {
        let candidate = match task_definition::choose_rollback(&family, &cx.manifest.aws.region, revisions, &newer, None) {
            Ok(candidate) => candidate,
            Err(_) if !skipped.is_empty() => {
                return Err(Error::Input(format!(
                    "every revision older than `{}` failed its rollout ({}); choose one with `deployer rollback --to REVISION`",
                    short_arn(running),
                    skipped.join(", ")
                )))
            }
            Err(error) => return Err(error),
        };
        if !task_definition::is_marked_failed(cx, &candidate).await? {
            if !skipped.is_empty() {
                cx.progress.say(format!(
                    "passing over {}, whose rollout failed; give `--to` to choose one anyway",
                    skipped.join(", ")
                ));
            }
            return Ok(candidate);
        }
        skipped.push(format!("`{}`", short_arn(&candidate)));
        newer = candidate;
    }
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
