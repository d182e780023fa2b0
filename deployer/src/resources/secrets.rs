//! The Secrets Manager secrets the app reads at start: the Databricks client secret (stored by
//! the deployer, or an existing secret the manifest names) and the session key, which the
//! deployer generates once.


use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
use aws_sdk_secretsmanager::types::Tag;
use base64::Engine;
use rand::RngCore;

use crate::error::{Error, Result};
use crate::manifest::SecretRef;
use crate::plan::{Change, Cx, FieldChange};
use crate::secret::SecretString;

const SECRET: &str = "secretsmanager:secret";

/// Length of the generated session key before base64 encoding.
const SESSION_KEY_BYTES: usize = 64;

pub async fn converge(cx: &Cx) -> Result<Vec<Change>> {
    let (client_secret, session_key) = futures::try_join!(converge_client_secret(cx), converge_session_key(cx))?;
    Ok(client_secret.into_iter().chain(session_key).collect())
}

async fn converge_client_secret(cx: &Cx) -> Result<Option<Change>> {
    match &cx.manifest.databricks.client_secret {
        SecretRef::SecretsManager(arn) => {
            check_existing_secret(cx, arn).await?;
            cx.outputs().client_secret_arn = Some(arn.clone());
            Ok(None)
        }
        SecretRef::Env(variable) => converge_stored_client_secret(cx, variable).await,
    }
}

/// Checks that the secret the manifest names exists and is not scheduled for deletion. The
/// deployer never changes or deletes that secret.
async fn check_existing_secret(cx: &Cx, arn: &str) -> Result<()> {
    let described = cx.aws.secrets.describe_secret().secret_id(arn).send().await;
    match described {
        Ok(secret) if secret.deleted_date().is_some() => Err(Error::Input(format!(
            "secret `{arn}` from `databricks.client_secret` is scheduled for deletion; restore it in Secrets Manager or name another secret"
        ))),
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => Err(Error::Input(format!(
            "secret `{arn}` from `databricks.client_secret` was not found in Secrets Manager; check the ARN, its region and the account"
        ))),
        Err(e) => Err(Error::aws("describe secret", arn, e)),
    }
}

/// Stores the client secret from the environment variable `variable` under the derived name, or
/// replaces the stored value when it differs.
async fn converge_stored_client_secret(cx: &Cx, variable: &str) -> Result<Option<Change>> {
    let name = cx.names.client_secret();
    let value = cx.client_secret.as_ref();
    if cx.applying() && value.is_none() {
        return Err(Error::Input(format!(
            "environment variable `{variable}` is not set; set it to the Databricks client secret, because `databricks.client_secret` refers to it"
        )));
    }

    let Some(found) = find_secret(cx, &name).await? else {
        if let Some(value) = value.filter(|_| cx.applying()) {
            let arn = create_secret(cx, &name, "Databricks OAuth client secret of the app", value).await?;
            cx.outputs().client_secret_arn = Some(arn);
        }
        return Ok(Some(Change::create(SECRET, name)));
    };
    check_owned(cx, &name, &found)?;
    let arn = found.arn().unwrap_or_default().to_owned();
    cx.outputs().client_secret_arn = Some(arn.clone());

    let mut fields = state_and_tag_fields(cx, &found);
    let pending_deletion = found.deleted_date().is_some();
    // A secret scheduled for deletion cannot be read until it is restored, so its value is
    // compared after the restore below, in apply mode only. Without a value (plan mode with the
    // variable unset) the value is not compared at all.
    if let Some(value) = value.filter(|_| !pending_deletion) {
        if read_value(cx, &name, &arn).await? != *value {
            fields.push(value_field());
        }
    }
    if fields.is_empty() || !cx.applying() {
        return Ok(Change::update(SECRET, name, fields));
    }

    update_state_and_tags(cx, &name, &arn, &fields).await?;
    if let Some(value) = value {
        let differs = if pending_deletion {
            read_value(cx, &name, &arn).await? != *value
        } else {
            fields.iter().any(|field| field.field == "value")
        };
        if differs {
            put_value(cx, &name, &arn, value).await?;
            if pending_deletion {
                fields.push(value_field());
            }
        }
    }
    cx.progress.say(format!("updated {SECRET} `{name}`"));
    Ok(Change::update(SECRET, name, fields))
}

/// Returns the plan field of a changed secret value, which never shows either value.
fn value_field() -> FieldChange {
    FieldChange {
        field: "value".into(),
        from: "(hidden)".into(),
        to: "(changed)".into(),
    }
}

/// Creates the session key on the first run. Its value never changes afterwards, because a new
/// key would sign every user out.
async fn converge_session_key(cx: &Cx) -> Result<Option<Change>> {
    let name = cx.names.session_key();
    let Some(found) = find_secret(cx, &name).await? else {
        if cx.applying() {
            let key = generate_session_key();
            let arn = create_secret(
                cx,
                &name,
                "Session signing key of the app, generated by the deployer",
                &key,
            )
            .await?;
            cx.outputs().session_key_arn = Some(arn);
        }
        return Ok(Some(Change::create(SECRET, name)));
    };
    check_owned(cx, &name, &found)?;
    let arn = found.arn().unwrap_or_default().to_owned();
    cx.outputs().session_key_arn = Some(arn.clone());

    let fields = state_and_tag_fields(cx, &found);
    if cx.applying() && !fields.is_empty() {
        update_state_and_tags(cx, &name, &arn, &fields).await?;
        cx.progress.say(format!("updated {SECRET} `{name}`"));
    }
    Ok(Change::update(SECRET, name, fields))
}

