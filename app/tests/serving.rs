//! The Model Serving client against the test double, with real access tokens from the test
//! OpenID provider: completions, streaming, the error statuses, retries and timeouts.

#[path = "support/provider_sign_in.rs"]
mod provider_sign_in;
mod support;

use std::time::{Duration, Instant};

use app::serving::{ChatMessage, RetryPolicy, ServingClient, ServingError, ServingErrorKind};
use futures::StreamExt as _;
use provider_sign_in::{sign_in_at_provider, Client, ProviderTokens};
use support::serving_double::{discover_jwks_uri, Fault, ServingDouble, CHUNK_DELAY};
use support::{OidcServer, CLIENT_ID, CLIENT_SECRET};

const ENDPOINT: &str = "databricks-claude-sonnet-4";
/// Registered with the provider but never requested: the sign-in reads the code from the redirect.
const REDIRECT_URI: &str = "http://127.0.0.1:9/oauth/callback";
const TIMEOUT: Duration = Duration::from_secs(5);
const TEXT: &str = "東京の天気は晴れ、午後から雨の予報です。傘を忘れずに持って行きましょう。";
/// The double's completion for [`TEXT`]: `要約: ` and the first 20 characters of the text.
const SUMMARY: &str = "要約: 東京の天気は晴れ、午後から雨の予報です。";

/// The provider, a double that serves [`ENDPOINT`] and trusts the provider's keys, and an access
/// token of user `alice`.
struct Setup {
    oidc: OidcServer,
    double: ServingDouble,
    tokens: ProviderTokens,
}

impl Setup {
    async fn start() -> Self {
        Self::start_with_ttl(60).await
    }

    async fn start_with_ttl(access_token_ttl: u32) -> Self {
        let oidc = OidcServer::start_with_ttl(REDIRECT_URI, "http://127.0.0.1:9/", access_token_ttl);
        let tokens = sign_in(&oidc, "alice").await;
        let double = ServingDouble::start(&oidc.issuer, &discover_jwks_uri(&oidc.issuer).await).await;
        double.add_endpoint(ENDPOINT);
        Setup { oidc, double, tokens }
    }

    fn client(&self, endpoint: &str, timeout: Duration) -> ServingClient {
        ServingClient::new(self.double.host(), endpoint, timeout).unwrap()
    }

    fn token(&self) -> &str {
        &self.tokens.access_token
    }
}

async fn sign_in(oidc: &OidcServer, login: &str) -> ProviderTokens {
    let client = Client {
        issuer: &oidc.issuer,
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uri: REDIRECT_URI,
    };
    sign_in_at_provider(&client, login).await
}

fn messages() -> Vec<ChatMessage> {
    vec![
        ChatMessage::system("日本語で要約してください。"),
        ChatMessage::user(TEXT),
    ]
}

fn error_code(error: &ServingError) -> Option<&str> {
    error.response().and_then(|response| response.error_code.as_deref())
}

#[tokio::test]
async fn completion_returns_answer() {
    let setup = Setup::start().await;
    let client = setup.client(ENDPOINT, TIMEOUT);

    let answer = client.complete(setup.token(), &messages(), 200).await.unwrap();

    assert_eq!(answer, SUMMARY);
    assert_eq!(setup.double.requests(ENDPOINT), 1);
    assert_eq!(setup.double.subjects(ENDPOINT), ["alice"]);
    let body = setup.double.last_body(ENDPOINT).unwrap();
    assert_eq!(body["max_tokens"], 200);
    assert_eq!(body["stream"], false);
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["role"], "user");
    assert_eq!(body["messages"][1]["content"], TEXT);
}

#[tokio::test]
async fn completion_cut_by_max_tokens() {
    let setup = Setup::start().await;
    let client = setup.client(ENDPOINT, TIMEOUT);

    let answer = client.complete(setup.token(), &messages(), 6).await.unwrap();

    assert_eq!(answer, "要約: 東京");
}

