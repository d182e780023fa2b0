use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::Ipv4Net;

use super::*;

/// A valid manifest with only the required keys. The bad cases below change one line of it,
/// so their line numbers refer to this layout.
const MINIMAL: &str = r#"[app]
name = "demo"
stage = "test"

[aws]
region = "ap-northeast-1"

[network]
allowed_cidrs = ["203.0.113.0/24"]

[https]
domain = "app.example.com"

[databricks]
host = "https://adb-1234567890123456.7.azuredatabricks.net"
client_id = "client"
client_secret = { env = "DATABRICKS_CLIENT_SECRET" }
"#;

/// Line of the first line of a table appended with `append`.
const APPENDED: usize = 19;

fn parse_test(text: &str) -> Result<Manifest, ManifestError> {
    parse(text, Path::new("manifests/test.toml"))
}

fn problems_of(text: &str) -> Vec<Problem> {
    match parse_test(text) {
        Ok(_) => panic!("expected problems, the manifest parsed:\n{text}"),
        Err(error) => error.problems,
    }
}

/// Returns `MINIMAL` with one line replaced by `new` (which may span several lines).
fn replace(old: &str, new: &str) -> String {
    assert!(MINIMAL.contains(old), "`{old}` is not in MINIMAL");
    MINIMAL.replacen(old, new, 1)
}

/// Returns `MINIMAL` followed by a blank line and `tables`, whose first line is line `APPENDED`.
fn append(tables: &str) -> String {
    format!("{MINIMAL}\n{tables}")
}

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests").join(name)
}

fn managed(manifest: &Manifest) -> &ManagedNetwork {
    match &manifest.network.layout {
        NetworkLayout::Managed(network) => network,
        NetworkLayout::Existing(network) => panic!("expected a managed network, got {network:?}"),
    }
}

fn v4(text: &str) -> Ipv4Net {
    text.parse().unwrap()
}

#[test]
fn example_manifest_parses() {
    let manifest = load(&shipped("example.toml")).unwrap_or_else(|error| panic!("{error}"));

    assert_eq!(manifest.app.name.as_str(), "databricks-oauth-app");
    assert_eq!(manifest.app.stage.as_str(), "prod");
    assert_eq!(manifest.aws.region, "ap-northeast-1");
    let network = managed(&manifest);
    assert_eq!(network.vpc_cidr, v4("10.0.0.0/16"));
    assert_eq!(network.public_subnet_cidrs, [v4("10.0.1.0/24"), v4("10.0.2.0/24")]);
    assert_eq!(network.private_subnet_cidrs, [v4("10.0.11.0/24"), v4("10.0.12.0/24")]);
    let allowed: Vec<String> = manifest.network.allowed_cidrs.iter().map(ToString::to_string).collect();
    assert_eq!(allowed, ["203.0.113.0/24", "198.51.100.0/24"]);
    assert_eq!(manifest.service.cpu, 256);
    assert_eq!(manifest.service.memory, 512);
    assert_eq!(manifest.service.desired_count, 2);
    assert_eq!(manifest.logs.retention_days, 7);
    assert_eq!(manifest.https.domain, "chat.example.co.jp");
    assert!(matches!(
        &manifest.https.certificate,
        CertificateSource::Managed { hosted_zone_id: Some(zone) } if zone == "Z0123456789ABCDEFGHIJ"
    ));
    assert_eq!(manifest.databricks.host_origin(), "https://adb-1234567890123456.7.azuredatabricks.net");
    assert_eq!(
        manifest.databricks.client_secret,
        SecretRef::Env("DATABRICKS_CLIENT_SECRET".into())
    );
    assert_eq!(manifest.databricks.serving_endpoint, "databricks-claude-sonnet-4");
    assert_eq!(manifest.deploy.timeout, Duration::from_secs(15 * 60));
    assert_eq!(manifest.tags.get("Project").map(String::as_str), Some("databricks-oauth-app"));
}

#[test]
fn local_manifest_parses() {
    let manifest = load(&shipped("local.toml")).unwrap_or_else(|error| panic!("{error}"));

    assert_eq!(manifest.app.name.as_str(), "demo");
    assert_eq!(manifest.app.stage.as_str(), "local");
    assert_eq!(manifest.network.allowed_cidrs[0].to_string(), "127.0.0.0/8");
    assert_eq!(manifest.https.domain, "demo.local.test");
    assert!(matches!(
        manifest.https.certificate,
        CertificateSource::Managed { hosted_zone_id: None }
    ));
    assert_eq!(manifest.databricks.host_origin(), "http://127.0.0.1:9031");
    assert_eq!(manifest.databricks.client_id, "local-app");
    assert_eq!(manifest.service.desired_count, 1);
    assert_eq!(manifest.deploy.timeout, Duration::from_secs(120));
    assert_eq!(
        manifest.deploy.health_url.as_ref().map(|url| url.as_str()),
        Some("http://127.0.0.1:8080/health")
    );
}