/// 64 bytes from the operating system's random source, base64-encoded.
fn generate_session_key() -> SecretString {
    let mut bytes = [0u8; SESSION_KEY_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::new(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Describes the secret, or returns `None` when no secret has this name.
async fn find_secret(cx: &Cx, name: &str) -> Result<Option<DescribeSecretOutput>> {
    match cx.aws.secrets.describe_secret().secret_id(name).send().await {
        Ok(secret) => Ok(Some(secret)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(Error::aws("describe secret", name, e)),
    }
}

fn owns(cx: &Cx, secret: &DescribeSecretOutput) -> bool {
    cx.names.owns(
        secret
            .tags()
            .iter()
            .map(|tag| (tag.key().unwrap_or_default(), tag.value().unwrap_or_default())),
    )
}

fn check_owned(cx: &Cx, name: &str, secret: &DescribeSecretOutput) -> Result<()> {
    if owns(cx, secret) {
        return Ok(());
    }
    Err(Error::NotOwned {
        kind: SECRET,
        name: name.to_owned(),
        app: cx.names.prefix.clone(),
    })
}

/// Returns the `state` field when the secret is scheduled for deletion and the `tags` field when
/// the deployer's tags are missing or differ.
fn state_and_tag_fields(cx: &Cx, secret: &DescribeSecretOutput) -> Vec<FieldChange> {
    let mut fields = Vec::new();
    if secret.deleted_date().is_some() {
        fields.push(FieldChange {
            field: "state".into(),
            from: "scheduled for deletion".into(),
            to: "active".into(),
        });
    }
    let current_tags = secret
        .tags()
        .iter()
        .map(|tag| (tag.key().unwrap_or_default(), tag.value().unwrap_or_default()));
    super::tags::diff_tags(cx, &mut fields, current_tags);
    fields
}

/// Cancels a scheduled deletion and adds the deployer's tags, as `fields` lists.
async fn update_state_and_tags(cx: &Cx, name: &str, arn: &str, fields: &[FieldChange]) -> Result<()> {
    if fields.iter().any(|field| field.field == "state") {
        cx.aws
            .secrets
            .restore_secret()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| Error::aws("restore secret", name, e))?;
    }
    if fields.iter().any(|field| field.field == "tags") {
        cx.aws
            .secrets
            .tag_resource()
            .secret_id(arn)
            .set_tags(Some(tags(cx)))
            .send()
            .await
            .map_err(|e| Error::aws("tag secret", name, e))?;
    }
    Ok(())
}

async fn read_value(cx: &Cx, name: &str, arn: &str) -> Result<SecretString> {
    let read = cx
        .aws
        .secrets
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| Error::aws("read the value of secret", name, e))?;
    Ok(SecretString::new(read.secret_string().unwrap_or_default()))
}

async fn put_value(cx: &Cx, name: &str, arn: &str, value: &SecretString) -> Result<()> {
    cx.aws
        .secrets
        .put_secret_value()
        .secret_id(arn)
        .secret_string(value.expose())
        .send()
        .await
        .map_err(|e| Error::aws("store a new value in secret", name, e))?;
    // Tasks read secrets when they start, so the rollout must start new ones.
    cx.outputs().secrets_changed = true;
    Ok(())
}

/// Creates the secret with its value and tags in one call, so an interrupted run leaves no
/// untagged secret; returns its ARN.
async fn create_secret(cx: &Cx, name: &str, description: &str, value: &SecretString) -> Result<String> {
    let created = cx
        .aws
        .secrets
        .create_secret()
        .name(name)
        .description(description)
        .secret_string(value.expose())
        .set_tags(Some(tags(cx)))
        .send()
        .await
        .map_err(|e| Error::aws("create secret", name, e))?;
    cx.progress.say(format!("created {SECRET} `{name}`"));
    Ok(created.arn().unwrap_or_default().to_owned())
}

fn tags(cx: &Cx) -> Vec<Tag> {
    cx.names
        .tags
        .iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

/// Deletes both secrets the deployer stores, whatever the manifest's `client_secret` is now,
/// so a secret stored before the manifest switched to an existing ARN goes too.
pub async fn destroy(cx: &Cx) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    for name in [cx.names.client_secret(), cx.names.session_key()] {
        let Some(found) = find_secret(cx, &name).await? else {
            continue;
        };
        if !owns(cx, &found) {
            continue;
        }
        // Without the recovery window the name is free at once, so a later `up` can create the
        // secret again. A secret already scheduled for deletion is deleted now as well.
        let deleted = cx
            .aws
            .secrets
            .delete_secret()
            .secret_id(found.arn().unwrap_or(&name))
            .force_delete_without_recovery(true)
            .send()
            .await;
        match deleted {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                continue
            }
            Err(e) => return Err(Error::aws("delete secret", &name, e)),
        }
        cx.progress.say(format!("deleted {SECRET} `{name}`"));
        changes.push(Change::delete(SECRET, name));
    }
    Ok(changes)
}
