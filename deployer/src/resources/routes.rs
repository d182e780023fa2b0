//! The public route table (default route to the internet gateway) and the private one (default
//! route to the NAT gateway), each associated with its two subnets.

use aws_sdk_ec2::types::{ResourceType, RouteTable};

use super::ec2_util::{is_ours, owned_filters, tag_specification};
use crate::error::{Error, Result};
use crate::manifest::NetworkLayout;
use crate::plan::{Change, Cx, FieldChange};

const ROUTE_TABLE: &str = "ec2:route-table";
const DEFAULT_ROUTE: &str = "0.0.0.0/0";

/// Where a route table's default route goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    InternetGateway(Option<String>),
    NatGateway(Option<String>),
}

impl Target {
    fn id(&self) -> Option<&str> {
        match self {
            Target::InternetGateway(id) | Target::NatGateway(id) => id.as_deref(),
        }
    }
}

struct TableSpec {
    name: String,
    target: Target,
    subnet_ids: Vec<String>,
}

fn table_specs(cx: &Cx) -> Vec<TableSpec> {
    let outputs = cx.outputs();
    vec![
        TableSpec {
            name: cx.names.part("public"),
            target: Target::InternetGateway(outputs.internet_gateway_id.clone()),
            subnet_ids: outputs.public_subnet_ids.clone(),
        },
        TableSpec {
            name: cx.names.part("private"),
            target: Target::NatGateway(outputs.nat_gateway_id.clone()),
            subnet_ids: outputs.private_subnet_ids.clone(),
        },
    ]
}

pub async fn converge_route_tables(cx: &Cx) -> Result<Vec<Change>> {
    if matches!(cx.manifest.network.layout, NetworkLayout::Existing(_)) {
        return Ok(Vec::new());
    }
    let mut changes = Vec::new();
    for spec in table_specs(cx) {
        match find_route_table(cx, &spec.name).await? {
            Some(table) => changes.extend(update_route_table(cx, &spec, &table).await?),
            None => {
                changes.push(Change::create(ROUTE_TABLE, &spec.name));
                if cx.applying() {
                    create_route_table(cx, &spec).await?;
                }
            }
        }
    }
    Ok(changes)
}

async fn find_route_table(cx: &Cx, name: &str) -> Result<Option<RouteTable>> {
    let found = cx
        .aws
        .ec2
        .describe_route_tables()
        .set_filters(Some(owned_filters(cx, Some(name))))
        .send()
        .await
        .map_err(|e| Error::aws("describe route tables for", name, e))?;
    let mut tables = found.route_tables().iter();
    Ok(tables.find(|table| is_ours(cx, table.tags(), Some(name))).cloned())
}

async fn create_route_table(cx: &Cx, spec: &TableSpec) -> Result<()> {
    let vpc_id = cx
        .outputs()
        .vpc_id
        .clone()
        .ok_or_else(|| Error::Internal(format!("no VPC for route table `{}`", spec.name)))?;
    let created = cx
        .aws
        .ec2
        .create_route_table()
        .vpc_id(vpc_id)
        .tag_specifications(tag_specification(cx, ResourceType::RouteTable, &spec.name))
        .send()
        .await
        .map_err(|e| Error::aws("create route table", &spec.name, e))?;
    let table_id = created
        .route_table()
        .and_then(|table| table.route_table_id())
        .unwrap_or_default()
        .to_owned();
    set_default_route(cx, &table_id, &spec.target, false).await?;
    for subnet_id in &spec.subnet_ids {
        associate(cx, &table_id, subnet_id).await?;
    }
    cx.progress.say(format!("created {ROUTE_TABLE} `{}` ({table_id})", spec.name));
    Ok(())
}

