//! The HTTP surface: routes, limits and request tracing.
//!
//! | route | what |
//! |---|---|
//! | `GET, POST /graphql` | GraphQL over HTTP ([`graphql`]), with an API key ([`auth`]); `GET` with `Accept: text/html` shows the playground |
//! | `GET /graphql/ws` | GraphQL subscriptions over WebSocket (`graphql-transport-ws`), the API key in `connection_init` ([`ws`]) |
//! | `GET /graphiql` | the GraphiQL playground, served from the binary ([`playground`]) |
//! | `GET /dashboard` | the audience dashboard: charts of who follows the official accounts, read from `/graphql` with the key the browser keeps ([`dashboard`]) |
//! | `GET /wechat/{appid}/callback` | WeChat's verification of the message-push URL ([`callback`]): `echostr` only when the token's signature matches |
//! | `POST /wechat/{appid}/callback` | WeChat's pushes ([`callback`]): follows, unfollows and QR scans applied once each, `success` once stored |
//! | `GET /healthz` | 200 while the process is up |
//! | `GET /readyz` | 200 when the database answers, else 503 |
//! | `GET /metrics` | Prometheus metrics ([`crate::metrics`]), here unless it has a listener of its own |
//!
//! Every error answer under `/graphql`, and a path no route serves, is a
//! GraphQL error body (`{"errors":[{"message":…,"extensions":{"code":…}}]}`)
//! with its HTTP status, including those the HTTP layer gives itself (a body
//! over the limit is 413 `LIMIT_EXCEEDED`, a method the route does not answer
//! is 405 `BAD_REQUEST`). CORS headers are sent only to the origins the
//! settings allow.
//!
//! [`serve`] runs the accept loop that bounds every connection.

mod assets;
pub mod auth;
pub mod callback;
pub mod dashboard;
pub mod graphql;
pub mod json;
pub mod playground;
mod serve;
pub mod ws;

pub use serve::{ConnectionLimits, serve};

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::error::ErrorCode;
use crate::state::AppState;

/// Builds the router of the whole service.
pub fn router(state: AppState) -> Router {
    let body_limit = state.settings().server.body_limit;
    let cors = cors(&state.settings().server.http.cors_origins);
    let schema = crate::graphql::build_schema(state.clone());
    let graphql_routes = Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route_layer(axum::middleware::from_fn_with_state(
            state.keys().clone(),
            auth::require_key,
        ))
        .with_state(schema.clone());
    // Browsers cannot set headers on a WebSocket: the key comes in
    // `connection_init`, checked there.
    let ws_routes = Router::new()
        .route("/graphql/ws", get(ws::upgrade))
        .with_state(ws::WsState {
            schema,
            keys: state.keys().clone(),
            settings: state.settings().server.subscriptions,
            max_message: body_limit,
            events: state.events().clone(),
            per_key: Default::default(),
            stopping: state.stopping(),
        });
    let mut health_routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/graphiql/examples", get(playground::examples));
    if state.settings().server.http.metrics_listen.is_none() {
        health_routes = health_routes.route("/metrics", get(metrics));
    }
    let health_routes = health_routes.with_state(state.clone());
    let router = Router::new()
        .merge(graphql_routes)
        .merge(ws_routes)
        .merge(health_routes)
        .merge(playground::router())
        .merge(dashboard::router())
        .merge(callback::router(state.clone()))
        .fallback(not_found)
        // The configured limit replaces axum's built-in 2 MiB one.
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(middleware::from_fn_with_state(
            body_limit,
            graphql_error_shape,
        ))
        // gzip or brotli (quality 4) when the client accepts it; not for
        // bodies under 32 bytes, images or event streams.
        .layer(CompressionLayer::new());
    // Outside everything else, so that error answers carry the headers too
    // and preflights are answered before any other check.
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
    .layer(middleware::from_fn(count_requests))
    .layer(TraceLayer::new_for_http())
}

/// The routes requests are counted under; anything else is `unmatched`.
const ROUTES: &[&str] = &[
    "/graphql/ws",
    "/graphql",
    "/graphiql/examples",
    "/graphiql/assets",
    "/graphiql",
    "/dashboard/assets",
    "/dashboard",
    "/healthz",
    "/readyz",
    "/metrics",
    "/wechat",
];

/// The route `path` is counted under (a fixed set: paths are the client's).
fn route_of(path: &str) -> &'static str {
    ROUTES
        .iter()
        .find(|route| {
            path.strip_prefix(**route)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .copied()
        .unwrap_or("unmatched")
}

/// The method label of `method` (a fixed set: methods are the client's).
fn method_of(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts every answer by route, method and status, with its time.
async fn count_requests(request: Request, next: Next) -> Response {
    let route = route_of(request.uri().path());
    let method = method_of(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    crate::metrics::http_request(route, method, response.status().as_u16(), started.elapsed());
    response
}

/// CORS for `origins`, or none when the list is empty.
fn cors(origins: &[HeaderValue]) -> Option<CorsLayer> {
    (!origins.is_empty()).then(|| {
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().cloned()))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(Duration::from_secs(3600))
    })
}

/// A path no route serves.
async fn not_found(headers: HeaderMap, uri: Uri) -> Response {
    graphql::http_error(
        &headers,
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        &format!("nothing is served at {}", uri.path()),
    )
}

/// Gives the GraphQL error shape to the error answers under `/graphql` that
/// the HTTP layer makes itself (the body limit, a method the route does not
/// answer, an extractor's rejection), which are plain text.
async fn graphql_error_shape(
    State(body_limit): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if path != "/graphql" && !path.starts_with("/graphql/") {
        return next.run(request).await;
    }
    let path = path.to_owned();
    let method = request.method().clone();
    // Only what choosing the media type of the answer needs.
    let mut headers = HeaderMap::new();
    if let Some(accept) = request.headers().get(header::ACCEPT) {
        headers.insert(header::ACCEPT, accept.clone());
    }
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            ErrorCode::LimitExceeded,
            format!("the request body is larger than the limit of {body_limit} bytes"),
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::BadRequest,
            format!("{path} does not answer {method}"),
        ),
        _ if status.is_server_error() => (ErrorCode::Internal, "internal error".to_owned()),
        // An extractor's rejection says what was wrong in a short text.
        _ => (ErrorCode::BadRequest, String::new()),
    };
    let (parts, body) = response.into_parts();
    let message = if message.is_empty() {
        axum::body::to_bytes(body, 1024)
            .await
            .ok()
            .and_then(|text| String::from_utf8(text.to_vec()).ok())
            .filter(|text| !text.trim().is_empty())
            .unwrap_or_else(|| {
                status
                    .canonical_reason()
                    .unwrap_or("bad request")
                    .to_owned()
            })
    } else {
        message
    };
    let mut shaped = graphql::http_error(&headers, status, code, &message);
    // Keep what the answer said besides its body (`Allow` on a 405, say).
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            shaped.headers_mut().append(name.clone(), value.clone());
        }
    }
    shaped
}

/// The router of the separate metrics listener: `/metrics` alone.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
        .layer(TraceLayer::new_for_http())
}

/// Prometheus metrics.
async fn metrics(
    State(state): State<AppState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    ::metrics::counter!("union360_sql_statements_total").absolute(state.store().statements.get());
    let (idle, size, max) = state.store().pool_state();
    crate::metrics::db_pool(idle, size, max);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
}

/// The process is up.
async fn healthz() -> &'static str {
    "ok"
}

/// The database answers.
async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match state.db().ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
        }
    }
}
