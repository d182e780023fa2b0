//! Tags and error checks shared by the load balancer, target group and listeners.

use aws_sdk_elasticloadbalancingv2::error::ProvideErrorMetadata;
use aws_sdk_elasticloadbalancingv2::types::Tag;

use crate::error::{Error, Result};
use crate::plan::Cx;

pub fn elb_tags(cx: &Cx) -> Vec<Tag> {
    cx.names
        .tags
        .iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

/// True for the "not found" answers of describe calls that take names.
pub fn is_not_found<E: ProvideErrorMetadata>(error: &aws_sdk_elasticloadbalancingv2::error::SdkError<E>) -> bool {
    matches!(
        error.code(),
        Some("LoadBalancerNotFound" | "TargetGroupNotFound" | "ListenerNotFound")
    )
}

/// True when the resource carries this app's and stage's ownership tags.
pub async fn owned_by_us(cx: &Cx, arn: &str) -> Result<bool> {
    let described = cx
        .aws
        .elb
        .describe_tags()
        .resource_arns(arn)
        .send()
        .await
        .map_err(|e| Error::aws("read the tags of", arn, e))?;
    let tags = described
        .tag_descriptions()
        .iter()
        .flat_map(|description| description.tags())
        .filter_map(|tag| Some((tag.key()?, tag.value()?)));
    Ok(cx.names.owns(tags))
}
