//! The apps service: registering WeChat apps, reading them back, and
//! opening their secrets for the WeChat client.
//!
//! A registration is checked field by field, every wrong field reported at
//! once ([`input`]). Secrets are write-only: they are validated, sealed with the master key
//! and stored; nothing here returns them to a caller other than the WeChat
//! client's credentials, and they are never logged. The registered apps are
//! also kept in memory ([`cache`]); every change made through [`Apps`]
//! refreshes that copy.

pub mod cache;
mod input;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use entity::app;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, SqlErr,
};
use secrecy::{ExposeSecret, SecretString};

pub use cache::{AppCache, AppsById, CACHE_MAX_AGE};
pub use input::{APP_SECRET_LEN, AppField, AppInput, FieldProblem, FieldProblems, is_app_secret};

use crate::clock::Clock;
use crate::crypto::{CryptoError, MasterKey};
use crate::domain::{AppId, AppKind};
use crate::wechat::AppCredentials;

/// Why an app could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A setting is invalid; the message says which and why.
    #[error("{0}")]
    Invalid(String),
    /// Fields of a registration are invalid: every one of them, each with why.
    #[error("{0}")]
    InvalidFields(FieldProblems),
    /// The appid is registered already.
    #[error("app {0} is already registered")]
    Duplicate(String),
    /// No app has this appid.
    #[error("app {0} is not registered")]
    NotRegistered(AppId),
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

/// The apps service: a cheap handle on the database, the master key, the
/// clock and the in-memory copy of the apps.
#[derive(Clone, Debug)]
pub struct Apps(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    db: DatabaseConnection,
    key: MasterKey,
    clock: Clock,
    cache: AppCache,
}

impl Apps {
    /// The service over `db`, sealing with `key` and reading time from `clock`.
    pub fn new(db: DatabaseConnection, key: MasterKey, clock: Clock) -> Self {
        let cache = AppCache::new(clock.clone());
        Self(Arc::new(Inner {
            db,
            key,
            clock,
            cache,
        }))
    }

    /// Registers an app, sealing its secrets.
    #[tracing::instrument(name = "apps.register", skip_all, fields(app.appid = %new.appid, app.kind = %new.kind))]
    pub async fn register(&self, new: NewApp) -> Result<app::Model, AppError> {
        let model = insert(&self.0.db, &self.0.key, new, self.0.clock.now()).await?;
        self.0.cache.invalidate();
        tracing::info!("app registered");
        Ok(model)
    }

    /// Sets an app's freshness TTL (`None`: the server's default).
    #[tracing::instrument(name = "apps.set_freshness_ttl", skip_all, fields(app.appid = %appid))]
    pub async fn set_freshness_ttl(
        &self,
        appid: &AppId,
        seconds: Option<i64>,
    ) -> Result<app::Model, AppError> {
        check_ttl(seconds)?;
        let app = self
            .find(appid)
            .await?
            .ok_or_else(|| AppError::NotRegistered(appid.clone()))?;
        let mut active: app::ActiveModel = app.into();
        active.freshness_ttl_secs = Set(seconds);
        active.updated_at = Set(self.0.clock.now());
        let model = active.update(&self.0.db).await?;
        self.0.cache.invalidate();
        Ok(model)
    }

    /// Every app, in registration order, as stored.
    pub async fn list(&self) -> Result<Vec<app::Model>, DbErr> {
        list(&self.0.db).await
    }

    /// One app by appid, as stored.
    pub async fn find(&self, appid: &AppId) -> Result<Option<app::Model>, DbErr> {
        app::Entity::find()
            .filter(app::Column::Appid.eq(appid.as_str()))
            .one(&self.0.db)
            .await
    }

    /// Every app by id, from memory ([`AppCache::get`]).
    pub async fn all(&self) -> Result<Arc<AppsById>, DbErr> {
        self.0.cache.get(&self.0.db).await
    }

    /// The apps, including every one of `ids` that is registered ([`AppCache::covering`]).
    pub async fn covering(
        &self,
        ids: impl IntoIterator<Item = i64>,
    ) -> Result<Arc<AppsById>, DbErr> {
        self.0.cache.covering(&self.0.db, ids).await
    }

    /// One app by appid, from memory ([`AppCache::by_appid`]).
    pub async fn by_appid(&self, appid: &AppId) -> Result<Option<app::Model>, DbErr> {
        self.0.cache.by_appid(&self.0.db, appid).await
    }

