//! Validation of the raw manifest into the types of `model.rs`: the whole manifest, and the
//! tables too small for a module of their own.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use url::Url;

use super::check::Checker;
use super::model::*;
use super::raw::{RawApp, RawAws, RawBuild, RawDeploy, RawLogs, RawManifest, RawService};
use super::{databricks, defaults, https, network};

/// Load balancer names are limited to 32 characters, and the deployer appends `-alb`.
const MAX_PREFIX_LEN: usize = 28;

/// Retention periods in days that CloudWatch Logs accepts (`PutRetentionPolicy`).
const RETENTION_DAYS: [i32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
];

/// CodeBuild compute types for Linux containers.
const COMPUTE_TYPES: [&str; 5] = [
    "BUILD_GENERAL1_SMALL",
    "BUILD_GENERAL1_MEDIUM",
    "BUILD_GENERAL1_LARGE",
    "BUILD_GENERAL1_XLARGE",
    "BUILD_GENERAL1_2XLARGE",
];

/// AWS allows 50 tags per resource. The deployer adds its own `deployer:*` tags, so 10 are kept
/// free for them.
const MAX_USER_TAGS: usize = 40;

/// Validates every table, reporting all problems to `cx`. Returns `None` when any table is invalid.
pub(super) fn manifest(raw: RawManifest, base_dir: PathBuf, cx: &mut Checker) -> Option<Manifest> {
    let app = app(cx, raw.app);
    let aws = aws(cx, raw.aws);
    let region = aws.as_ref().map(|aws| aws.region.clone());
    let account_id = aws.as_ref().and_then(|aws| aws.account_id.clone());

    let network = network::network(cx, raw.network, region.as_deref());
    let service = service(cx, raw.service);
    let https = https::https(cx, raw.https, region.as_deref(), account_id.as_deref());
    let databricks = databricks::databricks(cx, raw.databricks);
    let build = build(cx, raw.build, &base_dir);
    let logs = logs(cx, raw.logs);
    let deploy = deploy(cx, raw.deploy);
    let tags = tags(cx, raw.tags);

    Some(Manifest {
        base_dir,
        app: app?,
        aws: aws?,
        network: network?,
        service: service?,
        https: https?,
        databricks: databricks?,
        build: build?,
        logs: logs?,
        deploy: deploy?,
        tags: tags?,
    })
}

fn app(cx: &mut Checker, raw: Option<RawApp>) -> Option<AppConfig> {
    let Some(raw) = raw else {
        cx.missing_table("app", "`name` and `stage`");
        return None;
    };

    let name = cx.required("app", "name", raw.name, "name = \"my-app\"");
    let stage = cx.required("app", "stage", raw.stage, "stage = \"prod\"");
    let name_span = name.as_ref().map(Spanned::span);
    let name = name.and_then(|name| dns_name(cx, "app.name", &name));
    let stage = stage.and_then(|stage| dns_name(cx, "app.stage", &stage));
    let (name, stage) = (name?, stage?);

    let prefix = format!("{name}-{stage}");
    let span = name_span.unwrap_or(0..0);
    if prefix.len() > MAX_PREFIX_LEN {
        cx.report(
            "app.name",
            &span,
            format!(
                "`{prefix}` is {} characters long, more than the maximum of {MAX_PREFIX_LEN}",
                prefix.len()
            ),
            "shorten `app.name` or `app.stage`: load balancer names are limited to 32 characters and the deployer appends `-alb`".into(),
        );
        return None;
    }
    if prefix.starts_with("internal-") {
        cx.report(
            "app.name",
            &span,
            format!("`{prefix}` starts with `internal-`, which load balancer names must not"),
            "choose another `app.name`".into(),
        );
        return None;
    }

    Some(AppConfig { name, stage })
}

/// Checks a lower-case DNS-style name: letters, digits and single inner hyphens. ECR rejects
/// repository names with two separators in a row, so `my--app` is invalid too.
fn dns_name(cx: &mut Checker, key: &str, value: &Spanned<String>) -> Option<Name> {
    let text = value.get_ref();
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let valid = !text.is_empty()
        && text.chars().all(allowed)
        && !text.starts_with('-')
        && !text.ends_with('-')
        && !text.contains("--");
    if valid {
        return Some(Name(text.clone()));
    }

    let suggestion: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| if allowed(c) { c } else { '-' })
        .collect();
    let mut suggestion = suggestion.trim_matches('-').to_owned();
    while suggestion.contains("--") {
        suggestion = suggestion.replace("--", "-");
    }
    let hint = if suggestion.is_empty() {
        "use lower-case letters, digits and hyphens inside, such as `my-app`".to_owned()
    } else {
        format!("write `{suggestion}`: names take lower-case letters, digits and hyphens inside")
    };
    cx.report(
        key,
        &value.span(),
        format!("invalid name `{}`: only lower-case letters, digits and single inner hyphens are allowed", text.escape_debug()),
        hint,
    );
    None
}

