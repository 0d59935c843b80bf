//! The identity service: accounts, persons and the links between them.
//!
//! Every write to the identity graph goes through [`upsert_accounts`], which
//! applies the identity rules of the design:
//!
//! 1. `(app, openid)` is unique, an account links to at most one person and
//!    a person's UnionID is unique (enforced by unique constraints);
//! 2. a UnionID seen for an account links it to the person with that
//!    UnionID, created if absent with an insert-or-get under the unique
//!    constraint, so concurrent discoveries of one UnionID make one person;
//! 3. an account's UnionID never changes: a different one is recorded as a
//!    conflict on the account, never applied;
//! 5. an empty value never overwrites a non-empty value from another source
//!    (see [`merge`]).
//!
//! A call is one transaction: all of it lands or none. Rows are processed in
//! a fixed order (accounts by app and openid, then persons by UnionID) so
//! that concurrent calls on PostgreSQL take row locks in the same order and
//! cannot deadlock; on SQLite the transaction holds the write lock from its
//! start.

pub mod merge;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use entity::{account, account_history, app, person};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection,
    DbErr, EntityTrait, IntoActiveModel, ModelTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TryInsertResult, Value,
};

use crate::domain::{AppId, OpenId, ProfileSource, UnionId};
use crate::store;
use merge::Decision;

/// Most accounts one call may upsert.
pub const MAX_UPSERT_BATCH: usize = 1000;

/// Profile values as one source reports them; `None` means "not reported".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// Nickname.
    pub nickname: Option<String>,
    /// Avatar URL.
    pub avatar_url: Option<String>,
    /// WeChat sex code (1 male, 2 female, 0 unknown, which counts as empty).
    pub sex: Option<i32>,
    /// Language.
    pub language: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Province.
    pub province: Option<String>,
    /// Country.
    pub country: Option<String>,
}

/// One account as a source reports it.
#[derive(Debug, Clone)]
pub struct AccountUpsert {
    /// The app that issued the openid.
    pub appid: AppId,
    /// The openid.
    pub openid: OpenId,
    /// The UnionID, when the source knows it.
    pub unionid: Option<UnionId>,
    /// Profile values.
    pub profile: Profile,
    /// Follow status and what comes with it, as far as the source knows.
    pub follow: Follow,
    /// Whether this row is a fetch from WeChat: sets `refreshed_at` and clears
    /// the last refresh error.
    pub refreshed: bool,
}

/// Follow status of an official-account user; `None` means "not reported".
/// These values come from WeChat (or an operator's import) and replace what
/// is stored whenever reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Follow {
    /// Whether the user follows the official account.
    pub subscribed: Option<bool>,
    /// Last follow time.
    pub subscribe_time: Option<DateTime<Utc>>,
    /// How the user followed (`ADD_SCENE_…`).
    pub subscribe_scene: Option<String>,
    /// Numeric QR scene.
    pub qr_scene: Option<i64>,
    /// String QR scene.
    pub qr_scene_str: Option<String>,
    /// Operator remark (an empty string clears it).
    pub remark: Option<String>,
    /// Tag ids.
    pub tag_ids: Option<Vec<i64>>,
}

/// What an upsert did to one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The account was new.
    Created,
    /// The account existed and was linked to a person now.
    Linked,
    /// The account existed and some value changed.
    Updated,
    /// Nothing changed.
    Unchanged,
    /// The row's UnionID was refused: it differs from the account's, which
    /// never changes. The conflict is recorded on the account; the rest of the
    /// row (profile, follow status, freshness) applied as usual.
    RefusedUnionidConflict,
}

/// The result for one input row.
#[derive(Debug, Clone)]
pub struct UpsertResult {
    /// Position of the row in the input.
    pub index: usize,
    /// What happened.
    pub outcome: Outcome,
    /// Whether this row's UnionID created a new person.
    pub person_created: bool,
    /// The account as stored after the call.
    pub account: account::Model,
}

