//! The problem collector that every validation step reports to.

use std::ops::{Range, RangeInclusive};

use toml::Spanned;

use super::error::{LineIndex, Problem};
use super::keys::KeyIndex;
use super::raw::Value;

/// Collects problems, so that validation goes on after the first one and reports them all.
pub(super) struct Checker<'a> {
    lines: &'a LineIndex<'a>,
    keys: &'a KeyIndex,
    problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(lines: &'a LineIndex<'a>, keys: &'a KeyIndex) -> Self {
        Checker {
            lines,
            keys,
            problems: Vec::new(),
        }
    }

    pub(super) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    /// Records a problem at the start of `span`. Every validation problem has a hint.
    pub(super) fn report(&mut self, key: &str, span: &Range<usize>, message: String, hint: String) {
        let problem = self.lines.problem(key, span, message, Some(hint));
        self.problems.push(problem);
    }

    /// Returns the value of a required key, or reports it as missing at its table's header.
    /// `example` is a line to add, such as `name = "my-app"`.
    pub(super) fn required<T>(&mut self, table: &str, key: &str, value: Value<T>, example: &str) -> Option<Spanned<T>> {
        if value.is_none() {
            let span = self.table_span(table);
            self.report(
                &format!("{table}.{key}"),
                &span,
                format!("missing required key `{key}` in `[{table}]`"),
                format!("add `{example}` to `[{table}]`"),
            );
        }
        value
    }

    /// Reports a required table that the manifest does not have, at the start of the file.
    pub(super) fn missing_table(&mut self, table: &str, example: &str) {
        self.report(
            table,
            &(0..0),
            format!("missing required table `[{table}]`"),
            format!("add a `[{table}]` table with {example}"),
        );
    }

    /// Returns the span of a table's name in its header, or the start of the file for a table
    /// that is not written out.
    pub(super) fn table_span(&self, table: &str) -> Range<usize> {
        self.keys.span(table).unwrap_or(0..0)
    }

    /// Returns the integer if it lies in `range`, or reports it with `hint`.
    pub(super) fn integer_in(
        &mut self,
        key: &str,
        value: &Spanned<i64>,
        range: RangeInclusive<i64>,
        hint: &str,
    ) -> Option<i64> {
        let number = *value.get_ref();
        if range.contains(&number) {
            return Some(number);
        }
        self.report(
            key,
            &value.span(),
            format!("`{number}` is outside the allowed range {} to {}", range.start(), range.end()),
            hint.to_owned(),
        );
        None
    }
}

/// Returns the key path of the list item at `index`, such as `network.allowed_cidrs[1]`.
pub(super) fn item_key(key: &str, index: usize) -> String {
    format!("{key}[{index}]")
}
