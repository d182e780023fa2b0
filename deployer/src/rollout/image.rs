//! The app image: found by the bundle's tag in ECR, or built by CodeBuild from the uploaded bundle.

use std::time::Duration;

use aws_sdk_codebuild::types::{Build, EnvironmentVariable, StatusType};
use aws_sdk_ecr::types::ImageIdentifier;
use aws_sdk_s3::primitives::ByteStream;

use tokio::time::Instant;

use super::build_log::BuildLog;
use super::bundle::Bundle;
use crate::error::{Error, Result};
use crate::plan::Cx;

/// The image a task definition runs: `repository@sha256:...` for our builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub uri: String,
    pub tag: Option<String>,
}

/// Returns the digest of `tag` in the repository, if the tag exists.
pub async fn find_digest(cx: &Cx, repository: &str, tag: &str) -> Result<Option<String>> {
    find(cx, repository, Some(tag), None).await
}

/// Returns the digest of the image with `tag` and `digest` (either or both), if it exists.
pub async fn find(cx: &Cx, repository: &str, tag: Option<&str>, digest: Option<&str>) -> Result<Option<String>> {
    let shown = format!("{repository}{}{}", tag.map(|t| format!(":{t}")).unwrap_or_default(), digest.map(|d| format!("@{d}")).unwrap_or_default());
    let found = cx
        .aws
        .ecr
        .batch_get_image()
        .repository_name(repository)
        .image_ids(ImageIdentifier::builder().set_image_tag(tag.map(str::to_owned)).set_image_digest(digest.map(str::to_owned)).build())
        .send()
        .await
        .map_err(|e| Error::aws("look up image", shown, e))?;
    Ok(found
        .images()
        .first()
        .and_then(|image| image.image_id())
        .and_then(|id| id.image_digest())
        .map(str::to_owned))
}

/// Returns the image for `bundle`, building it first unless its tag already exists.
pub async fn ensure(cx: &Cx, bundle: &Bundle) -> Result<Image> {
    let repository = cx.names.repository();
    let repository_uri = cx
        .outputs()
        .repository_uri
        .clone()
        .ok_or_else(|| Error::Internal("the repository was not converged before the build".into()))?;
    let tag = bundle.image_tag();

    if let Some(digest) = find_digest(cx, &repository, &tag).await? {
        cx.progress.say(format!("image `{tag}` already exists, skipping the build"));
        return Ok(pinned(&repository_uri, &tag, &digest));
    }

    upload(cx, bundle).await?;
    let build_id = start_build(cx, bundle, &repository_uri).await?;
    wait_for_build(cx, &build_id).await?;

    match find_digest(cx, &repository, &tag).await? {
        Some(digest) => Ok(pinned(&repository_uri, &tag, &digest)),
        None => Err(Error::Failed(format!(
            "build `{build_id}` succeeded but pushed no image tagged `{tag}` to `{repository}`; check the build log in `{}`",
            cx.names.build_log_group()
        ))),
    }
}

fn pinned(repository_uri: &str, tag: &str, digest: &str) -> Image {
    Image {
        uri: format!("{repository_uri}@{digest}"),
        tag: Some(tag.to_owned()),
    }
}

async fn upload(cx: &Cx, bundle: &Bundle) -> Result<()> {
    let bucket = cx.bucket();
    let key = bundle.object_key();
    cx.aws
        .s3
        .put_object()
        .bucket(&bucket)
        .key(&key)
        .body(ByteStream::from(bundle.bytes.clone()))
        .content_type("application/zip")
        .send()
        .await
        .map_err(|e| Error::aws("upload the source bundle to", format!("s3://{bucket}/{key}"), e))?;
    cx.progress.say(format!(
        "uploaded the source bundle ({} files, {} KiB) to `s3://{bucket}/{key}`",
        bundle.files.len(),
        bundle.bytes.len() / 1024
    ));
    Ok(())
}

