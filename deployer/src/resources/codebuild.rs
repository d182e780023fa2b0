//! The CodeBuild project that builds the app image from a source bundle in S3 and pushes it to
//! the ECR repository.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use aws_sdk_codebuild::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_codebuild::types::{
    ArtifactsType, CloudWatchLogsConfig, ComputeType, EnvironmentType, EnvironmentVariable, EnvironmentVariableType,
    LogsConfig, LogsConfigStatusType, Project, ProjectArtifacts, ProjectEnvironment, ProjectSource, SourceType, Tag,
};
use aws_smithy_types::error::operation::BuildError;

use super::bucket::BUNDLE_PREFIX;
use crate::error::{Error, Result};
use crate::plan::{diff_field, Change, Cx, FieldChange};
use crate::wait::poll_until;

const PROJECT: &str = "codebuild:project";

/// Path of the buildspec inside the bundle.
const BUILDSPEC: &str = "buildspec.yml";

/// Shown in a plan for a value that exists only once an earlier step has been applied.
const KNOWN_AFTER_APPLY: &str = "(known after apply)";

/// How long CodeBuild may reject a newly created or changed service role. IAM changes usually
/// reach CodeBuild within seconds, but AWS documents no bound.
const ROLE_PROPAGATION_TIMEOUT: Duration = Duration::from_secs(120);
const ROLE_PROPAGATION_INTERVAL: Duration = Duration::from_secs(5);

/// The project settings the deployer sets, as plain values that compare and print.
#[derive(Debug)]
struct Settings {
    source_type: String,
    /// `{bucket}/{key}`. Each build overrides the key with `source_location_override`, but the
    /// project needs a location of its own.
    source_location: String,
    buildspec: String,
    environment_type: String,
    image: String,
    compute_type: String,
    privileged_mode: bool,
    /// Plain-text variables by name.
    environment_variables: BTreeMap<String, String>,
    service_role: String,
    timeout_minutes: i32,
    log_group: String,
    artifacts_type: String,
}

impl Settings {
    fn desired(cx: &Cx) -> Self {
        let outputs = cx.outputs();
        let repository_uri = outputs
            .repository_uri
            .clone()
            .unwrap_or_else(|| KNOWN_AFTER_APPLY.into());
        let service_role = outputs
            .codebuild_role_arn
            .clone()
            .unwrap_or_else(|| KNOWN_AFTER_APPLY.into());
        drop(outputs);

        let build = &cx.manifest.build;
        Settings {
            source_type: SourceType::S3.as_str().to_owned(),
            source_location: format!("{}/{BUNDLE_PREFIX}latest.zip", cx.bucket()),
            buildspec: BUILDSPEC.to_owned(),
            environment_type: EnvironmentType::LinuxContainer.as_str().to_owned(),
            image: build.image.clone(),
            compute_type: build.compute_type.clone(),
            // Docker builds inside CodeBuild need privileged mode.
            privileged_mode: true,
            environment_variables: BTreeMap::from([
                ("REPOSITORY_URI".to_owned(), repository_uri),
                ("AWS_DEFAULT_REGION".to_owned(), cx.region.clone()),
                ("DOCKERFILE".to_owned(), slash_path(&build.dockerfile)),
            ]),
            service_role,
            timeout_minutes: i32::try_from(build.timeout_minutes).unwrap_or(i32::MAX),
            log_group: cx.names.build_log_group(),
            artifacts_type: ArtifactsType::NoArtifacts.as_str().to_owned(),
        }
    }

    /// True when a value still waits for an earlier step, which only happens in plan mode.
    fn has_unknowns(&self) -> bool {
        self.service_role == KNOWN_AFTER_APPLY
            || self
                .environment_variables
                .values()
                .any(|value| value == KNOWN_AFTER_APPLY)
    }
}