fn aws(cx: &mut Checker, raw: Option<RawAws>) -> Option<AwsConfig> {
    let Some(raw) = raw else {
        cx.missing_table("aws", "`region`");
        return None;
    };

    let region = cx.required("aws", "region", raw.region, "region = \"ap-northeast-1\"");
    let region = region.and_then(|region| aws_region(cx, &region));
    let account_id = match raw.account_id {
        Some(account_id) => Some(aws_account_id(cx, "aws.account_id", &account_id)?),
        None => None,
    };

    Some(AwsConfig {
        region: region?,
        account_id,
    })
}

fn aws_region(cx: &mut Checker, value: &Spanned<String>) -> Option<String> {
    let region = value.get_ref();
    if is_region(region) {
        return Some(region.clone());
    }

    let zone_letter_removed = region.trim_end_matches(|c: char| c.is_ascii_lowercase());
    let hint = if zone_letter_removed != region && is_region(zone_letter_removed) {
        format!("`{region}` is an availability zone, so write its region `{zone_letter_removed}`")
    } else {
        "write a region code such as `ap-northeast-1` or `us-east-1`".to_owned()
    };
    cx.report(
        "aws.region",
        &value.span(),
        format!("invalid region `{region}`"),
        hint,
    );
    None
}

/// Returns whether `text` has the shape of a region code, such as `ap-northeast-1` or `us-gov-west-1`.
pub(super) fn is_region(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let [country, middle @ .., number] = parts.as_slice() else {
        return false;
    };
    let letters = |part: &&str| !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase());
    country.len() == 2
        && letters(country)
        && !middle.is_empty()
        && middle.iter().all(letters)
        && (1..=2).contains(&number.len())
        && number.chars().all(|c| c.is_ascii_digit())
}

pub(super) fn aws_account_id(cx: &mut Checker, key: &str, value: &Spanned<String>) -> Option<String> {
    let account_id = value.get_ref();
    if is_account_id(account_id) {
        return Some(account_id.clone());
    }

    let digits: String = account_id.chars().filter(|c| c.is_ascii_digit()).collect();
    let hint = if is_account_id(&digits) {
        format!("write the digits only: `{digits}`")
    } else {
        "write the 12-digit AWS account id as a string, such as `\"123456789012\"`".to_owned()
    };
    cx.report(key, &value.span(), format!("invalid AWS account id `{account_id}`: expected 12 digits"), hint);
    None
}

pub(super) fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.chars().all(|c| c.is_ascii_digit())
}

fn service(cx: &mut Checker, raw: RawService) -> Option<ServiceConfig> {
    let cpu = fargate_cpu(cx, raw.cpu.as_ref());
    let memory = match &raw.memory {
        Some(memory) => cx
            .integer_in("service.memory", memory, 1..=i64::from(u32::MAX), "set the memory in MiB, such as `512`")
            .map(|memory| memory as u32),
        None => Some(defaults::MEMORY),
    };
    let pair_is_valid = match (cpu, memory) {
        (Some(cpu), Some(memory)) => fargate_memory(cx, &raw, cpu, memory),
        _ => false,
    };

    let desired_count = match &raw.desired_count {
        Some(count) => cx
            .integer_in("service.desired_count", count, 0..=100, "set a task count from 0 to 100 (0 stops the service)")
            .map(|count| count as u32),
        None => Some(defaults::DESIRED_COUNT),
    };
    let port = match &raw.port {
        Some(port) => cx
            .integer_in(
                "service.port",
                port,
                1024..=65535,
                "use a port from 1024 to 65535, such as `8080`: the container runs as a non-root user, which cannot listen on ports below 1024",
            )
            .map(|port| port as u16),
        None => Some(defaults::PORT),
    };
    let health_check_path = match raw.health_check_path {
        Some(path) => url_path(cx, "service.health_check_path", &path, "/health"),
        None => Some(defaults::HEALTH_CHECK_PATH.to_owned()),
    };

    if !pair_is_valid {
        return None;
    }
    Some(ServiceConfig {
        cpu: cpu?,
        memory: memory?,
        desired_count: desired_count?,
        port: port?,
        health_check_path: health_check_path?,
    })
}

