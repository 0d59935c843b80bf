//! The API-key service: creating, listing and revoking keys, and
//! authenticating the key a request presents.
//!
//! A key is `u360_<id>_<secret>`: a public id of 12 hex digits (shown in
//! listings, used to revoke) and 256 random bits. It is shown once, when
//! created; only its SHA-256 is stored. Authentication finds the key's row
//! by id in an in-memory copy of the table and compares hashes in constant
//! time, so a request costs no database round trip. The copy is reloaded
//! after every change made here, and when older than [`TABLE_MAX_AGE`], so
//! a key revoked on another instance stops working within that time.
//! Last-used times are kept in memory and written by [`Keys::flush_last_used`],
//! never one write per request.

pub mod limit;
pub mod scope;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use entity::api_key;
use rand::RngCore as _;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set,
};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use limit::{Admission, Limiter, Limits, Refusal};
pub use scope::{Scope, Scopes, UnknownScope};

use crate::clock::Clock;

/// What every key starts with.
pub const KEY_PREFIX: &str = "u360_";
/// How long the in-memory copy of the key table is trusted.
pub const TABLE_MAX_AGE: Duration = Duration::from_secs(5);
/// The least time between two reloads caused by unknown keys.
const MISS_RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// The longest key name.
pub const MAX_NAME_CHARS: usize = 200;
/// The highest rate, burst or concurrency a key may be given.
pub const MAX_LIMIT: u32 = 1_000_000;

/// Why a key could not be created or revoked.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The request is invalid; the message says why.
    #[error("{0}")]
    Invalid(String),
    /// No key has this id.
    #[error("no API key has the id {0}")]
    NotFound(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Why a presented key does not authenticate.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No key was presented.
    #[error("an API key is required: send `Authorization: Bearer <key>`")]
    Missing,
    /// No key exists yet on this server.
    #[error(
        "no API key exists yet: create one with `union360 apikey create --name admin --scopes read,pii,stats,write,admin` and send it as `Authorization: Bearer <key>`"
    )]
    NoKeys,
    /// The key is not one of this server's (malformed, unknown or wrong).
    #[error("the API key is not valid")]
    Unknown,
    /// The key was revoked.
    #[error("the API key was revoked")]
    Revoked,
    /// The database failed while the key table was read.
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// A key to create.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// Who or what will use it.
    pub name: String,
    /// What it may do.
    pub scopes: Scopes,
    /// Its own limits; `None` fields take the server's defaults.
    pub limits: KeyLimits,
}

/// A key's own limits, each `None` for the server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyLimits {
    /// Requests per second.
    pub rate_per_sec: Option<u32>,
    /// The largest burst.
    pub burst: Option<u32>,
    /// Requests in flight at once.
    pub max_concurrent: Option<u32>,
}

impl KeyLimits {
    fn resolve(self, defaults: Limits) -> Limits {
        Limits {
            rate_per_sec: self.rate_per_sec.unwrap_or(defaults.rate_per_sec),
            burst: self.burst.unwrap_or(defaults.burst),
            max_concurrent: self.max_concurrent.unwrap_or(defaults.max_concurrent),
        }
    }
}

/// A key as listings show it (never its secret, never its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The public id (`u360_<12 hex digits>`).
    pub key_id: String,
    /// Its name.
    pub name: String,
    /// Its scopes.
    pub scopes: Scopes,
    /// Its own limits (unset: the server's defaults).
    pub limits: KeyLimits,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last used, as last recorded.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key just created: the key itself, shown this once, and its listing.
#[derive(Debug)]
pub struct CreatedKey {
    /// The whole key, to hand to its user.
    pub key: SecretString,
    /// What listings show of it.
    pub info: KeyInfo,
}

/// Who a request is: an authenticated key.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key's public id.
    pub key_id: String,
    /// The key's scopes.
    pub scopes: Scopes,
    /// The key's limiter.
    pub limiter: Arc<Limiter>,
}

impl Principal {
    /// Whether the key holds `scope`.
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.contains(scope)
    }
}

/// The API-key service (cheap to clone).
#[derive(Clone, Debug)]
pub struct Keys(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    db: DatabaseConnection,
    clock: Clock,
    defaults: Limits,
    table: RwLock<Table>,
    reload: tokio::sync::Mutex<()>,
    miss_reload: Mutex<Option<Instant>>,
    used: Mutex<HashMap<i64, DateTime<Utc>>>,
}

