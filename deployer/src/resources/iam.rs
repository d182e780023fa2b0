//! The three IAM roles: the task execution role (pull the image, write the app's logs, read the
//! app's secrets), the task role (no permissions), and the CodeBuild service role (read the
//! source bundles, write the build logs, push the image).
//!
//! The policy documents are the JSON templates under `templates/policies/`, rendered by
//! replacing `{{placeholder}}` names. Both `ecr:GetAuthorizationToken` statements use
//! `"Resource": "*"` because that action takes no resource; every other statement names this
//! stack's repository, log group, secrets or bucket.

use std::collections::BTreeMap;

use aws_sdk_iam::types::{Role, Tag};
use serde_json::Value;

use super::bucket::BUNDLE_PREFIX;
use crate::error::{Error, Result};
use crate::manifest::SecretRef;
use crate::plan::{Change, Cx, FieldChange};

const ROLE: &str = "iam:role";

/// Name of the one inline policy the deployer puts on a role.
const POLICY_NAME: &str = "deployer";

const ECS_TASKS_TRUST: &str = include_str!("../../../templates/policies/ecs-tasks-trust.json");
const CODEBUILD_TRUST: &str = include_str!("../../../templates/policies/codebuild-trust.json");
const TASK_EXECUTION_POLICY: &str = include_str!("../../../templates/policies/task-execution.json");
const CODEBUILD_POLICY: &str = include_str!("../../../templates/policies/codebuild.json");

/// Sid of the task execution policy's statement that lists the secrets the app reads.
const SECRETS_STATEMENT: &str = "ReadAppSecrets";

/// The desired state of one role.
struct RoleSpec {
    name: String,
    description: &'static str,
    trust: Value,
    /// The inline policy, or `None` for a role without permissions.
    policy: Option<Value>,
    /// The template file names, shown in the plan instead of whole documents.
    trust_source: &'static str,
    policy_source: &'static str,
}

pub async fn converge(cx: &Cx) -> Result<Vec<Change>> {
    let [execution, task, codebuild] = role_specs(cx)?;
    let (execution, task, codebuild) = futures::try_join!(
        converge_role(cx, &execution),
        converge_role(cx, &task),
        converge_role(cx, &codebuild),
    )?;

    let mut outputs = cx.outputs();
    outputs.execution_role_arn = execution.1;
    outputs.task_role_arn = task.1;
    outputs.codebuild_role_arn = codebuild.1;
    drop(outputs);
    Ok([execution.0, task.0, codebuild.0].into_iter().flatten().collect())
}

fn role_specs(cx: &Cx) -> Result<[RoleSpec; 3]> {
    let values = placeholder_values(cx);
    let mut execution_policy = render(TASK_EXECUTION_POLICY, &values)?;
    if let SecretRef::SecretsManager(arn) = &cx.manifest.databricks.client_secret {
        // NOTE: a secret encrypted with a customer managed KMS key also needs `kms:Decrypt` on
        // that key, which this policy does not grant.
        add_resource(&mut execution_policy, SECRETS_STATEMENT, arn)?;
    }

    Ok([
        RoleSpec {
            name: cx.names.execution_role(),
            description: "ECS task execution role: pulls the app image, writes its logs, reads its secrets",
            trust: render(ECS_TASKS_TRUST, &values)?,
            policy: Some(execution_policy),
            trust_source: "templates/policies/ecs-tasks-trust.json",
            policy_source: "templates/policies/task-execution.json",
        },
        RoleSpec {
            name: cx.names.task_role(),
            description: "ECS task role of the app: no AWS permissions",
            trust: render(ECS_TASKS_TRUST, &values)?,
            policy: None,
            trust_source: "templates/policies/ecs-tasks-trust.json",
            policy_source: "(none)",
        },
        RoleSpec {
            name: cx.names.codebuild_role(),
            description: "CodeBuild service role: reads source bundles, writes build logs, pushes the app image",
            trust: render(CODEBUILD_TRUST, &values)?,
            policy: Some(render(CODEBUILD_POLICY, &values)?),
            trust_source: "templates/policies/codebuild-trust.json",
            policy_source: "templates/policies/codebuild.json",
        },
    ])
}

