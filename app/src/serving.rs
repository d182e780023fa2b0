//! The Databricks Model Serving client: chat completions on one serving endpoint, sent with the
//! signed-in user's own access token.
//!
//! Each call is `POST {host}/serving-endpoints/{name}/invocations` with an OpenAI-style chat body.
//! [`ServingClient::complete`] returns the whole completion. [`ServingClient::stream`] reads the
//! server-sent events of a `"stream": true` call and yields each content piece as it arrives.
//! Answers 429 and 5xx are retried with exponential backoff and jitter, a bounded number of times
//! and within the call's timeout. Every failure becomes a [`ServingError`] whose
//! [`kind`](ServingError::kind) the pages map to text, while its `Display` keeps the status and
//! Databricks' `error_code` and `message` for the log.
//!
//! The access token is sent only in the `Authorization` header. It is never logged and never
//! part of an error.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt as _};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use url::Url;

/// Characters left as they are in the endpoint's path segment: the unreserved set of RFC 3986.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// The maximum length of an error body kept for the log, in bytes.
const MAX_ERROR_BODY: usize = 16 * 1024;
/// The maximum size of a non-streaming response body, in bytes.
const MAX_RESPONSE_BODY: usize = 8 * 1024 * 1024;
/// The maximum length of a server-sent event line, in bytes, so a stream without line ends cannot
/// grow the buffer without bound.
const MAX_SSE_LINE: usize = 1024 * 1024;
/// How long a stream may last in all, unless [`ServingClient::with_max_stream_duration`] sets it.
// NOTE: a chosen default, not a Databricks limit.
const DEFAULT_MAX_STREAM_DURATION: Duration = Duration::from_secs(10 * 60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The author of one chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One message of the conversation sent to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// When and how often a call that failed with 429 or 5xx is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
    /// The backoff before the second attempt. It doubles for each later attempt, and a random
    /// jitter takes up to half of it away.
    pub base_delay: Duration,
    /// The maximum backoff computed from `base_delay`.
    pub max_delay: Duration,
    /// The maximum wait that a `Retry-After` header can request.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// Returns the wait before the attempt after `attempt` (counted from 1): the server's
    /// `Retry-After` capped at `max_retry_after` when it sent one, else the exponential backoff
    /// with jitter.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.max_retry_after);
        }

        let doublings = attempt.saturating_sub(1).min(16);
        let backoff = self.base_delay.saturating_mul(1 << doublings).min(self.max_delay);
        let half = backoff / 2;
        let jitter_ms = rand::thread_rng().gen_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }
}

/// A client for one Model Serving endpoint. Clone it freely: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct ServingClient {
    http: reqwest::Client,
    endpoint: String,
    url: Url,
    timeout: Duration,
    max_stream_duration: Duration,
    retry: RetryPolicy,
}

/// An invalid host or endpoint name given to [`ServingClient::new`].
#[derive(Debug, thiserror::Error)]
pub enum ServingConfigError {
    #[error("invalid Databricks host `{host}`")]
    InvalidHost {
        host: String,
        #[source]
        source: url::ParseError,
    },
    #[error("invalid serving endpoint name `{0}`: set the name shown on the workspace's Serving page")]
    InvalidEndpointName(String),
}

impl ServingClient {
    /// Builds a client for `endpoint` on the workspace at `host` (with its scheme, such as
    /// `https://adb-1234567890123456.7.azuredatabricks.net`).
    ///
    /// `timeout` bounds each call. For [`complete`](Self::complete) it covers every attempt, the
    /// backoff between them and the reading of the response body. For [`stream`](Self::stream) it
    /// covers the same up to the first content piece, and then each wait for the next piece.
    pub fn new(host: &str, endpoint: &str, timeout: Duration) -> Result<Self, ServingConfigError> {
        let url = invocations_url(host, endpoint)?;
        // No redirects: the bearer token must reach the workspace and nothing else.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .build()
            .expect("a client with no custom TLS settings always builds");
        Ok(Self {
            http,
            endpoint: endpoint.to_owned(),
            url,
            timeout,
            max_stream_duration: DEFAULT_MAX_STREAM_DURATION,
            retry: RetryPolicy::default(),
        })
    }

    /// Replaces the retry policy (3 attempts, 250 ms base backoff, `Retry-After` capped at 5 s).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets how long a stream may last in all, from the call to its last piece (default 10 min).
    pub fn with_max_stream_duration(mut self, limit: Duration) -> Self {
        self.max_stream_duration = limit;
        self
    }

    /// Returns the serving endpoint's name, as given to [`new`](Self::new).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Returns the endpoint's invocations URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Sends `messages` and returns the whole completion, `choices[0].message.content`.
    #[tracing::instrument(name = "serving_complete", skip_all, fields(endpoint = %self.endpoint))]
    pub async fn complete(
        &self,
        token: &str,
        messages: &[ChatMessage],
        max_tokens: u32,
    ) -> Result<String, ServingError> {
        let request = ChatRequest {
            messages,
            max_tokens,
            stream: false,
        };
        let deadline = Instant::now() + self.timeout;
        self.with_retries(deadline, || self.attempt_complete(token, &request))
            .await
    }

