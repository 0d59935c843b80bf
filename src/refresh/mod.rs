//! Refreshing account profiles from WeChat.
//!
//! [`refresh_accounts`] fetches the given accounts from `user/info/batchget`,
//! grouped by app (chunks of at most 100, apps in parallel), and writes what
//! WeChat said through the identity service, so the identity rules hold for
//! refreshes exactly as for imports: a newly seen UnionID links the account
//! (creating the person), a different one is recorded as a conflict, and
//! WeChat's blank nicknames never erase names learned elsewhere. Unfollowed
//! users keep their last known profile and are marked as not following.
//!
//! Only official accounts have `user/info`; accounts of other kinds keep
//! what sign-in and imports gave them and are reported as skipped. A failed
//! fetch never touches the stored profile: it is recorded on the account as
//! its last refresh error.

mod flight;
mod lease;

use std::collections::HashMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use entity::{account, app};
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, sea_query::Expr};

use crate::apps;
use crate::domain::{AppId, AppKind, OpenId, ProfileSource, UnionId};
use crate::identity::{self, AccountUpsert, Follow, Profile};
use crate::state::AppState;
use crate::wechat::AppCredentials;
use crate::wechat::types::UserInfo;

pub use flight::{RECENT, Refresher};

/// How a request wants stale profiles handled.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum RefreshPolicy {
    /// Serve what is stored; never call WeChat.
    CacheOnly,
    /// Refresh accounts whose profile is stale before answering, within the
    /// request's refresh budget; past it, or if WeChat fails, serve what is
    /// stored, marked stale, with the error.
    #[default]
    IfStale,
    /// Refresh every official-account account read, fresh or not (within the budget).
    Force,
}

/// How long a profile stays fresh when neither the app nor the server says otherwise.
pub const DEFAULT_TTL: Duration = Duration::hours(24);

/// Whether a profile last fetched at `refreshed_at` is stale after `ttl` at `now`.
pub fn is_stale(refreshed_at: Option<DateTime<Utc>>, ttl: Duration, now: DateTime<Utc>) -> bool {
    refreshed_at.is_none_or(|at| now - at >= ttl)
}

/// WeChat's errcode for an openid that is not valid for the app.
pub const INVALID_OPENID: i64 = 40003;

/// Whether a read should fetch an account from WeChat (unless forced): its
/// profile, last fetched at `refreshed_at`, is stale, and WeChat has not
/// refused its openid as invalid (`last_error`: code and time) within the
/// TTL. Such an openid stays invalid (it belongs to another app, or the user
/// is gone); retrying it on every read would cost a split `batchget` each
/// time, so it is tried again once per TTL.
pub fn wants_refresh(
    refreshed_at: Option<DateTime<Utc>>,
    last_error: Option<(i32, DateTime<Utc>)>,
    ttl: Duration,
    now: DateTime<Utc>,
) -> bool {
    let refused_lately = last_error.is_some_and(|(code, at)| {
        i64::from(code) == INVALID_OPENID && !is_stale(Some(at), ttl, now)
    });
    is_stale(refreshed_at, ttl, now) && !refused_lately
}

/// The freshness TTL of an app: its own, else the server's default.
pub fn ttl_of(app: &app::Model, default: Duration) -> Duration {
    app.freshness_ttl_secs.map_or(default, Duration::seconds)
}

/// What a refresh did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefreshReport {
    /// Accounts fetched from WeChat and written.
    pub fetched: usize,
    /// Accounts whose fetch failed (the error is recorded on each).
    pub failed: usize,
    /// Accounts WeChat refused as invalid openids (marked with errcode 40003).
    pub invalid: usize,
    /// Accounts of apps that have no `user/info` (not official accounts).
    pub skipped: usize,
}

impl RefreshReport {
    fn record(&self, class: Option<&'static str>) {
        metrics::counter!("union360_refresh_fetched_total").increment(self.fetched as u64);
        let failed = (self.failed + self.invalid) as u64;
        if failed > 0 {
            metrics::counter!("union360_refresh_failed_total", "class" => class.unwrap_or("bad_input"))
                .increment(failed);
        }
    }

    fn add(&mut self, other: &Self) {
        self.fetched += other.fetched;
        self.failed += other.failed;
        self.invalid += other.invalid;
        self.skipped += other.skipped;
    }
}

