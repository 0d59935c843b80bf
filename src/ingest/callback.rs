//! WeChat's message-push callback: the URL verification WeChat sends when
//! an administrator sets the callback URL in its console ([`verify_url`]),
//! and the pushes that follow ([`open_push`]), applied by [`super::push`].
//!
//! WeChat signs `timestamp` and `nonce` with the callback token both sides
//! know; `echostr` is answered verbatim only when the signature matches, the
//! timestamp is within the replay window and this signed request was not
//! answered before ([`Answered`]), so nobody without the token can claim
//! the URL (an SDK that echoes unchecked lets anyone do so), nor replay a
//! signed request someone saw to have other text echoed.
//!
//! A push is opened in the order that leaves nothing to an attacker: the
//! app and its token, the signature (`msg_signature` over the ciphertext in
//! safe and compatible modes, `signature` in plain mode), the replay
//! window, then decryption (with the previous EncodingAESKey too, after a
//! change) and the appid sealed inside, then the XML. Plain mode's
//! signature does not cover the body, so an app with an EncodingAESKey
//! takes encrypted pushes only.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::app;
use secrecy::{ExposeSecret, SecretString};

use crate::apps::Apps;
use crate::domain::AppId;
use crate::wechat::callback::{
    CallbackError, CallbackMessage, MessageCrypto, decrypt_with_rotation, parse_encrypted_envelope,
    parse_message, verify_msg_signature, verify_signature,
};

/// The longest `echostr` answered: WeChat's are short random strings.
pub const MAX_ECHOSTR: usize = 128;

/// The most signed requests [`Answered`] remembers; past it, new ones are
/// refused until old ones leave the window (only requests signed with a
/// registered token get this far).
pub const MAX_REMEMBERED: usize = 10_000;

/// The signed verification requests answered within the replay window, by
/// app, timestamp and nonce: one is answered once (in this process).
#[derive(Debug, Default)]
pub struct Answered(Mutex<HashSet<(String, i64, String)>>);

impl Answered {
    /// Records the request; `false` when it was answered before, or when
    /// too many are remembered.
    fn first_time(&self, appid: &str, sent: i64, nonce: &str, now: i64, window: u64) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|(_, sent, _)| now.abs_diff(*sent) <= window);
        }
        if seen.len() >= MAX_REMEMBERED {
            return false;
        }
        seen.insert((appid.to_owned(), sent, nonce.to_owned()))
    }
}

/// The query of a verification request, as sent.
#[derive(Debug, Default, Clone)]
pub struct Verification {
    /// `signature`: hex SHA-1 of the sorted token, timestamp and nonce.
    pub signature: Option<String>,
    /// `timestamp`: Unix seconds.
    pub timestamp: Option<String>,
    /// `nonce`: a random string.
    pub nonce: Option<String>,
    /// `echostr`: what to answer on success.
    pub echostr: Option<String>,
}

/// Why a verification request is refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// No app has this appid.
    #[error("no app {0} is registered")]
    UnknownApp(String),
    /// The app has no callback token (not an official account, or not set).
    #[error("the app {0} has no callback token configured")]
    NotConfigured(String),
    /// A parameter is missing or malformed.
    #[error("{0}")]
    Malformed(&'static str),
    /// The signature does not match.
    #[error("the signature does not match")]
    BadSignature,
    /// The timestamp is outside the replay window.
    #[error("the timestamp is more than {0} s away from now")]
    Stale(u64),
    /// This signed request was answered before.
    #[error("this signed request was answered before")]
    Replayed,
    /// A plain push to an app that has an EncodingAESKey.
    #[error(
        "this app has an EncodingAESKey, so it takes encrypted pushes only (safe or compatible mode)"
    )]
    MustBeEncrypted,
    /// An encrypted push to an app without an EncodingAESKey.
    #[error("the app {0} has no EncodingAESKey configured to open encrypted pushes")]
    NoAesKey(String),
    /// The ciphertext does not open with the app's keys, or was sealed for another app.
    #[error("the encrypted message does not open with this app's EncodingAESKey: {0}")]
    Undecryptable(CallbackError),
    /// The body is not a push WeChat sends.
    #[error("{0}")]
    BadBody(CallbackError),
    /// Reading the app or opening its token failed.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// Checks the verification request `query` for app `appid` at `now`, once