    /// Sends `messages` with `"stream": true` and returns the completion as a stream of content
    /// pieces (`choices[0].delta.content`), each yielded as soon as its event arrives.
    ///
    /// The call returns once the first piece has arrived, so a failure before any text (an error
    /// status, a broken connection, a timeout) is this function's `Err`, and only those failures
    /// are retried. After that a failure is the stream's last item. A completion with no text at all
    /// gives an empty stream.
    #[tracing::instrument(name = "serving_stream", skip_all, fields(endpoint = %self.endpoint))]
    pub async fn stream(
        &self,
        token: &str,
        messages: &[ChatMessage],
        max_tokens: u32,
    ) -> Result<impl Stream<Item = Result<String, ServingError>> + Send + 'static, ServingError> {
        let request = ChatRequest {
            messages,
            max_tokens,
            stream: true,
        };
        let started = Instant::now();
        let deadline = started + self.timeout;
        let (first, reader) = self
            .with_retries(deadline, || self.attempt_stream(token, &request, deadline))
            .await?;

        let state = PieceStream {
            first,
            reader,
            idle_timeout: self.timeout,
            end: started + self.max_stream_duration,
            max_duration: self.max_stream_duration,
            stopped: false,
        };
        Ok(futures::stream::unfold(state, PieceStream::next))
    }

    /// Runs `attempt` until it succeeds, fails for good, or the policy or `deadline` allows no
    /// further attempt. The failure of the last attempt is the result.
    async fn with_retries<T, F, Fut>(&self, deadline: Instant, mut attempt: F) -> Result<T, ServingError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut number = 1;
        loop {
            let failure = match tokio::time::timeout_at(deadline, attempt()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(failure)) => failure,
                Err(_elapsed) => return Err(ServingError::Timeout { after: self.timeout }),
            };
            let error = failure.error.with_attempts(number);
            let Some(retry_after) = failure.retry else {
                return Err(error);
            };
            if number >= self.retry.max_attempts {
                return Err(error);
            }

            let delay = self.retry.delay(number, retry_after);
            if Instant::now() + delay >= deadline {
                tracing::warn!(
                    attempt = number,
                    delay_ms = delay.as_millis() as u64,
                    %error,
                    "no time left for another Model Serving attempt before the timeout"
                );
                return Err(error);
            }
            tracing::warn!(
                attempt = number,
                delay_ms = delay.as_millis() as u64,
                %error,
                "retrying the Model Serving call after a failed attempt"
            );
            tokio::time::sleep(delay).await;
            number += 1;
        }
    }

    async fn send(&self, token: &str, request: &ChatRequest<'_>) -> Result<reqwest::Response, Failure> {
        let mut builder = self.http.post(self.url.clone()).bearer_auth(token).json(request);
        if request.stream {
            builder = builder.header(reqwest::header::ACCEPT, "text/event-stream");
        }
        let response = builder
            .send()
            .await
            .map_err(|e| Failure::fatal(ServingError::Network(e)))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.status_failure(response).await)
        }
    }

    async fn attempt_complete(&self, token: &str, request: &ChatRequest<'_>) -> Result<String, Failure> {
        let mut response = self.send(token, request).await?;

        let (body, truncated) = read_body(&mut response, MAX_RESPONSE_BODY)
            .await
            .map_err(|e| Failure::fatal(ServingError::Network(e)))?;
        if truncated {
            let reason = format!("the response body is larger than {MAX_RESPONSE_BODY} bytes");
            return Err(Failure::fatal(ServingError::InvalidResponse(reason)));
        }
        parse_completion(&body).map_err(Failure::fatal)
    }

    /// Sends a streaming request and reads up to the first content piece. A broken connection
    /// before that piece is retried like a 5xx response, because the caller has seen nothing yet.
    async fn attempt_stream(
        &self,
        token: &str,
        request: &ChatRequest<'_>,
        deadline: Instant,
    ) -> Result<(Option<String>, PieceReader), Failure> {
        let mut response = self.send(token, request).await?;

        // An endpoint that cannot stream may return one `chat.completion` object instead.
        if !is_event_stream(&response) {
            let (body, truncated) = read_body(&mut response, MAX_RESPONSE_BODY)
                .await
                .map_err(|e| Failure::fatal(ServingError::Network(e)))?;
            if truncated {
                let reason = format!("the response body is larger than {MAX_RESPONSE_BODY} bytes");
                return Err(Failure::fatal(ServingError::InvalidResponse(reason)));
            }
            let content = parse_completion(&body).map_err(Failure::fatal)?;
            return Ok((Some(content).filter(|text| !text.is_empty()), PieceReader::finished()));
        }

        let mut reader = PieceReader::new(response.bytes_stream().boxed());
        match reader.next_piece(deadline, self.timeout).await {
            Ok(first) => Ok((first, reader)),
            Err(error @ ServingError::Network(_)) => Err(Failure::retry(error, None)),
            Err(error) => Err(Failure::fatal(error)),
        }
    }

    /// Turns an error status into its [`ServingError`], keeping Databricks' error body.
    async fn status_failure(&self, mut response: reqwest::Response) -> Failure {
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        // An error body cut short by a broken connection still has a status worth reporting.
        let body = read_body(&mut response, MAX_ERROR_BODY)
            .await
            .map(|(body, _truncated)| body)
            .unwrap_or_default();
        let response = ErrorResponse::parse(status, &body);

        match status {
            401 => Failure::fatal(ServingError::Unauthorized(response)),
            403 => Failure::fatal(ServingError::Forbidden(response)),
            404 => Failure::fatal(ServingError::NotFound {
                endpoint: self.endpoint.clone(),
                response,
            }),
            429 => Failure::retry(ServingError::RateLimited { attempts: 1, response }, retry_after),
            500..=599 => Failure::retry(ServingError::Server { attempts: 1, response }, retry_after),
            400..=499 => Failure::fatal(ServingError::Rejected(response)),
            _ => {
                let reason = format!("unexpected status {response}");
                Failure::fatal(ServingError::InvalidResponse(reason))
            }
        }
    }
}

