//! `POST /_sim/push`: deliver a signed event to a callback URL the way WeChat does.
//!
//! The simulator builds the event XML (`ToUserName` = the account's `gh_` id,
//! `FromUserName` = the openid, `CreateTime`, `MsgType` = `event`, `Event`,
//! and `EventKey`/`Ticket` for QR scenes), signs the query with the app's
//! callback token, and POSTs it. WeChat waits 5 s for an answer, then tries
//! again, 3 tries in all; the report lists every attempt. A `subscribe` or
//! `unsubscribe` push also changes the follow, as the user's action would.

use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha1::{Digest, Sha1};

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
    #[serde(default)]
    safe_mode: bool,
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

/// WeChat's callback signature: hex(sha1(concat(sort(parts)))).
///
/// To be replaced by the shared implementation in `wechat::callback` once
/// that module is available to the simulator.
fn signature(parts: &[&str]) -> String {
    let mut sorted = parts.to_vec();
    sorted.sort_unstable();
    hex::encode(Sha1::digest(sorted.concat().as_bytes()))
}

fn cdata(value: &str) -> String {
    format!("<![CDATA[{}]]>", value.replace("]]>", "]]]]><![CDATA[>"))
}

/// Pushes one event and reports the attempts.
pub(crate) async fn push(State(sim): State<Simulator>, body: Bytes) -> Response {
    let req: PushRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if req.safe_mode {
        return refuse(
            StatusCode::NOT_IMPLEMENTED,
            "safe mode pushes are not available yet; use plain mode",
        );
    }
    if !matches!(req.event.as_str(), "subscribe" | "unsubscribe" | "SCAN") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "event must be subscribe, unsubscribe or SCAN",
        );
    }
    let now = sim.now();
    let (token, xml, openid, timestamp, nonce) = {
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
                    follows.add(person, now);
                }
                "unsubscribe" => {
                    follows.remove(person);
                }
                _ => {}
            }
        }
        let ticket = format!("gQ{:030x}", st.rng.r#gen::<u128>() >> 8);
        let qr = match (req.event.as_str(), req.event_key.as_deref()) {
            ("subscribe", Some(key)) => format!(
                "<EventKey>{}</EventKey><Ticket>{}</Ticket>",
                cdata(&format!("qrscene_{key}")),
                cdata(&ticket)
            ),
            ("SCAN", Some(key)) => format!(
                "<EventKey>{}</EventKey><Ticket>{}</Ticket>",
                cdata(key),
                cdata(&ticket)
            ),
            _ => format!("<EventKey>{}</EventKey>", cdata("")),
        };
        let xml = format!(
            "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{now}</CreateTime><MsgType>{}</MsgType><Event>{}</Event>{qr}</xml>",
            cdata(&gh_id),
            cdata(&openid),
            cdata("event"),
            cdata(&req.event),
        );
        let nonce = st.rng.gen_range(100_000_000u32..2_000_000_000).to_string();
        (token, xml, openid, now.to_string(), nonce)
    };
    let sig = signature(&[&token, &timestamp, &nonce]);
    let wait = Duration::from_millis(req.timeout_ms.unwrap_or(WAIT_MS));
    let mut attempts = Vec::new();
    let mut delivered = false;
    for attempt in 1..=TRIES {
        let started = Instant::now();
        let sent = sim
            .0
            .http
            .post(&req.target_url)
            .query(&[
                ("signature", sig.as_str()),
                ("timestamp", timestamp.as_str()),
                ("nonce", nonce.as_str()),
                ("openid", openid.as_str()),
            ])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_documented_vectors() {
        assert_eq!(
            signature(&["AAAAA", "1714037059", "486452656"]),
            "899cf89e464efb63f54ddac96b0a0a235f53aa78"
        );
        assert_eq!(
            signature(&["test", "1410685589", "test"]),
            "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff"
        );
    }
}
