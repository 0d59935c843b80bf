//! The apps service: registering WeChat apps and reading them back.
//!
//! Secrets are write-only: they are validated, sealed with the master key
//! and stored; nothing here returns them, and they are never logged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use entity::app;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set, SqlErr,
};
use secrecy::{ExposeSecret, SecretString};

use crate::crypto::{CryptoError, MasterKey};
use crate::domain::{AppId, AppKind};

/// Why an app could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A field is invalid; the message says which and why.
    #[error("{0}")]
    Invalid(String),
    /// The appid is registered already.
    #[error("app {0} is already registered")]
    Duplicate(String),
    /// Sealing a secret failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// A new app as an operator describes it.
#[derive(Debug)]
pub struct NewApp {
    /// The appid.
    pub appid: AppId,
    /// The app's kind.
    pub kind: AppKind,
    /// A display name.
    pub name: String,
    /// The app secret (AppSecret).
    pub secret: SecretString,
    /// Official accounts: the callback token configured in the WeChat console.
    pub callback_token: Option<SecretString>,
    /// Official accounts: the 43-character EncodingAESKey.
    pub aes_key: Option<SecretString>,
    /// Freshness TTL of this app's profiles in seconds (`None`: the server's default).
    pub freshness_ttl_secs: Option<i64>,
}

/// The shortest freshness TTL an app may have (refreshing more often than
/// this would spend WeChat quota for nothing).
pub const MIN_TTL_SECS: i64 = 60;

fn check_ttl(seconds: Option<i64>) -> Result<(), AppError> {
    match seconds {
        Some(s) if s < MIN_TTL_SECS => Err(AppError::Invalid(format!(
            "the freshness TTL must be at least {MIN_TTL_SECS} seconds"
        ))),
        _ => Ok(()),
    }
}

/// The associated data under which an app's secret of `field` is sealed.
pub fn seal_purpose(field: &str, appid: &str) -> String {
    format!("app.{field}:{appid}")
}

