//! The VPC, internet gateway, subnets, NAT gateway and route tables, or the lookup of an
//! existing VPC and its subnets.

use std::time::Duration;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{AttributeBooleanValue, NatGatewayState, ResourceType, Subnet};

use super::ec2_util::{filter, is_ours, name_tag, owned_filters, tag_specification};
use crate::error::{Error, Result};
use crate::manifest::{ManagedNetwork, NetworkLayout};
use crate::plan::{Change, Cx, FieldChange};
use crate::wait::poll_until;

const VPC: &str = "ec2:vpc";
const SUBNET: &str = "ec2:subnet";
const GATEWAY: &str = "ec2:internet-gateway";
const NAT: &str = "ec2:nat-gateway";
const ADDRESS: &str = "ec2:elastic-ip";

/// How long a new NAT gateway may take to become available (AWS documents a few minutes).
const NAT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

fn managed(cx: &Cx) -> Option<&ManagedNetwork> {
    match &cx.manifest.network.layout {
        NetworkLayout::Managed(network) => Some(network),
        NetworkLayout::Existing(_) => None,
    }
}

pub async fn converge_vpc(cx: &Cx) -> Result<Vec<Change>> {
    let network = match &cx.manifest.network.layout {
        NetworkLayout::Managed(network) => network,
        NetworkLayout::Existing(existing) => {
            use_existing_network(cx, existing).await?;
            return Ok(Vec::new());
        }
    };
    let name = cx.names.prefix.clone();
    let desired_cidr = network.vpc_cidr.to_string();

    if let Some((vpc_id, cidr)) = find_vpc(cx).await? {
        cx.outputs().vpc_id = Some(vpc_id);
        if cidr != desired_cidr {
            return cidr_cannot_change(cx, VPC, &name, "vpc_cidr", &cidr, &desired_cidr);
        }
        return Ok(Vec::new());
    }

    let change = Change::create(VPC, &name);
    if !cx.applying() {
        return Ok(vec![change]);
    }
    let created = cx
        .aws
        .ec2
        .create_vpc()
        .cidr_block(&desired_cidr)
        .tag_specifications(tag_specification(cx, ResourceType::Vpc, &name))
        .send()
        .await
        .map_err(|e| Error::aws("create VPC", &name, e))?;
    let vpc_id = created.vpc().and_then(|vpc| vpc.vpc_id()).unwrap_or_default().to_owned();
    enable_dns(cx, &vpc_id).await?;
    cx.progress.say(format!("created {VPC} `{name}` ({vpc_id})"));
    cx.outputs().vpc_id = Some(vpc_id);
    Ok(vec![change])
}

async fn find_vpc(cx: &Cx) -> Result<Option<(String, String)>> {
    let name = &cx.names.prefix;
    let found = cx
        .aws
        .ec2
        .describe_vpcs()
        .set_filters(Some(owned_filters(cx, Some(name))))
        .send()
        .await
        .map_err(|e| Error::aws("describe VPCs for", name, e))?;
    Ok(found.vpcs().iter().find(|vpc| is_ours(cx, vpc.tags(), Some(name))).map(|vpc| {
        (
            vpc.vpc_id().unwrap_or_default().to_owned(),
            vpc.cidr_block().unwrap_or_default().to_owned(),
        )
    }))
}

/// Turns on DNS support and hostnames, which tasks in private subnets need to reach AWS endpoints.
async fn enable_dns(cx: &Cx, vpc_id: &str) -> Result<()> {
    let on = || AttributeBooleanValue::builder().value(true).build();
    cx.aws
        .ec2
        .modify_vpc_attribute()
        .vpc_id(vpc_id)
        .enable_dns_support(on())
        .send()
        .await
        .map_err(|e| Error::aws("enable DNS support on", vpc_id, e))?;
    cx.aws
        .ec2
        .modify_vpc_attribute()
        .vpc_id(vpc_id)
        .enable_dns_hostnames(on())
        .send()
        .await
        .map_err(|e| Error::aws("enable DNS hostnames on", vpc_id, e))?;
    Ok(())
}

