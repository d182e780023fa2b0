//! The provider's discovery document, the OpenID Connect client built from it, and the two
//! halves of the login: the authorization request and the code exchange with id_token checks.

use std::time::Duration;

use chrono::{DateTime, Utc};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreJsonWebKeySet};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadataWithLogout,
    RedirectUrl, Scope, SignatureVerificationError, TokenResponse,
};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::config::OidcConfig;

/// How far the provider's clock may be ahead of or behind ours.
const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// The oldest `iat` accepted: a login takes minutes, not hours.
const MAX_TOKEN_AGE: Duration = Duration::from_secs(10 * 60);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

type Client = CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// A failed login. The text goes to the log, and the user sees a generic page with an id.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("OpenID provider discovery at `{issuer}` failed: {reason}")]
    Discovery { issuer: String, reason: String },
    #[error("the `state` returned by the provider does not match this browser's login")]
    StateMismatch,
    #[error("no login is in progress in this browser (missing or expired login cookie)")]
    NoLoginInProgress,
    #[error("the provider returned an error: {0}")]
    ProviderError(String),
    #[error("the code exchange failed: {0}")]
    TokenExchange(String),
    #[error("the token response has no id_token")]
    MissingIdToken,
    #[error("the id_token was rejected: {0}")]
    InvalidIdToken(String),
    #[error("the provider rejected the refresh token: {0}")]
    Refresh(String),
    #[error("the provider could not be reached for a token refresh: {0}")]
    RefreshUnavailable(String),
}

/// Tokens from a refresh. Databricks rotates refresh tokens, so the new one replaces the old.
/// `Debug` leaves the tokens out.
#[derive(Clone)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_at: Option<i64>,
}

/// The values the browser keeps, encrypted, between the authorization request and the callback.
/// `Debug` leaves the state, nonce and PKCE verifier out.
#[derive(Clone, Serialize, Deserialize)]
pub struct LoginStart {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub return_to: String,
}

/// The result of a successful login. `Debug` leaves the tokens out.
#[derive(Clone)]
pub struct SignedIn {
    pub subject: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Unix seconds when the access token expires, when the token response has `expires_in`.
    pub expires_at: Option<i64>,
}

/// The workspace's OpenID provider: settings plus the discovery document, fetched on first use.
#[derive(Debug)]
pub struct Provider {
    config: OidcConfig,
    http: reqwest::Client,
    metadata: RwLock<Option<ProviderMetadataWithLogout>>,
}

