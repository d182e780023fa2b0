//! Sessions in encrypted cookies (AES-256-GCM, keyed by `SESSION_KEY`).
//!
//! The whole session lives in the cookie, so it survives an app restart and works when the load
//! balancer sends one user's requests to different tasks, with no store to run. The key comes
//! from Secrets Manager, where the deployer generates it once.

use axum_extra::extract::cookie::{Cookie, Key, PrivateCookieJar, SameSite};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use time::Duration;

use crate::auth::{LoginStart, SignedIn};

/// How long a started login may take before its cookie expires.
const LOGIN_LIFETIME: Duration = Duration::minutes(10);
/// How long a session lasts without a new login.
const SESSION_LIFETIME: Duration = Duration::hours(12);

/// A signed-in user's session.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
}

impl Session {
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

    pub fn session(&self, jar: &PrivateCookieJar<Key>) -> Option<Session> {
        read(jar, &self.name("session"))
    }

    pub fn with_session(&self, jar: PrivateCookieJar<Key>, session: &Session) -> PrivateCookieJar<Key> {
        let value = serde_json::to_string(session).expect("a session always serialises");
        jar.add(self.build("session", value, SESSION_LIFETIME))
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

/// Decrypts and parses a cookie; a cookie that fails either is treated as absent.
fn read<T: DeserializeOwned>(jar: &PrivateCookieJar<Key>, name: &str) -> Option<T> {
    let cookie = jar.get(name)?;
    serde_json::from_str(cookie.value()).ok()
}
