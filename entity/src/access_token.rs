//! The access token of each app, shared by every instance on one database.

use sea_orm::entity::prelude::*;

/// The current access token of one app.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "access_token")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The app's appid.
    #[sea_orm(unique)]
    pub appid: String,
    /// The token, sealed with the master key.
    pub token_sealed: String,
    /// SHA-256 of the token (hex), to expire exactly the token that failed.
    pub fingerprint: String,
    /// When the token stops being valid.
    pub expires_at: DateTimeUtc,
    /// When it was fetched.
    pub fetched_at: DateTimeUtc,
}

/// No relations: tokens are keyed by appid.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
