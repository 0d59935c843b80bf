//! WeChat's message-push callback: the URL verification WeChat sends when
//! an administrator sets the callback URL in its console.
//!
//! WeChat signs `timestamp` and `nonce` with the callback token both sides
//! know; `echostr` is answered verbatim only when the signature matches, the
//! timestamp is within the replay window and this signed request was not
//! answered before ([`Answered`]), so nobody without the token can claim
//! the URL (an SDK that echoes unchecked lets anyone do so), nor replay a
//! signed request someone saw to have other text echoed.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;

use crate::apps::Apps;
use crate::domain::AppId;
use crate::wechat::callback::verify_signature;

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
    let sent: i64 = timestamp
        .parse()
        .map_err(|_| Refused::Malformed("timestamp must be Unix seconds"))?;
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