/// Fetches `accounts` from WeChat now, whatever their freshness.
pub async fn refresh_accounts(
    state: &AppState,
    accounts: &[account::Model],
) -> Result<RefreshReport, DbErr> {
    if accounts.is_empty() {
        return Ok(RefreshReport::default());
    }
    let mut by_app: HashMap<i64, Vec<&account::Model>> = HashMap::new();
    for account in accounts {
        by_app.entry(account.app_id).or_default().push(account);
    }
    let apps = state
        .apps()
        .covering(state.db(), by_app.keys().copied())
        .await?;
    let jobs = by_app.into_iter().filter_map(|(app_id, accounts)| {
        let app = apps.get(&app_id)?;
        Some(refresh_app(state, app, accounts))
    });
    // Apps are fetched in parallel; what they said is written in one
    // transaction, so the apps of one refresh never queue for the database's
    // write lock one behind the other.
    let mut report = RefreshReport::default();
    let mut rows = Vec::new();
    for result in futures::future::join_all(jobs).await {
        let (app_report, app_rows) = result?;
        report.add(&app_report);
        rows.extend(app_rows);
    }
    for chunk in rows.chunks(identity::MAX_UPSERT_BATCH) {
        identity::upsert_accounts(
            state.db(),
            chunk.to_vec(),
            ProfileSource::UserInfo,
            state.now(),
        )
        .await
        .map_err(|e| match e {
            identity::IdentityError::Db(e) => e,
            other => DbErr::Custom(other.to_string()),
        })?;
    }
    Ok(report)
}

/// Fetches one app's accounts; returns what happened and the rows to write.
async fn refresh_app(
    state: &AppState,
    app: &app::Model,
    accounts: Vec<&account::Model>,
) -> Result<(RefreshReport, Vec<AccountUpsert>), DbErr> {
    if apps::kind_of(app) != Some(AppKind::OfficialAccount) {
        let report = RefreshReport {
            skipped: accounts.len(),
            ..RefreshReport::default()
        };
        return Ok((report, Vec::new()));
    }
    let now = state.now();
    let ids: Vec<i64> = accounts.iter().map(|a| a.id).collect();
    let credentials = match state.master_key().open(
        &apps::seal_purpose("secret", &app.appid),
        &app.secret_sealed,
    ) {
        Ok(secret) => AppCredentials {
            appid: app.appid.clone(),
            secret,
        },
        Err(e) => {
            tracing::error!(app.appid = %app.appid, error = %e, "cannot open the app secret");
            mark_error(
                state,
                &ids,
                None,
                "the app secret cannot be decrypted with this master key",
                now,
            )
            .await?;
            let report = RefreshReport {
                failed: ids.len(),
                ..RefreshReport::default()
            };
            report.record(Some("unknown"));
            return Ok((report, Vec::new()));
        }
    };
    let openids: Vec<String> = accounts.iter().map(|a| a.openid.clone()).collect();
    let outcome = match state.wechat().batchget(&credentials, &openids).await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::warn!(
                app.appid = %app.appid,
                wechat.errcode = e.errcode(),
                error = %e,
                accounts = ids.len(),
                "refresh failed; serving stored profiles"
            );
            mark_error(state, &ids, e.errcode(), &e.to_string(), now).await?;
            let report = RefreshReport {
                failed: ids.len(),
                ..RefreshReport::default()
            };
            report.record(Some(e.class().as_str()));
            return Ok((report, Vec::new()));
        }
    };
    let by_openid: HashMap<&str, i64> =
        accounts.iter().map(|a| (a.openid.as_str(), a.id)).collect();
    let ids_of = |openids: &mut dyn Iterator<Item = &str>| -> Vec<i64> {
        openids.filter_map(|o| by_openid.get(o).copied()).collect()
    };
    let invalid = ids_of(&mut outcome.invalid.iter().map(String::as_str));
    mark_error(
        state,
        &invalid,
        Some(INVALID_OPENID),
        "WeChat says this openid is not valid for this app",
        now,
    )
    .await?;
    let malformed = ids_of(&mut outcome.malformed.iter().filter_map(|(o, _)| o.as_deref()));
    mark_error(
        state,
        &malformed,
        None,
        "WeChat sent a profile that could not be read",
        now,
    )
    .await?;

    let appid = AppId::parse(app.appid.clone()).map_err(|e| DbErr::Custom(e.to_string()))?;
    let rows: Vec<AccountUpsert> = outcome
        .users
        .iter()
        .filter_map(|user| upsert_from(&appid, user))
        .collect();
    let fetched = rows.len();
    let report = RefreshReport {
        fetched,
        invalid: invalid.len(),
        failed: malformed.len(),
        ..RefreshReport::default()
    };
    report.record(None);
    Ok((report, rows))
}

