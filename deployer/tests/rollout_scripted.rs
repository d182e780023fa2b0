//! The rollout paths the emulator cannot reach, against scripted AWS answers from the SDK's own
//! test support (`aws-smithy-mocks`): failed and timed-out builds, a rollout that completes, a
//! circuit-breaker rollback, tasks that cannot pull their image, a deployment that never
//! stabilizes, a `/health` that fails after the switch, and throttling during the wait.
//!
//! A small scripted ECS keeps the service's task definition: `UpdateService` switches it, and
//! each `DescribeServices` advances the deployment one step as the scenario says. The app is the
//! harness's local health server, whose status follows the running revision.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_codebuild::operation::batch_get_builds::BatchGetBuildsOutput;
use aws_sdk_codebuild::operation::start_build::StartBuildOutput;
use aws_sdk_codebuild::types::{Build, BuildPhase, BuildPhaseType, LogsLocation, PhaseContext, StatusType};
use aws_sdk_cloudwatchlogs::operation::get_log_events::GetLogEventsOutput;
use aws_sdk_cloudwatchlogs::types::OutputLogEvent;
use aws_sdk_ecr::operation::batch_get_image::BatchGetImageOutput;
use aws_sdk_ecs::operation::describe_services::DescribeServicesOutput;
use aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionOutput;
use aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput;
use aws_sdk_ecs::operation::list_tasks::ListTasksOutput;
use aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionOutput;
use aws_sdk_ecs::operation::tag_resource::TagResourceOutput;
use aws_sdk_ecs::operation::update_service::UpdateServiceOutput;
use aws_sdk_ecs::types::{
    Container, ContainerDefinition, Deployment, DeploymentRolloutState, KeyValuePair, Service, Task, TaskDefinition,
};
use aws_sdk_elasticloadbalancingv2::operation::describe_target_health::DescribeTargetHealthOutput;
use aws_sdk_elasticloadbalancingv2::types::{TargetDescription, TargetHealth, TargetHealthDescription, TargetHealthStateEnum};
use aws_sdk_s3::operation::put_object::PutObjectOutput;
use aws_smithy_mocks::{mock, MockResponseInterceptor, Rule, RuleMode};
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;
use deployer::aws::Clients;
use deployer::error::{exit, Error};
use deployer::manifest::Manifest;
use deployer::output::Progress;
use deployer::plan::{Cx, Mode, Timing};
use deployer::rollout::{self, Deployed, ImageChoice};
use support::{Stack, ACCOUNT, REGION};

/// A client of one service whose every call is answered by `rules`; a call no rule matches
/// panics, so unexpected calls fail the test.
macro_rules! scripted {
    ($krate:ident, $rules:expr) => {{
        let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
        for rule in $rules.iter() {
            interceptor = interceptor.with_rule(rule);
        }
        let config = $krate::Config::builder()
            .behavior_version_latest()
            .region($krate::config::Region::new(REGION))
            .credentials_provider($krate::config::Credentials::new("AKIDSCRIPTED", "scripted", None, None, "scripted"))
            .http_client(aws_smithy_mocks::create_mock_http_client())
            .interceptor(interceptor)
            .retry_config(
                $krate::config::retry::RetryConfig::standard()
                    .with_max_attempts(6)
                    .with_initial_backoff(Duration::from_millis(5)),
            )
            .build();
        $krate::Client::from_conf(config)
    }};
}

/// The rules of every service one scenario uses.
#[derive(Default)]
struct Rules {
    ecs: Vec<Rule>,
    elb: Vec<Rule>,
    ecr: Vec<Rule>,
    s3: Vec<Rule>,
    codebuild: Vec<Rule>,
    logs: Vec<Rule>,
}

impl Rules {
    fn clients(&self) -> Clients {
        let none: Vec<Rule> = Vec::new();
        Clients {
            acm: scripted!(aws_sdk_acm, none),
            codebuild: scripted!(aws_sdk_codebuild, self.codebuild),
            ec2: scripted!(aws_sdk_ec2, none),
            ecr: scripted!(aws_sdk_ecr, self.ecr),
            ecs: scripted!(aws_sdk_ecs, self.ecs),
            elb: scripted!(aws_sdk_elasticloadbalancingv2, self.elb),
            iam: scripted!(aws_sdk_iam, none),
            logs: scripted!(aws_sdk_cloudwatchlogs, self.logs),
            route53: scripted!(aws_sdk_route53, none),
            s3: scripted!(aws_sdk_s3, self.s3),
            secrets: scripted!(aws_sdk_secretsmanager, none),
            sts: scripted!(aws_sdk_sts, none),
        }
    }
}