impl Provider {
    pub fn new(config: OidcConfig) -> Self {
        // No redirects: a provider endpoint that redirects could otherwise make the app fetch
        // an arbitrary URL (server-side request forgery).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .expect("a client with no custom TLS settings always builds");
        Provider {
            config,
            http,
            metadata: RwLock::new(None),
        }
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// Returns the discovery document, fetching it on first use or when `refresh` is set.
    async fn metadata(&self, refresh: bool) -> Result<ProviderMetadataWithLogout, AuthError> {
        if !refresh {
            if let Some(metadata) = self.metadata.read().await.as_ref() {
                return Ok(metadata.clone());
            }
        }
        let issuer = self.config.issuer();
        let discovery_error = |reason: String| AuthError::Discovery {
            issuer: issuer.clone(),
            reason,
        };
        let issuer_url = IssuerUrl::new(issuer.clone()).map_err(|e| discovery_error(e.to_string()))?;
        let metadata = ProviderMetadataWithLogout::discover_async(issuer_url, &self.http)
            .await
            .map_err(|e| discovery_error(error_chain(&e)))?;
        *self.metadata.write().await = Some(metadata.clone());
        Ok(metadata)
    }

    /// Fetches the signing keys again, for a token signed with a key not seen before.
    async fn refresh_keys(&self) -> Result<ProviderMetadataWithLogout, AuthError> {
        let metadata = self.metadata(false).await?;
        let keys = CoreJsonWebKeySet::fetch_async(metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| AuthError::Discovery {
                issuer: self.config.issuer(),
                reason: format!("failed to fetch the signing keys: {}", error_chain(&e)),
            })?;
        let metadata = metadata.set_jwks(keys);
        *self.metadata.write().await = Some(metadata.clone());
        Ok(metadata)
    }

    fn client(&self, metadata: ProviderMetadataWithLogout) -> Result<Client, AuthError> {
        let redirect = RedirectUrl::new(self.config.redirect_uri()).map_err(|e| AuthError::Discovery {
            issuer: self.config.issuer(),
            reason: format!("invalid redirect URI: {e}"),
        })?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(self.config.client_secret.expose().to_owned())),
        )
        .set_redirect_uri(redirect))
    }

    /// Builds the authorization URL and the values the callback must match.
    pub async fn start_login(&self, return_to: String) -> Result<(url::Url, LoginStart), AuthError> {
        let client = self.client(self.metadata(false).await?)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .set_pkce_challenge(challenge);
        // The crate always requests `openid` itself.
        for scope in self.config.scopes.iter().filter(|scope| *scope != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        let start = LoginStart {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            return_to,
        };
        Ok((url, start))
    }

    /// Exchanges the code with the PKCE verifier and verifies the id_token. The checks are the
    /// signature against the provider's keys (fetched again once for an unknown key id), `iss`,
    /// `aud`, `azp`, `exp` and `iat` with a small clock skew, and the `nonce` of this login.
    pub async fn finish_login(&self, start: &LoginStart, state: &str, code: &str) -> Result<SignedIn, AuthError> {
        if !constant_time_eq(start.state.as_bytes(), state.as_bytes()) {
            return Err(AuthError::StateMismatch);
        }
        let client = self.client(self.metadata(false).await?)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| AuthError::TokenExchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(start.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| AuthError::TokenExchange(error_chain(&e)))?;
        let id_token = response.id_token().ok_or(AuthError::MissingIdToken)?;
        let nonce = Nonce::new(start.nonce.clone());

        let claims = match verify(&client, id_token, &nonce) {
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
                tracing::info!("id_token signed with an unknown key; fetching the provider's keys again");
                let client = self.client(self.refresh_keys().await?)?;
                verify(&client, id_token, &nonce)
            }
            other => other,
        }
        .map_err(|e| AuthError::InvalidIdToken(error_chain(&e)))?;

        Ok(SignedIn {
            subject: claims.subject().to_string(),
            name: claims.name().and_then(|name| name.get(None)).map(|name| name.to_string()),
            email: claims.email().map(|email| email.to_string()),
            access_token: response.access_token().secret().clone(),
            refresh_token: response.refresh_token().map(|token| token.secret().clone()),
            expires_at: response
                .expires_in()
                .map(|lifetime| Utc::now().timestamp() + lifetime.as_secs() as i64),
        })
    }

    /// Exchanges a refresh token for new tokens. Each refresh token works once, so callers run
    /// at most one refresh per session at a time (see `Refresher`).
    /// Only an answer of the provider that rejects the token is `AuthError::Refresh`; a network
    /// failure or a server error is `AuthError::RefreshUnavailable`, after which the session stays.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, AuthError> {
        let metadata = self
            .metadata(false)
            .await
            .map_err(|e| AuthError::RefreshUnavailable(e.to_string()))?;
        let client = self.client(metadata)?;
        let token = openidconnect::RefreshToken::new(refresh_token.to_owned());
        let response = client
            .exchange_refresh_token(&token)
            .map_err(|e| AuthError::Refresh(e.to_string()))?
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(_) => AuthError::Refresh(error_chain(&e)),
                other => AuthError::RefreshUnavailable(error_chain(&other)),
            })?;
        Ok(Tokens {
            access_token: response.access_token().secret().clone(),
            refresh_token: response
                .refresh_token()
                .map(|token| token.secret().clone())
                .or_else(|| Some(refresh_token.to_owned())),
            expires_at: response
                .expires_in()
                .map(|lifetime| Utc::now().timestamp() + lifetime.as_secs() as i64),
        })
    }

    /// The provider's end-session URL for a logout that returns to this app, if it offers one.
    pub async fn logout_url(&self) -> Option<url::Url> {
        let metadata = self.metadata(false).await.ok()?;
        let endpoint = metadata.additional_metadata().end_session_endpoint.clone()?;
        let mut url = endpoint.url().clone();
        url.query_pairs_mut()
            .append_pair("client_id", &self.config.client_id)
            .append_pair("post_logout_redirect_uri", &format!("{}/", self.config.public_url));
        Some(url)
    }
}

fn verify(
    client: &Client,
    id_token: &openidconnect::core::CoreIdToken,
    nonce: &Nonce,
) -> Result<openidconnect::core::CoreIdTokenClaims, ClaimsVerificationError> {
    let skew = chrono::Duration::from_std(CLOCK_SKEW).expect("small duration");
    let max_age = chrono::Duration::from_std(MAX_TOKEN_AGE).expect("small duration");
    let verifier = client
        .id_token_verifier()
        // `exp` is compared with this time, so a clock behind the provider's by up to the
        // skew still accepts a fresh token.
        .set_time_fn(move || Utc::now() - skew)
        .set_issue_time_verifier_fn(move |issued: DateTime<Utc>| {
            let now = Utc::now();
            if issued > now + skew {
                return Err(format!("issued in the future ({issued})"));
            }
            if issued < now - max_age {
                return Err(format!("issued too long ago ({issued})"));
            }
            Ok(())
        });
    id_token.claims(&verifier, nonce).cloned()
}

fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    left.ct_eq(right).into()
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

impl std::fmt::Debug for SignedIn {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SignedIn")
            .field("subject", &self.subject)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Tokens")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LoginStart {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LoginStart")
            .field("return_to", &self.return_to)
            .finish_non_exhaustive()
    }
}