#[tokio::test]
async fn stream_yields_pieces_as_they_arrive() {
    let setup = Setup::start().await;
    let client = setup.client(ENDPOINT, TIMEOUT);

    let mut stream = Box::pin(client.stream(setup.token(), &messages(), 200).await.unwrap());
    let mut pieces = Vec::new();
    let mut received_at = Vec::new();
    while let Some(piece) = stream.next().await {
        received_at.push(Instant::now());
        pieces.push(piece.unwrap());
    }

    assert!(pieces.len() >= 3, "expected several pieces: {pieces:?}");
    assert_eq!(pieces.concat(), SUMMARY);
    assert_eq!(setup.double.last_body(ENDPOINT).unwrap()["stream"], true);
    let sent_at = setup.double.stream_frames_sent_at(ENDPOINT);
    let last_sent = *sent_at.last().unwrap();
    assert!(
        received_at[0] < last_sent,
        "the first piece arrived {:?} after the last frame was sent",
        received_at[0] - last_sent
    );
    // The double waits CHUNK_DELAY before each frame, so pieces read as they arrive are spread out
    // too. Half the nominal spread leaves room for scheduling noise.
    let spread = *received_at.last().unwrap() - received_at[0];
    assert!(
        spread >= CHUNK_DELAY * (pieces.len() as u32 - 1) / 2,
        "pieces arrived within {spread:?}"
    );
}

#[tokio::test]
async fn stream_equals_completion() {
    let setup = Setup::start().await;
    let client = setup.client(ENDPOINT, TIMEOUT);

    let whole = client.complete(setup.token(), &messages(), 200).await.unwrap();
    let stream = client.stream(setup.token(), &messages(), 200).await.unwrap();
    let pieces: Vec<String> = stream.map(Result::unwrap).collect().await;

    assert_eq!(pieces.concat(), whole);
}

#[tokio::test]
async fn garbage_token_is_unauthorized() {
    let setup = Setup::start().await;
    let client = setup.client(ENDPOINT, TIMEOUT);

    let error = client.complete("not-a-token", &messages(), 200).await.unwrap_err();

    assert_eq!(error.kind(), ServingErrorKind::Unauthorized, "{error}");
    assert_eq!(error_code(&error), Some("UNAUTHENTICATED"));
    assert_eq!(setup.double.requests(ENDPOINT), 1, "a 401 must not be retried");
}

#[tokio::test]
async fn id_token_as_bearer_is_unauthorized() {
    let setup = Setup::start().await;
    let client = setup.client(ENDPOINT, TIMEOUT);

    let error = client
        .complete(&setup.tokens.id_token, &messages(), 200)
        .await
        .unwrap_err();

    assert_eq!(error.kind(), ServingErrorKind::Unauthorized, "{error}");
    let message = error.response().unwrap().message.clone().unwrap();
    assert!(message.contains("at+jwt"), "{message}");
}

#[tokio::test]
async fn tampered_signature_is_unauthorized() {
    let setup = Setup::start().await;
    let client = setup.client(ENDPOINT, TIMEOUT);
    let token = setup.token();
    // Change one character in the middle of the signature, whose bits all count.
    let at = token.rfind('.').unwrap() + 10;
    let replacement = if &token[at..=at] == "A" { "B" } else { "A" };
    let forged = format!("{}{replacement}{}", &token[..at], &token[at + 1..]);

    let error = client.complete(&forged, &messages(), 200).await.unwrap_err();

    assert_eq!(error.kind(), ServingErrorKind::Unauthorized, "{error}");
}

#[tokio::test]
async fn expired_token_is_unauthorized() {
    let setup = Setup::start_with_ttl(1).await;
    let client = setup.client(ENDPOINT, TIMEOUT);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let error = client.complete(setup.token(), &messages(), 200).await.unwrap_err();

    assert_eq!(error.kind(), ServingErrorKind::Unauthorized, "{error}");
    let message = error.response().unwrap().message.clone().unwrap();
    assert!(message.contains("Expired"), "{message}");
}

#[tokio::test]
async fn rotated_key_is_fetched_once() {
    let setup = Setup::start().await;
    let client = setup.client(ENDPOINT, TIMEOUT);
    setup.oidc.admin("/admin/rotate-keys").await;
    let tokens = sign_in(&setup.oidc, "bob").await;

    let answer = client.complete(&tokens.access_token, &messages(), 200).await.unwrap();
    let again = client.complete(&tokens.access_token, &messages(), 200).await.unwrap();

    assert_eq!(answer, SUMMARY);
    assert_eq!(again, SUMMARY);
    assert_eq!(
        setup.double.jwks_fetches(),
        2,
        "one fetch at start and one for the new key"
    );
    assert_eq!(setup.double.subjects(ENDPOINT), ["bob", "bob"]);
}

