//! Authentication of GraphQL requests: `Authorization: Bearer <api key>`.
//!
//! Runs before the GraphQL handler: a request without a valid key gets 401
//! (`UNAUTHENTICATED`) before anything is parsed or run, and one over its
//! key's rate or concurrency limit gets 429 (`RATE_LIMITED`) with
//! `Retry-After`. An admitted request carries its [`Principal`] to the
//! handler and holds one of the key's in-flight slots until it is answered.
//! The playground page (a browser's `GET /graphql` asking for HTML) is public.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::graphql::{Negotiated, http_error, negotiate};
use crate::error::ErrorCode;
use crate::keys::{AuthError, Keys, Refusal};

/// Admits a request to `/graphql` with a valid key, or answers for it.
pub async fn require_key(State(keys): State<Keys>, mut request: Request, next: Next) -> Response {
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    if request.method() == Method::GET && negotiate(accept, true) == Negotiated::Html {
        return next.run(request).await;
    }
    let headers = request.headers().clone();
    let refuse = |status, code, message: &str| http_error(&headers, status, code, message);
    let principal = match keys.authenticate(bearer(request.headers())).await {
        Ok(principal) => principal,
        Err(AuthError::Db(e)) => {
            tracing::error!(error = %e, "could not read the API key table");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Internal,
                "internal error",
            );
        }
        Err(e) => {
            let e = match (bearer(request.headers()).is_empty(), e) {
                (true, AuthError::Unknown) => AuthError::Missing,
                (_, e) => e,
            };
            let mut response = refuse(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthenticated,
                &e.to_string(),
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"union360\""),
            );
            return response;
        }
    };
    let admission = match principal.limiter.admit() {
        Ok(admission) => admission,
        Err(refusal) => {
            let (retry_after, message) = match refusal {
                Refusal::Rate { retry_after } => (
                    retry_after.as_secs_f64().ceil().max(1.0) as u64,
                    "this API key's request rate limit is spent",
                ),
                // A request costs one token, never more than a burst.
                Refusal::Concurrency | Refusal::OverBurst { .. } => {
                    (1, "this API key has as many requests in flight as it may")
                }
            };
            let mut response = refuse(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                message,
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            return response;
        }
    };
    request.extensions_mut().insert(principal);
    let response = next.run(request).await;
    drop(admission);
    response
}

/// The bearer token of a request, or `""`.
fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_token_is_read_whatever_the_scheme_case() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), "");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  u360_x "),
        );
        assert_eq!(bearer(&headers), "u360_x");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcg=="),
        );
        assert_eq!(bearer(&headers), "");
    }
}