/// Why a call was refused as a whole (nothing was written).
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// More rows than [`MAX_UPSERT_BATCH`].
    #[error("at most {MAX_UPSERT_BATCH} accounts per call, got {0}")]
    TooMany(usize),
    /// Rows name apps that are not registered.
    #[error("unknown appid(s): {}", .0.join(", "))]
    UnknownApps(Vec<String>),
    /// The same account appears twice in one call.
    #[error("account {appid}/{openid} appears more than once (rows {first} and {second})")]
    DuplicateRow {
        /// The appid.
        appid: String,
        /// The openid.
        openid: String,
        /// First row.
        first: usize,
        /// Second row.
        second: usize,
    },
    /// A profile value is unacceptable.
    #[error("row {index}: {message}")]
    InvalidRow {
        /// The row.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

const MAX_TEXT: usize = 2048;

fn validate(index: usize, row: &AccountUpsert) -> Result<(), IdentityError> {
    let p = &row.profile;
    // The widths of the columns (the same on SQLite and PostgreSQL).
    let texts = [
        ("nickname", &p.nickname, MAX_TEXT),
        ("avatarUrl", &p.avatar_url, MAX_TEXT),
        ("language", &p.language, 32),
        ("city", &p.city, 255),
        ("province", &p.province, 255),
        ("country", &p.country, 255),
        ("remark", &row.follow.remark, MAX_TEXT),
        ("subscribeScene", &row.follow.subscribe_scene, 64),
        ("qrSceneStr", &row.follow.qr_scene_str, 255),
    ];
    for (name, value, max) in texts {
        if value.as_ref().is_some_and(|v| v.chars().count() > max) {
            return Err(IdentityError::InvalidRow {
                index,
                message: format!("{name} is longer than {max} characters"),
            });
        }
    }
    if let Some(sex) = p.sex
        && !(0..=2).contains(&sex)
    {
        return Err(IdentityError::InvalidRow {
            index,
            message: format!("sex must be 0, 1 or 2, got {sex}"),
        });
    }
    Ok(())
}

/// Upserts accounts reported by `source`, all or nothing, applying the identity rules.
pub async fn upsert_accounts(
    db: &DatabaseConnection,
    rows: Vec<AccountUpsert>,
    source: ProfileSource,
    now: DateTime<Utc>,
) -> Result<Vec<UpsertResult>, IdentityError> {
    if rows.len() > MAX_UPSERT_BATCH {
        return Err(IdentityError::TooMany(rows.len()));
    }
    for (index, row) in rows.iter().enumerate() {
        validate(index, row)?;
    }
    let apps = resolve_apps(db, &rows).await?;
    // Sorted by (app, openid): the lock order of every call.
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

    let txn = store::begin_write(db).await?;
    // Phase 1: every account exists and is locked, in key order.
    let keys: Vec<(i64, &str)> = order.keys().copied().collect();
    let mut found = insert_or_get_accounts(&txn, &keys, now).await?;
    let mut stored: Vec<(usize, bool, account::Model)> = Vec::with_capacity(rows.len());
    for (&(app_id, openid), &index) in &order {
        let (created, model) = found
            .remove(&(app_id, openid.to_owned()))
            .ok_or_else(|| DbErr::RecordNotFound(format!("account {app_id}/{openid}")))?;
        stored.push((index, created, model));
    }
    // Phase 2: persons for the UnionIDs that will be linked, in UnionID order.
    let wanted: BTreeSet<&str> = stored
        .iter()
        .filter_map(|(index, _, model)| {
            let reported = rows[*index].unionid.as_ref()?.as_str();
            match &model.unionid {
                None => Some(reported),
                Some(own) if own == reported => Some(reported),
                Some(_) => None,
            }
        })
        .collect();
    let persons = insert_or_get_persons(&txn, &wanted, now).await?;

    // Phase 3: apply each row. Persons whose accounts changed are touched
    // afterwards, once each and in id order, so that concurrent calls lock
    // person rows in one order too.
    let mut results = Vec::with_capacity(rows.len());
    let mut touched = BTreeSet::new();
    let mut claimed = BTreeSet::new();
    let mut history = Vec::new();
    let mut freshened = Vec::new();
    for (index, created, model) in stored {
        let row = &rows[index];
        let (outcome, changes, account) =
            apply_row(&txn, row, created, model, &persons, source, now).await?;
        let changed = !changes.is_empty();
        if !changed && row.refreshed {
            freshened.push(account.id);
        }
        history.extend(changes.into_iter().map(|c| (account.id, c)));
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
            account,
        });
    }
    if !touched.is_empty() {
        person::Entity::update_many()
            .col_expr(person::Column::UpdatedAt, now.into())
            .filter(person::Column::Id.is_in(touched))
            .exec(&txn)
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
            .exec(&txn)
            .await?;
    }
    record(&txn, history, source, now).await?;
    txn.commit().await?;
    results.sort_by_key(|r| r.index);
    Ok(results)
}

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

