//! `GET /`: who is signed in, with sign-in and sign-out controls.

use axum::extract::State;
use axum::response::Html;
use axum_extra::extract::cookie::{Key, PrivateCookieJar};

use crate::startup::AppState;

pub async fn home(State(state): State<AppState>, jar: PrivateCookieJar<Key>) -> Html<String> {
    let body = match (state.provider(), state.cookies().session(&jar)) {
        (None, _) => "<p>The app is running. Sign-in is not configured.</p>\
                      <p lang=\"ja\">アプリは起動しています。サインインは設定されていません。</p>"
            .to_owned(),
        (Some(_), None) => "<p><a href=\"/login\">Sign in with Databricks</a> / \
                            <a href=\"/login\" lang=\"ja\">Databricks でサインイン</a></p>"
            .to_owned(),
        (Some(_), Some(session)) => format!(
            "<p>Signed in as / サインイン中: <strong>{name}</strong></p>\
             <dl><dt>Email</dt><dd>{email}</dd><dt>Subject</dt><dd>{subject}</dd></dl>\
             <form method=\"post\" action=\"/logout\">\
             <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
             <button type=\"submit\">Sign out / サインアウト</button></form>",
            name = escape(session.display_name()),
            email = escape(session.email.as_deref().unwrap_or("-")),
            subject = escape(&session.subject),
            csrf = escape(&session.csrf_token),
        ),
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Databricks OAuth app</title></head><body><h1>Databricks OAuth app</h1>{body}</body></html>"
    ))
}

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#x27;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use axum::body::{to_bytes, Body};
    use axum::http::{header, Request, StatusCode};
    use tower::ServiceExt;

    use crate::config::Config;
    use crate::startup::{app, AppState};

    #[tokio::test]
    async fn home_serves_html() {
        let config = Config::from_lookup(|_| Err(std::env::VarError::NotPresent)).unwrap();
        let request = Request::get("/").body(Body::empty()).unwrap();

        let response = app(AppState::new(config)).oneshot(request).await.unwrap();

        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        let body = to_bytes(response.into_body(), 64 * 1024).await.unwrap();
        assert!(String::from_utf8(body.to_vec()).unwrap().contains("<h1>"));
    }

    #[test]
    fn escape_covers_markup() {
        assert_eq!(super::escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;");
    }
}
