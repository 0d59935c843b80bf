//! The account history: what changed on an account, when, from which source.
//!
//! An account's first values are not history: they are the account as
//! created, with its `created_at` and each value's source. A UnionID
//! refused on creation is recorded all the same.

use chrono::{DateTime, Utc};
use entity::account_history;
use sea_orm::{ActiveValue, ConnectionTrait, DbErr, EntityTrait, Set};

use crate::domain::ProfileSource;

/// One change to record in the account history.
#[derive(Debug)]
pub(super) struct Change {
    /// The field (column) that changed.
    pub(super) field: &'static str,
    /// Its value before, as text.
    pub(super) old: Option<String>,
    /// Its value after, as text.
    pub(super) new: Option<String>,
}

/// Appends changes to the account history, a few thousand rows per statement.
pub(super) async fn record<C: ConnectionTrait>(
    txn: &C,
    changes: Vec<(i64, Change)>,
    source: ProfileSource,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    for chunk in changes.chunks(2000) {
        let rows = chunk
            .iter()
            .map(|(account_id, c)| account_history::ActiveModel {
                id: ActiveValue::NotSet,
                account_id: Set(*account_id),
                field: Set(c.field.to_owned()),
                old_value: Set(c.old.clone()),
                new_value: Set(c.new.clone()),
                source: Set(source.as_str().to_owned()),
                changed_at: Set(now),
            });
        account_history::Entity::insert_many(rows)
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}
