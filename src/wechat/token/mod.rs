//! Access tokens: one per app, shared by every instance, refreshed by one caller.
//!
//! A token is cached in memory and, when a database is given, stored sealed
//! in the `access_token` table, so every union360 instance on one
//! PostgreSQL database uses the same token instead of invalidating each
//! other's (the classic multi-instance bug of `cgi-bin/token`).
//!
//! - **Single flight.** In a process, one caller per app fetches; the others
//!   wait for it, or keep using the old token while it is still valid. Across
//!   instances, the fetch happens under a transaction-scoped advisory lock
//!   (PostgreSQL) or the write lock (SQLite), after re-reading the table, so
//!   an instance that finds a fresh token written by another uses it.
//! - **Refresh ahead.** A token is renewed 5 minutes before it expires.
//! - **Compare-and-expire.** When WeChat rejects a token, only that token is
//!   dropped (in memory and in the table, matched by fingerprint), so a
//!   newer token fetched meanwhile by someone else survives.
//!
//! This file holds the in-memory cache and its single flight; `store` holds
//! the database side shared between instances.

mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, Utc};
use entity::access_token;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use super::error::WechatError;
use crate::clock::Clock;

pub use store::TokenStore;

/// How long before expiry a token is renewed (at most half its lifetime).
pub const REFRESH_AHEAD: Duration = Duration::minutes(5);

/// After a failed fetch, how long before the next attempt (callers keep a
/// still-valid token meanwhile, or get the failure).
const RENEW_RETRY_AFTER: Duration = Duration::seconds(10);

/// When a token fetched at `fetched_at` and valid until `expires_at` is due
/// for renewal: 5 minutes before expiry, or halfway for short-lived tokens
/// (stable_token may answer with only 300 s left).
pub fn renew_at(fetched_at: DateTime<Utc>, expires_at: DateTime<Utc>) -> DateTime<Utc> {
    let lifetime = (expires_at - fetched_at).max(Duration::zero());
    expires_at - REFRESH_AHEAD.min(lifetime / 2)
}

pub use crate::domain::TokenEndpoint;

/// An app's credentials.
#[derive(Clone)]
pub struct AppCredentials {
    /// The appid.
    pub appid: String,
    /// The app secret.
    pub secret: SecretString,
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AppCredentials({})", self.appid)
    }
}

/// A usable access token.
#[derive(Clone)]
pub struct AccessToken {
    value: Arc<str>,
    /// When it stops being valid.
    pub expires_at: DateTime<Utc>,
    /// When it is due for renewal.
    pub renew_at: DateTime<Utc>,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccessToken(expires {})", self.expires_at)
    }
}

impl AccessToken {
    /// The token text (a secret: never log it).
    pub fn secret(&self) -> &str {
        &self.value
    }

    fn fingerprint(&self) -> String {
        fingerprint(&self.value)
    }
}

fn fingerprint(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Fetches a token from WeChat (the HTTP part lives in the client).
pub type FetchFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(String, i64), WechatError>> + Send + 'a>,
>;

/// The per-app token cache.
pub struct TokenManager {
    store: Option<TokenStore>,
    clock: Clock,
    cache: std::sync::Mutex<HashMap<String, AccessToken>>,
    flights: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    failures: std::sync::Mutex<HashMap<String, Failure>>,
    fetches: AtomicU64,
    /// Numbers the fetch attempts in the order they end.
    attempts: AtomicU64,
}

/// The last failed fetch of an app's token, shared with the callers that waited for it.
#[derive(Debug, Clone)]
struct Failure {
    /// When it failed, by the manager's clock.
    at: DateTime<Utc>,
    /// The number of the attempt that failed (in the order attempts end).
    attempt: u64,
    errcode: Option<i64>,
    message: String,
}

impl std::fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager")
            .field("shared", &self.store.is_some())
            .finish_non_exhaustive()
    }
}

impl TokenManager {
    /// A manager sharing tokens through `store` (or only in memory without one).
    pub fn new(store: Option<TokenStore>, clock: Clock) -> Self {
        Self {
            store,
            clock,
            cache: std::sync::Mutex::default(),
            flights: std::sync::Mutex::default(),
            failures: std::sync::Mutex::default(),
            fetches: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
        }
    }

