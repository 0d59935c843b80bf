//! Applying one reported row to its stored account: the link (rules 2, 3,
//! 4 and 6), the profile merge (rule 5) and the follow status, noting every
//! change for the history.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::account;
use sea_orm::{ActiveModelTrait, DbErr, IntoActiveModel, ModelTrait, Set, TryIntoModel, Value};

use super::history::Change;
use super::merge::{self, Decision};
use super::types::{AccountUpsert, Follow, Outcome};
use crate::domain::ProfileSource;

/// Which account holds each person's seat in each app, by `(person id, app
/// id)` (identity rule 6: a person has at most one account per app).
pub(super) type Seats = HashMap<(i64, i64), i64>;

/// The persons a call links to, by UnionID (id, and whether the call created it).
pub(super) type Persons = HashMap<String, (i64, bool)>;

/// What applying a row gives: the outcome, the changes to record, the
/// account as it is to be stored, and whether it must be written (rows
/// whose only news is their freshness are written apart, all in one
/// statement).
pub(super) struct Applied {
    /// What happened to the account.
    pub(super) outcome: Outcome,
    /// The changes for the history.
    pub(super) changes: Vec<Change>,
    /// The account as it is to be stored.
    pub(super) account: account::Model,
    /// Whether `account` must be written.
    pub(super) write: bool,
}