/// The body of a chat request.
#[derive(Debug, Serialize)]
struct ChatRequest<'a> {
    messages: &'a [ChatMessage],
    max_tokens: u32,
    stream: bool,
}

/// A failed attempt. `retry` is `Some` when another attempt may succeed, holding the wait that
/// the server's `Retry-After` header asked for, if any.
struct Failure {
    error: ServingError,
    retry: Option<Option<Duration>>,
}

impl Failure {
    fn fatal(error: ServingError) -> Self {
        Self { error, retry: None }
    }

    fn retry(error: ServingError, retry_after: Option<Duration>) -> Self {
        Self {
            error,
            retry: Some(retry_after),
        }
    }
}

/// Builds `{host}/serving-endpoints/{endpoint}/invocations` with the name as one path segment.
fn invocations_url(host: &str, endpoint: &str) -> Result<Url, ServingConfigError> {
    // "." and ".." would be resolved as relative path segments, even percent-encoded.
    if endpoint.is_empty() || endpoint == "." || endpoint == ".." {
        return Err(ServingConfigError::InvalidEndpointName(endpoint.to_owned()));
    }

    let segment = utf8_percent_encode(endpoint, PATH_SEGMENT);
    let text = format!("{}/serving-endpoints/{segment}/invocations", host.trim_end_matches('/'));
    Url::parse(&text).map_err(|source| ServingConfigError::InvalidHost {
        host: host.to_owned(),
        source,
    })
}

fn is_event_stream(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().to_ascii_lowercase().starts_with("text/event-stream"))
}

/// Reads the `Retry-After` header when it is a number of seconds.
// NOTE: the HTTP-date form of `Retry-After` is ignored, and the backoff applies instead.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Reads the body up to `limit` bytes. The flag is true when the body was longer and was cut.
async fn read_body(response: &mut reqwest::Response, limit: usize) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// A failed Model Serving call.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    #[error("invalid or expired access token for Model Serving: {0}")]
    Unauthorized(ErrorResponse),
    #[error("the user may not query this serving endpoint: {0}")]
    Forbidden(ErrorResponse),
    #[error("serving endpoint `{endpoint}` not found: {response}")]
    NotFound { endpoint: String, response: ErrorResponse },
    #[error("rate limit of Model Serving exceeded after {attempts} attempts: {response}")]
    RateLimited { attempts: u32, response: ErrorResponse },
    #[error("server error from Model Serving after {attempts} attempts: {response}")]
    Server { attempts: u32, response: ErrorResponse },
    #[error("request rejected by Model Serving: {0}")]
    Rejected(ErrorResponse),
    #[error("the Model Serving call timed out after {} ms", after.as_millis())]
    Timeout { after: Duration },
    #[error("failed to reach Model Serving")]
    Network(#[source] reqwest::Error),
    #[error("invalid response from Model Serving: {0}")]
    InvalidResponse(String),
}

/// The kind of a [`ServingError`], for choosing the text shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServingErrorKind {
    /// 401: the access token is invalid or expired, so signing in again helps.
    Unauthorized,
    /// 403: the user has no permission to query the endpoint.
    Forbidden,
    /// 404: the serving endpoint does not exist.
    EndpointNotFound,
    /// 429 on every attempt.
    RateLimited,
    /// 5xx on every attempt.
    ServerError,
    /// Any other 4xx, such as 400 for a request the model does not accept.
    Rejected,
    /// No response, or no next piece of a stream, within the timeout.
    Timeout,
    /// The workspace could not be reached, or the connection broke.
    Network,
    /// The response did not have the expected shape.
    InvalidResponse,
}

impl ServingError {
    pub fn kind(&self) -> ServingErrorKind {
        match self {
            Self::Unauthorized(_) => ServingErrorKind::Unauthorized,
            Self::Forbidden(_) => ServingErrorKind::Forbidden,
            Self::NotFound { .. } => ServingErrorKind::EndpointNotFound,
            Self::RateLimited { .. } => ServingErrorKind::RateLimited,
            Self::Server { .. } => ServingErrorKind::ServerError,
            Self::Rejected(_) => ServingErrorKind::Rejected,
            Self::Timeout { .. } => ServingErrorKind::Timeout,
            Self::Network(_) => ServingErrorKind::Network,
            Self::InvalidResponse(_) => ServingErrorKind::InvalidResponse,
        }
    }