/// (`answered` remembers it); returns the `echostr` to answer.
pub async fn verify_url(
    apps: &Apps,
    answered: &Answered,
    appid: &str,
    query: Verification,
    now: DateTime<Utc>,
    window: Duration,
) -> Result<String, Refused> {
    let (app, token) = app_and_token(apps, appid).await?;
    let (Some(signature), Some(timestamp), Some(nonce), Some(echostr)) =
        (query.signature, query.timestamp, query.nonce, query.echostr)
    else {
        return Err(Refused::Malformed(
            "signature, timestamp, nonce and echostr are all required",
        ));
    };
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if echostr.is_empty() || echostr.len() > MAX_ECHOSTR || !echostr.chars().all(plain) {
        return Err(Refused::Malformed(
            "echostr must be 1 to 128 letters, digits, '-' or '_'",
        ));
    }
    let sent = unix_seconds(&timestamp)?;
    if !verify_signature(token.expose_secret(), &timestamp, &nonce, &signature) {
        return Err(Refused::BadSignature);
    }
    if !within(sent, now, window) {
        return Err(Refused::Stale(window.as_secs()));
    }
    if !answered.first_time(&app.appid, sent, &nonce, now.timestamp(), window.as_secs()) {
        return Err(Refused::Replayed);
    }
    Ok(echostr)
}

/// The query of a push, as sent (`openid` is not used: the body says who).
#[derive(Debug, Default, Clone)]
pub struct PushQuery {
    /// `signature`: over the token, timestamp and nonce.
    pub signature: Option<String>,
    /// `timestamp`: Unix seconds.
    pub timestamp: Option<String>,
    /// `nonce`: a random string.
    pub nonce: Option<String>,
    /// `encrypt_type`: `aes` in safe and compatible modes; absent or `raw` in plain mode.
    pub encrypt_type: Option<String>,
    /// `msg_signature`: over the token, timestamp, nonce and ciphertext (`aes`).
    pub msg_signature: Option<String>,
}

/// Opens the push `body` sent to app `appid` with `query` at `now`: checks
/// its signature and timestamp, decrypts it when it is encrypted, and reads
/// it; returns the app and the message.
pub async fn open_push(
    apps: &Apps,
    appid: &str,
    query: PushQuery,
    body: &str,
    now: DateTime<Utc>,
    window: Duration,
) -> Result<(app::Model, CallbackMessage), Refused> {
    let (app, token) = app_and_token(apps, appid).await?;
    let (Some(timestamp), Some(nonce)) = (query.timestamp, query.nonce) else {
        return Err(Refused::Malformed("timestamp and nonce are required"));
    };
    let sent = unix_seconds(&timestamp)?;
    let token = token.expose_secret();
    let xml = match query.encrypt_type.as_deref() {
        None | Some("raw") => {
            plain(token, &timestamp, &nonce, query.signature.as_deref())?;
            stale(sent, now, window)?;
            if app.aes_key_sealed.is_some() {
                return Err(Refused::MustBeEncrypted);
            }
            body.to_owned()
        }
        // Compatible mode to an app without an EncodingAESKey yet (moving
        // from plain mode: the console first, then the key here): the
        // message in the clear, as in plain mode.
        Some("aes") if app.aes_key_sealed.is_none() => {
            plain(token, &timestamp, &nonce, query.signature.as_deref())?;
            stale(sent, now, window)?;
            body.to_owned()
        }
        Some("aes") => {
            let signature = query.msg_signature.ok_or(Refused::Malformed(
                "msg_signature is required with encrypt_type=aes",
            ))?;
            let envelope = parse_encrypted_envelope(body).map_err(Refused::BadBody)?;
            if !verify_msg_signature(token, &timestamp, &nonce, &envelope.encrypt, &signature) {
                return Err(Refused::BadSignature);
            }
            stale(sent, now, window)?;
            match decrypt(apps, &app, &envelope.encrypt) {
                Ok(xml) => xml,
                // This instance may have read the app before a key change
                // made on another: the stored keys decide.
                Err(first) => {
                    let stored = match AppId::parse(app.appid.clone()) {
                        Ok(appid) => apps
                            .find(&appid)
                            .await
                            .map_err(|e| Refused::Internal(e.into()))?,
                        Err(_) => None,
                    };
                    match stored {
                        Some(stored) if stored.aes_key_sealed != app.aes_key_sealed => {
                            decrypt(apps, &stored, &envelope.encrypt)?
                        }
                        _ => return Err(first),
                    }
                }
            }
        }
        Some(_) => {
            return Err(Refused::Malformed(
                "encrypt_type must be aes, raw or absent",
            ));
        }
    };
    let message = parse_message(&xml).map_err(Refused::BadBody)?;
    Ok((app, message))
}

