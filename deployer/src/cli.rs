//! The command line: parses arguments, runs one command and maps its outcome to an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::manifest::{self, Manifest, SecretRef};
use crate::output::{print_json, print_line, Format, Progress};
use crate::plan::{self, Change, Cx, Mode, Operation, Summary};
use crate::resources::Kind;
use crate::rollout::{self, ImageChoice};
use crate::secret::SecretString;

#[derive(Debug, Parser)]
#[command(name = "deployer", version, about = "Deploy the Databricks OIDC web app to AWS ECS Fargate from a TOML manifest")]
pub struct Cli {
    /// Output format: `text` for people, `json` for one result object on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub output: Format,

    /// Show debug logs on stderr (`RUST_LOG` overrides this).
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// Write progress on stderr as JSON objects, one per line, for CI logs that parse it.
    #[arg(long, global = true)]
    pub events: bool,

    #[command(flatten)]
    pub manifest: ManifestArg,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a manifest and report every problem with its line and column.
    Validate,
    /// Show what `up` would create, update, replace or delete.
    Plan(DeployArgs),
    /// Create or converge the whole stack, then build and roll out the app and check `/health`.
    Up(DeployArgs),
    /// Build and roll out a new version of the app without changing the rest of the stack.
    Update(DeployArgs),
    /// Return the service to the previous task definition revision, or to `--to REVISION`.
    Rollback(RollbackArgs),
    /// Print the app's log from CloudWatch Logs, or the build's with `--build`.
    Logs(LogsArgs),
    /// Delete everything `up` created for this app and stage.
    Destroy(DestroyArgs),
    /// Show the source bundle `up` would upload: its image tag, hash and files.
    Bundle,
    /// Show the running version: task definition, image, task counts and deployments.
    Status,
}

#[derive(Debug, Args)]
pub struct ManifestArg {
    /// Path of the manifest; before or after the command.
    #[arg(short, long, global = true, env = "DEPLOYER_MANIFEST", default_value = "deployer.toml")]
    pub manifest: PathBuf,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Run this image (`REPOSITORY[:TAG|@DIGEST]`) instead of building the app source.
    #[arg(long, value_name = "URI")]
    pub image: Option<String>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The revision to run: `12`, `family:12` or a task definition ARN.
    #[arg(long, value_name = "REVISION", allow_hyphen_values = true)]
    pub to: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// How far back to read, such as `30s`, `10m`, `2h` or `1d` (at most 30 days).
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    pub since: String,

    /// Keep printing new events until interrupted.
    #[arg(short, long)]
    pub follow: bool,

    /// Only events that contain this text, matched literally.
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,

    /// Read the CodeBuild log instead of the app's.
    #[arg(long)]
    pub build: bool,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Confirm the deletion; without it `destroy` deletes nothing and exits with code 2.
    #[arg(long)]
    pub yes: bool,
}

/// The result object printed with `--output json`.
#[derive(Debug, Serialize)]
struct Report<'a> {
    command: &'a str,
    status: &'a str,
    changes: &'a [Change],
    summary: Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    /// The version and revision that run after `up`, `update` or `rollback`.
    #[serde(skip_serializing_if = "Option::is_none")]
    deployed: Option<&'a rollout::Deployed>,
    /// Resources that differ from the manifest and that `update` left as they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    drift: Option<usize>,
    phases: Vec<crate::output::Phase>,
    elapsed_seconds: f64,
}

/// Parses the arguments, runs the command and returns its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return command_line_error(&error),
    };
    init_logging(cli.verbose);

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::from(crate::error::exit::FAILED);
        }
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(run(&cli))));
    let error = match outcome {
        Ok(Ok(())) => return ExitCode::SUCCESS,
        Ok(Err(error)) => error,
        // The panic message is already on stderr.
        Err(_) => Error::Internal("the deployer panicked".into()),
    };
    report_error(&cli, &error);
    ExitCode::from(error.exit_code())
}

