//! Fetching accounts from WeChat and writing what it said.
//!
//! Accounts are grouped by app and fetched with `user/info/batchget` (the
//! client splits them into calls of 100), apps in parallel. What all apps
//! said is written through the identity service in one go, so a newly seen
//! UnionID links the account (creating the person), a different one is
//! recorded as a conflict, and WeChat's blank nicknames never erase names
//! learned elsewhere. Unfollowed users keep their last known profile and are
//! marked as not following.
//!
//! Only official accounts have `user/info`; accounts of other kinds keep
//! what sign-in and imports gave them and are reported as skipped. A failed
//! fetch never touches the stored profile: it is recorded on the account as
//! its last refresh error.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use entity::{account, app};
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, sea_query::Expr};

use super::freshness::{INVALID_OPENID, refreshable};
use super::{RefreshError, Refresher};
use crate::domain::{AppId, OpenId, ProfileSource, UnionId, storable};
use crate::identity::{self, AccountUpsert, Follow, Profile};
use crate::wechat::types::UserInfo;

/// What a refresh did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefreshReport {
    /// Accounts fetched from WeChat and written.
    pub fetched: usize,
    /// Accounts whose fetch failed (the error is recorded on each), those
    /// left unverified in a batch WeChat refused included.
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

    fn failed(count: usize) -> Self {
        Self {
            failed: count,
            ..Self::default()
        }
    }
}

impl Refresher {
    /// Fetches `accounts` from WeChat now, whatever their freshness, and writes the result.
    pub(super) async fn fetch(
        &self,
        accounts: &[account::Model],
    ) -> Result<RefreshReport, RefreshError> {
        if accounts.is_empty() {
            return Ok(RefreshReport::default());
        }
        let mut by_app: HashMap<i64, Vec<&account::Model>> = HashMap::new();
        for account in accounts {
            by_app.entry(account.app_id).or_default().push(account);
        }
        let apps = self.0.apps.covering(by_app.keys().copied()).await?;
        let jobs = by_app.into_iter().filter_map(|(app_id, accounts)| {
            let app = apps.get(&app_id)?;
            Some(self.fetch_app(app, accounts))
        });
        // Apps are fetched in parallel; what they said is written in one
        // go, so the apps of one refresh never queue for the database's
        // write lock one behind the other.
        let mut report = RefreshReport::default();
        let mut rows = Vec::new();
        for result in futures::future::join_all(jobs).await {
            let (app_report, app_rows) = result?;
            report.add(&app_report);
            rows.extend(app_rows);
        }
        let now = self.0.clock.now();
        identity::upsert_in_batches(&self.0.db, &rows, ProfileSource::UserInfo, now, |written| {
            self.0.events.accounts(written, now)
        })
        .await?;
        Ok(report)
    }

