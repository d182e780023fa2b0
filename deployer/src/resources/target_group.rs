//! The ip target group the service registers its tasks in, health-checked on `/health`.

use aws_sdk_elasticloadbalancingv2::types::{Matcher, ProtocolEnum, TargetGroup, TargetTypeEnum};

use super::elb_util::{elb_tags, is_not_found, owned_by_us};
use crate::error::{Error, Result};
use crate::plan::{diff_field, Change, Cx};

const TARGET_GROUP: &str = "elbv2:target-group";

pub async fn converge(cx: &Cx) -> Result<Vec<Change>> {
    let name = cx.names.target_group();
    let service = &cx.manifest.service;

    let Some(group) = find(cx, &name).await? else {
        let change = Change::create(TARGET_GROUP, &name);
        let vpc_id = cx.outputs().vpc_id.clone();
        let Some(vpc_id) = vpc_id.filter(|_| cx.applying()) else {
            return Ok(vec![change]);
        };
        let created = cx
            .aws
            .elb
            .create_target_group()
            .name(&name)
            .protocol(ProtocolEnum::Http)
            .port(i32::from(service.port))
            .vpc_id(vpc_id)
            .target_type(TargetTypeEnum::Ip)
            .health_check_path(&service.health_check_path)
            .matcher(Matcher::builder().http_code("200").build())
            .set_tags(Some(elb_tags(cx)))
            .send()
            .await
            .map_err(|e| Error::aws("create target group", &name, e))?;
        let arn = created
            .target_groups()
            .first()
            .and_then(|group| group.target_group_arn())
            .unwrap_or_default()
            .to_owned();
        cx.progress.say(format!("created {TARGET_GROUP} `{name}`"));
        cx.outputs().target_group_arn = Some(arn);
        return Ok(vec![change]);
    };

    let arn = group.target_group_arn().unwrap_or_default().to_owned();
    if !owned_by_us(cx, &arn).await? {
        return Err(Error::NotOwned {
            kind: TARGET_GROUP,
            name,
            app: cx.names.prefix.clone(),
        });
    }
    cx.outputs().target_group_arn = Some(arn.clone());

    let mut replace = Vec::new();
    diff_field(&mut replace, "port", group.port(), Some(i32::from(service.port)));
    let vpc_id = cx.outputs().vpc_id.clone();
    if vpc_id.is_some() {
        diff_field(&mut replace, "vpc_id", group.vpc_id().map(str::to_owned), vpc_id);
    }
    if !replace.is_empty() {
        if cx.applying() {
            return Err(Error::Input(format!(
                "target group `{name}` cannot change its port or VPC in place; run `deployer destroy` and `deployer up` to rebuild the load balancer"
            )));
        }
        return Ok(vec![Change::replace(TARGET_GROUP, &name, replace)]);
    }

    let mut fields = Vec::new();
    diff_field(
        &mut fields,
        "health_check_path",
        group.health_check_path(),
        Some(service.health_check_path.as_str()),
    );
    let Some(change) = Change::update(TARGET_GROUP, &name, fields) else {
        return Ok(Vec::new());
    };
    if cx.applying() {
        cx.aws
            .elb
            .modify_target_group()
            .target_group_arn(&arn)
            .health_check_path(&service.health_check_path)
            .send()
            .await
            .map_err(|e| Error::aws("update target group", &name, e))?;
        cx.progress.say(format!("updated {TARGET_GROUP} `{name}`"));
    }
    Ok(vec![change])
}

async fn find(cx: &Cx, name: &str) -> Result<Option<TargetGroup>> {
    match cx.aws.elb.describe_target_groups().names(name).send().await {
        Ok(found) => Ok(found.target_groups().first().cloned()),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(Error::aws("describe target group", name, error)),
    }
}

pub async fn destroy(cx: &Cx) -> Result<Vec<Change>> {
    let name = cx.names.target_group();
    let Some(group) = find(cx, &name).await? else {
        return Ok(Vec::new());
    };
    let arn = group.target_group_arn().unwrap_or_default();
    if !owned_by_us(cx, arn).await? {
        return Ok(Vec::new());
    }
    cx.aws
        .elb
        .delete_target_group()
        .target_group_arn(arn)
        .send()
        .await
        .map_err(|e| Error::aws("delete target group", &name, e))?;
    cx.progress.say(format!("deleted {TARGET_GROUP} `{name}`"));
    Ok(vec![Change::delete(TARGET_GROUP, name)])
}
