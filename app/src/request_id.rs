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

/// The id of the request being handled, or a new random id outside a request.
pub fn current() -> String {
    REQUEST_ID
        .try_with(|id| id.clone())
        .ok()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}
