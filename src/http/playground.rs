//! The GraphiQL playground: an HTML page on `GET /graphiql` (and on
//! `GET /graphql` for browsers, via [`page`]) plus the React, ReactDOM and
//! GraphiQL files it needs, embedded in the binary at build time by `build.rs`
//! from the versions pinned in `graphiql/package-lock.json`. The page loads
//! nothing from other origins, so the playground works on machines without
//! internet access. If the build could not fetch the assets, the page says
//! which are missing and how to rebuild, instead of hanging on "Loading…".
//! Its logo links to the audience [dashboard](super::dashboard).

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::LazyLock;

use super::assets::{self, escape};

/// What `build.rs` generated: `ASSETS`, `MISSING`, `MISSING_REASON`, `VERSION`.
mod generated {
    include!(concat!(env!("OUT_DIR"), "/graphiql_assets.rs"));
}

/// The script that starts GraphiQL; served as an asset so the page's
/// Content-Security-Policy needs no inline script.
const INIT_JS_NAME: &str = "union360-graphiql.js";

/// Starts GraphiQL against this server's `/graphql` (same origin).
const INIT_JS: &str = r#"(function () {
  'use strict';
  var dashboard = window.location.origin + '/dashboard';
  var DEFAULT_QUERY = [
    '# Welcome to union360. Paste your API key into the',
    '# Headers tab below, in place of <your API key>',
    '# (create one with `union360 apikey create`); it is',
    '# kept in this browser only. Reload the page to load',
    '# the schema docs with it, then press the play',
    '# button (or Ctrl-Enter) to run.',
    '# A person is one human (one WeChat UnionID);',
    '# accounts are their per-app OpenIDs.',
    '# Charts of who follows the official accounts:',
    '# /dashboard (link at the top right; same key).',
    '#',
    '# No data yet? Three ways to get some:',
    '# 1. Register your WeChat apps: the registerApp',
    '#    mutation (admin scope) or `union360 app add`;',
    '#    then import an official account\'s followers:',
    '#    `union360 sync --app <appid>`, or the mutation',
    '#    startFollowerSync(appid: "<appid>").',
    '# 2. Import accounts you already know (from a CRM)',
    '#    with the upsertAccounts mutation.',
    '# 3. Try it all on simulated WeChat data, in one',
    '#    command: `union360 demo`.',
    '# Then see the audience, deduplicated across your',
    '# official accounts, at ' + dashboard,
    '',
    'query FirstPeople {',
    '  apps { appid kind name }',
    '  people(first: 5) {',
    '    totalCount',
    '    edges {',
    '      node {',
    '        unionid',
    '        nickname',
    '        accounts { appid openid nickname }',
    '      }',
    '    }',
    '    pageInfo { hasNextPage endCursor }',
    '  }',
    '}',
    ''
  ].join('\n');
  var wsScheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  // Subscriptions run over WebSocket, where a browser cannot send headers:
  // GraphiQL sends the Headers tab (the key) as the `connection_init`
  // payload instead, which is where /graphql/ws reads it.
  var baseFetcher = GraphiQL.createFetcher({
    url: '/graphql',
    subscriptionUrl: wsScheme + '//' + window.location.host + '/graphql/ws',
    enableIncrementalDelivery: false,
    headers: { accept: 'application/graphql-response+json, application/json' }
  });
  // GraphiQL introspects the schema before its headers editor exists, so
  // that request would go without the API key: take the headers GraphiQL
  // itself keeps in this browser's storage instead.
  function storedHeaders() {
    try {
      var stored = JSON.parse(window.localStorage.getItem('graphiql:headers') || '{}');
      return stored && typeof stored === 'object' && !Array.isArray(stored) ? stored : {};
    } catch (e) {
      return {};
    }
  }
  // A new tab starts with the placeholder header. The last key a tab sent
  // is kept beside GraphiQL's own storage (so that its "Clear storage"
  // forgets it too, and only while headers are persisted): a tab still
  // showing the placeholder sends it instead.
  var KEY_STORE = 'graphiql:union360-authorization';
  function persisting() {
    try {
      return window.localStorage.getItem('graphiql:shouldPersistHeaders') !== 'false';
    } catch (e) {
      return false;
    }
  }
  function remembered() {
    try {
      return persisting() ? window.localStorage.getItem(KEY_STORE) || '' : '';
    } catch (e) {
      return '';
    }
  }
  function remember(authorization) {
    try {
      if (persisting()) window.localStorage.setItem(KEY_STORE, authorization);
      else window.localStorage.removeItem(KEY_STORE);
    } catch (e) {
      // Storage disabled: each tab keeps its own headers.
    }
  }
  function withKey(headers) {
    var name = Object.keys(headers).find(function (h) {
      return h.toLowerCase() === 'authorization';
    });
    var value = name && typeof headers[name] === 'string' ? headers[name].trim() : '';
    // No header at all is left as it is: a request without a key, on purpose.
    if (!value) return headers;
    if (!/^(Bearer\s+)?</i.test(value)) {
      if (value !== remembered()) remember(value);
      return headers;
    }
    var kept = remembered();
    if (!kept) return headers;
    var copy = Object.assign({}, headers);
    copy[name] = kept;
    return copy;
  }
  var fetcher = function (params, options) {
    options = options || {};
    var headers = withKey(options.headers || storedHeaders());
    return baseFetcher(params, Object.assign({}, options, { headers: headers }));
  };
  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  // In place of GraphiQL's own logo: a link to the audience dashboard,
  // which reuses the key kept here.
  var logo = React.createElement(GraphiQL.Logo, null,
    React.createElement('a', {
      className: 'graphiql-logo-link',
      href: '/dashboard',
      title: 'Charts of who follows the official accounts (uses the key from the Headers tab)'
    }, 'Audience dashboard'));
  // A server may offer example operations for its data (the demo does):
  // each opens as a tab of its own, after the welcome tab.
  function render(examples) {
    var tabs = [{ query: DEFAULT_QUERY }].concat(
      examples.map(function (e) { return { query: e.query }; }));
    root.render(React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: DEFAULT_QUERY,
      defaultTabs: tabs,
      defaultHeaders: '{\n  "Authorization": "Bearer <your API key>"\n}',
      // The key stays in this browser's local storage, never on the server.
      shouldPersistHeaders: true,
      defaultEditorToolsVisibility: 'headers'
    }, logo));
  }
  fetch('/graphiql/examples')
    .then(function (r) { return r.ok ? r.json() : []; })
    .catch(function () { return []; })
    .then(function (examples) { render(Array.isArray(examples) ? examples : []); });
})();
"#;