/// Prints clap's message (help and version go to stdout with exit 0), and for `--output json`
/// also the JSON error object, since CI parses stdout even when the command line is wrong.
fn command_line_error(error: &clap::Error) -> ExitCode {
    let _ = error.print();
    if !error.use_stderr() {
        return ExitCode::SUCCESS;
    }
    let args: Vec<String> = std::env::args().collect();
    let wants_json = args.iter().any(|arg| arg == "--output=json")
        || args.windows(2).any(|pair| pair[0] == "--output" && pair[1] == "json");
    if wants_json {
        // The rendered error's first line names the argument, as stderr shows it.
        let rendered = error.render().to_string();
        let first = rendered.lines().next().unwrap_or_default().trim_start_matches("error: ").trim();
        let message = if first.is_empty() { "invalid command line".to_owned() } else { first.to_owned() };
        print_json(&serde_json::json!({
            "status": "error",
            "error": format!("invalid command line: {message}; see `deployer --help`"),
            "exit_code": crate::error::exit::INPUT,
        }));
    }
    ExitCode::from(crate::error::exit::INPUT)
}

fn init_logging(verbose: bool) {
    let default = if verbose { "deployer=debug,info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(crate::output::color_enabled())
        .try_init();
}

/// Prints `error:` with the cause chain and a hint, as people and CI logs read it.
fn report_error(cli: &Cli, error: &Error) {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    if let Some(hint) = error.hint() {
        text.push_str(&format!("\n  hint: {hint}"));
    }
    eprintln!("error: {text}");
    if cli.output == Format::Json {
        print_json(&serde_json::json!({
            "command": cli.command.name(),
            "status": "error",
            "error": text,
            "exit_code": error.exit_code(),
        }));
    }
}

impl Command {
    /// Returns the subcommand's name, as typed.
    fn name(&self) -> &'static str {
        match self {
            Command::Validate => "validate",
            Command::Plan(_) => "plan",
            Command::Up(_) => "up",
            Command::Update(_) => "update",
            Command::Rollback(_) => "rollback",
            Command::Logs(_) => "logs",
            Command::Destroy(_) => "destroy",
            Command::Bundle => "bundle",
            Command::Status => "status",
        }
    }
}

async fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Validate => validate(cli),
        Command::Plan(args) => plan_command(cli, args).await,
        Command::Up(args) => up(cli, args).await,
        Command::Update(args) => update(cli, args).await,
        Command::Rollback(args) => rollback(cli, args).await,
        Command::Logs(args) => logs(cli, args).await,
        Command::Destroy(args) => destroy(cli, args).await,
        Command::Bundle => bundle(cli),
        Command::Status => status(cli).await,
    }
}

fn validate(cli: &Cli) -> Result<()> {
    let args = &cli.manifest;
    let manifest = manifest::load(&args.manifest)?;
    rollout::bundle::check_source(&manifest.build.source_dir, &manifest.build.dockerfile)?;
    match cli.output {
        Format::Json => print_json(&serde_json::json!({
            "command": "validate",
            "status": "ok",
            "app": manifest.app.name.as_str(),
            "stage": manifest.app.stage.as_str(),
        })),
        Format::Text => print_line(&format!("`{}` is valid", args.manifest.display())),
    }
    Ok(())
}

async fn status(cli: &Cli) -> Result<()> {
    let args = &cli.manifest;
    let cx = context(cli, &args.manifest, Mode::Plan).await?;
    let status = rollout::status::read(&cx).await?;
    match cli.output {
        Format::Json => print_json(&serde_json::json!({ "command": "status", "status": "ok", "service": status })),
        Format::Text => print_status(&status),
    }
    Ok(())
}

fn print_status(status: &rollout::status::Status) {
    if !status.exists {
        print_line(&format!("service `{}` does not exist yet; run `deployer up`", status.service));
        return;
    }
    print_line(&format!("service:          {}", status.service));
    print_line(&format!("version:          {}", status.version.as_deref().unwrap_or("-")));
    print_line(&format!("task definition:  {}", status.task_definition.as_deref().unwrap_or("-")));
    print_line(&format!("image:            {}", status.image.as_deref().unwrap_or("-")));
    print_line(&format!("tasks:            {} running, {} pending, {} desired", status.running, status.pending, status.desired));
    for deployment in &status.deployments {
        print_line(&format!(
            "deployment:       {} {} ({}), {}/{} running",
            deployment.status,
            deployment.task_definition,
            deployment.rollout_state.as_deref().unwrap_or("no rollout state"),
            deployment.running,
            deployment.desired
        ));
    }
    if let Some(targets) = status.targets.as_deref().filter(|targets| !targets.is_empty()) {
        print_line(&format!("targets:          {targets}"));
    }
    print_line(&format!("url:              {}", status.url));
    if let Some(last) = &status.last_deploy {
        print_line(&format!(
            "last deploy:      {} {} at {}{}",
            last.command,
            match last.result.as_str() {
                "rolled_back" => "failed and was rolled back",
                "not_rolled_back" => "failed and was not rolled back",
                "interrupted" => "was interrupted",
                other => other,
            },
            last.finished_at,
            last.reason.as_deref().map(|reason| format!(": {reason}")).unwrap_or_default()
        ));
    }
}

