//! Sessions in encrypted cookies (AES-256-GCM, keyed by `SESSION_KEY`).
//!
//! The whole session lives in the cookie, so it survives an app restart and works when the load
//! balancer sends one user's requests to different tasks, with no store to run. The key comes
//! from Secrets Manager, where the deployer generates it once.

use axum_extra::extract::cookie::{Cookie, Key, PrivateCookieJar, SameSite};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use time::Duration;

use crate::auth::{LoginStart, SignedIn, Tokens};

/// How long a started login may take before its cookie expires.
const LOGIN_LIFETIME: Duration = Duration::minutes(10);
/// How long a session lasts without a new login.
const SESSION_LIFETIME: Duration = Duration::hours(12);

/// A signed-in user's session. `Debug` leaves the tokens out.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    /// A new random id for every login, so a session id known before the login is worthless after it.
    pub id: String,
    /// The token that every state-changing form of this session must send back.
    pub csrf_token: String,
    pub subject: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_at: Option<i64>,
    /// Unix seconds when the current access token was issued.
    #[serde(default)]
    pub issued_at: i64,
    /// Unix seconds of the sign-in. The session ends `SESSION_LIFETIME` after it whatever the
    /// refreshes, because a cookie session cannot be revoked on the server: a copied cookie
    /// keeps working until then, even after the user signs out.
    #[serde(default)]
    pub created_at: i64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Session")
            .field("id", &self.id)
            .field("subject", &self.subject)
            .field("expires_at", &self.expires_at)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// The longest time before expiry at which the access token is refreshed.
const MAX_REFRESH_MARGIN: i64 = 60;

impl Session {
    /// True when the access token expires within the refresh margin: a minute, or half the
    /// token's lifetime when that is shorter.
    pub fn needs_refresh(&self, now: i64) -> bool {
        let Some(expires_at) = self.expires_at else {
            return false;
        };
        let lifetime = (expires_at - self.issued_at).max(0);
        let margin = MAX_REFRESH_MARGIN.min(lifetime / 2);
        now >= expires_at - margin
    }

    /// Replaces the tokens after a refresh.
    pub fn with_tokens(mut self, tokens: Tokens, now: i64) -> Self {
        self.access_token = tokens.access_token;
        self.refresh_token = tokens.refresh_token.or(self.refresh_token);
        self.expires_at = tokens.expires_at;
        self.issued_at = now;
        self
    }

    pub fn from_login(signed_in: SignedIn) -> Self {
        Session {
            id: random_token(),
            csrf_token: random_token(),
            subject: signed_in.subject,
            name: signed_in.name,
            email: signed_in.email,
            access_token: signed_in.access_token,
            refresh_token: signed_in.refresh_token,
            expires_at: signed_in.expires_at,
            issued_at: chrono::Utc::now().timestamp(),
            created_at: chrono::Utc::now().timestamp(),
        }
    }

    /// Returns the name to greet the user with.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().or(self.email.as_deref()).unwrap_or(&self.subject)
    }
}

/// 32 random bytes, URL-safe base64.
pub fn random_token() -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Cookie names and attributes for one deployment.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    pub secure: bool,
}

impl CookieSettings {
    /// `__Host-` names make browsers insist on `Secure`, `Path=/` and no `Domain`.
    fn name(&self, base: &str) -> String {
        if self.secure {
            format!("__Host-{base}")
        } else {
            base.to_owned()
        }
    }

    fn build(&self, base: &str, value: String, lifetime: Duration) -> Cookie<'static> {
        Cookie::build((self.name(base), value))
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .max_age(lifetime)
            .build()
    }

    fn removal(&self, base: &str) -> Cookie<'static> {
        Cookie::build((self.name(base), "")).path("/").build()
    }

    /// The session in the cookie, unless it is past its absolute lifetime.
    pub fn session(&self, jar: &PrivateCookieJar<Key>) -> Option<Session> {
        let session: Session = read(jar, &self.name("session"))?;
        (remaining_lifetime(&session) > Duration::ZERO).then_some(session)
    }

    pub fn with_session(&self, jar: PrivateCookieJar<Key>, session: &Session) -> PrivateCookieJar<Key> {
        let value = serde_json::to_string(session).expect("a session always serialises");
        jar.add(self.build("session", value, remaining_lifetime(session)))
    }

    pub fn without_session(&self, jar: PrivateCookieJar<Key>) -> PrivateCookieJar<Key> {
        jar.remove(self.removal("session"))
    }

    pub fn login(&self, jar: &PrivateCookieJar<Key>) -> Option<LoginStart> {
        read(jar, &self.name("login"))
    }

    pub fn with_login(&self, jar: PrivateCookieJar<Key>, start: &LoginStart) -> PrivateCookieJar<Key> {
        let value = serde_json::to_string(start).expect("a login start always serialises");
        jar.add(self.build("login", value, LOGIN_LIFETIME))
    }

    pub fn without_login(&self, jar: PrivateCookieJar<Key>) -> PrivateCookieJar<Key> {
        jar.remove(self.removal("login"))
    }
}

