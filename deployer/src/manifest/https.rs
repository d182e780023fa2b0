//! Validation of `[https]`: the domain and where its certificate comes from.

use toml::Spanned;

use super::check::Checker;
use super::model::{CertificateSource, HttpsConfig};
use super::raw::RawHttps;
use super::validate::{is_account_id, is_region};

pub(super) fn https(
    cx: &mut Checker,
    raw: Option<RawHttps>,
    region: Option<&str>,
    account_id: Option<&str>,
) -> Option<HttpsConfig> {
    let Some(raw) = raw else {
        cx.missing_table("https", "the `domain` the app is served at");
        return None;
    };

    let domain = cx.required("https", "domain", raw.domain, "domain = \"app.example.com\"");
    let domain = domain.and_then(|domain| fqdn(cx, &domain));
    let certificate = match (raw.hosted_zone_id, raw.certificate_arn) {
        (Some(_), Some(arn)) => {
            cx.report(
                "https.certificate_arn",
                &arn.span(),
                "`hosted_zone_id` and `certificate_arn` cannot both be set".into(),
                "keep `hosted_zone_id` to let the deployer request and validate a certificate, or `certificate_arn` to use an existing one".into(),
            );
            None
        }
        (Some(zone), None) => hosted_zone_id(cx, &zone).map(|zone| CertificateSource::Managed {
            hosted_zone_id: Some(zone),
        }),
        (None, Some(arn)) => certificate_arn(cx, &arn, region, account_id).map(|arn| CertificateSource::Existing { arn }),
        (None, None) => Some(CertificateSource::Managed { hosted_zone_id: None }),
    };

    Some(HttpsConfig {
        domain: domain?,
        certificate: certificate?,
    })
}

/// Checks a lower-case fully qualified domain name with at least two labels.
fn fqdn(cx: &mut Checker, value: &Spanned<String>) -> Option<String> {
    let domain = value.get_ref();
    let problem = domain_problem(domain);
    let Some(problem) = problem else {
        return Some(domain.clone());
    };

    let cleaned = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let hint = if cleaned != *domain && domain_problem(&cleaned).is_none() {
        format!("write `{cleaned}`")
    } else {
        "write the host name users open, such as `chat.example.com`, without scheme, port or path".to_owned()
    };
    cx.report("https.domain", &value.span(), format!("invalid domain `{domain}`: {problem}"), hint);
    None
}

/// Returns what is wrong with a domain name, or `None` when it is valid.
fn domain_problem(domain: &str) -> Option<&'static str> {
    if domain.contains("://") || domain.contains('/') || domain.contains(':') {
        return Some("expected a host name without scheme, port or path");
    }
    if domain.ends_with('.') {
        return Some("the trailing dot is not accepted");
    }
    if domain.chars().any(|c| c.is_ascii_uppercase()) {
        return Some("upper-case letters are not accepted");
    }
    if domain.len() > 253 {
        return Some("longer than 253 characters");
    }

    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Some("expected at least two labels, such as `example.com`");
    }
    let label_is_valid = |label: &&str| {
        (1..=63).contains(&label.len())
            && label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if !labels.iter().all(label_is_valid) {
        return Some("each label takes 1 to 63 lower-case letters, digits and inner hyphens");
    }
    if labels.last().is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit())) {
        return Some("expected a domain name, not an IP address");
    }
    None
}

/// Checks a Route 53 hosted zone id and strips the `/hostedzone/` prefix that the API returns.
fn hosted_zone_id(cx: &mut Checker, value: &Spanned<String>) -> Option<String> {
    let text = value.get_ref();
    let id = text.strip_prefix("/hostedzone/").unwrap_or(text);
    // AWS's own ids start with `Z`, but the API documents only upper-case letters and digits.
    let valid = (1..=32).contains(&id.len()) && id.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if valid {
        return Some(id.to_owned());
    }

    let upper = id.to_ascii_uppercase();
    let hint = if (1..=32).contains(&upper.len()) && upper.chars().all(|c| c.is_ascii_alphanumeric()) {
        format!("write `{upper}`: hosted zone ids are upper-case")
    } else {
        "copy the id from the Route 53 console or `aws route53 list-hosted-zones`, such as `Z0123456789ABCDEFGHIJ`".to_owned()
    };
    cx.report(
        "https.hosted_zone_id",
        &value.span(),
        format!("invalid hosted zone id `{text}`"),
        hint,
    );
    None
}

/// Checks an ACM certificate ARN, `arn:PARTITION:acm:REGION:ACCOUNT:certificate/ID`, in the
/// deployment's region and, when `aws.account_id` is set, its account.
fn certificate_arn(
    cx: &mut Checker,
    value: &Spanned<String>,
    region: Option<&str>,
    account_id: Option<&str>,
) -> Option<String> {
    let arn = value.get_ref();
    let key = "https.certificate_arn";
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, arn_region, account, resource] = parts.as_slice() else {
        report_bad_arn(cx, value);
        return None;
    };
    let certificate_id = resource.strip_prefix("certificate/").unwrap_or("");
    let shape_is_valid = *prefix == "arn"
        && partition.starts_with("aws")
        && *service == "acm"
        && is_region(arn_region)
        && is_account_id(account)
        && !certificate_id.is_empty()
        && certificate_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !shape_is_valid {
        report_bad_arn(cx, value);
        return None;
    }

    if let Some(region) = region.filter(|region| region != arn_region) {
        cx.report(
            key,
            &value.span(),
            format!("certificate `{arn}` is in `{arn_region}`, but the app is deployed to `{region}`"),
            format!("request or import the certificate in `{region}`, because a load balancer uses certificates from its own region only"),
        );
        return None;
    }
    if let Some(account_id) = account_id.filter(|account_id| account_id != account) {
        cx.report(
            key,
            &value.span(),
            format!("certificate `{arn}` belongs to account `{account}`, not `aws.account_id` `{account_id}`"),
            format!("use a certificate of account `{account_id}`, or correct `aws.account_id`"),
        );
        return None;
    }
    Some(arn.clone())
}

fn report_bad_arn(cx: &mut Checker, value: &Spanned<String>) {
    cx.report(
        "https.certificate_arn",
        &value.span(),
        format!("invalid ACM certificate ARN `{}`", value.get_ref()),
        "copy the ARN from the ACM console, such as `arn:aws:acm:ap-northeast-1:123456789012:certificate/0a1b2c3d-...`".into(),
    );
}
