//! `deployer logs`: reads the CloudWatch Logs events of the app or of its CodeBuild builds,
//! once or following new events, optionally only those that contain a literal text.

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatchlogs::operation::filter_log_events::FilterLogEventsError;
use aws_sdk_cloudwatchlogs::types::FilteredLogEvent;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::plan::Cx;

/// The maximum `--since`.
const MAX_SINCE: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The events `deployer logs` reads.
#[derive(Debug, Clone)]
pub struct Query {
    /// Read events from this long ago (`--since`, default 10 minutes).
    pub since: Duration,
    /// Keep reading new events until interrupted (`--follow`).
    pub follow: bool,
    /// Only events that contain this text (`--filter`), matched as a literal term, not a CloudWatch pattern.
    pub filter: Option<String>,
    /// Read the CodeBuild log group instead of the app's (`--build`).
    pub build: bool,
}

/// One log event as printed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// RFC 3339 time in UTC, for people.
    pub time: String,
    pub stream: String,
    pub message: String,
}

/// Reads the events and hands each one to `sink` in time order. Without `follow` it returns
/// after the events up to now; with `follow` it polls (every `poll` duration) until `stop` resolves.
/// In both modes `stop` ends the read early, which returns `Ok`.
///
/// A missing log group returns an `Error::Input` whose message names the group and `deployer up`.
pub async fn read(
    cx: &Cx,
    query: &Query,
    poll: Duration,
    stop: impl Future<Output = ()>,
    mut sink: impl FnMut(&Event),
) -> Result<()> {
    let group = LogGroup::of(cx, query.build);
    let pattern = query.filter.as_deref().map(filter_pattern).transpose()?;
    let now = now_millis();
    let mut cursor = Cursor::new(now.saturating_sub(millis(query.since)));
    // Without `--follow` the read ends at the time it started, so a busy group cannot keep it going.
    let end = (!query.follow).then_some(now);

    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return Ok(()),
            result = read_pass(cx, &group, pattern.as_deref(), end, &mut cursor, &mut sink) => result?,
        }
        if !query.follow {
            return Ok(());
        }
        cursor.next_pass();
        tokio::select! {
            () = &mut stop => return Ok(()),
            () = tokio::time::sleep(poll) => {}
        }
    }
}

/// Parses `--since`, a humantime duration such as `30s`, `10m`, `2h` or `1d`, above zero and at
/// most 30 days.
pub fn parse_since(text: &str) -> Result<Duration> {
    const ACCEPTED: &str = "write a duration above zero and at most `30d`, such as `30s`, `10m`, `2h` or `1d`";
    match humantime::parse_duration(text) {
        Ok(since) if since.is_zero() => Err(Error::Input(format!("`--since` `{text}` is zero; {ACCEPTED}"))),
        Ok(since) if since > MAX_SINCE => Err(Error::Input(format!(
            "`--since` `{text}` is longer than 30 days; {ACCEPTED}"
        ))),
        Ok(since) => Ok(since),
        Err(error) => Err(Error::Input(format!(
            "invalid `--since` `{}`: {error}; {ACCEPTED}",
            text.escape_debug()
        ))),
    }
}

/// Builds the filter pattern that matches `text` literally and case-sensitively. The pattern is one
/// quoted term, `"text"`, which CloudWatch Logs matches as an exact phrase with its spaces,
/// symbols and non-ASCII letters.
///
/// The CloudWatch Logs User Guide ("Filter and Pattern Syntax") documents the quotes but no escape
/// for a `"` inside them, so text that contains `"` is rejected. The AWS CDK (`quoteTerm` in
/// `aws-logs/lib/pattern.ts`) writes `\"` and `\\`, which suggests that the service reads a
/// backslash inside quotes as an escape, so text that contains `\` is rejected too.
// NOTE: the backslash rule comes from the CDK's code, not from the service documentation, and
// has not been tried against CloudWatch Logs itself (moto matches the quoted text as a plain substring).
pub fn filter_pattern(text: &str) -> Result<String> {
    if text.is_empty() {
        return Err(Error::Input(
            "`--filter` is empty; give the text to match, or leave out `--filter`".into(),
        ));
    }
    if let Some(special) = text.chars().find(|c| matches!(c, '"' | '\\')) {
        return Err(Error::Input(format!(
            "`--filter` `{}` contains `{special}`, which a CloudWatch Logs filter pattern cannot match literally; filter on a part of the text without `\"` and `\\`",
            text.escape_debug()
        )));
    }
    let pattern = format!("\"{text}\"");
    // FilterLogEvents takes a pattern of at most 1,024 characters.
    if pattern.chars().count() > 1024 {
        return Err(Error::Input(format!(
            "`--filter` has {} characters, and CloudWatch Logs takes at most 1,022; filter on a shorter part of the text",
            text.chars().count()
        )));
    }
    Ok(pattern)
}