/// Everything the page may load comes from this server.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; object-src 'none'";

/// Routes `GET /graphiql` (the page) and `GET /graphiql/assets/{file}` (the
/// embedded assets, long cache headers, correct content types, 404 for
/// unknown names).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/graphiql", get(|| async { page() }))
        .route("/graphiql/assets/{file}", get(asset))
}

/// The playground HTML page (also served on `GET /graphql` with
/// `Accept: text/html`).
pub fn page() -> Response {
    static HTML: LazyLock<String> = LazyLock::new(|| {
        if generated::MISSING.is_empty() {
            playground_html()
        } else {
            missing_assets_html()
        }
    });
    assets::html_page(CONTENT_SECURITY_POLICY, HTML.as_str())
}

/// Serves one embedded asset, answering revalidations with 304.
async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    if file == INIT_JS_NAME {
        // Part of this module rather than of the pinned packages, so it changes
        // without the fingerprint changing: let browsers revalidate it.
        return assets::own("text/javascript; charset=utf-8", INIT_JS);
    }
    assets::fingerprinted(generated::ASSETS, generated::VERSION, &file, &headers)
        .unwrap_or_else(|| (StatusCode::NOT_FOUND, "no such playground asset\n").into_response())
}

/// The working playground.
fn playground_html() -> String {
    let v = generated::VERSION;
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>union360 GraphiQL</title>
<link rel="stylesheet" href="/graphiql/assets/graphiql.min.css?v={v}">
<style>
  html, body {{ height: 100%; margin: 0; overflow: hidden; }}
  #graphiql {{ height: 100vh; height: 100dvh; }}
  .union360-loading {{ font: 16px/1.5 system-ui, sans-serif; padding: 2rem; color: #555; }}
</style>
</head>
<body>
<div id="graphiql"><p class="union360-loading">Loading GraphiQL…</p></div>
<noscript><p class="union360-loading">The playground needs JavaScript. The API itself is at
<code>POST /graphql</code>.</p></noscript>
<script src="/graphiql/assets/react.production.min.js?v={v}"></script>
<script src="/graphiql/assets/react-dom.production.min.js?v={v}"></script>
<script src="/graphiql/assets/graphiql.min.js?v={v}"></script>
<script src="/graphiql/assets/{INIT_JS_NAME}?v={v}"></script>
</body>
</html>
"#
    )
}

/// The page shown when the binary was built without the assets.
fn missing_assets_html() -> String {
    let items = assets::missing_items(generated::MISSING);
    let reason = escape(generated::MISSING_REASON);
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>union360 GraphiQL: assets missing</title>
<style>
  body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
  code, pre {{ font-family: ui-monospace, monospace; background: #f3f3f3; border-radius: 4px; }}
  code {{ padding: 0 .25em; }}
  pre {{ padding: .75rem; overflow-x: auto; }}
</style>
</head>
<body data-union360-assets-missing>
<h1>GraphiQL playground unavailable</h1>
<p>This union360 binary was built without access to the npm registry, so the
playground's files could not be embedded in it. Missing:</p>
<ul>{items}</ul>
<p>Reason recorded at build time: {reason}</p>
<h2>How to fix</h2>
<p>Rebuild union360 on a machine where <code>npm</code> is installed and can
reach the npm registry (and <code>UNION360_SKIP_NPM</code> is not set to
<code>1</code>). The build fetches the versions pinned in
<code>graphiql/package-lock.json</code>; to force it to try again:</p>
<pre>touch build.rs &amp;&amp; cargo build</pre>
<h2>The API works without the playground</h2>
<p>Send GraphQL requests with <code>POST /graphql</code>, for example (with
your server's address in place of the default one):</p>
<pre>curl -s http://127.0.0.1:8080/graphql \
  -H 'Content-Type: application/json' \
  -d '{{"query":"{{ apps {{ appid kind name }} }}"}}'</pre>
</body>
</html>
"#
    )
}

/// `GET /graphiql/examples`: the example operations the server offers for
/// its data (`[{"title", "query"}]`, empty unless set, as by the demo).
/// Public, like the page that reads them.
pub async fn examples(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
) -> axum::Json<serde_json::Value> {
    let examples: Vec<serde_json::Value> = state
        .playground_examples()
        .into_iter()
        .map(|(title, query)| serde_json::json!({ "title": title, "query": query }))
        .collect();
    axum::Json(serde_json::Value::Array(examples))
}
