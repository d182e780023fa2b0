//! The CloudWatch Logs groups of the app's containers and of the CodeBuild builds, each with the
//! manifest's retention period.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_cloudwatchlogs::types::LogGroup;

use crate::error::{Error, Result};
use crate::plan::{diff_field, Change, Cx};

const LOG_GROUP: &str = "logs:log-group";

pub async fn converge(cx: &Cx) -> Result<Vec<Change>> {
    let names = [cx.names.app_log_group(), cx.names.build_log_group()];
    let (app, build) = futures::try_join!(converge_group(cx, &names[0]), converge_group(cx, &names[1]))?;
    Ok(app.into_iter().chain(build).collect())
}

/// Creates the group, or sets its retention and tags when they differ from the manifest.
async fn converge_group(cx: &Cx, name: &str) -> Result<Option<Change>> {
    let retention = cx.manifest.logs.retention_days;
    let Some(group) = find_group(cx, name).await? else {
        if cx.applying() {
            create_group(cx, name, retention).await?;
        }
        return Ok(Some(Change::create(LOG_GROUP, name)));
    };

    let arn = group_arn(&group, name)?;
    let tags = group_tags(cx, &arn).await?;
    if !cx
        .names
        .owns(tags.iter().map(|(key, value)| (key.as_str(), value.as_str())))
    {
        return Err(Error::NotOwned {
            kind: LOG_GROUP,
            name: name.to_owned(),
            app: cx.names.prefix.clone(),
        });
    }

    let mut fields = Vec::new();
    diff_field(
        &mut fields,
        "retention_days",
        group.retention_in_days(),
        Some(retention),
    );
    let current_tags: BTreeMap<&String, &String> = tags
        .iter()
        .filter(|(key, _)| cx.names.tags.contains_key(*key))
        .collect();
    diff_field(&mut fields, "tags", current_tags, cx.names.tags.iter().collect());
    let Some(change) = Change::update(LOG_GROUP, name, fields) else {
        return Ok(None);
    };

    if cx.applying() {
        if group.retention_in_days() != Some(retention) {
            put_retention(cx, name, retention).await?;
        }
        if change.fields.iter().any(|field| field.field == "tags") {
            tag_group(cx, name, &arn).await?;
        }
        cx.progress.say(format!("updated {LOG_GROUP} `{name}`"));
    }
    Ok(Some(change))
}

/// Finds the group by its exact name. The API filters by prefix only, so `/ecs/app/prod` also
/// lists `/ecs/app/prod2`.
async fn find_group(cx: &Cx, name: &str) -> Result<Option<LogGroup>> {
    let mut pages = cx
        .aws
        .logs
        .describe_log_groups()
        .log_group_name_prefix(name)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::aws("describe log group", name, e))?;
        if let Some(group) = page
            .log_groups()
            .iter()
            .find(|group| group.log_group_name() == Some(name))
        {
            return Ok(Some(group.clone()));
        }
    }
    Ok(None)
}

/// Returns the group's ARN without the `:*` suffix, which is the form the tagging API takes.
fn group_arn(group: &LogGroup, name: &str) -> Result<String> {
    if let Some(arn) = group.log_group_arn() {
        return Ok(arn.to_owned());
    }
    match group.arn() {
        Some(arn) => Ok(arn.trim_end_matches(":*").to_owned()),
        None => Err(Error::Failed(format!(
            "CloudWatch Logs returned log group `{name}` without an ARN"
        ))),
    }
}

async fn group_tags(cx: &Cx, arn: &str) -> Result<HashMap<String, String>> {
    let listed = cx
        .aws
        .logs
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(|e| Error::aws("list tags of log group", arn, e))?;
    Ok(listed.tags().cloned().unwrap_or_default())
}

async fn create_group(cx: &Cx, name: &str, retention: i32) -> Result<()> {
    cx.aws
        .logs
        .create_log_group()
        .log_group_name(name)
        .set_tags(Some(desired_tags(cx)))
        .send()
        .await
        .map_err(|e| Error::aws("create log group", name, e))?;
    put_retention(cx, name, retention).await?;
    cx.progress.say(format!("created {LOG_GROUP} `{name}`"));
    Ok(())
}

async fn put_retention(cx: &Cx, name: &str, retention: i32) -> Result<()> {
    cx.aws
        .logs
        .put_retention_policy()
        .log_group_name(name)
        .retention_in_days(retention)
        .send()
        .await
        .map_err(|e| Error::aws("set the retention of log group", name, e))?;
    Ok(())
}

/// Adds or overwrites the deployer's tags. Tags that someone else added stay.
async fn tag_group(cx: &Cx, name: &str, arn: &str) -> Result<()> {
    cx.aws
        .logs
        .tag_resource()
        .resource_arn(arn)
        .set_tags(Some(desired_tags(cx)))
        .send()
        .await
        .map_err(|e| Error::aws("tag log group", name, e))?;
    Ok(())
}

fn desired_tags(cx: &Cx) -> HashMap<String, String> {
    cx.names
        .tags
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

pub async fn destroy(cx: &Cx) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    for name in [cx.names.app_log_group(), cx.names.build_log_group()] {
        let Some(group) = find_group(cx, &name).await? else {
            continue;
        };
        let tags = group_tags(cx, &group_arn(&group, &name)?).await?;
        if !cx
            .names
            .owns(tags.iter().map(|(key, value)| (key.as_str(), value.as_str())))
        {
            continue;
        }

        let deleted = cx.aws.logs.delete_log_group().log_group_name(&name).send().await;
        match deleted {
            Ok(_) => {}
            // The group was deleted since the read, so nothing is left to do.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                continue
            }
            Err(e) => return Err(Error::aws("delete log group", &name, e)),
        }
        cx.progress.say(format!("deleted {LOG_GROUP} `{name}`"));
        changes.push(Change::delete(LOG_GROUP, name));
    }
    Ok(changes)
}