/// The log group to read and how to explain that it is missing.
struct LogGroup {
    name: String,
    build: bool,
}

impl LogGroup {
    fn of(cx: &Cx, build: bool) -> Self {
        let name = if build {
            cx.names.build_log_group()
        } else {
            cx.names.app_log_group()
        };
        LogGroup { name, build }
    }

    fn read_error(&self, error: SdkError<FilterLogEventsError, HttpResponse>) -> Error {
        let missing = error
            .as_service_error()
            .is_some_and(FilterLogEventsError::is_resource_not_found_exception);
        match (missing, self.build) {
            (true, true) => Error::Input(format!(
                "build log group `{}` not found, which means no build has run yet; run `deployer up` to build and deploy the app",
                self.name
            )),
            (true, false) => Error::Input(format!(
                "log group `{}` not found; run `deployer up` to create the stack and start the app",
                self.name
            )),
            (false, _) => Error::aws("read log events from", &self.name, error),
        }
    }
}

/// Reads one paginated `FilterLogEvents` pass from the cursor's timestamp and hands every event
/// that the cursor admits to `sink`.
async fn read_pass(
    cx: &Cx,
    group: &LogGroup,
    pattern: Option<&str>,
    end: Option<i64>,
    cursor: &mut Cursor,
    sink: &mut impl FnMut(&Event),
) -> Result<()> {
    let start = cursor.start();
    let mut pages = cx
        .aws
        .logs
        .filter_log_events()
        .log_group_name(&group.name)
        .start_time(start)
        .set_end_time(end)
        .set_filter_pattern(pattern.map(str::to_owned))
        .into_paginator()
        .send();

    let mut printed = 0usize;
    while let Some(page) = pages.next().await {
        let page = page.map_err(|error| group.read_error(error))?;
        for (id, event) in in_time_order(page.events()) {
            if cursor.admit(event.timestamp, &id) {
                sink(&event);
                printed += 1;
            }
        }
    }
    tracing::debug!(group = %group.name, start, printed, "read one pass of log events");
    Ok(())
}

/// Converts one page to `(event id, event)` pairs sorted by timestamp. CloudWatch Logs returns
/// the streams interleaved in time order, but moto 5.2 without the deprecated `interleaved` flag
/// returns one stream after another, so each page is sorted here. The sort is stable, so events
/// of the same millisecond keep their order.
fn in_time_order(events: &[FilteredLogEvent]) -> Vec<(String, Event)> {
    let mut converted: Vec<(String, Event)> = events.iter().map(convert).collect();
    converted.sort_by_key(|(_, event)| event.timestamp);
    converted
}

fn convert(raw: &FilteredLogEvent) -> (String, Event) {
    let timestamp = raw.timestamp().unwrap_or_default();
    let stream = raw.log_stream_name().unwrap_or_default().to_owned();
    let message = raw.message().unwrap_or_default().to_owned();
    // The SDK models the event id as optional. Without one, the stream and message tell repeats apart.
    let id = raw
        .event_id()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{stream}\n{message}"));
    let event = Event {
        timestamp,
        time: rfc3339(timestamp),
        stream,
        message,
    };
    (id, event)
}

/// Formats milliseconds since the epoch as RFC 3339 in UTC with milliseconds. A negative
/// timestamp, which CloudWatch Logs does not store, prints as the epoch.
fn rfc3339(timestamp: i64) -> String {
    let since_epoch = Duration::from_millis(u64::try_from(timestamp).unwrap_or(0));
    humantime::format_rfc3339_millis(UNIX_EPOCH + since_epoch).to_string()
}