fn bundle(cli: &Cli) -> Result<()> {
    let args = &cli.manifest;
    let manifest = manifest::load(&args.manifest)?;
    let bundle = rollout::bundle::create(&manifest.build.source_dir, &manifest.build.dockerfile)?;
    match cli.output {
        Format::Json => print_json(&serde_json::json!({
            "command": "bundle",
            "status": "ok",
            "image_tag": bundle.image_tag(),
            "sha256": bundle.sha256,
            "bytes": bundle.bytes.len(),
            "files": bundle.files,
        })),
        Format::Text => {
            for file in &bundle.files {
                eprintln!("  {file}");
            }
            eprintln!("{} files, {} bytes, sha256 `{}`", bundle.files.len(), bundle.bytes.len(), bundle.sha256);
            print_line(&bundle.image_tag());
        }
    }
    Ok(())
}

/// Loads the manifest, the AWS configuration and the caller's account into a context.
async fn context(cli: &Cli, path: &std::path::Path, mode: Mode) -> Result<Cx> {
    let manifest = manifest::load(path)?;
    let client_secret = read_client_secret(&manifest, matches!(cli.command, Command::Up(_)))?;
    let config = crate::aws::load_config(&manifest.aws.region).await;
    let clients = crate::aws::Clients::new(&config);
    let account_id = caller_account(&clients).await?;
    if let Some(expected) = &manifest.aws.account_id {
        if *expected != account_id {
            return Err(Error::Input(format!(
                "the AWS credentials belong to account `{account_id}`, but `aws.account_id` is `{expected}`; switch credentials or fix the manifest"
            )));
        }
    }

    let progress = Progress::new(false).with_json_events(cli.events);
    progress.say(format!(
        "{} `{}` in account `{account_id}`, region `{}`",
        match mode {
            Mode::Plan => "reading",
            Mode::Apply => "applying",
        },
        manifest.app.name.as_str().to_owned() + "/" + manifest.app.stage.as_str(),
        manifest.aws.region
    ));
    let mut cx = Cx::new(manifest, clients, account_id, mode, progress);
    cx.client_secret = client_secret;
    Ok(cx)
}

/// Reads the client secret from the variable the manifest names. Only `up` stores it, so only
/// `up` requires it; the other commands compare it when it is set.
fn read_client_secret(manifest: &Manifest, required: bool) -> Result<Option<SecretString>> {
    let SecretRef::Env(variable) = &manifest.databricks.client_secret else {
        return Ok(None);
    };
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => Ok(Some(SecretString::new(value))),
        _ if !required => Ok(None),
        _ => Err(Error::Input(format!(
            "environment variable `{variable}` named by `databricks.client_secret` is not set or empty; export it with the OAuth app's client secret"
        ))),
    }
}

async fn caller_account(clients: &crate::aws::Clients) -> Result<String> {
    let identity = clients
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| Error::aws("check the AWS credentials with", "sts:GetCallerIdentity", e))?;
    identity
        .account()
        .map(str::to_owned)
        .ok_or_else(|| Error::Failed("STS returned no account id for the credentials".into()))
}

/// Checks `--image` and returns what to run. ECS takes up to 255 characters of
/// `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]` with no scheme.
/// Reads `--image`. Without it the command bundles `build.source_dir`, which is checked here so
/// that a wrong path fails before the first AWS call.
fn image_choice(cli: &Cli, args: &DeployArgs) -> Result<ImageChoice> {
    let Some(uri) = &args.image else {
        let manifest = manifest::load(&cli.manifest.manifest)?;
        rollout::bundle::check_source(&manifest.build.source_dir, &manifest.build.dockerfile)?;
        return Ok(ImageChoice::Build);
    };
    if let Err(problem) = rollout::reference::parse(uri) {
        return Err(Error::Input(format!(
            "invalid `--image` `{}`: {problem}; write `REPOSITORY[:TAG]` or `REPOSITORY@sha256:DIGEST`, such as `123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/app@sha256:...`, without `https://`",
            uri.escape_debug()
        )));
    }
    Ok(ImageChoice::Uri(uri.clone()))
}

