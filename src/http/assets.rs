//! Serving the browser files the pages embed: the npm packages `build.rs`
//! pinned and fetched (addressed with `?v=<fingerprint>`, so cached for good
//! and revalidated with an ETag), the pages' own hand-written files (which
//! change without the fingerprint changing, so revalidated every time), and
//! HTML escaping for the text the pages interpolate.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One embedded file: (file name, content type, bytes), as `build.rs`
/// generates them.
pub(super) type Embedded = (&'static str, &'static str, &'static [u8]);

/// Fingerprinted assets may be cached for good.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Serves `file` from `assets`, whose fingerprint is `version`, answering a
/// matching revalidation with 304; `None` when no asset has that name.
pub(super) fn fingerprinted(
    assets: &[Embedded],
    version: &str,
    file: &str,
    headers: &HeaderMap,
) -> Option<Response> {
    let &(_, content_type, bytes) = assets.iter().find(|(name, _, _)| *name == file)?;
    let etag = format!("\"{version}\"");
    let cache = [
        (header::CACHE_CONTROL, IMMUTABLE.to_owned()),
        (header::ETAG, etag.clone()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
    ];
    let revalidated = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if revalidated {
        return Some((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    Some(
        (
            cache,
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            bytes,
        )
            .into_response(),
    )
}

/// A page's HTML, under its content security policy; revalidated every time.
pub(super) fn html_page(content_security_policy: &'static str, html: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, mime::TEXT_HTML_UTF_8.as_ref()),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, content_security_policy),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
        .into_response()
}

/// The list items naming the files a build could not embed.
pub(super) fn missing_items(missing: &[&str]) -> String {
    missing
        .iter()
        .map(|name| format!("<li><code>{}</code></li>", escape(name)))
        .collect()
}

/// Serves one of a page's own files, which browsers must revalidate.
pub(super) fn own(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// Escapes text for HTML element content and attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}
