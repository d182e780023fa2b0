//! Progress for people on stderr; data for machines on stdout.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Progress and results for people.
    Text,
    /// One JSON result object on stdout; progress stays on stderr.
    Json,
}

/// Writes progress lines to stderr with the time since the command started, and keeps the time
/// each phase (stack, build, rollout, live check) took.
#[derive(Debug, Clone)]
pub struct Progress {
    started: Instant,
    quiet: bool,
    /// One JSON object per line instead of text, for CI logs that parse progress.
    json: bool,
    phases: Arc<Mutex<Vec<Phase>>>,
}

/// A named part of a command and how long it took; the last one runs until the next starts.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: &'static str,
    pub seconds: f64,
    #[serde(skip)]
    started: Duration,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress {
            started: Instant::now(),
            quiet,
            json: false,
            phases: Arc::default(),
        }
    }

    /// Progress as JSON lines: `{"event":"progress","elapsed_seconds":..,"phase":..,"message":..}`.
    pub fn with_json_events(mut self, json: bool) -> Self {
        self.json = json;
        self
    }

    /// Prints one progress line, such as `[  3.2s] created ec2:vpc `demo-local``.
    pub fn say(&self, message: impl AsRef<str>) {
        if self.quiet {
            return;
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        let line = if self.json {
            serde_json::json!({
                "event": "progress",
                "elapsed_seconds": (elapsed * 10.0).round() / 10.0,
                "phase": self.current_phase(),
                "message": message.as_ref(),
            })
            .to_string()
        } else {
            format!("[{elapsed:>6.1}s] {}", message.as_ref())
        };
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{line}");
    }

    /// Ends the running phase and starts `name`.
    pub fn phase(&self, name: &'static str) {
        let now = self.started.elapsed();
        let mut phases = self.phases.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        close_last(&mut phases, now);
        phases.push(Phase {
            name,
            seconds: 0.0,
            started: now,
        });
    }

    /// Returns every phase so far with its duration. The running one counts until now.
    pub fn phases(&self) -> Vec<Phase> {
        let mut phases = self.phases.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        close_last(&mut phases, self.started.elapsed());
        phases
    }

    fn current_phase(&self) -> Option<&'static str> {
        let phases = self.phases.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        phases.last().map(|phase| phase.name)
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

fn close_last(phases: &mut [Phase], now: Duration) {
    if let Some(last) = phases.last_mut() {
        last.seconds = ((now - last.started).as_secs_f64() * 10.0).round() / 10.0;
    }
}

/// `stack 3.1s, build 84.0s, rollout 95.2s` for the last progress line.
pub fn phase_summary(phases: &[Phase]) -> String {
    phases
        .iter()
        .map(|phase| format!("{} {:.1}s", phase.name, phase.seconds))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints a serialisable result as one JSON object on stdout.
pub fn print_json<T: Serialize>(value: &T) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"));
    print_line(&text);
}

/// Set once stdout's reader has closed the pipe.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Prints one line of data on stdout.
///
/// A reader that closed the pipe, as `head -1` does, wants no more, so this line and every later
/// one are dropped. The command goes on, and its exit code still reports how it ended, because a CI
/// step with `pipefail` relies on it. Any other write error ends the process with exit code 1.
pub fn print_line(text: &str) {
    // Only the flag: polling stdout here would cost a system call per line.
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    let written = writeln!(stdout, "{text}").and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => STDOUT_CLOSED.store(true, Ordering::Relaxed),
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "error: failed to write to stdout: {error}");
            std::process::exit(1);
        }
    }
}

/// True once stdout's reader has closed the pipe, so that a command that only prints, such as
/// `logs --follow`, can stop. On Unix this also polls stdout, because lines still buffered in
/// the pipe when the reader closed it, as `head -1` does, leave no failed write to notice.
pub fn stdout_closed() -> bool {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return true;
    }
    #[cfg(unix)]
    if stdout_reader_gone() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        return true;
    }
    false
}

/// Polls stdout without waiting: a pipe whose read end is closed reports `POLLERR`, and a closed
/// socket or terminal `POLLHUP`. A regular file reports neither.
#[cfg(unix)]
fn stdout_reader_gone() -> bool {
    let mut descriptor = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: `descriptor` is one valid `pollfd` that lives for the call, and a timeout of 0
    // returns at once.
    let ready = unsafe { libc::poll(&mut descriptor, 1, 0) };
    ready > 0 && descriptor.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// True when colour may be used on stderr: a terminal, and `NO_COLOR` unset.
pub fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}
