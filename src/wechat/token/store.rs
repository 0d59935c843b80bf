//! The database side of the token cache: sharing one token between instances.
//!
//! Instances that share a database must not each fetch their own token, or
//! `cgi-bin/token` would invalidate the others'. So the token is kept in the
//! `access_token` table, sealed with the master key, and a renewal re-reads
//! the row (under a per-app lock on PostgreSQL) before it asks WeChat.

use entity::access_token;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter, Set,
    Statement,
};
use secrecy::ExposeSecret;

use super::{AccessToken, FetchFuture, TokenManager, renew_at};
use crate::crypto::MasterKey;
use crate::store;
use crate::wechat::error::WechatError;

/// Where tokens are shared between instances.
#[derive(Clone, Debug)]
pub struct TokenStore {
    /// The database.
    pub db: DatabaseConnection,
    /// The key that seals tokens at rest.
    pub key: MasterKey,
}

impl TokenManager {
    /// Re-reads the shared row and fetches only if it is due too.
    ///
    /// On PostgreSQL the re-read and the fetch happen under a
    /// transaction-scoped advisory lock per app, so instances take turns and
    /// the second finds the first's token. SQLite has one writer lock for the
    /// whole database, which must not be held across an HTTP call; it serves
    /// one instance, whose fetches the in-process single flight already
    /// serialises.
    pub(super) async fn renew_shared<'a>(
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
}

impl TokenStore {
    /// Drops every shared token (a master-key rotation: a token sealed under
    /// the old key could not be opened; the next call fetches a fresh one).
    pub async fn clear<C: ConnectionTrait>(db: &C) -> Result<u64, sea_orm::DbErr> {
        Ok(access_token::Entity::delete_many()
            .exec(db)
            .await?
            .rows_affected)
    }
}

fn purpose(appid: &str) -> String {
    format!("access_token:{appid}")
}