/// Rows per bulk statement (well under SQLite's bound-parameter limit).
const CHUNK: usize = 500;

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

/// Inserts the accounts that are absent, then returns all of them locked, by key,
/// with whether this call created each.
async fn insert_or_get_accounts<C: ConnectionTrait>(
    txn: &C,
    keys: &[(i64, &str)],
    now: DateTime<Utc>,
) -> Result<HashMap<(i64, String), (bool, account::Model)>, DbErr> {
    let mut all = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(CHUNK) {
        for model in locked_accounts(txn, chunk).await? {
            all.insert((model.app_id, model.openid.clone()), (false, model));
        }
        let missing: Vec<(i64, &str)> = chunk
            .iter()
            .filter(|(app_id, openid)| !all.contains_key(&(*app_id, (*openid).to_owned())))
            .copied()
            .collect();
        if missing.is_empty() {
            continue;
        }
        let skeletons = missing.iter().map(|(app_id, openid)| account::ActiveModel {
            app_id: Set(*app_id),
            openid: Set((*openid).to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        });
        let inserted = account::Entity::insert_many(skeletons)
            .on_conflict_do_nothing_on([account::Column::AppId, account::Column::Openid])
            .exec_with_returning_many(txn)
            .await?;
        let created: BTreeSet<i64> = match inserted {
            TryInsertResult::Inserted(models) => models.iter().map(|m| m.id).collect(),
            TryInsertResult::Conflicted | TryInsertResult::Empty => BTreeSet::new(),
        };
        // Read back locked: the rows this call created, and any a concurrent
        // call created first (which it then waited for).
        for model in locked_accounts(txn, &missing).await? {
            let was_created = created.contains(&model.id);
            all.insert((model.app_id, model.openid.clone()), (was_created, model));
        }
    }
    Ok(all)
}

/// Creates the persons that do not exist yet and returns all of them by UnionID,
/// with whether this call created each.
async fn insert_or_get_persons<C: ConnectionTrait>(
    txn: &C,
    unionids: &BTreeSet<&str>,
    now: DateTime<Utc>,
) -> Result<HashMap<String, (i64, bool)>, DbErr> {
    let mut all = HashMap::with_capacity(unionids.len());
    let unionids: Vec<&str> = unionids.iter().copied().collect();
    let find = |ids: Vec<&str>| {
        person::Entity::find()
            .filter(person::Column::Unionid.is_in(ids))
            .order_by_asc(person::Column::Unionid)
            .all(txn)
    };
    for chunk in unionids.chunks(CHUNK) {
        for p in find(chunk.to_vec()).await? {
            all.insert(p.unionid, (p.id, false));
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
            ..Default::default()
        });
        let inserted = person::Entity::insert_many(rows)
            .on_conflict_do_nothing_on([person::Column::Unionid])
            .exec_with_returning_many(txn)
            .await?;
        let created: BTreeSet<i64> = match inserted {
            TryInsertResult::Inserted(models) => models.iter().map(|m| m.id).collect(),
            TryInsertResult::Conflicted | TryInsertResult::Empty => BTreeSet::new(),
        };
        for p in find(missing).await? {
            let was_created = created.contains(&p.id);
            all.insert(p.unionid, (p.id, was_created));
        }
    }
    Ok(all)
}

/// One change to record in the account history.
struct Change {
    field: &'static str,
    old: Option<String>,
    new: Option<String>,
}

