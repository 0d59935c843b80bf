//! API keys. The key itself is never stored: only its SHA-256.

use sea_orm::entity::prelude::*;

/// One API key.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_key")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The key's public identifier (`u360_…`), the part before its secret;
    /// shown in listings and used to revoke it.
    #[sea_orm(unique)]
    pub key_id: String,
    /// A name for people: who or what uses the key.
    pub name: String,
    /// SHA-256 of the whole key (hex).
    pub hash: String,
    /// The scopes granted, comma-separated (`read,pii,stats,write,admin`).
    pub scopes: String,
    /// Requests per second refilled into the key's bucket; `None`: the server default.
    pub rate_per_sec: Option<i32>,
    /// The bucket's size (the largest burst); `None`: the server default.
    pub burst: Option<i32>,
    /// Requests in flight at once; `None`: the server default.
    pub max_concurrent: Option<i32>,
    /// When the key was created.
    pub created_at: DateTimeUtc,
    /// When the key was last used (recorded periodically, not per request).
    pub last_used_at: Option<DateTimeUtc>,
    /// When the key was revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<DateTimeUtc>,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
