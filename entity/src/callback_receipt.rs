//! A push from WeChat already applied: its retries change nothing.

use sea_orm::entity::prelude::*;

/// One applied push, kept until it expires.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "callback_receipt")]
pub struct Model {
    /// The app the push was for.
    #[sea_orm(primary_key, auto_increment = false)]
    pub app_id: i64,
    /// SHA-256 (hex) of the push's deduplication key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// When it was applied.
    pub received_at: DateTimeUtc,
    /// When it may be forgotten.
    pub expires_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
/// No relations are navigated from a receipt.
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
