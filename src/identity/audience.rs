//! The audience counts, kept in the transaction that changes a follow or a
//! link, so that they are exact under any interleaving of writers.
//!
//! Each official account has a bit (`app.audience_bit`). A person's mask is
//! the bits of the official accounts they follow through their linked
//! accounts; `audience_cell` counts persons per mask (row `app_id` 0), and
//! each app's followers linked to no person (row `app_id` = the app). The
//! day's value of every cell that changes is written to `audience_day`.
//!
//! Exactness: every call that changes an account's follow status or link
//! holds that account first (a stored one locked in the upsert's phase 1, a
//! new one by inserting it under its unique key), then locks the persons
//! concerned, in id order, and only then reads their accounts to compute
//! their masks. The last call to hold a person's lock has seen every
//! committed change to that person's accounts, and each call moves the
//! cells from the mask it found to the mask it computed, so the changes add
//! up. A person the call created is the exception: no other call can see it
//! before this one commits, and its only accounts are this call's, so its
//! mask is computed without locking or reading. Cells are changed in one
//! order (by key), so calls never deadlock on them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use entity::{account, app, audience_cell, audience_day, person};
use sea_orm::sea_query::{CaseStatement, Expr, ExprTrait, LockType, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::lock::CHUNK;
use crate::domain::Day;

/// The bit of each official account that has one, by app id.
pub(super) type Bits = HashMap<i64, i64>;

/// What a call changed that the audience counts depend on.
#[derive(Debug, Default)]
pub(super) struct AudienceChange {
    /// Persons whose mask may have changed.
    persons: BTreeSet<i64>,
    /// Change of each app's unlinked followers.
    unlinked: BTreeMap<i64, i64>,
}

impl AudienceChange {
    /// Notes one account written by the call, as it was and as it is.
    pub(super) fn note(&mut self, bits: &Bits, before: &account::Model, after: &account::Model) {
        if !bits.contains_key(&after.app_id) {
            return;
        }
        let follows = |m: &account::Model| m.subscribed == Some(true);
        let unlinked = |m: &account::Model| follows(m) && m.person_id.is_none();
        let delta = i64::from(unlinked(after)) - i64::from(unlinked(before));
        if delta != 0 {
            *self.unlinked.entry(after.app_id).or_default() += delta;
        }
        if follows(before) != follows(after) || before.person_id != after.person_id {
            self.persons.extend(before.person_id);
            self.persons.extend(after.person_id);
        }
    }
}

/// The bits of the official accounts that have one.
pub(super) async fn bits<C: ConnectionTrait>(txn: &C) -> Result<Bits, DbErr> {
    let rows: Vec<(i64, Option<i16>)> = app::Entity::find()
        .select_only()
        .columns([app::Column::Id, app::Column::AudienceBit])
        .filter(app::Column::AudienceBit.is_not_null())
        .into_tuple()
        .all(txn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, bit)| Some((id, i64::from(bit?))))
        .collect())
}

/// The persons a call created: their only accounts are the call's, so
/// their masks are known without reading.
pub(super) struct Created<'a> {
    /// Each one's mask, from the accounts the call linked to it.
    pub(super) masks: &'a HashMap<i64, i64>,
    /// The mask each was inserted with (expected from the rows, before
    /// they were applied).
    pub(super) started: &'a HashMap<i64, i64>,
}