async fn apply_row<C: ConnectionTrait>(
    txn: &C,
    row: &AccountUpsert,
    created: bool,
    model: account::Model,
    persons: &HashMap<String, (i64, bool)>,
    source: ProfileSource,
    now: DateTime<Utc>,
) -> Result<(Outcome, Vec<Change>, account::Model), DbErr> {
    // Returns the outcome, the changes to record, and the account as written.
    // Only rows whose values change are written here; freshness-only rows are
    // written by the caller in one statement.
    let mut changes = Vec::new();
    let mut active = model.clone().into_active_model();
    let mut linked = false;
    let mut conflict = false;

    if let Some(reported) = &row.unionid {
        match &model.unionid {
            Some(own) if own != reported.as_str() => {
                // Rule 3: the account keeps its UnionID and its link; the
                // conflict is recorded (once per distinct value) and the rest
                // of the row still applies.
                conflict = true;
                if model.unionid_conflict.as_deref() != Some(reported.as_str()) {
                    tracing::warn!(
                        account.id = model.id,
                        account.unionid = %own,
                        reported.unionid = %reported,
                        "conflicting UnionID reported; recorded, not applied"
                    );
                    active.unionid_conflict = Set(Some(reported.to_string()));
                    changes.push(Change {
                        field: "unionid_conflict",
                        old: model.unionid_conflict.clone(),
                        new: Some(reported.to_string()),
                    });
                }
                active.unionid_conflict_at = Set(Some(now));
            }
            _ => {
                if let Some(&(person_id, _)) = persons.get(reported.as_str()) {
                    if model.unionid.is_none() {
                        active.unionid = Set(Some(reported.to_string()));
                        changes.push(Change {
                            field: "unionid",
                            old: None,
                            new: Some(reported.to_string()),
                        });
                    }
                    if model.person_id != Some(person_id) {
                        active.person_id = Set(Some(person_id));
                        changes.push(Change {
                            field: "person_id",
                            old: model.person_id.map(|id| id.to_string()),
                            new: Some(person_id.to_string()),
                        });
                        linked = true;
                    }
                }
            }
        }
    }

    apply_profile(&model, &mut active, row, source, &mut changes);

    let changed = !changes.is_empty();
    let account = if changed || conflict {
        if row.refreshed {
            // Freshness is metadata, not a change of the account: no history row.
            active.refreshed_at = Set(Some(now));
            active.refresh_error_code = Set(None);
            active.refresh_error_message = Set(None);
            active.refresh_error_at = Set(None);
        }
        if changed {
            active.updated_at = Set(now);
        }
        active.update(txn).await?
    } else if row.refreshed {
        // Written by the caller, with every other freshness-only row, in one statement.
        account::Model {
            refreshed_at: Some(now),
            refresh_error_code: None,
            refresh_error_message: None,
            refresh_error_at: None,
            ..model
        }
    } else {
        model
    };
    let outcome = match (created, linked, conflict, changed) {
        (true, ..) => Outcome::Created,
        (_, _, true, _) => Outcome::RefusedUnionidConflict,
        (_, true, ..) => Outcome::Linked,
        (.., true) => Outcome::Updated,
        _ => Outcome::Unchanged,
    };
    Ok((outcome, changes, account))
}

/// The profile columns: the name recorded in the history, the value column
/// and the column naming the value's source.
const PROFILE_COLUMNS: [(&str, account::Column, account::Column); 7] = [
    (
        "nickname",
        account::Column::Nickname,
        account::Column::NicknameSource,
    ),
    (
        "avatar_url",
        account::Column::AvatarUrl,
        account::Column::AvatarUrlSource,
    ),
    ("sex", account::Column::Sex, account::Column::SexSource),
    (
        "language",
        account::Column::Language,
        account::Column::LanguageSource,
    ),
    ("city", account::Column::City, account::Column::CitySource),
    (
        "province",
        account::Column::Province,
        account::Column::ProvinceSource,
    ),
    (
        "country",
        account::Column::Country,
        account::Column::CountrySource,
    ),
];

