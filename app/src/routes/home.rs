//! `GET /`: who is signed in, with links to the tools.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{CookieJar, Key, PrivateCookieJar};
use serde::Deserialize;

use super::page::{chrome, render, Chrome};
use crate::i18n::{Lang, Texts};
use crate::startup::AppState;

#[derive(Debug, Deserialize)]
pub struct HomeQuery {
    lang: Option<String>,
}

pub struct Profile {
    pub email: String,
    pub subject: String,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    lang: Lang,
    t: &'static Texts,
    user: Option<String>,
    csrf_token: String,
    sign_in_enabled: bool,
    profile: Option<Profile>,
}

impl HomePage {
    fn new(chrome: Chrome, profile: Option<Profile>) -> Self {
        HomePage {
            lang: chrome.lang,
            t: chrome.t,
            user: chrome.user,
            csrf_token: chrome.csrf_token,
            sign_in_enabled: chrome.sign_in_enabled,
            profile,
        }
    }
}

pub async fn home(
    State(state): State<AppState>,
    headers: HeaderMap,
    plain: CookieJar,
    private: PrivateCookieJar<Key>,
    Query(query): Query<HomeQuery>,
) -> Response {
    let (chrome, session, plain, private) = chrome(&state, &headers, plain, private, query.lang.as_deref());
    let profile = session.map(|session| Profile {
        email: session.email.unwrap_or_else(|| "-".to_owned()),
        subject: session.subject,
    });
    (plain, private, render(&HomePage::new(chrome, profile))).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::{to_bytes, Body};
    use axum::http::{header, Request, StatusCode};
    use tower::ServiceExt;

    use crate::config::Config;
    use crate::startup::{app, AppState};

    async fn get_home(accept_language: &str) -> String {
        let config = Config::from_lookup(|_| Err(std::env::VarError::NotPresent)).unwrap();
        let request = Request::get("/")
            .header(header::ACCEPT_LANGUAGE, accept_language)
            .body(Body::empty())
            .unwrap();
        let response = app(AppState::new(config)).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(response.headers()[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(response.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert!(response.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        let body = to_bytes(response.into_body(), 64 * 1024).await.unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn home_speaks_japanese_by_header() {
        let page = get_home("ja,en;q=0.5").await;
        assert!(page.contains("<html lang=\"ja\">"), "{page}");
        assert!(page.contains("Databricks 要約アプリ"), "{page}");
    }

    #[tokio::test]
    async fn home_speaks_english_by_header() {
        let page = get_home("en-US").await;
        assert!(page.contains("<html lang=\"en\">"), "{page}");
        assert!(page.contains("Databricks summarizer"), "{page}");
    }
}
