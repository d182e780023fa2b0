//! `GET /api/me`: the signed-in user and the access token's expiry, as JSON. It refreshes the
//! access token first when it is about to expire, as every page that calls Databricks does.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use axum_extra::extract::cookie::{Key, PrivateCookieJar};
use serde_json::json;

use crate::session::{fresh_session, SessionError};
use crate::startup::AppState;

pub async fn me(State(state): State<AppState>, jar: PrivateCookieJar<Key>) -> Response {
    match fresh_session(&state, jar).await {
        Ok((session, jar)) => {
            let body = json!({
                "subject": session.subject,
                "name": session.name,
                "email": session.email,
                "token_expires_at": session.expires_at,
            });
            (jar, Json(body)).into_response()
        }
        Err((error, jar)) => {
            let status = match error {
                SessionError::NotSignedIn | SessionError::RefreshFailed => StatusCode::UNAUTHORIZED,
                SessionError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            };
            (status, jar, Json(json!({ "error": error.code(), "message": error.to_string() }))).into_response()
        }
    }
}