    /// Returns the error response from Databricks, for errors that come from an HTTP status.
    pub fn response(&self) -> Option<&ErrorResponse> {
        match self {
            Self::Unauthorized(response) | Self::Forbidden(response) | Self::Rejected(response) => Some(response),
            Self::NotFound { response, .. } | Self::RateLimited { response, .. } | Self::Server { response, .. } => {
                Some(response)
            }
            Self::Timeout { .. } | Self::Network(_) | Self::InvalidResponse(_) => None,
        }
    }

    /// Returns how many attempts were made, for the errors that are retried.
    pub fn attempts(&self) -> Option<u32> {
        match self {
            Self::RateLimited { attempts, .. } | Self::Server { attempts, .. } => Some(*attempts),
            _ => None,
        }
    }

    fn with_attempts(mut self, count: u32) -> Self {
        if let Self::RateLimited { attempts, .. } | Self::Server { attempts, .. } = &mut self {
            *attempts = count;
        }
        self
    }
}

/// An error response from Databricks: the status and, when the body is Databricks' JSON
/// (`{"error_code": "...", "message": "..."}`) or OpenAI's (`{"error": {"code": ..., "message": ...}}`),
/// its code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    pub status: u16,
    pub error_code: Option<String>,
    pub message: Option<String>,
    /// The body as text, cut to 512 characters, for bodies that are not such JSON.
    pub body: String,
}

/// The maximum length of a non-JSON error body kept in [`ErrorResponse::body`], in characters.
const MAX_ERROR_TEXT: usize = 512;

impl ErrorResponse {
    /// Parses an error body. A body that is not JSON of either shape is kept only as text.
    pub fn parse(status: u16, body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct DatabricksBody {
            error_code: Option<String>,
            message: Option<String>,
            error: Option<OpenAiError>,
        }
        #[derive(Deserialize)]
        struct OpenAiError {
            code: Option<serde_json::Value>,
            #[serde(rename = "type")]
            kind: Option<String>,
            message: Option<String>,
        }

        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let mut response = Self {
            status,
            error_code: None,
            message: None,
            body: text.chars().take(MAX_ERROR_TEXT).collect(),
        };
        let Ok(parsed) = serde_json::from_str::<DatabricksBody>(text) else {
            return response;
        };

        response.error_code = parsed.error_code;
        response.message = parsed.message;
        if let Some(error) = parsed.error {
            let code = error.code.map(|code| match code {
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            });
            response.error_code = response.error_code.or(code).or(error.kind);
            response.message = response.message.or(error.message);
        }
        response
    }
}

impl fmt::Display for ErrorResponse {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "HTTP {}", self.status)?;
        if let Some(code) = &self.error_code {
            write!(formatter, " `{code}`")?;
        }
        match (&self.message, self.body.is_empty()) {
            (Some(message), _) => write!(formatter, ": {message}"),
            (None, false) => write!(formatter, ": {}", self.body),
            (None, true) => Ok(()),
        }
    }
}

/// Message content: a string, or a list of parts whose `text` parts are joined. Databricks
/// returns the list form for some models, such as those that also return reasoning.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
}

impl Content {
    fn into_text(self) -> String {
        match self {
            Content::Text(text) => text,
            Content::Parts(parts) => parts
                .into_iter()
                .filter(|part| part.kind.as_deref().is_none_or(|kind| kind == "text"))
                .filter_map(|part| part.text)
                .collect(),
        }
    }
}

/// Parses a `chat.completion` object and returns `choices[0].message.content`.
fn parse_completion(body: &[u8]) -> Result<String, ServingError> {
    #[derive(Deserialize)]
    struct Completion {
        choices: Vec<Choice>,
    }
    #[derive(Deserialize)]
    struct Choice {
        message: Message,
    }
    #[derive(Deserialize)]
    struct Message {
        content: Option<Content>,
    }

    let completion: Completion = serde_json::from_slice(body)
        .map_err(|e| ServingError::InvalidResponse(format!("the response is not a chat completion: {e}")))?;
    let choice = completion
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| ServingError::InvalidResponse("the response has no `choices`".to_owned()))?;
    choice
        .message
        .content
        .map(Content::into_text)
        .ok_or_else(|| ServingError::InvalidResponse("the response has no `choices[0].message.content`".to_owned()))
}

/// The payload of one event of a streamed completion.
#[derive(Debug, PartialEq, Eq)]
enum StreamData {
    /// A piece of the completion. It is empty for chunks that carry only the role or the finish reason.
    Piece { text: String, finished: bool },
    /// `[DONE]`, the end of the completion.
    Done,
}

