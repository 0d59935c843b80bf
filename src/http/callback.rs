//! `GET /wechat/{appid}/callback`: WeChat's verification of the callback URL
//! ([`crate::ingest::callback`]). Answers are plain text: `echostr` on a
//! match, else a status and a one-line reason, never the `echostr`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::ingest::callback::{self, Answered, Refused, Verification};
use crate::state::AppState;

/// The callback route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/wechat/{appid}/callback", get(verify))
        .with_state((state, Arc::new(Answered::default())))
}

async fn verify(
    State((state, answered)): State<(AppState, Arc<Answered>)>,
    Path(appid): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let Ok(pairs) =
        serde_urlencoded::from_str::<Vec<(String, String)>>(raw.as_deref().unwrap_or_default())
    else {
        return text(
            StatusCode::BAD_REQUEST,
            "the query string is not valid URL encoding",
        );
    };
    let mut params: HashMap<String, String> = pairs.into_iter().collect();
    let query = Verification {
        signature: params.remove("signature"),
        timestamp: params.remove("timestamp"),
        nonce: params.remove("nonce"),
        echostr: params.remove("echostr"),
    };
    let window = Duration::from_secs(state.settings().server.callback_replay_window_secs);
    let now = state.now();
    match callback::verify_url(state.apps(), &answered, &appid, query, now, window).await {
        Ok(echostr) => text(StatusCode::OK, &echostr),
        Err(refused) => {
            let status = match &refused {
                Refused::UnknownApp(_) | Refused::NotConfigured(_) => StatusCode::NOT_FOUND,
                Refused::Malformed(_) => StatusCode::BAD_REQUEST,
                Refused::BadSignature | Refused::Stale(_) | Refused::Replayed => {
                    StatusCode::UNAUTHORIZED
                }
                Refused::Internal(e) => {
                    tracing::error!(error = %e, "callback verification failed");
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            };
            tracing::info!(%status, reason = %refused, "callback verification refused");
            text(status, &refused.to_string())
        }
    }
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
