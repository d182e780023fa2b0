//! Building the router with its middleware, and running the HTTP server until
//! SIGTERM or Ctrl-C.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::body::Body;
use axum::http::Request;
use axum::Router;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use axum::http::{header, HeaderValue};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::{info, Level, Span};

use axum::extract::FromRef;
use axum_extra::extract::cookie::Key;

use crate::auth::{Provider, Refresher};
use crate::config::{Config, DEFAULT_SERVING_ENDPOINT};
use crate::serving::ServingClient;
use crate::routes;
use crate::session::CookieSettings;

/// Header that carries the request id. A request that already has one keeps
/// it, and the app generates a UUID v4 for a request that has none.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// State shared by every handler. Cloning it is cheap.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    version: Arc<str>,
    provider: Option<Arc<Provider>>,
    cookie_key: Key,
    cookies: CookieSettings,
    refresher: Arc<Refresher>,
    serving: Option<Arc<ServingClient>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AppState")
            .field("config", &self.config)
            .field("version", &self.version)
            .field("cookie_key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl FromRef<AppState> for Key {
    fn from_ref(state: &AppState) -> Self {
        state.cookie_key.clone()
    }
}

impl AppState {
    pub fn new(config: Config) -> Self {
        let version = config
            .app_version
            .clone()
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
        // Without sign-in no cookie outlives the process, so a random key serves.
        let cookie_key = match &config.oidc {
            Some(oidc) => Key::from(&oidc.session_key.expose_bytes()),
            None => Key::generate(),
        };
        let cookies = CookieSettings {
            secure: config.oidc.as_ref().is_none_or(|oidc| oidc.cookie_secure),
        };
        let provider = config.oidc.clone().map(|oidc| Arc::new(Provider::new(oidc)));
        let serving = config.oidc.as_ref().and_then(|oidc| {
            let base = config.serving_url.as_deref().unwrap_or(&oidc.host);
            let endpoint = config.serving_endpoint.as_deref().unwrap_or(DEFAULT_SERVING_ENDPOINT);
            match ServingClient::new(base, endpoint, config.serving_timeout) {
                Ok(client) => Some(Arc::new(client)),
                Err(error) => {
                    tracing::error!(%error, "invalid Model Serving settings; summaries are off");
                    None
                }
            }
        });
        Self {
            config: Arc::new(config),
            version: version.into(),
            provider,
            cookie_key,
            cookies,
            refresher: Arc::default(),
            serving,
        }
    }

    /// The OpenID provider, when sign-in is configured.
    pub fn provider(&self) -> Option<&Provider> {
        self.provider.as_deref()
    }

    pub fn cookies(&self) -> &CookieSettings {
        &self.cookies
    }

    pub fn refresher(&self) -> &Arc<Refresher> {
        &self.refresher
    }

    /// The Model Serving client, when sign-in is configured.
    pub fn serving(&self) -> Option<&ServingClient> {
        self.serving.as_deref()
    }

    /// Returns `APP_VERSION`, or the crate version when it is unset.
    pub fn version(&self) -> &str {
        &self.version
    }
}