fn now_millis() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    millis(since_epoch)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The position of a follow, which keeps an event from being printed twice.
///
/// Each pass starts at the newest timestamp printed so far rather than one millisecond later,
/// because more events with that timestamp may still arrive. `start_time` is inclusive, so the
/// events already printed at that millisecond come back too, and their ids skip them. Events
/// older than the start of a pass never come back, so only the ids of one millisecond are kept.
// NOTE: an event that CloudWatch Logs ingests after a pass has moved past its timestamp is
// never printed, because the next pass starts later. `aws logs tail --follow` has the same gap.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    /// The `start_time` of the current pass.
    start: i64,
    /// The ids printed at `start` before the current pass.
    start_ids: HashSet<String>,
    /// The newest timestamp printed so far, or `start` before any.
    newest: i64,
    /// The ids printed at `newest`, those of earlier passes included.
    newest_ids: HashSet<String>,
}

impl Cursor {
    fn new(start: i64) -> Self {
        Cursor {
            start,
            start_ids: HashSet::new(),
            newest: start,
            newest_ids: HashSet::new(),
        }
    }

    fn start(&self) -> i64 {
        self.start
    }

    /// Records the event and returns whether it is new, that is whether to print it.
    fn admit(&mut self, timestamp: i64, id: &str) -> bool {
        if timestamp == self.start && self.start_ids.contains(id) {
            return false;
        }
        match timestamp.cmp(&self.newest) {
            std::cmp::Ordering::Greater => {
                self.newest = timestamp;
                self.newest_ids = HashSet::from([id.to_owned()]);
                true
            }
            std::cmp::Ordering::Equal => self.newest_ids.insert(id.to_owned()),
            // A page out of time order. The event is at or after `start` and not in `start_ids`,
            // so no earlier pass printed it.
            std::cmp::Ordering::Less => true,
        }
    }

    /// Moves the start of the next pass to the newest timestamp printed.
    fn next_pass(&mut self) {
        self.start = self.newest;
        self.start_ids = self.newest_ids.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input_message(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(Error::Input(message)) => message,
            other => panic!("expected Error::Input, got {other:?}"),
        }
    }

