//! [`upsert_accounts`]: every write to the identity graph, all or nothing.
//!
//! A call is one transaction ([`upsert_accounts`]; with [`upsert_within`],
//! the caller's, which the caller commits and writes again when it loses a
//! race). Rows are processed in a fixed order (stored
//! accounts by app and openid, then persons by UnionID, then new accounts)
//! so that concurrent calls on PostgreSQL take row locks in the same order;
//! the rare call that still meets another on a unique key or in a deadlock
//! is written again. On SQLite the transaction holds the write lock from
//! its start.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use entity::{account, app, person};
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{
    ActiveValue, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    IntoActiveModel, Iterable, QueryFilter, QueryTrait, RuntimeErr, SqlErr,
};

use super::apply::{Applied, PROFILE_FIELDS, apply_row};
use super::audience::{self, AudienceChange};
use super::history::{Change, record};
use super::lock::{CHUNK, existing_accounts, held_seats, insert_or_get_persons};
use super::types::{
    AccountUpsert, Changed, IdentityError, MAX_UPSERT_BATCH, Outcome, UpsertResult,
};
use super::validate::validate;
use crate::domain::ProfileSource;
use crate::store;

/// Upserts accounts reported by `source`, all or nothing, applying the identity rules.
#[tracing::instrument(name = "identity.upsert_accounts", skip_all, fields(rows = rows.len(), source = %source))]
pub async fn upsert_accounts(
    db: &DatabaseConnection,
    rows: Vec<AccountUpsert>,
    source: ProfileSource,
    now: DateTime<Utc>,
) -> Result<Vec<UpsertResult>, IdentityError> {
    if rows.len() > MAX_UPSERT_BATCH {
        return Err(IdentityError::TooMany(rows.len()));
    }
    let order = prepare(db, &rows).await?;
    // A concurrent call may link another openid of one app to the same
    // person first (rule 6, the unique (person, app) index), or insert the
    // same new account first: this call then fails as a whole, and is done
    // again, seeing what the other did. Two calls that each took one seat
    // the other wants deadlock on PostgreSQL, which ends one of them: it is
    // done again too.
    let mut attempts = Attempts::default();
    loop {
        let written = async {
            let txn = store::begin_write(db).await?;
            let results = write(&txn, &rows, &order, source, now).await?;
            txn.commit().await?;
            Ok::<_, IdentityError>(results)
        }
        .await;
        match written {
            Err(e) if attempts.again(&e) => {}
            result => return result,
        }
    }
}

/// The attempts at a write transaction that may lose a race for a unique
/// key to a concurrent writer, or be ended in a deadlock
/// ([`IdentityError::lost_a_race`]): written again in a new transaction,
/// it sees what the other wrote. Every writer of the identity graph that
/// commits its own transactions loops on [`Self::again`].
#[derive(Debug)]
pub struct Attempts(u32);

impl Default for Attempts {
    fn default() -> Self {
        Self(1)
    }
}

impl Attempts {
    /// Whether the transaction that failed with `e` is to be written again
    /// (it lost a race, and attempts are left); counts the attempt.
    pub fn again(&mut self, e: &IdentityError) -> bool {
        if self.0 < WRITE_ATTEMPTS && e.lost_a_race() {
            tracing::debug!(attempt = self.0, error = %e, "lost a race for a unique key; writing again");
            self.0 += 1;
            true
        } else {
            false
        }
    }
}

/// Upserts any number of rows inside the caller's write transaction (begun
/// with [`store::begin_write`]), for writers of bulk data that commit other
/// rows with them (the follower sync commits a page with its cursor).
///
/// Nothing is retried here: when the error [`IdentityError::lost_a_race`],
/// the caller rolls back and runs its transaction again.
pub async fn upsert_within<C: ConnectionTrait>(
    txn: &C,
    rows: &[AccountUpsert],
    source: ProfileSource,
    now: DateTime<Utc>,
) -> Result<Vec<UpsertResult>, IdentityError> {
    let order = prepare(txn, rows).await?;
    Ok(write(txn, rows, &order, source, now).await?)
}

/// Upserts any number of rows, [`MAX_UPSERT_BATCH`] per call (one
/// transaction each), for writers of bulk data (refresh, and the follower
/// sync's marking of followers who left); `committed` sees the results of
/// each call once it has committed.
pub async fn upsert_in_batches(
    db: &DatabaseConnection,
    rows: &[AccountUpsert],
    source: ProfileSource,
    now: DateTime<Utc>,
    mut committed: impl FnMut(&[UpsertResult]),
) -> Result<(), IdentityError> {
    for chunk in rows.chunks(MAX_UPSERT_BATCH) {
        committed(&upsert_accounts(db, chunk.to_vec(), source, now).await?);
    }
    Ok(())
}

