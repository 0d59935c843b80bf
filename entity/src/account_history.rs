//! The append-only change history of accounts.

use sea_orm::entity::prelude::*;

/// One changed field of one account: what it was, what it became, and which source said so.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "account_history")]
pub struct Model {
    /// Surrogate key, in order of change.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The changed account.
    pub account_id: i64,
    /// Field name (`nickname`, `unionid`, `person_id`, …).
    pub field: String,
    /// Value before the change; `None` when it was empty.
    pub old_value: Option<String>,
    /// Value after the change; `None` when it became empty.
    pub new_value: Option<String>,
    /// Source of the change (`IMPORT`, `USER_INFO`, …).
    pub source: String,
    /// When the change was made.
    pub changed_at: DateTimeUtc,
}

/// Relations of a history row.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The changed account.
    #[sea_orm(
        belongs_to = "super::account::Entity",
        from = "Column::AccountId",
        to = "super::account::Column::Id"
    )]
    Account,
}

impl Related<super::account::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Account.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
