//! The ECS cluster, with Container Insights on.

use aws_sdk_ecs::types::{ClusterField, ClusterSetting, ClusterSettingName, Tag};

use crate::error::{Error, Result};
use crate::plan::{Change, Cx};

const CLUSTER: &str = "ecs:cluster";

pub fn ecs_tags(cx: &Cx) -> Vec<Tag> {
    cx.names
        .tags
        .iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

pub async fn converge(cx: &Cx) -> Result<Vec<Change>> {
    let name = cx.names.cluster();
    if let Some(arn) = find(cx, &name).await? {
        cx.outputs().cluster_arn = Some(arn);
        return Ok(Vec::new());
    }

    let change = Change::create(CLUSTER, &name);
    if !cx.applying() {
        return Ok(vec![change]);
    }
    let created = cx
        .aws
        .ecs
        .create_cluster()
        .cluster_name(&name)
        .settings(
            ClusterSetting::builder()
                .name(ClusterSettingName::ContainerInsights)
                .value("enabled")
                .build(),
        )
        .set_tags(Some(ecs_tags(cx)))
        .send()
        .await
        .map_err(|e| Error::aws("create ECS cluster", &name, e))?;
    cx.outputs().cluster_arn = created.cluster().and_then(|cluster| cluster.cluster_arn()).map(str::to_owned);
    cx.progress.say(format!("created {CLUSTER} `{name}`"));
    Ok(vec![change])
}

/// Returns the ARN of the active cluster of ours with this name.
async fn find(cx: &Cx, name: &str) -> Result<Option<String>> {
    let found = cx
        .aws
        .ecs
        .describe_clusters()
        .clusters(name)
        .include(ClusterField::Tags)
        .send()
        .await
        .map_err(|e| Error::aws("describe ECS cluster", name, e))?;
    let Some(cluster) = found.clusters().iter().find(|cluster| cluster.status() == Some("ACTIVE")) else {
        return Ok(None);
    };
    let tags = cluster
        .tags()
        .iter()
        .filter_map(|tag| Some((tag.key()?, tag.value()?)));
    if !cx.names.owns(tags) {
        return Err(Error::NotOwned {
            kind: CLUSTER,
            name: name.to_owned(),
            app: cx.names.prefix.clone(),
        });
    }
    Ok(cluster.cluster_arn().map(str::to_owned))
}

pub async fn destroy(cx: &Cx) -> Result<Vec<Change>> {
    let name = cx.names.cluster();
    let found = match find(cx, &name).await {
        Ok(found) => found,
        Err(Error::NotOwned { .. }) => None,
        Err(error) => return Err(error),
    };
    if found.is_none() {
        return Ok(Vec::new());
    }
    cx.aws
        .ecs
        .delete_cluster()
        .cluster(&name)
        .send()
        .await
        .map_err(|e| Error::aws("delete ECS cluster", &name, e))?;
    cx.progress.say(format!("deleted {CLUSTER} `{name}`"));
    Ok(vec![Change::delete(CLUSTER, name)])
}
