//! HTTP routes, one module per page or endpoint.

pub mod api;
pub mod auth;
pub mod chat;
pub mod error;
pub mod health;
pub mod home;
pub mod page;
pub mod summarize;

use axum::routing::{get, post};
use axum::Router;

use crate::config::DEFAULT_REDIRECT_PATH;
use crate::startup::AppState;

/// Returns every route of the app, before middleware. The OAuth callback sits at the
/// configured redirect path.
pub fn router(state: &AppState) -> Router<AppState> {
    let callback_path = state
        .config
        .oidc
        .as_ref()
        .map(|oidc| oidc.redirect_path.clone())
        .unwrap_or_else(|| DEFAULT_REDIRECT_PATH.to_owned());
    Router::new()
        .route("/", get(home::home))
        .route("/health", get(health::health))
        .route("/api/me", get(api::me))
        .route("/chat", get(chat::show))
        .route("/api/chat", post(chat::stream))
        .route("/summarize", get(summarize::show).post(summarize::submit))
        .route("/login", get(auth::login))
        .route("/logout", post(auth::logout))
        .route(&callback_path, get(auth::callback))
        .fallback(error::not_found)
}