/// Builds the app: every route, with request ids and request logging.
pub fn app(state: AppState) -> Router {
    // Layers run top to bottom on the request, so the id is set before the
    // trace span is created and copied to the response after the handler.
    let middleware = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(axum::middleware::from_fn(crate::request_id::scope))
        .layer(header_layer(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header_layer(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header_layer(header::REFERRER_POLICY, "same-origin"))
        .layer(header_layer(header::CACHE_CONTROL, "no-store"))
        .layer(header_layer(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY));

    routes::router(&state).with_state(state).layer(middleware)
}

/// Scripts, styles and requests only from this app (the chat page's script and the pages'
/// styles are inline), and no framing by other sites.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'";

/// Sets `name` on every response that does not set it itself.
fn header_layer(name: header::HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

/// Creates the span that every log line of one request carries. It records the
/// path without the query string, because OAuth callbacks carry the
/// authorization code and state there.
fn request_span(request: &Request<Body>) -> Span {
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-");

    tracing::info_span!(
        "request",
        request_id,
        method = %request.method(),
        path = request.uri().path(),
    )
}

/// Binds `APP_BIND_ADDR:PORT` and serves the app until SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let address = SocketAddr::new(config.bind_addr, config.port);
    let listener = TcpListener::bind(address).await.with_context(|| {
        format!(
            "failed to listen on `{address}`; stop the process that uses port `{}` or set `PORT` to a free port",
            config.port
        )
    })?;

    log_settings(&config, listener.local_addr()?);
    run_until(listener, AppState::new(config), shutdown_signal()).await?;
    info!("server stopped");
    Ok(())
}

/// Serves the app on `listener` until `shutdown` completes, then waits for
/// open requests to finish.
// NOTE: the wait for open requests has no bound of its own. ECS sends SIGKILL
// when the task definition's stop timeout (30 s by default) runs out.
pub async fn run_until(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
        .context("HTTP server failed")
}

/// Logs where the server listens and which optional settings are present,
/// never their secret values.
fn log_settings(config: &Config, local_addr: SocketAddr) {
    info!(
        address = %local_addr,
        version = config.app_version.as_deref().unwrap_or(env!("CARGO_PKG_VERSION")),
        databricks_host = config.databricks_host.as_deref(),
        databricks_client_id_set = config.databricks_client_id.is_some(),
        databricks_client_secret_set = config.databricks_client_secret.is_some(),
        session_key_set = config.session_key.is_some(),
        serving_endpoint = config.serving_endpoint.as_deref(),
        "listening"
    );
}

/// Completes on the first SIGTERM (what ECS sends to stop a task) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => info!("received Ctrl-C, shutting down"),
            Err(error) => {
                tracing::error!(%error, "failed to listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    };

    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};

        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
                info!("received SIGTERM, shutting down");
            }
            Err(error) => {
                tracing::error!(%error, "failed to listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };

    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    fn test_state() -> AppState {
        AppState::new(Config::from_lookup(|_| Err(std::env::VarError::NotPresent)).unwrap())
    }

    async fn response_request_id(request: Request<Body>) -> (StatusCode, Option<String>) {
        let response = app(test_state()).oneshot(request).await.unwrap();
        let request_id = response
            .headers()
            .get(REQUEST_ID_HEADER)
            .map(|value| value.to_str().unwrap().to_string());
        (response.status(), request_id)
    }

    #[tokio::test]
    async fn request_id_generated_when_absent() {
        let request = Request::get("/health").body(Body::empty()).unwrap();

        let (status, request_id) = response_request_id(request).await;

        assert_eq!(status, StatusCode::OK);
        let request_id = request_id.expect("response has no x-request-id header");
        // A hyphenated UUID: 8-4-4-4-12 hex digits.
        assert_eq!(request_id.len(), 36, "{request_id}");
        assert_eq!(request_id.matches('-').count(), 4, "{request_id}");
    }

    #[tokio::test]
    async fn request_id_propagated_from_client() {
        let request = Request::get("/health")
            .header(REQUEST_ID_HEADER, "client-chosen-id")
            .body(Body::empty())
            .unwrap();

        let (_, request_id) = response_request_id(request).await;

        assert_eq!(request_id.as_deref(), Some("client-chosen-id"));
    }

    #[tokio::test]
    async fn request_id_on_not_found() {
        let request = Request::get("/no-such-page").body(Body::empty()).unwrap();

        let (status, request_id) = response_request_id(request).await;

        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(request_id.is_some());
    }

    #[tokio::test]
    async fn request_ids_differ_between_requests() {
        let first = Request::get("/health").body(Body::empty()).unwrap();
        let second = Request::get("/health").body(Body::empty()).unwrap();

        let (_, first_id) = response_request_id(first).await;
        let (_, second_id) = response_request_id(second).await;

        assert_ne!(first_id, second_id);
    }
}