/// Checks plain mode's `signature` (over the token, timestamp and nonce).
fn plain(
    token: &str,
    timestamp: &str,
    nonce: &str,
    signature: Option<&str>,
) -> Result<(), Refused> {
    let signature = signature.ok_or(Refused::Malformed("signature is required in plain mode"))?;
    if verify_signature(token, timestamp, nonce, signature) {
        Ok(())
    } else {
        Err(Refused::BadSignature)
    }
}

/// Opens `encrypt` with `app`'s current EncodingAESKey, else its previous one.
fn decrypt(apps: &Apps, app: &app::Model, encrypt: &str) -> Result<String, Refused> {
    let keys = apps
        .aes_keys(app)
        .map_err(|e| Refused::Internal(e.into()))?;
    let crypto = |key: &SecretString| {
        MessageCrypto::new(key.expose_secret(), &app.appid).map_err(Refused::Undecryptable)
    };
    let current = keys
        .current
        .as_ref()
        .ok_or_else(|| Refused::NoAesKey(app.appid.clone()))
        .and_then(crypto)?;
    let previous = keys.previous.as_ref().map(crypto).transpose()?;
    decrypt_with_rotation(&current, previous.as_ref(), encrypt).map_err(Refused::Undecryptable)
}

/// The registered app of a callback URL, and its callback token.
async fn app_and_token(apps: &Apps, appid: &str) -> Result<(app::Model, SecretString), Refused> {
    let app = match AppId::parse(appid) {
        Ok(appid) => apps
            .by_appid_unkeyed(&appid)
            .await
            .map_err(|e| Refused::Internal(e.into()))?,
        Err(_) => None,
    }
    .ok_or_else(|| Refused::UnknownApp(printable(appid)))?;
    let token = apps
        .callback_token(&app)
        .map_err(|e| Refused::Internal(e.into()))?
        .ok_or_else(|| Refused::NotConfigured(app.appid.clone()))?;
    Ok((app, token))
}

/// A signed `timestamp`, as Unix seconds.
fn unix_seconds(timestamp: &str) -> Result<i64, Refused> {
    timestamp
        .parse()
        .map_err(|_| Refused::Malformed("timestamp must be Unix seconds"))
}

/// Refuses a request signed at `sent` outside the replay window.
fn stale(sent: i64, now: DateTime<Utc>, window: Duration) -> Result<(), Refused> {
    if within(sent, now, window) {
        Ok(())
    } else {
        Err(Refused::Stale(window.as_secs()))
    }
}

/// Whether Unix time `sent` is within `window` of `now`, either way.
pub fn within(sent: i64, now: DateTime<Utc>, window: Duration) -> bool {
    let window = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
    now.timestamp().abs_diff(sent) <= window.unsigned_abs()
}

/// `text` cut to 32 characters and stripped of control characters, for a
/// message that repeats what a caller sent.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(32).collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_replay_window_holds_both_ways() {
        let now = Utc.timestamp_opt(1_714_037_059, 0).unwrap();
        let window = Duration::from_secs(300);
        assert!(within(1_714_037_059, now, window));
        assert!(within(1_714_037_059 - 300, now, window));
        assert!(within(1_714_037_059 + 300, now, window));
        assert!(!within(1_714_037_059 - 301, now, window));
        assert!(!within(1_714_037_059 + 301, now, window));
        assert!(!within(i64::MIN, now, window));
        assert!(!within(i64::MAX, now, window));
    }

    #[test]
    fn a_signed_request_is_answered_once() {
        let answered = Answered::default();
        assert!(answered.first_time("wx1", 100, "n", 100, 300));
        assert!(!answered.first_time("wx1", 100, "n", 100, 300));
        assert!(answered.first_time("wx1", 100, "m", 100, 300));
        assert!(answered.first_time("wx2", 100, "n", 100, 300));
        assert!(answered.first_time("wx1", 101, "n", 100, 300));
    }

    #[test]
    fn what_is_remembered_is_bounded() {
        let answered = Answered::default();
        for i in 0..MAX_REMEMBERED {
            assert!(answered.first_time("wx1", 0, &i.to_string(), 0, 300));
        }
        // Full, and nothing old enough to forget: refused.
        assert!(!answered.first_time("wx1", 0, "new", 0, 300));
        // Once the remembered ones are out of the window, room again.
        assert!(answered.first_time("wx1", 1000, "new", 1000, 300));
        assert_eq!(answered.0.lock().unwrap().len(), 1);
    }

    #[test]
    fn echoed_text_is_cut_and_printable() {
        assert_eq!(printable("wx\n\u{7}abc"), "wxabc");
        assert_eq!(printable(&"x".repeat(100)).len(), 32);
    }
}