impl NewApp {
    fn validate(&self) -> Result<(), AppError> {
        check_ttl(self.freshness_ttl_secs)?;
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(AppError::Invalid(
                "name must be 1 to 100 characters".to_owned(),
            ));
        }
        let secret = self.secret.expose_secret();
        if secret.is_empty() || secret.len() > 128 || secret.trim() != secret {
            return Err(AppError::Invalid(
                "secret must be 1 to 128 characters without surrounding white space".to_owned(),
            ));
        }
        if self.kind != AppKind::OfficialAccount
            && (self.callback_token.is_some() || self.aes_key.is_some())
        {
            return Err(AppError::Invalid(
                "only official accounts have a callback token and EncodingAESKey".to_owned(),
            ));
        }
        if let Some(token) = &self.callback_token {
            let token = token.expose_secret();
            if !(3..=32).contains(&token.len()) || !token.chars().all(|c| c.is_ascii_alphanumeric())
            {
                return Err(AppError::Invalid(
                    "callback token must be 3 to 32 letters or digits".to_owned(),
                ));
            }
        }
        if let Some(key) = &self.aes_key
            && crate::crypto::decode_encoding_aes_key(key.expose_secret()).is_none()
        {
            return Err(AppError::Invalid(
                "EncodingAESKey must be the 43 base64 characters shown in the WeChat console"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

/// Registers an app, sealing its secrets.
pub async fn register<C: ConnectionTrait>(
    db: &C,
    key: &MasterKey,
    new: NewApp,
    now: DateTime<Utc>,
) -> Result<app::Model, AppError> {
    new.validate()?;
    let appid = new.appid.as_str();
    let seal = |field: &str, value: &SecretString| {
        key.seal(&seal_purpose(field, appid), value.expose_secret())
    };
    let model = app::ActiveModel {
        appid: Set(appid.to_owned()),
        kind: Set(new.kind.as_str().to_owned()),
        name: Set(new.name.trim().to_owned()),
        secret_sealed: Set(seal("secret", &new.secret)?),
        callback_token_sealed: Set(new
            .callback_token
            .as_ref()
            .map(|t| seal("callback_token", t))
            .transpose()?),
        aes_key_sealed: Set(new
            .aes_key
            .as_ref()
            .map(|k| seal("aes_key", k))
            .transpose()?),
        aes_key_previous_sealed: Set(None),
        freshness_ttl_secs: Set(new.freshness_ttl_secs),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    match model.insert(db).await {
        Ok(model) => Ok(model),
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            Err(AppError::Duplicate(appid.to_owned()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Sets an app's freshness TTL.
pub async fn set_freshness_ttl<C: ConnectionTrait>(
    db: &C,
    appid: &AppId,
    seconds: Option<i64>,
    now: DateTime<Utc>,
) -> Result<app::Model, AppError> {
    check_ttl(seconds)?;
    let app = find(db, appid)
        .await?
        .ok_or_else(|| AppError::Invalid(format!("app {appid} is not registered")))?;
    let mut active: app::ActiveModel = app.into();
    active.freshness_ttl_secs = Set(seconds);
    active.updated_at = Set(now);
    Ok(active.update(db).await?)
}

/// Every app, in registration order.
pub async fn list<C: ConnectionTrait>(db: &C) -> Result<Vec<app::Model>, DbErr> {
    app::Entity::find()
        .order_by_asc(app::Column::Id)
        .all(db)
        .await
}

/// One app by appid.
pub async fn find<C: ConnectionTrait>(db: &C, appid: &AppId) -> Result<Option<app::Model>, DbErr> {
    app::Entity::find()
        .filter(app::Column::Appid.eq(appid.as_str()))
        .one(db)
        .await
}

/// The kind of a stored app (unknown kinds from a newer version read as official accounts' peers: `None`).
pub fn kind_of(model: &app::Model) -> Option<AppKind> {
    model.kind.parse().ok()
}

/// How long a process trusts its in-memory copy of the apps: the longest
/// another instance's change (a new freshness TTL) takes to show here.
pub const CACHE_MAX_AGE: Duration = Duration::from_secs(30);

/// Every registered app, by id.
pub type AppsById = HashMap<i64, app::Model>;

/// The registered apps, kept in memory.
///
/// Apps are few, change rarely, and nearly every read needs them (their kind
/// and freshness TTL), so reads take them from here instead of the database.
/// A copy is reloaded when it is older than [`CACHE_MAX_AGE`], when an app
/// asked for is not in it (registered by another instance), and after this
/// process changes an app. Concurrent reloads are one statement.
#[derive(Debug, Default)]
pub struct AppCache {
    copy: RwLock<Option<Loaded>>,
    /// Bumped by every change; a reload that started before one is not kept.
    generation: AtomicU64,
    loading: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone)]
struct Loaded {
    loaded: Instant,
    apps: Arc<AppsById>,
}

impl AppCache {
    /// The apps, from memory unless the copy is too old.
    pub async fn get<C: ConnectionTrait>(&self, db: &C) -> Result<Arc<AppsById>, DbErr> {
        let asked = Instant::now();
        match self.current() {
            Some(copy) if asked.duration_since(copy.loaded) < CACHE_MAX_AGE => Ok(copy.apps),
            _ => self.reload(db, asked).await,
        }
    }

    /// The apps, including every one of `ids` that is registered: reloaded
    /// once when the copy lacks one.
    pub async fn covering<C: ConnectionTrait>(
        &self,
        db: &C,
        ids: impl IntoIterator<Item = i64>,
    ) -> Result<Arc<AppsById>, DbErr> {
        let apps = self.get(db).await?;
        if ids.into_iter().all(|id| apps.contains_key(&id)) {
            return Ok(apps);
        }
        self.reload(db, Instant::now()).await
    }

    /// One app by appid (reloaded once when the copy does not have it).
    pub async fn by_appid<C: ConnectionTrait>(
        &self,
        db: &C,
        appid: &AppId,
    ) -> Result<Option<app::Model>, DbErr> {
        let find = |apps: &AppsById| apps.values().find(|a| a.appid == appid.as_str()).cloned();
        if let Some(found) = find(&*self.get(db).await?) {
            return Ok(Some(found));
        }
        Ok(find(&*self.reload(db, Instant::now()).await?))
    }

    /// Forgets the copy: an app changed.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        *self.copy.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn current(&self) -> Option<Loaded> {
        self.copy
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Loads the apps, unless a load that began after `asked` has landed meanwhile.
    async fn reload<C: ConnectionTrait>(
        &self,
        db: &C,
        asked: Instant,
    ) -> Result<Arc<AppsById>, DbErr> {
        let _one_at_a_time = self.loading.lock().await;
        if let Some(copy) = self.current().filter(|c| c.loaded >= asked) {
            return Ok(copy.apps);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let loaded = Instant::now();
        let apps: AppsById = app::Entity::find()
            .all(db)
            .await?
            .into_iter()
            .map(|a| (a.id, a))
            .collect();
        let apps = Arc::new(apps);
        let mut copy = self.copy.write().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::Acquire) == generation {
            *copy = Some(Loaded {
                loaded,
                apps: apps.clone(),
            });
        }
        Ok(apps)
    }
}