/// CPU units that Fargate accepts, where 1024 units are one vCPU.
const FARGATE_CPUS: [u32; 7] = [256, 512, 1024, 2048, 4096, 8192, 16384];

/// Returns the memory sizes in MiB that Fargate accepts for `cpu` units (AWS ECS developer
/// guide, "Task CPU and memory" for Linux containers).
fn fargate_memory_options(cpu: u32) -> Vec<u32> {
    let (first, last, step) = match cpu {
        256 => return vec![512, 1024, 2048],
        512 => (1024, 4096, 1024),
        1024 => (2048, 8192, 1024),
        2048 => (4096, 16384, 1024),
        4096 => (8192, 30720, 1024),
        8192 => (16384, 61440, 4096),
        16384 => (32768, 122880, 8192),
        _ => return Vec::new(),
    };
    (first..=last).step_by(step).collect()
}

fn fargate_cpu(cx: &mut Checker, value: Option<&Spanned<i64>>) -> Option<u32> {
    let Some(value) = value else {
        return Some(defaults::CPU);
    };
    let cpu = *value.get_ref();
    if let Some(&cpu) = FARGATE_CPUS.iter().find(|&&known| i64::from(known) == cpu) {
        return Some(cpu);
    }

    cx.report(
        "service.cpu",
        &value.span(),
        format!("`{cpu}` is not a Fargate CPU size"),
        format!("use one of {} CPU units (1024 units are one vCPU)", join_numbers(&FARGATE_CPUS)),
    );
    None
}

/// Returns whether Fargate accepts the pair, and reports it if not.
fn fargate_memory(cx: &mut Checker, raw: &RawService, cpu: u32, memory: u32) -> bool {
    let options = fargate_memory_options(cpu);
    if options.contains(&memory) {
        return true;
    }

    // With the default memory the mismatch comes from `cpu`, so point there.
    let (key, span) = match (&raw.memory, &raw.cpu) {
        (Some(value), _) => ("service.memory", value.span()),
        (None, Some(value)) => ("service.cpu", value.span()),
        (None, None) => ("service.memory", 0..0),
    };
    let other_cpus: Vec<u32> = FARGATE_CPUS
        .into_iter()
        .filter(|&other| fargate_memory_options(other).contains(&memory))
        .collect();
    let mut hint = format!("with `cpu = {cpu}` use a memory size of {} MiB", join_numbers(&options));
    if !other_cpus.is_empty() {
        hint.push_str(&format!(", or keep `memory = {memory}` and set `cpu` to {}", join_numbers(&other_cpus)));
    }

    cx.report(
        key,
        &span,
        format!("`memory = {memory}` is not valid with `cpu = {cpu}` on Fargate"),
        hint,
    );
    false
}

/// Joins numbers as `a, b or c`.
fn join_numbers(numbers: &[u32]) -> String {
    let texts: Vec<String> = numbers.iter().map(u32::to_string).collect();
    match texts.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => texts.join(""),
    }
}

/// Checks an absolute URL path without query or fragment, such as `/health`.
pub(super) fn url_path(cx: &mut Checker, key: &str, value: &Spanned<String>, example: &str) -> Option<String> {
    let path = value.get_ref();
    let problem = if !path.starts_with('/') {
        Some(format!("path `{path}` does not start with `/`"))
    } else if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some(format!("path `{path}` contains whitespace"))
    } else if path.contains(['?', '#']) {
        Some(format!("path `{path}` contains a query or fragment"))
    } else if path.len() > 1024 {
        Some(format!("path is {} characters long, more than the maximum of 1024", path.len()))
    } else {
        None
    };

    let Some(message) = problem else {
        return Some(path.clone());
    };
    cx.report(key, &value.span(), message, format!("write an absolute path such as `{example}`"));
    None
}

