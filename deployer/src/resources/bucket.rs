//! The S3 bucket that holds the source bundles CodeBuild builds: private, encrypted with
//! SSE-S3, ACLs disabled, and bundles expired after a month.

use std::collections::BTreeMap;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketLocationConstraint, CreateBucketConfiguration, Delete, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, ObjectIdentifier, ObjectOwnership, OwnershipControls,
    OwnershipControlsRule, PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging, TransitionDefaultMinimumObjectSize,
};
use aws_smithy_types::error::operation::BuildError;

use crate::error::{Error, Result};
use crate::plan::{diff_field, Change, Cx, FieldChange};

const BUCKET: &str = "s3:bucket";

/// Key prefix of the uploaded source bundles.
pub(super) const BUNDLE_PREFIX: &str = "bundles/";
/// Days after which a bundle expires; the image built from it lives on in ECR.
const BUNDLE_EXPIRY_DAYS: i32 = 30;
/// Id of the lifecycle rule the deployer owns; rules with other ids are kept as they are.
const BUNDLE_RULE_ID: &str = "expire-bundles";

/// What the bucket name is at the S3 endpoint.
enum Existence {
    Missing,
    Exists,
    /// S3 answered 403: another account owns the name, or these credentials may not read it.
    Forbidden,
}

/// The four public access block flags; a bucket without the configuration has all four off.
#[derive(Debug, Default, PartialEq, Eq)]
struct PublicAccess {
    block_public_acls: bool,
    ignore_public_acls: bool,
    block_public_policy: bool,
    restrict_public_buckets: bool,
}

impl PublicAccess {
    const ALL_BLOCKED: PublicAccess = PublicAccess {
        block_public_acls: true,
        ignore_public_acls: true,
        block_public_policy: true,
        restrict_public_buckets: true,
    };

    /// The flags that are on, by their S3 names, for the plan.
    fn describe(&self) -> String {
        let flags = [
            (self.block_public_acls, "BlockPublicAcls"),
            (self.ignore_public_acls, "IgnorePublicAcls"),
            (self.block_public_policy, "BlockPublicPolicy"),
            (self.restrict_public_buckets, "RestrictPublicBuckets"),
        ];
        let on: Vec<&str> = flags.iter().filter(|(on, _)| *on).map(|(_, name)| *name).collect();
        if on.is_empty() {
            "(none)".to_owned()
        } else {
            on.join(", ")
        }
    }
}

/// The parts of the deployer's lifecycle rule that it sets.
#[derive(Debug, PartialEq, Eq)]
struct BundleRule {
    enabled: bool,
    prefix: String,
    expiration_days: Option<i32>,
}

impl BundleRule {
    fn desired() -> Self {
        BundleRule {
            enabled: true,
            prefix: BUNDLE_PREFIX.to_owned(),
            expiration_days: Some(BUNDLE_EXPIRY_DAYS),
        }
    }

    // `Prefix` outside `Filter` is the deprecated form of the same filter, which older rules use.
    #[allow(deprecated)]
    fn of(rule: &LifecycleRule) -> Self {
        let prefix = rule.filter().and_then(LifecycleRuleFilter::prefix).or(rule.prefix());
        BundleRule {
            enabled: *rule.status() == ExpirationStatus::Enabled,
            prefix: prefix.unwrap_or_default().to_owned(),
            expiration_days: rule.expiration().and_then(LifecycleExpiration::days),
        }
    }
}

/// The rule for the plan, such as `bundles/ expires after 30 days`.
fn describe_bundle_rule(rule: &Option<BundleRule>) -> String {
    let Some(rule) = rule else {
        return "(none)".to_owned();
    };
    let expiry = match rule.expiration_days {
        Some(days) => format!("expires after {days} days"),
        None => "never expires".to_owned(),
    };
    let state = if rule.enabled { "" } else { " (disabled)" };
    format!("`{}` {expiry}{state}", rule.prefix)
}