fn placeholder_values(cx: &Cx) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("partition", cx.partition().to_owned()),
        ("region", cx.region.clone()),
        ("account_id", cx.account_id.clone()),
        ("repository", cx.names.repository()),
        ("app_log_group", cx.names.app_log_group()),
        ("build_log_group", cx.names.build_log_group()),
        ("secret_prefix", cx.names.secret_prefix()),
        ("bucket", cx.bucket()),
        ("bundle_prefix", BUNDLE_PREFIX.to_owned()),
    ])
}

/// Replaces each `{{name}}` in `template` with its value and parses the result. Values are
/// escaped as JSON string content, because every placeholder sits inside a JSON string.
fn render(template: &str, values: &BTreeMap<&'static str, String>) -> Result<Value> {
    let mut text = template.to_owned();
    for (name, value) in values {
        let quoted = Value::String(value.clone()).to_string();
        text = text.replace(&format!("{{{{{name}}}}}"), &quoted[1..quoted.len() - 1]);
    }
    if let Some(start) = text.find("{{") {
        let end = text[start..].find("}}").map_or(text.len(), |end| start + end + 2);
        return Err(Error::Internal(format!(
            "policy template has no value for `{}`",
            &text[start..end]
        )));
    }
    serde_json::from_str(&text)
        .map_err(|e| Error::Internal(format!("policy template is not valid JSON: {e}")))
}

/// Adds `resource` to the `Resource` list of the statement with `sid`.
fn add_resource(policy: &mut Value, sid: &str, resource: &str) -> Result<()> {
    let resources = policy["Statement"]
        .as_array_mut()
        .and_then(|statements| statements.iter_mut().find(|statement| statement["Sid"] == sid))
        .and_then(|statement| statement["Resource"].as_array_mut());
    match resources {
        Some(resources) => {
            resources.push(Value::String(resource.to_owned()));
            Ok(())
        }
        None => Err(Error::Internal(format!(
            "the task execution policy has no statement `{sid}` with a `Resource` list"
        ))),
    }
}

/// Parses a policy document as IAM returns it: URL-encoded JSON, or plain JSON from endpoints
/// that do not encode. Returns `None` for a document that is neither.
fn parse_document(raw: &str) -> Option<Value> {
    if let Ok(document) = serde_json::from_str(raw) {
        return Some(document);
    }
    // `percent_decode` keeps `+` as is, unlike form decoding, because IAM encodes a plus as `%2B`.
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8().ok()?;
    serde_json::from_str(&decoded).ok()
}

/// Creates the role, or brings its trust policy, inline policy and tags in line. Returns the
/// change, if any, and the role's ARN when the role exists.
async fn converge_role(cx: &Cx, spec: &RoleSpec) -> Result<(Option<Change>, Option<String>)> {
    let Some(role) = find_role(cx, &spec.name).await? else {
        let change = Change::create(ROLE, &spec.name);
        if !cx.applying() {
            return Ok((Some(change), None));
        }
        let arn = create_role(cx, spec).await?;
        return Ok((Some(change), Some(arn)));
    };
    if !cx.names.owns(role.tags().iter().map(|tag| (tag.key(), tag.value()))) {
        return Err(Error::NotOwned {
            kind: ROLE,
            name: spec.name.clone(),
            app: cx.names.prefix.clone(),
        });
    }
    let arn = role.arn().to_owned();

    let current_policy = match spec.policy {
        Some(_) => read_inline_policy(cx, &spec.name).await?,
        None => None,
    };
    let fields = differences(cx, spec, &role, current_policy.as_ref());
    let Some(change) = Change::update(ROLE, &spec.name, fields) else {
        return Ok((None, Some(arn)));
    };
    if cx.applying() {
        apply_differences(cx, spec, &change.fields).await?;
        cx.progress.say(format!("updated {ROLE} `{}`", spec.name));
    }
    Ok((Some(change), Some(arn)))
}

