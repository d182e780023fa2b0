//! The load balancer's security group (ports 80 and 443 from `allowed_cidrs` only) and the
//! tasks' security group (the container port from the load balancer's group only).

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{IpPermission, IpRange, Ipv6Range, ResourceType, SecurityGroup, UserIdGroupPair};
use ipnet::IpNet;

use super::ec2_util::{is_ours, owned_filters, tag_specification};
use crate::error::{Error, Result};
use crate::plan::{Change, Cx, FieldChange};

const GROUP: &str = "ec2:security-group";

/// One TCP ingress rule on a single port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Rule {
    Cidr { port: i32, cidr: String },
    Group { port: i32, group_id: String },
}

impl Rule {
    fn describe(&self) -> String {
        match self {
            Rule::Cidr { port, cidr } => format!("tcp/{port} from {cidr}"),
            Rule::Group { port, group_id } => format!("tcp/{port} from {group_id}"),
        }
    }

    fn to_permission(&self) -> IpPermission {
        let builder = IpPermission::builder().ip_protocol("tcp");
        match self {
            Rule::Cidr { port, cidr } if cidr.contains(':') => builder
                .from_port(*port)
                .to_port(*port)
                .ipv6_ranges(Ipv6Range::builder().cidr_ipv6(cidr).build())
                .build(),
            Rule::Cidr { port, cidr } => builder
                .from_port(*port)
                .to_port(*port)
                .ip_ranges(IpRange::builder().cidr_ip(cidr).build())
                .build(),
            Rule::Group { port, group_id } => builder
                .from_port(*port)
                .to_port(*port)
                .user_id_group_pairs(UserIdGroupPair::builder().group_id(group_id).build())
                .build(),
        }
    }
}

struct GroupSpec {
    name: String,
    description: &'static str,
    rules: BTreeSet<Rule>,
}

pub async fn converge(cx: &Cx) -> Result<Vec<Change>> {
    let vpc_id = cx.outputs().vpc_id.clone();
    let mut changes = Vec::new();

    let alb = GroupSpec {
        name: cx.names.part("alb"),
        description: "Load balancer: HTTP and HTTPS from the allowed CIDRs only",
        rules: alb_rules(&cx.manifest.network.allowed_cidrs),
    };
    let alb_id = converge_group(cx, &alb, vpc_id.as_deref(), &mut changes).await?;
    cx.outputs().alb_security_group_id = alb_id.clone();

    let tasks = GroupSpec {
        name: cx.names.part("tasks"),
        description: "App tasks: the container port from the load balancer only",
        rules: BTreeSet::from([Rule::Group {
            port: i32::from(cx.manifest.service.port),
            group_id: alb_id.unwrap_or_else(|| "(load balancer group, known after apply)".into()),
        }]),
    };
    let task_id = converge_group(cx, &tasks, vpc_id.as_deref(), &mut changes).await?;
    cx.outputs().task_security_group_id = task_id;
    Ok(changes)
}

fn alb_rules(allowed: &[IpNet]) -> BTreeSet<Rule> {
    let mut rules = BTreeSet::new();
    for port in [80, 443] {
        for cidr in allowed {
            rules.insert(Rule::Cidr {
                port,
                cidr: cidr.to_string(),
            });
        }
    }
    rules
}

/// Creates the group or brings its ingress rules in line; returns its id when it exists.
async fn converge_group(cx: &Cx, spec: &GroupSpec, vpc_id: Option<&str>, changes: &mut Vec<Change>) -> Result<Option<String>> {
    let Some(group) = find_group(cx, &spec.name).await? else {
        changes.push(Change::create(GROUP, &spec.name));
        let Some(vpc_id) = vpc_id.filter(|_| cx.applying()) else {
            return Ok(None);
        };
        let group_id = create_group(cx, spec, vpc_id).await?;
        authorize(cx, &group_id, spec.rules.iter()).await?;
        return Ok(Some(group_id));
    };

    let group_id = group.group_id().unwrap_or_default().to_owned();
    let current = current_rules(&group);
    let missing: Vec<&Rule> = spec.rules.difference(&current).collect();
    let extra: Vec<&Rule> = current.difference(&spec.rules).collect();
    if missing.is_empty() && extra.is_empty() {
        return Ok(Some(group_id));
    }

    let list = |rules: &BTreeSet<Rule>| rules.iter().map(Rule::describe).collect::<Vec<_>>().join(", ");
    changes.extend(Change::update(
        GROUP,
        &spec.name,
        vec![FieldChange {
            field: "ingress".into(),
            from: format!("[{}]", list(&current)),
            to: format!("[{}]", list(&spec.rules)),
        }],
    ));
    if cx.applying() {
        authorize(cx, &group_id, missing.into_iter()).await?;
        revoke(cx, &group_id, extra.into_iter()).await?;
    }
    Ok(Some(group_id))
}

