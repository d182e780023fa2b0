//! `GET /`: a placeholder page until the login and the summarize form exist.

use axum::response::Html;

const PLACEHOLDER_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Databricks OAuth app</title>
</head>
<body>
<h1>Databricks OAuth app</h1>
<p>The app is running. Sign-in and the summarize form are not built yet.</p>
<p lang="ja">アプリは起動しています。サインインと要約フォームはまだ実装されていません。</p>
</body>
</html>
"#;

pub async fn home() -> Html<&'static str> {
    Html(PLACEHOLDER_PAGE)
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
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let body = to_bytes(response.into_body(), 64 * 1024).await.unwrap();
        assert!(String::from_utf8(body.to_vec()).unwrap().contains("<h1>"));
    }
}
