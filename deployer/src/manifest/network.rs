//! Validation of `[network]`: the allowlist, and either a network the deployer creates from
//! CIDRs or an existing VPC and subnets named by id.

use std::collections::BTreeSet;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};
use toml::Spanned;

use super::check::{item_key, Checker};
use super::defaults;
use super::model::{ExistingNetwork, ManagedNetwork, NetworkConfig, NetworkLayout};
use super::raw::{List, RawNetwork};

/// Keys that describe a network the deployer creates.
const MANAGED_KEYS: [&str; 4] = ["vpc_cidr", "public_subnet_cidrs", "private_subnet_cidrs", "availability_zones"];

/// Smallest and largest prefix lengths AWS accepts for a VPC or subnet CIDR.
const MIN_PREFIX: u8 = 16;
const MAX_PREFIX: u8 = 28;

pub(super) fn network(cx: &mut Checker, raw: Option<RawNetwork>, region: Option<&str>) -> Option<NetworkConfig> {
    let Some(raw) = raw else {
        cx.missing_table("network", "`allowed_cidrs`, the networks that may reach the load balancer");
        return None;
    };

    let allowed_cidrs = allowed_cidrs(cx, &raw);
    let layout = layout(cx, raw, region);

    Some(NetworkConfig {
        layout: layout?,
        allowed_cidrs: allowed_cidrs?,
    })
}

const MAX_ALLOWED_CIDRS: usize = 30;

fn allowed_cidrs(cx: &mut Checker, raw: &RawNetwork) -> Option<Vec<IpNet>> {
    let example = "allowed_cidrs = [\"203.0.113.0/24\"]";
    let list = cx.required("network", "allowed_cidrs", raw.allowed_cidrs.clone(), example)?;
    if list.get_ref().is_empty() {
        cx.report(
            "network.allowed_cidrs",
            &list.span(),
            "`allowed_cidrs` is empty, so nobody could reach the load balancer".into(),
            "list the networks that may reach the app, such as `[\"203.0.113.0/24\"]`, or write `[\"0.0.0.0/0\"]` to allow everyone".into(),
        );
        return None;
    }
    // Each CIDR becomes two rules (ports 80 and 443), and a security group allows 60 inbound
    // rules per IP family by default.
    if list.get_ref().len() > MAX_ALLOWED_CIDRS {
        cx.report(
            "network.allowed_cidrs",
            &list.span(),
            format!("{} CIDRs is more than the maximum of {MAX_ALLOWED_CIDRS}", list.get_ref().len()),
            "merge neighbouring networks into larger CIDRs: each one takes two of the 60 inbound rules a security group allows by default".into(),
        );
        return None;
    }

    let mut cidrs = Vec::new();
    let mut seen = BTreeSet::new();
    let mut valid = true;
    for (index, item) in list.get_ref().iter().enumerate() {
        let key = item_key("network.allowed_cidrs", index);
        let Some(cidr) = cidr::<IpNet>(cx, &key, item, "203.0.113.0/24") else {
            valid = false;
            continue;
        };
        if !seen.insert(cidr) {
            cx.report(
                &key,
                &item.span(),
                format!("`{cidr}` is listed twice"),
                "remove the duplicate: security groups reject a rule that already exists".into(),
            );
            valid = false;
        }
        cidrs.push(cidr);
    }
    valid.then_some(cidrs)
}

