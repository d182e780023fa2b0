//! Comparing a resource's tags with the ones the deployer sets.

use std::collections::BTreeMap;

use crate::plan::{diff_field, Cx, FieldChange};

/// Pushes a `tags` change when the deployer's tags (ownership and manifest tags) differ from
/// `current`. Tags that someone else added are left out of the comparison, so they stay.
pub fn diff_tags<'a>(cx: &Cx, fields: &mut Vec<FieldChange>, current: impl IntoIterator<Item = (&'a str, &'a str)>) {
    let current: BTreeMap<&str, &str> = current
        .into_iter()
        .filter(|(key, _)| cx.names.tags.contains_key(*key))
        .collect();
    let desired: BTreeMap<&str, &str> = cx
        .names
        .tags
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    diff_field(fields, "tags", current, desired);
}