    /// Apps by appid, in order ([`AppCache::by_appids`]): one reload at most.
    pub async fn by_appids(&self, appids: &[&AppId]) -> Result<Vec<Option<app::Model>>, DbErr> {
        self.0.cache.by_appids(&self.0.db, appids).await
    }

    /// One app by appid, for a caller without an API key
    /// ([`AppCache::by_appid_unkeyed`]): misses reload rarely.
    pub async fn by_appid_unkeyed(&self, appid: &AppId) -> Result<Option<app::Model>, DbErr> {
        self.0.cache.by_appid_unkeyed(&self.0.db, appid).await
    }

    /// The credentials the WeChat client needs for `app` (its secret, opened).
    pub fn credentials(&self, app: &app::Model) -> Result<AppCredentials, CryptoError> {
        let secret = self
            .0
            .key
            .open(&seal_purpose("secret", &app.appid), &app.secret_sealed)?;
        Ok(AppCredentials {
            appid: app.appid.clone(),
            secret,
        })
    }
}

impl Apps {
    /// The callback token of `app`, opened; `None` when none is configured.
    pub fn callback_token(&self, app: &app::Model) -> Result<Option<SecretString>, CryptoError> {
        self.open_optional(app, "callback_token", app.callback_token_sealed.as_deref())
    }

    /// The EncodingAESKeys of `app`, opened: the current one (`None` when
    /// none is set) and the one it replaced, kept for pushes WeChat sealed
    /// before the change reached it ([`Self::rotate_aes_key`]).
    pub fn aes_keys(&self, app: &app::Model) -> Result<AesKeys, CryptoError> {
        Ok(AesKeys {
            current: self.open_optional(app, "aes_key", app.aes_key_sealed.as_deref())?,
            previous: self.open_optional(
                app,
                "aes_key_previous",
                app.aes_key_previous_sealed.as_deref(),
            )?,
        })
    }

    /// Sets a new EncodingAESKey for the official account `appid` and keeps
    /// the current one as the previous (the one before is forgotten):
    /// pushes sealed with either open until the next change. Set it here
    /// first, then in the WeChat console.
    #[tracing::instrument(name = "apps.rotate_aes_key", skip_all, fields(app.appid = %appid))]
    pub async fn rotate_aes_key(
        &self,
        appid: &AppId,
        new_key: SecretString,
    ) -> Result<app::Model, AppError> {
        if crate::crypto::decode_encoding_aes_key(new_key.expose_secret()).is_none() {
            return Err(AppError::Invalid(
                "encodingAesKey must be the EncodingAESKey from the WeChat console: 43 letters and digits".into(),
            ));
        }
        let app = self
            .find(appid)
            .await?
            .ok_or_else(|| AppError::NotRegistered(appid.clone()))?;
        if kind_of(&app) != Some(AppKind::OfficialAccount) {
            return Err(AppError::Invalid(
                "only official accounts receive pushes and have an EncodingAESKey".into(),
            ));
        }
        let current = self.aes_keys(&app)?.current;
        if current
            .as_ref()
            .is_some_and(|c| c.expose_secret() == new_key.expose_secret())
        {
            return Err(AppError::Invalid(
                "this EncodingAESKey is the current one already".into(),
            ));
        }
        let master = &self.0.key;
        let previous = current
            .map(|c| {
                master.seal(
                    &seal_purpose("aes_key_previous", &app.appid),
                    c.expose_secret(),
                )
            })
            .transpose()?;
        let sealed = master.seal(
            &seal_purpose("aes_key", &app.appid),
            new_key.expose_secret(),
        )?;
        // Only if no other change came first: the sealed form read is unique.
        let changed = app::Entity::update_many()
            .col_expr(app::Column::AesKeySealed, Expr::value(Some(sealed)))
            .col_expr(app::Column::AesKeyPreviousSealed, Expr::value(previous))
            .col_expr(app::Column::UpdatedAt, Expr::value(self.0.clock.now()))
            .filter(app::Column::Id.eq(app.id))
            .filter(match &app.aes_key_sealed {
                Some(read) => app::Column::AesKeySealed.eq(read.as_str()),
                None => app::Column::AesKeySealed.is_null(),
            })
            .exec(&self.0.db)
            .await?;
        if changed.rows_affected == 0 {
            return Err(AppError::Invalid(
                "the app's EncodingAESKey was changed at the same time; read it and try again"
                    .into(),
            ));
        }
        self.0.cache.invalidate();
        tracing::info!("EncodingAESKey changed; the previous one still opens pushes");
        self.find(appid)
            .await?
            .ok_or_else(|| AppError::NotRegistered(appid.clone()))
    }