#[test]
fn minimal_manifest_gets_defaults() {
    let manifest = parse_test(MINIMAL).unwrap_or_else(|error| panic!("{error}"));

    assert_eq!(manifest.base_dir, Path::new("manifests"));
    assert_eq!(manifest.aws.account_id, None);
    let network = managed(&manifest);
    assert_eq!(network.vpc_cidr, v4("10.0.0.0/16"));
    assert_eq!(network.public_subnet_cidrs, [v4("10.0.1.0/24"), v4("10.0.2.0/24")]);
    assert_eq!(network.private_subnet_cidrs, [v4("10.0.11.0/24"), v4("10.0.12.0/24")]);
    assert!(network.availability_zones.is_empty());
    assert_eq!(manifest.service.cpu, 256);
    assert_eq!(manifest.service.memory, 512);
    assert_eq!(manifest.service.desired_count, 1);
    assert_eq!(manifest.service.port, 8080);
    assert_eq!(manifest.service.health_check_path, "/health");
    assert!(matches!(
        manifest.https.certificate,
        CertificateSource::Managed { hosted_zone_id: None }
    ));
    assert_eq!(manifest.databricks.serving_endpoint, "databricks-claude-sonnet-4");
    assert_eq!(
        manifest.databricks.scopes,
        ["openid", "email", "profile", "all-apis", "offline_access"]
    );
    assert_eq!(manifest.databricks.redirect_path, "/oauth/callback");
    assert_eq!(manifest.build.source_dir, Path::new("manifests/.."));
    assert_eq!(manifest.build.dockerfile, Path::new("templates/Dockerfile"));
    assert_eq!(manifest.build.compute_type, "BUILD_GENERAL1_SMALL");
    assert_eq!(manifest.build.image, "aws/codebuild/amazonlinux2-x86_64-standard:5.0");
    assert_eq!(manifest.build.timeout_minutes, 30);
    assert_eq!(manifest.logs.retention_days, 7);
    assert_eq!(manifest.deploy.timeout, Duration::from_secs(15 * 60));
    assert_eq!(manifest.deploy.health_url, None);
    assert!(manifest.tags.is_empty());
}

#[test]
fn bare_file_name_uses_current_folder() {
    let manifest = parse(MINIMAL, Path::new("prod.toml")).unwrap();

    assert_eq!(manifest.base_dir, Path::new("."));
    assert_eq!(manifest.build.source_dir, Path::new("./.."));
}

#[test]
fn databricks_host_forms_are_accepted() {
    let cases = [
        ("https://dbc-a1b2c3d4-e5f6.cloud.databricks.com", "https://dbc-a1b2c3d4-e5f6.cloud.databricks.com"),
        ("https://dbc-a1b2c3d4-e5f6.cloud.databricks.com/", "https://dbc-a1b2c3d4-e5f6.cloud.databricks.com"),
        ("https://adb-1234567890123456.7.azuredatabricks.net", "https://adb-1234567890123456.7.azuredatabricks.net"),
        ("https://adb-1234567890123456.7.azuredatabricks.net/", "https://adb-1234567890123456.7.azuredatabricks.net"),
        ("https://1234567890123456.7.gcp.databricks.com", "https://1234567890123456.7.gcp.databricks.com"),
        ("https://1234567890123456.7.gcp.databricks.com/", "https://1234567890123456.7.gcp.databricks.com"),
        ("https://databricks.internal.example.com", "https://databricks.internal.example.com"),
        ("https://databricks.internal.example.com:8443/", "https://databricks.internal.example.com:8443"),
        ("https://adb-1.7.azuredatabricks.net:443", "https://adb-1.7.azuredatabricks.net"),
        ("HTTPS://ADB-1.7.AZUREDATABRICKS.NET", "https://adb-1.7.azuredatabricks.net"),
        ("http://127.0.0.1:9031", "http://127.0.0.1:9031"),
        ("http://localhost:9031/", "http://localhost:9031"),
        ("http://[::1]:9031", "http://[::1]:9031"),
    ];

    for (written, expected) in cases {
        let text = replace(
            "host = \"https://adb-1234567890123456.7.azuredatabricks.net\"",
            &format!("host = \"{written}\""),
        );
        let manifest = parse_test(&text).unwrap_or_else(|error| panic!("`{written}` was rejected:\n{error}"));

        assert_eq!(manifest.databricks.host_origin(), expected, "host `{written}`");
        assert_eq!(manifest.databricks.host.path(), "/", "host `{written}`");
        assert_eq!(manifest.databricks.host.query(), None, "host `{written}`");
    }
}

