//! The internet-facing application load balancer in the public subnets.

use std::collections::BTreeSet;

use aws_sdk_elasticloadbalancingv2::types::{IpAddressType, LoadBalancer, LoadBalancerSchemeEnum, LoadBalancerTypeEnum};

use super::elb_util::{elb_tags, is_not_found, owned_by_us};
use crate::error::{Error, Result};
use crate::plan::{Change, Cx, FieldChange};

const LOAD_BALANCER: &str = "elbv2:load-balancer";

pub async fn converge(cx: &Cx) -> Result<Vec<Change>> {
    let name = cx.names.load_balancer();
    let (subnets, security_group) = {
        let outputs = cx.outputs();
        (outputs.public_subnet_ids.clone(), outputs.alb_security_group_id.clone())
    };

    let Some(balancer) = find(cx, &name).await? else {
        let change = Change::create(LOAD_BALANCER, &name);
        if !cx.applying() {
            return Ok(vec![change]);
        }
        create(cx, &name, subnets, security_group).await?;
        return Ok(vec![change]);
    };

    let arn = balancer.load_balancer_arn().unwrap_or_default().to_owned();
    if !owned_by_us(cx, &arn).await? {
        return Err(Error::NotOwned {
            kind: LOAD_BALANCER,
            name,
            app: cx.names.prefix.clone(),
        });
    }
    record_outputs(cx, &balancer);

    let current_subnets: BTreeSet<String> = balancer
        .availability_zones()
        .iter()
        .filter_map(|zone| zone.subnet_id().map(str::to_owned))
        .collect();
    let current_groups: BTreeSet<String> = balancer.security_groups().iter().cloned().collect();
    let desired_subnets: BTreeSet<String> = subnets.iter().cloned().collect();
    let desired_groups: BTreeSet<String> = security_group.iter().cloned().collect();

    let mut fields = Vec::new();
    if !desired_subnets.is_empty() && current_subnets != desired_subnets {
        fields.push(set_field("subnets", &current_subnets, &desired_subnets));
        if cx.applying() {
            cx.aws
                .elb
                .set_subnets()
                .load_balancer_arn(&arn)
                .set_subnets(Some(subnets.clone()))
                .send()
                .await
                .map_err(|e| Error::aws("set the subnets of load balancer", &name, e))?;
        }
    }
    if !desired_groups.is_empty() && current_groups != desired_groups {
        fields.push(set_field("security_groups", &current_groups, &desired_groups));
        if cx.applying() {
            cx.aws
                .elb
                .set_security_groups()
                .load_balancer_arn(&arn)
                .set_security_groups(Some(desired_groups.iter().cloned().collect()))
                .send()
                .await
                .map_err(|e| Error::aws("set the security groups of load balancer", &name, e))?;
        }
    }
    if !fields.is_empty() && cx.applying() {
        cx.progress.say(format!("updated {LOAD_BALANCER} `{name}`"));
    }
    Ok(Change::update(LOAD_BALANCER, &name, fields).into_iter().collect())
}

fn set_field(field: &str, from: &BTreeSet<String>, to: &BTreeSet<String>) -> FieldChange {
    FieldChange {
        field: field.to_owned(),
        from: format!("{from:?}"),
        to: format!("{to:?}"),
    }
}

async fn create(cx: &Cx, name: &str, subnets: Vec<String>, security_group: Option<String>) -> Result<()> {
    // AWS rejects a load balancer in fewer than two zones; say so before calling it.
    if subnets.len() < 2 {
        return Err(Error::Input(format!(
            "load balancer `{name}` needs public subnets in at least two availability zones, found {}; list two in `network.public_subnet_ids`",
            subnets.len()
        )));
    }
    let created = cx
        .aws
        .elb
        .create_load_balancer()
        .name(name)
        .r#type(LoadBalancerTypeEnum::Application)
        .scheme(LoadBalancerSchemeEnum::InternetFacing)
        .ip_address_type(IpAddressType::Ipv4)
        .set_subnets(Some(subnets))
        .set_security_groups(security_group.map(|group| vec![group]))
        .set_tags(Some(elb_tags(cx)))
        .send()
        .await
        .map_err(|e| Error::aws("create load balancer", name, e))?;
    if let Some(balancer) = created.load_balancers().first() {
        record_outputs(cx, balancer);
        cx.progress.say(format!(
            "created {LOAD_BALANCER} `{name}` ({})",
            balancer.dns_name().unwrap_or_default()
        ));
    }
    Ok(())
}

fn record_outputs(cx: &Cx, balancer: &LoadBalancer) {
    let mut outputs = cx.outputs();
    outputs.load_balancer_arn = balancer.load_balancer_arn().map(str::to_owned);
    outputs.load_balancer_dns = balancer.dns_name().map(str::to_owned);
    outputs.load_balancer_zone_id = balancer.canonical_hosted_zone_id().map(str::to_owned);
}

pub(crate) async fn find(cx: &Cx, name: &str) -> Result<Option<LoadBalancer>> {
    match cx.aws.elb.describe_load_balancers().names(name).send().await {
        Ok(found) => Ok(found.load_balancers().first().cloned()),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(Error::aws("describe load balancer", name, error)),
    }
}

pub async fn destroy(cx: &Cx) -> Result<Vec<Change>> {
    let name = cx.names.load_balancer();
    let Some(balancer) = find(cx, &name).await? else {
        return Ok(Vec::new());
    };
    let arn = balancer.load_balancer_arn().unwrap_or_default();
    if !owned_by_us(cx, arn).await? {
        return Ok(Vec::new());
    }
    cx.aws
        .elb
        .delete_load_balancer()
        .load_balancer_arn(arn)
        .send()
        .await
        .map_err(|e| Error::aws("delete load balancer", &name, e))?;
    // NOTE: AWS keeps the load balancer's network interfaces for a short while after this call,
    // so deleting the subnets and security groups right after can fail once; a rerun finishes it.
    cx.progress.say(format!("deleted {LOAD_BALANCER} `{name}`"));
    Ok(vec![Change::delete(LOAD_BALANCER, name)])
}