    #[test]
    fn parse_since_accepts_humantime_forms() {
        assert_eq!(parse_since("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_since("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_since("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_since("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_since("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_since("30d").unwrap(), MAX_SINCE);
    }

    #[test]
    fn parse_since_rejects_zero() {
        for text in ["0", "0s", "0m"] {
            let message = input_message(parse_since(text));
            assert!(message.contains(&format!("`{text}`")), "{message}");
            assert!(message.contains("is zero"), "{message}");
            assert!(message.contains("`10m`"), "{message}");
        }
    }

    #[test]
    fn parse_since_rejects_over_30_days() {
        for text in ["31d", "30d 1s", "5w", "1y"] {
            let message = input_message(parse_since(text));
            assert!(message.contains(&format!("`{text}`")), "{message}");
            assert!(message.contains("longer than 30 days"), "{message}");
        }
    }

    #[test]
    fn parse_since_rejects_other_text() {
        for text in ["", "10", "ten minutes", "-5m", "10 parsecs", "1h ago"] {
            let message = input_message(parse_since(text));
            assert!(message.contains("invalid `--since`"), "{text}: {message}");
            assert!(
                message.contains("write a duration above zero and at most `30d`"),
                "{text}: {message}"
            );
        }
    }

    #[test]
    fn filter_pattern_rejects_long_text() {
        assert!(filter_pattern(&"a".repeat(1022)).is_ok());
        let error = filter_pattern(&"a".repeat(1023)).unwrap_err().to_string();
        assert!(error.contains("1023 characters"), "{error}");
    }

    #[test]
    fn filter_pattern_quotes_text() {
        assert_eq!(filter_pattern("ERROR").unwrap(), r#""ERROR""#);
        assert_eq!(filter_pattern("GET /health 200").unwrap(), r#""GET /health 200""#);
        assert_eq!(filter_pattern("ログイン 失敗").unwrap(), "\"ログイン 失敗\"");
        assert_eq!(filter_pattern("?ERROR -WARN").unwrap(), r#""?ERROR -WARN""#);
        assert_eq!(filter_pattern("{ $.level = 5 }").unwrap(), r#""{ $.level = 5 }""#);
        assert_eq!(filter_pattern("%[a-z]+%").unwrap(), r#""%[a-z]+%""#);
        assert_eq!(filter_pattern("it's").unwrap(), r#""it's""#);
        assert_eq!(filter_pattern(" padded ").unwrap(), r#"" padded ""#);
    }

    #[test]
    fn filter_pattern_rejects_double_quote() {
        let message = input_message(filter_pattern(r#"say "hi""#));
        assert!(message.contains(r#"`say \"hi\"`"#), "{message}");
        assert!(message.contains("contains `\"`"), "{message}");
        assert!(message.contains("part of the text"), "{message}");
    }

    #[test]
    fn filter_pattern_rejects_backslash() {
        let message = input_message(filter_pattern(r"C:\temp"));
        assert!(message.contains(r"`C:\\temp`"), "{message}");
        assert!(message.contains("contains `\\`"), "{message}");
    }

    #[test]
    fn filter_pattern_rejects_empty_text() {
        let message = input_message(filter_pattern(""));
        assert!(message.contains("`--filter` is empty"), "{message}");
    }

    /// Runs one pass over `events` and returns the ids the cursor admitted.
    fn pass(cursor: &mut Cursor, events: &[(i64, &str)]) -> Vec<String> {
        let admitted = events
            .iter()
            .filter(|(timestamp, id)| cursor.admit(*timestamp, id))
            .map(|(_, id)| (*id).to_owned())
            .collect();
        cursor.next_pass();
        admitted
    }

    #[test]
    fn cursor_admits_first_pass() {
        let mut cursor = Cursor::new(100);
        assert_eq!(
            pass(&mut cursor, &[(100, "a"), (105, "b"), (105, "c")]),
            ["a", "b", "c"]
        );
        assert_eq!(cursor.start(), 105);
    }

    #[test]
    fn cursor_skips_repeats_at_start() {
        let mut cursor = Cursor::new(100);
        pass(&mut cursor, &[(100, "a"), (105, "b"), (105, "c")]);

        let second = pass(&mut cursor, &[(105, "b"), (105, "c"), (105, "d"), (110, "e")]);
        assert_eq!(second, ["d", "e"]);
        assert_eq!(cursor.start(), 110);
    }

    #[test]
    fn cursor_keeps_ids_over_passes_at_one_timestamp() {
        let mut cursor = Cursor::new(100);
        assert_eq!(pass(&mut cursor, &[(105, "a")]), ["a"]);
        assert_eq!(pass(&mut cursor, &[(105, "a"), (105, "b")]), ["b"]);
        assert_eq!(pass(&mut cursor, &[(105, "a"), (105, "b"), (105, "c")]), ["c"]);
        assert_eq!(cursor.start(), 105);
    }

    #[test]
    fn cursor_keeps_position_after_empty_pass() {
        let mut cursor = Cursor::new(100);
        pass(&mut cursor, &[(105, "a")]);
        assert_eq!(pass(&mut cursor, &[]), Vec::<String>::new());
        assert_eq!(pass(&mut cursor, &[]), Vec::<String>::new());
        assert_eq!(pass(&mut cursor, &[(105, "a"), (106, "b")]), ["b"]);
    }

    #[test]
    fn cursor_skips_repeat_in_unordered_page() {
        let mut cursor = Cursor::new(100);
        pass(&mut cursor, &[(105, "a")]);

        // Pages out of time order: the repeat of `a` comes after a newer event.
        let second = pass(&mut cursor, &[(110, "x"), (105, "a"), (107, "y")]);
        assert_eq!(second, ["x", "y"]);
        assert_eq!(cursor.start(), 110);
    }

    #[test]
    fn cursor_skips_repeat_within_pass() {
        let mut cursor = Cursor::new(100);
        assert_eq!(pass(&mut cursor, &[(105, "a"), (105, "a")]), ["a"]);
    }

    #[test]
    fn rfc3339_is_utc_with_millis() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn page_is_sorted_by_timestamp() {
        let raw = |timestamp: i64, id: &str, stream: &str| {
            FilteredLogEvent::builder()
                .timestamp(timestamp)
                .event_id(id)
                .log_stream_name(stream)
                .message(format!("message {id}"))
                .build()
        };
        let page = [
            raw(30, "3", "one"),
            raw(10, "1", "two"),
            raw(20, "2", "one"),
            raw(10, "0", "one"),
        ];

        let sorted = in_time_order(&page);
        let ids: Vec<&str> = sorted.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["1", "0", "2", "3"]);
        assert_eq!(sorted[0].1.stream, "two");
        assert_eq!(sorted[0].1.message, "message 1");
        assert_eq!(sorted[0].1.time, "1970-01-01T00:00:00.010Z");
    }
}