/// Parses the payload of one event: `[DONE]` or a `chat.completion.chunk` object.
fn parse_stream_data(data: &str) -> Result<StreamData, ServingError> {
    #[derive(Deserialize)]
    struct Chunk {
        #[serde(default)]
        choices: Vec<Choice>,
    }
    #[derive(Deserialize)]
    struct Choice {
        delta: Option<Delta>,
        finish_reason: Option<String>,
    }
    #[derive(Deserialize)]
    struct Delta {
        content: Option<Content>,
    }

    if data.trim() == "[DONE]" {
        return Ok(StreamData::Done);
    }
    let value: serde_json::Value = serde_json::from_str(data)
        .map_err(|e| ServingError::InvalidResponse(format!("a stream event is not JSON: {e}")))?;
    if value.get("error").is_some() || value.get("error_code").is_some() {
        let error = ErrorResponse::parse(200, data.as_bytes());
        return Err(ServingError::InvalidResponse(format!(
            "the stream reported an error: {error}"
        )));
    }

    let chunk: Chunk = serde_json::from_value(value)
        .map_err(|e| ServingError::InvalidResponse(format!("a stream event is not a chat completion chunk: {e}")))?;
    // Chunks without choices, such as a closing usage report, carry no text.
    let Some(choice) = chunk.choices.into_iter().next() else {
        return Ok(StreamData::Piece {
            text: String::new(),
            finished: false,
        });
    };
    let text = choice
        .delta
        .and_then(|delta| delta.content)
        .map(Content::into_text)
        .unwrap_or_default();
    Ok(StreamData::Piece {
        text,
        finished: choice.finish_reason.is_some(),
    })
}

/// One server-sent event: the data lines joined with `\n`, and the `event:` type if any.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SseEvent {
    event: Option<String>,
    data: String,
}

/// Splits a `text/event-stream` body into events, however the bytes are split across reads.
///
/// It follows the WHATWG HTML event-stream rules: lines end with CRLF, LF or CR, a blank line
/// ends an event, `:` starts a comment, and one space after a field's colon is dropped. Unlike
/// those rules, an event that the body ends without a blank line is still returned.
#[derive(Debug, Default)]
struct SseDecoder {
    /// Bytes after the last complete line.
    buffer: Vec<u8>,
    data: Option<String>,
    event: Option<String>,
}

impl SseDecoder {
    /// Adds bytes and returns the events they complete.
    fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, ServingError> {
        self.buffer.extend_from_slice(bytes);

        let mut events = Vec::new();
        let mut start = 0;
        while let Some(offset) = self.buffer[start..]
            .iter()
            .position(|&byte| byte == b'\n' || byte == b'\r')
        {
            let end = start + offset;
            let terminator = match self.buffer.get(end + 1) {
                // A CR at the end of the bytes so far may be the first half of a CRLF.
                None if self.buffer[end] == b'\r' => break,
                Some(b'\n') if self.buffer[end] == b'\r' => 2,
                _ => 1,
            };
            let line = line_text(&self.buffer[start..end])?;
            start = end + terminator;
            events.extend(self.read_line(&line));
        }
        self.buffer.drain(..start);

        if self.buffer.len() > MAX_SSE_LINE {
            let reason = format!("a stream line is longer than {MAX_SSE_LINE} bytes");
            return Err(ServingError::InvalidResponse(reason));
        }
        Ok(events)
    }

    /// Ends the body and returns the event still being read, if any.
    fn finish(&mut self) -> Result<Option<SseEvent>, ServingError> {
        let rest = std::mem::take(&mut self.buffer);
        let rest = rest.strip_suffix(b"\r").unwrap_or(&rest);
        if !rest.is_empty() {
            let line = line_text(rest)?;
            if let Some(event) = self.read_line(&line) {
                return Ok(Some(event));
            }
        }
        Ok(self.read_line(""))
    }

    /// Applies one line and returns the event that a blank line ends.
    fn read_line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let event = self.event.take();
            return self.data.take().map(|data| SseEvent { event, data });
        }
        if line.starts_with(':') {
            return None;
        }

        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" => self.event = Some(value.to_owned()),
            // `id` and `retry` matter only to a client that reconnects, which this one does not.
            _ => {}
        }
        None
    }
}

fn line_text(bytes: &[u8]) -> Result<String, ServingError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ServingError::InvalidResponse("a stream line is not valid UTF-8".to_owned()))
}

/// Reads content pieces from the body of a streamed completion.
struct PieceReader {
    body: Option<BoxStream<'static, reqwest::Result<Bytes>>>,
    decoder: SseDecoder,
    pieces: VecDeque<String>,
    /// True once `[DONE]` arrived; the body's end is then the normal end.
    done: bool,
    /// True once a chunk carried a `finish_reason`, so an end without `[DONE]` is accepted too.
    finish_reason_seen: bool,
}

impl PieceReader {
    fn new(body: BoxStream<'static, reqwest::Result<Bytes>>) -> Self {
        Self {
            body: Some(body),
            decoder: SseDecoder::default(),
            pieces: VecDeque::new(),
            done: false,
            finish_reason_seen: false,
        }
    }

    /// Returns a reader with nothing left to read.
    fn finished() -> Self {
        Self {
            body: None,
            decoder: SseDecoder::default(),
            pieces: VecDeque::new(),
            done: true,
            finish_reason_seen: true,
        }
    }