#[test]
fn existing_network_is_accepted() {
    let text = replace(
        "allowed_cidrs = [\"203.0.113.0/24\"]",
        r#"allowed_cidrs = ["0.0.0.0/0", "2001:db8::/32"]
vpc_id = "vpc-0123456789abcdef0"
public_subnet_ids = ["subnet-0123456789abcdef0", "subnet-01234567"]
private_subnet_ids = ["subnet-0123456789abcdef2", "subnet-0123456789abcdef3"]"#,
    );
    let manifest = parse_test(&text).unwrap_or_else(|error| panic!("{error}"));

    let NetworkLayout::Existing(network) = &manifest.network.layout else {
        panic!("expected an existing network, got {:?}", manifest.network.layout);
    };
    assert_eq!(network.vpc_id, "vpc-0123456789abcdef0");
    assert_eq!(network.public_subnet_ids, ["subnet-0123456789abcdef0", "subnet-01234567"]);
    assert_eq!(network.private_subnet_ids.len(), 2);
    assert_eq!(manifest.network.allowed_cidrs.len(), 2);
}

#[test]
fn optional_settings_are_read() {
    let text = r#"[app]
name = "demo"
stage = "test"

[aws]
region = "ap-northeast-1"
account_id = "123456789012"

[network]
allowed_cidrs = ["203.0.113.0/24"]
availability_zones = ["ap-northeast-1a", "ap-northeast-1c"]

[service]
cpu = 4096
memory = 30720
port = 3000

[https]
domain = "app.example.com"
hosted_zone_id = "/hostedzone/Z0123456789ABC"

[databricks]
host = "https://adb-1234567890123456.7.azuredatabricks.net"
client_id = "client"
client_secret = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:oauth-AbCdEf"

[build]
source_dir = "app"
dockerfile = "./docker/Dockerfile"

[tags]
"cost center" = "platform team"
"#;
    let manifest = parse_test(text).unwrap_or_else(|error| panic!("{error}"));

    assert_eq!(manifest.aws.account_id.as_deref(), Some("123456789012"));
    assert_eq!(managed(&manifest).availability_zones, ["ap-northeast-1a", "ap-northeast-1c"]);
    assert_eq!(manifest.service.cpu, 4096);
    assert_eq!(manifest.service.memory, 30720);
    assert_eq!(manifest.service.port, 3000);
    assert!(matches!(
        &manifest.https.certificate,
        CertificateSource::Managed { hosted_zone_id: Some(zone) } if zone == "Z0123456789ABC"
    ));
    assert_eq!(
        manifest.databricks.client_secret,
        SecretRef::SecretsManager("arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:oauth-AbCdEf".into())
    );
    assert_eq!(manifest.build.source_dir, Path::new("manifests/app"));
    assert_eq!(manifest.build.dockerfile, Path::new("./docker/Dockerfile"));
    assert_eq!(manifest.tags.get("cost center").map(String::as_str), Some("platform team"));
}

/// One bad manifest: the key path, line and message fragment of the problem it must produce.
struct Case {
    name: &'static str,
    text: String,
    key: &'static str,
    line: usize,
    message: &'static str,
}

fn case(name: &'static str, text: String, key: &'static str, line: usize, message: &'static str) -> Case {
    Case {
        name,
        text,
        key,
        line,
        message,
    }
}