#[tokio::test]
async fn unknown_endpoint_is_not_found() {
    let setup = Setup::start().await;
    let client = setup.client("no-such-endpoint", TIMEOUT);

    let error = client.complete(setup.token(), &messages(), 200).await.unwrap_err();

    assert_eq!(error.kind(), ServingErrorKind::EndpointNotFound, "{error}");
    assert_eq!(error_code(&error), Some("RESOURCE_DOES_NOT_EXIST"));
    assert!(error.to_string().contains("`no-such-endpoint`"), "{error}");
    assert_eq!(
        setup.double.requests("no-such-endpoint"),
        1,
        "a 404 must not be retried"
    );
}

#[tokio::test]
async fn endpoint_name_is_one_encoded_segment() {
    let setup = Setup::start().await;
    let name = "team a/chat?v=2";
    setup.double.add_endpoint(name);
    let client = setup.client(name, TIMEOUT);

    let answer = client.complete(setup.token(), &messages(), 200).await.unwrap();

    assert_eq!(answer, SUMMARY);
    assert_eq!(setup.double.requests(name), 1);
}

#[tokio::test]
async fn forbidden_endpoint_is_not_retried() {
    let setup = Setup::start().await;
    setup.double.forbid(ENDPOINT);
    let client = setup.client(ENDPOINT, TIMEOUT);

    let error = client.complete(setup.token(), &messages(), 200).await.unwrap_err();

    assert_eq!(error.kind(), ServingErrorKind::Forbidden, "{error}");
    assert_eq!(error_code(&error), Some("PERMISSION_DENIED"));
    assert_eq!(setup.double.requests(ENDPOINT), 1);
}

#[tokio::test]
async fn rate_limit_then_success_is_retried() {
    let setup = Setup::start().await;
    setup
        .double
        .fail_next(ENDPOINT, Fault::RateLimited { retry_after: Some(1) }, 2);
    let client = setup.client(ENDPOINT, TIMEOUT);

    let started = Instant::now();
    let answer = client.complete(setup.token(), &messages(), 200).await.unwrap();

    assert_eq!(answer, SUMMARY);
    assert_eq!(setup.double.requests(ENDPOINT), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "`Retry-After: 1` was not honoured twice"
    );
}

#[tokio::test]
async fn retry_after_is_capped() {
    let setup = Setup::start().await;
    setup.double.fail_next(
        ENDPOINT,
        Fault::RateLimited {
            retry_after: Some(3600),
        },
        1,
    );
    let policy = RetryPolicy {
        max_retry_after: Duration::from_millis(100),
        ..RetryPolicy::default()
    };
    let client = setup.client(ENDPOINT, TIMEOUT).with_retry_policy(policy);

    let answer = client.complete(setup.token(), &messages(), 200).await.unwrap();

    assert_eq!(answer, SUMMARY);
    assert_eq!(setup.double.requests(ENDPOINT), 2);
}

#[tokio::test]
async fn rate_limit_fails_after_three_attempts() {
    let setup = Setup::start().await;
    setup
        .double
        .fail_next(ENDPOINT, Fault::RateLimited { retry_after: None }, 5);
    let client = setup.client(ENDPOINT, TIMEOUT);

    let error = client.complete(setup.token(), &messages(), 200).await.unwrap_err();

    assert_eq!(error.kind(), ServingErrorKind::RateLimited, "{error}");
    assert_eq!(error_code(&error), Some("REQUEST_LIMIT_EXCEEDED"));
    assert_eq!(error.attempts(), Some(3));
    assert_eq!(setup.double.requests(ENDPOINT), 3);
}

#[tokio::test]
async fn server_errors_fail_after_three_attempts() {
    let setup = Setup::start().await;
    setup.double.fail_next(ENDPOINT, Fault::Unavailable, 3);
    let client = setup.client(ENDPOINT, TIMEOUT);

    let error = client.complete(setup.token(), &messages(), 200).await.unwrap_err();

    assert_eq!(error.kind(), ServingErrorKind::ServerError, "{error}");
    assert_eq!(error_code(&error), Some("TEMPORARILY_UNAVAILABLE"));
    assert_eq!(error.attempts(), Some(3));
    assert_eq!(setup.double.requests(ENDPOINT), 3);
    let answer = client.complete(setup.token(), &messages(), 200).await.unwrap();
    assert_eq!(answer, SUMMARY, "the endpoint answers once the faults are used up");
}