/// Checks `rows` and orders them: each account's key, in lock order (by
/// app and openid), mapped to its row.
async fn prepare<'a, C: ConnectionTrait>(
    db: &C,
    rows: &'a [AccountUpsert],
) -> Result<BTreeMap<(i64, &'a str), usize>, IdentityError> {
    for (index, row) in rows.iter().enumerate() {
        validate(index, row)?;
    }
    let apps = resolve_apps(db, rows).await?;
    let mut order: BTreeMap<(i64, &str), usize> = BTreeMap::new();
    for (index, row) in rows.iter().enumerate() {
        let key = (apps[row.appid.as_str()], row.openid.as_str());
        if let Some(first) = order.insert(key, index) {
            return Err(IdentityError::DuplicateRow {
                appid: row.appid.to_string(),
                openid: row.openid.to_string(),
                first,
                second: index,
            });
        }
    }
    Ok(order)
}

/// How many times a call is written when it loses a race for a unique key
/// (each loss means a concurrent call took a key that stays taken, so later
/// attempts see it).
const WRITE_ATTEMPTS: u32 = 5;

/// Whether a write failed only because a concurrent call got somewhere
/// first: a unique violation, or PostgreSQL ending a deadlock (`40P01`).
pub(super) fn lost_a_race(e: &DbErr) -> bool {
    if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
        return true;
    }
    let (DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))) = e else {
        return false;
    };
    matches!(&**e, sea_orm::sqlx::Error::Database(e) if e.code().as_deref() == Some("40P01"))
}

