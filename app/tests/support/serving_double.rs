//! A Databricks Model Serving test double on 127.0.0.1, run inside the app's test processes and,
//! through the `serving_double` example, by the local demo.
//!
//! It serves `POST /serving-endpoints/{name}/invocations` with the wire format of a chat endpoint:
//! a `chat.completion` object, or with `"stream": true` a `text/event-stream` of
//! `chat.completion.chunk` events ending with `data: [DONE]`. The bearer token must be an RS256
//! access token (`typ: at+jwt`) of the test OpenID provider, checked against its JWKS with `iss`,
//! `aud` and `exp`. Errors have Databricks' body shape, `{"error_code": "...", "message": "..."}`.
//!
//! The completion is `要約: ` followed by the first 20 characters of the last user message, so tests
//! can assert on it. Tests register endpoints, queue faults per endpoint, and read request counts.
//! Dropping the double stops its server and releases requests that hang.


#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt as _;
use axum::{Json, Router};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{watch, RwLock};

/// The `aud` of a Databricks workspace access token.
pub const WORKSPACE_AUDIENCE: &str = "urn:databricks:workspace";
/// The scope that Model Serving calls need.
pub const REQUIRED_SCOPE: &str = "all-apis";
/// The wait before each frame of a streamed completion.
pub const CHUNK_DELAY: Duration = Duration::from_millis(50);
/// Characters per streamed content piece.
const PIECE_CHARS: usize = 4;
/// Characters of the last user message that the completion repeats.
const QUOTED_CHARS: usize = 20;
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A scripted failure for the next request to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 429 `REQUEST_LIMIT_EXCEEDED`, with `Retry-After` in seconds when set.
    RateLimited { retry_after: Option<u64> },
    /// 503 `TEMPORARILY_UNAVAILABLE`.
    Unavailable,
    /// No response until the double is dropped.
    Hang,
    /// A streamed completion that sends its first content piece, then nothing until the double is
    /// dropped. A request without `"stream": true` gets a normal completion.
    StallAfterFirstPiece,
}

