//! The HTTP surface: routes, limits and request tracing.
//!
//! | route | what |
//! |---|---|
//! | `GET, POST /graphql` | GraphQL over HTTP ([`graphql`]), with an API key ([`auth`]); `GET` with `Accept: text/html` shows the playground |
//! | `GET /graphiql` | the GraphiQL playground, served from the binary ([`playground`]) |
//! | `GET /healthz` | 200 while the process is up |
//! | `GET /readyz` | 200 when the database answers, else 503 |
//! | `GET /metrics` | Prometheus metrics ([`crate::metrics`]) |

pub mod auth;
pub mod graphql;
pub mod playground;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::get;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::state::AppState;

/// Builds the router of the whole service.
pub fn router(state: AppState) -> Router {
    let body_limit = state.settings().server.body_limit;
    let graphql_routes = Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route_layer(axum::middleware::from_fn_with_state(
            state.keys().clone(),
            auth::require_key,
        ))
        .with_state(crate::graphql::build_schema(state.clone()));
    let health_routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    Router::new()
        .merge(graphql_routes)
        .merge(health_routes)
        .merge(playground::router())
        // The configured limit replaces axum's built-in 2 MiB one.
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(TraceLayer::new_for_http())
}

/// Prometheus metrics.
async fn metrics(
    State(state): State<AppState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    ::metrics::gauge!("union360_sql_statements").set(state.store().statements.get() as f64);
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