fn differences(cx: &Cx, spec: &RoleSpec, role: &Role, current_policy: Option<&Value>) -> Vec<FieldChange> {
    let mut fields = Vec::new();
    let current_trust = role.assume_role_policy_document().and_then(parse_document);
    if current_trust.as_ref() != Some(&spec.trust) {
        fields.push(document_field(
            "trust_policy",
            current_trust.is_some(),
            spec.trust_source,
        ));
    }
    if spec.policy.is_some() && current_policy != spec.policy.as_ref() {
        fields.push(document_field(
            "inline_policy",
            current_policy.is_some(),
            spec.policy_source,
        ));
    }
    super::tags::diff_tags(cx, &mut fields, role.tags().iter().map(|tag| (tag.key(), tag.value())));
    fields
}

/// Returns the field of a changed policy document, shown by its template instead of the whole JSON.
fn document_field(field: &str, exists: bool, source: &str) -> FieldChange {
    FieldChange {
        field: field.to_owned(),
        from: if exists { "(another document)" } else { "(none)" }.to_owned(),
        to: source.to_owned(),
    }
}

async fn apply_differences(cx: &Cx, spec: &RoleSpec, fields: &[FieldChange]) -> Result<()> {
    for field in fields {
        match field.field.as_str() {
            "trust_policy" => {
                cx.aws
                    .iam
                    .update_assume_role_policy()
                    .role_name(&spec.name)
                    .policy_document(spec.trust.to_string())
                    .send()
                    .await
                    .map_err(|e| Error::aws("update the trust policy of IAM role", &spec.name, e))?;
            }
            "inline_policy" => put_inline_policy(cx, spec).await?,
            "tags" => {
                cx.aws
                    .iam
                    .tag_role()
                    .role_name(&spec.name)
                    .set_tags(Some(tags(cx)?))
                    .send()
                    .await
                    .map_err(|e| Error::aws("tag IAM role", &spec.name, e))?;
            }
            other => {
                return Err(Error::Internal(format!(
                    "no update for role field `{other}`"
                )))
            }
        }
    }
    Ok(())
}

async fn find_role(cx: &Cx, name: &str) -> Result<Option<Role>> {
    match cx.aws.iam.get_role().role_name(name).send().await {
        Ok(found) => Ok(found.role().cloned()),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_entity_exception()) => Ok(None),
        Err(e) => Err(Error::aws("read IAM role", name, e)),
    }
}

/// Reads the deployer's inline policy on the role, or `None` when the role has none. A document
/// that cannot be parsed reads as `Null`, which differs from every rendered policy.
async fn read_inline_policy(cx: &Cx, role: &str) -> Result<Option<Value>> {
    let read = cx
        .aws
        .iam
        .get_role_policy()
        .role_name(role)
        .policy_name(POLICY_NAME)
        .send()
        .await;
    match read {
        Ok(policy) => Ok(Some(parse_document(policy.policy_document()).unwrap_or(Value::Null))),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_entity_exception()) => Ok(None),
        Err(e) => Err(Error::aws("read the inline policy of IAM role", role, e)),
    }
}

/// Creates the role with its trust policy and tags in one call, then puts its inline policy;
/// returns the role's ARN.
async fn create_role(cx: &Cx, spec: &RoleSpec) -> Result<String> {
    let created = cx
        .aws
        .iam
        .create_role()
        .role_name(&spec.name)
        .description(spec.description)
        .assume_role_policy_document(spec.trust.to_string())
        .set_tags(Some(tags(cx)?))
        .send()
        .await
        .map_err(|e| Error::aws("create IAM role", &spec.name, e))?;
    if spec.policy.is_some() {
        put_inline_policy(cx, spec).await?;
    }
    cx.progress.say(format!("created {ROLE} `{}`", spec.name));
    Ok(created.role().map(|role| role.arn().to_owned()).unwrap_or_default())
}

