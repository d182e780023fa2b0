//! The ACM certificate for the domain, validated by DNS. With a hosted zone the validation
//! records are written to Route 53; without one they are printed for the DNS owner to add.

use std::time::Duration;

use aws_sdk_acm::types::{CertificateDetail, CertificateStatus, ResourceRecord, Tag, ValidationMethod};

use super::dns::{delete_record_if_present, upsert_record};
use crate::error::{Error, Result};
use crate::manifest::CertificateSource;
use crate::plan::{Change, Cx};
use crate::wait::poll_until;

const CERTIFICATE: &str = "acm:certificate";

/// How long a new certificate may stay `PENDING_VALIDATION` before the deployer gives up.
/// DNS validation usually finishes within minutes once the records resolve.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

pub async fn converge(cx: &Cx) -> Result<Vec<Change>> {
    let domain = cx.manifest.https.domain.clone();
    let hosted_zone = match &cx.manifest.https.certificate {
        CertificateSource::Existing { arn } => {
            check_existing(cx, arn).await?;
            cx.outputs().certificate_arn = Some(arn.clone());
            return Ok(Vec::new());
        }
        CertificateSource::Managed { hosted_zone_id } => hosted_zone_id.clone(),
    };

    let (arn, change) = match find(cx, &domain).await? {
        Some(arn) => (arn, None),
        None if !cx.applying() => return Ok(vec![Change::create(CERTIFICATE, &domain)]),
        None => (request(cx, &domain).await?, Some(Change::create(CERTIFICATE, &domain))),
    };
    cx.outputs().certificate_arn = Some(arn.clone());

    let detail = describe(cx, &arn).await?;
    if detail.status() == Some(&CertificateStatus::Issued) || !cx.applying() {
        return Ok(change.into_iter().collect());
    }

    let records = wait_for_validation_records(cx, &arn).await?;
    match &hosted_zone {
        Some(zone) => {
            for record in &records {
                upsert_record(cx, zone, record.name(), "CNAME", record.value()).await?;
            }
        }
        None => print_validation_records(cx, &records),
    }
    wait_until_issued(cx, &arn, &domain, hosted_zone.is_some()).await?;
    Ok(change.into_iter().collect())
}

/// Finds a certificate of ours for `domain` that is issued or still validating.
async fn find(cx: &Cx, domain: &str) -> Result<Option<String>> {
    Ok(find_all(cx, domain).await?.into_iter().next())
}

/// Finds every certificate of ours for `domain`. The request carries the tags, so a run stopped right
/// after it leaves a tagged certificate that the next run finds instead of requesting another.
async fn find_all(cx: &Cx, domain: &str) -> Result<Vec<String>> {
    let mut candidates = Vec::new();
    let mut pages = cx
        .aws
        .acm
        .list_certificates()
        .certificate_statuses(CertificateStatus::Issued)
        .certificate_statuses(CertificateStatus::PendingValidation)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::aws("list certificates for", domain, e))?;
        for summary in page.certificate_summary_list() {
            if summary.domain_name() == Some(domain) {
                candidates.extend(summary.certificate_arn().map(str::to_owned));
            }
        }
    }

    let mut ours = Vec::new();
    for arn in candidates {
        let tags = cx
            .aws
            .acm
            .list_tags_for_certificate()
            .certificate_arn(&arn)
            .send()
            .await
            .map_err(|e| Error::aws("read the tags of certificate", &arn, e))?;
        let pairs = tags.tags().iter().map(|tag| (tag.key(), tag.value().unwrap_or_default()));
        if cx.names.owns(pairs) {
            ours.push(arn);
        }
    }
    Ok(ours)
}

/// Derives the same token for the same app, stage and domain, so that ACM returns the certificate
/// it already made for a request repeated within an hour, as after a run killed mid-request.
// NOTE: an `up` within an hour of a `destroy` that deleted the certificate repeats the token.
// moto 5.2.5 then fails with HTTP 500; what ACM itself returns for a deleted certificate is not
// known here.
fn idempotency_token(prefix: &str, domain: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(format!("{prefix}/{domain}").as_bytes());
    hash.iter().take(16).map(|byte| format!("{byte:02x}")).collect()
}

async fn request(cx: &Cx, domain: &str) -> Result<String> {
    let tags: Vec<Tag> = cx
        .names
        .tags
        .iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build().expect("tag has a key"))
        .collect();
    let requested = cx
        .aws
        .acm
        .request_certificate()
        .domain_name(domain)
        .validation_method(ValidationMethod::Dns)
        .idempotency_token(idempotency_token(&cx.names.prefix, domain))
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(|e| Error::aws("request certificate for", domain, e))?;
    let arn = requested.certificate_arn().unwrap_or_default().to_owned();
    cx.progress.say(format!("created {CERTIFICATE} `{domain}`"));
    Ok(arn)
}

