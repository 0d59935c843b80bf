//! The audience cells as they stood at the end of each day they changed.

use sea_orm::entity::prelude::*;

/// The value of one `audience_cell` at the end of `day`; a cell's value on a
/// day with no row is that of its latest earlier row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audience_day")]
pub struct Model {
    /// The day, `YYYY-MM-DD` in China Standard Time.
    #[sea_orm(primary_key, auto_increment = false)]
    pub day: String,
    /// As `audience_cell.app_id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub app_id: i64,
    /// As `audience_cell.mask`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub mask: i64,
    /// The count at the end of the day.
    pub count: i64,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
