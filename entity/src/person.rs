//! A person: the human behind accounts, keyed by UnionID.

use sea_orm::entity::prelude::*;

/// One person, created the first time any account reports their UnionID.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "person")]
pub struct Model {
    /// Surrogate key; also the keyset-pagination order.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// WeChat UnionID, unique.
    #[sea_orm(unique)]
    pub unionid: String,
    /// When the person was first seen.
    pub created_at: DateTimeUtc,
    /// When the person or one of their accounts last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of a person.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The accounts linked to this person.
    #[sea_orm(has_many = "super::account::Entity")]
    Account,
}

impl Related<super::account::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Account.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
