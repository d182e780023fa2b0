//! Error pages: a friendly message with the request id for the user, the cause in the log.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

#[derive(Debug, Clone, Copy)]
pub enum ErrorKind {
    NotFound,
    NotConfigured,
    LoginFailed,
    Forbidden,
}

impl ErrorKind {
    fn status(self) -> StatusCode {
        match self {
            ErrorKind::NotFound | ErrorKind::NotConfigured => StatusCode::NOT_FOUND,
            ErrorKind::LoginFailed => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        }
    }

    /// Returns the English and Japanese text shown to the user.
    fn text(self) -> (&'static str, &'static str) {
        match self {
            ErrorKind::NotFound => ("This page does not exist.", "このページは存在しません。"),
            ErrorKind::NotConfigured => ("Sign-in is not configured for this app.", "このアプリではサインインが設定されていません。"),
            ErrorKind::LoginFailed => ("Sign-in failed. Please try again.", "サインインに失敗しました。もう一度お試しください。"),
            ErrorKind::Forbidden => (
                "This request was rejected. Reload the page and try again.",
                "このリクエストは拒否されました。ページを再読み込みしてもう一度お試しください。",
            ),
        }
    }
}

/// Logs a rejected request and returns the page that shows the request id.
pub fn rejected(kind: ErrorKind) -> Response {
    let error_id = crate::request_id::current();
    tracing::info!(%error_id, kind = ?kind, "request rejected");
    page(kind, &error_id)
}

/// Logs `cause` and returns the page that shows the request id, which the log line carries too.
pub fn failed(kind: ErrorKind, cause: &dyn std::error::Error) -> Response {
    let error_id = crate::request_id::current();
    tracing::warn!(%error_id, kind = ?kind, error = %cause, "request failed");
    page(kind, &error_id)
}

fn page(kind: ErrorKind, error_id: &str) -> Response {
    let (english, japanese) = kind.text();
    let error_id = escape(error_id);
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Error</title></head><body>\
         <h1>{english}</h1><p lang=\"ja\">{japanese}</p><p>Error id / エラー ID: <code>{error_id}</code></p>\
         <p><a href=\"/\">Home / ホーム</a></p></body></html>"
    );
    (kind.status(), Html(body)).into_response()
}

/// Escapes text for HTML element content and attribute values, for this page, which is not an askama template.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#x27;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// The page for a path that no route serves.
pub async fn not_found() -> Response {
    rejected(ErrorKind::NotFound)
}