fn bad_cases() -> Vec<Case> {
    vec![
        case("upper-case app name", replace("name = \"demo\"", "name = \"Demo_App\""), "app.name", 2, "invalid name `Demo_App`"),
        case(
            "name and stage too long",
            replace("name = \"demo\"", "name = \"databricks-oauth-application\""),
            "app.name",
            2,
            "is 33 characters long, more than the maximum of 28",
        ),
        case("region not a code", replace("region = \"ap-northeast-1\"", "region = \"tokyo\""), "aws.region", 6, "invalid region `tokyo`"),
        case(
            "account id too short",
            replace("region = \"ap-northeast-1\"", "region = \"ap-northeast-1\"\naccount_id = \"1234\""),
            "aws.account_id",
            7,
            "invalid AWS account id `1234`",
        ),
        case(
            "allowed CIDR malformed",
            replace("allowed_cidrs = [\"203.0.113.0/24\"]", "allowed_cidrs = [\"203.0.113.0/24\", \"10.0.0/8\"]"),
            "network.allowed_cidrs[1]",
            9,
            "invalid CIDR `10.0.0/8`",
        ),
        case("allowed CIDRs empty", replace("allowed_cidrs = [\"203.0.113.0/24\"]", "allowed_cidrs = []"), "network.allowed_cidrs", 9, "is empty"),
        case(
            "allowed CIDR host bits",
            replace("allowed_cidrs = [\"203.0.113.0/24\"]", "allowed_cidrs = [\"203.0.113.7/24\"]"),
            "network.allowed_cidrs[0]",
            9,
            "has host bits set",
        ),
        case(
            "allowed CIDRs missing",
            replace("allowed_cidrs = [\"203.0.113.0/24\"]", "vpc_cidr = \"10.0.0.0/16\""),
            "network.allowed_cidrs",
            8,
            "missing required key `allowed_cidrs` in `[network]`",
        ),
        case(
            "subnet outside VPC",
            replace("allowed_cidrs = [\"203.0.113.0/24\"]", "allowed_cidrs = [\"203.0.113.0/24\"]\npublic_subnet_cidrs = [\"10.1.1.0/24\", \"10.0.2.0/24\"]"),
            "network.public_subnet_cidrs[0]",
            10,
            "subnet `10.1.1.0/24` is outside the VPC `10.0.0.0/16`",
        ),
        case(
            "subnets overlap",
            replace("allowed_cidrs = [\"203.0.113.0/24\"]", "allowed_cidrs = [\"203.0.113.0/24\"]\nprivate_subnet_cidrs = [\"10.0.1.128/25\", \"10.0.12.0/24\"]"),
            "network.private_subnet_cidrs[0]",
            10,
            "overlaps the default `network.public_subnet_cidrs[0]`",
        ),
        case(
            "three public subnets",
            replace(
                "allowed_cidrs = [\"203.0.113.0/24\"]",
                "allowed_cidrs = [\"203.0.113.0/24\"]\npublic_subnet_cidrs = [\"10.0.1.0/24\", \"10.0.2.0/24\", \"10.0.3.0/24\"]",
            ),
            "network.public_subnet_cidrs",
            10,
            "expected exactly two subnets, found 3",
        ),
        case(
            "zones of another region",
            replace("allowed_cidrs = [\"203.0.113.0/24\"]", "allowed_cidrs = [\"203.0.113.0/24\"]\navailability_zones = [\"us-east-1a\", \"ap-northeast-1c\"]"),
            "network.availability_zones[0]",
            10,
            "`us-east-1a` is not an availability zone of `ap-northeast-1`",
        ),
        case(
            "managed and existing mixed",
            replace(
                "allowed_cidrs = [\"203.0.113.0/24\"]",
                "allowed_cidrs = [\"203.0.113.0/24\"]\nvpc_cidr = \"10.0.0.0/16\"\nvpc_id = \"vpc-0123456789abcdef0\"",
            ),
            "network.vpc_id",
            11,
            "`vpc_id` cannot be combined with `vpc_cidr`",
        ),
        case(
            "existing network one subnet",
            replace(
                "allowed_cidrs = [\"203.0.113.0/24\"]",
                "allowed_cidrs = [\"203.0.113.0/24\"]\nvpc_id = \"vpc-0123456789abcdef0\"\npublic_subnet_ids = [\"subnet-0123456789abcdef0\"]\nprivate_subnet_ids = [\"subnet-01234567\", \"subnet-89abcdef\"]",
            ),
            "network.public_subnet_ids",
            11,
            "expected at least two subnet ids, found 1",
        ),
        case(
            "existing VPC id malformed",
            replace(
                "allowed_cidrs = [\"203.0.113.0/24\"]",
                "allowed_cidrs = [\"203.0.113.0/24\"]\nvpc_id = \"vpc-xyz\"\npublic_subnet_ids = [\"subnet-01234567\", \"subnet-89abcdef\"]\nprivate_subnet_ids = [\"subnet-01234567\", \"subnet-89abcdef\"]",
            ),
            "network.vpc_id",
            10,
            "invalid vpc id `vpc-xyz`",
        ),
        case("cpu not Fargate", append("[service]\ncpu = 300"), "service.cpu", APPENDED + 1, "`300` is not a Fargate CPU size"),
        case(
            "memory invalid for cpu",
            append("[service]\ncpu = 256\nmemory = 4096"),
            "service.memory",
            APPENDED + 2,
            "`memory = 4096` is not valid with `cpu = 256` on Fargate",
        ),
        case(
            "cpu invalid for default memory",
            append("[service]\ncpu = 1024"),
            "service.cpu",
            APPENDED + 1,
            "`memory = 512` is not valid with `cpu = 1024`",
        ),
        case("port below 1024", append("[service]\nport = 80"), "service.port", APPENDED + 1, "`80` is outside the allowed range 1024 to 65535"),
        case("desired count too high", append("[service]\ndesired_count = 101"), "service.desired_count", APPENDED + 1, "outside the allowed range 0 to 100"),
        case(
            "health check path relative",
            append("[service]\nhealth_check_path = \"health\""),
            "service.health_check_path",
            APPENDED + 1,
            "path `health` does not start with `/`",
        ),
        case("cpu written as string", append("[service]\ncpu = \"256\""), "service.cpu", APPENDED + 1, "expected an integer"),
        case(
            "table written as string",
            replace("[app]\nname = \"demo\"\nstage = \"test\"\n", "app = \"demo\"\n"),
            "app",
            1,
            "invalid type: string \"demo\", expected a table",
        ),
        case(
            "existing subnet listed twice",
            replace(
                "allowed_cidrs = [\"203.0.113.0/24\"]",
                "allowed_cidrs = [\"203.0.113.0/24\"]\nvpc_id = \"vpc-0123456789abcdef0\"\npublic_subnet_ids = [\"subnet-01234567\", \"subnet-89abcdef\"]\nprivate_subnet_ids = [\"subnet-01234567\", \"subnet-01234567\"]",
            ),
            "network.private_subnet_ids[1]",
            12,
            "subnet id `subnet-01234567` is listed twice",
        ),
        case("domain upper-case", replace("domain = \"app.example.com\"", "domain = \"App.Example.com\""), "https.domain", 12, "upper-case letters"),
        case("domain single label", replace("domain = \"app.example.com\"", "domain = \"localhost\""), "https.domain", 12, "at least two labels"),
        case(
            "hosted zone and certificate",
            replace(
                "domain = \"app.example.com\"",
                "domain = \"app.example.com\"\nhosted_zone_id = \"Z0123456789\"\ncertificate_arn = \"arn:aws:acm:ap-northeast-1:123456789012:certificate/0a1b2c3d-0000-4000-8000-000000000000\"",
            ),
            "https.certificate_arn",
            14,
            "`hosted_zone_id` and `certificate_arn` cannot both be set",
        ),
        case(
            "certificate in another region",
            replace(
                "domain = \"app.example.com\"",
                "domain = \"app.example.com\"\ncertificate_arn = \"arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-0000-4000-8000-000000000000\"",
            ),
            "https.certificate_arn",
            13,
            "is in `us-east-1`, but the app is deployed to `ap-northeast-1`",
        ),
        case(
            "hosted zone id malformed",
            replace("domain = \"app.example.com\"", "domain = \"app.example.com\"\nhosted_zone_id = \"hz-123\""),
            "https.hosted_zone_id",
            13,
            "invalid hosted zone id `hz-123`",
        ),
        case(
            "host without scheme",
            replace("host = \"https://adb-1234567890123456.7.azuredatabricks.net\"", "host = \"adb-1234567890123456.7.azuredatabricks.net/\""),
            "databricks.host",
            15,
            "has no scheme",
        ),
        case(
            "host with query",
            replace("host = \"https://adb-1234567890123456.7.azuredatabricks.net\"", "host = \"https://adb-1234567890123456.7.azuredatabricks.net/?o=1234567890123456\""),
            "databricks.host",
            15,
            "has a path, query or fragment",
        ),
        case(
            "host with path",
            replace("host = \"https://adb-1234567890123456.7.azuredatabricks.net\"", "host = \"https://dbc-1.cloud.databricks.com/login\""),
            "databricks.host",
            15,
            "has a path, query or fragment",
        ),
        case(
            "plain http host",
            replace("host = \"https://adb-1234567890123456.7.azuredatabricks.net\"", "host = \"http://dbc-1.cloud.databricks.com\""),
            "databricks.host",
            15,
            "uses plain `http`",
        ),
        case(
            "secret env name invalid",
            replace("client_secret = { env = \"DATABRICKS_CLIENT_SECRET\" }", "client_secret = { env = \"1-SECRET\" }"),
            "databricks.client_secret.env",
            17,
            "not a valid environment variable name",
        ),
        case(
            "secret ARN of another service",
            replace("client_secret = { env = \"DATABRICKS_CLIENT_SECRET\" }", "client_secret = { arn = \"arn:aws:s3:::bucket\" }"),
            "databricks.client_secret",
            17,
            "invalid Secrets Manager ARN `arn:aws:s3:::bucket`",
        ),
        case(
            "secret with both references",
            replace(
                "client_secret = { env = \"DATABRICKS_CLIENT_SECRET\" }",
                "client_secret = { env = \"X\", arn = \"arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:x\" }",
            ),
            "databricks.client_secret",
            17,
            "`env` and `arn` cannot both be set",
        ),
        case(
            "scopes without openid",
            replace("client_secret = { env = \"DATABRICKS_CLIENT_SECRET\" }", "client_secret = { env = \"S\" }\nscopes = [\"all-apis\"]"),
            "databricks.scopes",
            18,
            "does not include `openid`",
        ),
        case(
            "serving endpoint with spaces",
            replace("client_secret = { env = \"DATABRICKS_CLIENT_SECRET\" }", "client_secret = { env = \"S\" }\nserving_endpoint = \"my endpoint\""),
            "databricks.serving_endpoint",
            18,
            "invalid serving endpoint name `my endpoint`",
        ),
        case(
            "redirect path relative",
            replace("client_secret = { env = \"DATABRICKS_CLIENT_SECRET\" }", "client_secret = { env = \"S\" }\nredirect_path = \"oauth/callback\""),
            "databricks.redirect_path",
            18,
            "does not start with `/`",
        ),
        case("build timeout too short", append("[build]\ntimeout_minutes = 2"), "build.timeout_minutes", APPENDED + 1, "outside the allowed range 5 to 480"),
        case("compute type unknown", append("[build]\ncompute_type = \"small\""), "build.compute_type", APPENDED + 1, "unknown CodeBuild compute type `small`"),
        case("dockerfile outside source", append("[build]\ndockerfile = \"../Dockerfile\""), "build.dockerfile", APPENDED + 1, "is not inside `source_dir`"),
        case("retention not CloudWatch", append("[logs]\nretention_days = 10"), "logs.retention_days", APPENDED + 1, "`10` is not a retention period"),
        case("deploy timeout too short", append("[deploy]\ntimeout = \"30s\""), "deploy.timeout", APPENDED + 1, "outside the allowed range 1m to 3h"),
        case("deploy timeout unparsable", append("[deploy]\ntimeout = \"soon\""), "deploy.timeout", APPENDED + 1, "invalid duration `soon`"),
        case("health URL not http", append("[deploy]\nhealth_url = \"ftp://127.0.0.1/health\""), "deploy.health_url", APPENDED + 1, "has the scheme `ftp`"),
        case("tag with reserved prefix", append("[tags]\n\"aws:team\" = \"x\""), "tags.\"aws:team\"", APPENDED + 1, "uses a reserved prefix"),
        case("tag named Name", append("[tags]\nName = \"x\""), "tags.Name", APPENDED + 1, "tag key `Name` is set by the deployer"),
        case("name with double hyphen", replace("name = \"demo\"", "name = \"my--app\""), "app.name", 2, "invalid name `my--app`"),
        case(
            "health URL with password",
            append("[deploy]\nhealth_url = \"http://admin:hunter2pw@127.0.0.1/health\""),
            "deploy.health_url",
            APPENDED + 1,
            "contains a user name or password",
        ),
        case("unknown key typo", replace("name = \"demo\"", "name = \"demo\"\nnmae = \"demo\""), "app.nmae", 3, "unknown key `nmae` in `[app]`"),
        case("unknown table typo", append("[servce]\ncpu = 256"), "servce", APPENDED, "unknown table `[servce]`"),
        case(
            "unknown key in secret",
            replace("client_secret = { env = \"DATABRICKS_CLIENT_SECRET\" }", "client_secret = { env = \"S\", envv = \"T\" }"),
            "databricks.client_secret.envv",
            17,
            "unknown key `envv`",
        ),
        case("https table missing", replace("[https]\ndomain = \"app.example.com\"\n", ""), "https", 1, "missing required table `[https]`"),
        case("invalid TOML syntax", replace("stage = \"test\"", "stage = \"test"), "", 3, "invalid TOML"),
    ]
}