/// What the new revision does once the service switches to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NewRevision {
    /// One poll in progress, then complete.
    Completes,
    /// One poll in progress, then the circuit breaker returns the service to the old revision.
    RolledBackByEcs,
    /// In progress for ever.
    NeverStable,
}

/// The scripted ECS service and the app's health, shared by the rules' closures.
struct World {
    old: String,
    new: String,
    running: String,
    polls_since_switch: usize,
    behaviour: NewRevision,
    /// `/health` of the new revision; the old one answers 200.
    new_health: u16,
    health: Arc<std::sync::atomic::AtomicU16>,
}

type Shared = Arc<Mutex<World>>;

struct Scenario {
    stack: Stack,
    world: Shared,
    rules: Rules,
    update_service: Rule,
    register: Rule,
    start_build: Rule,
    /// `TagResource`, which marks a revision whose rollout failed.
    tag_failed: Rule,
    /// The task ARNs `DescribeTasks` was asked for.
    described_tasks: Arc<Mutex<Vec<String>>>,
}

fn arn(stack: &Stack, revision: u32) -> String {
    format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{}:{revision}", stack.prefix())
}

impl Scenario {
    fn new(label: &str, behaviour: NewRevision) -> Self {
        let stack = Stack::new(label);
        let world = Arc::new(Mutex::new(World {
            old: arn(&stack, 1),
            new: arn(&stack, 2),
            running: arn(&stack, 1),
            polls_since_switch: 0,
            behaviour,
            new_health: 200,
            health: Arc::clone(&stack.health.status),
        }));
        let update_service = update_service_rule(&world);
        let register = register_rule(&world);
        let start_build = mock!(aws_sdk_codebuild::Client::start_build).then_output(|| {
            StartBuildOutput::builder().build_value(Build::builder().id("scripted:build-1").build()).build()
        });
        let tag_failed = mock!(aws_sdk_ecs::Client::tag_resource)
            .match_requests(|request| {
                request.tags().iter().any(|tag| tag.key() == Some("deployer:rollout") && tag.value() == Some("failed"))
            })
            .then_output(|| TagResourceOutput::builder().build());
        let rules = Rules {
            ecs: vec![
                describe_services_rule(&world),
                update_service.clone(),
                register.clone(),
                describe_task_definition_rule(),
                tag_failed.clone(),
            ],
            elb: vec![healthy_targets_rule()],
            s3: vec![mock!(aws_sdk_s3::Client::put_object).then_output(|| PutObjectOutput::builder().build())],
            ..Rules::default()
        };
        Scenario {
            stack,
            world,
            rules,
            update_service,
            register,
            start_build,
            tag_failed,
            described_tasks: Arc::default(),
        }
    }

    /// Tasks of the new revision stop with `reason`: one left from an earlier deployment when the
    /// watch starts, which must not count, then two more.
    fn with_stopped_tasks(mut self, reason: &'static str) -> Self {
        let lists = AtomicUsize::new(0);
        self.rules.ecs.push(mock!(aws_sdk_ecs::Client::list_tasks).then_compute_output(move |_| {
            let earlier = ListTasksOutput::builder().task_arns("arn:aws:ecs:task/t0");
            match lists.fetch_add(1, Ordering::SeqCst) {
                0 => earlier.build(),
                1 => earlier.task_arns("arn:aws:ecs:task/t1").build(),
                _ => earlier.task_arns("arn:aws:ecs:task/t1").task_arns("arn:aws:ecs:task/t2").build(),
            }
        }));
        let described = Arc::clone(&self.described_tasks);
        let world = Arc::clone(&self.world);
        self.rules.ecs.push(mock!(aws_sdk_ecs::Client::describe_tasks).then_compute_output(move |request| {
            described.lock().unwrap().extend(request.tasks().iter().cloned());
            let new = world.lock().unwrap().new.clone();
            let tasks = request.tasks().iter().map(|task| stopped_task(task, &new, reason)).collect();
            DescribeTasksOutput::builder().set_tasks(Some(tasks)).build()
        }));
        self
    }

    fn without_stopped_tasks(mut self) -> Self {
        self.rules
            .ecs
            .push(mock!(aws_sdk_ecs::Client::list_tasks).then_output(|| ListTasksOutput::builder().build()));
        self
    }

