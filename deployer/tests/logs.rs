//! End-to-end tests of `deployer::logs::read` against the moto emulator: log events put with the
//! AWS SDK, read back through the library with a context built from a test manifest.

mod support;

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use deployer::error::Error;
use deployer::logs::{self, Event, Query};
use deployer::output::Progress;
use deployer::plan::{Cx, Mode};
use support::{block_on, Stack, ACCOUNT};

const POLL: Duration = Duration::from_millis(100);

/// Builds a context for `stack` with SDK clients aimed at the emulator.
async fn context(stack: &Stack) -> Cx {
    let manifest = deployer::manifest::load(&stack.manifest_path()).unwrap();
    let aws = support::clients().await;
    Cx::new(manifest, aws, ACCOUNT.to_owned(), Mode::Plan, Progress::new(true))
}

fn query(since: &str, filter: Option<&str>) -> Query {
    Query {
        since: logs::parse_since(since).unwrap(),
        follow: false,
        filter: filter.map(str::to_owned),
        build: false,
    }
}

fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn create_group(cx: &Cx, group: &str) {
    cx.aws.logs.create_log_group().log_group_name(group).send().await.unwrap();
}

async fn create_stream(cx: &Cx, group: &str, stream: &str) {
    cx.aws
        .logs
        .create_log_stream()
        .log_group_name(group)
        .log_stream_name(stream)
        .send()
        .await
        .unwrap();
}

async fn put(cx: &Cx, group: &str, stream: &str, events: &[(i64, &str)]) {
    let events = events
        .iter()
        .map(|(timestamp, message)| {
            InputLogEvent::builder()
                .timestamp(*timestamp)
                .message(*message)
                .build()
                .unwrap()
        })
        .collect();
    cx.aws
        .logs
        .put_log_events()
        .log_group_name(group)
        .log_stream_name(stream)
        .set_log_events(Some(events))
        .send()
        .await
        .unwrap();
}

/// Reads once, without `--follow`, and returns the events in the order `sink` received them.
async fn read_all(cx: &Cx, query: &Query) -> Result<Vec<Event>, Error> {
    let mut events = Vec::new();
    logs::read(cx, query, POLL, std::future::pending(), |event| {
        events.push(event.clone())
    })
    .await?;
    Ok(events)
}

fn messages(events: &[Event]) -> Vec<&str> {
    events.iter().map(|event| event.message.as_str()).collect()
}

#[test]
fn read_filters_and_follows_app_events() {
    let stack = Stack::new("logs");
    block_on(async {
        let cx = context(&stack).await;
        let group = cx.names.app_log_group();
        create_group(&cx, &group).await;
        create_stream(&cx, &group, "web/app/task-1").await;
        create_stream(&cx, &group, "web/app/task-2").await;

        let now = now_millis();
        let two_hours_ago = now - 2 * 60 * 60 * 1000;
        put(
            &cx,
            &group,
            "web/app/task-1",
            &[(two_hours_ago, "too old for --since 1h")],
        )
        .await;
        put(
            &cx,
            &group,
            "web/app/task-1",
            &[(now - 3000, "GET /health 200"), (now - 1000, "GET /health 503")],
        )
        .await;
        put(&cx, &group, "web/app/task-2", &[(now - 2000, "ログイン成功 user=花子")]).await;

        // Without a filter: the last hour, both streams, in time order.
        let all = read_all(&cx, &query("1h", None)).await.unwrap();
        assert_eq!(
            messages(&all),
            ["GET /health 200", "ログイン成功 user=花子", "GET /health 503"]
        );
        assert_eq!(all[1].stream, "web/app/task-2");
        assert_eq!(all[1].timestamp, now - 2000);
        assert!(all[1].time.ends_with('Z'), "{}", all[1].time);

        // A Japanese term, and a term with spaces and a slash, matched literally.
        let japanese = read_all(&cx, &query("1h", Some("ログイン成功"))).await.unwrap();
        assert_eq!(messages(&japanese), ["ログイン成功 user=花子"]);
        let phrase = read_all(&cx, &query("1h", Some("/health 503"))).await.unwrap();
        assert_eq!(messages(&phrase), ["GET /health 503"]);
        let none = read_all(&cx, &query("1h", Some("health 404"))).await.unwrap();
        assert_eq!(messages(&none), Vec::<&str>::new());

        // `--since 3h` reaches the old event.
        let longer = read_all(&cx, &query("3h", None)).await.unwrap();
        assert_eq!(longer.len(), 4, "{longer:?}");

        // Following: the stop future puts one event at the newest timestamp already printed and
        // one later event. Once both are printed it lets several more polls run, each of which
        // starts at the newest timestamp and returns that millisecond's events again.
        let followed = RefCell::new(Vec::new());
        let follow = Query {
            follow: true,
            ..query("1h", None)
        };
        let stop = async {
            tokio::time::sleep(POLL * 3).await;
            put(
                &cx,
                &group,
                "web/app/task-2",
                &[(now - 1000, "same millisecond as the 503")],
            )
            .await;
            put(&cx, &group, "web/app/task-1", &[(now_millis(), "after the first poll")]).await;

            // Waiting for the events, not a fixed time, keeps a slow emulator from ending the read early.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while followed.borrow().len() < 5 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(POLL).await;
            }
            tokio::time::sleep(POLL * 5).await;
        };
        logs::read(&cx, &follow, POLL, stop, |event| {
            followed.borrow_mut().push(event.clone())
        })
        .await
        .unwrap();
        let followed = followed.into_inner();
        assert_eq!(
            messages(&followed),
            [
                "GET /health 200",
                "ログイン成功 user=花子",
                "GET /health 503",
                "same millisecond as the 503",
                "after the first poll",
            ]
        );
    });
}