#[test]
fn bad_manifests_name_key_and_line() {
    let cases = bad_cases();
    assert!(cases.len() >= 14);

    for case in cases {
        let problems = problems_of(&case.text);
        let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let listed = listed.join("\n");

        assert_eq!(problems.len(), 1, "case `{}` expected one problem, got:\n{listed}", case.name);
        let problem = &problems[0];
        assert_eq!(problem.key, case.key, "case `{}`: key of\n{listed}", case.name);
        assert_eq!(problem.line, case.line, "case `{}`: line of\n{listed}", case.name);
        assert!(
            problem.message.contains(case.message),
            "case `{}`: message should contain `{}`:\n{listed}",
            case.name,
            case.message
        );
        assert!(problem.hint.is_some(), "case `{}` has no hint:\n{listed}", case.name);
    }
}

#[test]
fn display_shows_position_and_hint() {
    let text = replace(
        "allowed_cidrs = [\"203.0.113.0/24\"]",
        "allowed_cidrs = [\"203.0.113.0/24\", \"10.0.0/8\"]",
    );
    let error = parse_test(&text).unwrap_err();
    let display = error.to_string();
    let mut lines = display.lines();

    assert_eq!(
        lines.next(),
        Some("manifests/test.toml:9:36: network.allowed_cidrs[1]: invalid CIDR `10.0.0/8`")
    );
    assert_eq!(
        lines.next(),
        Some("  hint: write the network address and the prefix length, such as `203.0.113.0/24`")
    );
    assert_eq!(lines.next(), None);
}

