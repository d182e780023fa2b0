//! Image references as `--image` takes them: `[REGISTRY/]REPOSITORY[:TAG][@sha256:DIGEST]`, in
//! the grammar of the OCI distribution reference that ECS and ECR accept.

/// A checked image reference, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Everything before the tag and digest: `[REGISTRY/]REPOSITORY`.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:` and 64 lowercase hex digits.
    pub digest: Option<String>,
}

/// Parses `text`, or returns which part is invalid.
pub fn parse(text: &str) -> Result<Reference, String> {
    if text.len() > 255 {
        return Err(format!("it has {} characters, and ECS takes at most 255", text.len()));
    }
    let (name, digest) = match text.split_once('@') {
        Some((name, digest)) => (name, Some(check_digest(digest)?)),
        None => (text, None),
    };
    let (repository, tag) = split_tag(name);
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    check_repository(repository)?;
    Ok(Reference {
        repository: repository.to_owned(),
        tag: tag.map(str::to_owned),
        digest,
    })
}

fn check_digest(digest: &str) -> Result<String, String> {
    let hex = digest.strip_prefix("sha256:").unwrap_or_default();
    if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
        Ok(digest.to_owned())
    } else {
        Err(format!("the digest `{digest}` is not `sha256:` followed by 64 lowercase hex digits"))
    }
}

/// Splits off the tag: the part after the last `:` of the last path segment. A `:` before a `/`
/// belongs to a registry port.
fn split_tag(name: &str) -> (&str, Option<&str>) {
    let last_segment = name.rfind('/').map_or(0, |slash| slash + 1);
    match name[last_segment..].rfind(':') {
        Some(colon) => (&name[..last_segment + colon], Some(&name[last_segment + colon + 1..])),
        None => (name, None),
    }
}

fn check_tag(tag: &str) -> Result<(), String> {
    let mut chars = tag.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if first_ok && rest_ok && tag.len() <= 128 {
        Ok(())
    } else {
        Err(format!(
            "the tag `{tag}` is not 1 to 128 ASCII letters, digits, `_`, `.` or `-` starting with a letter, digit or `_`"
        ))
    }
}

fn check_repository(repository: &str) -> Result<(), String> {
    let mut components: Vec<&str> = repository.split('/').collect();
    let first = components[0];
    let has_registry =
        components.len() > 1 && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        check_registry(first)?;
        components.remove(0);
    }
    for component in components {
        check_path_component(component)?;
    }
    Ok(())
}

fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = match registry.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let host_ok = host
        .split('.')
        .all(|label| !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    let port_ok = port.is_none_or(|port| !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(format!("the registry `{registry}` is not a host name with an optional port"))
    }
}

/// Checks a path component: lowercase letters and digits, separated by single `.`, `_`, `__` or `-` runs.
fn check_path_component(component: &str) -> Result<(), String> {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let valid = component.starts_with(alphanumeric)
        && component.ends_with(alphanumeric)
        && component.chars().all(|c| alphanumeric(c) || "._-".contains(c))
        && !component.contains("..")
        && !component.contains("___");
    if valid {
        Ok(())
    } else {
        Err(format!(
            "the repository part `{component}` is not lowercase letters and digits separated by `.`, `_` or `-`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn accepts_ecr_and_docker_forms() {
        let ecr = format!("123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/app/prod@{DIGEST}");
        assert_eq!(parse(&ecr).unwrap().repository, "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/app/prod");
        assert_eq!(parse(&ecr).unwrap().digest.as_deref(), Some(DIGEST));
        let tagged = parse("localhost:5000/app:v3").unwrap();
        assert_eq!((tagged.repository.as_str(), tagged.tag.as_deref()), ("localhost:5000/app", Some("v3")));
        assert_eq!(parse("nginx").unwrap().tag, None);
        assert!(parse(&format!("repo/app:src-1@{DIGEST}")).is_ok());
        assert!(parse("public.ecr.aws/docker/library/nginx:1.27-alpine").is_ok());
    }

    #[test]
    fn rejects_malformed_references() {
        for bad in [
            "",
            "a@b",
            "a@sha256:",
            "repo@sha256:abc",
            "a:",
            "a/b:c:d",
            "a@@sha256:aa",
            "UPPER/Case:tag",
            "https://registry.example/app:1",
            "repo:tag with space",
            "/app",
            "app/",
            "app:-tag",
        ] {
            assert!(parse(bad).is_err(), "`{bad}` was accepted");
        }
        assert!(parse(&"a".repeat(256)).unwrap_err().contains("255"));
    }
}