/// Applies `row` to `model` (created by this call or not), without writing
/// anything. `seats` holds the accounts linked so far, this call's links
/// included.
pub(super) fn apply_row(
    row: &AccountUpsert,
    created: bool,
    model: account::Model,
    (persons, seats): (&Persons, &mut Seats),
    source: ProfileSource,
    now: DateTime<Utc>,
) -> Result<Applied, DbErr> {
    let mut changes = Vec::new();
    let mut active = model.clone().into_active_model();
    let Link { linked, conflict } = apply_link(
        &model,
        &mut active,
        row,
        (persons, seats),
        now,
        &mut changes,
    );

    apply_profile(&model, &mut active, row, source, now, &mut changes);

    let changed = !changes.is_empty();
    // Being listed by a sync job is written, but is not a change.
    let listed = row
        .follow
        .listed_in
        .filter(|job| model.listed_in != Some(*job));
    let write = changed || conflict.is_some() || listed.is_some();
    let account = if write {
        if let Some(job) = listed {
            active.listed_in = Set(Some(job));
        }
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
        active.try_into_model()?
    } else if row.refreshed {
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
    // A refused UnionID is told first, even on an account this call created.
    let outcome = match (conflict, created, linked, changed) {
        (Some(Conflict::Unionid), ..) => Outcome::RefusedUnionidConflict,
        (Some(Conflict::SecondAccountInApp), ..) => Outcome::RefusedSecondAccountInApp,
        (None, true, ..) => Outcome::Created,
        (None, _, true, _) => Outcome::Linked,
        (.., true) => Outcome::Updated,
        _ => Outcome::Unchanged,
    };
    Ok(Applied {
        outcome,
        changes,
        account,
        write,
    })
}

/// What applying a row did to the account's link to a person.
#[derive(Default)]
struct Link {
    /// The account is linked to a person now and was not before.
    linked: bool,
    /// The row's UnionID was refused, and why.
    conflict: Option<Conflict>,
}

/// Why a row's UnionID was refused (and recorded on the account).
#[derive(Clone, Copy)]
enum Conflict {
    /// It differs from the account's (rule 3).
    Unionid,
    /// Its person has another account in this app (rule 6).
    SecondAccountInApp,
}

/// Applies the row's UnionID and snapshot mark to the account's link:
/// rule 2 (a UnionID links the account to its person), rule 3 (a different
/// UnionID is recorded, not applied), rule 4 (a snapshot-page virtual user
/// never creates or joins a person) and rule 6 (a person holds one account
/// per app: a second one is recorded, not linked).
fn apply_link(
    model: &account::Model,
    active: &mut account::ActiveModel,
    row: &AccountUpsert,
    (persons, seats): (&Persons, &mut Seats),
    now: DateTime<Utc>,
    changes: &mut Vec<Change>,
) -> Link {
    if row.snapshot_user && !model.snapshot_user {
        if model.person_id.is_none() {
            active.snapshot_user = Set(true);
            changes.push(Change {
                field: "snapshot_user",
                old: Some(false.to_string()),
                new: Some(true.to_string()),
            });
        } else {
            tracing::warn!(
                account.id = model.id,
                "an account linked to a person reported as a snapshot-page user; the link is kept"
            );
        }
    }
    if row.snapshot_user || model.snapshot_user {
        if row.unionid.is_some() {
            tracing::debug!(
                account.id = model.id,
                "UnionID of a snapshot-page user ignored"
            );
        }
        return Link::default();
    }
    let Some(reported) = &row.unionid else {
        return Link::default();
    };
    match &model.unionid {
        Some(own) if own != reported.as_str() => {
            // Rule 3: the account keeps its UnionID and its link; the
            // conflict is recorded and the rest of the row still applies.
            if record_conflict(model, active, reported.as_str(), now, changes) {
                tracing::warn!(
                    account.id = model.id,
                    account.unionid = %own,
                    reported.unionid = %reported,
                    "conflicting UnionID reported; recorded, not applied"
                );
            }
            Link {
                linked: false,
                conflict: Some(Conflict::Unionid),
            }
        }
        _ => {
            let Some(&(person_id, _)) = persons.get(reported.as_str()) else {
                return Link::default();
            };
            // Rule 6: the first account linked in an app holds the seat;
            // another openid of that app reporting the same UnionID stays
            // unlinked, with the UnionID recorded as its conflict.
            let holder = *seats.entry((person_id, model.app_id)).or_insert(model.id);
            if holder != model.id {
                if record_conflict(model, active, reported.as_str(), now, changes) {
                    tracing::warn!(
                        account.id = model.id,
                        holder.account.id = holder,
                        reported.unionid = %reported,
                        "a second openid in one app reported a person's UnionID; recorded, not linked"
                    );
                }
                return Link {
                    linked: false,
                    conflict: Some(Conflict::SecondAccountInApp),
                };
            }
            if model.unionid.is_none() {
                active.unionid = Set(Some(reported.to_string()));
                changes.push(Change {
                    field: "unionid",
                    old: None,
                    new: Some(reported.to_string()),
                });
            }
            let linked = model.person_id != Some(person_id);
            if linked {
                active.person_id = Set(Some(person_id));
                changes.push(Change {
                    field: "person_id",
                    old: model.person_id.map(|id| id.to_string()),
                    new: Some(person_id.to_string()),
                });
            }
            Link {
                linked,
                conflict: None,
            }
        }
    }
}

/// Records `reported` as the account's conflicting UnionID, and when it was
/// reported; returns whether the value is new (its change is noted once per
/// distinct value, and logged by the caller then).
fn record_conflict(
    model: &account::Model,
    active: &mut account::ActiveModel,
    reported: &str,
    now: DateTime<Utc>,
    changes: &mut Vec<Change>,
) -> bool {
    active.unionid_conflict_at = Set(Some(now));
    if model.unionid_conflict.as_deref() == Some(reported) {
        return false;
    }
    active.unionid_conflict = Set(Some(reported.to_owned()));
    changes.push(Change {
        field: "unionid_conflict",
        old: model.unionid_conflict.clone(),
        new: Some(reported.to_owned()),
    });
    true
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

/// The names the history gives the profile columns.
pub(super) const PROFILE_FIELDS: [&str; 7] = {
    let mut names = [""; 7];
    let mut i = 0;
    while i < PROFILE_COLUMNS.len() {
        names[i] = PROFILE_COLUMNS[i].0;
        i += 1;
    }
    names
};

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
    now: DateTime<Utc>,
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
    apply_follow(model, active, &row.follow, now, changes);
}

/// Applies reported follow values that differ from the stored ones.
fn apply_follow(
    model: &account::Model,
    active: &mut account::ActiveModel,
    follow: &Follow,
    now: DateTime<Utc>,
    changes: &mut Vec<Change>,
) {
    if outdated(model, follow) {
        return;
    }
    // Stopping to follow is dated (with the time the source gives, or when
    // it was asked, else now); the date stays after a later follow, as the last time the user
    // was seen to leave.
    if follow.subscribed == Some(false)
        && (model.subscribed == Some(true) || follow.left_at.is_some())
    {
        let left = follow.left_at.or(follow.as_of).unwrap_or(now);
        if model.unfollowed_at != Some(left) {
            changes.push(Change {
                field: "unfollowed_at",
                old: model.unfollowed_at.map(|t| t.to_rfc3339()),
                new: Some(left.to_rfc3339()),
            });
            active.unfollowed_at = Set(Some(left));
        }
    }
    let remark = follow
        .remark
        .as_ref()
        .map(|r| Value::String(Some(r.clone()).filter(|r| !r.is_empty())));
    let tags = follow
        .tag_ids
        .as_ref()
        .map(|t| Value::Json(Some(Box::new(serde_json::json!(t)))));
    // The last follow time only moves forward: a report of an older follow
    // (a fetch answered before a pushed follow) keeps the newer follow's
    // time and scene.
    let older_follow = matches!(
        (follow.subscribe_time, model.subscribe_time),
        (Some(reported), Some(stored)) if reported < stored
    );
    let of_this_follow = |value: Option<Value>| value.filter(|_| !older_follow);
    let reported: [(&'static str, account::Column, Option<Value>); 7] = [
        (
            "subscribed",
            account::Column::Subscribed,
            follow.subscribed.map(|v| Value::Bool(Some(v))),
        ),
        (
            "subscribe_time",
            account::Column::SubscribeTime,
            of_this_follow(
                follow
                    .subscribe_time
                    .map(|v| Value::ChronoDateTimeUtc(Some(v))),
            ),
        ),
        (
            "subscribe_scene",
            account::Column::SubscribeScene,
            of_this_follow(
                follow
                    .subscribe_scene
                    .clone()
                    .map(|v| Value::String(Some(v))),
            ),
        ),
        (
            "qr_scene",
            account::Column::QrScene,
            of_this_follow(follow.qr_scene.map(|v| Value::BigInt(Some(v)))),
        ),
        (
            "qr_scene_str",
            account::Column::QrSceneStr,
            of_this_follow(follow.qr_scene_str.clone().map(|v| Value::String(Some(v)))),
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

/// Whether `follow` reports a status as of a time no later (to the second)
/// than a stored change the other way: a follow as of before a stored
/// unfollow, or an unfollow as of before a stored follow.
fn outdated(model: &account::Model, follow: &Follow) -> bool {
    let Some(as_of) = follow.as_of.map(|t| t.timestamp()) else {
        return false;
    };
    match follow.subscribed {
        Some(true) => {
            model.subscribed == Some(false)
                && model.unfollowed_at.is_some_and(|u| u.timestamp() >= as_of)
        }
        Some(false) => {
            model.subscribed == Some(true)
                && model.subscribe_time.is_some_and(|s| s.timestamp() >= as_of)
        }
        None => false,
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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    fn stored(subscribed: bool, subscribe_time: i64, unfollowed_at: Option<i64>) -> account::Model {
        let mut model = account::Model::blank(1, 1, "o".into(), at(0));
        model.subscribed = Some(subscribed);
        model.subscribe_time = Some(at(subscribe_time));
        model.unfollowed_at = unfollowed_at.map(at);
        model
    }

    fn report(subscribed: bool, as_of: Option<i64>) -> Follow {
        Follow {
            subscribed: Some(subscribed),
            as_of: as_of.map(at),
            ..Follow::default()
        }
    }

    #[test]
    fn a_status_older_than_a_stored_change_the_other_way_is_not_applied() {
        // A fetch asked before (or in the second of) a pushed unfollow.
        let left = stored(false, 100, Some(200));
        assert!(outdated(&left, &report(true, Some(199))));
        assert!(outdated(&left, &report(true, Some(200))));
        assert!(!outdated(&left, &report(true, Some(201))));
        // A fetch asked before a pushed follow.
        let back = stored(true, 300, Some(200));
        assert!(outdated(&back, &report(false, Some(299))));
        assert!(!outdated(&back, &report(false, Some(301))));
        // The same status, or no time: applied as reported.
        assert!(!outdated(&left, &report(false, Some(0))));
        assert!(!outdated(&back, &report(true, Some(0))));
        assert!(!outdated(&left, &report(true, None)));
    }

    #[test]
    fn the_last_follow_time_only_moves_forward() {
        let model = stored(true, 2001, Some(2000));
        let mut active: account::ActiveModel = model.clone().into();
        let mut changes = Vec::new();
        let older = Follow {
            subscribed: Some(true),
            subscribe_time: Some(at(1000)),
            subscribe_scene: Some("ADD_SCENE_SEARCH".into()),
            ..Follow::default()
        };
        apply_follow(&model, &mut active, &older, at(3000), &mut changes);
        assert!(changes.is_empty(), "{changes:?}");
        let newer = Follow {
            subscribe_time: Some(at(2002)),
            ..older
        };
        apply_follow(&model, &mut active, &newer, at(3000), &mut changes);
        let fields: Vec<&str> = changes.iter().map(|c| c.field).collect();
        assert_eq!(fields, ["subscribe_time", "subscribe_scene"]);
    }
}
