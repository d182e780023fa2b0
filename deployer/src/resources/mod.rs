//! One module per AWS resource kind. Each finds its resource by derived name and ownership tags,
//! decides the one action that converges it, and performs it when the mode is `Apply`.

mod bucket;
mod certificate;
mod cluster;
mod codebuild;
mod dns;
mod ec2_util;
mod elb_util;
mod iam;
mod listeners;
mod load_balancer;
mod logs;
mod network;
mod repository;
mod routes;
mod secrets;
mod security_groups;
mod target_group;

pub mod tags;

pub use cluster::ecs_tags;

use crate::error::Result;
use crate::plan::{Change, Cx};

/// The resource steps of the stack, in an order that respects their dependencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Vpc,
    InternetGateway,
    Subnets,
    NatGateway,
    RouteTables,
    SecurityGroups,
    LogGroups,
    Secrets,
    Repository,
    Bucket,
    Roles,
    BuildProject,
    Certificate,
    TargetGroup,
    LoadBalancer,
    Listeners,
    DnsRecord,
    Cluster,
}

impl Kind {
    /// Every step, in an order that respects `dependencies`.
    pub const ALL: &'static [Kind] = &[
        Kind::Vpc,
        Kind::InternetGateway,
        Kind::Subnets,
        Kind::NatGateway,
        Kind::RouteTables,
        Kind::SecurityGroups,
        Kind::LogGroups,
        Kind::Secrets,
        Kind::Repository,
        Kind::Bucket,
        Kind::Roles,
        Kind::BuildProject,
        Kind::Certificate,
        Kind::TargetGroup,
        Kind::LoadBalancer,
        Kind::Listeners,
        Kind::DnsRecord,
        Kind::Cluster,
    ];

    /// The steps that must finish before this one starts (and, for destroy, after it ends).
    pub fn dependencies(self) -> &'static [Kind] {
        match self {
            Kind::Vpc
            | Kind::LogGroups
            | Kind::Secrets
            | Kind::Repository
            | Kind::Bucket
            | Kind::Roles
            | Kind::Certificate
            | Kind::Cluster => &[],
            Kind::InternetGateway | Kind::Subnets | Kind::SecurityGroups | Kind::TargetGroup => &[Kind::Vpc],
            Kind::BuildProject => &[Kind::Roles, Kind::Repository, Kind::Bucket, Kind::LogGroups],
            Kind::LoadBalancer => &[Kind::Subnets, Kind::SecurityGroups, Kind::InternetGateway],
            Kind::Listeners => &[Kind::LoadBalancer, Kind::TargetGroup, Kind::Certificate],
            Kind::DnsRecord => &[Kind::LoadBalancer],
            Kind::NatGateway => &[Kind::Subnets, Kind::InternetGateway],
            Kind::RouteTables => &[Kind::Subnets, Kind::InternetGateway, Kind::NatGateway],
        }
    }
}

/// Plans or applies one step, by `cx.mode`.
pub async fn converge(cx: &Cx, kind: Kind) -> Result<Vec<Change>> {
    match kind {
        Kind::Vpc => network::converge_vpc(cx).await,
        Kind::InternetGateway => network::converge_internet_gateway(cx).await,
        Kind::Subnets => network::converge_subnets(cx).await,
        Kind::NatGateway => network::converge_nat_gateway(cx).await,
        Kind::RouteTables => routes::converge_route_tables(cx).await,
        Kind::SecurityGroups => security_groups::converge(cx).await,
        Kind::LogGroups => logs::converge(cx).await,
        Kind::Secrets => secrets::converge(cx).await,
        Kind::Repository => repository::converge(cx).await,
        Kind::Bucket => bucket::converge(cx).await,
        Kind::Roles => iam::converge(cx).await,
        Kind::BuildProject => codebuild::converge(cx).await,
        Kind::Certificate => certificate::converge(cx).await,
        Kind::TargetGroup => target_group::converge(cx).await,
        Kind::LoadBalancer => load_balancer::converge(cx).await,
        Kind::Listeners => listeners::converge(cx).await,
        Kind::DnsRecord => dns::converge(cx).await,
        Kind::Cluster => cluster::converge(cx).await,
    }
}

/// Deletes what one step created; deletes nothing the deployer does not own.
pub async fn destroy(cx: &Cx, kind: Kind) -> Result<Vec<Change>> {
    match kind {
        Kind::Vpc => network::destroy_vpc(cx).await,
        Kind::InternetGateway => network::destroy_internet_gateway(cx).await,
        Kind::Subnets => network::destroy_subnets(cx).await,
        Kind::NatGateway => network::destroy_nat_gateway(cx).await,
        Kind::RouteTables => routes::destroy_route_tables(cx).await,
        Kind::SecurityGroups => security_groups::destroy(cx).await,
        Kind::LogGroups => logs::destroy(cx).await,
        Kind::Secrets => secrets::destroy(cx).await,
        Kind::Repository => repository::destroy(cx).await,
        Kind::Bucket => bucket::destroy(cx).await,
        Kind::Roles => iam::destroy(cx).await,
        Kind::BuildProject => codebuild::destroy(cx).await,
        Kind::Certificate => certificate::destroy(cx).await,
        Kind::TargetGroup => target_group::destroy(cx).await,
        Kind::LoadBalancer => load_balancer::destroy(cx).await,
        Kind::Listeners => listeners::destroy(cx).await,
        Kind::DnsRecord => dns::destroy(cx).await,
        Kind::Cluster => cluster::destroy(cx).await,
    }
}