async fn use_existing_network(cx: &Cx, existing: &crate::manifest::ExistingNetwork) -> Result<()> {
    let found = cx.aws.ec2.describe_vpcs().vpc_ids(&existing.vpc_id).send().await;
    let exists = match found {
        Ok(found) => !found.vpcs().is_empty(),
        Err(error) if error.code() == Some("InvalidVpcID.NotFound") => false,
        Err(error) => return Err(Error::aws("find the existing VPC", &existing.vpc_id, error)),
    };
    if !exists {
        return Err(Error::Input(format!(
            "VPC `{}` from `network.vpc_id` was not found in `{}`; check the id and the region",
            existing.vpc_id, cx.region
        )));
    }

    let subnet_ids: Vec<String> = existing
        .public_subnet_ids
        .iter()
        .chain(&existing.private_subnet_ids)
        .cloned()
        .collect();
    let subnets = cx.aws.ec2.describe_subnets().set_subnet_ids(Some(subnet_ids.clone())).send().await;
    let subnets = match subnets {
        Ok(subnets) => subnets,
        Err(error) if error.code() == Some("InvalidSubnetID.NotFound") => {
            return Err(Error::Input(format!(
                "a subnet in `network.public_subnet_ids` or `network.private_subnet_ids` was not found in `{}`: {}; check the ids and the region",
                cx.region,
                error.meta().message().unwrap_or("no details")
            )))
        }
        Err(error) => return Err(Error::aws("find the existing subnets of", &existing.vpc_id, error)),
    };
    for id in &subnet_ids {
        let subnet = subnets.subnets().iter().find(|s| s.subnet_id() == Some(id.as_str()));
        match subnet {
            Some(subnet) if subnet.vpc_id() == Some(existing.vpc_id.as_str()) => {}
            Some(_) => {
                return Err(Error::Input(format!(
                    "subnet `{id}` is not in VPC `{}`; list subnets of that VPC in the manifest",
                    existing.vpc_id
                )))
            }
            None => return Err(Error::Input(format!("subnet `{id}` was not found; check the id and the region"))),
        }
    }

    let mut outputs = cx.outputs();
    outputs.vpc_id = Some(existing.vpc_id.clone());
    outputs.public_subnet_ids = existing.public_subnet_ids.clone();
    outputs.private_subnet_ids = existing.private_subnet_ids.clone();
    Ok(())
}

/// A CIDR or zone that changed: planned as a replacement, refused when applying because the
/// replacement would take the whole stack down.
fn cidr_cannot_change(cx: &Cx, kind: &'static str, name: &str, field: &str, from: &str, to: &str) -> Result<Vec<Change>> {
    let change = Change::replace(
        kind,
        name,
        vec![FieldChange {
            field: field.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
        }],
    );
    if cx.applying() {
        return Err(Error::Input(format!(
            "{kind} `{name}` has {field} `{from}`, the manifest asks for `{to}`, and it cannot change in place; \
             restore `{from}` in the manifest, or run `deployer destroy` first to rebuild the stack"
        )));
    }
    Ok(vec![change])
}

pub async fn destroy_vpc(cx: &Cx) -> Result<Vec<Change>> {
    if managed(cx).is_none() {
        return Ok(Vec::new());
    }
    let Some((vpc_id, _)) = find_vpc(cx).await? else {
        return Ok(Vec::new());
    };
    cx.aws
        .ec2
        .delete_vpc()
        .vpc_id(&vpc_id)
        .send()
        .await
        .map_err(|e| Error::aws("delete VPC", &vpc_id, e))?;
    cx.progress.say(format!("deleted {VPC} `{}` ({vpc_id})", cx.names.prefix));
    Ok(vec![Change::delete(VPC, &cx.names.prefix)])
}

/// The vpc id, or `None` in plan mode when the VPC is still to be created.
fn vpc_id(cx: &Cx) -> Option<String> {
    cx.outputs().vpc_id.clone()
}

// ---------------------------------------------------------------------------------------------
// Internet gateway

