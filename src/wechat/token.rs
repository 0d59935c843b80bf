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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, Utc};
use entity::access_token;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter, Set,
    Statement,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::error::WechatError;
use crate::clock::Clock;
use crate::crypto::MasterKey;
use crate::store;

/// How long before expiry a token is renewed (at most half its lifetime).
pub const REFRESH_AHEAD: Duration = Duration::minutes(5);

/// After a failed fetch, how long before the next attempt (callers keep a
/// still-valid token meanwhile, or get the failure).
const RENEW_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// When a token fetched at `fetched_at` and valid until `expires_at` is due
/// for renewal: 5 minutes before expiry, or halfway for short-lived tokens
/// (stable_token may answer with only 300 s left).
pub fn renew_at(fetched_at: DateTime<Utc>, expires_at: DateTime<Utc>) -> DateTime<Utc> {
    let lifetime = (expires_at - fetched_at).max(Duration::zero());
    expires_at - REFRESH_AHEAD.min(lifetime / 2)
}

/// Which WeChat endpoint issues tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TokenEndpoint {
    /// `POST /cgi-bin/stable_token`: the same token for every caller until it nears expiry (recommended).
    #[default]
    Stable,
    /// `GET /cgi-bin/token`: a new token per call, invalidating the previous one after 5 minutes.
    Classic,
}

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

/// Where tokens are shared between instances.
#[derive(Clone, Debug)]
pub struct TokenStore {
    /// The database.
    pub db: DatabaseConnection,
    /// The key that seals tokens at rest.
    pub key: MasterKey,
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
}

/// The last failed fetch of an app's token, shared with the callers that waited for it.
#[derive(Debug, Clone)]
struct Failure {
    at: std::time::Instant,
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
        let asked = std::time::Instant::now();
        let now = self.clock.now();
        let flight = self.flight(appid);
        match self.cached(appid) {
            Some(t) if t.renew_at > now => return Ok(t),
            // Valid but due for renewal: one caller renews, the others keep
            // using it; after a failed renewal, nobody retries for a while.
            Some(t) if t.expires_at > now => {
                let failed_lately = self
                    .failure(appid)
                    .is_some_and(|f| f.at.elapsed() < RENEW_RETRY_AFTER);
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
            && (failure.at >= asked || failure.at.elapsed() < RENEW_RETRY_AFTER)
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
                        at: std::time::Instant::now(),
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

    /// Re-reads the shared row and fetches only if it is due too.
    ///
    /// On PostgreSQL the re-read and the fetch happen under a
    /// transaction-scoped advisory lock per app, so instances take turns and
    /// the second finds the first's token. SQLite has one writer lock for the
    /// whole database, which must not be held across an HTTP call; it serves
    /// one instance, whose fetches the in-process single flight already
    /// serialises.
    async fn renew_shared<'a>(
        &self,
        store: &TokenStore,
        appid: &str,
        fetch: impl FnOnce() -> FetchFuture<'a>,
    ) -> Result<AccessToken, WechatError> {
        let db_err = |e: sea_orm::DbErr| WechatError::Storage(e.to_string());
        if store.db.get_database_backend() != DbBackend::Postgres {
            if let Some(token) = self.read_shared(&store.db, store, appid).await? {
                return Ok(token);
            }
            let token = self.fetch_counted(fetch).await?;
            self.write_shared(&store.db, store, appid, &token).await?;
            return Ok(token);
        }
        let txn = store::begin_write(&store.db).await.map_err(db_err)?;
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtext('union360.access_token:' || $1))",
            [appid.into()],
        ))
        .await
        .map_err(db_err)?;
        if let Some(token) = self.read_shared(&txn, store, appid).await? {
            txn.commit().await.map_err(db_err)?;
            return Ok(token);
        }
        let token = self.fetch_counted(fetch).await?;
        self.write_shared(&txn, store, appid, &token).await?;
        txn.commit().await.map_err(db_err)?;
        Ok(token)
    }

    /// The shared token of `appid`, when one is stored and not yet due for renewal.
    async fn read_shared<C: ConnectionTrait>(
        &self,
        db: &C,
        store: &TokenStore,
        appid: &str,
    ) -> Result<Option<AccessToken>, WechatError> {
        let row = access_token::Entity::find()
            .filter(access_token::Column::Appid.eq(appid))
            .one(db)
            .await
            .map_err(|e| WechatError::Storage(e.to_string()))?;
        let Some(row) = row else { return Ok(None) };
        let due = renew_at(row.fetched_at, row.expires_at);
        if due <= self.clock.now() {
            return Ok(None);
        }
        let value = store
            .key
            .open(&purpose(appid), &row.token_sealed)
            .map_err(|e| WechatError::Storage(e.to_string()))?;
        Ok(Some(AccessToken {
            value: value.expose_secret().into(),
            expires_at: row.expires_at,
            renew_at: due,
        }))
    }

    async fn write_shared<C: ConnectionTrait>(
        &self,
        db: &C,
        store: &TokenStore,
        appid: &str,
        token: &AccessToken,
    ) -> Result<(), WechatError> {
        let sealed = store
            .key
            .seal(&purpose(appid), token.secret())
            .map_err(|e| WechatError::Storage(e.to_string()))?;
        let row = access_token::ActiveModel {
            appid: Set(appid.to_owned()),
            token_sealed: Set(sealed),
            fingerprint: Set(token.fingerprint()),
            expires_at: Set(token.expires_at),
            fetched_at: Set(self.clock.now()),
            ..Default::default()
        };
        access_token::Entity::insert(row)
            .on_conflict(
                OnConflict::column(access_token::Column::Appid)
                    .update_columns([
                        access_token::Column::TokenSealed,
                        access_token::Column::Fingerprint,
                        access_token::Column::ExpiresAt,
                        access_token::Column::FetchedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await
            .map_err(|e| WechatError::Storage(e.to_string()))?;
        Ok(())
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

fn purpose(appid: &str) -> String {
    format!("access_token:{appid}")
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