/// Writes validated `rows` in the transaction `txn`; `order` maps each
/// account's key, in lock order, to its row.
async fn write<C: ConnectionTrait>(
    txn: &C,
    rows: &[AccountUpsert],
    order: &BTreeMap<(i64, &str), usize>,
    source: ProfileSource,
    now: DateTime<Utc>,
) -> Result<Vec<UpsertResult>, DbErr> {
    let bits = audience::bits(txn).await?;
    // Phase 1: the accounts that exist, locked, in key order. Those that do
    // not get a provisional (negative) id until they are inserted.
    let keys: Vec<(i64, &str)> = order.keys().copied().collect();
    let mut found = existing_accounts(txn, &keys).await?;
    let mut stored: Vec<(usize, bool, account::Model)> = Vec::with_capacity(rows.len());
    for (&(app_id, openid), &index) in order {
        match found.remove(&(app_id, openid.to_owned())) {
            Some(model) => stored.push((index, false, model)),
            None => stored.push((index, true, blank(app_id, openid, index, now))),
        }
    }
    // Phase 2: persons for the UnionIDs that will be linked, in UnionID
    // order; a person created here starts with the audience mask its
    // accounts in this call are expected to give it (corrected afterwards
    // where they do not).
    let mut wanted: BTreeMap<&str, i64> = BTreeMap::new();
    for (index, _, model) in &stored {
        let row = &rows[*index];
        // Rule 4: a snapshot-page virtual user never creates or joins a person.
        if row.snapshot_user || model.snapshot_user {
            continue;
        }
        let Some(reported) = row.unionid.as_ref().map(|u| u.as_str()) else {
            continue;
        };
        if model.unionid.as_deref().is_some_and(|own| own != reported) {
            continue;
        }
        let mask = wanted.entry(reported).or_default();
        if let Some(bit) = bits.get(&model.app_id)
            && row.follow.subscribed.or(model.subscribed) == Some(true)
        {
            *mask |= 1 << bit;
        }
    }
    let persons = insert_or_get_persons(txn, &wanted, now).await?;
    // The accounts those persons hold in these apps (rule 6); a person this
    // call created holds none yet.
    let person_ids: BTreeSet<i64> = persons
        .values()
        .filter(|(_, created)| !created)
        .map(|(id, _)| *id)
        .collect();
    let app_ids: BTreeSet<i64> = order.keys().map(|(app_id, _)| *app_id).collect();
    let mut seats = if person_ids.is_empty() {
        Default::default()
    } else {
        held_seats(txn, &person_ids, &app_ids).await?
    };

    // Phase 3: apply each row. Persons whose accounts changed are touched
    // afterwards, once each and in id order, so that concurrent calls lock
    // person rows in one order too.
    let mut results = Vec::with_capacity(rows.len());
    let mut touched = BTreeSet::new();
    let mut claimed = BTreeSet::new();
    let mut history = Vec::new();
    let mut freshened = Vec::new();
    let mut written = Vec::new();
    let mut inserted = Vec::new();
    let mut audience = AudienceChange::default();
    for (index, created, model) in stored {
        let row = &rows[index];
        let before = bits.contains_key(&model.app_id).then(|| model.clone());
        let Applied {
            outcome,
            changes,
            account,
            write,
        } = apply_row(row, created, model, (&persons, &mut seats), source, now)?;
        if let Some(before) = &before {
            audience.note(&bits, before, &account);
        }
        let changed = !changes.is_empty();
        let watched = watched(&changes, &account, created, outcome);
        if created {
            inserted.push(account.clone());
        } else if write {
            written.push(account.clone());
        } else if row.refreshed {
            freshened.push(account.id);
        }
        // An account's first values are not history but the account as
        // created (its `created_at` and each value's source); a refused
        // UnionID is recorded even then.
        history.extend(
            changes
                .into_iter()
                .filter(|c| !created || c.field == "unionid_conflict")
                .map(|c| (account.id, c)),
        );
        if changed && let Some(person_id) = account.person_id {
            touched.insert(person_id);
        }
        // A new person is credited to the first row that carried its UnionID.
        let person_created = row.unionid.as_ref().is_some_and(|u| {
            account.person_id.is_some()
                && account.unionid.as_deref() == Some(u.as_str())
                && persons.get(u.as_str()).is_some_and(|(_, created)| *created)
                && claimed.insert(u.as_str())
        });
        results.push(UpsertResult {
            index,
            outcome,
            person_created,
            changed: watched,
            account,
        });
    }
    // New accounts get their ids.
    let new_accounts = inserted.len();
    let ids = insert_accounts(txn, inserted).await?;
    if ids.len() != new_accounts {
        return Err(DbErr::Custom(format!(
            "{} of {new_accounts} new accounts came back from their insert",
            ids.len()
        )));
    }
    if !ids.is_empty() {
        let assigned = |id: &mut i64| {
            if let Some(real) = ids.get(id) {
                *id = *real;
            }
        };
        results.iter_mut().for_each(|r| assigned(&mut r.account.id));
        history.iter_mut().for_each(|(id, _)| assigned(id));
    }
    write_accounts(txn, written).await?;
    // Persons this call created hold only accounts this call linked: their
    // masks are known without reading.
    let mut created_masks: HashMap<i64, i64> = persons
        .values()
        .filter(|(_, created)| *created)
        .map(|(id, _)| (*id, 0))
        .collect();
    // The mask each was created with.
    let started: HashMap<i64, i64> = persons
        .iter()
        .filter(|(_, (_, created))| *created)
        .map(|(unionid, (id, _))| (*id, wanted.get(unionid.as_str()).copied().unwrap_or(0)))
        .collect();
    for r in &results {
        let account = &r.account;
        if let (Some(mask), Some(bit)) = (
            account.person_id.and_then(|p| created_masks.get_mut(&p)),
            bits.get(&account.app_id),
        ) && account.subscribed == Some(true)
        {
            *mask |= 1 << bit;
        }
    }
    // Their `updated_at` is already now.
    touched.retain(|id| !created_masks.contains_key(id));
    // The other persons concerned are locked in id order, then their masks
    // and the audience counts follow what was written.
    let created = audience::Created {
        masks: &created_masks,
        started: &started,
    };
    let updated = audience::settle(txn, &bits, audience, created, &touched, now).await?;
    let touched: Vec<i64> = touched.difference(&updated).copied().collect();
    for chunk in touched.chunks(CHUNK) {
        person::Entity::update_many()
            .col_expr(person::Column::UpdatedAt, now.into())
            .filter(person::Column::Id.is_in(chunk.iter().copied()))
            .exec(txn)
            .await?;
    }
    // Rows whose only news is that WeChat was asked: one statement for all.
    for chunk in freshened.chunks(CHUNK) {
        account::Entity::update_many()
            .col_expr(account::Column::RefreshedAt, Expr::value(now))
            .col_expr(
                account::Column::RefreshErrorCode,
                Expr::value(Option::<i32>::None),
            )
            .col_expr(
                account::Column::RefreshErrorMessage,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                account::Column::RefreshErrorAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(account::Column::Id.is_in(chunk.iter().copied()))
            .exec(txn)
            .await?;
    }
    record(txn, history, source, now).await?;
    results.sort_by_key(|r| r.index);
    Ok(results)
}

/// What the `changes` applied to `account` (created by this call or not)
/// mean to those watching it.
fn watched(
    changes: &[Change],
    account: &account::Model,
    created: bool,
    outcome: Outcome,
) -> Changed {
    let change = |field: &str| changes.iter().find(|c| c.field == field);
    let was_following = change("subscribed").map(|c| c.old.as_deref() == Some("true"));
    let follows = account.subscribed == Some(true);
    Changed {
        // Following now, and not known to before; or a newer follow time
        // while following (an unfollow in between may never have been
        // reported). A first follow time for a known follower is not news.
        followed: follows
            && (was_following == Some(false)
                || change("subscribe_time").is_some_and(|c| c.old.is_some())),
        // Following before, and not now.
        unfollowed: !created && account.subscribed == Some(false) && was_following == Some(true),
        linked: account.person_id.is_some() && (created || outcome == Outcome::Linked),
        profile: changes
            .iter()
            .any(|c| c.field == "remark" || PROFILE_FIELDS.contains(&c.field)),
    }
}

/// An account not stored yet, as the call starts it: its key, its times,
/// nothing else, and a provisional id (negative, unique in the call) until
/// it is inserted.
fn blank(app_id: i64, openid: &str, index: usize, now: DateTime<Utc>) -> account::Model {
    let provisional = -1 - i64::try_from(index).unwrap_or(i64::MAX - 1);
    account::Model::blank(provisional, app_id, openid.to_owned(), now)
}

/// Inserts new accounts whole, a chunk per statement; returns the id each
/// got, by its provisional id. No `ON CONFLICT`: an account a concurrent
/// call inserted first fails the statement, and the call is written again.
async fn insert_accounts<C: ConnectionTrait>(
    txn: &C,
    accounts: Vec<account::Model>,
) -> Result<HashMap<i64, i64>, DbErr> {
    let mut ids = HashMap::with_capacity(accounts.len());
    for chunk in accounts.chunks(WRITE_CHUNK) {
        let provisional: HashMap<(i64, &str), i64> = chunk
            .iter()
            .map(|m| ((m.app_id, m.openid.as_str()), m.id))
            .collect();
        let mut insert = account::Entity::insert_many(chunk.iter().cloned().map(|m| {
            let mut active = m.into_active_model();
            active.id = ActiveValue::NotSet;
            active
        }));
        let statement = QueryTrait::query(&mut insert)
            .returning(Query::returning().columns([
                account::Column::Id,
                account::Column::AppId,
                account::Column::Openid,
            ]))
            .to_owned();
        for row in txn.query_all(&statement).await? {
            let (id, app_id, openid): (i64, i64, String) = row.try_get_many_by_index()?;
            if let Some(old) = provisional.get(&(app_id, openid.as_str())) {
                ids.insert(*old, id);
            }
        }
    }
    Ok(ids)
}

/// Writes whole accounts, a chunk per statement (an upsert on the id of
/// accounts that exist, locked, since phase 1).
async fn write_accounts<C: ConnectionTrait>(
    txn: &C,
    accounts: Vec<account::Model>,
) -> Result<(), DbErr> {
    use account::Column;
    let columns: Vec<Column> = Column::iter()
        .filter(|c| {
            !matches!(
                c,
                Column::Id | Column::AppId | Column::Openid | Column::CreatedAt
            )
        })
        .collect();
    for chunk in accounts.chunks(WRITE_CHUNK) {
        account::Entity::insert_many(
            chunk
                .iter()
                .cloned()
                .map(IntoActiveModel::into_active_model),
        )
        .on_conflict(
            OnConflict::column(Column::Id)
                .update_columns(columns.iter().copied())
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    }
    Ok(())
}

/// Accounts per statement when writing whole accounts (about 45 values
/// each, under SQLite's 32,766 bound parameters).
const WRITE_CHUNK: usize = 500;

async fn resolve_apps<C: ConnectionTrait>(
    db: &C,
    rows: &[AccountUpsert],
) -> Result<HashMap<String, i64>, IdentityError> {
    let appids: BTreeSet<&str> = rows.iter().map(|r| r.appid.as_str()).collect();
    let found: HashMap<String, i64> = app::Entity::find()
        .filter(app::Column::Appid.is_in(appids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|a| (a.appid, a.id))
        .collect();
    let unknown: Vec<String> = appids
        .into_iter()
        .filter(|a| !found.contains_key(*a))
        .map(str::to_owned)
        .collect();
    if unknown.is_empty() {
        Ok(found)
    } else {
        Err(IdentityError::UnknownApps(unknown))
    }
}