/// The running double. Dropping it stops the server.
pub struct ServingDouble {
    host: String,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

struct Shared {
    issuer: String,
    jwks_uri: String,
    http: reqwest::Client,
    keys: RwLock<JwkSet>,
    jwks_fetches: AtomicUsize,
    endpoints: Mutex<HashMap<String, Endpoint>>,
    stopped: watch::Receiver<bool>,
}

/// The state of one endpoint name, registered or not.
#[derive(Default)]
struct Endpoint {
    exists: bool,
    forbidden: bool,
    faults: VecDeque<Fault>,
    requests: usize,
    /// `sub` of each request with a valid token.
    subjects: Vec<String>,
    last_body: Option<Value>,
    /// When each frame of the latest streamed completion was handed to the server.
    stream_frames_sent_at: Arc<Mutex<Vec<Instant>>>,
}

/// Fetches the provider's discovery document and returns its `jwks_uri`.
pub async fn discover_jwks_uri(issuer: &str) -> String {
    let url = format!("{issuer}/.well-known/openid-configuration");
    let http = reqwest::Client::builder().timeout(HTTP_TIMEOUT).build().unwrap();
    let document: Value = http
        .get(&url)
        .send()
        .await
        .and_then(|response| response.error_for_status())
        .unwrap_or_else(|e| panic!("GET {url} failed: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("invalid discovery document at {url}: {e}"));
    document["jwks_uri"]
        .as_str()
        .unwrap_or_else(|| panic!("no `jwks_uri` in the discovery document at {url}"))
        .to_owned()
}

impl ServingDouble {
    /// Fetches the signing keys from `jwks_uri` and starts serving on a free port of 127.0.0.1.
    /// Tokens must have `iss` equal to `issuer`.
    pub async fn start(issuer: &str, jwks_uri: &str) -> Self {
        Self::start_on(issuer, jwks_uri, 0).await
    }

    /// Like [`ServingDouble::start`], on `port` of 127.0.0.1 (0 picks a free one).
    pub async fn start_on(issuer: &str, jwks_uri: &str, port: u16) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .unwrap();
        let keys = fetch_jwks(&http, jwks_uri).await.unwrap_or_else(|e| panic!("{e}"));
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("failed to listen on 127.0.0.1:{port}: {e}"));
        let host = format!("http://{}", listener.local_addr().unwrap());
        // TCP_NODELAY sends each frame of a streamed completion at once, so the client gets the
        // frames as separate reads.
        let listener = listener.tap_io(|stream| stream.set_nodelay(true).unwrap());

        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            issuer: issuer.to_owned(),
            jwks_uri: jwks_uri.to_owned(),
            http,
            keys: RwLock::new(keys),
            jwks_fetches: AtomicUsize::new(1),
            endpoints: Mutex::new(HashMap::new()),
            stopped: stopped.clone(),
        });
        let router = Router::new()
            .route("/serving-endpoints/{name}/invocations", post(invoke))
            .with_state(shared.clone());
        let mut shutdown = stopped;
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = shutdown.wait_for(|stop| *stop).await;
                })
                .await
        });

        ServingDouble { host, shared, stop }
    }

    /// Returns the base URL to give the client as the workspace host, such as `http://127.0.0.1:41234`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Makes `name` a serving endpoint. Requests to other names get 404 `RESOURCE_DOES_NOT_EXIST`.
    pub fn add_endpoint(&self, name: &str) {
        self.with_endpoint(name, |endpoint| endpoint.exists = true);
    }

    /// Makes every request to `name` fail with 403 `PERMISSION_DENIED`.
    pub fn forbid(&self, name: &str) {
        self.with_endpoint(name, |endpoint| endpoint.forbidden = true);
    }

    /// Queues `fault` for the next `times` requests to `name` that carry a valid token.
    pub fn fail_next(&self, name: &str, fault: Fault, times: usize) {
        self.with_endpoint(name, |endpoint| {
            endpoint.faults.extend(std::iter::repeat_n(fault, times))
        });
    }

    /// Returns how many requests reached `name`, with or without a valid token.
    pub fn requests(&self, name: &str) -> usize {
        self.with_endpoint(name, |endpoint| endpoint.requests)
    }

    /// Returns the `sub` of each request to `name` that had a valid token.
    pub fn subjects(&self, name: &str) -> Vec<String> {
        self.with_endpoint(name, |endpoint| endpoint.subjects.clone())
    }

    /// Returns the JSON body of the latest request to `name` that had a valid token.
    pub fn last_body(&self, name: &str) -> Option<Value> {
        self.with_endpoint(name, |endpoint| endpoint.last_body.clone())
    }

    /// Returns when each frame of the latest streamed completion of `name` was handed to the server.
    pub fn stream_frames_sent_at(&self, name: &str) -> Vec<Instant> {
        self.with_endpoint(name, |endpoint| endpoint.stream_frames_sent_at.lock().unwrap().clone())
    }

    /// Returns how often the JWKS was fetched, the fetch at start included.
    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    fn with_endpoint<T>(&self, name: &str, action: impl FnOnce(&mut Endpoint) -> T) -> T {
        let mut endpoints = self.shared.endpoints.lock().unwrap();
        action(endpoints.entry(name.to_owned()).or_default())
    }
}

impl Drop for ServingDouble {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn fetch_jwks(http: &reqwest::Client, jwks_uri: &str) -> Result<JwkSet, String> {
    let response = http
        .get(jwks_uri)
        .send()
        .await
        .and_then(|response| response.error_for_status())
        .map_err(|e| format!("GET {jwks_uri} failed: {e}"))?;
    response
        .json()
        .await
        .map_err(|e| format!("invalid JWKS at {jwks_uri}: {e}"))
}

/// The access token claims that the double reads after the signature and `iss`, `aud` and `exp`
/// have been checked.
#[derive(Debug, Deserialize)]
struct AccessClaims {
    sub: String,
    #[serde(default)]
    scope: String,
}

enum AuthFailure {
    /// 401 `UNAUTHENTICATED`, with the reason.
    Unauthenticated(String),
    /// 403 `PERMISSION_DENIED`: a valid token without the `all-apis` scope.
    MissingScope,
}

impl Shared {
    /// Verifies the bearer token and returns its claims.
    async fn authenticate(&self, headers: &HeaderMap) -> Result<AccessClaims, AuthFailure> {
        let unauthenticated = |reason: String| AuthFailure::Unauthenticated(reason);
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| unauthenticated("missing bearer token in the `Authorization` header".to_owned()))?;

