//! The key walk: every key of the document with its position, used to report all unknown keys
//! at once and to point at a table when one of its required keys is missing.

use std::fmt;
use std::ops::Range;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::raw::{known_keys, KnownKeys};

/// The keys of one TOML table, in document order, with the keys of the tables nested in it.
#[derive(Debug, Default)]
pub(super) struct KeyTree {
    entries: Vec<(Spanned<String>, Option<KeyTree>)>,
}

/// Every key path of the document with the span of its key, such as `network.vpc_cidr`.
#[derive(Debug, Default)]
pub(super) struct KeyIndex {
    keys: Vec<(String, Range<usize>)>,
}

/// A key that the manifest does not accept.
#[derive(Debug)]
pub(super) struct UnknownKey {
    pub path: String,
    pub span: Range<usize>,
    pub message: String,
    pub hint: String,
}

impl KeyIndex {
    /// Returns the span of the key at `path`, such as the `app` of an `[app]` header.
    pub(super) fn span(&self, path: &str) -> Option<Range<usize>> {
        self.keys
            .iter()
            .find(|(key, _)| key == path)
            .map(|(_, span)| span.clone())
    }

    /// Returns the path of the last key that starts at or before `offset`. A serde error points
    /// at a value, and the key the value belongs to is the last one written before it.
    pub(super) fn key_before(&self, offset: usize) -> Option<&str> {
        self.keys
            .iter()
            .filter(|(_, span)| span.start <= offset)
            .max_by_key(|(_, span)| span.start)
            .map(|(key, _)| key.as_str())
    }
}

/// Indexes every key of `tree` and returns the keys the manifest does not accept.
pub(super) fn walk(tree: &KeyTree) -> (KeyIndex, Vec<UnknownKey>) {
    let mut index = KeyIndex::default();
    let mut unknown = Vec::new();
    walk_table(tree, "", &mut index, &mut unknown);
    (index, unknown)
}

fn walk_table(tree: &KeyTree, table_path: &str, index: &mut KeyIndex, unknown: &mut Vec<UnknownKey>) {
    let known = known_keys(table_path);

    for (key, nested) in &tree.entries {
        let path = join_key(table_path, key.get_ref());
        index.keys.push((path.clone(), key.span()));

        if let Some(KnownKeys::Only(fields)) = known {
            if !fields.contains(&key.get_ref().as_str()) {
                unknown.push(unknown_key(table_path, key, path, nested.is_some(), fields));
                continue;
            }
        }
        if let Some(nested) = nested {
            walk_table(nested, &path, index, unknown);
        }
    }
}

fn unknown_key(table_path: &str, key: &Spanned<String>, path: String, is_table: bool, fields: &[&str]) -> UnknownKey {
    let name = key.get_ref();
    let message = match (table_path.is_empty(), is_table) {
        (true, true) => format!("unknown table `[{path}]`"),
        (true, false) => format!("unknown key `{name}` at the top level"),
        (false, _) => format!("unknown key `{name}` in `[{table_path}]`"),
    };

    let hint = if let Some(close) = closest(name, fields) {
        let close = if table_path.is_empty() && is_table { format!("[{close}]") } else { close.to_owned() };
        format!("did you mean `{close}`?")
    } else if let Some(home) = table_of(name).filter(|home| home != table_path) {
        format!("move `{name}` to `[{home}]`")
    } else {
        format!("remove it, or use one of {}", quoted_list(fields))
    };

    UnknownKey {
        path,
        span: key.span(),
        message,
        hint,
    }
}

/// Returns the known key closest to `name` in edit distance, if it is close enough to be a typo.
fn closest<'a>(name: &str, fields: &[&'a str]) -> Option<&'a str> {
    fields
        .iter()
        .map(|field| (strsim::osa_distance(name, field), *field))
        .filter(|(distance, field)| *distance <= 2.max(field.len() / 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, field)| field)
}

/// Returns the table that accepts `name` as a key, such as `aws` for `region`.
fn table_of(name: &str) -> Option<String> {
    let Some(KnownKeys::Only(tables)) = known_keys("") else {
        return None;
    };
    tables
        .iter()
        .find(|table| matches!(known_keys(table), Some(KnownKeys::Only(fields)) if fields.contains(&name)))
        .map(|table| (*table).to_owned())
}


fn quoted_list(fields: &[&str]) -> String {
    let quoted: Vec<String> = fields.iter().map(|field| format!("`{field}`")).collect();
    quoted.join(", ")
}

/// Appends `key` to a dotted key path, quoting it when it is not a bare TOML key.
pub(super) fn join_key(table_path: &str, key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare { key.to_owned() } else { format!("{key:?}") };
    if table_path.is_empty() {
        key
    } else {
        format!("{table_path}.{key}")
    }
}

impl<'de> Deserialize<'de> for KeyTree {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_any(NodeVisitor)? {
            Some(tree) => Ok(tree),
            None => Err(de::Error::custom("expected a table")),
        }
    }
}

/// A value in the key walk: `Some` for a table, `None` for anything else.
struct Node(Option<KeyTree>);

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor).map(Node)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Option<KeyTree>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut tree = KeyTree::default();
        loop {
            let key = match map.next_key::<Spanned<String>>() {
                Ok(Some(key)) => key,
                Ok(None) => break,
                // A TOML datetime reaches serde as a map whose one key is a plain string
                // without a span, which is the only way reading a spanned key fails here.
                // The datetime is a value, so it has no keys to walk.
                Err(_) if tree.entries.is_empty() => return Ok(None),
                Err(error) => return Err(error),
            };
            let Node(nested) = map.next_value()?;
            tree.entries.push((key, nested));
        }
        Ok(Some(tree))
    }

    // Arrays of tables are not part of the manifest, so array items are not walked.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
}