async fn plan_command(cli: &Cli, args: &DeployArgs) -> Result<()> {
    let image = image_choice(cli, args)?;
    let cx = context(cli, &cli.manifest.manifest, Mode::Plan).await?;
    let mut changes = plan::run(&cx, Kind::ALL, Operation::Converge).await?;
    changes.extend(rollout::plan(&cx, &image).await?);
    finish(cli, &cx, "plan", &changes, Ending::default());
    Ok(())
}

async fn up(cli: &Cli, args: &DeployArgs) -> Result<()> {
    let image = image_choice(cli, args)?;
    let cx = context(cli, &cli.manifest.manifest, Mode::Apply).await?;
    cx.progress.phase("stack");
    let mut changes = plan::run(&cx, Kind::ALL, Operation::Converge).await?;
    let deployed = recorded(&cx, "up", until_interrupted(&cx, rollout::apply(&cx, &image)).await).await?;
    changes.extend(deployed.changes.iter().cloned());
    remind_dns(&cx);
    finish(cli, &cx, "up", &changes, Ending::deployed(&cx, &deployed));
    Ok(())
}

/// Rolls out a new version on the stack `up` made, which it reads but never changes.
async fn update(cli: &Cli, args: &DeployArgs) -> Result<()> {
    let image = image_choice(cli, args)?;
    let mut cx = context(cli, &cli.manifest.manifest, Mode::Plan).await?;
    cx.progress.phase("stack");
    let drift = plan::run(&cx, Kind::ALL, Operation::Converge).await?;
    require_stack(&cx, &drift)?;
    if rollout::service::find(&cx).await?.is_none() {
        return Err(Error::Input(format!(
            "{} `{}` does not exist yet; run `deployer up` first",
            rollout::service::SERVICE,
            cx.names.service()
        )));
    }
    cx.mode = Mode::Apply;
    let deployed = recorded(&cx, "update", until_interrupted(&cx, rollout::apply(&cx, &image)).await).await?;
    let ending = Ending {
        drift: drift.len(),
        ..Ending::deployed(&cx, &deployed)
    };
    finish(cli, &cx, "update", &deployed.changes, ending);
    Ok(())
}

async fn rollback(cli: &Cli, args: &RollbackArgs) -> Result<()> {
    // A malformed `--to` fails before the first AWS call.
    if let Some(to) = &args.to {
        let manifest = manifest::load(&cli.manifest.manifest)?;
        let family = crate::names::Names::new(&manifest).task_family();
        rollout::task_definition::parse_rollback_target(&family, &manifest.aws.region, to)?;
    }
    let mut cx = context(cli, &cli.manifest.manifest, Mode::Plan).await?;
    // The live check's fallback reads the target group, which the stack pass finds.
    cx.progress.phase("stack");
    plan::run(&cx, Kind::ALL, Operation::Converge).await?;
    cx.mode = Mode::Apply;
    let rolled = until_interrupted(&cx, rollout::rollback(&cx, args.to.as_deref())).await;
    let deployed = recorded(&cx, "rollback", rolled).await?;
    finish(cli, &cx, "rollback", &deployed.changes, Ending::deployed(&cx, &deployed));
    Ok(())
}

/// The interval at which `logs --follow` requests new events.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_secs(2);