#[test]
fn missing_group_is_input_error() {
    let stack = Stack::new("nologs");
    block_on(async {
        let cx = context(&stack).await;

        let app = read_all(&cx, &query("10m", None)).await.unwrap_err();
        let Error::Input(message) = &app else {
            panic!("expected Error::Input, got {app:?}")
        };
        assert!(
            message.contains(&format!("`{}`", cx.names.app_log_group())),
            "{message}"
        );
        assert!(message.contains("run `deployer up`"), "{message}");

        let build = Query {
            build: true,
            ..query("10m", None)
        };
        let error = read_all(&cx, &build).await.unwrap_err();
        let Error::Input(message) = &error else {
            panic!("expected Error::Input, got {error:?}")
        };
        assert!(
            message.contains(&format!("`{}`", cx.names.build_log_group())),
            "{message}"
        );
        assert!(message.contains("no build has run yet"), "{message}");
    });
}

#[test]
fn read_build_group() {
    let stack = Stack::new("buildlogs");
    block_on(async {
        let cx = context(&stack).await;
        let group = cx.names.build_log_group();
        create_group(&cx, &group).await;
        create_stream(&cx, &group, "build-1").await;
        put(&cx, &group, "build-1", &[(now_millis() - 500, "Step 1/4 : FROM rust")]).await;

        let events = read_all(
            &cx,
            &Query {
                build: true,
                ..query("10m", None)
            },
        )
        .await
        .unwrap();
        assert_eq!(messages(&events), ["Step 1/4 : FROM rust"]);
        assert_eq!(events[0].stream, "build-1");
    });
}

#[test]
fn read_rejects_quote_in_filter() {
    let stack = Stack::new("quote");
    block_on(async {
        let cx = context(&stack).await;
        // The group does not exist: the filter is checked before any request.
        let error = read_all(&cx, &query("10m", Some(r#"say "hi""#))).await.unwrap_err();
        let Error::Input(message) = &error else {
            panic!("expected Error::Input, got {error:?}")
        };
        assert!(message.contains("`--filter`"), "{message}");
    });
}

#[test]
fn logs_command_prints_filtered_events() {
    let stack = Stack::new("logcli");
    block_on(async {
        let cx = context(&stack).await;
        let group = cx.names.app_log_group();
        create_group(&cx, &group).await;
        create_stream(&cx, &group, "app/app/task-1").await;
        let now = now_millis();
        put(&cx, &group, "app/app/task-1", &[(now - 2000, "boot ok"), (now - 1000, "ログイン 失敗 user=a")]).await;
    });

    let json = stack.run(&["logs", "--since", "1h", "--filter", "ログイン 失敗", "--output", "json"]);
    json.expect_code(0);
    let events = json.json()["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["message"], "ログイン 失敗 user=a");

    let text = stack.run(&["logs", "--since", "1h"]);
    text.expect_code(0);
    assert!(text.stdout.contains("app/app/task-1 boot ok"), "{}", text.stdout);

    let bad = stack.run(&["logs", "--since", "forever"]);
    bad.expect_code(2);
    assert!(bad.stderr.contains("forever"), "{}", bad.stderr);
}
