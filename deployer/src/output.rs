//! Progress for people on stderr; data for machines on stdout.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Progress and results for people.
    Text,
    /// One JSON result object on stdout; progress stays on stderr.
    Json,
}

/// Writes progress lines to stderr with the time since the command started.
#[derive(Debug, Clone)]
pub struct Progress {
    started: Instant,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress {
            started: Instant::now(),
            quiet,
        }
    }

    /// Prints one progress line, such as `[  3.2s] created ec2:vpc `demo-local``.
    pub fn say(&self, message: impl AsRef<str>) {
        if self.quiet {
            return;
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "[{elapsed:>6.1}s] {}", message.as_ref());
    }

    pub fn elapsed(&self) -> std::time::Duration {
        self.started.elapsed()
    }
}

/// Prints a serialisable result as one JSON object on stdout.
pub fn print_json<T: Serialize>(value: &T) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"));
    println!("{text}");
}

/// True when colour may be used on stderr: a terminal, and `NO_COLOR` unset.
pub fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}