fn build(cx: &mut Checker, raw: RawBuild, base_dir: &Path) -> Option<BuildConfig> {
    let source_dir = match &raw.source_dir {
        Some(dir) if dir.get_ref().trim().is_empty() => {
            cx.report(
                "build.source_dir",
                &dir.span(),
                "`source_dir` is empty".into(),
                "write the app's folder relative to the manifest's folder, such as `..`".into(),
            );
            None
        }
        Some(dir) => Some(base_dir.join(dir.get_ref())),
        None => Some(base_dir.join(defaults::SOURCE_DIR)),
    };
    let dockerfile = match &raw.dockerfile {
        Some(path) => dockerfile(cx, path),
        None => Some(PathBuf::from(defaults::DOCKERFILE)),
    };
    let compute_type = match &raw.compute_type {
        Some(value) => compute_type(cx, value),
        None => Some(defaults::COMPUTE_TYPE.to_owned()),
    };
    let image = match raw.image {
        Some(image) if image.get_ref().is_empty() || image.get_ref().contains(char::is_whitespace) => {
            cx.report(
                "build.image",
                &image.span(),
                format!("invalid build image `{}`", image.get_ref()),
                format!("write a CodeBuild image name without spaces, such as `{}`", defaults::BUILD_IMAGE),
            );
            None
        }
        Some(image) => Some(image.into_inner()),
        None => Some(defaults::BUILD_IMAGE.to_owned()),
    };
    let timeout_minutes = match &raw.timeout_minutes {
        Some(minutes) => cx
            .integer_in("build.timeout_minutes", minutes, 5..=480, "set a build timeout from 5 to 480 minutes, the range CodeBuild accepts")
            .map(|minutes| minutes as u32),
        None => Some(defaults::BUILD_TIMEOUT_MINUTES),
    };

    Some(BuildConfig {
        source_dir: source_dir?,
        dockerfile: dockerfile?,
        compute_type: compute_type?,
        image: image?,
        timeout_minutes: timeout_minutes?,
    })
}

fn dockerfile(cx: &mut Checker, value: &Spanned<String>) -> Option<PathBuf> {
    let text = value.get_ref();
    let path = Path::new(text);
    let inside = !text.is_empty() && path.components().all(|component| matches!(component, Component::Normal(_) | Component::CurDir));
    if inside {
        return Some(path.to_path_buf());
    }

    cx.report(
        "build.dockerfile",
        &value.span(),
        format!("Dockerfile path `{text}` is not inside `source_dir`"),
        format!(
            "write a path inside `build.source_dir` without `..`, such as `{}`, because only `source_dir` is uploaded to the build",
            defaults::DOCKERFILE
        ),
    );
    None
}

fn compute_type(cx: &mut Checker, value: &Spanned<String>) -> Option<String> {
    let text = value.get_ref();
    if COMPUTE_TYPES.contains(&text.as_str()) {
        return Some(text.clone());
    }

    let upper = text.to_ascii_uppercase();
    let hint = match COMPUTE_TYPES.iter().find(|known| **known == upper || known.ends_with(&format!("_{upper}"))) {
        Some(known) => format!("write `{known}`"),
        None => format!("use one of {}", quoted(&COMPUTE_TYPES)),
    };
    cx.report("build.compute_type", &value.span(), format!("unknown CodeBuild compute type `{text}`"), hint);
    None
}

fn logs(cx: &mut Checker, raw: RawLogs) -> Option<LogsConfig> {
    let Some(value) = raw.retention_days else {
        return Some(LogsConfig {
            retention_days: defaults::LOG_RETENTION_DAYS,
        });
    };
    let days = *value.get_ref();
    if let Some(&days) = RETENTION_DAYS.iter().find(|&&known| i64::from(known) == days) {
        return Some(LogsConfig { retention_days: days });
    }

    let numbers: Vec<String> = RETENTION_DAYS.iter().map(i32::to_string).collect();
    cx.report(
        "logs.retention_days",
        &value.span(),
        format!("`{days}` is not a retention period CloudWatch Logs accepts"),
        format!("use one of {} days", numbers.join(", ")),
    );
    None
}

fn deploy(cx: &mut Checker, raw: RawDeploy) -> Option<DeployConfig> {
    let timeout = match &raw.timeout {
        Some(value) => deploy_timeout(cx, value),
        None => humantime::parse_duration(defaults::DEPLOY_TIMEOUT).ok(),
    };
    let health_url = match &raw.health_url {
        Some(value) => Some(health_url(cx, value)?),
        None => None,
    };

    Some(DeployConfig {
        timeout: timeout?,
        health_url,
    })
}