#[test]
fn unknown_key_suggests_close_name() {
    let text = replace("name = \"demo\"", "name = \"demo\"\nnmae = \"demo\"");
    let problems = problems_of(&text);

    assert_eq!(problems[0].hint.as_deref(), Some("did you mean `name`?"));
}

#[test]
fn unknown_table_suggests_close_table() {
    let problems = problems_of(&append("[servce]\ncpu = 256"));

    assert_eq!(problems[0].hint.as_deref(), Some("did you mean `[service]`?"));
}

#[test]
fn wrong_type_hint_names_expected_type() {
    let problems = problems_of(&append("[service]\ncpu = \"256\""));

    assert_eq!(problems[0].hint.as_deref(), Some("write an integer here"));
}

#[test]
fn misplaced_key_names_its_table() {
    let text = replace("name = \"demo\"", "name = \"demo\"\nregion = \"ap-northeast-1\"");
    let problems = problems_of(&text);

    assert_eq!(problems[0].key, "app.region");
    assert_eq!(problems[0].hint.as_deref(), Some("move `region` to `[aws]`"));
}

#[test]
fn memory_hint_lists_valid_sizes() {
    let problems = problems_of(&append("[service]\ncpu = 256\nmemory = 4096"));
    let hint = problems[0].hint.as_deref().unwrap_or_default();

    assert!(hint.contains("512, 1024 or 2048 MiB"), "{hint}");
    assert!(hint.contains("set `cpu` to 512, 1024 or 2048"), "{hint}");
}

