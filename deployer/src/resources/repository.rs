//! The ECR repository the builds push to: immutable tags, scan on push, and a lifecycle policy
//! that bounds how many images it keeps.

use std::collections::BTreeMap;

use aws_sdk_ecr::types::{ImageScanningConfiguration, ImageTagMutability, Repository, Tag};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::plan::{diff_field, Change, Cx, FieldChange};

const REPOSITORY: &str = "ecr:repository";

/// How many of the newest images the repository keeps, so a rollback has earlier images to use.
const KEPT_IMAGES: u32 = 30;
/// Days after which an untagged image (a layer left by an interrupted push) expires.
const UNTAGGED_EXPIRY_DAYS: u32 = 7;

/// Returns the lifecycle policy document. A rule with `tagStatus: any` must have the highest
/// `rulePriority`, so the untagged rule comes first.
fn lifecycle_policy() -> Value {
    json!({
        "rules": [
            {
                "rulePriority": 1,
                "description": format!("Expire untagged images after {UNTAGGED_EXPIRY_DAYS} days"),
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": UNTAGGED_EXPIRY_DAYS
                },
                "action": { "type": "expire" }
            },
            {
                "rulePriority": 2,
                "description": format!("Keep the last {KEPT_IMAGES} images"),
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": KEPT_IMAGES
                },
                "action": { "type": "expire" }
            }
        ]
    })
}

fn describe_lifecycle_policy() -> String {
    format!("expire untagged images after {UNTAGGED_EXPIRY_DAYS} days, keep the last {KEPT_IMAGES} images")
}

pub async fn converge(cx: &Cx) -> Result<Vec<Change>> {
    let name = cx.names.repository();
    let Some(repository) = find_repository(cx, &name).await? else {
        if cx.applying() {
            let uri = create_repository(cx, &name).await?;
            cx.outputs().repository_uri = Some(uri);
        }
        return Ok(vec![Change::create(REPOSITORY, name)]);
    };

    let arn = repository.repository_arn().unwrap_or_default().to_owned();
    let (tags, policy) = futures::try_join!(repository_tags(cx, &name, &arn), current_lifecycle_policy(cx, &name))?;
    if !cx
        .names
        .owns(tags.iter().map(|(key, value)| (key.as_str(), value.as_str())))
    {
        return Err(Error::NotOwned {
            kind: REPOSITORY,
            name,
            app: cx.names.prefix.clone(),
        });
    }
    cx.outputs().repository_uri = repository.repository_uri().map(str::to_owned);

    let fields = differences(cx, &repository, &tags, policy.as_ref());
    let Some(change) = Change::update(REPOSITORY, &name, fields) else {
        return Ok(Vec::new());
    };
    if cx.applying() {
        apply_differences(cx, &name, &arn, &change.fields).await?;
        cx.progress.say(format!("updated {REPOSITORY} `{name}`"));
    }
    Ok(vec![change])
}

fn differences(
    cx: &Cx,
    repository: &Repository,
    tags: &BTreeMap<String, String>,
    policy: Option<&Value>,
) -> Vec<FieldChange> {
    let mut fields = Vec::new();
    diff_field(
        &mut fields,
        "image_tag_mutability",
        repository.image_tag_mutability().map(ImageTagMutability::as_str),
        Some(ImageTagMutability::Immutable.as_str()),
    );
    diff_field(
        &mut fields,
        "scan_on_push",
        repository
            .image_scanning_configuration()
            .is_some_and(ImageScanningConfiguration::scan_on_push),
        true,
    );
    if policy != Some(&lifecycle_policy()) {
        fields.push(FieldChange {
            field: "lifecycle_policy".into(),
            from: if policy.is_some() { "(other rules)" } else { "(none)" }.into(),
            to: describe_lifecycle_policy(),
        });
    }
    let current_tags: BTreeMap<&String, &String> = tags
        .iter()
        .filter(|(key, _)| cx.names.tags.contains_key(*key))
        .collect();
    diff_field(&mut fields, "tags", current_tags, cx.names.tags.iter().collect());
    fields
}

async fn apply_differences(cx: &Cx, name: &str, arn: &str, fields: &[FieldChange]) -> Result<()> {
    let ecr = &cx.aws.ecr;
    for field in fields {
        match field.field.as_str() {
            "image_tag_mutability" => {
                ecr.put_image_tag_mutability()
                    .repository_name(name)
                    .image_tag_mutability(ImageTagMutability::Immutable)
                    .send()
                    .await
                    .map_err(|e| Error::aws("make image tags immutable in repository", name, e))?;
            }
            "scan_on_push" => {
                ecr.put_image_scanning_configuration()
                    .repository_name(name)
                    .image_scanning_configuration(scan_on_push())
                    .send()
                    .await
                    .map_err(|e| Error::aws("turn on scan on push in repository", name, e))?;
            }
            "lifecycle_policy" => put_lifecycle_policy(cx, name).await?,
            "tags" => {
                ecr.tag_resource()
                    .resource_arn(arn)
                    .set_tags(Some(tags(cx)?))
                    .send()
                    .await
                    .map_err(|e| Error::aws("tag repository", name, e))?;
            }
            other => {
                return Err(Error::Internal(format!(
                    "no update for repository field `{other}`"
                )))
            }
        }
    }
    Ok(())
}

