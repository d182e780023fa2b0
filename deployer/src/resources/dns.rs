//! Route 53 records: the domain's alias to the load balancer (only with a hosted zone), and the
//! upsert helper the certificate's validation records use.

use aws_sdk_route53::types::{
    AliasTarget, Change as RecordChange, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};

use crate::error::{Error, Result};
use crate::manifest::CertificateSource;
use crate::plan::{Change, Cx, FieldChange};

const RECORD: &str = "route53:record";

fn hosted_zone(cx: &Cx) -> Option<&str> {
    match &cx.manifest.https.certificate {
        CertificateSource::Managed { hosted_zone_id } => hosted_zone_id.as_deref(),
        CertificateSource::Existing { .. } => None,
    }
}

/// Route 53 returns names with a trailing dot and in lower case.
fn normalize(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.').to_ascii_lowercase())
}

pub async fn converge(cx: &Cx) -> Result<Vec<Change>> {
    let Some(zone) = hosted_zone(cx) else {
        return Ok(Vec::new());
    };
    let domain = cx.manifest.https.domain.clone();
    let (dns_name, alias_zone) = {
        let outputs = cx.outputs();
        (outputs.load_balancer_dns.clone(), outputs.load_balancer_zone_id.clone())
    };

    let current = find_record(cx, zone, &domain, RrType::A).await?;
    let current_target = current
        .as_ref()
        .and_then(|record| record.alias_target())
        .map(|alias| normalize(alias.dns_name()));
    let desired_target = dns_name.as_deref().map(normalize);
    if current_target.is_some() && current_target == desired_target {
        return Ok(Vec::new());
    }

    let change = match &current {
        None => Change::create(RECORD, &domain),
        Some(_) => Change::update(
            RECORD,
            &domain,
            vec![FieldChange {
                field: "alias".into(),
                from: current_target.unwrap_or_else(|| "(not an alias)".into()),
                to: desired_target.clone().unwrap_or_else(|| "(known after apply)".into()),
            }],
        )
        .expect("one field"),
    };
    let (Some(dns_name), Some(alias_zone), true) = (dns_name, alias_zone, cx.applying()) else {
        return Ok(vec![change]);
    };

    let alias = AliasTarget::builder()
        .hosted_zone_id(alias_zone)
        .dns_name(dns_name)
        .evaluate_target_health(true)
        .build()
        .map_err(|e| Error::Internal(format!("invalid alias target: {e}")))?;
    let record = ResourceRecordSet::builder()
        .name(&domain)
        .r#type(RrType::A)
        .alias_target(alias)
        .build()
        .map_err(|e| Error::Internal(format!("invalid record: {e}")))?;
    change_records(cx, zone, ChangeAction::Upsert, record).await?;
    cx.progress.say(format!("set {RECORD} `{domain}` to the load balancer"));
    Ok(vec![change])
}

async fn find_record(cx: &Cx, zone: &str, name: &str, kind: RrType) -> Result<Option<ResourceRecordSet>> {
    let found = cx
        .aws
        .route53
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .start_record_name(name)
        .start_record_type(kind.clone())
        .max_items(1)
        .send()
        .await
        .map_err(|e| Error::aws("list the records of hosted zone", zone, e))?;
    Ok(found
        .resource_record_sets()
        .iter()
        .find(|record| normalize(record.name()) == normalize(name) && record.r#type() == &kind)
        .cloned())
}

/// Creates or overwrites one simple record, such as a certificate's CNAME validation record.
pub async fn upsert_record(cx: &Cx, zone: &str, name: &str, kind: &str, value: &str) -> Result<()> {
    let record = ResourceRecordSet::builder()
        .name(name)
        .r#type(RrType::from(kind))
        .ttl(300)
        .resource_records(
            ResourceRecord::builder()
                .value(value)
                .build()
                .map_err(|e| Error::Internal(format!("invalid record value: {e}")))?,
        )
        .build()
        .map_err(|e| Error::Internal(format!("invalid record: {e}")))?;
    change_records(cx, zone, ChangeAction::Upsert, record).await?;
    cx.progress.say(format!("set {RECORD} `{name}` ({kind})"));
    Ok(())
}

/// Deletes a simple record when it exists with exactly `value`, such as a validation record.
pub async fn delete_record_if_present(cx: &Cx, zone: &str, name: &str, kind: &str, value: &str) -> Result<bool> {
    let Some(record) = find_record(cx, zone, name, RrType::from(kind)).await? else {
        return Ok(false);
    };
    let values: Vec<&str> = record.resource_records().iter().map(|record| record.value()).collect();
    if values != [value] {
        return Ok(false);
    }
    change_records(cx, zone, ChangeAction::Delete, record).await?;
    cx.progress.say(format!("deleted {RECORD} `{name}` ({kind})"));
    Ok(true)
}

async fn change_records(cx: &Cx, zone: &str, action: ChangeAction, record: ResourceRecordSet) -> Result<()> {
    let name = record.name().to_owned();
    let change = RecordChange::builder()
        .action(action)
        .resource_record_set(record)
        .build()
        .map_err(|e| Error::Internal(format!("invalid record change: {e}")))?;
    let batch = ChangeBatch::builder()
        .comment(format!("deployer: {}", cx.names.prefix))
        .changes(change)
        .build()
        .map_err(|e| Error::Internal(format!("invalid change batch: {e}")))?;
    cx.aws
        .route53
        .change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(batch)
        .send()
        .await
        .map_err(|e| Error::aws("change the record", name, e))?;
    Ok(())
}

/// Deletes the alias record only when it still points at this stack's load balancer.
pub async fn destroy(cx: &Cx) -> Result<Vec<Change>> {
    let Some(zone) = hosted_zone(cx) else {
        return Ok(Vec::new());
    };
    let domain = cx.manifest.https.domain.clone();
    let Some(record) = find_record(cx, zone, &domain, RrType::A).await? else {
        return Ok(Vec::new());
    };
    let Some(balancer) = super::load_balancer::find(cx, &cx.names.load_balancer()).await? else {
        return Ok(Vec::new());
    };
    let ours = record
        .alias_target()
        .map(|alias| normalize(alias.dns_name()) == normalize(balancer.dns_name().unwrap_or_default()))
        .unwrap_or(false);
    if !ours {
        return Ok(Vec::new());
    }
    change_records(cx, zone, ChangeAction::Delete, record).await?;
    cx.progress.say(format!("deleted {RECORD} `{domain}`"));
    Ok(vec![Change::delete(RECORD, domain)])
}
