//! The audience dashboard: an HTML page on `GET /dashboard` that charts who
//! follows the company's official accounts (followers per account, distinct
//! people with their bounds, pairwise overlap, the combinations followed
//! together, and the last 30 days), read from the `audience` and
//! `audienceHistory` GraphQL fields with the API key the user pastes into it.
//!
//! The page, its assets and this module hold no data and need no key: the
//! browser keeps the key (in its local storage, or the one the playground
//! keeps there) and sends it to `/graphql` itself. The page's own script and
//! style sheet are the hand-written files in `dashboard/`; the charting
//! library (Apache ECharts) is embedded at build time by `build.rs` from the
//! version pinned in `dashboard/package-lock.json`, so the page loads nothing
//! from other origins and works without internet access. If the build could
//! not fetch it, the page says so and how to rebuild.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::LazyLock;

use super::assets::{self, escape};

/// What `build.rs` generated: `ASSETS`, `MISSING`, `MISSING_REASON`, `VERSION`.
mod generated {
    include!(concat!(env!("OUT_DIR"), "/dashboard_assets.rs"));
}

/// The page, with `{version}` standing for the assets' fingerprint.
const PAGE_TEMPLATE: &str = include_str!("../../dashboard/index.html");

/// The page's own script and style sheet, served under these names.
const OWN_FILES: [(&str, &str, &str); 2] = [
    (
        "union360-dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("../../dashboard/dashboard.js"),
    ),
    (
        "union360-dashboard.css",
        "text/css; charset=utf-8",
        include_str!("../../dashboard/dashboard.css"),
    ),
];

/// Everything the page may load or call comes from this server; charts are
/// drawn on canvases, so not even inline styles are needed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     base-uri 'none'; form-action 'none'; object-src 'none'; frame-ancestors 'none'";

/// Routes `GET /dashboard` (the page) and `GET /dashboard/assets/{file}` (its
/// script and style sheet, and the embedded charting library with long cache
/// headers; 404 for unknown names).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/dashboard", get(|| async { page() }))
        .route("/dashboard/assets/{file}", get(asset))
}

/// The names of the charting library's files this binary was built without
/// (empty when the build could fetch them), and why.
pub fn missing_assets() -> (&'static [&'static str], &'static str) {
    (generated::MISSING, generated::MISSING_REASON)
}

/// The dashboard page.
fn page() -> Response {
    static HTML: LazyLock<String> = LazyLock::new(|| {
        if generated::MISSING.is_empty() {
            PAGE_TEMPLATE.replace("{version}", generated::VERSION)
        } else {
            missing_assets_html()
        }
    });
    assets::html_page(CONTENT_SECURITY_POLICY, HTML.as_str())
}

/// Serves the page's own files and the embedded library.
async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    if let Some(&(_, content_type, body)) = OWN_FILES.iter().find(|(name, _, _)| *name == file) {
        return assets::own(content_type, body);
    }
    assets::fingerprinted(generated::ASSETS, generated::VERSION, &file, &headers)
        .unwrap_or_else(|| (StatusCode::NOT_FOUND, "no such dashboard asset\n").into_response())
}

/// The page shown when the binary was built without the charting library.
fn missing_assets_html() -> String {
    let items = assets::missing_items(generated::MISSING);
    let reason = escape(generated::MISSING_REASON);
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>union360 dashboard: assets missing</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/dashboard/assets/union360-dashboard.css">
</head>
<body class="plain" data-union360-assets-missing>
<h1>Audience dashboard unavailable</h1>
<p>This union360 binary was built without access to the npm registry, so the
charting library the dashboard draws with could not be embedded in it. Missing:</p>
<ul>{items}</ul>
<p>Reason recorded at build time: {reason}</p>
<h2>How to fix</h2>
<p>Rebuild union360 on a machine where <code>npm</code> is installed and can
reach the npm registry (and <code>UNION360_SKIP_NPM</code> is not set to
<code>1</code>). The build fetches the version pinned in
<code>dashboard/package-lock.json</code>; to force it to try again:</p>
<pre>touch build.rs &amp;&amp; cargo build</pre>
<h2>The numbers without the charts</h2>
<p>The same figures come from the GraphQL API with a key that has the
<code>stats</code> scope, for example:</p>
<pre>curl -s http://127.0.0.1:8080/graphql \
  -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d '{{"query":"{{ audience {{ distinctPeople {{ atLeast atMost }} linkedPeople unlinkedFollowers }} }}"}}'</pre>
</body>
</html>
"#
    )
}