        let token_header =
            jsonwebtoken::decode_header(token).map_err(|e| unauthenticated(format!("invalid token: {e}")))?;
        if token_header.alg != Algorithm::RS256 {
            return Err(unauthenticated(format!(
                "invalid token algorithm `{:?}`",
                token_header.alg
            )));
        }
        let typ = token_header.typ.as_deref().unwrap_or_default().to_ascii_lowercase();
        if typ != "at+jwt" && typ != "application/at+jwt" {
            return Err(unauthenticated(format!(
                "invalid token type `{typ}`, expected `at+jwt`"
            )));
        }
        let kid = token_header
            .kid
            .ok_or_else(|| unauthenticated("the token has no `kid`".to_owned()))?;
        let key = self.key(&kid).await.map_err(unauthenticated)?;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.set_audience(&[WORKSPACE_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
            .map_err(|e| unauthenticated(format!("invalid token: {e}")))?
            .claims;

        if !claims.scope.split(' ').any(|scope| scope == REQUIRED_SCOPE) {
            return Err(AuthFailure::MissingScope);
        }
        Ok(claims)
    }

    /// Returns the key with id `kid`, fetching the JWKS once more when the key is not known.
    async fn key(&self, kid: &str) -> Result<DecodingKey, String> {
        if let Some(jwk) = self.keys.read().await.find(kid) {
            return DecodingKey::from_jwk(jwk).map_err(|e| format!("invalid key `{kid}`: {e}"));
        }

        let keys = fetch_jwks(&self.http, &self.jwks_uri).await?;
        self.jwks_fetches.fetch_add(1, Ordering::SeqCst);
        let mut cached = self.keys.write().await;
        *cached = keys;
        let jwk = cached.find(kid).ok_or_else(|| format!("unknown signing key `{kid}`"))?;
        DecodingKey::from_jwk(jwk).map_err(|e| format!("invalid key `{kid}`: {e}"))
    }

    /// Waits until the double is dropped.
    async fn until_stopped(&self) {
        let mut stopped = self.stopped.clone();
        let _ = stopped.wait_for(|stop| *stop).await;
    }
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    messages: Vec<ChatMessage>,
    max_tokens: Option<usize>,
    #[serde(default)]
    stream: bool,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    content: String,
}

/// The response chosen for a request that passed the token check.
enum Decision {
    NotFound,
    Forbidden,
    Fault(Fault),
    Answer {
        stall: bool,
        frames_sent_at: Arc<Mutex<Vec<Instant>>>,
    },
}

async fn invoke(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared
        .endpoints
        .lock()
        .unwrap()
        .entry(name.clone())
        .or_default()
        .requests += 1;

    let claims = match shared.authenticate(&headers).await {
        Ok(claims) => claims,
        Err(AuthFailure::Unauthenticated(reason)) => {
            return databricks_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", &reason);
        }
        Err(AuthFailure::MissingScope) => {
            let message = format!("the access token lacks the `{REQUIRED_SCOPE}` scope");
            return databricks_error(StatusCode::FORBIDDEN, "PERMISSION_DENIED", &message);
        }
    };
    let request: ChatRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return databricks_error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("invalid request body: {e}"),
            )
        }
    };
    if let Some(message) = request
        .messages
        .iter()
        .find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant"))
    {
        let text = format!("invalid role `{}`", message.role);
        return databricks_error(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", &text);
    }

    let decision = decide(&shared, &name, claims.sub, &body, request.stream);
    match decision {
        Decision::NotFound => databricks_error(
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
            &format!("The given endpoint `{name}` does not exist"),
        ),
        Decision::Forbidden => databricks_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            &format!("the user may not query the endpoint `{name}`"),
        ),
        Decision::Fault(Fault::RateLimited { retry_after }) => {
            let mut response = databricks_error(
                StatusCode::TOO_MANY_REQUESTS,
                "REQUEST_LIMIT_EXCEEDED",
                "Exceeded workspace rate limit for this endpoint, please retry later",
            );
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            response
        }
        Decision::Fault(Fault::Unavailable) => databricks_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "TEMPORARILY_UNAVAILABLE",
            "The service is temporarily unavailable, please retry later",
        ),
        Decision::Fault(Fault::Hang) => {
            shared.until_stopped().await;
            databricks_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "TEMPORARILY_UNAVAILABLE",
                "the test double stopped",
            )
        }
        Decision::Fault(Fault::StallAfterFirstPiece) => unreachable!("`decide` turns this fault into a stalled stream"),
        Decision::Answer { stall, frames_sent_at } => {
            let (content, finish_reason) = completion_text(&request);
            if request.stream {
                stream_completion(&shared, &name, &content, finish_reason, stall, frames_sent_at)
            } else {
                Json(completion(&name, &request, &content, finish_reason)).into_response()
            }
        }
    }
}