    /// Runs the rollout with short polls; the deployment bound stays the manifest's unless set.
    async fn run(&self, choice: ImageChoice, timeout: Option<Duration>) -> Result<Deployed, Error> {
        self.run_with(choice, |manifest| {
            if let Some(timeout) = timeout {
                manifest.deploy.timeout = timeout;
            }
        })
        .await
    }

    /// Runs the rollout with its live check aimed at `health_url` instead of the harness's app.
    async fn run_checking(&self, choice: ImageChoice, health_url: &str) -> Result<Deployed, Error> {
        self.run_with(choice, |manifest| manifest.deploy.health_url = Some(health_url.parse().unwrap()))
            .await
    }

    /// Runs the rollout on the stack's manifest after `edit`.
    async fn run_with(&self, choice: ImageChoice, edit: impl FnOnce(&mut Manifest)) -> Result<Deployed, Error> {
        let mut manifest = deployer::manifest::load(&self.stack.manifest_path()).unwrap();
        edit(&mut manifest);
        let mut cx = Cx::new(manifest, self.rules.clients(), ACCOUNT.to_owned(), Mode::Apply, Progress::new(true));
        cx.timing = Timing {
            build_poll: Duration::from_millis(10),
            service_poll: Duration::from_millis(10),
            live_attempts: 3,
            live_interval: Duration::from_millis(10),
            live_request_timeout: Duration::from_secs(2),
        };
        fill_outputs(&cx);
        rollout::apply(&cx, &choice).await
    }
}

