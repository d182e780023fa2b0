//! The parts every page shares: the language, the signed-in user and the CSRF token.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, Key, PrivateCookieJar, SameSite};

use crate::i18n::{Lang, Texts, LANG_COOKIE};
use crate::session::{random_token, Session};
use crate::startup::AppState;

/// The cookie that contains the CSRF token of a browser that is not signed in.
const ANONYMOUS_CSRF_COOKIE: &str = "csrf";

/// The shared parts of a page.
pub struct Chrome {
    pub lang: Lang,
    pub t: &'static Texts,
    /// The signed-in user's display name.
    pub user: Option<String>,
    pub csrf_token: String,
    pub sign_in_enabled: bool,
}

/// Works out the page's language (a `?lang=` switch is remembered in a cookie), the session
/// and the CSRF token (the session's, or a per-browser one before sign-in).
pub fn chrome(
    state: &AppState,
    headers: &HeaderMap,
    plain: CookieJar,
    private: PrivateCookieJar<Key>,
    requested_lang: Option<&str>,
) -> (Chrome, Option<Session>, CookieJar, PrivateCookieJar<Key>) {
    let (lang, plain) = match requested_lang.and_then(Lang::parse) {
        Some(lang) => {
            let cookie = Cookie::build((LANG_COOKIE, lang.code()))
                .path("/")
                .secure(state.cookies().secure)
                .same_site(SameSite::Lax)
                .max_age(time::Duration::days(365))
                .build();
            (lang, plain.add(cookie))
        }
        None => (Lang::of_request(headers, &plain), plain),
    };

    let session = state.cookies().session(&private);
    let (csrf_token, private) = match &session {
        Some(session) => (session.csrf_token.clone(), private),
        None => anonymous_csrf(private, state.cookies().secure),
    };
    let chrome = Chrome {
        lang,
        t: lang.texts(),
        user: session.as_ref().map(|session| session.display_name().to_owned()),
        csrf_token,
        sign_in_enabled: state.provider().is_some(),
    };
    (chrome, session, plain, private)
}

fn anonymous_csrf(private: PrivateCookieJar<Key>, secure: bool) -> (String, PrivateCookieJar<Key>) {
    if let Some(cookie) = private.get(ANONYMOUS_CSRF_COOKIE) {
        return (cookie.value().to_owned(), private);
    }
    let token = random_token();
    let cookie = Cookie::build((ANONYMOUS_CSRF_COOKIE, token.clone()))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .build();
    (token, private.add(cookie))
}

/// The CSRF token a form of this browser must carry: the session's, or the anonymous one.
pub fn expected_csrf(state: &AppState, private: &PrivateCookieJar<Key>) -> Option<String> {
    match state.cookies().session(private) {
        Some(session) => Some(session.csrf_token),
        None => private.get(ANONYMOUS_CSRF_COOKIE).map(|cookie| cookie.value().to_owned()),
    }
}

/// Renders a template, or logs the failure and returns 500.
pub fn render(template: &impl askama::Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            let error_id = crate::request_id::current();
            tracing::error!(%error_id, %error, "failed to render a page");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("internal error {error_id}")).into_response()
        }
    }
}
