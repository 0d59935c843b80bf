//! The freshness rule: when an account's profile is stale, and when a read
//! should fetch it from WeChat.
//!
//! [`is_stale`] is the one function that decides staleness; the GraphQL
//! `stale` field, lazy refresh and (later) follower sync all ask it.

use chrono::{DateTime, Duration, Utc};
use entity::{account, app};

use crate::apps;
use crate::domain::AppKind;

/// WeChat's errcode for an openid that is not valid for the app.
pub const INVALID_OPENID: i64 = 40003;

/// The freshness TTL of an app: its own, else the server's `default`.
pub fn ttl(app: &app::Model, default: Duration) -> Duration {
    app.freshness_ttl_secs.map_or(default, Duration::seconds)
}

/// Whether `at` (when never, `None`) lies `ttl` or more before `now`.
fn older_than(at: Option<DateTime<Utc>>, ttl: Duration, now: DateTime<Utc>) -> bool {
    at.is_none_or(|at| now - at >= ttl)
}

/// Whether an account's profile is stale at `now`: last fetched from WeChat
/// `ttl` or more ago, or never.
pub fn is_stale(account: &account::Model, ttl: Duration, now: DateTime<Utc>) -> bool {
    older_than(account.refreshed_at, ttl, now)
}

/// Whether a read should fetch an account from WeChat (unless forced): its
/// profile is stale, and WeChat has not refused its openid (40003) within
/// the TTL, alone or in a batch the openid was left unverified in. Such an
/// openid stays invalid (it belongs to another app, or the user is gone);
/// retrying it on every read would cost a split `batchget` each time, so it
/// is tried again once per TTL.
pub fn wants_fetch(account: &account::Model, ttl: Duration, now: DateTime<Utc>) -> bool {
    let refused_lately = account
        .refresh_error_code
        .zip(account.refresh_error_at)
        .is_some_and(|(code, at)| {
            i64::from(code) == INVALID_OPENID && !older_than(Some(at), ttl, now)
        });
    is_stale(account, ttl, now) && !refused_lately
}

/// Whether union360 refreshes accounts of `app` from WeChat: only official
/// accounts have `user/info`; accounts of other apps keep what sign-in and
/// imports gave them.
pub fn refreshable(app: &app::Model) -> bool {
    apps::kind_of(app) == Some(AppKind::OfficialAccount)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server's default TTL.
    const DEFAULT_TTL: Duration = Duration::hours(24);

    fn fetched(at: Option<DateTime<Utc>>, error: Option<(i32, DateTime<Utc>)>) -> account::Model {
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        account::Model {
            refreshed_at: at,
            refresh_error_code: error.map(|(code, _)| code),
            refresh_error_message: error.map(|_| "failed".to_owned()),
            refresh_error_at: error.map(|(_, at)| at),
            ..account::Model::blank(1, 1, "o".to_owned(), epoch)
        }
    }

    #[test]
    fn profiles_go_stale_after_their_ttl_or_when_never_fetched() {
        let now = Utc::now();
        let ago = |d: Duration| fetched(Some(now - d), None);
        assert!(is_stale(&fetched(None, None), DEFAULT_TTL, now));
        assert!(!is_stale(&ago(Duration::hours(23)), DEFAULT_TTL, now));
        assert!(is_stale(&ago(Duration::hours(24)), DEFAULT_TTL, now));
        assert!(is_stale(
            &ago(Duration::minutes(2)),
            Duration::minutes(1),
            now
        ));
    }

    #[test]
    fn an_openid_refused_as_invalid_is_retried_once_per_ttl() {
        let now = Utc::now();
        let refused = |ago: Duration| fetched(None, Some((40003, now - ago)));
        assert!(wants_fetch(&fetched(None, None), DEFAULT_TTL, now));
        assert!(!wants_fetch(&refused(Duration::hours(1)), DEFAULT_TTL, now));
        assert!(wants_fetch(&refused(Duration::hours(25)), DEFAULT_TTL, now));
        // Other errors (system busy, quota) do not hold a refresh back.
        assert!(wants_fetch(
            &fetched(None, Some((-1, now))),
            DEFAULT_TTL,
            now
        ));
        // A fresh profile is not fetched anyway.
        assert!(!wants_fetch(&fetched(Some(now), None), DEFAULT_TTL, now));
    }

    #[test]
    fn an_app_may_set_its_own_ttl() {
        let app = app::Model {
            id: 1,
            appid: "wx1".to_owned(),
            kind: "OFFICIAL_ACCOUNT".to_owned(),
            name: "OA".to_owned(),
            secret_sealed: String::new(),
            callback_token_sealed: None,
            aes_key_sealed: None,
            aes_key_previous_sealed: None,
            freshness_ttl_secs: None,
            audience_bit: Some(0),
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            updated_at: DateTime::<Utc>::UNIX_EPOCH,
        };
        assert_eq!(ttl(&app, DEFAULT_TTL), DEFAULT_TTL);
        assert!(refreshable(&app));
        let own = app::Model {
            freshness_ttl_secs: Some(60),
            kind: "MINI_PROGRAM".to_owned(),
            ..app
        };
        assert_eq!(ttl(&own, DEFAULT_TTL), Duration::seconds(60));
        assert!(!refreshable(&own));
    }
}
