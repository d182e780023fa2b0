//! Japanese and English screens, chosen by the `lang` cookie (set by the switch on every page)
//! or else by `Accept-Language`.

use axum::http::header::ACCEPT_LANGUAGE;
use axum::http::HeaderMap;
use axum_extra::extract::cookie::CookieJar;

use crate::serving::ServingErrorKind;

/// The cookie that the language switch sets.
pub const LANG_COOKIE: &str = "lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ja,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        match code.to_ascii_lowercase().as_str() {
            "ja" => Some(Lang::Ja),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// Returns the language of a request: the switch's cookie, then `Accept-Language`, then English.
    pub fn of_request(headers: &HeaderMap, cookies: &CookieJar) -> Self {
        if let Some(lang) = cookies.get(LANG_COOKIE).and_then(|cookie| Lang::parse(cookie.value())) {
            return lang;
        }
        headers
            .get(ACCEPT_LANGUAGE)
            .and_then(|value| value.to_str().ok())
            .and_then(negotiate)
            .unwrap_or(Lang::En)
    }

    /// Returns the text the user sees for a failed Model Serving call.
    pub fn serving_error(self, kind: ServingErrorKind) -> &'static str {
        use ServingErrorKind as Kind;
        match (self, kind) {
            (Lang::Ja, Kind::Unauthorized) => "Databricks の認証が切れました。もう一度サインインしてください。",
            (Lang::En, Kind::Unauthorized) => "Your Databricks sign-in has expired. Please sign in again.",
            (Lang::Ja, Kind::Forbidden) => "このモデルを使う権限がありません。ワークスペースの管理者に連絡してください。",
            (Lang::En, Kind::Forbidden) => "You have no permission to use this model. Ask your workspace administrator.",
            (Lang::Ja, Kind::EndpointNotFound) => "モデルのエンドポイントが見つかりません。管理者に設定を確認してもらってください。",
            (Lang::En, Kind::EndpointNotFound) => "The model endpoint was not found. Ask an administrator to check the setting.",
            (Lang::Ja, Kind::RateLimited) => "リクエストが多すぎます。少し待ってからもう一度お試しください。",
            (Lang::En, Kind::RateLimited) => "Too many requests. Please wait a moment and try again.",
            (Lang::Ja, Kind::ServerError | Kind::Network | Kind::InvalidResponse) => {
                "モデルの呼び出しに失敗しました。しばらくしてからもう一度お試しください。"
            }
            (Lang::En, Kind::ServerError | Kind::Network | Kind::InvalidResponse) => {
                "Calling the model failed. Please try again later."
            }
            (Lang::Ja, Kind::Rejected) => "モデルがこのリクエストを受け付けませんでした。テキストを短くしてお試しください。",
            (Lang::En, Kind::Rejected) => "The model did not accept this request. Try a shorter text.",
            (Lang::Ja, Kind::Timeout) => "モデルの応答が時間内に返りませんでした。もう一度お試しください。",
            (Lang::En, Kind::Timeout) => "The model did not answer in time. Please try again.",
        }
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::Ja => &JA,
            Lang::En => &EN,
        }
    }
}

/// Picks the supported language with the highest `q` in an `Accept-Language` value.
pub fn negotiate(header: &str) -> Option<Lang> {
    let mut best: Option<(Lang, f32)> = None;
    for item in header.split(',') {
        let mut parts = item.trim().split(';');
        let tag = parts.next().unwrap_or_default().trim();
        let quality = parts
            .find_map(|part| part.trim().strip_prefix("q="))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let primary = tag.split('-').next().unwrap_or_default();
        let Some(lang) = Lang::parse(primary) else {
            continue;
        };
        if quality > 0.0 && best.is_none_or(|(_, best_quality)| quality > best_quality) {
            best = Some((lang, quality));
        }
    }
    best.map(|(lang, _)| lang)
}