async fn logs(cli: &Cli, args: &LogsArgs) -> Result<()> {
    if let Some(filter) = &args.filter {
        crate::logs::filter_pattern(filter)?;
    }
    let query = crate::logs::Query {
        since: crate::logs::parse_since(&args.since)?,
        follow: args.follow,
        filter: args.filter.clone(),
        build: args.build,
    };
    let cx = context(cli, &cli.manifest.manifest, Mode::Plan).await?;
    // Following ends on SIGINT or SIGTERM with exit code 0, or once the reader of stdout has gone,
    // as after `| head -1`.
    let stop = async {
        let reader_gone = async {
            while !crate::output::stdout_closed() {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        };
        tokio::select! {
            _ = interrupt() => {}
            () = reader_gone => {}
        }
    };
    // Following never ends by itself, so JSON goes out one event per line as it arrives.
    let stream_json = cli.output == Format::Json && args.follow;
    let mut collected = Vec::new();
    let mut printed = 0usize;
    crate::logs::read(&cx, &query, FOLLOW_POLL, stop, |event| {
        printed += 1;
        match cli.output {
            Format::Text => {
                print_line(&format!("{} {} {}", event.time, event.stream, printable(event.message.trim_end())))
            }
            Format::Json if stream_json => print_line(&serde_json::to_string(event).unwrap_or_default()),
            Format::Json => collected.push(event.clone()),
        }
    })
    .await?;
    if printed == 0 && cli.output == Format::Text && !args.follow {
        match &args.filter {
            Some(filter) => eprintln!("no log events matching `{filter}` in the last {}", args.since),
            None => eprintln!("no log events in the last {}", args.since),
        }
    }
    if cli.output == Format::Json && !stream_json {
        print_json(&serde_json::json!({ "command": "logs", "status": "ok", "events": collected }));
    }
    Ok(())
}

/// Escapes control characters other than tabs and line breaks in a log message, so that a message
/// cannot move the cursor or change colours in the reader's terminal.
fn printable(message: &str) -> String {
    message
        .chars()
        .map(|c| match c {
            '\t' | '\n' => c.to_string(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

fn app_url(cx: &Cx) -> String {
    format!("https://{}", cx.manifest.https.domain)
}

/// `update` changes only the app, so every resource the rollout uses must exist already.
fn require_stack(cx: &Cx, drift: &[Change]) -> Result<()> {
    let missing: Vec<String> = drift
        .iter()
        .filter(|change| change.action == plan::Action::Create)
        .map(|change| format!("{} `{}`", change.kind, change.name))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Input(format!(
            "the stack of `{}` is not complete ({} missing: {}); run `deployer up` first",
            cx.names.prefix,
            missing.len(),
            missing.join(", ")
        )));
    }
    if !drift.is_empty() {
        cx.progress.say(format!(
            "{} resource(s) differ from the manifest; `update` leaves them as they are, `deployer plan` shows them and `deployer up` converges them",
            drift.len()
        ));
    }
    Ok(())
}

/// Runs the rollout until it ends or SIGINT or SIGTERM arrives, as when a CI job is cancelled.
/// There is no time for a rollback then, so the error reports what runs and what to do.
async fn until_interrupted<T>(cx: &Cx, rollout: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::select! {
        result = rollout => result,
        signal = interrupt() => {
            let state = match cx.outputs().switch.clone() {
                None => "the service's revision did not change; a build that started goes on and pushes its image".to_owned(),
                Some(crate::plan::Switch { to, from, rolling_back: true }) => format!(
                    "`{}` failed, and ECS was switching the service back to `{to}`, which was not verified. Run `deployer status`, then `deployer rollback --to {to}` if the service does not run `{to}` healthily",
                    from.as_deref().unwrap_or("the new revision")
                ),
                Some(crate::plan::Switch { to, from: Some(from), .. }) => format!(
                    "ECS was switching the service to `{to}`, which was not verified; `{from}` ran before. Run `deployer status`, then `deployer rollback --to {from}` if `{to}` is not healthy"
                ),
                Some(crate::plan::Switch { to, from: None, .. }) => format!(
                    "ECS was starting the service's first revision `{to}`, which was not verified; run `deployer status`"
                ),
            };
            Err(Error::Interrupted { signal, state })
        }
    }
}

/// Resolves with the name of the first SIGINT or SIGTERM. A handler that cannot be installed
/// never resolves, so that it cannot end a rollout by itself.
async fn interrupt() -> &'static str {
    async fn ctrl_c() {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            return tokio::select! {
                () = ctrl_c() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            };
        }
    }
    ctrl_c().await;
    "SIGINT"
}

/// Stores the rollout's result for `status`, then passes it on. Invalid input deployed nothing,
/// so it leaves the last real deploy on record.
async fn recorded(cx: &Cx, command: &str, result: Result<rollout::Deployed>) -> Result<rollout::Deployed> {
    if result.as_ref().is_err_and(|error| error.exit_code() == crate::error::exit::INPUT) {
        return result;
    }
    let mut last = rollout::history::LastDeploy::new(
        command,
        match &result {
            Ok(_) => "succeeded",
            Err(Error::RolledBack { .. }) => "rolled_back",
            Err(Error::NotRolledBack { .. }) => "not_rolled_back",
            Err(Error::Interrupted { .. }) => "interrupted",
            Err(_) => "failed",
        },
    );
    match &result {
        Ok(deployed) => {
            last.version = Some(deployed.version.clone());
            last.task_definition = Some(deployed.task_definition.clone());
        }
        Err(error) => last.reason = Some(crate::error::cause_chain(error)),
    }
    rollout::history::record(cx, &last).await;
    result
}

async fn destroy(cli: &Cli, args: &DestroyArgs) -> Result<()> {
    if !args.yes {
        let manifest = manifest::load(&cli.manifest.manifest)?;
        return Err(Error::Input(format!(
            "`destroy` deletes every resource of `{}-{}`; rerun with `--yes` to confirm",
            manifest.app.name, manifest.app.stage
        )));
    }
    let cx = context(cli, &cli.manifest.manifest, Mode::Apply).await?;
    let mut changes = rollout::service::destroy(&cx).await?;
    changes.extend(plan::run(&cx, Kind::ALL, Operation::Destroy).await?);
    finish(cli, &cx, "destroy", &changes, Ending::default());
    Ok(())
}

/// Without a hosted zone nobody points the domain at the load balancer, so say what to add.
fn remind_dns(cx: &Cx) {
    let zone = match &cx.manifest.https.certificate {
        manifest::CertificateSource::Managed { hosted_zone_id } => hosted_zone_id.as_deref(),
        manifest::CertificateSource::Existing { .. } => None,
    };
    let dns_name = cx.outputs().load_balancer_dns.clone();
    if let (None, Some(dns_name)) = (zone, dns_name) {
        cx.progress.say(format!(
            "point `{}` at the load balancer `{dns_name}` with a CNAME or alias record in your DNS",
            cx.manifest.https.domain
        ));
    }
}

/// Prints the changes and their summary for people (stderr) or machines (stdout).
/// The summary a command prints after its changes.
#[derive(Debug, Default)]
struct Ending<'a> {
    url: Option<String>,
    deployed: Option<&'a rollout::Deployed>,
    /// Resources that differ from the manifest and that `update` left as they are.
    drift: usize,
}