    fn open_optional(
        &self,
        app: &app::Model,
        field: &str,
        sealed: Option<&str>,
    ) -> Result<Option<SecretString>, CryptoError> {
        sealed
            .map(|sealed| self.0.key.open(&seal_purpose(field, &app.appid), sealed))
            .transpose()
    }
}

/// An official account's EncodingAESKeys, opened ([`Apps::aes_keys`]).
#[derive(Debug, Default)]
pub struct AesKeys {
    /// The key set now; `None` when the app has none.
    pub current: Option<SecretString>,
    /// The key it replaced, when it was changed with [`Apps::rotate_aes_key`].
    pub previous: Option<SecretString>,
}

/// Every app, in registration order, as stored (listing needs no master key).
pub async fn list<C: ConnectionTrait>(db: &C) -> Result<Vec<app::Model>, DbErr> {
    app::Entity::find()
        .order_by_asc(app::Column::Id)
        .all(db)
        .await
}

/// Re-seals every app's secrets from `old` to `new` (a master-key
/// rotation); returns how many values were re-sealed.
pub async fn reseal_all<C: ConnectionTrait>(
    db: &C,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<usize, AppError> {
    let mut count = 0;
    for row in list(db).await? {
        let appid = row.appid.clone();
        let reseal =
            |field: &str, sealed: &str| old.reseal(new, &seal_purpose(field, &appid), sealed);
        let optional = |field: &str, sealed: &Option<String>| {
            sealed.as_deref().map(|s| reseal(field, s)).transpose()
        };
        let secret = reseal("secret", &row.secret_sealed)?;
        let callback_token = optional("callback_token", &row.callback_token_sealed)?;
        let aes_key = optional("aes_key", &row.aes_key_sealed)?;
        let aes_key_previous = optional("aes_key_previous", &row.aes_key_previous_sealed)?;
        count += 1 + [&callback_token, &aes_key, &aes_key_previous]
            .iter()
            .filter(|v| v.is_some())
            .count();
        let mut active: app::ActiveModel = row.into();
        active.secret_sealed = Set(secret);
        active.callback_token_sealed = Set(callback_token);
        active.aes_key_sealed = Set(aes_key);
        active.aes_key_previous_sealed = Set(aes_key_previous);
        active.update(db).await?;
    }
    Ok(count)
}

/// Inserts an app, sealing its secrets.
async fn insert<C: ConnectionTrait>(
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
    let mut model = app::ActiveModel {
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
    // An official account takes the lowest free audience bit. Two
    // registrations at once may pick the same one: the unique index refuses
    // the second, which picks again.
    let official = new.kind == AppKind::OfficialAccount;
    let mut attempt = 0;
    loop {
        attempt += 1;
        if official {
            model.audience_bit = Set(free_audience_bit(db).await?);
        }
        match model.clone().insert(db).await {
            Ok(model) => return Ok(model),
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                let taken = app::Entity::find()
                    .filter(app::Column::Appid.eq(appid))
                    .one(db)
                    .await?
                    .is_some();
                if taken || !official || attempt >= 5 {
                    return Err(AppError::Duplicate(appid.to_owned()));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Most official accounts the audience statistics count (a person's mask is
/// a 63-bit number); later ones are registered and synced, and left out of
/// the statistics.
pub const MAX_AUDIENCE_APPS: i16 = 63;

/// The lowest audience bit no app holds, if any is left.
async fn free_audience_bit<C: ConnectionTrait>(db: &C) -> Result<Option<i16>, DbErr> {
    let taken: BTreeSet<i16> = app::Entity::find()
        .select_only()
        .column(app::Column::AudienceBit)
        .filter(app::Column::AudienceBit.is_not_null())
        .into_tuple::<Option<i16>>()
        .all(db)
        .await?
        .into_iter()
        .flatten()
        .collect();
    Ok((0..MAX_AUDIENCE_APPS).find(|bit| !taken.contains(bit)))
}

/// The kind of a stored app; `None` for a kind this version does not know (written by a newer one).
pub fn kind_of(model: &app::Model) -> Option<AppKind> {
    model.kind.parse().ok()
}
