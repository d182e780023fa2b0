//! Listener 80 redirects to HTTPS; listener 443 terminates TLS 1.2+ with the ACM certificate
//! and forwards to the target group.

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, Listener, ProtocolEnum, RedirectActionConfig, RedirectActionStatusCodeEnum,
};

use super::elb_util::elb_tags;
use crate::error::{Error, Result};
use crate::plan::{Change, Cx, FieldChange};

const LISTENER: &str = "elbv2:listener";

/// TLS 1.3 and 1.2 only, the policy AWS recommends for new HTTPS listeners.
pub const SSL_POLICY: &str = "ELBSecurityPolicy-TLS13-1-2-2021-06";

/// What one listener should be.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Desired {
    port: i32,
    protocol: ProtocolEnum,
    certificate_arn: Option<String>,
    ssl_policy: Option<String>,
    /// `None` redirects to HTTPS; `Some` forwards to the target group.
    forward_to: Option<String>,
}

impl Desired {
    fn actions(&self) -> Vec<Action> {
        let action = match &self.forward_to {
            Some(target_group) => Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(target_group)
                .build(),
            None => Action::builder()
                .r#type(ActionTypeEnum::Redirect)
                .redirect_config(
                    RedirectActionConfig::builder()
                        .protocol("HTTPS")
                        .port("443")
                        .status_code(RedirectActionStatusCodeEnum::Http301)
                        .build(),
                )
                .build(),
        };
        vec![action]
    }

    fn certificates(&self) -> Option<Vec<Certificate>> {
        self.certificate_arn
            .as_ref()
            .map(|arn| vec![Certificate::builder().certificate_arn(arn).build()])
    }
}

fn desired(cx: &Cx) -> Vec<Desired> {
    let outputs = cx.outputs();
    vec![
        Desired {
            port: 80,
            protocol: ProtocolEnum::Http,
            certificate_arn: None,
            ssl_policy: None,
            forward_to: None,
        },
        Desired {
            port: 443,
            protocol: ProtocolEnum::Https,
            certificate_arn: outputs.certificate_arn.clone(),
            ssl_policy: Some(SSL_POLICY.to_owned()),
            forward_to: Some(outputs.target_group_arn.clone().unwrap_or_default()),
        },
    ]
}

/// Reads a listener back into the same shape as `Desired`.
fn observed(listener: &Listener) -> Desired {
    let action = listener.default_actions().first();
    Desired {
        port: listener.port().unwrap_or_default(),
        protocol: listener.protocol().cloned().unwrap_or(ProtocolEnum::Http),
        certificate_arn: listener
            .certificates()
            .first()
            .and_then(|certificate| certificate.certificate_arn().map(str::to_owned)),
        // An SSL policy means nothing on an HTTP listener, where some APIs still report a default.
        ssl_policy: listener
            .ssl_policy()
            .filter(|_| listener.protocol() == Some(&ProtocolEnum::Https))
            .map(str::to_owned),
        forward_to: action
            .filter(|action| action.r#type() == Some(&ActionTypeEnum::Forward))
            .map(|action| action.target_group_arn().unwrap_or_default().to_owned()),
    }
}

pub async fn converge(cx: &Cx) -> Result<Vec<Change>> {
    let balancer_arn = cx.outputs().load_balancer_arn.clone();
    let listeners = match &balancer_arn {
        Some(arn) => describe(cx, arn).await?,
        None => Vec::new(),
    };

    let mut changes = Vec::new();
    for want in desired(cx) {
        let name = format!("{}:{}", cx.names.load_balancer(), want.port);
        let Some(listener) = listeners.iter().find(|listener| listener.port() == Some(want.port)) else {
            changes.push(Change::create(LISTENER, &name));
            if let (Some(arn), true) = (&balancer_arn, cx.applying()) {
                create(cx, arn, &want, &name).await?;
            }
            continue;
        };
        let have = observed(listener);
        if have == want {
            continue;
        }
        changes.push(Change::update(LISTENER, &name, differences(&have, &want)).expect("listeners differ"));
        if cx.applying() {
            modify(cx, listener.listener_arn().unwrap_or_default(), &want, &name).await?;
        }
    }
    Ok(changes)
}

fn differences(have: &Desired, want: &Desired) -> Vec<FieldChange> {
    let mut fields = Vec::new();
    crate::plan::diff_field(&mut fields, "protocol", &have.protocol, &want.protocol);
    crate::plan::diff_field(&mut fields, "certificate_arn", &have.certificate_arn, &want.certificate_arn);
    crate::plan::diff_field(&mut fields, "ssl_policy", &have.ssl_policy, &want.ssl_policy);
    crate::plan::diff_field(&mut fields, "forward_to", &have.forward_to, &want.forward_to);
    fields
}

async fn describe(cx: &Cx, balancer_arn: &str) -> Result<Vec<Listener>> {
    let found = cx
        .aws
        .elb
        .describe_listeners()
        .load_balancer_arn(balancer_arn)
        .send()
        .await
        .map_err(|e| Error::aws("describe listeners of", balancer_arn, e))?;
    Ok(found.listeners().to_vec())
}

async fn create(cx: &Cx, balancer_arn: &str, want: &Desired, name: &str) -> Result<()> {
    cx.aws
        .elb
        .create_listener()
        .load_balancer_arn(balancer_arn)
        .port(want.port)
        .protocol(want.protocol.clone())
        .set_certificates(want.certificates())
        .set_ssl_policy(want.ssl_policy.clone())
        .set_default_actions(Some(want.actions()))
        .set_tags(Some(elb_tags(cx)))
        .send()
        .await
        .map_err(|e| Error::aws("create listener", name, e))?;
    cx.progress.say(format!("created {LISTENER} `{name}`"));
    Ok(())
}

async fn modify(cx: &Cx, listener_arn: &str, want: &Desired, name: &str) -> Result<()> {
    cx.aws
        .elb
        .modify_listener()
        .listener_arn(listener_arn)
        .port(want.port)
        .protocol(want.protocol.clone())
        .set_certificates(want.certificates())
        .set_ssl_policy(want.ssl_policy.clone())
        .set_default_actions(Some(want.actions()))
        .send()
        .await
        .map_err(|e| Error::aws("update listener", name, e))?;
    cx.progress.say(format!("updated {LISTENER} `{name}`"));
    Ok(())
}

pub async fn destroy(cx: &Cx) -> Result<Vec<Change>> {
    let name = cx.names.load_balancer();
    let Some(balancer) = super::load_balancer::find(cx, &name).await? else {
        return Ok(Vec::new());
    };
    let balancer_arn = balancer.load_balancer_arn().unwrap_or_default();
    if !super::elb_util::owned_by_us(cx, balancer_arn).await? {
        return Ok(Vec::new());
    }
    let mut changes = Vec::new();
    for listener in describe(cx, balancer_arn).await? {
        let listener_name = format!("{name}:{}", listener.port().unwrap_or_default());
        cx.aws
            .elb
            .delete_listener()
            .listener_arn(listener.listener_arn().unwrap_or_default())
            .send()
            .await
            .map_err(|e| Error::aws("delete listener", &listener_name, e))?;
        cx.progress.say(format!("deleted {LISTENER} `{listener_name}`"));
        changes.push(Change::delete(LISTENER, listener_name));
    }
    Ok(changes)
}