/// A profile value as text: sex 0 (unknown) counts as empty.
fn as_text(value: Value) -> Option<String> {
    match value {
        Value::String(s) => s,
        Value::Int(Some(0)) | Value::Int(None) => None,
        Value::Int(Some(code)) => Some(code.to_string()),
        _ => None,
    }
}

/// Text back into the column's type.
fn from_text(column: account::Column, text: Option<String>) -> Value {
    match column {
        account::Column::Sex => Value::Int(text.and_then(|t| t.parse().ok())),
        _ => Value::String(text),
    }
}

/// Merges the row's profile into `active`, noting each change.
fn apply_profile(
    model: &account::Model,
    active: &mut account::ActiveModel,
    row: &AccountUpsert,
    source: ProfileSource,
    changes: &mut Vec<Change>,
) {
    let p = &row.profile;
    // Incoming values in the order of PROFILE_COLUMNS; sex 0 is an empty value.
    let incoming = [
        p.nickname.clone(),
        p.avatar_url.clone(),
        p.sex
            .map(|code| as_text(Value::Int(Some(code))).unwrap_or_default()),
        p.language.clone(),
        p.city.clone(),
        p.province.clone(),
        p.country.clone(),
    ];
    for ((field, column, source_column), incoming) in PROFILE_COLUMNS.into_iter().zip(incoming) {
        let stored = as_text(model.get(column));
        let stored_source = as_text(model.get(source_column));
        let decision = merge::decide(
            stored.as_deref(),
            stored_source.as_deref(),
            incoming.as_deref(),
            source,
        );
        let Decision::Set(value) = decision else {
            continue;
        };
        let value_source = value.as_ref().map(|_| source.as_str().to_owned());
        changes.push(Change {
            field,
            old: stored,
            new: value.clone(),
        });
        active.set(column, from_text(column, value));
        active.set(source_column, Value::String(value_source));
    }
    apply_follow(model, active, &row.follow, changes);
}

/// Applies reported follow values that differ from the stored ones.
fn apply_follow(
    model: &account::Model,
    active: &mut account::ActiveModel,
    follow: &Follow,
    changes: &mut Vec<Change>,
) {
    let remark = follow
        .remark
        .as_ref()
        .map(|r| Value::String(Some(r.clone()).filter(|r| !r.is_empty())));
    let tags = follow
        .tag_ids
        .as_ref()
        .map(|t| Value::Json(Some(Box::new(serde_json::json!(t)))));
    let reported: [(&'static str, account::Column, Option<Value>); 7] = [
        (
            "subscribed",
            account::Column::Subscribed,
            follow.subscribed.map(|v| Value::Bool(Some(v))),
        ),
        (
            "subscribe_time",
            account::Column::SubscribeTime,
            follow
                .subscribe_time
                .map(|v| Value::ChronoDateTimeUtc(Some(v))),
        ),
        (
            "subscribe_scene",
            account::Column::SubscribeScene,
            follow
                .subscribe_scene
                .clone()
                .map(|v| Value::String(Some(v))),
        ),
        (
            "qr_scene",
            account::Column::QrScene,
            follow.qr_scene.map(|v| Value::BigInt(Some(v))),
        ),
        (
            "qr_scene_str",
            account::Column::QrSceneStr,
            follow.qr_scene_str.clone().map(|v| Value::String(Some(v))),
        ),
        ("remark", account::Column::Remark, remark),
        ("tag_ids", account::Column::TagIds, tags),
    ];
    for (field, column, value) in reported {
        let Some(value) = value else { continue };
        let stored = model.get(column);
        if stored == value {
            continue;
        }
        changes.push(Change {
            field,
            old: display(&stored),
            new: display(&value),
        });
        active.set(column, value);
    }
}

/// A stored value as history text.
fn display(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.map(|b| b.to_string()),
        Value::Int(i) => i.map(|i| i.to_string()),
        Value::BigInt(i) => i.map(|i| i.to_string()),
        Value::ChronoDateTimeUtc(t) => t.map(|t| t.to_rfc3339()),
        Value::Json(j) => j.as_ref().map(|j| j.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// Appends changes to the account history, a few thousand rows per statement.
async fn record<C: ConnectionTrait>(
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
