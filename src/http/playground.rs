//! Temporary stand-in until the embedded GraphiQL lands in this tree.
use axum::Router;
use axum::response::{Html, IntoResponse, Response};
/// Routes.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/graphiql", axum::routing::get(|| async { page() }))
}
/// Page.
pub fn page() -> Response {
    Html("<p>GraphiQL</p>").into_response()
}
