//! End-to-end tests: the built `deployer` binary against the moto emulator.
//!
//! moto runs no containers and its CodeBuild pushes no image, so the harness plays those parts:
//! `tests/emulator/fake_codebuild.py` pushes the image manifest once the bundle is uploaded, and a
//! local HTTP server answers the `deploy.health_url` that each test's manifest points at.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::{block_on, ec2_counts, remaining, Stack, CLIENT_SECRET};

/// The kinds the first `up` creates, each once or more.
const STACK_KINDS: &[&str] = &[
    "ec2:vpc",
    "ec2:internet-gateway",
    "ec2:subnet",
    "ec2:elastic-ip",
    "ec2:nat-gateway",
    "ec2:route-table",
    "ec2:security-group",
    "logs:log-group",
    "secretsmanager:secret",
    "ecr:repository",
    "s3:bucket",
    "iam:role",
    "codebuild:project",
    "acm:certificate",
    "elbv2:target-group",
    "elbv2:load-balancer",
    "elbv2:listener",
    "ecs:cluster",
    "ecr:image",
    "ecs:task-definition",
    "ecs:service",
];

#[test]
fn up_from_empty_converges_then_noop() {
    let stack = Stack::new("fresh");

    let first = stack.up();
    first.expect_code(0);
    let created = first.changes();
    for kind in STACK_KINDS {
        assert!(
            created.iter().any(|(k, _, action)| k == kind && action == "create"),
            "`{kind}` was not created: {created:?}"
        );
    }
    assert!(first.stderr.contains("answered 200"), "{}", first.stderr);

    let second = stack.up();
    second.expect_code(0);
    assert_eq!(second.changes(), Vec::new(), "second up changed something");
    assert!(second.stderr.contains("skipping the build"), "{}", second.stderr);

    let plan = stack.run(&["plan", "--output", "json"]);
    plan.expect_code(0);
    assert_eq!(plan.changes(), Vec::new(), "plan of a converged stack is not empty");
    let text_plan = stack.run(&["plan"]);
    assert!(text_plan.stdout.starts_with("no changes"), "{}", text_plan.stdout);

    for run in [&first, &second, &plan, &text_plan] {
        assert!(!run.all_output().contains(CLIENT_SECRET), "the client secret was printed");
    }
}

#[test]
fn allowed_cidrs_change_is_one_update() {
    let stack = Stack::new("cidr");
    stack.up().expect_code(0);

    stack.write_manifest_with(r#"allowed_cidrs = ["203.0.113.0/24", "198.51.100.0/24"]"#, 1, "");
    let plan = stack.run(&["plan", "--output", "json"]);
    plan.expect_code(0);
    let changes = plan.changes();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].0, "ec2:security-group");
    assert_eq!(changes[0].1, format!("{}-alb", stack.prefix()));
    assert_eq!(changes[0].2, "update");

    let applied = stack.up();
    applied.expect_code(0);
    assert_eq!(applied.changes(), changes);
    let after = stack.run(&["plan", "--output", "json"]);
    assert_eq!(after.changes(), Vec::new());
}

#[test]
fn desired_count_change_is_one_update() {
    let stack = Stack::new("count");
    stack.up().expect_code(0);

    stack.write_manifest_with(r#"allowed_cidrs = ["203.0.113.0/24"]"#, 2, "");
    let plan = stack.run(&["plan", "--output", "json"]);
    plan.expect_code(0);
    let changes = plan.changes();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0], ("ecs:service".to_owned(), stack.prefix(), "update".to_owned()));
    assert!(plan.stdout.contains("desired_count"), "{}", plan.stdout);
}