fn layout(cx: &mut Checker, raw: RawNetwork, region: Option<&str>) -> Option<NetworkLayout> {
    let managed_key = [
        (MANAGED_KEYS[0], raw.vpc_cidr.is_some()),
        (MANAGED_KEYS[1], raw.public_subnet_cidrs.is_some()),
        (MANAGED_KEYS[2], raw.private_subnet_cidrs.is_some()),
        (MANAGED_KEYS[3], raw.availability_zones.is_some()),
    ]
    .into_iter()
    .find_map(|(key, present)| present.then_some(key));
    let existing_key = [
        ("vpc_id", raw.vpc_id.as_ref().map(Spanned::span)),
        ("public_subnet_ids", raw.public_subnet_ids.as_ref().map(Spanned::span)),
        ("private_subnet_ids", raw.private_subnet_ids.as_ref().map(Spanned::span)),
    ]
    .into_iter()
    .find_map(|(key, span)| span.map(|span| (key, span)));

    match (managed_key, existing_key) {
        (Some(managed_key), Some((existing_key, span))) => {
            cx.report(
                &format!("network.{existing_key}"),
                &span,
                format!("`{existing_key}` cannot be combined with `{managed_key}`"),
                "either let the deployer create the network (`vpc_cidr`, `public_subnet_cidrs`, `private_subnet_cidrs`) or use an existing one (`vpc_id`, `public_subnet_ids`, `private_subnet_ids`), not both".into(),
            );
            None
        }
        (None, Some(_)) => existing(cx, raw).map(NetworkLayout::Existing),
        _ => managed(cx, raw, region).map(NetworkLayout::Managed),
    }
}

fn managed(cx: &mut Checker, raw: RawNetwork, region: Option<&str>) -> Option<ManagedNetwork> {
    let vpc_cidr = match &raw.vpc_cidr {
        Some(value) => cidr::<Ipv4Net>(cx, "network.vpc_cidr", value, "10.0.0.0/16"),
        None => Some(defaults::VPC_CIDR.parse().expect("the default VPC CIDR is valid")),
    };
    let public = subnet_cidrs(cx, "public_subnet_cidrs", raw.public_subnet_cidrs, &defaults::PUBLIC_SUBNET_CIDRS);
    let private = subnet_cidrs(cx, "private_subnet_cidrs", raw.private_subnet_cidrs, &defaults::PRIVATE_SUBNET_CIDRS);
    let zones = availability_zones(cx, raw.availability_zones, region);

    let (vpc_cidr, public, private) = (vpc_cidr?, public?, private?);
    if !subnets_fit(cx, vpc_cidr, &raw.vpc_cidr, public.iter().chain(&private)) {
        return None;
    }

    Some(ManagedNetwork {
        vpc_cidr,
        public_subnet_cidrs: public.into_iter().map(|subnet| subnet.net).collect(),
        private_subnet_cidrs: private.into_iter().map(|subnet| subnet.net).collect(),
        availability_zones: zones?,
    })
}

/// A subnet CIDR with the key and span it was written at, or `None` for a default.
struct Subnet {
    net: Ipv4Net,
    key: String,
    span: Option<std::ops::Range<usize>>,
}

fn subnet_cidrs(cx: &mut Checker, name: &str, list: List, default: &[&str; 2]) -> Option<Vec<Subnet>> {
    let key = format!("network.{name}");
    let Some(list) = list else {
        let subnets = default.iter().enumerate().map(|(index, cidr)| Subnet {
            net: cidr.parse().expect("the default subnet CIDRs are valid"),
            key: item_key(&key, index),
            span: None,
        });
        return Some(subnets.collect());
    };

    if list.get_ref().len() != 2 {
        cx.report(
            &key,
            &list.span(),
            format!("expected exactly two subnets, found {}", list.get_ref().len()),
            "list two CIDRs, one for each of the two availability zones the load balancer and the tasks use".into(),
        );
        return None;
    }

    let mut subnets = Vec::new();
    for (index, item) in list.get_ref().iter().enumerate() {
        let item_key = item_key(&key, index);
        if let Some(net) = cidr::<Ipv4Net>(cx, &item_key, item, default[index]) {
            subnets.push(Subnet {
                net,
                key: item_key,
                span: Some(item.span()),
            });
        }
    }
    (subnets.len() == 2).then_some(subnets)
}

