//! The CodeBuild log, streamed from CloudWatch Logs while the build runs, with its last lines
//! kept for the error when the build fails.

use std::collections::VecDeque;

use aws_sdk_codebuild::types::Build;

use crate::plan::Cx;

/// Lines of the build log shown with a failed build.
pub const TAIL_LINES: usize = 20;

/// Follows one build's log stream from its first line.
#[derive(Debug, Default)]
pub struct BuildLog {
    next_token: Option<String>,
    tail: VecDeque<String>,
}

impl BuildLog {
    /// Prints the lines that arrived since the last call. The log is a help, not the build: a
    /// stream that does not exist yet or a failed read is left for the next call.
    pub async fn follow(&mut self, cx: &Cx, build: &Build) {
        let Some(logs) = build.logs() else { return };
        let (Some(group), Some(stream)) = (logs.group_name(), logs.stream_name()) else {
            return;
        };
        loop {
            let read = cx
                .aws
                .logs
                .get_log_events()
                .log_group_name(group)
                .log_stream_name(stream)
                .start_from_head(true)
                .set_next_token(self.next_token.clone())
                .send()
                .await;
            let page = match read {
                Ok(page) => page,
                Err(error) => {
                    tracing::debug!(error = %crate::error::cause_chain(&error), "build log not readable yet");
                    return;
                }
            };
            for event in page.events() {
                self.push(cx, event.message().unwrap_or_default());
            }
            let token = page.next_forward_token().map(str::to_owned);
            // CloudWatch Logs returns the token it was given once the stream has nothing newer.
            let at_end = page.events().is_empty() || token == self.next_token;
            self.next_token = token;
            if at_end {
                return;
            }
        }
    }

    fn push(&mut self, cx: &Cx, message: &str) {
        for line in message.lines().map(str::trim_end).filter(|line| !line.is_empty()) {
            cx.progress.say(format!("build | {line}"));
            if self.tail.len() == TAIL_LINES {
                self.tail.pop_front();
            }
            self.tail.push_back(line.to_owned());
        }
    }

    /// Returns the last lines read, oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
}