impl<'a> Ending<'a> {
    fn deployed(cx: &Cx, deployed: &'a rollout::Deployed) -> Self {
        Ending {
            url: Some(app_url(cx)),
            deployed: Some(deployed),
            drift: 0,
        }
    }
}

fn finish(cli: &Cli, cx: &Cx, command: &str, changes: &[Change], ending: Ending<'_>) {
    let Ending { url, deployed, drift } = ending;
    let summary = Summary::of(changes);
    let phases = cx.progress.phases();
    match cli.output {
        Format::Json => print_json(&Report {
            command,
            status: "ok",
            changes,
            summary,
            url,
            deployed,
            drift: (drift > 0).then_some(drift),
            phases,
            elapsed_seconds: (cx.progress.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        }),
        Format::Text => {
            for change in changes {
                print_line(&change.to_string());
            }
            match (command, summary.is_empty()) {
                ("plan", true) => print_line("no changes: the stack matches the manifest"),
                ("plan", false) => print_line(&format!("plan: {summary}")),
                (_, true) if drift > 0 => print_line(&format!(
                    "{command}: no changes to the app; {drift} resource(s) differ from the manifest, see `deployer plan`"
                )),
                (_, true) => print_line(&format!("{command}: no changes, everything is up to date")),
                (_, false) => print_line(&format!("{command}: {summary} (done)")),
            }
            if let Some(deployed) = deployed {
                print_line(&format!("version: {} ({})", deployed.version, deployed.task_definition));
            }
            if let Some(url) = url {
                print_line(&format!("app: {url}"));
            }
            if !phases.is_empty() {
                print_line(&format!("time: {}", crate::output::phase_summary(&phases)));
            }
        }
    }
}
