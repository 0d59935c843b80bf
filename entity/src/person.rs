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
    /// The bits (`app.audience_bit`) of the official accounts the person
    /// follows through their linked accounts; kept by the identity service
    /// in the transaction that changes a follow or a link.
    pub audience_mask: i64,
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