    /// Returns the next non-empty piece, or `None` at the end of the completion. `limit` bounds the
    /// wait, and `limit_duration` is the time reported when the wait runs out.
    async fn next_piece(&mut self, limit: Instant, limit_duration: Duration) -> Result<Option<String>, ServingError> {
        loop {
            if let Some(piece) = self.pieces.pop_front() {
                return Ok(Some(piece));
            }
            let Some(body) = self.body.as_mut() else {
                return Ok(None);
            };

            let read = tokio::time::timeout_at(limit, body.next())
                .await
                .map_err(|_elapsed| ServingError::Timeout { after: limit_duration })?;
            match read {
                Some(Ok(bytes)) => {
                    for event in self.decoder.push(&bytes)? {
                        self.read_event(event)?;
                    }
                }
                Some(Err(error)) => return Err(ServingError::Network(error)),
                None => {
                    self.body = None;
                    if let Some(event) = self.decoder.finish()? {
                        self.read_event(event)?;
                    }
                    if !self.done && !self.finish_reason_seen {
                        let reason = "the stream ended before `[DONE]`".to_owned();
                        return Err(ServingError::InvalidResponse(reason));
                    }
                }
            }
        }
    }

    fn read_event(&mut self, event: SseEvent) -> Result<(), ServingError> {
        if self.done {
            return Ok(());
        }
        if event.event.as_deref() == Some("error") {
            let error = ErrorResponse::parse(200, event.data.as_bytes());
            return Err(ServingError::InvalidResponse(format!(
                "the stream reported an error: {error}"
            )));
        }

        match parse_stream_data(&event.data)? {
            StreamData::Done => self.done = true,
            StreamData::Piece { text, finished } => {
                self.finish_reason_seen |= finished;
                if !text.is_empty() {
                    self.pieces.push_back(text);
                }
            }
        }
        Ok(())
    }
}

/// The state behind the stream that [`ServingClient::stream`] returns.
struct PieceStream {
    /// The piece read before the call returned, yielded first.
    first: Option<String>,
    reader: PieceReader,
    idle_timeout: Duration,
    end: Instant,
    max_duration: Duration,
    /// True after an error, which is the stream's last item.
    stopped: bool,
}

impl PieceStream {
    async fn next(mut self) -> Option<(Result<String, ServingError>, Self)> {
        if let Some(piece) = self.first.take() {
            return Some((Ok(piece), self));
        }
        if self.stopped {
            return None;
        }

        let idle_limit = Instant::now() + self.idle_timeout;
        let (limit, limit_duration) = if idle_limit < self.end {
            (idle_limit, self.idle_timeout)
        } else {
            (self.end, self.max_duration)
        };
        match self.reader.next_piece(limit, limit_duration).await {
            Ok(Some(piece)) => Some((Ok(piece), self)),
            Ok(None) => None,
            Err(error) => {
                self.stopped = true;
                Some((Err(error), self))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut decoder = SseDecoder::default();
        let mut events = Vec::new();
        for chunk in chunks {
            events.extend(decoder.push(chunk).unwrap());
        }
        events.extend(decoder.finish().unwrap());
        events
    }

    fn data_event(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.to_owned(),
        }
    }

    #[test]
    fn url_encodes_endpoint_as_one_segment() {
        let cases = [
            (
                "databricks-claude-sonnet-4",
                "/serving-endpoints/databricks-claude-sonnet-4/invocations",
            ),
            ("my_model.v2~a", "/serving-endpoints/my_model.v2~a/invocations"),
            ("a/b", "/serving-endpoints/a%2Fb/invocations"),
            ("a b?c#d", "/serving-endpoints/a%20b%3Fc%23d/invocations"),
            ("%2e%2e", "/serving-endpoints/%252e%252e/invocations"),
            ("要約", "/serving-endpoints/%E8%A6%81%E7%B4%84/invocations"),
        ];
        for (name, path) in cases {
            let url = invocations_url("https://adb-1.7.azuredatabricks.net", name).unwrap();
            assert_eq!(url.path(), path, "endpoint {name:?}");
        }
    }

    #[test]
    fn url_drops_trailing_slash_of_host() {
        let url = invocations_url("https://example.cloud.databricks.com/", "chat").unwrap();

        assert_eq!(
            url.as_str(),
            "https://example.cloud.databricks.com/serving-endpoints/chat/invocations"
        );
    }

    #[test]
    fn url_rejects_dot_segments_and_empty_name() {
        for name in ["", ".", ".."] {
            let error = invocations_url("https://example.cloud.databricks.com", name).unwrap_err();
            assert!(
                matches!(error, ServingConfigError::InvalidEndpointName(_)),
                "endpoint {name:?}: {error}"
            );
        }
    }

    #[test]
    fn url_rejects_host_without_scheme() {
        let error = invocations_url("example.cloud.databricks.com", "chat").unwrap_err();

        assert!(matches!(error, ServingConfigError::InvalidHost { .. }), "{error}");
    }

    #[test]
    fn request_body_has_openai_chat_shape() {
        let messages = [
            ChatMessage::system("要約して"),
            ChatMessage::user("text"),
            ChatMessage::assistant("ok"),
        ];
        let request = ChatRequest {
            messages: &messages,
            max_tokens: 256,
            stream: true,
        };

        let body = serde_json::to_value(&request).unwrap();

        assert_eq!(
            body,
            serde_json::json!({
                "messages": [
                    {"role": "system", "content": "要約して"},
                    {"role": "user", "content": "text"},
                    {"role": "assistant", "content": "ok"},
                ],
                "max_tokens": 256,
                "stream": true,
            })
        );
    }

    #[test]
    fn sse_events_split_at_every_byte() {
        let body =
            "data: {\"a\":\"要約\"}\n\n: keep-alive\n\nevent: message\ndata: two\ndata: lines\n\ndata: [DONE]\n\n";
        let expected = vec![
            data_event("{\"a\":\"要約\"}"),
            SseEvent {
                event: Some("message".to_owned()),
                data: "two\nlines".to_owned(),
            },
            data_event("[DONE]"),
        ];

        let bytes = body.as_bytes();
        for split in 0..=bytes.len() {
            let events = decode_all(&[&bytes[..split], &bytes[split..]]);
            assert_eq!(events, expected, "split at byte {split}");
        }
        let one_byte_chunks: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode_all(&one_byte_chunks), expected);
    }

