//! `POST /_sim/push`: deliver a signed event to a callback URL the way WeChat does.
//!
//! The simulator builds the event XML (`ToUserName` = the account's `gh_` id,
//! `FromUserName` = the openid, `CreateTime`, `MsgType` = `event`, `Event`,
//! and `EventKey`/`Ticket` for QR scenes), signs the query with the app's
//! callback token, and POSTs it. WeChat waits 5 s for an answer, then tries
//! again, 3 tries in all; the report lists every attempt. A `subscribe` or
//! `unsubscribe` push also changes the follow, as the user's action would.
//! In safe mode the XML is encrypted with the app's EncodingAESKey and sent
//! in an `<Encrypt>` envelope with `encrypt_type=aes` and `msg_signature`;
//! in compatible mode the body holds the XML in the clear and `<Encrypt>`.

use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::wechat::callback::{self, MessageCrypto};

use super::Simulator;
use super::control::{Target, refuse};

/// Tries per push.
const TRIES: u32 = 3;
/// How long WeChat waits for the receiver, per try.
const WAIT_MS: u64 = 5_000;

/// The body of `POST /_sim/push`.
#[derive(Debug, Default, Deserialize)]
struct PushRequest {
    #[serde(flatten)]
    target: Target,
    target_url: String,
    event: String,
    #[serde(default)]
    event_key: Option<String>,
    /// Safe mode: the message only in its sealed form.
    #[serde(default)]
    safe_mode: bool,
    /// Compatible mode: the message in the clear and sealed, side by side.
    #[serde(default)]
    compatible_mode: bool,
    /// Per-try wait in milliseconds (default 5,000, WeChat's); tests shorten it.
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// One delivery attempt.
#[derive(Debug, Serialize)]
struct Attempt {
    attempt: u32,
    /// `ok`, `timeout`, `status` (non-2xx) or `error`.
    outcome: &'static str,
    status: Option<u16>,
    body: Option<String>,
    error: Option<String>,
    elapsed_ms: u64,
}

/// Pushes one event and reports the attempts.
pub(crate) async fn push(State(sim): State<Simulator>, body: Bytes) -> Response {
    let req: PushRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if !matches!(req.event.as_str(), "subscribe" | "unsubscribe" | "SCAN") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "event must be subscribe, unsubscribe or SCAN",
        );
    }
    let now = sim.now();
    let (token, xml, encrypt, openid, timestamp, nonce) = {
        let mut guard = sim.lock();
        let st = &mut *guard;
        let (app, person) = match req.target.resolve(&st.world) {
            Ok(found) => found,
            Err(r) => return *r,
        };
        let def = &st.world.apps[app];
        let (Some(token), Some(gh_id)) = (def.token.clone(), def.gh_id.clone()) else {
            return refuse(
                StatusCode::BAD_REQUEST,
                "only official accounts receive pushes",
            );
        };
        let openid = st.world.openid(app, person);
        if let Some(follows) = st.world.follows.get_mut(app) {
            match req.event.as_str() {
                "subscribe" => {
                    follows.add_through(person, now, req.event_key.clone());
                }
                "unsubscribe" => {
                    follows.remove(person);
                }
                _ => {}
            }
        }
        let ticket = format!("gQ{:030x}", st.rng.r#gen::<u128>() >> 8);
        let (event_key, ticket) = match (req.event.as_str(), req.event_key.as_deref()) {
            ("subscribe", Some(key)) => (Some(format!("qrscene_{key}")), Some(ticket)),
            ("SCAN", Some(key)) => (Some(key.to_owned()), Some(ticket)),
            _ => (None, None),
        };
        let plain = callback::event_xml(
            &gh_id,
            &openid,
            i64::try_from(now).unwrap_or(i64::MAX),
            &req.event,
            event_key.as_deref(),
            ticket.as_deref(),
        );
        let (xml, encrypt) = if req.safe_mode || req.compatible_mode {
            let crypto = def
                .aes_key
                .as_deref()
                .and_then(|key| MessageCrypto::new(key, &def.appid).ok());
            let Some(crypto) = crypto else {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "this app has no usable EncodingAESKey",
                );
            };
            let encrypt = crypto.encrypt(&plain);
            let xml = if req.compatible_mode {
                callback::compatible_envelope_xml(&plain, &encrypt)
            } else {
                callback::encrypted_envelope_xml(&gh_id, &encrypt)
            };
            (xml, Some(encrypt))
        } else {
            (plain, None)
        };
        let nonce = st.rng.gen_range(100_000_000u32..2_000_000_000).to_string();
        (token, xml, encrypt, openid, now.to_string(), nonce)
    };
    let sig = callback::signature(&token, &timestamp, &nonce);
    let mut query = vec![
        ("signature", sig.clone()),
        ("timestamp", timestamp.clone()),
        ("nonce", nonce.clone()),
        ("openid", openid.clone()),
    ];
    if let Some(encrypt) = &encrypt {
        query.push(("encrypt_type", "aes".to_owned()));
        query.push((
            "msg_signature",
            callback::msg_signature(&token, &timestamp, &nonce, encrypt),
        ));
    }
    let wait = Duration::from_millis(req.timeout_ms.unwrap_or(WAIT_MS));
    let mut attempts = Vec::new();
    let mut delivered = false;
    for attempt in 1..=TRIES {
        let started = Instant::now();
        let sent = sim
            .0
            .http
            .post(&req.target_url)
            .query(&query)
            .header("content-type", "text/xml")
            .body(xml.clone())
            .timeout(wait)
            .send()
            .await;
        let result = match sent {
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await;
                match text {
                    Ok(body) if status.is_success() => Ok((status.as_u16(), body)),
                    Ok(body) => Err(("status", Some(status.as_u16()), Some(body), None)),
                    Err(e) if e.is_timeout() => Err(("timeout", Some(status.as_u16()), None, None)),
                    Err(e) => Err(("error", Some(status.as_u16()), None, Some(e.to_string()))),
                }
            }
            Err(e) if e.is_timeout() => Err(("timeout", None, None, None)),
            Err(e) => Err(("error", None, None, Some(e.to_string()))),
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok((status, body)) => {
                attempts.push(Attempt {
                    attempt,
                    outcome: "ok",
                    status: Some(status),
                    body: Some(body),
                    error: None,
                    elapsed_ms,
                });
                delivered = true;
                break;
            }
            Err((outcome, status, body, error)) => attempts.push(Attempt {
                attempt,
                outcome,
                status,
                body,
                error,
                elapsed_ms,
            }),
        }
    }
    Json(json!({
        "delivered": delivered,
        "attempts": attempts,
        "openid": openid,
        "create_time": now,
        "timestamp": timestamp,
        "nonce": nonce,
        "signature": sig,
        "xml": xml,
    }))
    .into_response()
}