/// Every string the pages show.
#[derive(Debug)]
pub struct Texts {
    pub title: &'static str,
    pub sign_in: &'static str,
    pub sign_out: &'static str,
    pub signed_in_as: &'static str,
    pub not_configured: &'static str,
    pub summarize_heading: &'static str,
    pub text_label: &'static str,
    pub prompt_label: &'static str,
    pub summarize_button: &'static str,
    pub sample_button: &'static str,
    pub clear_button: &'static str,
    pub result_heading: &'static str,
    pub sign_in_to_run: &'static str,
    pub resumed_after_sign_in: &'static str,
    pub default_prompt: &'static str,
    pub sample_text: &'static str,
    pub too_long_to_keep: &'static str,
    pub error_id: &'static str,
    pub home: &'static str,
    pub switch_language: &'static str,
    pub chat_heading: &'static str,
    pub chat_sign_in: &'static str,
    pub message_label: &'static str,
    pub send_button: &'static str,
    pub chat_needs_script: &'static str,
    pub chat_interrupted: &'static str,
}

static JA: Texts = Texts {
    title: "Databricks 要約アプリ",
    sign_in: "Databricks でサインイン",
    sign_out: "サインアウト",
    signed_in_as: "サインイン中",
    not_configured: "このアプリではサインインが設定されていません。",
    summarize_heading: "テキストの要約",
    text_label: "要約するテキスト",
    prompt_label: "指示（プロンプト）",
    summarize_button: "要約する",
    sample_button: "サンプルを入力",
    clear_button: "結果をクリア",
    result_heading: "要約結果",
    sign_in_to_run: "要約するにはサインインが必要です。入力したテキストはサインイン後に送信されます。",
    resumed_after_sign_in: "サインイン前に入力したテキストを要約しました。",
    default_prompt: "次のテキストを日本語で簡潔に要約してください。",
    sample_text: "Databricks は、データエンジニアリング、分析、機械学習を一つのプラットフォームで扱えるようにするデータインテリジェンスプラットフォームです。Model Serving を使うと、基盤モデルや独自のモデルを REST API として提供できます。",
    too_long_to_keep: "テキストが長すぎるため、サインインの間は保持できません。先にサインインしてから入力してください。",
    error_id: "エラー ID",
    home: "ホーム",
    switch_language: "English",
    chat_heading: "チャット",
    chat_sign_in: "チャットするにはサインインしてください。",
    message_label: "メッセージ",
    send_button: "送信",
    chat_needs_script: "チャットで回答を順に表示するには JavaScript が必要です。要約フォームは JavaScript なしで使えます。",
    chat_interrupted: "回答が途中で途切れました。もう一度送信してください。",
};

static EN: Texts = Texts {
    title: "Databricks summarizer",
    sign_in: "Sign in with Databricks",
    sign_out: "Sign out",
    signed_in_as: "Signed in as",
    not_configured: "Sign-in is not configured for this app.",
    summarize_heading: "Summarize a text",
    text_label: "Text to summarize",
    prompt_label: "Instruction (prompt)",
    summarize_button: "Summarize",
    sample_button: "Fill in a sample",
    clear_button: "Clear the result",
    result_heading: "Summary",
    sign_in_to_run: "Sign in to summarize. The text you typed is sent after you sign in.",
    resumed_after_sign_in: "Summarized the text you typed before signing in.",
    default_prompt: "次のテキストを日本語で簡潔に要約してください。",
    sample_text: "Databricks is a data intelligence platform that brings data engineering, analytics and machine learning together. Model Serving exposes foundation models and your own models as REST APIs.",
    too_long_to_keep: "The text is too long to keep during sign-in. Sign in first, then type it.",
    error_id: "Error id",
    home: "Home",
    switch_language: "日本語",
    chat_heading: "Chat",
    chat_sign_in: "Sign in to chat.",
    message_label: "Message",
    send_button: "Send",
    chat_needs_script: "The chat needs JavaScript to show the answer as it arrives. The summarize form works without it.",
    chat_interrupted: "The reply was cut off. Please send your message again.",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_best_supported() {
        assert_eq!(negotiate("ja,en-US;q=0.8"), Some(Lang::Ja));
        assert_eq!(negotiate("en-US,en;q=0.9,ja;q=0.8"), Some(Lang::En));
        assert_eq!(negotiate("fr-FR,ja;q=0.5"), Some(Lang::Ja));
        assert_eq!(negotiate("fr-FR,de"), None);
        assert_eq!(negotiate("ja;q=0,en;q=0.1"), Some(Lang::En));
    }
}