pub async fn converge_internet_gateway(cx: &Cx) -> Result<Vec<Change>> {
    if managed(cx).is_none() {
        return Ok(Vec::new());
    }
    let name = cx.names.part("igw");
    let vpc_id = vpc_id(cx);

    let change = match find_internet_gateway(cx, &name).await? {
        None => Change::create(GATEWAY, &name),
        Some((gateway_id, attached_to)) => {
            cx.outputs().internet_gateway_id = Some(gateway_id.clone());
            if attached_to.is_some() && attached_to == vpc_id {
                return Ok(Vec::new());
            }
            let field = FieldChange {
                field: "attached_vpc".into(),
                from: attached_to.unwrap_or_else(|| "(none)".into()),
                to: vpc_id.clone().unwrap_or_else(|| "(known after apply)".into()),
            };
            if cx.applying() {
                attach_internet_gateway(cx, &gateway_id, vpc_id.as_deref()).await?;
            }
            return Ok(Change::update(GATEWAY, &name, vec![field]).into_iter().collect());
        }
    };
    if !cx.applying() {
        return Ok(vec![change]);
    }

    let created = cx
        .aws
        .ec2
        .create_internet_gateway()
        .tag_specifications(tag_specification(cx, ResourceType::InternetGateway, &name))
        .send()
        .await
        .map_err(|e| Error::aws("create internet gateway", &name, e))?;
    let gateway_id = created
        .internet_gateway()
        .and_then(|gateway| gateway.internet_gateway_id())
        .unwrap_or_default()
        .to_owned();
    cx.progress.say(format!("created {GATEWAY} `{name}` ({gateway_id})"));
    attach_internet_gateway(cx, &gateway_id, vpc_id.as_deref()).await?;
    cx.outputs().internet_gateway_id = Some(gateway_id);
    Ok(vec![change])
}

async fn attach_internet_gateway(cx: &Cx, gateway_id: &str, vpc_id: Option<&str>) -> Result<()> {
    let Some(vpc_id) = vpc_id else {
        return Err(Error::Internal(format!("no VPC to attach `{gateway_id}` to")));
    };
    cx.aws
        .ec2
        .attach_internet_gateway()
        .internet_gateway_id(gateway_id)
        .vpc_id(vpc_id)
        .send()
        .await
        .map_err(|e| Error::aws("attach internet gateway", gateway_id, e))?;
    Ok(())
}

/// Returns the gateway id and the VPC it is attached to, if any.
async fn find_internet_gateway(cx: &Cx, name: &str) -> Result<Option<(String, Option<String>)>> {
    let found = cx
        .aws
        .ec2
        .describe_internet_gateways()
        .set_filters(Some(owned_filters(cx, Some(name))))
        .send()
        .await
        .map_err(|e| Error::aws("describe internet gateways for", name, e))?;
    let mut gateways = found.internet_gateways().iter();
    Ok(gateways.find(|gateway| is_ours(cx, gateway.tags(), Some(name))).map(|gateway| {
        let attached = gateway
            .attachments()
            .iter()
            .find_map(|attachment| attachment.vpc_id().map(str::to_owned));
        (gateway.internet_gateway_id().unwrap_or_default().to_owned(), attached)
    }))
}

pub async fn destroy_internet_gateway(cx: &Cx) -> Result<Vec<Change>> {
    if managed(cx).is_none() {
        return Ok(Vec::new());
    }
    let name = cx.names.part("igw");
    let Some((gateway_id, attached_to)) = find_internet_gateway(cx, &name).await? else {
        return Ok(Vec::new());
    };
    if let Some(vpc_id) = attached_to {
        cx.aws
            .ec2
            .detach_internet_gateway()
            .internet_gateway_id(&gateway_id)
            .vpc_id(&vpc_id)
            .send()
            .await
            .map_err(|e| Error::aws("detach internet gateway", &name, e))?;
    }
    cx.aws
        .ec2
        .delete_internet_gateway()
        .internet_gateway_id(&gateway_id)
        .send()
        .await
        .map_err(|e| Error::aws("delete internet gateway", &name, e))?;
    cx.progress.say(format!("deleted {GATEWAY} `{name}` ({gateway_id})"));
    Ok(vec![Change::delete(GATEWAY, name)])
}

// ---------------------------------------------------------------------------------------------
// Subnets