#[test]
fn host_without_scheme_hint_adds_https() {
    let text = replace(
        "host = \"https://adb-1234567890123456.7.azuredatabricks.net\"",
        "host = \"adb-1234567890123456.7.azuredatabricks.net/\"",
    );
    let problems = problems_of(&text);

    assert_eq!(
        problems[0].hint.as_deref(),
        Some("write `https://adb-1234567890123456.7.azuredatabricks.net`")
    );
}

#[test]
fn literal_secret_never_printed() {
    let secret = "dose-very-secret-Value-0123456789";
    let forms = [
        format!("client_secret = \"{secret}\""),
        format!("client_secret = {{ value = \"{secret}\" }}"),
        format!("client_secret = {{ env = \"{secret}\" }}"),
        format!("client_secret = \"{secret}"),
        format!("client_secret = [\"{secret}\"]"),
    ];

    for form in forms {
        let text = replace("client_secret = { env = \"DATABRICKS_CLIENT_SECRET\" }", &form);
        let error = parse_test(&text).unwrap_err();

        assert!(!error.to_string().contains(secret), "Display shows the secret for `{form}`:\n{error}");
        assert!(!format!("{error:?}").contains(secret), "Debug shows the secret for `{form}`");
    }
}

#[test]
fn literal_secret_hint_shows_env_form() {
    let text = replace(
        "client_secret = { env = \"DATABRICKS_CLIENT_SECRET\" }",
        "client_secret = \"dose0123456789abcdef\"",
    );
    let problems = problems_of(&text);
    let hint = problems[0].hint.as_deref().unwrap_or_default();

    assert_eq!(problems[0].key, "databricks.client_secret");
    assert!(problems[0].message.contains("literal secret is not allowed"));
    assert!(hint.contains("{ env = \"DATABRICKS_CLIENT_SECRET\" }"), "{hint}");
}

