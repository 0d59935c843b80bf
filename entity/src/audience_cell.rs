//! One cell of the audience counts, kept as follows and links change.

use sea_orm::entity::prelude::*;

/// With `app_id` 0: how many persons follow exactly the official accounts
/// whose bits are set in `mask`. With an app's id (and that app's bit as
/// `mask`): how many of the app's followers are linked to no person.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audience_cell")]
pub struct Model {
    /// 0 for persons by mask; an app's id for its unlinked followers.
    #[sea_orm(primary_key, auto_increment = false)]
    pub app_id: i64,
    /// The mask of official-account bits.
    #[sea_orm(primary_key, auto_increment = false)]
    pub mask: i64,
    /// The count.
    pub count: i64,
}

/// No relations: `app_id` 0 names no app.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