async fn start_build(cx: &Cx, bundle: &Bundle, repository_uri: &str) -> Result<String> {
    let project = cx.names.codebuild_project();
    let variable = |name: &str, value: &str| {
        EnvironmentVariable::builder()
            .name(name)
            .value(value)
            .build()
            .expect("environment variable has a name and a value")
    };
    let started = cx
        .aws
        .codebuild
        .start_build()
        .project_name(&project)
        .source_location_override(format!("{}/{}", cx.bucket(), bundle.object_key()))
        .environment_variables_override(variable("IMAGE_TAG", &bundle.image_tag()))
        .environment_variables_override(variable("REPOSITORY_URI", repository_uri))
        .send()
        .await
        .map_err(|e| Error::aws("start a build of", &project, e))?;
    let build_id = started
        .build_value()
        .and_then(|build| build.id())
        .ok_or_else(|| Error::Failed(format!("CodeBuild started a build of `{project}` but returned no build id")))?
        .to_owned();
    cx.progress.say(format!("started build `{build_id}` of image `{}`", bundle.image_tag()));
    Ok(build_id)
}

async fn wait_for_build(cx: &Cx, build_id: &str) -> Result<()> {
    // The project's own timeout ends the build; the extra minutes cover queueing.
    let timeout = Duration::from_secs(u64::from(cx.manifest.build.timeout_minutes + 10) * 60);
    let deadline = Instant::now() + timeout;
    let mut log = BuildLog::default();
    loop {
        // A build takes at least a minute, so the first read waits one interval too.
        tokio::time::sleep(cx.timing.build_poll).await;
        let build = read_build(cx, build_id).await?;
        log.follow(cx, &build).await;
        match build.build_status() {
            Some(StatusType::Succeeded) => break,
            Some(StatusType::InProgress) | None => {}
            Some(status) => return Err(build_failure(cx, build_id, status, &build, &log.tail())),
        }
        if Instant::now() >= deadline {
            return Err(Error::Failed(format!(
                "build `{build_id}` did not finish within {}; {}",
                humantime::format_duration(timeout),
                tail_text(cx, &log.tail())
            )));
        }
    }
    cx.progress.say(format!("build `{build_id}` succeeded"));
    Ok(())
}

async fn read_build(cx: &Cx, build_id: &str) -> Result<Build> {
    let found = cx
        .aws
        .codebuild
        .batch_get_builds()
        .ids(build_id)
        .send()
        .await
        .map_err(|e| Error::aws("read the status of build", build_id, e))?;
    found
        .builds()
        .first()
        .cloned()
        .ok_or_else(|| Error::Failed(format!("build `{build_id}` was not found")))
}

/// `ended FAILED in phase BUILD: message`, with the last lines of the log.
fn build_failure(cx: &Cx, build_id: &str, status: &StatusType, build: &Build, tail: &[String]) -> Error {
    let failed_phase = build
        .phases()
        .iter()
        .find(|phase| phase.phase_status().is_some_and(|status| *status != StatusType::Succeeded))
        .map(|phase| {
            let context = phase
                .contexts()
                .iter()
                .filter_map(|context| context.message())
                .filter(|message| !message.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            format!(
                " in phase `{}`{}",
                phase.phase_type().map(|kind| kind.as_str()).unwrap_or("unknown"),
                if context.is_empty() { String::new() } else { format!(": {context}") }
            )
        })
        .unwrap_or_default();
    let advice = match status {
        StatusType::TimedOut => format!(" after `build.timeout_minutes` ({} minutes)", cx.manifest.build.timeout_minutes),
        _ => String::new(),
    };
    Error::Failed(format!(
        "build `{build_id}` ended `{}`{advice}{failed_phase}; {}",
        status.as_str(),
        tail_text(cx, tail)
    ))
}

fn tail_text(cx: &Cx, tail: &[String]) -> String {
    let group = cx.names.build_log_group();
    if tail.is_empty() {
        return format!("read its log with `deployer logs --build` (log group `{group}`)");
    }
    format!(
        "the last lines of its log (`deployer logs --build`, log group `{group}`):\n    {}",
        tail.join("\n    ")
    )
}