/// One subnet the manifest asks for.
struct SubnetSpec {
    name: String,
    cidr: String,
    zone: String,
    public: bool,
}

async fn subnet_specs(cx: &Cx, network: &ManagedNetwork) -> Result<Vec<SubnetSpec>> {
    let zones = zones(cx, network).await?;
    let mut specs = Vec::new();
    for (public, cidrs) in [(true, &network.public_subnet_cidrs), (false, &network.private_subnet_cidrs)] {
        for (index, cidr) in cidrs.iter().enumerate() {
            let letter = (b'a' + index as u8) as char;
            let role = if public { "public" } else { "private" };
            specs.push(SubnetSpec {
                name: cx.names.part(&format!("{role}-{letter}")),
                cidr: cidr.to_string(),
                zone: zones[index % zones.len()].clone(),
                public,
            });
        }
    }
    Ok(specs)
}

/// The manifest's zones, or the first two zones the region reports as available.
async fn zones(cx: &Cx, network: &ManagedNetwork) -> Result<Vec<String>> {
    if !network.availability_zones.is_empty() {
        return Ok(network.availability_zones.clone());
    }
    let found = cx
        .aws
        .ec2
        .describe_availability_zones()
        .filters(filter("state", "available"))
        .send()
        .await
        .map_err(|e| Error::aws("list availability zones of", &cx.region, e))?;
    let mut zones: Vec<String> = found
        .availability_zones()
        .iter()
        .filter_map(|zone| zone.zone_name().map(str::to_owned))
        .collect();
    zones.sort();
    zones.truncate(2);
    if zones.len() < 2 {
        return Err(Error::Input(format!(
            "region `{}` reports fewer than two available zones; set `network.availability_zones`",
            cx.region
        )));
    }
    Ok(zones)
}

async fn find_subnets(cx: &Cx) -> Result<Vec<Subnet>> {
    let found = cx
        .aws
        .ec2
        .describe_subnets()
        .set_filters(Some(owned_filters(cx, None)))
        .send()
        .await
        .map_err(|e| Error::aws("describe subnets for", &cx.names.prefix, e))?;
    Ok(found
        .subnets()
        .iter()
        .filter(|subnet| is_ours(cx, subnet.tags(), None))
        .cloned()
        .collect())
}

pub async fn converge_subnets(cx: &Cx) -> Result<Vec<Change>> {
    let Some(network) = managed(cx) else {
        return Ok(Vec::new());
    };
    let specs = subnet_specs(cx, network).await?;
    let existing = find_subnets(cx).await?;
    let vpc_id = vpc_id(cx);
    let mut changes = Vec::new();
    let (mut public_ids, mut private_ids) = (Vec::new(), Vec::new());

    for spec in &specs {
        let found = existing.iter().find(|subnet| name_tag(subnet.tags()) == Some(spec.name.as_str()));
        let id = match found {
            Some(subnet) => {
                let cidr = subnet.cidr_block().unwrap_or_default();
                if cidr != spec.cidr {
                    changes.extend(cidr_cannot_change(cx, SUBNET, &spec.name, "cidr", cidr, &spec.cidr)?);
                }
                let zone = subnet.availability_zone().unwrap_or_default();
                if zone != spec.zone {
                    changes.extend(cidr_cannot_change(cx, SUBNET, &spec.name, "availability_zone", zone, &spec.zone)?);
                }
                Some(subnet.subnet_id().unwrap_or_default().to_owned())
            }
            None => {
                changes.push(Change::create(SUBNET, &spec.name));
                match (&vpc_id, cx.applying()) {
                    (Some(vpc_id), true) => Some(create_subnet(cx, spec, vpc_id).await?),
                    _ => None,
                }
            }
        };
        if let Some(id) = id {
            if spec.public {
                public_ids.push(id);
            } else {
                private_ids.push(id);
            }
        }
    }

    let mut outputs = cx.outputs();
    outputs.public_subnet_ids = public_ids;
    outputs.private_subnet_ids = private_ids;
    Ok(changes)
}