/// The bucket's lifecycle configuration, split into the deployer's rule and everyone else's.
#[derive(Debug, Default)]
struct Lifecycle {
    bundle_rule: Option<BundleRule>,
    other_rules: Vec<LifecycleRule>,
    minimum_object_size: Option<TransitionDefaultMinimumObjectSize>,
}

/// The settings the deployer manages, as read from S3.
#[derive(Debug, Default)]
struct Settings {
    tags: BTreeMap<String, String>,
    public_access: PublicAccess,
    /// The default encryption algorithm, such as `AES256`.
    encryption: Option<String>,
    object_ownership: Option<String>,
    lifecycle: Lifecycle,
}

pub async fn converge(cx: &Cx) -> Result<Vec<Change>> {
    let bucket = cx.bucket();
    match existence(cx, &bucket).await? {
        Existence::Forbidden => return Err(name_taken(&bucket)),
        Existence::Missing => {
            if cx.applying() {
                create_bucket(cx, &bucket).await?;
                cx.outputs().bucket = Some(bucket.clone());
            }
            return Ok(vec![Change::create(BUCKET, bucket)]);
        }
        Existence::Exists => {}
    }

    let tags = read_tags(cx, &bucket).await?;
    if !is_ours_or_adoptable(cx, &bucket, &tags).await? {
        return Err(Error::NotOwned {
            kind: BUCKET,
            name: bucket,
            app: cx.names.prefix.clone(),
        });
    }
    cx.outputs().bucket = Some(bucket.clone());

    let (public_access, encryption, object_ownership, lifecycle) = futures::try_join!(
        read_public_access(cx, &bucket),
        read_encryption(cx, &bucket),
        read_object_ownership(cx, &bucket),
        read_lifecycle(cx, &bucket),
    )?;
    let current = Settings {
        tags,
        public_access,
        encryption,
        object_ownership,
        lifecycle,
    };

    let Some(change) = Change::update(BUCKET, &bucket, differences(cx, &current)) else {
        return Ok(Vec::new());
    };
    if cx.applying() {
        apply_differences(cx, &bucket, &current, &change.fields).await?;
        cx.progress.say(format!("updated {BUCKET} `{bucket}`"));
    }
    Ok(vec![change])
}

/// True when the bucket carries our ownership tags, or is empty and has no tags at all.
///
/// A run stopped between creating the bucket and tagging it leaves an empty, untagged bucket
/// under our derived name, which embeds this account's id. Such a bucket contains nothing to
/// lose, so `converge` adopts and tags it and `destroy` deletes it. A bucket with other tags or
/// with objects is never touched.
async fn is_ours_or_adoptable(cx: &Cx, bucket: &str, tags: &BTreeMap<String, String>) -> Result<bool> {
    let owned = cx
        .names
        .owns(tags.iter().map(|(key, value)| (key.as_str(), value.as_str())));
    Ok(owned || tags.is_empty() && is_empty(cx, bucket).await?)
}

async fn is_empty(cx: &Cx, bucket: &str) -> Result<bool> {
    let listed = cx
        .aws
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .max_keys(1)
        .send()
        .await
        .map_err(|e| Error::aws("list the objects of S3 bucket", bucket, e))?;
    Ok(listed.key_count().unwrap_or(0) == 0 && listed.contents().is_empty())
}

fn name_taken(bucket: &str) -> Error {
    Error::Input(format!(
        "the S3 bucket name `{bucket}` is taken: S3 returned 403 Forbidden for it, so another AWS account owns it \
         (or these credentials lack `s3:ListBucket`); bucket names are global, so choose another `app.name` or `app.stage`"
    ))
}

async fn existence(cx: &Cx, bucket: &str) -> Result<Existence> {
    let head = cx
        .aws
        .s3
        .head_bucket()
        .bucket(bucket)
        .expected_bucket_owner(&cx.account_id)
        .send()
        .await;
    match head {
        Ok(_) => Ok(Existence::Exists),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(Existence::Missing),
        Err(e) if e.raw_response().map(|response| response.status().as_u16()) == Some(403) => Ok(Existence::Forbidden),
        Err(e) => Err(Error::aws("look up S3 bucket", bucket, e)),
    }
}

