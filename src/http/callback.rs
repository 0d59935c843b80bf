//! `GET` and `POST /wechat/{appid}/callback`: WeChat's verification of the
//! callback URL, and its pushes ([`crate::ingest::callback`],
//! [`crate::ingest::push`]). Answers are plain text: `echostr` on a
//! verification's match, `success` once a push is stored (or needs
//! nothing), else a status and a one-line reason, never the `echostr`.
//!
//! | status | when |
//! |---|---|
//! | 404 | no app has this appid, or it has no callback token |
//! | 400 | a parameter or the body is malformed, the ciphertext does not open or was sealed for another app |
//! | 401 | the signature does not match, the timestamp is outside the replay window, a plain push to an app that has an EncodingAESKey |
//! | 413 | the body is over [`MAX_PUSH_BODY`] bytes |
//! | 500, 503 | the push could not be stored (the database failed; too many waiting, or not in time): answered after WeChat's 5-second wait, so that WeChat tries again |

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::ingest::callback::{self, Answered, PushQuery, Refused, Verification};
use crate::ingest::push::{Push, PushError};
use crate::state::AppState;

/// The largest push body taken, in bytes: WeChat's are well under 4 KiB.
pub const MAX_PUSH_BODY: usize = 64 * 1024;

/// The callback route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/wechat/{appid}/callback", get(verify).post(push))
        .layer(DefaultBodyLimit::max(MAX_PUSH_BODY))
        .with_state((state, Arc::new(Answered::default())))
}

async fn verify(
    State((state, answered)): State<(AppState, Arc<Answered>)>,
    Path(appid): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some(mut params) = params(raw.as_deref()) else {
        return bad_query();
    };
    let query = Verification {
        signature: params.remove("signature"),
        timestamp: params.remove("timestamp"),
        nonce: params.remove("nonce"),
        echostr: params.remove("echostr"),
    };
    let now = state.now();
    match callback::verify_url(state.apps(), &answered, &appid, query, now, window(&state)).await {
        Ok(echostr) => text(StatusCode::OK, &echostr),
        Err(refused) => refusal("callback verification", refused),
    }
}

async fn push(
    State((state, _)): State<(AppState, Arc<Answered>)>,
    Path(appid): Path<String>,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let received = tokio::time::Instant::now();
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let reason = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("the body is larger than {MAX_PUSH_BODY} bytes")
            } else {
                rejection.body_text()
            };
            return refused_push(status, &reason);
        }
    };
    let Ok(body) = std::str::from_utf8(&body) else {
        return refused_push(StatusCode::BAD_REQUEST, "the body is not UTF-8");
    };
    let Some(mut params) = params(raw.as_deref()) else {
        return bad_query();
    };
    let query = PushQuery {
        signature: params.remove("signature"),
        timestamp: params.remove("timestamp"),
        nonce: params.remove("nonce"),
        encrypt_type: params.remove("encrypt_type"),
        msg_signature: params.remove("msg_signature"),
    };
    let now = state.now();
    let (app, message) =
        match callback::open_push(state.apps(), &appid, query, body, now, window(&state)).await {
            Ok(opened) => opened,
            Err(refused) => return refusal("push", refused),
        };
    let push = match Push::of(&app, &message, now, window(&state)) {
        Ok(Some(push)) => push,
        // Other events and messages: acknowledged, nothing to do.
        Ok(None) => {
            metrics::counter!("union360_callback_pushes_total", "outcome" => "ignored")
                .increment(1);
            return success();
        }
        Err(e) => return refused_push(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match state.pushes().apply(push).await {
        Ok(_) => success(),
        Err(e @ PushError::Invalid(_)) => refused_push(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(e) => {
            // WeChat tries a push again when it got no answer within 5 s:
            // past that, an answer that it was not stored is safe to give.
            tokio::time::sleep_until(received + RETRY_AFTER).await;
            if let PushError::Db(_) = e {
                tracing::error!(error = %e, "push not stored; WeChat will try again");
                text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            } else {
                tracing::warn!(reason = %e, "push not stored in time; WeChat will try again");
                text(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
            }
        }
    }
}

/// How long after receiving a push that could not be stored it is answered:
/// past WeChat's 5-second wait, so that WeChat tries it again.
const RETRY_AFTER: Duration = Duration::from_millis(5_500);

/// The query's parameters; `None` when it is not URL encoding.
fn params(raw: Option<&str>) -> Option<HashMap<String, String>> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw.unwrap_or_default())
        .ok()
        .map(|pairs| pairs.into_iter().collect())
}

fn bad_query() -> Response {
    text(
        StatusCode::BAD_REQUEST,
        "the query string is not valid URL encoding",
    )
}

fn window(state: &AppState) -> Duration {
    Duration::from_secs(state.settings().server.callback_replay_window_secs)
}

/// The answer to a refused verification or push.
fn refusal(what: &'static str, refused: Refused) -> Response {
    let status = match &refused {
        Refused::UnknownApp(_) | Refused::NotConfigured(_) => StatusCode::NOT_FOUND,
        Refused::Malformed(_)
        | Refused::NoAesKey(_)
        | Refused::Undecryptable(_)
        | Refused::BadBody(_) => StatusCode::BAD_REQUEST,
        Refused::BadSignature
        | Refused::Stale(_)
        | Refused::Replayed
        | Refused::MustBeEncrypted => StatusCode::UNAUTHORIZED,
        Refused::Internal(e) => {
            tracing::error!(error = %e, "{what} failed");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    if what == "push" {
        metrics::counter!("union360_callback_pushes_total", "outcome" => "refused").increment(1);
    }
    tracing::info!(%status, reason = %refused, "{what} refused");
    text(status, &refused.to_string())
}

fn refused_push(status: StatusCode, reason: &str) -> Response {
    metrics::counter!("union360_callback_pushes_total", "outcome" => "refused").increment(1);
    tracing::info!(%status, reason, "push refused");
    text(status, reason)
}

fn success() -> Response {
    text(StatusCode::OK, "success")
}

fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            // The echo repeats what the caller sent: never sniffed as markup.
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body.to_owned(),
    )
        .into_response()
}