/// Checks that every subnet lies inside the VPC and that no two subnets overlap.
fn subnets_fit<'a>(
    cx: &mut Checker,
    vpc: Ipv4Net,
    vpc_value: &Option<Spanned<String>>,
    subnets: impl Iterator<Item = &'a Subnet>,
) -> bool {
    let subnets: Vec<&Subnet> = subnets.collect();
    let mut fits = true;

    // A default subnet has no position of its own, so one problem at the VPC CIDR covers them.
    if let Some(outside) = subnets.iter().find(|subnet| subnet.span.is_none() && !vpc.contains(&subnet.net)) {
        let span = vpc_value.as_ref().map_or(0..0, Spanned::span);
        cx.report(
            "network.vpc_cidr",
            &span,
            format!("the default subnet `{}` is outside the VPC `{vpc}`", outside.net),
            format!("set `public_subnet_cidrs` and `private_subnet_cidrs` to ranges inside `{vpc}`"),
        );
        fits = false;
    }

    for subnet in &subnets {
        let Some(span) = &subnet.span else { continue };
        if !vpc.contains(&subnet.net) {
            cx.report(
                &subnet.key,
                span,
                format!("subnet `{}` is outside the VPC `{vpc}`", subnet.net),
                format!("use a range inside `{vpc}`, or change `vpc_cidr` so that it contains every subnet"),
            );
            fits = false;
        }
    }

    for (index, later) in subnets.iter().enumerate() {
        for earlier in &subnets[..index] {
            let overlaps = earlier.net.contains(&later.net.network()) || later.net.contains(&earlier.net.network());
            if !overlaps {
                continue;
            }
            // Report at the subnet that was written out. Two defaults never overlap.
            let (reported, other) = if later.span.is_some() { (later, earlier) } else { (earlier, later) };
            let Some(span) = &reported.span else { continue };
            let default = if other.span.is_none() { "the default " } else { "" };
            cx.report(
                &reported.key,
                span,
                format!("subnet `{}` overlaps {default}`{}` (`{}`)", reported.net, other.key, other.net),
                format!("give each subnet its own range inside `{vpc}`"),
            );
            fits = false;
        }
    }
    fits
}

fn availability_zones(cx: &mut Checker, list: List, region: Option<&str>) -> Option<Vec<String>> {
    let Some(list) = list else {
        return Some(Vec::new());
    };
    let key = "network.availability_zones";
    let example = format!("[\"{0}a\", \"{0}c\"]", region.unwrap_or("ap-northeast-1"));

    let zones = list.get_ref();
    let distinct: BTreeSet<&String> = zones.iter().map(Spanned::get_ref).collect();
    if zones.len() != 2 || distinct.len() != 2 {
        cx.report(
            key,
            &list.span(),
            format!("expected two different availability zones, found {}", zones.len()),
            format!("list two zones of the region, such as `{example}`, or remove the key to use the first two zones"),
        );
        return None;
    }

    let mut valid = true;
    for (index, zone) in zones.iter().enumerate() {
        let name = zone.get_ref();
        let Some(region) = region else {
            continue;
        };
        let suffix = name.strip_prefix(region).unwrap_or("");
        if suffix.is_empty() || !suffix.chars().all(|c| c.is_ascii_lowercase()) {
            cx.report(
                &item_key(key, index),
                &zone.span(),
                format!("`{name}` is not an availability zone of `{region}`"),
                format!("write the region followed by the zone letter, such as `{example}`"),
            );
            valid = false;
        }
    }
    valid.then(|| zones.iter().map(|zone| zone.get_ref().clone()).collect())
}

/// Parses a CIDR in canonical form: the network address with no host bits set.
fn cidr<N>(cx: &mut Checker, key: &str, value: &Spanned<String>, example: &str) -> Option<N>
where
    N: FromStr + Copy + Cidr,
{
    let text = value.get_ref();
    let Ok(net) = text.parse::<N>() else {
        let hint = if !text.contains('/') && text.parse::<std::net::IpAddr>().is_ok() {
            format!("add a prefix length: `{text}/32` is the single address")
        } else {
            format!("write the network address and the prefix length, such as `{example}`")
        };
        let family = if N::IPV4_ONLY { "IPv4 CIDR" } else { "CIDR" };
        cx.report(key, &value.span(), format!("invalid {family} `{text}`"), hint);
        return None;
    };

    if net.truncated() != net {
        cx.report(
            key,
            &value.span(),
            format!("CIDR `{text}` has host bits set"),
            format!("write the network address `{}`", net.truncated()),
        );
        return None;
    }
    if N::IPV4_ONLY && !(MIN_PREFIX..=MAX_PREFIX).contains(&net.prefix()) {
        cx.report(
            key,
            &value.span(),
            format!("prefix length /{} of `{text}` is outside the range AWS allows", net.prefix()),
            format!("use a prefix length from /{MIN_PREFIX} to /{MAX_PREFIX}"),
        );
        return None;
    }
    Some(net)
}