async fn describe(cx: &Cx, arn: &str) -> Result<CertificateDetail> {
    let described = cx
        .aws
        .acm
        .describe_certificate()
        .certificate_arn(arn)
        .send()
        .await
        .map_err(|e| Error::aws("describe certificate", arn, e))?;
    described
        .certificate()
        .cloned()
        .ok_or_else(|| Error::Failed(format!("certificate `{arn}` has no details")))
}

async fn check_existing(cx: &Cx, arn: &str) -> Result<()> {
    let detail = describe(cx, arn).await?;
    if detail.status() != Some(&CertificateStatus::Issued) {
        let status = detail.status().map(|status| status.as_str()).unwrap_or("unknown");
        return Err(Error::Input(format!(
            "certificate `{arn}` from `https.certificate_arn` is `{status}`, not `ISSUED`; finish its validation or name another certificate"
        )));
    }
    Ok(())
}

/// ACM fills in the validation records a few seconds after the request.
async fn wait_for_validation_records(cx: &Cx, arn: &str) -> Result<Vec<ResourceRecord>> {
    poll_until(
        &format!("the DNS validation records of certificate `{arn}`"),
        Duration::from_secs(120),
        Duration::from_secs(2),
        || async {
            let detail = describe(cx, arn).await?;
            let records: Vec<ResourceRecord> = detail
                .domain_validation_options()
                .iter()
                .filter_map(|option| option.resource_record().cloned())
                .collect();
            Ok((!records.is_empty()).then_some(records))
        },
    )
    .await
}

fn print_validation_records(cx: &Cx, records: &[ResourceRecord]) {
    cx.progress.say("no `https.hosted_zone_id` is set: add these DNS records to validate the certificate:");
    for record in records {
        cx.progress.say(format!("    {} CNAME {}", record.name(), record.value()));
    }
}

async fn wait_until_issued(cx: &Cx, arn: &str, domain: &str, records_written: bool) -> Result<()> {
    cx.progress.say(format!("waiting for certificate `{domain}` to be issued"));
    let waited = poll_until(
        &format!("certificate `{domain}` to be issued"),
        ISSUE_TIMEOUT,
        Duration::from_secs(10),
        || async {
            let detail = describe(cx, arn).await?;
            match detail.status() {
                Some(CertificateStatus::Issued) => Ok(Some(())),
                Some(CertificateStatus::PendingValidation) => Ok(None),
                other => Err(Error::Failed(format!(
                    "certificate `{domain}` is `{}`: {}; fix the cause and rerun `deployer up`",
                    other.map(|status| status.as_str()).unwrap_or("unknown"),
                    detail.failure_reason().map(|reason| reason.as_str()).unwrap_or("no reason given"),
                ))),
            }
        },
    )
    .await;
    match waited {
        Err(Error::Timeout { after, .. }) if !records_written => Err(Error::Failed(format!(
            "certificate `{domain}` was not issued within {}: add the DNS records printed above, then rerun `deployer up`",
            humantime::format_duration(after)
        ))),
        other => other,
    }
}

pub async fn destroy(cx: &Cx) -> Result<Vec<Change>> {
    let hosted_zone = match &cx.manifest.https.certificate {
        CertificateSource::Existing { .. } => return Ok(Vec::new()),
        CertificateSource::Managed { hosted_zone_id } => hosted_zone_id.clone(),
    };
    let domain = cx.manifest.https.domain.clone();
    let mut changes = Vec::new();
    for arn in find_all(cx, &domain).await? {
        if let Some(zone) = &hosted_zone {
            delete_validation_records(cx, zone, &arn).await?;
        }
        cx.aws
            .acm
            .delete_certificate()
            .certificate_arn(&arn)
            .send()
            .await
            .map_err(|e| Error::aws("delete certificate", &domain, e))?;
        cx.progress.say(format!("deleted {CERTIFICATE} `{domain}`"));
        changes.push(Change::delete(CERTIFICATE, &domain));
    }
    Ok(changes)
}

/// Deletes the validation records that `up` wrote for this certificate, if they are still there.
async fn delete_validation_records(cx: &Cx, zone: &str, arn: &str) -> Result<()> {
    let detail = describe(cx, arn).await?;
    for option in detail.domain_validation_options() {
        if let Some(record) = option.resource_record() {
            delete_record_if_present(cx, zone, record.name(), "CNAME", record.value()).await?;
        }
    }
    Ok(())
}