/// Creates the bucket with its tags, its ACLs disabled, and then the remaining settings.
async fn create_bucket(cx: &Cx, bucket: &str) -> Result<()> {
    // Tags in the create request mean that an interrupted run leaves no untagged bucket.
    // NOTE: moto 5.2.5 ignores them, so there the `put_bucket_tagging` below adds them.
    let mut configuration = CreateBucketConfiguration::builder().set_tags(Some(tags(&cx.names.tags)?));
    // us-east-1 is the default location and rejects an explicit location constraint.
    if cx.region != "us-east-1" {
        configuration = configuration.location_constraint(BucketLocationConstraint::from(cx.region.as_str()));
    }
    let created = cx
        .aws
        .s3
        .create_bucket()
        .bucket(bucket)
        .create_bucket_configuration(configuration.build())
        .object_ownership(ObjectOwnership::BucketOwnerEnforced)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e) if e.as_service_error().is_some_and(|e| e.is_bucket_already_exists()) => return Err(name_taken(bucket)),
        Err(e) => return Err(Error::aws("create S3 bucket", bucket, e)),
    }
    cx.progress.say(format!("created {BUCKET} `{bucket}`"));

    let new_bucket = Settings {
        object_ownership: Some(ObjectOwnership::BucketOwnerEnforced.as_str().to_owned()),
        ..Settings::default()
    };
    apply_differences(cx, bucket, &new_bucket, &differences(cx, &new_bucket)).await
}

fn differences(cx: &Cx, current: &Settings) -> Vec<FieldChange> {
    let mut fields = Vec::new();
    let current_tags: BTreeMap<&String, &String> = current
        .tags
        .iter()
        .filter(|(key, _)| cx.names.tags.contains_key(*key))
        .collect();
    diff_field(&mut fields, "tags", current_tags, cx.names.tags.iter().collect());
    if current.public_access != PublicAccess::ALL_BLOCKED {
        fields.push(FieldChange {
            field: "public_access_block".into(),
            from: current.public_access.describe(),
            to: PublicAccess::ALL_BLOCKED.describe(),
        });
    }
    diff_field(
        &mut fields,
        "default_encryption",
        current.encryption.as_deref(),
        Some(ServerSideEncryption::Aes256.as_str()),
    );
    diff_field(
        &mut fields,
        "object_ownership",
        current.object_ownership.as_deref(),
        Some(ObjectOwnership::BucketOwnerEnforced.as_str()),
    );
    let desired_rule = Some(BundleRule::desired());
    if current.lifecycle.bundle_rule != desired_rule {
        fields.push(FieldChange {
            field: "lifecycle_rule".into(),
            from: describe_bundle_rule(&current.lifecycle.bundle_rule),
            to: describe_bundle_rule(&desired_rule),
        });
    }
    fields
}