    #[test]
    fn sse_crlf_split_between_reads() {
        let events = decode_all(&[b"data: one\r", b"\n\r", b"\ndata: two\r\r"]);

        assert_eq!(events, vec![data_event("one"), data_event("two")]);
    }

    #[test]
    fn sse_field_without_space_or_value() {
        let events = decode_all(&[b"data:x\ndata\n\n"]);

        assert_eq!(events, vec![data_event("x\n")]);
    }

    #[test]
    fn sse_blank_lines_without_data_make_no_event() {
        let events = decode_all(&[b"\n\n: comment\n\nevent: ping\n\n"]);

        assert_eq!(events, vec![]);
    }

    #[test]
    fn sse_last_event_without_blank_line_is_kept() {
        let events = decode_all(&[b"data: [DONE]"]);

        assert_eq!(events, vec![data_event("[DONE]")]);
    }

    #[test]
    fn sse_rejects_invalid_utf8() {
        let mut decoder = SseDecoder::default();

        let error = decoder.push(b"data: \xff\xfe\n").unwrap_err();

        assert_eq!(error.kind(), ServingErrorKind::InvalidResponse);
    }

    #[test]
    fn sse_rejects_endless_line() {
        let mut decoder = SseDecoder::default();
        let chunk = vec![b'a'; 64 * 1024];

        let mut result = Ok(Vec::new());
        for _ in 0..=(MAX_SSE_LINE / chunk.len()) {
            result = decoder.push(&chunk);
            if result.is_err() {
                break;
            }
        }

        assert!(result.is_err(), "a line longer than {MAX_SSE_LINE} bytes was accepted");
    }

    #[test]
    fn stream_data_reads_delta_content() {
        let chunk = r#"{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"要約"},"finish_reason":null}]}"#;

        assert_eq!(
            parse_stream_data(chunk).unwrap(),
            StreamData::Piece {
                text: "要約".to_owned(),
                finished: false
            }
        );
    }