fn deploy_timeout(cx: &mut Checker, value: &Spanned<String>) -> Option<Duration> {
    const MIN: Duration = Duration::from_secs(60);
    const MAX: Duration = Duration::from_secs(3 * 60 * 60);

    let text = value.get_ref();
    let message = match humantime::parse_duration(text) {
        Ok(timeout) if (MIN..=MAX).contains(&timeout) => return Some(timeout),
        Ok(_) => format!("timeout `{text}` is outside the allowed range 1m to 3h"),
        Err(error) => format!("invalid duration `{text}`: {error}"),
    };
    cx.report(
        "deploy.timeout",
        &value.span(),
        message,
        "write a duration from `1m` to `3h`, such as `15m` or `1h 30m`".into(),
    );
    None
}

fn health_url(cx: &mut Checker, value: &Spanned<String>) -> Option<Url> {
    let text = value.get_ref();
    let message = match Url::parse(text) {
        Ok(url) if !url.username().is_empty() || url.password().is_some() => {
            // The URL is printed in progress lines, so credentials in it would leak.
            format!("health URL `{}://...@{}` contains a user name or password", url.scheme(), url.host_str().unwrap_or(""))
        }
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => return Some(url),
        Ok(url) => format!("health URL `{text}` has the scheme `{}`, but only `http` and `https` are supported", url.scheme()),
        Err(error) => format!("invalid health URL `{text}`: {error}"),
    };
    cx.report(
        "deploy.health_url",
        &value.span(),
        message,
        "write a full URL that the deployer can reach, such as `http://127.0.0.1:8080/health`".into(),
    );
    None
}

fn tags(cx: &mut Checker, raw: BTreeMap<Spanned<String>, Spanned<String>>) -> Option<BTreeMap<String, String>> {
    if raw.len() > MAX_USER_TAGS {
        let span = cx.table_span("tags");
        cx.report(
            "tags",
            &span,
            format!("{} tags is more than the maximum of {MAX_USER_TAGS}", raw.len()),
            format!("remove tags until at most {MAX_USER_TAGS} are left, because AWS allows 50 per resource and the deployer adds its own"),
        );
        return None;
    }

    let mut tags = BTreeMap::new();
    let mut valid = true;
    for (key, value) in raw {
        let path = super::keys::join_key("tags", key.get_ref());
        valid &= tag_key(cx, &path, &key);
        valid &= tag_value(cx, &path, &value);
        tags.insert(key.into_inner(), value.into_inner());
    }
    valid.then_some(tags)
}

/// Returns whether every character is one that AWS allows in tags: letters, digits, spaces
/// and `_ . : / = + - @`.
fn is_tag_text(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
}

fn tag_key(cx: &mut Checker, path: &str, key: &Spanned<String>) -> bool {
    let text = key.get_ref();
    let length = text.chars().count();
    let lower = text.to_lowercase();
    let (message, hint) = if !(1..=128).contains(&length) {
        (
            format!("tag key is {length} characters long, but AWS allows 1 to 128"),
            "shorten the tag key".to_owned(),
        )
    } else if lower.starts_with("aws:") || lower.starts_with("deployer:") {
        (
            format!("tag key `{text}` uses a reserved prefix"),
            "rename the tag: `aws:` is reserved by AWS and `deployer:` by the deployer".to_owned(),
        )
    } else if text == "Name" {
        (
            "tag key `Name` is set by the deployer".to_owned(),
            "remove it: the deployer names each resource itself and finds it again by that name".to_owned(),
        )
    } else if !is_tag_text(text) {
        (
            format!("tag key `{}` contains a character AWS does not allow", text.escape_debug()),
            "use letters, digits, spaces and `_ . : / = + - @`".to_owned(),
        )
    } else {
        return true;
    };
    cx.report(path, &key.span(), message, hint);
    false
}

fn tag_value(cx: &mut Checker, path: &str, value: &Spanned<String>) -> bool {
    let text = value.get_ref();
    let length = text.chars().count();
    let (message, hint) = if length > 256 {
        (
            format!("tag value is {length} characters long, more than the maximum of 256"),
            "shorten the tag value".to_owned(),
        )
    } else if !is_tag_text(text) {
        (
            format!("tag value `{}` contains a character AWS does not allow", text.escape_debug()),
            "use letters, digits, spaces and `_ . : / = + - @`".to_owned(),
        )
    } else {
        return true;
    };
    cx.report(path, &value.span(), message, hint);
    false
}

/// Quotes each value in backticks and joins them with commas.
pub(super) fn quoted(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|value| format!("`{value}`")).collect();
    quoted.join(", ")
}