/// Joins the path's components with `/`, as the Linux build container expects.
fn slash_path(path: &Path) -> String {
    path.components()
        .map(|component| component.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

pub async fn converge(cx: &Cx) -> Result<Vec<Change>> {
    let name = cx.names.codebuild_project();
    let desired = Settings::desired(cx);
    if cx.applying() && desired.has_unknowns() {
        return Err(Error::Internal(format!(
            "the service role or repository of CodeBuild project `{name}` is unknown; \
             the roles and the repository must be converged first"
        )));
    }

    let Some(project) = find_project(cx, &name).await? else {
        if cx.applying() {
            create_project(cx, &name, &desired).await?;
        }
        return Ok(vec![Change::create(PROJECT, name)]);
    };
    if !owns(cx, &project) {
        return Err(Error::NotOwned {
            kind: PROJECT,
            name,
            app: cx.names.prefix.clone(),
        });
    }

    let mut fields = differences(&desired, &project);
    let current_tags = tags_of(&project);
    let current_pairs = current_tags.iter().map(|(key, value)| (key.as_str(), value.as_str()));
    super::tags::diff_tags(cx, &mut fields, current_pairs);

    let Some(change) = Change::update(PROJECT, &name, fields) else {
        return Ok(Vec::new());
    };
    if cx.applying() {
        let tags_differ = change.fields.iter().any(|field| field.field == "tags");
        let merged_tags = tags_differ.then(|| {
            let mut merged = current_tags.clone();
            merged.extend(cx.names.tags.iter().map(|(key, value)| (key.clone(), value.clone())));
            merged
        });
        update_project(cx, &name, &desired, merged_tags.as_ref()).await?;
        cx.progress.say(format!("updated {PROJECT} `{name}`"));
    }
    Ok(vec![change])
}

/// Lists the fields of `project` that differ from `desired`. Settings the deployer does not set, and
/// the defaults CodeBuild fills in for them, are not compared.
fn differences(desired: &Settings, project: &Project) -> Vec<FieldChange> {
    let mut fields = Vec::new();
    let source = project.source();
    diff_field(
        &mut fields,
        "source.type",
        source.map(|s| s.r#type().as_str()),
        Some(desired.source_type.as_str()),
    );
    diff_field(
        &mut fields,
        "source.location",
        source.and_then(ProjectSource::location),
        Some(desired.source_location.as_str()),
    );
    diff_field(
        &mut fields,
        "source.buildspec",
        source.and_then(ProjectSource::buildspec),
        Some(desired.buildspec.as_str()),
    );

    let environment = project.environment();
    diff_field(
        &mut fields,
        "environment.type",
        environment.map(|e| e.r#type().as_str()),
        Some(desired.environment_type.as_str()),
    );
    diff_field(
        &mut fields,
        "environment.image",
        environment.map(ProjectEnvironment::image),
        Some(desired.image.as_str()),
    );
    diff_field(
        &mut fields,
        "environment.compute_type",
        environment.map(|e| e.compute_type().as_str()),
        Some(desired.compute_type.as_str()),
    );
    diff_field(
        &mut fields,
        "environment.privileged_mode",
        environment
            .and_then(ProjectEnvironment::privileged_mode)
            .unwrap_or(false),
        desired.privileged_mode,
    );
    // A Parameter Store or Secrets Manager variable shows with its type, so it never matches a
    // plain-text variable of the same name and value.
    let current_variables: BTreeMap<&str, String> = environment
        .map(ProjectEnvironment::environment_variables)
        .unwrap_or_default()
        .iter()
        .map(|variable| match variable.r#type() {
            Some(kind) if !is_plaintext(variable) => {
                (variable.name(), format!("({}) {}", kind.as_str(), variable.value()))
            }
            _ => (variable.name(), variable.value().to_owned()),
        })
        .collect();
    let desired_variables: BTreeMap<&str, String> = desired
        .environment_variables
        .iter()
        .map(|(name, value)| (name.as_str(), value.clone()))
        .collect();
    diff_field(
        &mut fields,
        "environment.variables",
        current_variables,
        desired_variables,
    );

    diff_field(
        &mut fields,
        "service_role",
        project.service_role(),
        Some(desired.service_role.as_str()),
    );
    diff_field(
        &mut fields,
        "timeout_minutes",
        project.timeout_in_minutes(),
        Some(desired.timeout_minutes),
    );

    let cloud_watch = project.logs_config().and_then(LogsConfig::cloud_watch_logs);
    diff_field(
        &mut fields,
        "logs.cloud_watch.status",
        cloud_watch.map(|logs| logs.status().as_str()),
        Some(LogsConfigStatusType::Enabled.as_str()),
    );
    diff_field(
        &mut fields,
        "logs.cloud_watch.group_name",
        cloud_watch.and_then(CloudWatchLogsConfig::group_name),
        Some(desired.log_group.as_str()),
    );
    diff_field(
        &mut fields,
        "artifacts.type",
        project.artifacts().map(|artifacts| artifacts.r#type().as_str()),
        Some(desired.artifacts_type.as_str()),
    );
    fields
}

/// CodeBuild treats a variable without a type as plain text.
fn is_plaintext(variable: &EnvironmentVariable) -> bool {
    variable
        .r#type()
        .is_none_or(|kind| *kind == EnvironmentVariableType::Plaintext)
}

fn owns(cx: &Cx, project: &Project) -> bool {
    cx.names.owns(
        project
            .tags()
            .iter()
            .map(|tag| (tag.key().unwrap_or_default(), tag.value().unwrap_or_default())),
    )
}

fn tags_of(project: &Project) -> BTreeMap<String, String> {
    project
        .tags()
        .iter()
        .filter_map(|tag| Some((tag.key()?.to_owned(), tag.value().unwrap_or_default().to_owned())))
        .collect()
}

async fn find_project(cx: &Cx, name: &str) -> Result<Option<Project>> {
    let found = cx
        .aws
        .codebuild
        .batch_get_projects()
        .names(name)
        .send()
        .await
        .map_err(|e| Error::aws("describe CodeBuild project", name, e))?;
    Ok(found
        .projects()
        .iter()
        .find(|project| project.name() == Some(name))
        .cloned())
}

// ---------------------------------------------------------------------------------------------
// Create and update

/// The request parts that `create_project` and `update_project` share.
struct Request {
    source: ProjectSource,
    environment: ProjectEnvironment,
    artifacts: ProjectArtifacts,
    logs: LogsConfig,
}

fn invalid_request(error: BuildError) -> Error {
    Error::Internal(format!("invalid CodeBuild request: {error}"))
}

fn request(desired: &Settings) -> Result<Request> {
    let source = ProjectSource::builder()
        .r#type(SourceType::from(desired.source_type.as_str()))
        .location(&desired.source_location)
        .buildspec(&desired.buildspec)
        .build()
        .map_err(invalid_request)?;

    let variables = desired
        .environment_variables
        .iter()
        .map(|(name, value)| {
            EnvironmentVariable::builder()
                .name(name)
                .value(value)
                .r#type(EnvironmentVariableType::Plaintext)
                .build()
                .map_err(invalid_request)
        })
        .collect::<Result<Vec<_>>>()?;
    let environment = ProjectEnvironment::builder()
        .r#type(EnvironmentType::from(desired.environment_type.as_str()))
        .image(&desired.image)
        .compute_type(ComputeType::from(desired.compute_type.as_str()))
        .privileged_mode(desired.privileged_mode)
        .set_environment_variables(Some(variables))
        .build()
        .map_err(invalid_request)?;

    let artifacts = ProjectArtifacts::builder()
        .r#type(ArtifactsType::from(desired.artifacts_type.as_str()))
        .build()
        .map_err(invalid_request)?;
    let cloud_watch = CloudWatchLogsConfig::builder()
        .status(LogsConfigStatusType::Enabled)
        .group_name(&desired.log_group)
        .build()
        .map_err(invalid_request)?;
    Ok(Request {
        source,
        environment,
        artifacts,
        logs: LogsConfig::builder().cloud_watch_logs(cloud_watch).build(),
    })
}

fn tag_list(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

async fn create_project(cx: &Cx, name: &str, desired: &Settings) -> Result<()> {
    let request = request(desired)?;
    let tags = tag_list(&cx.names.tags);
    let create = || {
        cx.aws
            .codebuild
            .create_project()
            .name(name)
            .source(request.source.clone())
            .environment(request.environment.clone())
            .artifacts(request.artifacts.clone())
            .logs_config(request.logs.clone())
            .service_role(&desired.service_role)
            .timeout_in_minutes(desired.timeout_minutes)
            .set_tags(Some(tags.clone()))
            .send()
    };
    retry_while_role_propagates("create CodeBuild project", name, create).await?;
    cx.progress.say(format!("created {PROJECT} `{name}`"));
    Ok(())
}

/// Sends every setting the deployer manages; `tags`, when given, replaces the whole tag list.
async fn update_project(
    cx: &Cx,
    name: &str,
    desired: &Settings,
    tags: Option<&BTreeMap<String, String>>,
) -> Result<()> {
    let request = request(desired)?;
    let tags = tags.map(tag_list);
    let update = || {
        cx.aws
            .codebuild
            .update_project()
            .name(name)
            .source(request.source.clone())
            .environment(request.environment.clone())
            .artifacts(request.artifacts.clone())
            .logs_config(request.logs.clone())
            .service_role(&desired.service_role)
            .timeout_in_minutes(desired.timeout_minutes)
            .set_tags(tags.clone())
            .send()
    };
    retry_while_role_propagates("update CodeBuild project", name, update).await?;
    Ok(())
}

/// Sends `call` again while CodeBuild reports that it cannot assume the service role yet, which
/// happens for a few seconds after the role is created or its trust policy changes.
async fn retry_while_role_propagates<T, E, F, Fut>(action: &str, name: &str, mut call: F) -> Result<T>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, SdkError<E>>>,
{
    let waiting_for = format!("CodeBuild to accept the service role of project `{name}`");
    poll_until(
        &waiting_for,
        ROLE_PROPAGATION_TIMEOUT,
        ROLE_PROPAGATION_INTERVAL,
        || {
            let sent = call();
            async move {
                match sent.await {
                    Ok(output) => Ok(Some(output)),
                    Err(e) if role_not_assumable_yet(&e) => {
                        tracing::debug!(project = name, error = %e, "service role not assumable yet; retrying");
                        Ok(None)
                    }
                    Err(e) => Err(Error::aws(action, name, e)),
                }
            }
        },
    )
    .await
}

fn role_not_assumable_yet<E: ProvideErrorMetadata>(error: &E) -> bool {
    error.code() == Some("InvalidInputException")
        && error
            .message()
            .is_some_and(|message| message.contains("sts:AssumeRole"))
}

// ---------------------------------------------------------------------------------------------
// Destroy

pub async fn destroy(cx: &Cx) -> Result<Vec<Change>> {
    let name = cx.names.codebuild_project();
    let Some(project) = find_project(cx, &name).await? else {
        return Ok(Vec::new());
    };
    if !owns(cx, &project) {
        return Ok(Vec::new());
    }
    cx.aws
        .codebuild
        .delete_project()
        .name(&name)
        .send()
        .await
        .map_err(|e| Error::aws("delete CodeBuild project", &name, e))?;
    cx.progress.say(format!("deleted {PROJECT} `{name}`"));
    Ok(vec![Change::delete(PROJECT, name)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_path_joins_components() {
        assert_eq!(slash_path(Path::new("templates/Dockerfile")), "templates/Dockerfile");
        assert_eq!(slash_path(Path::new("Dockerfile")), "Dockerfile");
    }

    #[test]
    fn untyped_variable_is_plaintext() {
        let untyped = EnvironmentVariable::builder()
            .name("A")
            .value("1")
            .build()
            .expect("name and value set");
        let secret = EnvironmentVariable::builder()
            .name("B")
            .value("arn")
            .r#type(EnvironmentVariableType::SecretsManager)
            .build()
            .expect("name and value set");
        assert!(is_plaintext(&untyped));
        assert!(!is_plaintext(&secret));
    }
}