    /// Fetches one app's accounts; returns what happened and the rows to write.
    #[tracing::instrument(name = "refresh.fetch_app", skip_all, fields(app.appid = %app.appid, accounts = accounts.len()))]
    async fn fetch_app(
        &self,
        app: &app::Model,
        mut accounts: Vec<&account::Model>,
    ) -> Result<(RefreshReport, Vec<AccountUpsert>), RefreshError> {
        if !refreshable(app) {
            let report = RefreshReport {
                skipped: accounts.len(),
                ..RefreshReport::default()
            };
            return Ok((report, Vec::new()));
        }
        // Openids WeChat refused before (invalid, or left unverified in a
        // refused batch) are batched last, together: one of them in a batch
        // spends that batch's isolation budget, which could leave the good
        // openids batched with it unverified, time after time.
        accounts.sort_by_key(|a| {
            a.refresh_error_code
                .is_some_and(|code| i64::from(code) == INVALID_OPENID)
        });
        let now = self.0.clock.now();
        let ids: Vec<i64> = accounts.iter().map(|a| a.id).collect();
        let credentials = match self.0.apps.credentials(app) {
            Ok(credentials) => credentials,
            Err(e) => {
                tracing::error!(error = %e, "cannot open the app secret");
                let message = "the app secret cannot be decrypted with this master key";
                self.mark_error(&ids, None, message, now).await?;
                let report = RefreshReport::failed(ids.len());
                report.record(Some("unknown"));
                return Ok((report, Vec::new()));
            }
        };
        let openids: Vec<String> = accounts.iter().map(|a| a.openid.clone()).collect();
        let outcome = match self.0.wechat.batchget(&credentials, &openids).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(
                    wechat.errcode = e.errcode(),
                    error = %e,
                    "refresh failed; serving stored profiles"
                );
                self.mark_error(&ids, e.errcode(), &e.to_string(), now)
                    .await?;
                let report = RefreshReport::failed(ids.len());
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
        let message = "WeChat says this openid is not valid for this app";
        self.mark_error(&invalid, Some(INVALID_OPENID), message, now)
            .await?;
        // Not marked invalid: each may be valid. The errcode is the one WeChat
        // gave the batch that held them, so that, like invalid ones, they are
        // tried again once per TTL, not on every read.
        let unverified = ids_of(&mut outcome.unverified.iter().map(String::as_str));
        let message = "not verified: WeChat refused a batch holding this openid as invalid, \
            and the calls allowed for finding the invalid ones ran out before it was checked; \
            it is tried again after the freshness TTL";
        self.mark_error(&unverified, Some(INVALID_OPENID), message, now)
            .await?;
        if !unverified.is_empty() {
            tracing::warn!(
                accounts = unverified.len(),
                "openids left unverified after a refused batch"
            );
        }
        let malformed = ids_of(&mut outcome.malformed.iter().filter_map(|(o, _)| o.as_deref()));
        let message = "WeChat sent a profile that could not be read";
        self.mark_error(&malformed, None, message, now).await?;

        let appid = AppId::parse(app.appid.clone()).map_err(|source| RefreshError::StoredApp {
            appid: app.appid.clone(),
            source,
        })?;
        let rows: Vec<AccountUpsert> = outcome
            .users
            .iter()
            .filter_map(|user| upsert_from(&appid, user, now))
            .collect();
        let report = RefreshReport {
            fetched: rows.len(),
            invalid: invalid.len(),
            failed: malformed.len() + unverified.len(),
            ..RefreshReport::default()
        };
        report.record(None);
        Ok((report, rows))
    }

    /// Records a failed refresh on accounts without touching their profiles.
    async fn mark_error(
        &self,
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
                // The message may carry WeChat's `errmsg`, which may hold NULs.
                Expr::value(storable(message.to_owned())),
            )
            .col_expr(account::Column::RefreshErrorAt, Expr::value(now))
            .filter(account::Column::Id.is_in(ids.iter().copied()))
            .exec(&self.0.db)
            .await?;
        Ok(())
    }
}

/// What `user/info` says about one account, asked at `asked_at`, as an
/// identity upsert.
pub fn upsert_from(
    appid: &AppId,
    user: &UserInfo,
    asked_at: DateTime<Utc>,
) -> Option<AccountUpsert> {
    let openid = OpenId::parse(user.openid.clone())
        .inspect_err(|e| tracing::warn!(error = %e, "WeChat sent an unusable openid"))
        .ok()?;
    let unionid = user
        .unionid
        .as_deref()
        .filter(|u| !u.is_empty())
        .and_then(|u| {
            UnionId::parse(u)
                .inspect_err(|e| tracing::warn!(error = %e, "WeChat sent an unusable unionid"))
                .ok()
        });
    let subscribed = user.subscribe.map(|s| s == 1);
    let mut row = AccountUpsert {
        appid: appid.clone(),
        openid,
        unionid,
        snapshot_user: false,
        profile: Profile {
            nickname: user.nickname.clone(),
            avatar_url: user.headimgurl.clone(),
            sex: user.sex.and_then(|s| i32::try_from(s).ok()),
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
            left_at: None,
            as_of: Some(asked_at),
            subscribe_scene: user.subscribe_scene.clone().filter(|s| !s.is_empty()),
            qr_scene: user.qr_scene.filter(|s| *s != 0),
            qr_scene_str: user.qr_scene_str.clone().filter(|s| !s.is_empty()),
            remark: user.remark.clone(),
            tag_ids: user.tagid_list.clone(),
            listed_in: None,
        },
        refreshed: true,
    };
    // What WeChat sends is fitted, never refused: a NUL in a nickname must
    // not fail the refresh of the other profiles written with it.
    identity::make_storable(&mut row);
    Some(row)
}