/// The parts of `IpNet` and `Ipv4Net` that `cidr` needs.
trait Cidr: PartialEq + std::fmt::Display {
    /// True for VPC and subnet CIDRs, which are IPv4 with a prefix length AWS limits.
    const IPV4_ONLY: bool;
    fn truncated(&self) -> Self;
    fn prefix(&self) -> u8;
}

impl Cidr for IpNet {
    const IPV4_ONLY: bool = false;
    fn truncated(&self) -> Self {
        self.trunc()
    }
    fn prefix(&self) -> u8 {
        self.prefix_len()
    }
}

impl Cidr for Ipv4Net {
    const IPV4_ONLY: bool = true;
    fn truncated(&self) -> Self {
        self.trunc()
    }
    fn prefix(&self) -> u8 {
        self.prefix_len()
    }
}

fn existing(cx: &mut Checker, raw: RawNetwork) -> Option<ExistingNetwork> {
    let vpc_id = cx.required("network", "vpc_id", raw.vpc_id, "vpc_id = \"vpc-0123456789abcdef0\"");
    let vpc_id = vpc_id.and_then(|value| resource_id(cx, "network.vpc_id", &value, "vpc"));
    let public = cx.required(
        "network",
        "public_subnet_ids",
        raw.public_subnet_ids,
        "public_subnet_ids = [\"subnet-...\", \"subnet-...\"]",
    );
    let public = public.and_then(|list| subnet_ids(cx, "network.public_subnet_ids", &list));
    let private = cx.required(
        "network",
        "private_subnet_ids",
        raw.private_subnet_ids,
        "private_subnet_ids = [\"subnet-...\", \"subnet-...\"]",
    );
    let private = private.and_then(|list| subnet_ids(cx, "network.private_subnet_ids", &list));

    Some(ExistingNetwork {
        vpc_id: vpc_id?,
        public_subnet_ids: public?,
        private_subnet_ids: private?,
    })
}

fn subnet_ids(cx: &mut Checker, key: &str, list: &Spanned<Vec<Spanned<String>>>) -> Option<Vec<String>> {
    let items = list.get_ref();
    if items.len() < 2 {
        cx.report(
            key,
            &list.span(),
            format!("expected at least two subnet ids, found {}", items.len()),
            "list subnets in at least two availability zones: load balancers need two zones".into(),
        );
        return None;
    }

    let mut ids = Vec::new();
    let mut seen = BTreeSet::new();
    for (index, item) in items.iter().enumerate() {
        let item_key = item_key(key, index);
        if !seen.insert(item.get_ref()) {
            cx.report(
                &item_key,
                &item.span(),
                format!("subnet id `{}` is listed twice", item.get_ref()),
                "remove the duplicate, and list subnets in at least two availability zones".into(),
            );
            ids.push(None);
            continue;
        }
        ids.push(resource_id(cx, &item_key, item, "subnet"));
    }
    ids.into_iter().collect()
}

/// Checks an EC2 id such as `vpc-0123456789abcdef0`: the prefix, a hyphen and 8 or 17 hex digits.
fn resource_id(cx: &mut Checker, key: &str, value: &Spanned<String>, prefix: &str) -> Option<String> {
    let id = value.get_ref();
    let valid = id.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('-')).is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    });
    if valid {
        return Some(id.clone());
    }

    cx.report(
        key,
        &value.span(),
        format!("invalid {prefix} id `{id}`"),
        format!("write an id such as `{prefix}-0123456789abcdef0`, as the EC2 console shows it"),
    );
    None
}