#[test]
fn several_problems_are_all_reported() {
    let text = r#"[app]
name = "demo"
stage = "test"
colour = "blue"

[aws]
region = "ap-northeast-1"

[network]
allowed_cidrs = ["203.0.113.0/24", "10.0.0/8"]

[service]
cpu = 256
memory = 4096
port = 80

[https]
domain = "app.example.com"

[databricks]
host = "adb-1.7.azuredatabricks.net"
client_id = "client"
client_secret = "a pasted secret"

[logs]
retention_days = 10
"#;
    let problems = problems_of(text);
    let keys: Vec<&str> = problems.iter().map(|problem| problem.key.as_str()).collect();
    let lines: Vec<usize> = problems.iter().map(|problem| problem.line).collect();

    assert_eq!(
        keys,
        [
            "app.colour",
            "network.allowed_cidrs[1]",
            "service.memory",
            "service.port",
            "databricks.host",
            "databricks.client_secret",
            "logs.retention_days",
        ]
    );
    assert_eq!(lines, [4, 10, 14, 15, 21, 23, 26]);
}

#[test]
fn missing_keys_point_at_table() {
    let text = replace("name = \"demo\"\nstage = \"test\"\n", "");
    let problems = problems_of(&text);
    let keys: Vec<&str> = problems.iter().map(|problem| problem.key.as_str()).collect();

    assert_eq!(keys, ["app.name", "app.stage"]);
    assert_eq!(problems[0].line, 1);
    assert_eq!(problems[0].column, 2);
}

#[test]
fn missing_file_names_path() {
    let path = Path::new("manifests/does-not-exist.toml");
    let error = load(path).unwrap_err();
    let display = error.to_string();

    assert!(display.starts_with("manifests/does-not-exist.toml: failed to read the manifest"), "{display}");
    assert!(display.contains("hint: check the path"), "{display}");
}

#[test]
fn datetime_value_is_type_error() {
    let problems = problems_of(&replace("stage = \"test\"", "stage = 1979-05-27"));

    assert_eq!(problems[0].key, "app.stage");
    assert_eq!(problems[0].line, 3);
}

#[test]
fn column_counts_characters() {
    let text = replace("[app]", "tags = { \"チーム\" = \"a\", \"aws:x\" = \"b\" }\n[app]");
    let problems = problems_of(&text);

    assert_eq!(problems[0].key, "tags.\"aws:x\"");
    assert_eq!(problems[0].line, 1);
    assert_eq!(problems[0].column, 23);
}

#[test]
fn allowed_cidrs_accept_ipv4_any() {
    let text = replace("allowed_cidrs = [\"203.0.113.0/24\"]", "allowed_cidrs = [\"0.0.0.0/0\"]");
    let manifest = parse_test(&text).unwrap();

    let any = manifest.network.allowed_cidrs[0];
    assert_eq!(any.to_string(), "0.0.0.0/0");
    assert!(any.contains(&std::net::IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8))));
}

#[test]
fn health_url_password_is_not_echoed() {
    let error = parse_test(&append("[deploy]\nhealth_url = \"http://admin:hunter2pw@127.0.0.1/health\"")).unwrap_err();
    assert!(!error.to_string().contains("hunter2pw"), "{error}");
}

#[test]
fn too_many_allowed_cidrs_are_rejected() {
    let cidrs: Vec<String> = (0..31).map(|i| format!("\"198.51.{i}.0/24\"")).collect();
    let text = replace(
        "allowed_cidrs = [\"203.0.113.0/24\"]",
        &format!("allowed_cidrs = [{}]", cidrs.join(", ")),
    );
    let problems = problems_of(&text);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "network.allowed_cidrs");
    assert!(problems[0].message.contains("more than the maximum of 30"), "{}", problems[0].message);
}