/// Fixes the default route and the subnet associations of an existing table.
async fn update_route_table(cx: &Cx, spec: &TableSpec, table: &RouteTable) -> Result<Vec<Change>> {
    let table_id = table.route_table_id().unwrap_or_default();
    let mut fields = Vec::new();

    let current = table
        .routes()
        .iter()
        .find(|route| route.destination_cidr_block() == Some(DEFAULT_ROUTE))
        .and_then(|route| route.gateway_id().or(route.nat_gateway_id()).map(str::to_owned));
    let desired = spec.target.id().map(str::to_owned);
    if current != desired {
        fields.push(FieldChange {
            field: format!("route {DEFAULT_ROUTE}"),
            from: current.clone().unwrap_or_else(|| "(none)".into()),
            to: desired.unwrap_or_else(|| "(known after apply)".into()),
        });
        if cx.applying() {
            set_default_route(cx, table_id, &spec.target, current.is_some()).await?;
        }
    }

    for subnet_id in &spec.subnet_ids {
        let associated = table
            .associations()
            .iter()
            .any(|association| association.subnet_id() == Some(subnet_id.as_str()));
        if associated {
            continue;
        }
        fields.push(FieldChange {
            field: "associated_subnets".into(),
            from: "(without)".into(),
            to: subnet_id.clone(),
        });
        if cx.applying() {
            associate(cx, table_id, subnet_id).await?;
        }
    }
    Ok(Change::update(ROUTE_TABLE, &spec.name, fields).into_iter().collect())
}

async fn set_default_route(cx: &Cx, table_id: &str, target: &Target, replace: bool) -> Result<()> {
    let Some(target_id) = target.id() else {
        return Err(Error::Internal(format!("no gateway for the default route of `{table_id}`")));
    };
    let ec2 = &cx.aws.ec2;
    let outcome = match (target, replace) {
        (Target::InternetGateway(_), false) => ec2
            .create_route()
            .route_table_id(table_id)
            .destination_cidr_block(DEFAULT_ROUTE)
            .gateway_id(target_id)
            .send()
            .await
            .map(|_| ()),
        (Target::NatGateway(_), false) => ec2
            .create_route()
            .route_table_id(table_id)
            .destination_cidr_block(DEFAULT_ROUTE)
            .nat_gateway_id(target_id)
            .send()
            .await
            .map(|_| ()),
        (Target::InternetGateway(_), true) => {
            return ec2
                .replace_route()
                .route_table_id(table_id)
                .destination_cidr_block(DEFAULT_ROUTE)
                .gateway_id(target_id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| Error::aws("replace the default route of", table_id, e))
        }
        (Target::NatGateway(_), true) => {
            return ec2
                .replace_route()
                .route_table_id(table_id)
                .destination_cidr_block(DEFAULT_ROUTE)
                .nat_gateway_id(target_id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| Error::aws("replace the default route of", table_id, e))
        }
    };
    outcome.map_err(|e| Error::aws("create the default route of", table_id, e))
}

async fn associate(cx: &Cx, table_id: &str, subnet_id: &str) -> Result<()> {
    cx.aws
        .ec2
        .associate_route_table()
        .route_table_id(table_id)
        .subnet_id(subnet_id)
        .send()
        .await
        .map_err(|e| Error::aws("associate route table", format!("{table_id} with {subnet_id}"), e))?;
    Ok(())
}

pub async fn destroy_route_tables(cx: &Cx) -> Result<Vec<Change>> {
    if matches!(cx.manifest.network.layout, NetworkLayout::Existing(_)) {
        return Ok(Vec::new());
    }
    let mut changes = Vec::new();
    for name in [cx.names.part("public"), cx.names.part("private")] {
        let Some(table) = find_route_table(cx, &name).await? else {
            continue;
        };
        let table_id = table.route_table_id().unwrap_or_default();
        for association in table.associations() {
            let Some(association_id) = association.route_table_association_id() else {
                continue;
            };
            if association.main() == Some(true) {
                continue;
            }
            cx.aws
                .ec2
                .disassociate_route_table()
                .association_id(association_id)
                .send()
                .await
                .map_err(|e| Error::aws("disassociate route table", &name, e))?;
        }
        cx.aws
            .ec2
            .delete_route_table()
            .route_table_id(table_id)
            .send()
            .await
            .map_err(|e| Error::aws("delete route table", &name, e))?;
        cx.progress.say(format!("deleted {ROUTE_TABLE} `{name}` ({table_id})"));
        changes.push(Change::delete(ROUTE_TABLE, name));
    }
    Ok(changes)
}