async fn put_inline_policy(cx: &Cx, spec: &RoleSpec) -> Result<()> {
    let Some(policy) = &spec.policy else {
        return Ok(());
    };
    cx.aws
        .iam
        .put_role_policy()
        .role_name(&spec.name)
        .policy_name(POLICY_NAME)
        .policy_document(policy.to_string())
        .send()
        .await
        .map_err(|e| Error::aws("put the inline policy of IAM role", &spec.name, e))?;
    Ok(())
}

fn tags(cx: &Cx) -> Result<Vec<Tag>> {
    cx.names
        .tags
        .iter()
        .map(|(key, value)| {
            Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(|e| Error::Internal(format!("invalid tag `{key}`: {e}")))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Destroy

pub async fn destroy(cx: &Cx) -> Result<Vec<Change>> {
    let names = [
        cx.names.execution_role(),
        cx.names.task_role(),
        cx.names.codebuild_role(),
    ];
    let (execution, task, codebuild) = futures::try_join!(
        destroy_role(cx, &names[0]),
        destroy_role(cx, &names[1]),
        destroy_role(cx, &names[2]),
    )?;
    Ok([execution, task, codebuild].into_iter().flatten().collect())
}

/// Deletes the role's inline policies, detaches its managed policies (IAM deletes only a role
/// with neither), then deletes the role.
async fn destroy_role(cx: &Cx, name: &str) -> Result<Option<Change>> {
    let Some(role) = find_role(cx, name).await? else {
        return Ok(None);
    };
    if !cx.names.owns(role.tags().iter().map(|tag| (tag.key(), tag.value()))) {
        return Ok(None);
    }

    let inline = cx
        .aws
        .iam
        .list_role_policies()
        .role_name(name)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| Error::aws("list the inline policies of IAM role", name, e))?;
    for policy in inline {
        cx.aws
            .iam
            .delete_role_policy()
            .role_name(name)
            .policy_name(&policy)
            .send()
            .await
            .map_err(|e| Error::aws(format!("delete inline policy `{policy}` of IAM role"), name, e))?;
    }

    let attached = cx
        .aws
        .iam
        .list_attached_role_policies()
        .role_name(name)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| Error::aws("list the managed policies of IAM role", name, e))?;
    for policy in attached.iter().filter_map(|policy| policy.policy_arn()) {
        cx.aws
            .iam
            .detach_role_policy()
            .role_name(name)
            .policy_arn(policy)
            .send()
            .await
            .map_err(|e| Error::aws(format!("detach managed policy `{policy}` from IAM role"), name, e))?;
    }

    match cx.aws.iam.delete_role().role_name(name).send().await {
        Ok(_) => {}
        Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_entity_exception()) => return Ok(None),
        Err(e) => return Err(Error::aws("delete IAM role", name, e)),
    }
    cx.progress.say(format!("deleted {ROLE} `{name}`"));
    Ok(Some(Change::delete(ROLE, name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_values() -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("partition", "aws".to_owned()),
            ("region", "ap-northeast-1".to_owned()),
            ("account_id", "123456789012".to_owned()),
            ("repository", "demo/prod".to_owned()),
            ("app_log_group", "/ecs/demo/prod".to_owned()),
            ("build_log_group", "/codebuild/demo/prod".to_owned()),
            ("secret_prefix", "demo/prod/".to_owned()),
            ("bucket", "demo-prod-123456789012-ap-northeast-1".to_owned()),
            ("bundle_prefix", BUNDLE_PREFIX.to_owned()),
        ])
    }

    const TEMPLATES: [(&str, &str); 4] = [
        ("ecs-tasks-trust.json", ECS_TASKS_TRUST),
        ("codebuild-trust.json", CODEBUILD_TRUST),
        ("task-execution.json", TASK_EXECUTION_POLICY),
        ("codebuild.json", CODEBUILD_POLICY),
    ];

    #[test]
    fn templates_render_to_valid_json() {
        for (file, template) in TEMPLATES {
            let rendered = render(template, &sample_values());
            let document = rendered.unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(document["Version"], "2012-10-17", "{file}");
            assert!(!document.to_string().contains("{{"), "{file} has a placeholder left");
        }
    }

    #[test]
    fn render_rejects_unknown_placeholder() {
        let error = render(r#"{"Resource": "{{nope}}"}"#, &sample_values()).expect_err("placeholder has no value");
        assert!(error.to_string().contains("{{nope}}"), "{error}");
    }

    #[test]
    fn render_escapes_values() {
        let values = BTreeMap::from([("name", "a\"b".to_owned())]);
        let document = render(r#"{"Resource": "x:{{name}}"}"#, &values).expect("valid JSON");
        assert_eq!(document["Resource"], "x:a\"b");
    }

    #[test]
    fn policies_scope_resources_to_this_stack() {
        let execution = render(TASK_EXECUTION_POLICY, &sample_values())
            .expect("renders")
            .to_string();
        assert!(execution.contains("arn:aws:ecr:ap-northeast-1:123456789012:repository/demo/prod"));
        assert!(execution.contains("arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:demo/prod/*"));
        assert!(execution.contains("log-group:/ecs/demo/prod:*"));

        let codebuild = render(CODEBUILD_POLICY, &sample_values()).expect("renders").to_string();
        assert!(codebuild.contains("arn:aws:s3:::demo-prod-123456789012-ap-northeast-1/bundles/*"));
        assert!(codebuild.contains("log-group:/codebuild/demo/prod:*"));
    }

    #[test]
    fn add_resource_extends_secret_statement() {
        let mut policy = render(TASK_EXECUTION_POLICY, &sample_values()).expect("renders");
        let arn = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:shared-AbCdEf";
        add_resource(&mut policy, SECRETS_STATEMENT, arn).expect("statement exists");
        let statement = policy["Statement"]
            .as_array()
            .and_then(|statements| {
                statements
                    .iter()
                    .find(|statement| statement["Sid"] == SECRETS_STATEMENT)
            })
            .expect("statement exists");
        assert_eq!(statement["Resource"].as_array().map(Vec::len), Some(2));
        assert_eq!(statement["Resource"][1], arn);
    }

    #[test]
    fn parse_document_decodes_url_encoding() {
        // As moto 5.2.5 and IAM return it: Python's `json.dumps` spacing, then percent-encoded.
        let encoded = "%7B%22Version%22%3A%20%222012-10-17%22%2C%20%22Statement%22%3A%20%5B%7B%22Effect%22%3A%20%22Allow%22%2C%20%22Action%22%3A%20%22s3%3AGetObject%22%2C%20%22Resource%22%3A%20%22arn%3Aaws%3As3%3A%3A%3Ab/bundles/%2A%22%7D%5D%7D";
        let plain = r#"{"Statement":[{"Resource":"arn:aws:s3:::b/bundles/*","Action":"s3:GetObject","Effect":"Allow"}],"Version":"2012-10-17"}"#;
        assert_eq!(parse_document(encoded), parse_document(plain));
        assert!(parse_document(plain).is_some());
    }

    #[test]
    fn parse_document_ignores_key_order() {
        let first = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole"}]}"#;
        let second = r#"{"Statement":[{"Action":"sts:AssumeRole","Effect":"Allow"}],"Version":"2012-10-17"}"#;
        assert_eq!(parse_document(first), parse_document(second));
    }

    #[test]
    fn parse_document_keeps_plus_sign() {
        let encoded = "%7B%22Sid%22%3A%22a+b%22%7D";
        assert_eq!(
            parse_document(encoded).map(|document| document["Sid"].clone()),
            Some(Value::from("a+b"))
        );
    }

    #[test]
    fn parse_document_rejects_invalid_text() {
        assert_eq!(parse_document("%7"), None);
        assert_eq!(parse_document("%zz"), None);
        assert_eq!(parse_document("not json"), None);
    }

    #[test]
    fn changed_statement_differs() {
        let rendered = render(CODEBUILD_POLICY, &sample_values()).expect("renders");
        let mut changed = rendered.clone();
        changed["Statement"][0]["Action"] = Value::from("logs:*");
        assert_ne!(parse_document(&changed.to_string()), Some(rendered));
    }
}