#[test]
fn destroy_leaves_no_tagged_resource() {
    let stack = Stack::new("gone");
    stack.up().expect_code(0);
    assert!(!block_on(remaining(&stack)).is_empty());

    let refused = stack.run(&["destroy"]);
    refused.expect_code(2);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);

    let destroyed = stack.run(&["destroy", "--yes", "--output", "json"]);
    destroyed.expect_code(0);
    assert!(destroyed.changes().iter().all(|(_, _, action)| action == "delete"));
    let left = block_on(remaining(&stack));
    assert!(left.is_empty(), "left behind: {left:#?}");

    let again = stack.run(&["destroy", "--yes", "--output", "json"]);
    again.expect_code(0);
    assert_eq!(again.changes(), Vec::new(), "a second destroy found something");
}

#[test]
fn two_apps_stay_apart() {
    let first = Stack::new("apart");
    let second = Stack::new("apart");
    first.up().expect_code(0);
    second.up().expect_code(0);

    first.run(&["destroy", "--yes"]).expect_code(0);
    assert!(block_on(remaining(&first)).is_empty());

    let plan = second.run(&["plan", "--output", "json"]);
    plan.expect_code(0);
    assert_eq!(plan.changes(), Vec::new(), "destroying one app changed the other");
}

#[test]
fn interrupted_up_converges_without_duplicates() {
    for lines in [2, 6, 12, 20, 28] {
        let stack = Stack::new("kill");
        let printed = stack.up_killed_after(lines);
        assert!(!printed.is_empty(), "up printed nothing before the kill");

        let rerun = stack.up();
        rerun.expect_code(0);
        assert_eq!(
            block_on(ec2_counts(&stack)),
            [1, 4, 2, 1, 2],
            "duplicates after a kill after {lines} lines; it printed:\n{printed}"
        );
        let plan = stack.run(&["plan", "--output", "json"]);
        assert_eq!(
            plan.changes(),
            Vec::new(),
            "not converged after a kill after {lines} lines: {}\nthe killed run printed:\n{printed}",
            plan.stdout
        );
    }
}

#[test]
fn existing_name_without_tags_is_rejected() {
    let stack = Stack::new("taken");
    block_on(async {
        let aws = support::clients().await;
        aws.ecr.create_repository().repository_name(stack.repository()).send().await.unwrap();
    });

    let run = stack.up();
    run.expect_code(2);
    assert!(run.stderr.contains(&stack.repository()), "{}", run.stderr);
    assert!(run.stderr.contains("not created by this deployer"), "{}", run.stderr);
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
}

#[test]
fn missing_client_secret_variable_is_input_error() {
    let stack = Stack::new("nosecret");
    let run = Run::from(stack.command(&["up"]).env_remove("DATABRICKS_CLIENT_SECRET").output().unwrap());
    run.expect_code(2);
    assert!(run.stderr.contains("DATABRICKS_CLIENT_SECRET"), "{}", run.stderr);
    assert!(block_on(remaining(&stack)).is_empty(), "resources were created before the check");
}

#[test]
fn malformed_rollback_target_fails_before_aws() {
    let stack = Stack::new("badto");
    let run = Run::from(
        stack
            .command(&["rollback", "--to", "+6"])
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .output()
            .unwrap(),
    );
    run.expect_code(2);
    assert!(run.stderr.contains("invalid `--to` `+6`"), "{}", run.stderr);
}

#[test]
fn closed_stdout_keeps_the_exit_code() {
    let stack = Stack::new("pipe");
    let limit = Duration::from_secs(60);

    let failed = stack.run_with_closed_stdout(&["rollback", "--to", "+6", "--output", "json"], limit);
    failed.expect_code(2);
    assert!(failed.stderr.contains("invalid `--to`"), "{}", failed.stderr);

    let ok = stack.run_with_closed_stdout(&["validate", "--output", "json"], limit);
    ok.expect_code(0);
}

