//! The end-to-end harness: one moto server per test binary, a unique app per test, the built
//! `deployer` binary run as a user runs it, and the parts moto cannot play (a finished
//! CodeBuild build that pushed an image, a running app answering `/health`).

#![allow(dead_code)]

#[path = "../../../tests/harness/ready_line.rs"]
mod ready_line;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::TaskDefinitionStatus;
use ready_line::read_ready_line;

pub const REGION: &str = "ap-northeast-1";
pub const ACCOUNT: &str = "123456789012";
pub const CLIENT_SECRET: &str = "e2e-client-secret-value-7f3a";

/// The repository root, from the deployer crate's folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn moto_server_path() -> PathBuf {
    let path = std::env::var_os("DEPLOYER_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/moto_server"));
    assert!(
        path.exists(),
        "moto server `{}` not found; run `scripts/setup.sh` or set DEPLOYER_MOTO_SERVER",
        path.display()
    );
    path
}

/// The Python of the emulator's virtualenv, which has boto3 for the fake CodeBuild.
/// An HTTPS server on 127.0.0.1 whose self-signed certificate no client trusts; it ends when the
/// value is dropped.
pub struct UntrustedTls {
    pub url: String,
    child: Child,
}

impl UntrustedTls {
    pub fn start() -> Self {
        let mut child = Command::new(python_path())
            .arg(repo_root().join("tests/emulator/untrusted_tls.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start untrusted_tls.py");
        let port = read_ready_line(&mut child, Duration::from_secs(30)).unwrap_or_else(|e| {
            let _ = child.kill();
            let _ = child.wait();
            panic!("untrusted_tls.py did not start: {e}")
        });
        UntrustedTls {
            url: format!("https://127.0.0.1:{port}/health"),
            child,
        }
    }
}

impl Drop for UntrustedTls {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python_path() -> PathBuf {
    moto_server_path().parent().unwrap().join("python")
}

/// Waits up to `limit` for `child` to exit. Returns false, after killing it, when it still runs.
pub fn wait_within(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// The shared moto server of this test binary: its endpoint URL.
pub fn moto() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(start_moto)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts moto under a small shell that stops it when this test process exits, because Rust
/// runs no destructor for a static.
fn start_moto() -> String {
    let port = free_port();
    let log = std::env::temp_dir().join(format!("deployer-e2e-moto-{port}.log"));
    let script = format!(
        "'{server}' -H 127.0.0.1 -p {port} >'{log}' 2>&1 & moto=$!; \
         while kill -0 {parent} 2>/dev/null && kill -0 $moto 2>/dev/null; do sleep 0.5; done; kill $moto 2>/dev/null",
        server = moto_server_path().display(),
        log = log.display(),
        parent = std::process::id(),
    );
    // The shell exits once this process is gone, so nothing needs to wait for it.
    #[allow(clippy::zombie_processes)]
    let _watchdog = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("MOTO_ACM_VALIDATION_WAIT", "0")
        .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        .env("MOTO_ECS_SERVICE_RUNNING", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto");

    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return format!("http://127.0.0.1:{port}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    panic!("moto did not start on port {port} within 60 s; its log:\n{text}");
}

/// A unique lower-case app name for one test.
pub fn unique_app(label: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{label}{}{n}", std::process::id() % 10_000)
}

/// A tiny HTTP server standing in for the app, which the emulator cannot run: `/login` answers
/// as the app's sign-in route does, with a redirect to the workspace's authorize endpoint, and
/// every other path answers `status`.
pub struct HealthServer {
    pub url: String,
    /// The status `/health` returns. A test may change it while the server runs.
    pub status: Arc<AtomicU16>,
}

impl HealthServer {
    pub fn start(status: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(status));
        let shared = Arc::clone(&status);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                answer(stream, shared.load(Ordering::SeqCst));
            }
        });
        HealthServer {
            url: format!("http://{addr}/health"),
            status,
        }
    }
}

/// The redirect of the app's `/login` for the manifests these tests write.
const LOGIN_REDIRECT: &str = "https://adb-1234567890123456.7.azuredatabricks.net/oidc/v1/authorize\
    ?response_type=code&client_id=e2e-client&redirect_uri=http%3A%2F%2F127.0.0.1%2Foauth%2Fcallback\
    &scope=openid+all-apis+offline_access&state=state-0123456789abcdef&nonce=nonce-0123456789abcdef\
    &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256";

fn answer(mut stream: TcpStream, status: u16) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buffer = [0u8; 2048];
    let read = stream.read(&mut buffer).unwrap_or(0);
    let request = String::from_utf8_lossy(&buffer[..read]);
    if request.starts_with("GET /login ") {
        let _ = write!(
            stream,
            "HTTP/1.1 303 See Other\r\nlocation: {LOGIN_REDIRECT}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        return;
    }
    let body = if status == 200 { "{\"status\":\"ok\"}" } else { "{\"status\":\"failing\"}" };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// One test's app: a manifest in a temporary folder, with its own small app source.
pub struct Stack {
    pub app: String,
    pub stage: String,
    pub dir: tempfile::TempDir,
    pub health: HealthServer,
    pub extra_env: Vec<(String, String)>,
}

impl Stack {
    pub fn new(label: &str) -> Self {
        Self::with_health(label, 200)
    }

    pub fn with_health(label: &str, status: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        std::fs::create_dir_all(source.join("app/src")).unwrap();
        std::fs::write(source.join("Cargo.toml"), "[workspace]\nmembers = [\"app\"]\n").unwrap();
        std::fs::write(source.join("app/src/main.rs"), "fn main() {}\n").unwrap();
        std::fs::create_dir_all(source.join("templates")).unwrap();
        std::fs::write(source.join("templates/Dockerfile"), "FROM scratch\n").unwrap();

        let stack = Stack {
            app: unique_app(label),
            stage: "e2e".into(),
            dir,
            health: HealthServer::start(status),
            extra_env: Vec::new(),
        };
        stack.write_manifest("");
        stack
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.dir.path().join("deployer.toml")
    }

    pub fn prefix(&self) -> String {
        format!("{}-{}", self.app, self.stage)
    }

    pub fn bucket(&self) -> String {
        format!("{}-{ACCOUNT}-{REGION}", self.prefix())
    }

    pub fn repository(&self) -> String {
        format!("{}/{}", self.app, self.stage)
    }

    /// Writes the manifest; `extra` is TOML appended at the end (whole tables).
    pub fn write_manifest(&self, extra: &str) {
        self.write_manifest_with(r#"allowed_cidrs = ["203.0.113.0/24"]"#, 1, extra);
    }

    pub fn write_manifest_with(&self, network_line: &str, desired_count: u32, extra: &str) {
        let text = format!(
            r#"[app]
name = "{app}"
stage = "{stage}"

[aws]
region = "{REGION}"

[network]
{network_line}

[service]
desired_count = {desired_count}

[databricks]
host = "https://adb-1234567890123456.7.azuredatabricks.net"
client_id = "e2e-client"
client_secret = {{ env = "DATABRICKS_CLIENT_SECRET" }}

[build]
source_dir = "source"

[deploy]
timeout = "1m"
health_url = "{health}"
{extra}"#,
            app = self.app,
            stage = self.stage,
            health = self.health.url,
        );
        let with_https = if extra.contains("[https]") {
            text
        } else {
            format!("{text}\n[https]\ndomain = \"{}.example.test\"\n", self.app)
        };
        std::fs::write(self.manifest_path(), with_https).unwrap();
    }

    /// The source bundle's image tag, as `deployer bundle` prints it.
    pub fn image_tag(&self) -> String {
        let output = self.command(&["bundle"]).output().unwrap();
        assert!(output.status.success(), "bundle failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// The deployer with this stack's manifest and the emulator's environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_deployer"));
        command
            .args(args)
            .arg("--manifest")
            .arg(self.manifest_path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("AWS_ENDPOINT_URL", moto())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("DATABRICKS_CLIENT_SECRET", CLIENT_SECRET)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        for (key, value) in &self.extra_env {
            command.env(key, value);
        }
        command
    }

    /// Runs a command to the end with a stdout whose reader has already gone, as after
    /// `| head -1`. A command still running after `limit` is killed, and the test fails.
    pub fn run_with_closed_stdout(&self, args: &[&str], limit: Duration) -> Run {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut child = self
            .command(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if !wait_within(&mut child, limit) {
            let output = child.wait_with_output().unwrap();
            panic!(
                "`deployer {}` did not end within {limit:?} after its reader closed stdout: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Run::from(child.wait_with_output().unwrap())
    }

    /// Runs a command to the end.
    pub fn run(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().unwrap();
        Run::from(output)
    }

    /// Runs `up`, playing CodeBuild's part in the background.
    pub fn up(&self) -> Run {
        self.run_with_builder(&["up", "--output", "json"])
    }

    /// Runs a command while playing CodeBuild's part in the background.
    pub fn run_with_builder(&self, args: &[&str]) -> Run {
        let builder = self.fake_codebuild();
        let run = self.run(args);
        stop(builder);
        run
    }

    /// Starts the fake CodeBuild: once the bundle is uploaded, it pushes the image for it.
    pub fn fake_codebuild(&self) -> Child {
        Command::new(python_path())
            .arg(repo_root().join("tests/emulator/fake_codebuild.py"))
            .args(["--endpoint", moto(), "--region", REGION, "--bucket", &self.bucket()])
            .args(["--repository", &self.repository(), "--tag", &self.image_tag(), "--timeout", "90"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fake_codebuild.py")
    }

    /// Runs `up` and kills it after `lines` progress lines on stderr; returns what it printed.
    pub fn up_killed_after(&self, lines: usize) -> String {
        let builder = self.fake_codebuild();
        let mut child = self
            .command(&["up"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut printed = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok).take(lines) {
            printed.push_str(&line);
            printed.push('\n');
        }
        let _ = child.kill();
        let _ = child.wait();
        stop(builder);
        printed
    }
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The outcome of one deployer run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Panics with the whole output unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit code\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\n--- stderr\n{}", self.stdout, self.stderr))
    }

    /// `(kind, name, action)` of every change in the JSON result.
    pub fn changes(&self) -> Vec<(String, String, String)> {
        self.json()["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|change| {
                (
                    change["kind"].as_str().unwrap().to_owned(),
                    change["name"].as_str().unwrap().to_owned(),
                    change["action"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// SDK clients aimed at the emulator, for checks the deployer's output cannot show.
pub async fn clients() -> deployer::aws::Clients {
    let credentials = aws_sdk_sts::config::Credentials::new("testing", "testing", None, None, "e2e");
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(moto())
        .credentials_provider(credentials)
        .http_client(deployer::aws::http_client())
        .load()
        .await;
    deployer::aws::Clients::new(&config)
}

/// Runs an async check on a fresh runtime.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Every resource of `stack` that still exists, as `kind name` lines, found the way a person
/// would look for them: by the ownership tags and the derived names.
pub async fn remaining(stack: &Stack) -> Vec<String> {
    let aws = clients().await;
    let filters = || {
        vec![
            aws_sdk_ec2::types::Filter::builder().name("tag:deployer:app").values(&stack.app).build(),
            aws_sdk_ec2::types::Filter::builder().name("tag:deployer:stage").values(&stack.stage).build(),
        ]
    };
    let prefix = stack.prefix();
    let mut found = Vec::new();
    // moto 5.2.5 ignores tag filters on some EC2 describe calls, so the tags are checked here too.
    let ours = |tags: &[aws_sdk_ec2::types::Tag]| {
        tags.iter().any(|t| t.key() == Some("deployer:app") && t.value() == Some(stack.app.as_str()))
            && tags.iter().any(|t| t.key() == Some("deployer:stage") && t.value() == Some(stack.stage.as_str()))
    };

    let vpcs = aws.ec2.describe_vpcs().set_filters(Some(filters())).send().await.unwrap();
    found.extend(vpcs.vpcs().iter().filter(|x| ours(x.tags())).map(|vpc| format!("vpc {}", vpc.vpc_id().unwrap())));
    let subnets = aws.ec2.describe_subnets().set_filters(Some(filters())).send().await.unwrap();
    found.extend(subnets.subnets().iter().filter(|x| ours(x.tags())).map(|s| format!("subnet {}", s.subnet_id().unwrap())));
    let groups = aws.ec2.describe_security_groups().set_filters(Some(filters())).send().await.unwrap();
    found.extend(groups.security_groups().iter().filter(|x| ours(x.tags())).map(|g| format!("security-group {}", g.group_id().unwrap())));
    let gateways = aws.ec2.describe_internet_gateways().set_filters(Some(filters())).send().await.unwrap();
    found.extend(gateways.internet_gateways().iter().filter(|x| ours(x.tags())).map(|g| format!("internet-gateway {}", g.internet_gateway_id().unwrap())));
    let tables = aws.ec2.describe_route_tables().set_filters(Some(filters())).send().await.unwrap();
    found.extend(tables.route_tables().iter().filter(|x| ours(x.tags())).map(|t| format!("route-table {}", t.route_table_id().unwrap())));
    let addresses = aws.ec2.describe_addresses().set_filters(Some(filters())).send().await.unwrap();
    found.extend(addresses.addresses().iter().filter(|x| ours(x.tags())).map(|a| format!("elastic-ip {}", a.allocation_id().unwrap())));
    let nats = aws.ec2.describe_nat_gateways().set_filter(Some(filters())).send().await.unwrap();
    found.extend(
        nats.nat_gateways()
            .iter()
            .filter(|n| ours(n.tags()) && n.state() != Some(&aws_sdk_ec2::types::NatGatewayState::Deleted))
            .map(|n| format!("nat-gateway {}", n.nat_gateway_id().unwrap())),
    );

    let groups = aws.logs.describe_log_groups().send().await.unwrap();
    found.extend(
        groups
            .log_groups()
            .iter()
            .filter_map(|g| g.log_group_name())
            .filter(|name| name.contains(&format!("/{}/{}", stack.app, stack.stage)))
            .map(|name| format!("log-group {name}")),
    );
    let secrets = aws.secrets.list_secrets().send().await.unwrap();
    found.extend(
        secrets
            .secret_list()
            .iter()
            .filter_map(|s| s.name())
            .filter(|name| name.starts_with(&format!("{}/{}/", stack.app, stack.stage)))
            .map(|name| format!("secret {name}")),
    );
    if aws.ecr.describe_repositories().repository_names(stack.repository()).send().await.is_ok() {
        found.push(format!("repository {}", stack.repository()));
    }
    if aws.s3.head_bucket().bucket(stack.bucket()).send().await.is_ok() {
        found.push(format!("bucket {}", stack.bucket()));
    }
    for role in ["task-execution", "task", "codebuild"] {
        let name = format!("{prefix}-{role}");
        if aws.iam.get_role().role_name(&name).send().await.is_ok() {
            found.push(format!("role {name}"));
        }
    }
    let projects = aws.codebuild.batch_get_projects().names(&prefix).send().await.unwrap();
    found.extend(projects.projects().iter().map(|p| format!("codebuild-project {}", p.name().unwrap())));
    let certificates = aws.acm.list_certificates().send().await.unwrap();
    for summary in certificates.certificate_summary_list() {
        let arn = summary.certificate_arn().unwrap();
        let tags = aws.acm.list_tags_for_certificate().certificate_arn(arn).send().await.unwrap();
        if tags.tags().iter().any(|t| t.key() == "deployer:app" && t.value() == Some(stack.app.as_str())) {
            found.push(format!("certificate {arn}"));
        }
    }
    if aws.elb.describe_load_balancers().names(format!("{prefix}-alb")).send().await.is_ok() {
        found.push(format!("load-balancer {prefix}-alb"));
    }
    if aws.elb.describe_target_groups().names(format!("{prefix}-tg")).send().await.is_ok() {
        found.push(format!("target-group {prefix}-tg"));
    }
    let clusters = aws.ecs.describe_clusters().clusters(&prefix).send().await.unwrap();
    found.extend(
        clusters
            .clusters()
            .iter()
            .filter(|c| c.status() == Some("ACTIVE"))
            .map(|c| format!("cluster {}", c.cluster_name().unwrap())),
    );
    // Deregistered revisions count too: they keep their tags until they are deleted.
    for status in [TaskDefinitionStatus::Active, TaskDefinitionStatus::Inactive] {
        let definitions = aws.ecs.list_task_definitions().family_prefix(&prefix).status(status).send().await.unwrap();
        found.extend(definitions.task_definition_arns().iter().map(|arn| format!("task-definition {arn}")));
    }
    found
}

/// How many resources of each EC2 kind `stack` has, to catch duplicates after an interrupted run.
pub async fn ec2_counts(stack: &Stack) -> [usize; 5] {
    let lines = remaining(stack).await;
    let count = |kind: &str| lines.iter().filter(|line| line.starts_with(&format!("{kind} "))).count();
    [count("vpc"), count("subnet"), count("security-group"), count("internet-gateway"), count("route-table")]
}
