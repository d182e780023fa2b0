//! HTTP routes, one module per page or endpoint.

pub mod health;
pub mod home;

use axum::routing::get;
use axum::Router;

use crate::startup::AppState;

/// Returns every route of the app, before middleware.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home::home))
        .route("/health", get(health::health))
}