/// The in-memory copy of the key table.
#[derive(Debug)]
struct Table {
    by_key_id: HashMap<String, Entry>,
    loaded_at: Option<Instant>,
}

#[derive(Debug)]
struct Entry {
    id: i64,
    hash: [u8; 32],
    scopes: Scopes,
    revoked: bool,
    limiter: Arc<Limiter>,
}

impl Keys {
    /// The service over `db`; `defaults` are the limits of keys without their own.
    pub fn new(db: DatabaseConnection, clock: Clock, defaults: Limits) -> Self {
        Self(Arc::new(Inner {
            db,
            clock,
            defaults,
            table: RwLock::new(Table {
                by_key_id: HashMap::new(),
                loaded_at: None,
            }),
            reload: tokio::sync::Mutex::new(()),
            miss_reload: Mutex::new(None),
            used: Mutex::new(HashMap::new()),
        }))
    }

    /// Creates a key; the returned key is the only copy of its secret.
    pub async fn create(&self, new: NewKey) -> Result<CreatedKey, KeyError> {
        let name = check_name(&new.name)?;
        if new.scopes.is_empty() {
            return Err(KeyError::Invalid(
                "a key needs at least one scope (read, pii, stats, write, admin)".to_owned(),
            ));
        }
        check_limits(new.limits)?;
        let mut id_bytes = [0u8; 6];
        let mut secret_bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut id_bytes);
        rand::rngs::OsRng.fill_bytes(&mut secret_bytes);
        let key_id = format!("{KEY_PREFIX}{}", hex::encode(id_bytes));
        let key = format!("{key_id}_{}", URL_SAFE_NO_PAD.encode(secret_bytes));
        let as_i32 = |v: Option<u32>| v.map(|v| v as i32);
        let row = api_key::ActiveModel {
            key_id: Set(key_id),
            name: Set(name),
            hash: Set(hex::encode(Sha256::digest(key.as_bytes()))),
            scopes: Set(new.scopes.to_string()),
            rate_per_sec: Set(as_i32(new.limits.rate_per_sec)),
            burst: Set(as_i32(new.limits.burst)),
            max_concurrent: Set(as_i32(new.limits.max_concurrent)),
            created_at: Set(self.0.clock.now()),
            last_used_at: Set(None),
            revoked_at: Set(None),
            ..Default::default()
        }
        .insert(&self.0.db)
        .await?;
        self.reload().await?;
        Ok(CreatedKey {
            key: SecretString::from(key),
            info: info(row),
        })
    }

    /// Every key, oldest first, with last-used times as last recorded.
    pub async fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        self.flush_last_used().await?;
        let rows = api_key::Entity::find()
            .order_by_asc(api_key::Column::Id)
            .all(&self.0.db)
            .await?;
        Ok(rows.into_iter().map(info).collect())
    }

    /// Revokes key `key_id`; revoking a revoked key keeps its first revocation time.
    pub async fn revoke(&self, key_id: &str) -> Result<KeyInfo, KeyError> {
        let well_formed = key_id
            .trim()
            .strip_prefix(KEY_PREFIX)
            .is_some_and(|id| id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()));
        if !well_formed {
            return Err(KeyError::NotFound(key_id.trim().escape_debug().to_string()));
        }
        let row = api_key::Entity::find()
            .filter(api_key::Column::KeyId.eq(key_id.trim()))
            .one(&self.0.db)
            .await?
            .ok_or_else(|| KeyError::NotFound(key_id.trim().to_owned()))?;
        let row = if row.revoked_at.is_some() {
            row
        } else {
            let mut active: api_key::ActiveModel = row.into();
            active.revoked_at = Set(Some(self.0.clock.now()));
            active.update(&self.0.db).await?
        };
        self.reload().await?;
        Ok(info(row))
    }

    /// Authenticates a presented key (the text after `Bearer `).
    ///
    /// The key table is read from the database only when the in-memory copy
    /// is older than [`TABLE_MAX_AGE`], or when a well-formed key's id is not
    /// in it (a key created on another instance), at most once a second;
    /// concurrent requests wait for one read instead of each making one, so
    /// a flood of bad keys costs the database nothing more.
    pub async fn authenticate(&self, presented: &str) -> Result<Principal, AuthError> {
        let asked = Instant::now();
        if self.loaded_before(asked.checked_sub(TABLE_MAX_AGE)) {
            self.reload_if_loaded_before(asked.checked_sub(TABLE_MAX_AGE))
                .await?;
        }
        match self.check(presented) {
            Err(AuthError::Unknown | AuthError::NoKeys)
                if self.id_is_new(presented) && self.claim_miss_reload() =>
            {
                // A key created on another instance since the last reload.
                self.reload_if_loaded_before(Some(asked)).await?;
                self.check(presented)
            }
            other => other,
        }
    }

    /// Whether at least one key exists (revoked ones included).
    pub async fn any(&self) -> Result<bool, DbErr> {
        self.reload().await?;
        Ok(!self.read_table().by_key_id.is_empty())
    }

    /// Writes the last-used times gathered since the last flush; returns how
    /// many keys. A time is never moved backwards (another instance may have
    /// written a later one), and times not written stay for the next flush.
    pub async fn flush_last_used(&self) -> Result<usize, DbErr> {
        let used: Vec<(i64, DateTime<Utc>)> = {
            let mut used = self.0.used.lock().unwrap_or_else(|e| e.into_inner());
            used.drain().collect()
        };
        for (i, (id, at)) in used.iter().enumerate() {
            let written = api_key::Entity::update_many()
                .col_expr(
                    api_key::Column::LastUsedAt,
                    sea_orm::sea_query::Expr::value(*at),
                )
                .filter(api_key::Column::Id.eq(*id))
                .filter(
                    sea_orm::Condition::any()
                        .add(api_key::Column::LastUsedAt.is_null())
                        .add(api_key::Column::LastUsedAt.lt(*at)),
                )
                .exec(&self.0.db)
                .await;
            if let Err(e) = written {
                let mut pending = self.0.used.lock().unwrap_or_else(|e| e.into_inner());
                for (id, at) in &used[i..] {
                    let entry = pending.entry(*id).or_insert(*at);
                    *entry = (*entry).max(*at);
                }
                return Err(e);
            }
        }
        Ok(used.len())
    }

    /// Flushes last-used times every `interval`, forever (spawned by the server).
    pub async fn flush_every(self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(e) = self.flush_last_used().await {
                tracing::warn!(error = %e, "could not record API keys' last use");
            }
        }
    }

    fn read_table(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.0.table.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the in-memory copy was loaded before `at` (or never; `None`:
    /// the beginning of time).
    fn loaded_before(&self, at: Option<Instant>) -> bool {
        match (self.read_table().loaded_at, at) {
            (None, _) => true,
            (Some(loaded), Some(at)) => loaded < at,
            (Some(_), None) => false,
        }
    }

    /// Whether `presented` is a well-formed key whose id the in-memory copy
    /// does not hold.
    fn id_is_new(&self, presented: &str) -> bool {
        key_id_of(presented).is_some_and(|id| !self.read_table().by_key_id.contains_key(id))
    }

    /// Takes the once-a-second slot for a reload caused by an unknown key.
    fn claim_miss_reload(&self) -> bool {
        let mut last = self.0.miss_reload.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < MISS_RELOAD_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Reloads unless another caller did since `at`, while this one waited.
    async fn reload_if_loaded_before(&self, at: Option<Instant>) -> Result<(), DbErr> {
        let _one_at_a_time = self.0.reload.lock().await;
        if self.loaded_before(at) {
            self.load().await?;
        }
        Ok(())
    }

    fn check(&self, presented: &str) -> Result<Principal, AuthError> {
        let table = self.read_table();
        if table.by_key_id.is_empty() {
            return Err(AuthError::NoKeys);
        }
        let key_id = key_id_of(presented).ok_or(AuthError::Unknown)?;
        let entry = table.by_key_id.get(key_id).ok_or(AuthError::Unknown)?;
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if !bool::from(hash.ct_eq(&entry.hash)) {
            return Err(AuthError::Unknown);
        }
        if entry.revoked {
            return Err(AuthError::Revoked);
        }
        self.0
            .used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.id, self.0.clock.now());
        Ok(Principal {
            key_id: key_id.to_owned(),
            scopes: entry.scopes,
            limiter: entry.limiter.clone(),
        })
    }

    /// Reads the key table into memory now (after a change made here).
    async fn reload(&self) -> Result<(), DbErr> {
        let _one_at_a_time = self.0.reload.lock().await;
        self.load().await
    }

    /// Reads the key table into memory, keeping the limiters of unchanged
    /// keys; the caller holds the reload lock.
    async fn load(&self) -> Result<(), DbErr> {
        let rows = api_key::Entity::find().all(&self.0.db).await?;
        let mut table = self.0.table.write().unwrap_or_else(|e| e.into_inner());
        let mut by_key_id = HashMap::with_capacity(rows.len());
        for row in rows {
            let Some(entry) = self.entry(&row, table.by_key_id.get(&row.key_id)) else {
                tracing::warn!(key.id = %row.key_id, "API key row is unreadable; it authenticates nothing");
                continue;
            };
            by_key_id.insert(row.key_id, entry);
        }
        table.by_key_id = by_key_id;
        table.loaded_at = Some(Instant::now());
        Ok(())
    }

    fn entry(&self, row: &api_key::Model, previous: Option<&Entry>) -> Option<Entry> {
        let hash: [u8; 32] = hex::decode(&row.hash).ok()?.try_into().ok()?;
        let scopes: Scopes = row.scopes.parse().ok()?;
        let limits = row_limits(row).resolve(self.0.defaults);
        let limiter = match previous {
            Some(previous) if previous.limiter.limits() == limits => previous.limiter.clone(),
            _ => Arc::new(Limiter::new(limits)),
        };
        Some(Entry {
            id: row.id,
            hash,
            scopes,
            revoked: row.revoked_at.is_some(),
            limiter,
        })
    }
}

/// Whether `text` is a key's public id: `u360_` and 12 hex digits.
fn is_key_id(text: &str) -> bool {
    text.strip_prefix(KEY_PREFIX)
        .is_some_and(|id| id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The public id of a well-formed key (`u360_<12 hex>_<43 base64url>`), or `None`.
fn key_id_of(presented: &str) -> Option<&str> {
    let id_len = KEY_PREFIX.len() + 12;
    let (id, secret) = (presented.get(..id_len)?, presented.get(id_len..)?);
    let secret = secret.strip_prefix('_')?;
    let well_formed = is_key_id(id)
        && secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then_some(id)
}

fn check_name(name: &str) -> Result<String, KeyError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(KeyError::Invalid("a key needs a name".to_owned()));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(KeyError::Invalid(format!(
            "a key's name is at most {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(KeyError::Invalid(
            "a key's name cannot hold control characters".to_owned(),
        ));
    }
    Ok(name.to_owned())
}

fn check_limits(limits: KeyLimits) -> Result<(), KeyError> {
    for (what, value) in [
        ("rate per second", limits.rate_per_sec),
        ("burst", limits.burst),
        ("concurrency", limits.max_concurrent),
    ] {
        if let Some(value) = value
            && !(1..=MAX_LIMIT).contains(&value)
        {
            return Err(KeyError::Invalid(format!(
                "a key's {what} must be between 1 and {MAX_LIMIT}"
            )));
        }
    }
    Ok(())
}

fn row_limits(row: &api_key::Model) -> KeyLimits {
    let as_u32 = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok());
    KeyLimits {
        rate_per_sec: as_u32(row.rate_per_sec),
        burst: as_u32(row.burst),
        max_concurrent: as_u32(row.max_concurrent),
    }
}

fn info(row: api_key::Model) -> KeyInfo {
    KeyInfo {
        limits: row_limits(&row),
        scopes: row.scopes.parse().unwrap_or_default(),
        key_id: row.key_id,
        name: row.name,
        created_at: row.created_at,
        last_used_at: row.last_used_at,
        revoked_at: row.revoked_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_keys_have_an_id() {
        let key = format!("u360_0123456789ab_{}", "A".repeat(43));
        assert_eq!(key_id_of(&key), Some("u360_0123456789ab"));
        assert_eq!(key_id_of("u360_0123456789ab_short"), None);
        assert_eq!(
            key_id_of(&format!("u360_0123456789zz_{}", "A".repeat(43))),
            None
        );
        assert_eq!(
            key_id_of(&format!("xxxx_0123456789ab_{}", "A".repeat(43))),
            None
        );
        assert_eq!(
            key_id_of(&format!("u360_0123456789ab_{}!", "A".repeat(42))),
            None
        );
    }

    #[test]
    fn names_and_limits_are_checked() {
        assert!(check_name("  ").is_err());
        assert!(check_name("a\u{0}b").is_err());
        assert!(check_name(&"x".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert_eq!(check_name(" dashboard ").expect("valid"), "dashboard");
        assert!(
            check_limits(KeyLimits {
                rate_per_sec: Some(0),
                ..KeyLimits::default()
            })
            .is_err()
        );
        assert!(
            check_limits(KeyLimits {
                burst: Some(10),
                ..KeyLimits::default()
            })
            .is_ok()
        );
    }
}
