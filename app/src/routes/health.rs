//! `GET /health`: the liveness check that ECS, the ALB and the deployer call.
//!
//! It makes no outbound call, so a Databricks outage never marks the task
//! unhealthy and never makes ECS replace it.

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use crate::startup::AppState;

/// Body of a healthy `/health` response.
#[derive(Debug, Serialize)]
pub struct HealthBody {
    pub status: &'static str,
    /// `APP_VERSION`, or the crate version when `APP_VERSION` is unset.
    pub version: String,
}

pub async fn health(State(state): State<AppState>) -> Json<HealthBody> {
    Json(HealthBody {
        status: "ok",
        version: state.version().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use axum::body::{to_bytes, Body};
    use axum::http::{header, Request, StatusCode};
    use serde_json::{json, Value};
    use tower::ServiceExt;

    use crate::config::{Config, APP_VERSION};
    use crate::startup::{app, AppState};

    fn state_with_version(version: Option<&str>) -> AppState {
        let config = Config::from_lookup(|name| match (name, version) {
            (APP_VERSION, Some(version)) => Ok(version.to_string()),
            _ => Err(std::env::VarError::NotPresent),
        })
        .unwrap();
        AppState::new(config)
    }

    async fn get_health(state: AppState) -> (StatusCode, Option<String>, Value) {
        let request = Request::get("/health").body(Body::empty()).unwrap();
        let response = app(state).oneshot(request).await.unwrap();

        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| value.to_str().unwrap().to_string());
        let body = to_bytes(response.into_body(), 64 * 1024).await.unwrap();
        (status, content_type, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn health_reports_app_version() {
        let (status, content_type, body) = get_health(state_with_version(Some("3f2a9c1"))).await;

        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some("application/json"));
        assert_eq!(body, json!({ "status": "ok", "version": "3f2a9c1" }));
    }

    #[tokio::test]
    async fn health_falls_back_to_crate_version() {
        let (status, _, body) = get_health(state_with_version(None)).await;

        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    }
}
