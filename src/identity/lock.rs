//! Accounts and persons that exist, locked, before a call changes them.
//!
//! Stored accounts are read locked (`FOR UPDATE` on PostgreSQL), in key
//! order; persons are inserted with an insert-or-get under the unique
//! UnionID constraint, in UnionID order, so that concurrent discoveries of
//! one UnionID make one person and concurrent calls take their locks in one
//! order. (New accounts are inserted whole afterwards, by the caller: a
//! concurrent call inserting the same account makes one of them fail on the
//! unique key, and that one is written again.)

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use entity::{account, person};
use sea_orm::sea_query::Query;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Set,
};

/// Rows per bulk statement (well under SQLite's bound-parameter limit).
pub(super) const CHUNK: usize = 500;

/// `(app_id, openid) IN keys`, as one condition per app.
pub(crate) fn account_keys(keys: &[(i64, &str)]) -> Condition {
    let mut by_app: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for (app_id, openid) in keys {
        by_app.entry(*app_id).or_default().push(openid);
    }
    by_app
        .into_iter()
        .fold(Condition::any(), |any, (app_id, openids)| {
            any.add(
                Condition::all()
                    .add(account::Column::AppId.eq(app_id))
                    .add(account::Column::Openid.is_in(openids)),
            )
        })
}

/// Reads the accounts of `keys` locked (`FOR UPDATE` on PostgreSQL, in key order).
async fn locked_accounts<C: ConnectionTrait>(
    txn: &C,
    keys: &[(i64, &str)],
) -> Result<Vec<account::Model>, DbErr> {
    account::Entity::find()
        .filter(account_keys(keys))
        .order_by_asc(account::Column::AppId)
        .order_by_asc(account::Column::Openid)
        .lock_exclusive()
        .all(txn)
        .await
}

/// The stored accounts of `keys`, locked (`FOR UPDATE` on PostgreSQL, in
/// key order), by key. Accounts that do not exist are absent: the call
/// inserts them whole once it knows their values.
pub(crate) async fn existing_accounts<C: ConnectionTrait>(
    txn: &C,
    keys: &[(i64, &str)],
) -> Result<HashMap<(i64, String), account::Model>, DbErr> {
    let mut all = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(CHUNK) {
        for model in locked_accounts(txn, chunk).await? {
            all.insert((model.app_id, model.openid.clone()), model);
        }
    }
    Ok(all)
}

/// The accounts linked to `persons` in `apps`, by `(person id, app id)`
/// (identity rule 6: at most one each).
pub(super) async fn held_seats<C: ConnectionTrait>(
    txn: &C,
    persons: &BTreeSet<i64>,
    apps: &BTreeSet<i64>,
) -> Result<HashMap<(i64, i64), i64>, DbErr> {
    let mut seats = HashMap::new();
    let persons: Vec<i64> = persons.iter().copied().collect();
    for chunk in persons.chunks(CHUNK) {
        let linked = account::Entity::find()
            .select_only()
            .columns([
                account::Column::PersonId,
                account::Column::AppId,
                account::Column::Id,
            ])
            .filter(account::Column::PersonId.is_in(chunk.iter().copied()))
            .filter(account::Column::AppId.is_in(apps.iter().copied()))
            .into_tuple::<(i64, i64, i64)>()
            .all(txn)
            .await?;
        seats.extend(
            linked
                .into_iter()
                .map(|(person, app, account)| ((person, app), account)),
        );
    }
    Ok(seats)
}

/// Creates the persons that do not exist yet, each with its audience mask
/// in `unionids`, and returns all of them by UnionID, with whether this
/// call created each.
pub(super) async fn insert_or_get_persons<C: ConnectionTrait>(
    txn: &C,
    unionids: &BTreeMap<&str, i64>,
    now: DateTime<Utc>,
) -> Result<HashMap<String, (i64, bool)>, DbErr> {
    let mut all = HashMap::with_capacity(unionids.len());
    let masks = unionids;
    let unionids: Vec<&str> = unionids.keys().copied().collect();
    let find = |ids: Vec<&str>| {
        person::Entity::find()
            .select_only()
            .columns([person::Column::Unionid, person::Column::Id])
            .filter(person::Column::Unionid.is_in(ids))
            .order_by_asc(person::Column::Unionid)
            .into_tuple::<(String, i64)>()
            .all(txn)
    };
    for chunk in unionids.chunks(CHUNK) {
        for (unionid, id) in find(chunk.to_vec()).await? {
            all.insert(unionid, (id, false));
        }
        let missing: Vec<&str> = chunk
            .iter()
            .copied()
            .filter(|u| !all.contains_key(*u))
            .collect();
        if missing.is_empty() {
            continue;
        }
        // Sorted, so concurrent calls take the unique-index locks in one order.
        let rows = missing.iter().map(|unionid| person::ActiveModel {
            unionid: Set((*unionid).to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
            audience_mask: Set(masks.get(unionid).copied().unwrap_or(0)),
            ..Default::default()
        });
        let mut insert =
            person::Entity::insert_many(rows).on_conflict_do_nothing_on([person::Column::Unionid]);
        let statement = QueryTrait::query(&mut insert)
            .returning(Query::returning().columns([person::Column::Unionid, person::Column::Id]))
            .to_owned();
        let mut created = 0;
        for row in txn.query_all(&statement).await? {
            let (unionid, id): (String, i64) = row.try_get_many_by_index()?;
            all.insert(unionid, (id, true));
            created += 1;
        }
        if created == missing.len() {
            continue;
        }
        // Some were created by a concurrent call first (which this one
        // then waited for): read back.
        let others: Vec<&str> = missing
            .into_iter()
            .filter(|u| !all.contains_key(*u))
            .collect();
        for (unionid, id) in find(others).await? {
            all.insert(unionid, (id, false));
        }
    }
    Ok(all)
}