async fn find_repository(cx: &Cx, name: &str) -> Result<Option<Repository>> {
    let described = cx.aws.ecr.describe_repositories().repository_names(name).send().await;
    match described {
        Ok(found) => Ok(found.repositories().first().cloned()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_repository_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(Error::aws("describe repository", name, e)),
    }
}

async fn repository_tags(cx: &Cx, name: &str, arn: &str) -> Result<BTreeMap<String, String>> {
    let listed = cx
        .aws
        .ecr
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(|e| Error::aws("list tags of repository", name, e))?;
    Ok(listed
        .tags()
        .iter()
        .map(|tag| (tag.key().to_owned(), tag.value().to_owned()))
        .collect())
}

/// Reads the repository's lifecycle policy as parsed JSON, or `None` when it has none.
async fn current_lifecycle_policy(cx: &Cx, name: &str) -> Result<Option<Value>> {
    let read = cx.aws.ecr.get_lifecycle_policy().repository_name(name).send().await;
    let text = match read {
        Ok(policy) => policy.lifecycle_policy_text().unwrap_or_default().to_owned(),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_lifecycle_policy_not_found_exception()) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(Error::aws("read the lifecycle policy of repository", name, e)),
    };
    // A policy that is not valid JSON differs from ours and is replaced, so it reads as `Null`.
    Ok(Some(serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// Creates the repository with its tags, tag immutability and scanning in one call, then puts
/// the lifecycle policy; returns the repository URI.
async fn create_repository(cx: &Cx, name: &str) -> Result<String> {
    let created = cx
        .aws
        .ecr
        .create_repository()
        .repository_name(name)
        .image_tag_mutability(ImageTagMutability::Immutable)
        .image_scanning_configuration(scan_on_push())
        .set_tags(Some(tags(cx)?))
        .send()
        .await
        .map_err(|e| Error::aws("create repository", name, e))?;
    put_lifecycle_policy(cx, name).await?;
    cx.progress.say(format!("created {REPOSITORY} `{name}`"));
    Ok(created
        .repository()
        .and_then(Repository::repository_uri)
        .unwrap_or_default()
        .to_owned())
}

async fn put_lifecycle_policy(cx: &Cx, name: &str) -> Result<()> {
    cx.aws
        .ecr
        .put_lifecycle_policy()
        .repository_name(name)
        .lifecycle_policy_text(lifecycle_policy().to_string())
        .send()
        .await
        .map_err(|e| Error::aws("put the lifecycle policy of repository", name, e))?;
    Ok(())
}

fn scan_on_push() -> ImageScanningConfiguration {
    ImageScanningConfiguration::builder().scan_on_push(true).build()
}

fn tags(cx: &Cx) -> Result<Vec<Tag>> {
    cx.names
        .tags
        .iter()
        .map(|(key, value)| {
            Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(|e| Error::Internal(format!("invalid tag `{key}`: {e}")))
        })
        .collect()
}

pub async fn destroy(cx: &Cx) -> Result<Vec<Change>> {
    let name = cx.names.repository();
    let Some(repository) = find_repository(cx, &name).await? else {
        return Ok(Vec::new());
    };
    let tags = repository_tags(cx, &name, repository.repository_arn().unwrap_or_default()).await?;
    if !cx
        .names
        .owns(tags.iter().map(|(key, value)| (key.as_str(), value.as_str())))
    {
        return Ok(Vec::new());
    }

    // `force` deletes the images too; without it a repository that holds images cannot be deleted.
    let deleted = cx
        .aws
        .ecr
        .delete_repository()
        .repository_name(&name)
        .force(true)
        .send()
        .await;
    match deleted {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_repository_not_found_exception()) =>
        {
            return Ok(Vec::new())
        }
        Err(e) => return Err(Error::aws("delete repository", &name, e)),
    }
    cx.progress.say(format!("deleted {REPOSITORY} `{name}`"));
    Ok(vec![Change::delete(REPOSITORY, name)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_policy_puts_any_rule_last() {
        let policy = lifecycle_policy();
        let rules = policy["rules"].as_array().expect("rules is an array");
        let last = rules.last().expect("at least one rule");
        assert_eq!(last["selection"]["tagStatus"], "any");
        assert_eq!(last["selection"]["countNumber"], KEPT_IMAGES);
        let max_priority = rules.iter().filter_map(|rule| rule["rulePriority"].as_u64()).max();
        assert_eq!(last["rulePriority"].as_u64(), max_priority);
    }

    #[test]
    fn lifecycle_policy_matches_reformatted_text() {
        let reformatted = serde_json::to_string_pretty(&lifecycle_policy()).expect("serializable");
        let parsed: Value = serde_json::from_str(&reformatted).expect("valid JSON");
        assert_eq!(parsed, lifecycle_policy());
    }
}
