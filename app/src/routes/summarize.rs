//! `GET` and `POST /summarize`: the form that requests a summary from the Model Serving
//! endpoint with the signed-in user's own token. Text typed before sign-in is kept (encrypted) across
//! the sign-in and summarized right after it.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use axum_extra::extract::cookie::{Cookie, CookieJar, Key, PrivateCookieJar, SameSite};
use serde::{Deserialize, Serialize};

use super::error::{rejected, ErrorKind};
use super::page::{chrome, expected_csrf, render, Chrome};
use crate::i18n::{Lang, Texts};
use crate::serving::ChatMessage;
use crate::session::{fresh_session, Session, SessionError};
use crate::startup::AppState;

/// The cookie that keeps the text typed before sign-in.
const PENDING_COOKIE: &str = "pending";
/// Browsers keep cookies of up to about 4 KB; encryption and base64 add about a third.
const MAX_PENDING_BYTES: usize = 2_500;
/// The maximum length of the text sent to the model, in characters; longer text is cut.
const MAX_TEXT_CHARS: usize = 20_000;
const MAX_TOKENS: u32 = 1_024;

#[derive(Debug, Default, Deserialize)]
pub struct SummarizeQuery {
    lang: Option<String>,
    sample: Option<String>,
    resume: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SummarizeForm {
    csrf_token: String,
    text: String,
    prompt: Option<String>,
}

/// The text and instruction typed before sign-in.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    text: String,
    prompt: String,
}

/// An error shown on the page, with the id that is also in the log.
pub struct PageError {
    pub message: &'static str,
    pub id: String,
}

#[derive(Template)]
#[template(path = "summarize.html")]
struct SummarizePage {
    lang: Lang,
    t: &'static Texts,
    user: Option<String>,
    csrf_token: String,
    sign_in_enabled: bool,
    text: String,
    prompt: String,
    notice: Option<&'static str>,
    result: Option<String>,
    error: Option<PageError>,
}

impl SummarizePage {
    fn new(chrome: Chrome, text: String, prompt: String) -> Self {
        SummarizePage {
            lang: chrome.lang,
            t: chrome.t,
            user: chrome.user,
            csrf_token: chrome.csrf_token,
            sign_in_enabled: chrome.sign_in_enabled,
            text,
            prompt,
            notice: None,
            result: None,
            error: None,
        }
    }
}

fn default_prompt(state: &AppState, texts: &Texts) -> String {
    state.config.summarize_prompt.clone().unwrap_or_else(|| texts.default_prompt.to_owned())
}

pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    plain: CookieJar,
    private: PrivateCookieJar<Key>,
    Query(query): Query<SummarizeQuery>,
) -> Response {
    let (chrome, session, plain, private) = chrome(&state, &headers, plain, private, query.lang.as_deref());
    let pending = read_pending(&private);
    if let (Some(_), Some(pending), Some(_)) = (&session, pending, &query.resume) {
        let private = private.remove(Cookie::build(PENDING_COOKIE).path("/").build());
        let lang = chrome.lang;
        let mut page = SummarizePage::new(chrome, pending.text, pending.prompt);
        page.notice = Some(lang.texts().resumed_after_sign_in);
        return summarize_into(&state, plain, private, page).await;
    }

    let text = if query.sample.is_some() { chrome.t.sample_text.to_owned() } else { String::new() };
    let prompt = default_prompt(&state, chrome.t);
    (plain, private, render(&SummarizePage::new(chrome, text, prompt))).into_response()
}

pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    plain: CookieJar,
    private: PrivateCookieJar<Key>,
    Form(form): Form<SummarizeForm>,
) -> Response {
    let expected = expected_csrf(&state, &private);
    if !expected.is_some_and(|expected| crate::csrf::matches(&expected, &form.csrf_token)) {
        return rejected(ErrorKind::Forbidden);
    }
    let (chrome, session, plain, private) = chrome(&state, &headers, plain, private, None);
    if !chrome.sign_in_enabled {
        return rejected(ErrorKind::NotConfigured);
    }
    let prompt = form.prompt.filter(|prompt| !prompt.trim().is_empty()).unwrap_or_else(|| default_prompt(&state, chrome.t));
    let text: String = form.text.chars().take(MAX_TEXT_CHARS).collect();

    if session.is_none() {
        return keep_for_sign_in(state.cookies().secure, plain, private, chrome, Pending { text, prompt });
    }
    let page = SummarizePage::new(chrome, text, prompt);
    summarize_into(&state, plain, private, page).await
}

/// Keeps the text in an encrypted cookie and starts the sign-in, which returns to run it.
fn keep_for_sign_in(
    secure: bool,
    plain: CookieJar,
    private: PrivateCookieJar<Key>,
    chrome: Chrome,
    pending: Pending,
) -> Response {
    let value = serde_json::to_string(&pending).expect("pending text always serialises");
    if value.len() > MAX_PENDING_BYTES {
        let notice = chrome.t.too_long_to_keep;
        let mut page = SummarizePage::new(chrome, pending.text, pending.prompt);
        page.notice = Some(notice);
        return (plain, private, render(&page)).into_response();
    }
    let cookie = Cookie::build((PENDING_COOKIE, value))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(time::Duration::minutes(15))
        .build();
    let private = private.add(cookie);
    (plain, private, Redirect::to("/login?return_to=%2Fsummarize%3Fresume%3D1")).into_response()
}

fn read_pending(private: &PrivateCookieJar<Key>) -> Option<Pending> {
    private
        .get(PENDING_COOKIE)
        .and_then(|cookie| serde_json::from_str(cookie.value()).ok())
}

/// Calls the model with the page's text and puts the summary or the error on the page.
async fn summarize_into(
    state: &AppState,
    plain: CookieJar,
    private: PrivateCookieJar<Key>,
    mut page: SummarizePage,
) -> Response {
    let (session, private) = match fresh_session(state, private).await {
        Ok(fresh) => fresh,
        Err((SessionError::Unavailable, private)) => {
            let id = crate::request_id::current();
            page.error = Some(PageError {
                message: page.lang.serving_error(crate::serving::ServingErrorKind::Network),
                id,
            });
            return (plain, private, render(&page)).into_response();
        }
        Err((_, private)) => {
            // The sign-in expired: keep the text and sign in again.
            let t = page.t;
            let chrome = Chrome {
                lang: page.lang,
                t,
                user: None,
                csrf_token: page.csrf_token.clone(),
                sign_in_enabled: page.sign_in_enabled,
            };
            return keep_for_sign_in(state.cookies().secure, plain, private, chrome, Pending { text: page.text, prompt: page.prompt });
        }
    };
    let Some(serving) = state.serving() else {
        return rejected(ErrorKind::NotConfigured);
    };

    let messages = [ChatMessage::system(page.prompt.clone()), ChatMessage::user(page.text.clone())];
    match serving.complete(&session.access_token, &messages, MAX_TOKENS).await {
        Ok(summary) => page.result = Some(summary),
        Err(error) => page.error = Some(log_error(&session, page.lang, &error)),
    }
    (plain, private, render(&page)).into_response()
}

fn log_error(session: &Session, lang: Lang, error: &crate::serving::ServingError) -> PageError {
    let id = crate::request_id::current();
    tracing::warn!(error_id = %id, session_id = %session.id, kind = ?error.kind(), %error, "Model Serving call failed");
    PageError {
        message: lang.serving_error(error.kind()),
        id,
    }
}