/// Records the request and picks its response: 404, 403, the next queued fault, or a completion.
fn decide(shared: &Shared, name: &str, subject: String, body: &[u8], stream: bool) -> Decision {
    let mut endpoints = shared.endpoints.lock().unwrap();
    let endpoint = endpoints.entry(name.to_owned()).or_default();
    endpoint.subjects.push(subject);
    endpoint.last_body = serde_json::from_slice(body).ok();

    if !endpoint.exists {
        return Decision::NotFound;
    }
    if endpoint.forbidden {
        return Decision::Forbidden;
    }
    let stall = match endpoint.faults.pop_front() {
        Some(Fault::StallAfterFirstPiece) => stream,
        Some(fault) => return Decision::Fault(fault),
        None => false,
    };
    if stream {
        endpoint.stream_frames_sent_at = Arc::new(Mutex::new(Vec::new()));
    }
    Decision::Answer {
        stall,
        frames_sent_at: endpoint.stream_frames_sent_at.clone(),
    }
}

/// Returns the completion for the last user message and its `finish_reason`. With `max_tokens`,
/// the completion is cut to that many characters (the double counts one token per character).
fn completion_text(request: &ChatRequest) -> (String, &'static str) {
    let last_user = request
        .messages
        .iter()
        .rev()
        .find(|message| message.role == "user")
        .map(|message| message.content.as_str())
        .unwrap_or_default();
    let content = format!("要約: {}", last_user.chars().take(QUOTED_CHARS).collect::<String>());
    match request.max_tokens {
        Some(limit) if content.chars().count() > limit => (content.chars().take(limit).collect(), "length"),
        _ => (content, "stop"),
    }
}

fn databricks_error(status: StatusCode, error_code: &str, message: &str) -> Response {
    (status, Json(json!({ "error_code": error_code, "message": message }))).into_response()
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn completion(name: &str, request: &ChatRequest, content: &str, finish_reason: &str) -> Value {
    let prompt_tokens: usize = request.messages.iter().map(|m| m.content.chars().count()).sum();
    let completion_tokens = content.chars().count();
    json!({
        "id": format!("chatcmpl-double-{}", uuid::Uuid::new_v4()),
        "object": "chat.completion",
        "created": unix_now(),
        "model": name,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content },
            "finish_reason": finish_reason,
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    })
}

/// One write of a streamed completion.
enum Frame {
    /// Bytes sent after [`CHUNK_DELAY`].
    Send(Vec<u8>),
    /// No more bytes until the double is dropped; then the body ends without `[DONE]`.
    Stall,
}

/// Builds the event stream: a role chunk, one chunk per few characters, a chunk with the
/// `finish_reason`, then `[DONE]`. The first content event goes out in two frames cut inside a
/// character, so the client must join reads.
fn stream_completion(
    shared: &Arc<Shared>,
    name: &str,
    content: &str,
    finish_reason: &'static str,
    stall: bool,
    frames_sent_at: Arc<Mutex<Vec<Instant>>>,
) -> Response {
    let id = format!("chatcmpl-double-{}", uuid::Uuid::new_v4());
    let created = unix_now();
    let event = |delta: Value, finish_reason: Option<&str>| {
        let chunk = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": name,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason }],
        });
        format!("data: {chunk}\n\n").into_bytes()
    };

    let mut frames = vec![Frame::Send(event(json!({ "role": "assistant", "content": "" }), None))];
    let characters: Vec<char> = content.chars().collect();
    for (index, piece) in characters.chunks(PIECE_CHARS).enumerate() {
        let bytes = event(json!({ "content": piece.iter().collect::<String>() }), None);
        if index == 0 {
            let cut = first_cut_inside_character(&bytes);
            frames.push(Frame::Send(bytes[..cut].to_vec()));
            frames.push(Frame::Send(bytes[cut..].to_vec()));
        } else {
            frames.push(Frame::Send(bytes));
        }
        if index == 0 && stall {
            frames.push(Frame::Stall);
        }
    }
    frames.push(Frame::Send(event(json!({}), Some(finish_reason))));
    frames.push(Frame::Send(b"data: [DONE]\n\n".to_vec()));

    let state = (frames.into_iter(), shared.clone(), frames_sent_at);
    let body = futures::stream::unfold(state, |(mut frames, shared, sent_at)| async move {
        match frames.next()? {
            Frame::Send(bytes) => {
                tokio::time::sleep(CHUNK_DELAY).await;
                sent_at.lock().unwrap().push(Instant::now());
                Some((Ok::<_, Infallible>(Bytes::from(bytes)), (frames, shared, sent_at)))
            }
            Frame::Stall => {
                shared.until_stopped().await;
                None
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// Returns an offset inside the first multi-byte character of `bytes`, or the middle when all
/// characters are ASCII.
fn first_cut_inside_character(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|byte| *byte >= 0x80)
        .map(|start| start + 1)
        .unwrap_or(bytes.len() / 2)
}