#[tokio::test]
async fn hang_times_out_within_bound() {
    let setup = Setup::start().await;
    setup.double.fail_next(ENDPOINT, Fault::Hang, 1);
    let timeout = Duration::from_secs(1);
    let client = setup.client(ENDPOINT, timeout);

    let started = Instant::now();
    let error = client.complete(setup.token(), &messages(), 200).await.unwrap_err();
    let elapsed = started.elapsed();

    assert_eq!(error.kind(), ServingErrorKind::Timeout, "{error}");
    assert!(elapsed >= timeout, "timed out early, after {elapsed:?}");
    assert!(
        elapsed < timeout * 3,
        "timed out after {elapsed:?}, not about {timeout:?}"
    );
    assert_eq!(setup.double.requests(ENDPOINT), 1, "a timeout must not be retried");
}

#[tokio::test]
async fn retries_stop_at_timeout() {
    let setup = Setup::start().await;
    setup.double.fail_next(ENDPOINT, Fault::Unavailable, 1);
    setup.double.fail_next(ENDPOINT, Fault::Hang, 1);
    let timeout = Duration::from_secs(1);
    let client = setup.client(ENDPOINT, timeout);

    let started = Instant::now();
    let error = client.complete(setup.token(), &messages(), 200).await.unwrap_err();
    let elapsed = started.elapsed();

    assert_eq!(error.kind(), ServingErrorKind::Timeout, "{error}");
    assert!(
        elapsed < timeout * 3,
        "the call took {elapsed:?} with a {timeout:?} timeout"
    );
    assert_eq!(setup.double.requests(ENDPOINT), 2);
}

#[tokio::test]
async fn stream_retries_before_first_piece() {
    let setup = Setup::start().await;
    setup.double.fail_next(ENDPOINT, Fault::Unavailable, 1);
    let client = setup.client(ENDPOINT, TIMEOUT);

    let stream = client.stream(setup.token(), &messages(), 200).await.unwrap();
    let pieces: Vec<String> = stream.map(Result::unwrap).collect().await;

    assert_eq!(pieces.concat(), SUMMARY);
    assert_eq!(setup.double.requests(ENDPOINT), 2);
}

#[tokio::test]
async fn stream_error_before_first_piece() {
    let setup = Setup::start().await;
    let client = setup.client("no-such-endpoint", TIMEOUT);

    let result = client.stream(setup.token(), &messages(), 200).await;

    let error = result.err().expect("a stream from an unknown endpoint");
    assert_eq!(error.kind(), ServingErrorKind::EndpointNotFound, "{error}");
}

#[tokio::test]
async fn stream_stall_times_out_without_retry() {
    let setup = Setup::start().await;
    setup.double.fail_next(ENDPOINT, Fault::StallAfterFirstPiece, 1);
    let timeout = Duration::from_secs(1);
    let client = setup.client(ENDPOINT, timeout);

    let mut stream = Box::pin(client.stream(setup.token(), &messages(), 200).await.unwrap());
    let first = stream.next().await.unwrap().unwrap();
    let stalled_at = Instant::now();
    let error = stream.next().await.unwrap().unwrap_err();
    let waited = stalled_at.elapsed();

    assert_eq!(first, "要約: ");
    assert_eq!(error.kind(), ServingErrorKind::Timeout, "{error}");
    assert!(waited >= timeout - CHUNK_DELAY, "timed out early, after {waited:?}");
    assert!(
        waited < timeout * 3,
        "timed out after {waited:?}, not about {timeout:?}"
    );
    assert!(
        stream.next().await.is_none(),
        "the error must be the stream's last item"
    );
    assert_eq!(
        setup.double.requests(ENDPOINT),
        1,
        "a stream must not be retried after its first piece"
    );
}

#[tokio::test]
async fn stream_duration_is_bounded() {
    let setup = Setup::start().await;
    let limit = CHUNK_DELAY * 3;
    let client = setup.client(ENDPOINT, TIMEOUT).with_max_stream_duration(limit);

    let stream = client.stream(setup.token(), &messages(), 200).await.unwrap();
    let items: Vec<Result<String, ServingError>> = stream.collect().await;

    let error = items.last().unwrap().as_ref().unwrap_err();
    assert_eq!(error.kind(), ServingErrorKind::Timeout, "{error}");
    assert!(items.len() < 7, "the stream ran past its limit: {items:?}");
}
