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
use crate::keys::{Admission, AuthError, Keys, Principal, Refusal};

/// Admits a request to `/graphql` with a valid key, or answers for it.
pub async fn require_key(State(keys): State<Keys>, mut request: Request, next: Next) -> Response {
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    if request.method() == Method::GET && negotiate(accept, true) == Negotiated::Html {
        return next.run(request).await;
    }
    let (principal, admission) = match admit(&keys, request.headers()).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    request.extensions_mut().insert(principal);
    let response = next.run(request).await;
    drop(admission);
    response
}

/// The caller of a request and its in-flight slot, or the answer refusing it.
async fn admit(keys: &Keys, headers: &HeaderMap) -> Result<(Principal, Admission), Response> {
    let presented = bearer(headers);
    let principal = match keys.authenticate(presented).await {
        Ok(principal) => principal,
        Err(AuthError::Db(e)) => {
            tracing::error!(error = %e, "could not read the API key table");
            return Err(http_error(
                headers,
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Internal,
                "internal error",
            ));
        }
        Err(e) => {
            let e = match (presented.is_empty(), e) {
                (true, AuthError::Unknown) => AuthError::Missing,
                (_, e) => e,
            };
            let mut response = http_error(
                headers,
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthenticated,
                &e.to_string(),
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"union360\""),
            );
            return Err(response);
        }
    };
    let admission = principal.limiter.admit().map_err(|refusal| {
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
        let mut response = http_error(
            headers,
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            message,
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        response
    })?;
    Ok((principal, admission))
}

/// The bearer token of a request, or `""`.
fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(bearer_token)
        .unwrap_or_default()
}

/// The token of an `Authorization` value (`Bearer <token>`, the scheme in
/// any case), or `""`.
pub(super) fn bearer_token(value: &str) -> &str {
    value
        .trim()
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
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