/// How long the session has left before its absolute expiry.
fn remaining_lifetime(session: &Session) -> Duration {
    let ends_at = session.created_at + SESSION_LIFETIME.whole_seconds();
    Duration::seconds(ends_at - chrono::Utc::now().timestamp())
}

/// Decrypts and parses a cookie; a cookie that fails either is treated as absent.
fn read<T: DeserializeOwned>(jar: &PrivateCookieJar<Key>, name: &str) -> Option<T> {
    let cookie = jar.get(name)?;
    serde_json::from_str(cookie.value()).ok()
}

/// Why a request has no usable session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("not signed in")]
    NotSignedIn,
    #[error("the sign-in expired; sign in again")]
    RefreshFailed,
    #[error("Databricks could not be reached to renew the sign-in; try again in a moment")]
    Unavailable,
}

impl SessionError {
    /// A stable code for JSON responses.
    pub fn code(self) -> &'static str {
        match self {
            SessionError::NotSignedIn => "not_signed_in",
            SessionError::RefreshFailed => "sign_in_expired",
            SessionError::Unavailable => "temporarily_unavailable",
        }
    }
}

/// Returns the session with an access token that is not about to expire, refreshing it first
/// when needed, and the cookie jar to send back (updated after a refresh, cleared when the
/// refresh failed so the user signs in again).
pub async fn fresh_session(
    state: &crate::startup::AppState,
    jar: PrivateCookieJar<Key>,
) -> Result<(Session, PrivateCookieJar<Key>), (SessionError, PrivateCookieJar<Key>)> {
    let cookies = state.cookies();
    let (Some(provider), Some(session)) = (state.provider(), cookies.session(&jar)) else {
        return Err((SessionError::NotSignedIn, jar));
    };
    let now = chrono::Utc::now().timestamp();
    if !session.needs_refresh(now) {
        return Ok((session, jar));
    }
    let Some(refresh_token) = session.refresh_token.clone() else {
        return Err((SessionError::RefreshFailed, cookies.without_session(jar)));
    };

    match state.refresher().refresh(provider, &refresh_token).await {
        Ok(tokens) => {
            let session = session.with_tokens(tokens, now);
            tracing::info!(session_id = %session.id, "access token refreshed");
            let jar = cookies.with_session(jar, &session);
            Ok((session, jar))
        }
        Err(error @ crate::auth::AuthError::RefreshUnavailable(_)) => {
            tracing::warn!(session_id = %session.id, %error, "token refresh failed; keeping the session");
            Err((SessionError::Unavailable, jar))
        }
        Err(error) => {
            tracing::warn!(session_id = %session.id, %error, "token refresh rejected; signing the user out");
            Err((SessionError::RefreshFailed, cookies.without_session(jar)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(created_at: i64) -> Session {
        Session {
            id: "id".into(),
            csrf_token: "csrf".into(),
            subject: "sub".into(),
            name: None,
            email: None,
            access_token: "token".into(),
            refresh_token: None,
            expires_at: None,
            issued_at: created_at,
            created_at,
        }
    }

    #[test]
    fn debug_leaves_tokens_out() {
        let mut signed_in = session(1);
        signed_in.refresh_token = Some("refresh-secret".into());
        let printed = format!("{signed_in:?}");
        assert!(!printed.contains("token"), "{printed}");
        assert!(!printed.contains("csrf"), "{printed}");
    }

    #[test]
    fn session_ends_at_absolute_lifetime() {
        let now = chrono::Utc::now().timestamp();
        assert!(remaining_lifetime(&session(now)) > Duration::hours(11));
        assert!(remaining_lifetime(&session(now - SESSION_LIFETIME.whole_seconds() - 1)) <= Duration::ZERO);
        assert!(remaining_lifetime(&session(0)) <= Duration::ZERO, "a session without a sign-in time is expired");
    }

    #[test]
    fn refresh_margin_is_half_lifetime_at_most() {
        let mut short = session(1_000);
        short.expires_at = Some(1_004);
        assert!(!short.needs_refresh(1_001));
        assert!(short.needs_refresh(1_002));
    }
}
