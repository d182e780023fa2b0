//! Problems found in a manifest, with their positions in the file.
//!
//! Message style for every problem: the first word is lower-case, there is no trailing period,
//! values are quoted in backticks, and the hint gives the next step.

use std::fmt::{self, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Every problem found in one manifest. `Display` prints one problem per line, each followed by
/// an indented hint line when it has one.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.path, .problems))]
pub struct ManifestError {
    /// The manifest file, as the caller named it.
    pub path: PathBuf,
    /// In the order of their position in the file, except that a file that cannot be read or
    /// parsed has exactly one problem.
    pub problems: Vec<Problem>,
}

/// One thing wrong with a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path such as `network.allowed_cidrs[1]`, or empty for a file that cannot be read or parsed.
    pub key: String,
    /// 1-based line, or 0 when the problem is about the whole file.
    pub line: usize,
    /// 1-based column in characters, or 0 when the problem is about the whole file.
    pub column: usize,
    pub message: String,
    /// The next step for the reader, such as the line to write instead.
    pub hint: Option<String>,
}

impl ManifestError {
    pub(super) fn new(path: &Path, mut problems: Vec<Problem>) -> Self {
        problems.sort_by_key(|problem| (problem.line, problem.column));
        ManifestError {
            path: path.to_path_buf(),
            problems,
        }
    }
}

impl fmt::Display for Problem {
    /// Formats the problem without the file name: `12:17: network.allowed_cidrs[1]: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: ", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

fn render(path: &Path, problems: &[Problem]) -> String {
    let mut text = String::new();
    for (index, problem) in problems.iter().enumerate() {
        if index > 0 {
            text.push('\n');
        }
        let separator = if problem.line > 0 { ":" } else { ": " };
        let _ = write!(text, "{}{separator}{problem}", path.display());
    }
    text
}

/// Converts byte offsets in the manifest text into 1-based lines and columns.
pub(super) struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(offset, _)| offset + 1));
        LineIndex { text, line_starts }
    }

    /// Returns the 1-based line and column (counted in characters) of a byte offset.
    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line - 1];
        let column = self
            .text
            .get(line_start..offset)
            .map_or(offset - line_start, |before| before.chars().count());
        (line, column + 1)
    }

    /// Builds a problem located at the start of `span`.
    pub(super) fn problem(&self, key: &str, span: &Range<usize>, message: String, hint: Option<String>) -> Problem {
        let (line, column) = self.position(span.start);
        Problem {
            key: key.to_owned(),
            line,
            column,
            message,
            hint,
        }
    }
}