async fn create_subnet(cx: &Cx, spec: &SubnetSpec, vpc_id: &str) -> Result<String> {
    let created = cx
        .aws
        .ec2
        .create_subnet()
        .vpc_id(vpc_id)
        .cidr_block(&spec.cidr)
        .availability_zone(&spec.zone)
        .tag_specifications(tag_specification(cx, ResourceType::Subnet, &spec.name))
        .send()
        .await
        .map_err(|e| Error::aws("create subnet", &spec.name, e))?;
    let id = created.subnet().and_then(|subnet| subnet.subnet_id()).unwrap_or_default().to_owned();
    cx.progress.say(format!("created {SUBNET} `{}` ({id}, {}, {})", spec.name, spec.cidr, spec.zone));
    Ok(id)
}

pub async fn destroy_subnets(cx: &Cx) -> Result<Vec<Change>> {
    if managed(cx).is_none() {
        return Ok(Vec::new());
    }
    let mut changes = Vec::new();
    for subnet in find_subnets(cx).await? {
        let id = subnet.subnet_id().unwrap_or_default();
        let name = name_tag(subnet.tags()).unwrap_or(id).to_owned();
        cx.aws
            .ec2
            .delete_subnet()
            .subnet_id(id)
            .send()
            .await
            .map_err(|e| Error::aws("delete subnet", &name, e))?;
        cx.progress.say(format!("deleted {SUBNET} `{name}` ({id})"));
        changes.push(Change::delete(SUBNET, name));
    }
    Ok(changes)
}

// ---------------------------------------------------------------------------------------------
// NAT gateway and its elastic IP

pub async fn converge_nat_gateway(cx: &Cx) -> Result<Vec<Change>> {
    if managed(cx).is_none() {
        return Ok(Vec::new());
    }
    let name = cx.names.part("nat");

    if let Some((id, state)) = find_nat_gateway(cx, &name).await? {
        if state != NatGatewayState::Available && cx.applying() {
            wait_for_nat_gateway(cx, &id).await?;
        }
        cx.outputs().nat_gateway_id = Some(id);
        return Ok(Vec::new());
    }

    let mut changes = Vec::new();
    let allocation_id = match find_address(cx, &name).await? {
        Some(id) => Some(id),
        None => {
            changes.push(Change::create(ADDRESS, &name));
            if cx.applying() {
                Some(allocate_address(cx, &name).await?)
            } else {
                None
            }
        }
    };
    changes.push(Change::create(NAT, &name));

    let subnet_id = cx.outputs().public_subnet_ids.first().cloned();
    let (Some(allocation_id), Some(subnet_id), true) = (allocation_id, subnet_id, cx.applying()) else {
        return Ok(changes);
    };
    let created = cx
        .aws
        .ec2
        .create_nat_gateway()
        .subnet_id(&subnet_id)
        .allocation_id(&allocation_id)
        .tag_specifications(tag_specification(cx, ResourceType::Natgateway, &name))
        .send()
        .await
        .map_err(|e| Error::aws("create NAT gateway", &name, e))?;
    let id = created
        .nat_gateway()
        .and_then(|gateway| gateway.nat_gateway_id())
        .unwrap_or_default()
        .to_owned();
    cx.progress.say(format!("created {NAT} `{name}` ({id}), waiting for it to become available"));
    wait_for_nat_gateway(cx, &id).await?;
    cx.outputs().nat_gateway_id = Some(id);
    Ok(changes)
}

/// Finds a NAT gateway of ours that is not deleted or being deleted.
async fn find_nat_gateway(cx: &Cx, name: &str) -> Result<Option<(String, NatGatewayState)>> {
    let found = cx
        .aws
        .ec2
        .describe_nat_gateways()
        .set_filter(Some(owned_filters(cx, Some(name))))
        .send()
        .await
        .map_err(|e| Error::aws("describe NAT gateways for", name, e))?;
    let gateways = found.nat_gateways().iter();
    Ok(gateways.filter(|gateway| is_ours(cx, gateway.tags(), Some(name))).find_map(|gateway| {
        let state = gateway.state()?.clone();
        match state {
            NatGatewayState::Deleted | NatGatewayState::Deleting | NatGatewayState::Failed => None,
            _ => Some((gateway.nat_gateway_id()?.to_owned(), state)),
        }
    }))
}

