//! The manifest: TOML parsed once into validated, typed values.
//!
//! Parsing runs in three steps. The key walk (`keys.rs`) records every key with its position
//! and reports unknown keys. Serde then reads the document into the raw structs of `raw.rs`,
//! where every value keeps its span. Validation (`validate.rs` and the modules per table) turns
//! them into the types of `model.rs`, applying defaults and collecting every problem it finds.

mod check;
mod databricks;
pub mod defaults;
mod error;
mod https;
mod keys;
mod model;
mod network;
mod raw;
mod validate;

#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};

pub use error::{ManifestError, Problem};
pub use model::*;

use error::LineIndex;
use keys::{KeyIndex, KeyTree};
use raw::RawManifest;

/// Reads and validates the manifest at `path`.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|error| read_error(path, &error))?;
    parse(&text, path)
}

/// Parses and validates manifest text. `path` names the file in messages, and its folder
/// becomes `Manifest::base_dir`.
pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
    let lines = LineIndex::new(text);

    let tree: KeyTree = toml::from_str(text).map_err(|error| {
        let problem = toml_problem(&lines, None, &error);
        ManifestError::new(path, vec![problem])
    })?;
    let (keys, unknown_keys) = keys::walk(&tree);
    let mut problems: Vec<Problem> = unknown_keys
        .into_iter()
        .map(|unknown| lines.problem(&unknown.path, &unknown.span, unknown.message, Some(unknown.hint)))
        .collect();

    // NOTE: serde stops at the first value of the wrong TOML type, so such a value is reported
    // alone (with any unknown keys) and validation runs once it is fixed.
    let raw: RawManifest = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(error) => {
            problems.push(toml_problem(&lines, Some(&keys), &error));
            return Err(ManifestError::new(path, problems));
        }
    };

    let mut checker = check::Checker::new(&lines, &keys);
    let manifest = validate::manifest(raw, base_dir(path), &mut checker);
    problems.extend(checker.into_problems());

    match manifest {
        Some(manifest) if problems.is_empty() => Ok(manifest),
        _ => Err(ManifestError::new(path, problems)),
    }
}

/// Returns the folder of the manifest file, `.` for a bare file name.
fn base_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn read_error(path: &Path, error: &io::Error) -> ManifestError {
    let hint = match error.kind() {
        io::ErrorKind::NotFound => {
            "check the path given with `-m` or `DEPLOYER_MANIFEST` (without either, `deployer.toml` in the current folder), or copy `manifests/example.toml` to start a new manifest"
        }
        io::ErrorKind::InvalidData => "save the manifest as UTF-8",
        _ => "check that the file exists and is readable",
    };
    let problem = Problem {
        key: String::new(),
        line: 0,
        column: 0,
        message: format!("failed to read the manifest: {error}"),
        hint: Some(hint.to_owned()),
    };
    ManifestError::new(path, vec![problem])
}

/// Turns a TOML syntax error, or a serde error about a value's type, into a problem. With
/// `keys`, the problem names the key that the value belongs to.
fn toml_problem(lines: &LineIndex, keys: Option<&KeyIndex>, error: &toml::de::Error) -> Problem {
    let span = error.span().unwrap_or(0..0);
    // toml puts the expected tokens on a second line, but a problem takes one line.
    let message = error.message().trim().replace('\n', ", ");
    let Some(keys) = keys else {
        let hint = "fix the TOML syntax at this position".to_owned();
        return lines.problem("", &span, format!("invalid TOML: {message}"), Some(hint));
    };

    let key = keys.key_before(span.start).unwrap_or("");
    let message = toml_type_names(&message);
    let hint = match message.split_once(", expected ") {
        Some((_, "a string")) if key.ends_with("timeout") => "write a duration in quotes, such as `\"15m\"`".to_owned(),
        Some((_, "a string")) => "write a string in double quotes here".to_owned(),
        Some((_, expected)) => format!("write {expected} here"),
        None => "write a value of the type this key takes".to_owned(),
    };
    lines.problem(key, &span, message, Some(hint))
}

/// Replaces the Rust and serde type names in a serde message with TOML's names, such as
/// `an integer` for `i64` and `a table` for `struct RawApp`.
fn toml_type_names(message: &str) -> String {
    let mut message = message
        .replace("expected i64", "expected an integer")
        .replace("expected a sequence", "expected an array")
        .replace("invalid type: sequence", "invalid type: array")
        .replace("invalid type: map", "invalid type: table")
        .replace("expected a map", "expected a table");
    while let Some(start) = message.find("struct Raw") {
        let rest = &message[start + "struct Raw".len()..];
        let name_len = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
        message.replace_range(start..start + "struct Raw".len() + name_len, "a table");
    }
    message
}
