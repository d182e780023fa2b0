//! The page the browser returns to after sign-in, which is only ever a path inside this app.

/// Returns `candidate` when it is a path of this app, or `/` otherwise. Absolute URLs,
/// scheme-relative `//host` forms, backslashes (which browsers read as `/`) and control
/// characters are all rejected, so a crafted link cannot send a signed-in user elsewhere.
pub fn safe_return_to(candidate: Option<&str>) -> String {
    let Some(path) = candidate else {
        return "/".to_owned();
    };
    let route = path.split(['?', '#']).next().unwrap_or_default().to_ascii_lowercase();
    // Dot segments, doubled slashes and their percent-encoded forms can make a browser resolve
    // the path to `//host`, another origin.
    let tricky = ["//", "/./", "/../", "%2e", "%2f", "%5c"].iter().any(|part| route.contains(part))
        || route.ends_with("/.")
        || route.ends_with("/..");
    let inside = path.starts_with('/')
        && !tricky
        && !path.contains('\\')
        && !path.chars().any(char::is_control)
        && path.len() <= 2048;
    if inside {
        path.to_owned()
    } else {
        "/".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::safe_return_to;

    #[test]
    fn inside_paths_are_kept() {
        assert_eq!(safe_return_to(Some("/")), "/");
        assert_eq!(safe_return_to(Some("/chat?x=1")), "/chat?x=1");
    }

    #[test]
    fn other_origins_become_root() {
        for attempt in [
            "https://evil.example",
            "//evil.example/path",
            "/\\evil.example",
            "\\\\evil.example",
            "javascript:alert(1)",
            "evil.example",
            "/\tevil",
            "/.//evil.example",
            "/%2e%2e//evil.example",
            "/%2F%2Fevil.example",
            "/a/../../evil",
            "",
        ] {
            assert_eq!(safe_return_to(Some(attempt)), "/", "{attempt:?}");
        }
        assert_eq!(safe_return_to(None), "/");
    }
}