/// Applies `change` to the persons' masks and the cells, at `now`.
/// `created`: the persons the call created; `touched`, the other persons
/// whose `updated_at` the caller sets. Returns the persons whose mask
/// moved (a created one only when it was inserted with another mask):
/// their `updated_at` is set here, in the same statement.
pub(super) async fn settle<C: ConnectionTrait>(
    txn: &C,
    bits: &Bits,
    change: AudienceChange,
    created: Created<'_>,
    touched: &BTreeSet<i64>,
    now: DateTime<Utc>,
) -> Result<BTreeSet<i64>, DbErr> {
    let day = Day::of(now);
    let mut cells: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    for (app_id, delta) in change.unlinked {
        if let Some(bit) = bits.get(&app_id) {
            *cells.entry((app_id, 1 << bit)).or_default() += delta;
        }
    }
    let mut moved: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (&id, &mask) in created.masks {
        if mask != 0 {
            *cells.entry((0, mask)).or_default() += 1;
        }
        if created.started.get(&id).copied().unwrap_or(0) != mask {
            moved.entry(mask).or_default().push(id);
        }
    }
    let persons: Vec<i64> = change
        .persons
        .into_iter()
        .filter(|id| !created.masks.contains_key(id))
        .collect();
    // Every other person the call changes is locked in id order, before
    // any of their accounts are read: those whose mask may change, and
    // those whose `updated_at` the caller sets next.
    let locked: BTreeSet<i64> = persons.iter().chain(touched).copied().collect();
    let locked: Vec<i64> = locked.into_iter().collect();
    for chunk in locked.chunks(CHUNK) {
        person::Entity::find()
            .select_only()
            .column(person::Column::Id)
            .filter(person::Column::Id.is_in(chunk.iter().copied()))
            .order_by_asc(person::Column::Id)
            // Not `FOR UPDATE`: linking an account to a person holds a key
            // share on the person (the foreign key), which `FOR UPDATE`
            // would wait for, and calls linking to one person would
            // deadlock. `FOR NO KEY UPDATE` still orders the callers.
            .lock(LockType::NoKeyUpdate)
            .into_tuple::<i64>()
            .all(txn)
            .await?;
    }
    for chunk in persons.chunks(CHUNK) {
        let found: Vec<(i64, i64)> = person::Entity::find()
            .select_only()
            .columns([person::Column::Id, person::Column::AudienceMask])
            .filter(person::Column::Id.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(txn)
            .await?;
        let followed: Vec<(Option<i64>, i64)> = account::Entity::find()
            .select_only()
            .columns([account::Column::PersonId, account::Column::AppId])
            .filter(account::Column::PersonId.is_in(chunk.iter().copied()))
            .filter(account::Column::Subscribed.eq(true))
            .filter(account::Column::AppId.is_in(bits.keys().copied()))
            .into_tuple()
            .all(txn)
            .await?;
        let mut masks: HashMap<i64, i64> = HashMap::with_capacity(chunk.len());
        for (person_id, app_id) in followed {
            if let (Some(person_id), Some(bit)) = (person_id, bits.get(&app_id)) {
                *masks.entry(person_id).or_default() |= 1 << bit;
            }
        }
        for (id, old) in found {
            let new = masks.get(&id).copied().unwrap_or(0);
            if new == old {
                continue;
            }
            moved.entry(new).or_default().push(id);
            if old != 0 {
                *cells.entry((0, old)).or_default() -= 1;
            }
            if new != 0 {
                *cells.entry((0, new)).or_default() += 1;
            }
        }
    }
    // Every person whose mask moved, one statement per chunk:
    // `SET audience_mask = CASE id WHEN … THEN … END`.
    let moved: Vec<(i64, i64)> = moved
        .into_iter()
        .flat_map(|(mask, ids)| ids.into_iter().map(move |id| (id, mask)))
        .collect();
    let updated: BTreeSet<i64> = moved.iter().map(|(id, _)| *id).collect();
    for chunk in moved.chunks(CHUNK) {
        let mut case = CaseStatement::new();
        for &(id, mask) in chunk {
            case = case.case(Expr::col(person::Column::Id).eq(id), Expr::value(mask));
        }
        person::Entity::update_many()
            .col_expr(person::Column::AudienceMask, case.into())
            .col_expr(person::Column::UpdatedAt, Expr::value(now))
            .filter(person::Column::Id.is_in(chunk.iter().map(|(id, _)| *id)))
            .exec(txn)
            .await?;
    }
    cells.retain(|_, delta| *delta != 0);
    if cells.is_empty() {
        return Ok(updated);
    }
    // Every cell in one statement, in key order (concurrent writers take
    // the cells' row locks in the same order), adding each delta to what
    // is stored and returning the new counts.
    let mut add = Query::insert();
    add.into_table(audience_cell::Entity)
        .columns([
            audience_cell::Column::AppId,
            audience_cell::Column::Mask,
            audience_cell::Column::Count,
        ])
        .on_conflict(
            OnConflict::columns([audience_cell::Column::AppId, audience_cell::Column::Mask])
                .value(
                    audience_cell::Column::Count,
                    Expr::col((audience_cell::Entity, audience_cell::Column::Count))
                        .add(Expr::cust("excluded.count")),
                )
                .to_owned(),
        )
        .returning(Query::returning().columns([
            audience_cell::Column::AppId,
            audience_cell::Column::Mask,
            audience_cell::Column::Count,
        ]));
    for ((app_id, mask), delta) in &cells {
        add.values_panic([(*app_id).into(), (*mask).into(), (*delta).into()]);
    }
    let mut days = Vec::with_capacity(cells.len());
    for row in txn.query_all(&add).await? {
        let (app_id, mask, count): (i64, i64, i64) = (
            row.try_get_by_index(0)?,
            row.try_get_by_index(1)?,
            row.try_get_by_index(2)?,
        );
        days.push(audience_day::ActiveModel {
            day: sea_orm::Set(day.to_string()),
            app_id: sea_orm::Set(app_id),
            mask: sea_orm::Set(mask),
            count: sea_orm::Set(count),
        });
    }
    if days.len() != cells.len() {
        return Err(DbErr::RecordNotFound("audience cell".to_owned()));
    }
    audience_day::Entity::insert_many(days)
        .on_conflict(
            OnConflict::columns([
                audience_day::Column::Day,
                audience_day::Column::AppId,
                audience_day::Column::Mask,
            ])
            .update_column(audience_day::Column::Count)
            .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(updated)
}