#[test]
fn follow_stops_when_reader_closes() {
    let stack = Stack::new("follow");
    stack.up().expect_code(0);
    let manifest = deployer::manifest::load(&stack.manifest_path()).unwrap();
    let group = deployer::names::Names::new(&manifest).app_log_group();
    block_on(async {
        let aws = support::clients().await;
        aws.logs.create_log_stream().log_group_name(&group).log_stream_name("app/web/1").send().await.unwrap();
        let event = aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
            .timestamp(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64)
            .message("listening on 0.0.0.0:8080")
            .build()
            .unwrap();
        aws.logs
            .put_log_events()
            .log_group_name(&group)
            .log_stream_name("app/web/1")
            .log_events(event)
            .send()
            .await
            .unwrap();
    });

    let run = stack.run_with_closed_stdout(&["logs", "--follow", "--since", "10m"], Duration::from_secs(30));
    run.expect_code(0);

    // A reader that takes one line and closes, as `head -1` does, with the line already read.
    let mut head = stack
        .command(&["logs", "--follow", "--since", "10m"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(head.stdout.take().unwrap()), &mut first).unwrap();
    assert!(first.contains("listening on 0.0.0.0:8080"), "{first}");
    let ended = support::wait_within(&mut head, Duration::from_secs(15));
    assert!(ended, "logs --follow kept running after its reader took one line and closed stdout");
    assert_eq!(head.wait().unwrap().code(), Some(0));

    let follow = stack.command(&["logs", "--follow"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let killed = std::process::Command::new("kill").args(["-TERM", &follow.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let output = follow.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "logs --follow after SIGTERM");
    assert!(String::from_utf8_lossy(&output.stdout).contains("listening on 0.0.0.0:8080"));
}

#[test]
fn missing_source_fails_before_aws() {
    let stack = Stack::new("nosource");
    std::fs::remove_dir_all(stack.manifest_path().parent().unwrap().join("source")).unwrap();

    let validate = stack.run(&["validate"]);
    validate.expect_code(2);
    assert!(validate.stderr.contains("`build.source_dir`"), "{}", validate.stderr);

    let up = stack.run(&["up"]);
    up.expect_code(2);
    assert!(up.stderr.contains("`build.source_dir`"), "{}", up.stderr);
    assert!(block_on(remaining(&stack)).is_empty(), "up created resources before the source check");
}

#[test]
fn manifest_option_goes_before_the_command() {
    let stack = Stack::new("mfirst");
    let path = stack.manifest_path();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_deployer"))
        .arg("-m")
        .arg(&path)
        .arg("validate")
        .output()
        .unwrap();
    let run = Run::from(output);
    run.expect_code(0);
    assert!(run.stdout.contains("is valid"), "{}", run.stdout);
}

#[test]
fn unreachable_endpoint_fails_with_hint() {
    let stack = Stack::new("offline");
    let run = Run::from(
        stack
            .command(&["plan"])
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .output()
            .unwrap(),
    );
    run.expect_code(1);
    assert!(run.stderr.contains("error:"), "{}", run.stderr);
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
}

#[test]
fn failing_health_check_fails_up() {
    let stack = Stack::with_health("sick", 503);
    let run = stack.up();
    // The first revision has nothing earlier to return to.
    run.expect_code(4);
    assert!(run.stderr.contains("step `health`"), "{}", run.stderr);
    assert!(run.stderr.contains("HTTP 503"), "{}", run.stderr);
    assert!(run.stderr.contains(&stack.health.url), "{}", run.stderr);
    assert!(run.stderr.contains("no earlier revision"), "{}", run.stderr);
    assert!(block_on(marked_failed(&stack, 1)), "the revision that failed its live check was not marked");

    let status = stack.run(&["status", "--output", "json"]);
    assert_eq!(status.json()["service"]["last_deploy"]["result"], "not_rolled_back");
}

#[test]
fn invalid_manifest_exits_two() {
    let stack = Stack::new("invalid");
    stack.write_manifest_with("allowed_cidrs = [\"10.0.0/8\"]", 1, "");
    let run = stack.run(&["validate"]);
    run.expect_code(2);
    assert!(run.stderr.contains("network.allowed_cidrs[0]"), "{}", run.stderr);
    let up = stack.run(&["up"]);
    up.expect_code(2);
}

#[test]
fn hosted_zone_gets_alias_record() {
    let stack = Stack::new("zone");
    let domain = format!("{}.example.test", stack.app);
    let zone_id = block_on(async {
        let aws = support::clients().await;
        let zone = aws
            .route53
            .create_hosted_zone()
            .name("example.test")
            .caller_reference(stack.app.clone())
            .send()
            .await
            .unwrap();
        zone.hosted_zone().unwrap().id().trim_start_matches("/hostedzone/").to_owned()
    });
    stack.write_manifest(&format!("\n[https]\ndomain = \"{domain}\"\nhosted_zone_id = \"{zone_id}\"\n"));

    let run = stack.up();
    run.expect_code(0);
    assert!(run.changes().iter().any(|(kind, name, _)| kind == "route53:record" && *name == domain));

    let records = block_on(async {
        let aws = support::clients().await;
        aws.route53.list_resource_record_sets().hosted_zone_id(&zone_id).send().await.unwrap()
    });
    let alias = records
        .resource_record_sets()
        .iter()
        .find(|record| record.name().trim_end_matches('.') == domain && record.r#type().as_str() == "A");
    assert!(alias.and_then(|record| record.alias_target()).is_some(), "no alias record: {records:?}");

    let plan = stack.run(&["plan", "--output", "json"]);
    assert_eq!(plan.changes(), Vec::new());
}

use support::Run;

#[test]
fn existing_network_is_used_and_kept() {
    let stack = Stack::new("ownvpc");
    let (vpc_id, public, private) = block_on(async {
        let aws = support::clients().await;
        let vpc = aws.ec2.create_vpc().cidr_block("10.42.0.0/16").send().await.unwrap();
        let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_owned();
        let mut ids = Vec::new();
        for (cidr, zone) in [
            ("10.42.1.0/24", "ap-northeast-1a"),
            ("10.42.2.0/24", "ap-northeast-1c"),
            ("10.42.11.0/24", "ap-northeast-1a"),
            ("10.42.12.0/24", "ap-northeast-1c"),
        ] {
            let subnet = aws
                .ec2
                .create_subnet()
                .vpc_id(&vpc_id)
                .cidr_block(cidr)
                .availability_zone(zone)
                .send()
                .await
                .unwrap();
            ids.push(subnet.subnet().unwrap().subnet_id().unwrap().to_owned());
        }
        (vpc_id, ids[..2].to_vec(), ids[2..].to_vec())
    });
    let quoted = |ids: &[String]| ids.iter().map(|id| format!("\"{id}\"")).collect::<Vec<_>>().join(", ");
    stack.write_manifest_with(
        &format!(
            "vpc_id = \"{vpc_id}\"\npublic_subnet_ids = [{}]\nprivate_subnet_ids = [{}]\nallowed_cidrs = [\"203.0.113.0/24\"]",
            quoted(&public),
            quoted(&private)
        ),
        1,
        "",
    );

    let run = stack.up();
    run.expect_code(0);
    let changes = run.changes();
    for kind in ["ec2:vpc", "ec2:subnet", "ec2:nat-gateway", "ec2:internet-gateway", "ec2:route-table"] {
        assert!(!changes.iter().any(|(k, _, _)| k == kind), "`{kind}` was created in an existing VPC");
    }
    assert!(changes.iter().any(|(k, _, _)| k == "ec2:security-group"));

    stack.run(&["destroy", "--yes"]).expect_code(0);
    let still_there = block_on(async {
        let aws = support::clients().await;
        aws.ec2.describe_subnets().subnet_ids(&public[0]).send().await.is_ok()
            && aws.ec2.describe_vpcs().vpc_ids(&vpc_id).send().await.is_ok()
    });
    assert!(still_there, "destroy deleted the existing VPC or its subnets");
}

#[test]
fn unknown_existing_vpc_is_input_error() {
    let stack = Stack::new("novpc");
    stack.write_manifest_with(
        "vpc_id = \"vpc-0123456789abcdef0\"\npublic_subnet_ids = [\"subnet-0123456789abcdef1\", \"subnet-0123456789abcdef2\"]\nprivate_subnet_ids = [\"subnet-0123456789abcdef3\", \"subnet-0123456789abcdef4\"]\nallowed_cidrs = [\"203.0.113.0/24\"]",
        1,
        "",
    );
    let run = stack.run(&["plan"]);
    run.expect_code(2);
    assert!(run.stderr.contains("vpc-0123456789abcdef0"), "{}", run.stderr);
    assert!(run.stderr.contains("was not found"), "{}", run.stderr);
}

#[test]
fn missing_credentials_fail_with_hint() {
    let stack = Stack::new("nocreds");
    let run = Run::from(
        stack
            .command(&["plan"])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .output()
            .unwrap(),
    );
    run.expect_code(2);
    assert!(run.stderr.contains("no credentials found"), "{}", run.stderr);
    assert!(run.stderr.contains("hint: check the AWS credentials"), "{}", run.stderr);
    assert!(!run.stderr.contains("ProviderChainError"), "the error repeats itself in Debug form: {}", run.stderr);
}

#[test]
fn changed_source_rolls_out_new_revision() {
    let stack = Stack::new("redeploy");
    stack.up().expect_code(0);

    let source = stack.dir.path().join("source/app/src/main.rs");
    std::fs::write(&source, "fn main() { println!(\"v2\"); }\n").unwrap();
    let run = stack.run_with_builder(&["update", "--output", "json"]);
    run.expect_code(0);
    assert_eq!(run.json()["deployed"]["version"], stack.image_tag());
    assert!(run.stderr.contains("live check: `http://127.0.0.1"), "{}", run.stderr);
    assert!(run.stderr.contains("redirects to the Databricks sign-in with PKCE"), "{}", run.stderr);
    let changes = run.changes();
    assert!(changes.iter().any(|(kind, _, action)| kind == "ecr:image" && action == "create"), "{changes:?}");
    assert!(
        changes.iter().any(|(kind, name, _)| kind == "ecs:task-definition" && name.ends_with(":2")),
        "{changes:?}"
    );
    assert!(changes.iter().any(|(kind, _, action)| kind == "ecs:service" && action == "update"), "{changes:?}");

    let plan = stack.run(&["plan", "--output", "json"]);
    assert_eq!(plan.changes(), Vec::new());
}

#[test]
fn invalid_image_is_input_error() {
    let stack = Stack::new("badimage");
    for image in ["", "https://registry.example/app:1", "repo:tag with space"] {
        let run = stack.run(&["plan", "--image", image]);
        run.expect_code(2);
        assert!(run.stderr.contains("invalid `--image`"), "{}", run.stderr);
    }
}

#[test]
fn name_tag_is_rejected() {
    let stack = Stack::new("nametag");
    stack.write_manifest("\n[tags]\nName = \"mine\"\n");
    let run = stack.run(&["validate"]);
    run.expect_code(2);
    assert!(run.stderr.contains("tags.Name"), "{}", run.stderr);
}

#[test]
fn status_reports_running_version() {
    let stack = Stack::new("status");
    let before = stack.run(&["status", "--output", "json"]);
    before.expect_code(0);
    assert_eq!(before.json()["service"]["exists"], false);

    stack.up().expect_code(0);
    let status = stack.run(&["status", "--output", "json"]);
    status.expect_code(0);
    let service = &status.json()["service"];
    assert_eq!(service["exists"], true);
    assert_eq!(service["version"], stack.image_tag());
    assert_eq!(service["task_definition"], format!("{}:1", stack.prefix()));
    assert!(service["image"].as_str().unwrap().contains("@sha256:"), "{service}");
    assert_eq!(service["desired"], 1);

    let text = stack.run(&["status"]);
    text.expect_code(0);
    assert!(text.stdout.contains(&format!("version:          {}", stack.image_tag())), "{}", text.stdout);
}

#[test]
fn update_with_unchanged_source_builds_and_registers_nothing() {
    let stack = Stack::new("same");
    stack.up().expect_code(0);

    // No fake CodeBuild runs: a build would never finish.
    let run = stack.run(&["update", "--output", "json"]);
    run.expect_code(0);
    assert_eq!(run.changes(), Vec::new());
    assert!(run.stderr.contains("already exists, skipping the build"), "{}", run.stderr);
    assert!(!run.stderr.contains("started build"), "{}", run.stderr);
    let phases: Vec<String> = run.json()["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|phase| phase["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(phases, ["stack", "build", "rollout", "live check"]);

    let status = stack.run(&["status", "--output", "json"]);
    let service = &status.json()["service"];
    assert_eq!(service["task_definition"], format!("{}:1", stack.prefix()));
    assert_eq!(service["last_deploy"]["command"], "update");
    assert_eq!(service["last_deploy"]["result"], "succeeded");
}

#[test]
fn update_before_up_is_input_error() {
    let stack = Stack::new("noup");
    let run = stack.run(&["update"]);
    run.expect_code(2);
    assert!(run.stderr.contains("run `deployer up` first"), "{}", run.stderr);
}

#[test]
fn rollback_returns_to_the_previous_revision() {
    let stack = Stack::new("back");
    stack.up().expect_code(0);
    let first_tag = stack.image_tag();
    std::fs::write(stack.dir.path().join("source/app/src/main.rs"), "fn main() { println!(\"v2\"); }\n").unwrap();
    stack.run_with_builder(&["update"]).expect_code(0);

    let run = stack.run(&["rollback", "--output", "json"]);
    run.expect_code(0);
    assert_eq!(run.json()["deployed"]["task_definition"], format!("{}:1", stack.prefix()));
    assert_eq!(run.json()["deployed"]["version"], first_tag);
    let status = stack.run(&["status", "--output", "json"]);
    assert_eq!(status.json()["service"]["version"], first_tag);

    let forward = stack.run(&["rollback", "--to", "2"]);
    forward.expect_code(0);
    for bad in ["9", "other:1", "latest"] {
        let run = stack.run(&["rollback", "--to", bad]);
        run.expect_code(2);
        assert!(run.stderr.contains("--to") || run.stderr.contains("not an active revision"), "{}", run.stderr);
    }
}

/// True when revision `revision` of `stack` carries the deployer's failed-rollout tag.
async fn marked_failed(stack: &Stack, revision: u32) -> bool {
    let aws = support::clients().await;
    let described = aws
        .ecs
        .describe_task_definition()
        .task_definition(format!("{}:{revision}", stack.prefix()))
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    described.tags().iter().any(|tag| tag.key() == Some("deployer:rollout") && tag.value() == Some("failed"))
}

/// Tags revision `revision` of `stack` as the deployer tags a revision whose rollout failed.
async fn mark_failed_by_hand(stack: &Stack, revision: u32) {
    let aws = support::clients().await;
    let described = aws
        .ecs
        .describe_task_definition()
        .task_definition(format!("{}:{revision}", stack.prefix()))
        .send()
        .await
        .unwrap();
    let arn = described.task_definition().unwrap().task_definition_arn().unwrap();
    let tag = aws_sdk_ecs::types::Tag::builder().key("deployer:rollout").value("failed").build();
    aws.ecs.tag_resource().resource_arn(arn).tags(tag).send().await.unwrap();
}

#[test]
fn rollback_passes_over_failed_revisions() {
    let stack = Stack::new("skip");
    stack.up().expect_code(0);
    for version in ["v2", "v3"] {
        let main = format!("fn main() {{ println!(\"{version}\"); }}\n");
        std::fs::write(stack.dir.path().join("source/app/src/main.rs"), main).unwrap();
        stack.run_with_builder(&["update"]).expect_code(0);
    }
    // Revision 2 failed its rollout, as a failed live check leaves it.
    block_on(mark_failed_by_hand(&stack, 2));

    let run = stack.run(&["rollback", "--output", "json"]);
    run.expect_code(0);
    assert_eq!(run.json()["deployed"]["task_definition"], format!("{}:1", stack.prefix()));
    assert!(run.stderr.contains(&format!("passing over `{}:2`", stack.prefix())), "{}", run.stderr);

    // A revision that passes after `--to` loses its mark.
    block_on(mark_failed_by_hand(&stack, 3));
    stack.run(&["rollback", "--to", "3"]).expect_code(0);
    assert!(!block_on(marked_failed(&stack, 3)), "revision 3 passed but kept its failed mark");

    // From revision 3, with 1 and 2 both marked, nothing older is left.
    stack.run(&["rollback", "--to", "3"]).expect_code(0);
    block_on(mark_failed_by_hand(&stack, 1));
    let none = stack.run(&["rollback"]);
    none.expect_code(2);
    assert!(none.stderr.contains("every revision older than"), "{}", none.stderr);
    assert!(none.stderr.contains("--to"), "{}", none.stderr);
}

#[test]
fn progress_events_are_json_lines() {
    let stack = Stack::new("events");
    let run = stack.run(&["status", "--events"]);
    run.expect_code(0);
    let first = run.stderr.lines().next().unwrap();
    let event: serde_json::Value = serde_json::from_str(first).unwrap();
    assert_eq!(event["event"], "progress");
    assert!(event["message"].as_str().unwrap().contains("reading"), "{first}");
}

#[test]
fn interrupted_update_says_what_runs() {
    let stack = Stack::with_health("stopped", 503);
    stack.up().expect_code(4);
    std::fs::write(stack.dir.path().join("source/app/src/main.rs"), "fn main() { println!(\"v2\"); }\n").unwrap();

    // Interrupt during the live check of revision 2, which answers 503 for a while.
    let mut builder = stack.fake_codebuild();
    let mut child = stack
        .command(&["update", "--output", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut printed = String::new();
    for line in std::io::BufRead::lines(stderr).map_while(Result::ok) {
        printed.push_str(&line);
        printed.push('\n');
        if line.contains("live check `health` 1/") {
            let pid = child.id().to_string();
            std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
        }
    }
    let status = child.wait().unwrap();
    let _ = builder.kill();
    let _ = builder.wait();

    assert_eq!(status.code(), Some(130), "{printed}");
    let prefix = stack.prefix();
    assert!(printed.contains("interrupted by SIGINT"), "{printed}");
    assert!(printed.contains(&format!("switching the service to `{prefix}:2`")), "{printed}");
    assert!(printed.contains(&format!("rollback --to {prefix}:1")), "{printed}");
    let status = stack.run(&["status", "--output", "json"]);
    assert_eq!(status.json()["service"]["last_deploy"]["result"], "interrupted");
}

#[test]
fn destroy_needs_no_client_secret() {
    let stack = Stack::new("nosecret");
    let mut command = stack.command(&["destroy", "--yes"]);
    command.env_remove("DATABRICKS_CLIENT_SECRET");
    let run = Run::from(command.output().unwrap());
    run.expect_code(0);
}

#[test]
fn image_missing_from_own_repository_is_input_error() {
    let stack = Stack::new("noimage");
    stack.up().expect_code(0);
    let repository = stack.run(&["status", "--output", "json"]).json()["service"]["image"]
        .as_str()
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_owned();
    let run = stack.run(&["update", "--image", &format!("{repository}:src-missing")]);
    run.expect_code(2);
    assert!(run.stderr.contains("is not in the repository"), "{}", run.stderr);

    let tagged = stack.run(&["update", "--image", &format!("{repository}:{}", stack.image_tag()), "--output", "json"]);
    tagged.expect_code(0);
    assert_eq!(tagged.changes(), Vec::new(), "a tag of the running image pins the same digest");
}
