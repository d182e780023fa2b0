//! Tag filters and tag specifications shared by the EC2 resources.

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};

use crate::names::{TAG_APP, TAG_STAGE};
use crate::plan::Cx;

/// Filters that match resources of this app and stage, and with `name`, that `Name` tag.
pub fn owned_filters(cx: &Cx, name: Option<&str>) -> Vec<Filter> {
    let mut filters = vec![
        tag_filter(TAG_APP, &cx.names.app),
        tag_filter(TAG_STAGE, &cx.names.stage),
    ];
    if let Some(name) = name {
        filters.push(tag_filter("Name", name));
    }
    filters
}

pub fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn tag_filter(key: &str, value: &str) -> Filter {
    filter(&format!("tag:{key}"), value)
}

/// Tags for a resource created now, so it is never untagged even if the run stops right after.
pub fn tag_specification(cx: &Cx, resource_type: ResourceType, name: &str) -> TagSpecification {
    let mut builder = TagSpecification::builder().resource_type(resource_type);
    builder = builder.tags(Tag::builder().key("Name").value(name).build());
    for (key, value) in &cx.names.tags {
        builder = builder.tags(Tag::builder().key(key).value(value).build());
    }
    builder.build()
}

/// The value of the `Name` tag, if any.
pub fn name_tag(tags: &[Tag]) -> Option<&str> {
    tags.iter()
        .find(|tag| tag.key() == Some("Name"))
        .and_then(|tag| tag.value())
}

/// True when `tags` carry this app's and stage's ownership tags and, with `name`, that `Name`.
///
/// The describe calls already filter by these tags; checking again on the results keeps the
/// deployer from touching another stack if a filter is ignored (moto 5.2.5 ignores tag filters
/// on some EC2 describe calls).
pub fn is_ours(cx: &Cx, tags: &[Tag], name: Option<&str>) -> bool {
    let pairs = tags.iter().filter_map(|tag| Some((tag.key()?, tag.value()?)));
    cx.names.owns(pairs) && name.is_none_or(|name| name_tag(tags) == Some(name))
}