    /// How many tokens this manager fetched from WeChat.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn cached(&self, appid: &str) -> Option<AccessToken> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(appid)
            .cloned()
    }

    fn remember(&self, appid: &str, token: AccessToken) {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(appid.to_owned(), token);
    }

    fn flight(&self, appid: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(appid.to_owned())
            .or_default()
            .clone()
    }

    fn failure(&self, appid: &str) -> Option<Failure> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(appid)
            .cloned()
    }

    /// A valid token for `appid`, fetching one with `fetch` only when needed.
    ///
    /// Callers that wait while another fetches share its result: on success
    /// they read the cache, on failure they get its error instead of each
    /// fetching again.
    pub async fn get<'a>(
        &self,
        appid: &str,
        fetch: impl FnOnce() -> FetchFuture<'a>,
    ) -> Result<AccessToken, WechatError> {
        let asked = self.attempts.load(Ordering::Acquire);
        let now = self.clock.now();
        let flight = self.flight(appid);
        match self.cached(appid) {
            Some(t) if t.renew_at > now => return Ok(t),
            // Valid but due for renewal: one caller renews, the others keep
            // using it; after a failed renewal, nobody retries for a while.
            Some(t) if t.expires_at > now => {
                let failed_lately = self
                    .failure(appid)
                    .is_some_and(|f| self.clock.within(f.at, RENEW_RETRY_AFTER));
                return match flight.try_lock() {
                    Ok(guard) if !failed_lately => self.renew(appid, fetch, guard).await.or(Ok(t)),
                    _ => Ok(t),
                };
            }
            _ => {}
        }
        let guard = flight.lock().await;
        if let Some(t) = self.cached(appid)
            && t.renew_at > self.clock.now()
        {
            return Ok(t);
        }
        // Share a failure with the callers that waited for it, and hold off
        // new attempts briefly: an app with a wrong secret must not cost a
        // token call per read.
        if let Some(failure) = self.failure(appid)
            && (failure.attempt > asked || self.clock.within(failure.at, RENEW_RETRY_AFTER))
        {
            return Err(WechatError::TokenUnavailable {
                errcode: failure.errcode,
                message: failure.message,
            });
        }
        self.renew(appid, fetch, guard).await
    }

    async fn renew<'a>(
        &self,
        appid: &str,
        fetch: impl FnOnce() -> FetchFuture<'a>,
        _guard: tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<AccessToken, WechatError> {
        let result = match &self.store {
            None => self.fetch_counted(fetch).await,
            Some(store) => self.renew_shared(store, appid, fetch).await,
        };
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let attempt = self.attempts.fetch_add(1, Ordering::AcqRel) + 1;
        match &result {
            Ok(token) => {
                failures.remove(appid);
                drop(failures);
                self.remember(appid, token.clone());
            }
            Err(e) => {
                tracing::warn!(app.appid = appid, wechat.errcode = e.errcode(), error = %e, "access token fetch failed");
                failures.insert(
                    appid.to_owned(),
                    Failure {
                        at: self.clock.now(),
                        attempt,
                        errcode: e.errcode(),
                        message: e.to_string(),
                    },
                );
            }
        }
        result
    }

    async fn fetch_counted<'a>(
        &self,
        fetch: impl FnOnce() -> FetchFuture<'a>,
    ) -> Result<AccessToken, WechatError> {
        let (value, expires_in) = fetch().await?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        Ok(self.token_from(value, expires_in))
    }

    fn token_from(&self, value: String, expires_in: i64) -> AccessToken {
        let now = self.clock.now();
        let expires_at = now + Duration::seconds(expires_in.clamp(0, 7200));
        AccessToken {
            value: value.into(),
            expires_at,
            renew_at: renew_at(now, expires_at),
        }
    }

    /// Drops `failed` if it is still the current token of `appid` (compare-and-expire).
    pub async fn expire(&self, appid: &str, failed: &AccessToken) {
        {
            let mut cache = self
                .cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.get(appid).is_some_and(|t| t.value == failed.value) {
                cache.remove(appid);
            }
        }
        if let Some(store) = &self.store {
            let result = access_token::Entity::update_many()
                .col_expr(
                    access_token::Column::ExpiresAt,
                    Expr::value(self.clock.now()),
                )
                .filter(access_token::Column::Appid.eq(appid))
                .filter(access_token::Column::Fingerprint.eq(failed.fingerprint()))
                .exec(&store.db)
                .await;
            if let Err(e) = result {
                tracing::warn!(app.appid = appid, error = %e, "could not expire a rejected access token");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_renew_five_minutes_ahead_or_halfway_when_short_lived() {
        let t0: DateTime<Utc> = "2026-11-24T00:00:00Z".parse().unwrap();
        assert_eq!(
            renew_at(t0, t0 + Duration::hours(2)),
            t0 + Duration::minutes(115)
        );
        assert_eq!(
            renew_at(t0, t0 + Duration::seconds(300)),
            t0 + Duration::seconds(150)
        );
        assert_eq!(renew_at(t0, t0), t0);
    }
}