/// What `user/info` says about one account, as an identity upsert.
fn upsert_from(appid: &AppId, user: &UserInfo) -> Option<AccountUpsert> {
    let openid = OpenId::parse(user.openid.clone())
        .inspect_err(
            |e| tracing::warn!(app.appid = %appid, error = %e, "WeChat sent an unusable openid"),
        )
        .ok()?;
    let unionid = user
        .unionid
        .as_deref()
        .filter(|u| !u.is_empty())
        .and_then(|u| {
            UnionId::parse(u)
                .inspect_err(|e| tracing::warn!(app.appid = %appid, error = %e, "WeChat sent an unusable unionid"))
                .ok()
        });
    let subscribed = user.subscribe.map(|s| s == 1);
    Some(AccountUpsert {
        appid: appid.clone(),
        openid,
        unionid,
        profile: Profile {
            nickname: user.nickname.clone(),
            avatar_url: user.headimgurl.clone(),
            sex: user
                .sex
                .and_then(|s| i32::try_from(s).ok())
                .filter(|s| (0..=2).contains(s)),
            language: user.language.clone(),
            city: user.city.clone(),
            province: user.province.clone(),
            country: user.country.clone(),
        },
        follow: Follow {
            subscribed,
            subscribe_time: user
                .subscribe_time
                .filter(|t| *t > 0)
                .and_then(|t| Utc.timestamp_opt(t, 0).single()),
            subscribe_scene: user.subscribe_scene.clone().filter(|s| !s.is_empty()),
            qr_scene: user.qr_scene.filter(|s| *s != 0),
            qr_scene_str: user.qr_scene_str.clone().filter(|s| !s.is_empty()),
            remark: user.remark.clone(),
            tag_ids: user.tagid_list.clone(),
        },
        refreshed: true,
    })
}

/// Records a failed refresh on accounts without touching their profiles.
async fn mark_error(
    state: &AppState,
    ids: &[i64],
    code: Option<i64>,
    message: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    account::Entity::update_many()
        .col_expr(
            account::Column::RefreshErrorCode,
            Expr::value(code.and_then(|c| i32::try_from(c).ok())),
        )
        .col_expr(
            account::Column::RefreshErrorMessage,
            Expr::value(message.to_owned()),
        )
        .col_expr(account::Column::RefreshErrorAt, Expr::value(now))
        .filter(account::Column::Id.is_in(ids.iter().copied()))
        .exec(state.db())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_go_stale_after_their_ttl_or_when_never_fetched() {
        let now = Utc::now();
        assert!(is_stale(None, DEFAULT_TTL, now));
        assert!(!is_stale(Some(now - Duration::hours(23)), DEFAULT_TTL, now));
        assert!(is_stale(Some(now - Duration::hours(24)), DEFAULT_TTL, now));
        assert!(is_stale(
            Some(now - Duration::minutes(2)),
            Duration::minutes(1),
            now
        ));
    }

    #[test]
    fn an_openid_refused_as_invalid_is_retried_once_per_ttl() {
        let now = Utc::now();
        let refused = |ago: Duration| Some((40003, now - ago));
        assert!(wants_refresh(None, None, DEFAULT_TTL, now));
        assert!(!wants_refresh(
            None,
            refused(Duration::hours(1)),
            DEFAULT_TTL,
            now
        ));
        assert!(wants_refresh(
            None,
            refused(Duration::hours(25)),
            DEFAULT_TTL,
            now
        ));
        // Other errors (system busy, quota) do not hold a refresh back.
        assert!(wants_refresh(None, Some((-1, now)), DEFAULT_TTL, now));
        // A fresh profile is not fetched anyway.
        assert!(!wants_refresh(Some(now), None, DEFAULT_TTL, now));
    }
}
