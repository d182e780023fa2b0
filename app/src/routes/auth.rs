//! `GET /login`, the OAuth callback and `POST /logout`.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use axum_extra::extract::cookie::{Key, PrivateCookieJar};
use serde::Deserialize;

use super::error::{failed, rejected, ErrorKind};
use crate::auth::safe_return_to;
use crate::session::Session;
use crate::startup::AppState;

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
}

/// Starts a login: remembers state, nonce and PKCE verifier in an encrypted cookie and sends
/// the browser to the provider's authorization endpoint.
pub async fn login(State(state): State<AppState>, jar: PrivateCookieJar<Key>, Query(query): Query<LoginQuery>) -> Response {
    let Some(provider) = state.provider() else {
        return rejected(ErrorKind::NotConfigured);
    };
    let return_to = safe_return_to(query.return_to.as_deref());
    match provider.start_login(return_to).await {
        Ok((url, start)) => {
            let jar = state.cookies().with_login(jar, &start);
            (jar, Redirect::to(url.as_str())).into_response()
        }
        Err(error) => failed(ErrorKind::LoginFailed, &error),
    }
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Finishes a login. The login cookie is removed whatever happens, so a `state` works once.
pub async fn callback(
    State(state): State<AppState>,
    jar: PrivateCookieJar<Key>,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let Some(provider) = state.provider() else {
        return rejected(ErrorKind::NotConfigured);
    };
    let cookies = state.cookies();
    let start = cookies.login(&jar);
    let jar = cookies.without_login(jar);

    let outcome = match (start, query.error, query.code, query.state) {
        (_, Some(error), _, _) => Err(crate::auth::AuthError::ProviderError(format!(
            "{error}: {}",
            query.error_description.unwrap_or_default()
        ))),
        (None, _, _, _) => Err(crate::auth::AuthError::NoLoginInProgress),
        (Some(_), None, _, None) => Err(crate::auth::AuthError::StateMismatch),
        (Some(_), None, None, Some(_)) => Err(crate::auth::AuthError::TokenExchange("no `code` in the callback".into())),
        (Some(start), None, Some(code), Some(returned_state)) => provider
            .finish_login(&start, &returned_state, &code)
            .await
            .map(|signed_in| (Session::from_login(signed_in), start.return_to)),
    };

    match outcome {
        Ok((session, return_to)) => {
            tracing::info!(session_id = %session.id, "user signed in");
            let jar = cookies.with_session(jar, &session);
            (jar, Redirect::to(&return_to)).into_response()
        }
        Err(error) => (jar, failed(ErrorKind::LoginFailed, &error)).into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    csrf_token: String,
}

/// Signs out: checks the CSRF token, clears the session cookie and, where the provider offers
/// an end-session endpoint, sends the browser there to end the provider's session too.
pub async fn logout(State(state): State<AppState>, jar: PrivateCookieJar<Key>, Form(form): Form<LogoutForm>) -> Response {
    let cookies = state.cookies();
    let Some(session) = cookies.session(&jar) else {
        return Redirect::to("/").into_response();
    };
    if !crate::csrf::matches(&session.csrf_token, &form.csrf_token) {
        return rejected(ErrorKind::Forbidden);
    }
    tracing::info!(session_id = %session.id, "user signed out");
    let jar = cookies.without_session(jar);
    let target = match state.provider() {
        Some(provider) => provider.logout_url().await.map(|url| url.to_string()),
        None => None,
    };
    (jar, Redirect::to(target.as_deref().unwrap_or("/"))).into_response()
}
