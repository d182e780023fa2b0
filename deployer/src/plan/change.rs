//! What a plan reports for each resource.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
}

impl Action {
    fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
        }
    }
}

/// One changed field. Values are display strings; secret values never reach this type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub from: String,
    pub to: String,
}

/// A create, update, replace or delete of one resource. Converged resources produce none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub kind: &'static str,
    pub name: String,
    pub action: Action,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
}

impl Change {
    pub fn create(kind: &'static str, name: impl Into<String>) -> Self {
        Change {
            kind,
            name: name.into(),
            action: Action::Create,
            fields: Vec::new(),
        }
    }

    pub fn delete(kind: &'static str, name: impl Into<String>) -> Self {
        Change {
            action: Action::Delete,
            ..Change::create(kind, name)
        }
    }

    /// An update when `fields` is non-empty, otherwise nothing.
    pub fn update(kind: &'static str, name: impl Into<String>, fields: Vec<FieldChange>) -> Option<Self> {
        if fields.is_empty() {
            return None;
        }
        Some(Change {
            kind,
            name: name.into(),
            action: Action::Update,
            fields,
        })
    }

    pub fn replace(kind: &'static str, name: impl Into<String>, fields: Vec<FieldChange>) -> Self {
        Change {
            kind,
            name: name.into(),
            action: Action::Replace,
            fields,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "  {:>3} {} `{}`", self.action.symbol(), self.kind, self.name)?;
        for field in &self.fields {
            write!(f, "\n        {}: {} -> {}", field.field, field.from, field.to)?;
        }
        Ok(())
    }
}

/// Pushes a field change when `from` and `to` differ.
pub fn diff_field<T: PartialEq + fmt::Debug>(fields: &mut Vec<FieldChange>, field: &str, from: T, to: T) {
    if from != to {
        fields.push(FieldChange {
            field: field.to_owned(),
            from: plain(&format!("{from:?}")),
            to: plain(&format!("{to:?}")),
        });
    }
}

/// Turns a value's `Debug` text into what a person expects to read in a plan: `Some(7)` as `7`,
/// `None` as `(none)` and `"text"` without its quotes.
fn plain(debug: &str) -> String {
    if debug == "None" {
        return "(none)".to_owned();
    }
    if let Some(inner) = debug.strip_prefix("Some(").and_then(|rest| rest.strip_suffix(')')) {
        return plain(inner);
    }
    let quoted = debug.len() >= 2 && debug.starts_with('"') && debug.ends_with('"');
    if quoted && !debug[1..debug.len() - 1].contains('"') {
        return debug[1..debug.len() - 1].replace("\\\\", "\\");
    }
    debug.to_owned()
}

/// Pushes one field change per key whose value differs, such as `environment.PORT`.
pub fn diff_pairs(fields: &mut Vec<FieldChange>, field: &str, from: &[(String, String)], to: &[(String, String)]) {
    let lookup = |pairs: &[(String, String)], key: &str| {
        pairs
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| "(unset)".to_owned())
    };
    let mut keys: Vec<&str> = from.iter().chain(to).map(|(key, _)| key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let (old, new) = (lookup(from, key), lookup(to, key));
        if old != new {
            fields.push(FieldChange {
                field: format!("{field}.{key}"),
                from: old,
                to: new,
            });
        }
    }
}

/// Counts of each action, as the last line of a plan.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
}

impl Summary {
    pub fn of(changes: &[Change]) -> Self {
        let mut summary = Summary::default();
        for change in changes {
            match change.action {
                Action::Create => summary.create += 1,
                Action::Update => summary.update += 1,
                Action::Replace => summary.replace += 1,
                Action::Delete => summary.delete += 1,
            }
        }
        summary
    }

    pub fn is_empty(&self) -> bool {
        *self == Summary::default()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} to create, {} to update, {} to replace, {} to delete",
            self.create, self.update, self.replace, self.delete
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_values_read_plainly() {
        let mut fields = Vec::new();
        diff_field(&mut fields, "retention", Some(7), Some(30));
        diff_field(&mut fields, "revision", Some("app:1"), Some("app:2"));
        diff_field(&mut fields, "policy", None, Some("TLS13"));
        assert_eq!((fields[0].from.as_str(), fields[0].to.as_str()), ("7", "30"));
        assert_eq!((fields[1].from.as_str(), fields[1].to.as_str()), ("app:1", "app:2"));
        assert_eq!((fields[2].from.as_str(), fields[2].to.as_str()), ("(none)", "TLS13"));
    }
}
