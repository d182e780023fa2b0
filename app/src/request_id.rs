//! The request id (`x-request-id`) of the request being handled, for error pages: the id a user
//! reports is the one every log line of that request carries.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Middleware that makes the request's id available to [`current`] while the handler runs.
pub async fn scope(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(crate::startup::REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    REQUEST_ID.scope(id, next.run(request)).await
}

/// The id of the request being handled, or a new random id outside a request or when the
/// client sent an id that is not 1 to 64 letters, digits, `-`, `_` and `.` (a client chooses
/// `x-request-id`, and the id is shown on pages).
pub fn current() -> String {
    REQUEST_ID
        .try_with(|id| id.clone())
        .ok()
        .filter(|id| is_plain_id(id))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn is_plain_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

#[cfg(test)]
mod tests {
    use super::is_plain_id;

    #[test]
    fn only_plain_ids_are_shown() {
        assert!(is_plain_id("3f2a9c1e-0000-4000-8000-000000000000"));
        assert!(!is_plain_id("<img src=x onerror=alert(1)>"));
        assert!(!is_plain_id("\"><script>"));
        assert!(!is_plain_id(""));
        assert!(!is_plain_id(&"a".repeat(65)));
    }
}