fn image() -> ImageChoice {
    ImageChoice::Uri(format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/app@sha256:{}", "b".repeat(64)))
}

fn fill_outputs(cx: &Cx) {
    let mut outputs = cx.outputs();
    let role = |name: &str| format!("arn:aws:iam::{ACCOUNT}:role/{name}");
    outputs.private_subnet_ids = vec!["subnet-0a".into(), "subnet-0c".into()];
    outputs.task_security_group_id = Some("sg-0task".into());
    outputs.execution_role_arn = Some(role("execution"));
    outputs.task_role_arn = Some(role("task"));
    outputs.client_secret_arn = Some(format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:client-AbCdEf"));
    outputs.session_key_arn = Some(format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:session-AbCdEf"));
    outputs.target_group_arn =
        Some(format!("arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/app/0123456789abcdef"));
    outputs.repository_uri = Some(format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/app/e2e"));
    outputs.cluster_arn = Some(format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/app"));
}

fn deployment(status: &str, task_definition: &str, state: DeploymentRolloutState, running: i32) -> Deployment {
    Deployment::builder()
        .status(status)
        .task_definition(task_definition)
        .rollout_state(state)
        .rollout_state_reason("ECS deployment ecs-svc/1 in progress.")
        .running_count(running)
        .desired_count(1)
        .build()
}

fn service(task_definition: &str, deployments: Vec<Deployment>) -> Service {
    Service::builder()
        .service_name("app")
        .status("ACTIVE")
        .task_definition(task_definition)
        .desired_count(1)
        .running_count(1)
        .set_deployments(Some(deployments))
        .build()
}

/// One step of the scripted deployment for the revision the service runs now.
fn next_state(world: &mut World) -> Service {
    let stable = |arn: &str| service(arn, vec![deployment("PRIMARY", arn, DeploymentRolloutState::Completed, 1)]);
    if world.running == world.old {
        return stable(&world.old);
    }
    world.polls_since_switch += 1;
    let in_progress = service(
        &world.new,
        vec![
            deployment("PRIMARY", &world.new, DeploymentRolloutState::InProgress, 0),
            deployment("ACTIVE", &world.old, DeploymentRolloutState::Completed, 1),
        ],
    );
    match (world.behaviour, world.polls_since_switch) {
        (_, 1) | (NewRevision::NeverStable, _) => in_progress,
        (NewRevision::Completes, _) => stable(&world.new),
        (NewRevision::RolledBackByEcs, _) => {
            world.running = world.old.clone();
            world.health.store(200, Ordering::SeqCst);
            let failed = Deployment::builder()
                .status("ACTIVE")
                .task_definition(&world.new)
                .rollout_state(DeploymentRolloutState::Failed)
                .rollout_state_reason(
                    "ECS deployment circuit breaker: tasks failed to start. Rolling back to the previous deployment.",
                )
                .desired_count(0)
                .build();
            service(
                &world.old,
                vec![deployment("PRIMARY", &world.old, DeploymentRolloutState::InProgress, 0), failed],
            )
        }
    }
}

fn throttling() -> Response {
    let mut response = Response::new(
        StatusCode::try_from(400).unwrap(),
        SdkBody::from(r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#),
    );
    response.headers_mut().insert("content-type", "application/x-amz-json-1.1");
    response
}

fn describe_services_rule(world: &Shared) -> Rule {
    let world = Arc::clone(world);
    mock!(aws_sdk_ecs::Client::describe_services).then_compute_output(move |_| {
        let mut world = world.lock().unwrap();
        DescribeServicesOutput::builder().services(next_state(&mut world)).build()
    })
}

fn update_service_rule(world: &Shared) -> Rule {
    let world = Arc::clone(world);
    mock!(aws_sdk_ecs::Client::update_service).then_compute_output(move |request| {
        let mut world = world.lock().unwrap();
        world.running = request.task_definition().unwrap_or_default().to_owned();
        world.polls_since_switch = 0;
        let health = if world.running == world.new { world.new_health } else { 200 };
        world.health.store(health, Ordering::SeqCst);
        UpdateServiceOutput::builder().build()
    })
}

fn register_rule(world: &Shared) -> Rule {
    let world = Arc::clone(world);
    mock!(aws_sdk_ecs::Client::register_task_definition).then_compute_output(move |request| {
        let arn = world.lock().unwrap().new.clone();
        let definition = TaskDefinition::builder()
            .task_definition_arn(arn)
            .set_container_definitions(Some(request.container_definitions().to_vec()))
            .build();
        RegisterTaskDefinitionOutput::builder().task_definition(definition).build()
    })
}

/// The running revision 1: the deployer's container plus a variable someone else added.
fn describe_task_definition_rule() -> Rule {
    mock!(aws_sdk_ecs::Client::describe_task_definition).then_compute_output(|request| {
        let container = ContainerDefinition::builder()
            .name("app")
            .image("old-image")
            .environment(KeyValuePair::builder().name("APP_VERSION").value("v1").build())
            .environment(KeyValuePair::builder().name("TEAM_SETTING").value("kept").build())
            .build();
        let definition = TaskDefinition::builder()
            .task_definition_arn(request.task_definition().unwrap_or_default())
            .cpu("512")
            .memory("1024")
            .container_definitions(container)
            .build();
        DescribeTaskDefinitionOutput::builder().task_definition(definition).build()
    })
}

fn healthy_targets_rule() -> Rule {
    targets_rule(TargetHealthStateEnum::Healthy)
}

fn targets_rule(state: TargetHealthStateEnum) -> Rule {
    mock!(aws_sdk_elasticloadbalancingv2::Client::describe_target_health).then_output(move || {
        DescribeTargetHealthOutput::builder()
            .target_health_descriptions(
                TargetHealthDescription::builder()
                    .target(TargetDescription::builder().id("10.0.1.5").port(8000).build())
                    .target_health(TargetHealth::builder().state(state.clone()).build())
                    .build(),
            )
            .build()
    })
}

/// A loopback port that refuses connections, as an address outside a runner's reach does.
fn unreachable_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/health")
}

fn stopped_task(arn: &str, task_definition: &str, reason: &str) -> Task {
    Task::builder()
        .task_arn(arn)
        .task_definition_arn(task_definition)
        .last_status("STOPPED")
        .stopped_reason(reason)
        .containers(Container::builder().name("app").reason(reason).build())
        .build()
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    support::block_on(future)
}

#[test]
fn rollout_completes() {
    let scenario = Scenario::new("sdone", NewRevision::Completes).without_stopped_tasks();
    let deployed = block_on(scenario.run(image(), None)).unwrap();

    assert_eq!(deployed.task_definition, format!("{}:2", scenario.stack.prefix()));
    assert_eq!(scenario.register.num_calls(), 1);
    assert_eq!(scenario.update_service.num_calls(), 1);
    assert_eq!(scenario.tag_failed.num_calls(), 0);
    assert_eq!(scenario.world.lock().unwrap().running, arn(&scenario.stack, 2));
}

#[test]
fn new_revision_keeps_unmanaged_variables() {
    let scenario = Scenario::new("skeep", NewRevision::Completes).without_stopped_tasks();
    let register = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&register);
    let world = Arc::clone(&scenario.world);
    let mut scenario = scenario;
    scenario.rules.ecs[2] = mock!(aws_sdk_ecs::Client::register_task_definition).then_compute_output(move |request| {
        let names: Vec<String> = request.container_definitions()[0]
            .environment()
            .iter()
            .map(|pair| format!("{}={}", pair.name().unwrap_or_default(), pair.value().unwrap_or_default()))
            .collect();
        seen.lock().unwrap().extend(names);
        let definition = TaskDefinition::builder().task_definition_arn(world.lock().unwrap().new.clone()).build();
        RegisterTaskDefinitionOutput::builder().task_definition(definition).build()
    });
    block_on(scenario.run(image(), None)).unwrap();

    let variables = register.lock().unwrap().clone();
    assert!(variables.contains(&"TEAM_SETTING=kept".to_owned()), "{variables:?}");
    assert!(variables.iter().any(|v| v.starts_with("APP_VERSION=sha256:")), "{variables:?}");
}

#[test]
fn circuit_breaker_rollback_is_a_failed_deploy() {
    let scenario = Scenario::new("sbreak", NewRevision::RolledBackByEcs).without_stopped_tasks();
    let error = block_on(scenario.run(image(), None)).unwrap_err();

    assert_eq!(error.exit_code(), exit::ROLLED_BACK, "{error}");
    let text = error.to_string();
    assert!(text.contains("circuit breaker"), "{text}");
    assert!(text.contains(&format!("rolled back to `{}:1`", scenario.stack.prefix())), "{text}");
    // ECS already switched back, so the deployer makes no second update.
    assert_eq!(scenario.update_service.num_calls(), 1);
    assert_eq!(scenario.tag_failed.num_calls(), 1, "the failed revision was not marked");
}

#[test]
fn image_pull_errors_roll_back() {
    let reason = "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref: not found";
    let scenario = Scenario::new("spull", NewRevision::NeverStable).with_stopped_tasks(reason);
    let error = block_on(scenario.run(image(), None)).unwrap_err();

    assert_eq!(error.exit_code(), exit::ROLLED_BACK, "{error}");
    let text = error.to_string();
    assert!(text.contains("the image could not be pulled"), "{text}");
    assert!(text.contains("CannotPullContainerError"), "{text}");
    assert!(text.contains("2 tasks of"), "{text}");
    let described = scenario.described_tasks.lock().unwrap().clone();
    assert!(!described.contains(&"arn:aws:ecs:task/t0".to_owned()), "{described:?}");
    // The switch, then the rollback to revision 1.
    assert_eq!(scenario.update_service.num_calls(), 2);
    assert_eq!(scenario.world.lock().unwrap().running, arn(&scenario.stack, 1));
}

#[test]
fn never_stable_times_out_and_rolls_back() {
    let scenario = Scenario::new("sslow", NewRevision::NeverStable).without_stopped_tasks();
    let error = block_on(scenario.run(image(), Some(Duration::from_millis(300)))).unwrap_err();

    assert_eq!(error.exit_code(), exit::ROLLED_BACK, "{error}");
    let text = error.to_string();
    assert!(text.contains("did not finish the deployment"), "{text}");
    assert!(text.contains("IN_PROGRESS"), "{text}");
    assert_eq!(scenario.update_service.num_calls(), 2);
}

#[test]
fn failing_health_after_switch_rolls_back() {
    let scenario = Scenario::new("s503", NewRevision::Completes).without_stopped_tasks();
    scenario.world.lock().unwrap().new_health = 503;
    let error = block_on(scenario.run(image(), None)).unwrap_err();

    assert_eq!(error.exit_code(), exit::ROLLED_BACK, "{error}");
    let text = error.to_string();
    assert!(text.contains("step `health`"), "{text}");
    assert!(text.contains("HTTP 503"), "{text}");
    assert_eq!(scenario.update_service.num_calls(), 2);
    assert_eq!(scenario.tag_failed.num_calls(), 1, "the failed revision was not marked");
    assert_eq!(scenario.stack.health.status.load(Ordering::SeqCst), 200);
}

#[test]
fn failing_health_everywhere_is_not_rolled_back() {
    let scenario = Scenario::new("sdown", NewRevision::Completes).without_stopped_tasks();
    scenario.world.lock().unwrap().new_health = 503;
    // The old revision fails too once the rollback starts: nothing healthy is left.
    let health = Arc::clone(&scenario.stack.health.status);
    let mut scenario = scenario;
    let world = Arc::clone(&scenario.world);
    scenario.rules.ecs[1] = mock!(aws_sdk_ecs::Client::update_service).then_compute_output(move |request| {
        world.lock().unwrap().running = request.task_definition().unwrap_or_default().to_owned();
        health.store(503, Ordering::SeqCst);
        UpdateServiceOutput::builder().build()
    });
    let error = block_on(scenario.run(image(), None)).unwrap_err();

    assert_eq!(error.exit_code(), exit::NOT_ROLLED_BACK, "{error}");
    assert!(error.to_string().contains("the rollback did not restore a healthy version"), "{error}");
}

#[test]
fn throttling_during_the_wait_is_retried() {
    let mut scenario = Scenario::new("sthrottle", NewRevision::Completes).without_stopped_tasks();
    let (old, new) = (arn(&scenario.stack, 1), arn(&scenario.stack, 2));
    let stable = |arn: String| {
        move || {
            let primary = deployment("PRIMARY", &arn, DeploymentRolloutState::Completed, 1);
            DescribeServicesOutput::builder().services(service(&arn, vec![primary])).build()
        }
    };
    let in_progress = {
        let (old, new) = (old.clone(), new.clone());
        move || {
            let deployments = vec![
                deployment("PRIMARY", &new, DeploymentRolloutState::InProgress, 0),
                deployment("ACTIVE", &old, DeploymentRolloutState::Completed, 1),
            ];
            DescribeServicesOutput::builder().services(service(&new, deployments)).build()
        }
    };
    // Retries reach the rule without their input, so this one is a fixed sequence: the read
    // before the switch, two throttled tries of the first poll, its answer, then steady.
    let describe = mock!(aws_sdk_ecs::Client::describe_services)
        .sequence()
        .output(stable(old))
        .http_response(throttling)
        .times(2)
        .output(in_progress)
        .output(stable(new))
        .repeatedly()
        .build();
    scenario.rules.ecs[0] = describe.clone();
    let deployed = block_on(scenario.run(image(), None)).unwrap();

    assert_eq!(deployed.task_definition, format!("{}:2", scenario.stack.prefix()));
    assert_eq!(describe.num_calls(), 5);
    assert_eq!(scenario.update_service.num_calls(), 1);
}

/// A build that has its own log stream and ends in `status` with its `BUILD` phase in `status`.
fn build(status: StatusType, context: &str) -> Build {
    let logs = LogsLocation::builder().group_name("/codebuild/app/e2e").stream_name("build-1").build();
    let mut build = Build::builder().id("scripted:build-1").build_status(status.clone()).logs(logs);
    if status != StatusType::InProgress {
        build = build
            .phases(
                BuildPhase::builder()
                    .phase_type(BuildPhaseType::Submitted)
                    .phase_status(StatusType::Succeeded)
                    .build(),
            )
            .phases(
                BuildPhase::builder()
                    .phase_type(BuildPhaseType::Build)
                    .phase_status(status)
                    .contexts(PhaseContext::builder().status_code("COMMAND_EXECUTION_ERROR").message(context).build())
                    .build(),
            );
    }
    build.build()
}

/// Adds a build that runs once, then ends as `last`, with a log of three lines.
fn with_build(mut scenario: Scenario, last: Build) -> Scenario {
    scenario.rules.ecr = vec![mock!(aws_sdk_ecr::Client::batch_get_image).then_output(|| BatchGetImageOutput::builder().build())];
    let polls = Arc::new(AtomicUsize::new(0));
    scenario.rules.codebuild = vec![
        scenario.start_build.clone(),
        mock!(aws_sdk_codebuild::Client::batch_get_builds).then_compute_output(move |_| {
            let running = polls.fetch_add(1, Ordering::SeqCst) == 0;
            let build = if running { build(StatusType::InProgress, "") } else { last.clone() };
            BatchGetBuildsOutput::builder().builds(build).build()
        }),
    ];
    let reads = Arc::new(AtomicUsize::new(0));
    scenario.rules.logs = vec![mock!(aws_sdk_cloudwatchlogs::Client::get_log_events).then_compute_output(move |_| {
        if reads.fetch_add(1, Ordering::SeqCst) > 0 {
            return GetLogEventsOutput::builder().next_forward_token("f/3").build();
        }
        let event = |message: &str| OutputLogEvent::builder().message(message).build();
        GetLogEventsOutput::builder()
            .events(event("[Container] Running command cargo build --release"))
            .events(event("error[E0425]: cannot find value `sesion` in this scope"))
            .events(event("error: could not compile `app` (bin \"app\") due to 1 previous error"))
            .next_forward_token("f/3")
            .build()
    })];
    scenario
}

#[test]
fn failed_build_reports_phase_and_last_lines() {
    let failed = build(
        StatusType::Failed,
        "Error while executing command: cargo build --release. Reason: exit status 101",
    );
    let scenario = with_build(Scenario::new("sbuild", NewRevision::Completes), failed);
    let error = block_on(scenario.run(ImageChoice::Build, None)).unwrap_err();

    assert_eq!(error.exit_code(), exit::FAILED, "{error}");
    let text = error.to_string();
    assert!(text.contains("ended `FAILED` in phase `BUILD`"), "{text}");
    assert!(text.contains("exit status 101"), "{text}");
    assert!(text.contains("cannot find value `sesion`"), "{text}");
    assert_eq!(scenario.start_build.num_calls(), 1);
    assert_eq!(scenario.register.num_calls(), 0);
    assert_eq!(scenario.update_service.num_calls(), 0);
}

#[test]
fn timed_out_build_names_the_limit() {
    let timed_out = build(StatusType::TimedOut, "Build has timed out.");
    let scenario = with_build(Scenario::new("stimeout", NewRevision::Completes), timed_out);
    let error = block_on(scenario.run(ImageChoice::Build, None)).unwrap_err();

    assert_eq!(error.exit_code(), exit::FAILED, "{error}");
    let text = error.to_string();
    assert!(text.contains("ended `TIMED_OUT`"), "{text}");
    assert!(text.contains("build.timeout_minutes"), "{text}");
    assert!(text.contains("could not compile `app`"), "{text}");
    assert_eq!(scenario.register.num_calls(), 0);
    assert_eq!(scenario.update_service.num_calls(), 0);
}

#[test]
fn unreachable_url_falls_back_to_healthy_targets() {
    let scenario = Scenario::new("sfar", NewRevision::Completes).without_stopped_tasks();
    let url = unreachable_url();
    let deployed = block_on(scenario.run_checking(image(), &url)).unwrap();

    assert_eq!(deployed.task_definition, format!("{}:2", scenario.stack.prefix()));
    assert_eq!(scenario.update_service.num_calls(), 1);
}

#[test]
fn unreachable_url_with_unhealthy_targets_rolls_back() {
    let mut scenario = Scenario::new("sfarsick", NewRevision::Completes).without_stopped_tasks();
    scenario.rules.elb = vec![targets_rule(TargetHealthStateEnum::Unhealthy)];
    let url = unreachable_url();
    let error = block_on(scenario.run_checking(image(), &url)).unwrap_err();

    // The old revision's targets look unhealthy too, so the rollback cannot be verified.
    assert_eq!(error.exit_code(), exit::NOT_ROLLED_BACK, "{error}");
    let text = error.to_string();
    assert!(text.contains("could not be reached from here"), "{text}");
    assert!(text.contains("0 of 1 target(s) healthy"), "{text}");
    assert_eq!(scenario.update_service.num_calls(), 2);
}

#[test]
fn untrusted_certificate_fails_the_tls_step() {
    let scenario = Scenario::new("stls", NewRevision::Completes).without_stopped_tasks();
    let server = support::UntrustedTls::start();
    let error = block_on(scenario.run_checking(image(), &server.url)).unwrap_err();

    // The old revision answers through the same certificate, so the rollback is not verified.
    assert_eq!(error.exit_code(), exit::NOT_ROLLED_BACK, "{error}");
    let text = error.to_string();
    assert!(text.contains("step `tls`"), "{text}");
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains(&format!("`{}:1` failed in the same way", scenario.stack.prefix())), "{text}");
}

#[test]
fn unresolved_domain_falls_back_to_healthy_targets() {
    let scenario = Scenario::new("snodns", NewRevision::Completes).without_stopped_tasks();
    // The default live URL is `https://{domain}/health`, and `.test` names never resolve.
    let deployed = block_on(scenario.run_with(image(), |manifest| manifest.deploy.health_url = None)).unwrap();

    assert_eq!(deployed.task_definition, format!("{}:2", scenario.stack.prefix()));
}
