//! A WeChat app bound to the company's open platform account.

use sea_orm::entity::prelude::*;

/// One registered WeChat app (official account, mini program, mobile app or website).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "app")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// WeChat appid (`wx…`), unique.
    #[sea_orm(unique)]
    pub appid: String,
    /// `OFFICIAL_ACCOUNT`, `MINI_PROGRAM`, `MOBILE_APP` or `WEBSITE`.
    pub kind: String,
    /// Display name chosen by the operator.
    pub name: String,
    /// App secret, sealed with the master key.
    pub secret_sealed: String,
    /// Callback token (official accounts), sealed.
    pub callback_token_sealed: Option<String>,
    /// Current EncodingAESKey (official accounts), sealed.
    pub aes_key_sealed: Option<String>,
    /// Previous EncodingAESKey kept for key rotation, sealed.
    pub aes_key_previous_sealed: Option<String>,
    /// Freshness TTL of this app's profiles in seconds; `None` uses the global default.
    pub freshness_ttl_secs: Option<i64>,
    /// The official account's bit in a person's audience mask (0..=62, in
    /// registration order); `None` for other kinds and for official accounts
    /// past the 63rd, which the audience statistics leave out.
    pub audience_bit: Option<i16>,
    /// When the app was registered.
    pub created_at: DateTimeUtc,
    /// When the app was last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of an app.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The accounts this app sees.
    #[sea_orm(has_many = "super::account::Entity")]
    Account,
}

impl Related<super::account::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Account.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