async fn find_group(cx: &Cx, name: &str) -> Result<Option<SecurityGroup>> {
    let found = cx
        .aws
        .ec2
        .describe_security_groups()
        .set_filters(Some(owned_filters(cx, Some(name))))
        .send()
        .await
        .map_err(|e| Error::aws("describe security groups for", name, e))?;
    let mut groups = found.security_groups().iter();
    Ok(groups.find(|group| is_ours(cx, group.tags(), Some(name))).cloned())
}

async fn create_group(cx: &Cx, spec: &GroupSpec, vpc_id: &str) -> Result<String> {
    let created = cx
        .aws
        .ec2
        .create_security_group()
        .group_name(&spec.name)
        .description(spec.description)
        .vpc_id(vpc_id)
        .tag_specifications(tag_specification(cx, ResourceType::SecurityGroup, &spec.name))
        .send()
        .await
        .map_err(|e| Error::aws("create security group", &spec.name, e))?;
    let group_id = created.group_id().unwrap_or_default().to_owned();
    cx.progress.say(format!("created {GROUP} `{}` ({group_id})", spec.name));
    Ok(group_id)
}

/// The single-port TCP ingress rules of a group; anything else counts as a rule to revoke.
fn current_rules(group: &SecurityGroup) -> BTreeSet<Rule> {
    let mut rules = BTreeSet::new();
    for permission in group.ip_permissions() {
        let port = permission.from_port().unwrap_or(-1);
        for range in permission.ip_ranges() {
            rules.insert(Rule::Cidr {
                port,
                cidr: range.cidr_ip().unwrap_or_default().to_owned(),
            });
        }
        for range in permission.ipv6_ranges() {
            rules.insert(Rule::Cidr {
                port,
                cidr: range.cidr_ipv6().unwrap_or_default().to_owned(),
            });
        }
        for pair in permission.user_id_group_pairs() {
            rules.insert(Rule::Group {
                port,
                group_id: pair.group_id().unwrap_or_default().to_owned(),
            });
        }
    }
    rules
}

async fn authorize(cx: &Cx, group_id: &str, rules: impl Iterator<Item = &Rule>) -> Result<()> {
    let permissions: Vec<IpPermission> = rules.map(Rule::to_permission).collect();
    if permissions.is_empty() {
        return Ok(());
    }
    cx.aws
        .ec2
        .authorize_security_group_ingress()
        .group_id(group_id)
        .set_ip_permissions(Some(permissions))
        .send()
        .await
        .map_err(|e| Error::aws("authorize ingress on security group", group_id, e))?;
    Ok(())
}

async fn revoke(cx: &Cx, group_id: &str, rules: impl Iterator<Item = &Rule>) -> Result<()> {
    let permissions: Vec<IpPermission> = rules.map(Rule::to_permission).collect();
    if permissions.is_empty() {
        return Ok(());
    }
    cx.aws
        .ec2
        .revoke_security_group_ingress()
        .group_id(group_id)
        .set_ip_permissions(Some(permissions))
        .send()
        .await
        .map_err(|e| Error::aws("revoke ingress on security group", group_id, e))?;
    Ok(())
}

pub async fn destroy(cx: &Cx) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    // The task group references the load balancer group, so it goes first.
    for name in [cx.names.part("tasks"), cx.names.part("alb")] {
        let Some(group) = find_group(cx, &name).await? else {
            continue;
        };
        let group_id = group.group_id().unwrap_or_default();
        cx.aws
            .ec2
            .delete_security_group()
            .group_id(group_id)
            .send()
            .await
            .map_err(|e| Error::aws("delete security group", &name, e))?;
        cx.progress.say(format!("deleted {GROUP} `{name}` ({group_id})"));
        changes.push(Change::delete(GROUP, name));
    }
    Ok(changes)
}