async fn apply_differences(cx: &Cx, bucket: &str, current: &Settings, fields: &[FieldChange]) -> Result<()> {
    for field in fields {
        match field.field.as_str() {
            "tags" => put_tags(cx, bucket, &current.tags).await?,
            "public_access_block" => put_public_access_block(cx, bucket).await?,
            "default_encryption" => put_encryption(cx, bucket).await?,
            "object_ownership" => put_object_ownership(cx, bucket).await?,
            "lifecycle_rule" => put_lifecycle(cx, bucket, &current.lifecycle).await?,
            other => {
                return Err(Error::Internal(format!(
                    "no update for bucket field `{other}`"
                )))
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reads. S3 answers a missing configuration with an error code, which reads as "not set".

/// True when `error` carries the S3 error `code`.
fn has_code<E: ProvideErrorMetadata>(error: &E, code: &str) -> bool {
    error.code() == Some(code)
}

async fn read_tags(cx: &Cx, bucket: &str) -> Result<BTreeMap<String, String>> {
    match cx.aws.s3.get_bucket_tagging().bucket(bucket).send().await {
        Ok(tagging) => Ok(tagging
            .tag_set()
            .iter()
            .map(|tag| (tag.key().to_owned(), tag.value().to_owned()))
            .collect()),
        Err(e) if has_code(&e, "NoSuchTagSet") => Ok(BTreeMap::new()),
        Err(e) => Err(Error::aws("read the tags of S3 bucket", bucket, e)),
    }
}

async fn read_public_access(cx: &Cx, bucket: &str) -> Result<PublicAccess> {
    match cx.aws.s3.get_public_access_block().bucket(bucket).send().await {
        Ok(read) => {
            let Some(block) = read.public_access_block_configuration() else {
                return Ok(PublicAccess::default());
            };
            Ok(PublicAccess {
                block_public_acls: block.block_public_acls().unwrap_or(false),
                ignore_public_acls: block.ignore_public_acls().unwrap_or(false),
                block_public_policy: block.block_public_policy().unwrap_or(false),
                restrict_public_buckets: block.restrict_public_buckets().unwrap_or(false),
            })
        }
        Err(e) if has_code(&e, "NoSuchPublicAccessBlockConfiguration") => Ok(PublicAccess::default()),
        Err(e) => Err(Error::aws("read the public access block of S3 bucket", bucket, e)),
    }
}

async fn read_encryption(cx: &Cx, bucket: &str) -> Result<Option<String>> {
    match cx.aws.s3.get_bucket_encryption().bucket(bucket).send().await {
        Ok(read) => Ok(read
            .server_side_encryption_configuration()
            .and_then(|configuration| configuration.rules().first())
            .and_then(ServerSideEncryptionRule::apply_server_side_encryption_by_default)
            .map(|default| default.sse_algorithm().as_str().to_owned())),
        Err(e) if has_code(&e, "ServerSideEncryptionConfigurationNotFoundError") => Ok(None),
        Err(e) => Err(Error::aws("read the default encryption of S3 bucket", bucket, e)),
    }
}

async fn read_object_ownership(cx: &Cx, bucket: &str) -> Result<Option<String>> {
    match cx.aws.s3.get_bucket_ownership_controls().bucket(bucket).send().await {
        Ok(read) => Ok(read
            .ownership_controls()
            .and_then(|controls| controls.rules().first())
            .map(|rule| rule.object_ownership().as_str().to_owned())),
        Err(e) if has_code(&e, "OwnershipControlsNotFoundError") => Ok(None),
        Err(e) => Err(Error::aws("read the ownership controls of S3 bucket", bucket, e)),
    }
}

async fn read_lifecycle(cx: &Cx, bucket: &str) -> Result<Lifecycle> {
    match cx
        .aws
        .s3
        .get_bucket_lifecycle_configuration()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(read) => {
            let (ours, others): (Vec<&LifecycleRule>, Vec<&LifecycleRule>) =
                read.rules().iter().partition(|rule| rule.id() == Some(BUNDLE_RULE_ID));
            Ok(Lifecycle {
                bundle_rule: ours.first().map(|rule| BundleRule::of(rule)),
                other_rules: others.into_iter().cloned().collect(),
                minimum_object_size: read.transition_default_minimum_object_size().cloned(),
            })
        }
        Err(e) if has_code(&e, "NoSuchLifecycleConfiguration") => Ok(Lifecycle::default()),
        Err(e) => Err(Error::aws("read the lifecycle configuration of S3 bucket", bucket, e)),
    }
}

// ---------------------------------------------------------------------------------------------
// Writes

fn invalid_request(error: BuildError) -> Error {
    Error::Internal(format!("invalid S3 request: {error}"))
}

fn tags(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>> {
    tags.iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build().map_err(invalid_request))
        .collect()
}

/// Puts the tag set, which replaces the whole set: the tags someone else added are kept.
async fn put_tags(cx: &Cx, bucket: &str, current: &BTreeMap<String, String>) -> Result<()> {
    let mut merged = current.clone();
    merged.extend(cx.names.tags.iter().map(|(key, value)| (key.clone(), value.clone())));
    let tagging = Tagging::builder()
        .set_tag_set(Some(tags(&merged)?))
        .build()
        .map_err(invalid_request)?;
    cx.aws
        .s3
        .put_bucket_tagging()
        .bucket(bucket)
        .tagging(tagging)
        .send()
        .await
        .map_err(|e| Error::aws("tag S3 bucket", bucket, e))?;
    Ok(())
}

async fn put_public_access_block(cx: &Cx, bucket: &str) -> Result<()> {
    let block = PublicAccessBlockConfiguration::builder()
        .block_public_acls(true)
        .ignore_public_acls(true)
        .block_public_policy(true)
        .restrict_public_buckets(true)
        .build();
    cx.aws
        .s3
        .put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(block)
        .send()
        .await
        .map_err(|e| Error::aws("block public access to S3 bucket", bucket, e))?;
    Ok(())
}

async fn put_encryption(cx: &Cx, bucket: &str) -> Result<()> {
    let default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::Aes256)
        .build()
        .map_err(invalid_request)?;
    let configuration = ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(default)
                .build(),
        )
        .build()
        .map_err(invalid_request)?;
    cx.aws
        .s3
        .put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(configuration)
        .send()
        .await
        .map_err(|e| Error::aws("set the default encryption of S3 bucket", bucket, e))?;
    Ok(())
}

async fn put_object_ownership(cx: &Cx, bucket: &str) -> Result<()> {
    let rule = OwnershipControlsRule::builder()
        .object_ownership(ObjectOwnership::BucketOwnerEnforced)
        .build()
        .map_err(invalid_request)?;
    let controls = OwnershipControls::builder()
        .rules(rule)
        .build()
        .map_err(invalid_request)?;
    cx.aws
        .s3
        .put_bucket_ownership_controls()
        .bucket(bucket)
        .ownership_controls(controls)
        .send()
        .await
        .map_err(|e| Error::aws("disable ACLs on S3 bucket", bucket, e))?;
    Ok(())
}

/// Puts the deployer's rule beside the rules that others added, which S3 keeps only when they are
/// sent again.
async fn put_lifecycle(cx: &Cx, bucket: &str, current: &Lifecycle) -> Result<()> {
    let bundle_rule = LifecycleRule::builder()
        .id(BUNDLE_RULE_ID)
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix(BUNDLE_PREFIX).build())
        .expiration(LifecycleExpiration::builder().days(BUNDLE_EXPIRY_DAYS).build())
        .build()
        .map_err(invalid_request)?;
    let mut rules = current.other_rules.clone();
    rules.push(bundle_rule);
    let configuration = BucketLifecycleConfiguration::builder()
        .set_rules(Some(rules))
        .build()
        .map_err(invalid_request)?;
    cx.aws
        .s3
        .put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(configuration)
        .set_transition_default_minimum_object_size(current.minimum_object_size.clone())
        .send()
        .await
        .map_err(|e| Error::aws("set the lifecycle rules of S3 bucket", bucket, e))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Destroy

pub async fn destroy(cx: &Cx) -> Result<Vec<Change>> {
    let bucket = cx.bucket();
    match existence(cx, &bucket).await? {
        Existence::Missing | Existence::Forbidden => return Ok(Vec::new()),
        Existence::Exists => {}
    }
    let tags = read_tags(cx, &bucket).await?;
    if !is_ours_or_adoptable(cx, &bucket, &tags).await? {
        return Ok(Vec::new());
    }

    empty_bucket(cx, &bucket).await?;
    let deleted = cx.aws.s3.delete_bucket().bucket(&bucket).send().await;
    match deleted {
        Ok(_) => {}
        Err(e) if has_code(&e, "NoSuchBucket") => return Ok(Vec::new()),
        Err(e) => return Err(Error::aws("delete S3 bucket", &bucket, e)),
    }
    cx.progress.say(format!("deleted {BUCKET} `{bucket}`"));
    Ok(vec![Change::delete(BUCKET, bucket)])
}

/// Deletes every object version and delete marker, a page (at most 1,000 keys) at a time, because
/// S3 deletes only empty buckets. Listing versions also covers a bucket without versioning.
async fn empty_bucket(cx: &Cx, bucket: &str) -> Result<()> {
    let mut key_marker: Option<String> = None;
    let mut version_marker: Option<String> = None;
    loop {
        let page = cx
            .aws
            .s3
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await
            .map_err(|e| Error::aws("list the objects in S3 bucket", bucket, e))?;

        let versions = page
            .versions()
            .iter()
            .map(|version| (version.key(), version.version_id()));
        let markers = page
            .delete_markers()
            .iter()
            .map(|marker| (marker.key(), marker.version_id()));
        let objects = versions
            .chain(markers)
            .filter_map(|(key, version_id)| {
                let key = key?;
                Some(
                    ObjectIdentifier::builder()
                        .key(key)
                        .set_version_id(version_id.map(str::to_owned))
                        .build(),
                )
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(invalid_request)?;
        if !objects.is_empty() {
            delete_objects(cx, bucket, objects).await?;
        }

        if page.is_truncated() != Some(true) {
            return Ok(());
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        version_marker = page.next_version_id_marker().map(str::to_owned);
    }
}

async fn delete_objects(cx: &Cx, bucket: &str, objects: Vec<ObjectIdentifier>) -> Result<()> {
    let count = objects.len();
    let delete = Delete::builder()
        .set_objects(Some(objects))
        .quiet(true)
        .build()
        .map_err(invalid_request)?;
    let deleted = cx
        .aws
        .s3
        .delete_objects()
        .bucket(bucket)
        .delete(delete)
        .send()
        .await
        .map_err(|e| Error::aws("delete the objects in S3 bucket", bucket, e))?;
    if let Some(first) = deleted.errors().first() {
        return Err(Error::Failed(format!(
            "failed to delete {} of {count} objects in S3 bucket `{bucket}`; the first, `{}`, failed with {}: {}",
            deleted.errors().len(),
            first.key().unwrap_or_default(),
            first.code().unwrap_or("an unknown error"),
            first.message().unwrap_or_default(),
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_access_describes_flags_that_are_on() {
        assert_eq!(PublicAccess::default().describe(), "(none)");
        let partial = PublicAccess {
            block_public_acls: true,
            ..PublicAccess::default()
        };
        assert_eq!(partial.describe(), "BlockPublicAcls");
        assert_eq!(
            PublicAccess::ALL_BLOCKED.describe(),
            "BlockPublicAcls, IgnorePublicAcls, BlockPublicPolicy, RestrictPublicBuckets"
        );
    }

    #[test]
    fn bundle_rule_description() {
        assert_eq!(describe_bundle_rule(&None), "(none)");
        assert_eq!(
            describe_bundle_rule(&Some(BundleRule::desired())),
            "`bundles/` expires after 30 days"
        );
    }

    #[test]
    #[allow(deprecated)]
    fn bundle_rule_reads_legacy_prefix() {
        let rule = LifecycleRule::builder()
            .id(BUNDLE_RULE_ID)
            .status(ExpirationStatus::Enabled)
            .prefix(BUNDLE_PREFIX)
            .expiration(LifecycleExpiration::builder().days(BUNDLE_EXPIRY_DAYS).build())
            .build()
            .expect("status is set");
        assert_eq!(BundleRule::of(&rule), BundleRule::desired());
    }

    #[test]
    fn bundle_rule_reads_filter_prefix() {
        let rule = LifecycleRule::builder()
            .id(BUNDLE_RULE_ID)
            .status(ExpirationStatus::Disabled)
            .filter(LifecycleRuleFilter::builder().prefix(BUNDLE_PREFIX).build())
            .expiration(LifecycleExpiration::builder().days(BUNDLE_EXPIRY_DAYS).build())
            .build()
            .expect("status is set");
        let read = BundleRule::of(&rule);
        assert_eq!(read.prefix, BUNDLE_PREFIX);
        assert!(!read.enabled);
        assert_ne!(read, BundleRule::desired());
    }
}