async fn wait_for_nat_gateway(cx: &Cx, id: &str) -> Result<()> {
    poll_until(
        &format!("NAT gateway `{id}` to become available"),
        NAT_TIMEOUT,
        Duration::from_secs(5),
        || async {
            let found = cx
                .aws
                .ec2
                .describe_nat_gateways()
                .nat_gateway_ids(id)
                .send()
                .await
                .map_err(|e| Error::aws("describe NAT gateway", id, e))?;
            let state = found.nat_gateways().first().and_then(|gateway| gateway.state().cloned());
            match state {
                Some(NatGatewayState::Available) => Ok(Some(())),
                Some(NatGatewayState::Failed) => Err(Error::Failed(format!(
                    "NAT gateway `{id}` failed to start; see its failure message with `aws ec2 describe-nat-gateways --nat-gateway-ids {id}` and rerun `deployer up`"
                ))),
                _ => Ok(None),
            }
        },
    )
    .await
}

async fn find_address(cx: &Cx, name: &str) -> Result<Option<String>> {
    let found = cx
        .aws
        .ec2
        .describe_addresses()
        .set_filters(Some(owned_filters(cx, Some(name))))
        .send()
        .await
        .map_err(|e| Error::aws("describe elastic IPs for", name, e))?;
    Ok(found
        .addresses()
        .iter()
        .find(|address| is_ours(cx, address.tags(), Some(name)))
        .and_then(|address| address.allocation_id().map(str::to_owned)))
}

async fn allocate_address(cx: &Cx, name: &str) -> Result<String> {
    let allocated = cx
        .aws
        .ec2
        .allocate_address()
        .domain(aws_sdk_ec2::types::DomainType::Vpc)
        .tag_specifications(tag_specification(cx, ResourceType::ElasticIp, name))
        .send()
        .await
        .map_err(|e| Error::aws("allocate elastic IP", name, e))?;
    let id = allocated.allocation_id().unwrap_or_default().to_owned();
    cx.progress.say(format!("created {ADDRESS} `{name}` ({id})"));
    Ok(id)
}

pub async fn destroy_nat_gateway(cx: &Cx) -> Result<Vec<Change>> {
    if managed(cx).is_none() {
        return Ok(Vec::new());
    }
    let name = cx.names.part("nat");
    let mut changes = Vec::new();

    if let Some((id, _)) = find_nat_gateway(cx, &name).await? {
        cx.aws
            .ec2
            .delete_nat_gateway()
            .nat_gateway_id(&id)
            .send()
            .await
            .map_err(|e| Error::aws("delete NAT gateway", &name, e))?;
        wait_for_nat_gateway_deleted(cx, &id).await?;
        cx.progress.say(format!("deleted {NAT} `{name}` ({id})"));
        changes.push(Change::delete(NAT, &name));
    }
    if let Some(allocation_id) = find_address(cx, &name).await? {
        cx.aws
            .ec2
            .release_address()
            .allocation_id(&allocation_id)
            .send()
            .await
            .map_err(|e| Error::aws("release elastic IP", &name, e))?;
        cx.progress.say(format!("deleted {ADDRESS} `{name}` ({allocation_id})"));
        changes.push(Change::delete(ADDRESS, &name));
    }
    Ok(changes)
}

/// The elastic IP and the subnet stay in use until the NAT gateway is gone.
async fn wait_for_nat_gateway_deleted(cx: &Cx, id: &str) -> Result<()> {
    poll_until(
        &format!("NAT gateway `{id}` to be deleted"),
        NAT_TIMEOUT,
        Duration::from_secs(5),
        || async {
            let found = cx
                .aws
                .ec2
                .describe_nat_gateways()
                .nat_gateway_ids(id)
                .send()
                .await
                .map_err(|e| Error::aws("describe NAT gateway", id, e))?;
            let state = found.nat_gateways().first().and_then(|gateway| gateway.state().cloned());
            Ok(matches!(state, None | Some(NatGatewayState::Deleted)).then_some(()))
        },
    )
    .await
}