    #[test]
    fn stream_data_without_text() {
        let cases = [
            (r#"{"choices":[{"delta":{"role":"assistant"}}]}"#, false),
            (r#"{"choices":[{"delta":{"content":null}}]}"#, false),
            (r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#, true),
            (r#"{"choices":[],"usage":{"total_tokens":3}}"#, false),
        ];
        for (chunk, finished) in cases {
            assert_eq!(
                parse_stream_data(chunk).unwrap(),
                StreamData::Piece {
                    text: String::new(),
                    finished
                },
                "{chunk}"
            );
        }
    }

    #[test]
    fn stream_data_joins_text_parts() {
        let chunk = r#"{"choices":[{"delta":{"content":[{"type":"reasoning","summary":[]},{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}"#;

        assert_eq!(
            parse_stream_data(chunk).unwrap(),
            StreamData::Piece {
                text: "ab".to_owned(),
                finished: false
            }
        );
    }

    #[test]
    fn stream_data_done_and_errors() {
        assert_eq!(parse_stream_data("[DONE]").unwrap(), StreamData::Done);

        let error = parse_stream_data(r#"{"error_code":"INTERNAL_ERROR","message":"model crashed"}"#).unwrap_err();
        assert!(error.to_string().contains("model crashed"), "{error}");

        let error = parse_stream_data("not json").unwrap_err();
        assert_eq!(error.kind(), ServingErrorKind::InvalidResponse);
    }

    #[test]
    fn completion_reads_first_choice() {
        let body = br#"{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"done"},"finish_reason":"stop"}]}"#;

        assert_eq!(parse_completion(body).unwrap(), "done");
    }

    #[test]
    fn completion_without_content_is_invalid() {
        let bodies: [&[u8]; 4] = [
            br#"{"choices":[]}"#,
            br#"{"choices":[{"message":{"role":"assistant"}}]}"#,
            br#"{"object":"list"}"#,
            b"<html>gateway</html>",
        ];
        for body in bodies {
            let error = parse_completion(body).unwrap_err();
            assert_eq!(
                error.kind(),
                ServingErrorKind::InvalidResponse,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn error_body_databricks_json() {
        let body = br#"{"error_code":"REQUEST_LIMIT_EXCEEDED","message":"Exceeded workspace rate limit"}"#;

        let response = ErrorResponse::parse(429, body);

        assert_eq!(response.error_code.as_deref(), Some("REQUEST_LIMIT_EXCEEDED"));
        assert_eq!(response.message.as_deref(), Some("Exceeded workspace rate limit"));
        assert_eq!(
            response.to_string(),
            "HTTP 429 `REQUEST_LIMIT_EXCEEDED`: Exceeded workspace rate limit"
        );
    }

    #[test]
    fn error_body_openai_json() {
        let body = br#"{"error":{"message":"max_tokens is too large","type":"invalid_request_error","code":null}}"#;

        let response = ErrorResponse::parse(400, body);

        assert_eq!(response.error_code.as_deref(), Some("invalid_request_error"));
        assert_eq!(response.message.as_deref(), Some("max_tokens is too large"));
    }

    #[test]
    fn error_body_plain_text_is_cut() {
        let body = "upstream connect error ".repeat(100);

        let response = ErrorResponse::parse(503, body.as_bytes());

        assert_eq!(response.error_code, None);
        assert_eq!(response.body.chars().count(), MAX_ERROR_TEXT);
        assert!(
            response.to_string().starts_with("HTTP 503: upstream connect error"),
            "{response}"
        );
    }

    #[test]
    fn error_body_empty() {
        assert_eq!(ErrorResponse::parse(502, b"").to_string(), "HTTP 502");
    }

    #[test]
    fn retry_after_is_capped() {
        let policy = RetryPolicy::default();

        assert_eq!(policy.delay(1, Some(Duration::from_secs(2))), Duration::from_secs(2));
        assert_eq!(policy.delay(1, Some(Duration::from_secs(3600))), policy.max_retry_after);
    }

    #[test]
    fn backoff_doubles_with_jitter() {
        let policy = RetryPolicy::default();

        for _ in 0..100 {
            let first = policy.delay(1, None);
            assert!(first >= Duration::from_millis(125), "{first:?}");
            assert!(first <= Duration::from_millis(250), "{first:?}");
            let second = policy.delay(2, None);
            assert!(second >= Duration::from_millis(250), "{second:?}");
            assert!(second <= Duration::from_millis(500), "{second:?}");
            let late = policy.delay(30, None);
            assert!(late >= policy.max_delay / 2, "{late:?}");
            assert!(late <= policy.max_delay, "{late:?}");
        }
    }

    #[test]
    fn retry_after_header_in_seconds() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);

        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));

        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn attempts_are_recorded_on_retried_errors() {
        let response = ErrorResponse::parse(503, b"");
        let error = ServingError::Server { attempts: 1, response }.with_attempts(3);

        assert_eq!(error.attempts(), Some(3));
        assert_eq!(error.kind(), ServingErrorKind::ServerError);
        assert!(error.to_string().contains("after 3 attempts"), "{error}");
    }

    #[tokio::test]
    async fn reader_yields_pieces_split_across_reads() {
        let body = concat!(
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"要約\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\": a\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n",
        )
        .as_bytes();
        // Cut inside the first multi-byte character and inside the `data:` prefix.
        let cut_in_character = body.windows(3).position(|w| w == "要".as_bytes()).unwrap() + 1;
        let parts = [
            &body[..cut_in_character],
            &body[cut_in_character..cut_in_character + 40],
            &body[cut_in_character + 40..],
        ];
        let chunks: Vec<reqwest::Result<Bytes>> = parts.iter().map(|part| Ok(Bytes::copy_from_slice(part))).collect();
        let mut reader = PieceReader::new(futures::stream::iter(chunks).boxed());
        let limit = Instant::now() + Duration::from_secs(1);

        let mut pieces = Vec::new();
        while let Some(piece) = reader.next_piece(limit, Duration::from_secs(1)).await.unwrap() {
            pieces.push(piece);
        }

        assert_eq!(pieces, ["要約", ": a"]);
    }

    #[tokio::test]
    async fn reader_rejects_stream_cut_before_done() {
        let chunks: Vec<reqwest::Result<Bytes>> = vec![Ok(Bytes::from_static(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
        ))];
        let mut reader = PieceReader::new(futures::stream::iter(chunks).boxed());
        let limit = Instant::now() + Duration::from_secs(1);

        assert_eq!(
            reader
                .next_piece(limit, Duration::from_secs(1))
                .await
                .unwrap()
                .as_deref(),
            Some("a")
        );
        let error = reader.next_piece(limit, Duration::from_secs(1)).await.unwrap_err();

        assert_eq!(error.kind(), ServingErrorKind::InvalidResponse);
    }
}
