//! The audience statistics: how many distinct people follow the company's
//! official accounts, and how the audiences overlap, now or as of a day.
//!
//! The identity service keeps the counts as it writes (`audience_cell`: the
//! persons per mask of followed official accounts, and each app's followers
//! linked to no person; `audience_day`: each cell's value at the end of the
//! days it changed). A question here reads those cells, at most one per
//! combination of apps actually followed together plus one per app, and
//! projects them onto the apps asked about, so its cost does not grow with
//! the audience.
//!
//! Followers whose UnionID is unknown cannot be told apart from the linked
//! ones, so they are never guessed: distinct people is reported as a range,
//! at least the linked people and at most that plus the unlinked followers.

use std::collections::{BTreeMap, HashMap};

use entity::{app, audience_cell, audience_day};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
};

use crate::domain::{AppId, AppKind, Day};

/// Most days one history may span.
pub const MAX_HISTORY_DAYS: i64 = 366;

/// Why a statistics question cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// Apps asked about are not registered.
    #[error("{}", crate::identity::types::not_registered(.0))]
    NotRegistered(Vec<String>),
    /// An app asked about is not an official account (only official
    /// accounts have followers).
    #[error("app {0} is not an official account; only official accounts have followers")]
    NotOfficialAccount(String),
    /// An official account past the 63rd, left out of the statistics.
    #[error("app {0} is past the 63 official accounts the statistics count")]
    NotCounted(String),
    /// The same app is asked about twice.
    #[error("app {0} is asked for twice")]
    Repeated(String),
    /// `from` is after `to`, or the span is too long.
    #[error("{0}")]
    BadRange(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// One official account's followers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppFollowers {
    /// The app.
    pub appid: String,
    /// Its display name.
    pub name: String,
    /// Followers linked to a person.
    pub linked: u64,
    /// Followers whose UnionID is not known.
    pub unlinked: u64,
}

impl AppFollowers {
    /// All followers.
    pub fn followers(&self) -> u64 {
        self.linked + self.unlinked
    }
}

/// The audience of a set of official accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience {
    /// The day the numbers are as of; `None` for now.
    pub day: Option<Day>,
    /// The apps counted, in registration order.
    pub apps: Vec<AppFollowers>,
    /// People with a known UnionID following at least one of the apps.
    pub linked_people: u64,
    /// Follows whose UnionID is not known, summed over the apps.
    pub unlinked_followers: u64,
    /// For every pair of apps (indexes into `apps`), the linked people following both.
    pub pairs: Vec<(usize, usize, u64)>,
    /// `follow_counts[k - 1]`: linked people following exactly `k` of the apps.
    pub follow_counts: Vec<u64>,
    /// Each set of apps (indexes into `apps`) followed together, exactly,
    /// by at least one linked person, with how many; largest first.
    pub combinations: Vec<(Vec<usize>, u64)>,
}

impl Audience {
    /// Distinct people following at least one of the apps: at least the
    /// linked people, at most that plus every unlinked follow.
    pub fn distinct_people(&self) -> (u64, u64) {
        (
            self.linked_people,
            self.linked_people + self.unlinked_followers,
        )
    }
}

/// An official account counted: its row id, bit, appid and name.
#[derive(Debug, Clone)]
struct Counted {
    id: i64,
    bit: i64,
    appid: String,
    name: String,
}

/// The cells as they stand: `(app_id, mask) -> count`.
type Cells = HashMap<(i64, i64), i64>;

/// The audience of `appids` (every official account when `None`), now or as
/// of the end of `day`.
pub async fn audience<C: ConnectionTrait>(
    db: &C,
    appids: Option<&[AppId]>,
    day: Option<Day>,
) -> Result<Audience, StatsError> {
    let apps = counted(db, appids).await?;
    let cells = match day {
        None => current_cells(db).await?,
        Some(day) => cells_as_of(db, day).await?,
    };
    Ok(project(&apps, &cells, day))
}

/// The audience of `appids` at the end of each day from `from` to `to`
/// inclusive; days before the first recorded count are left out.
pub async fn audience_history<C: ConnectionTrait>(
    db: &C,
    appids: Option<&[AppId]>,
    from: Day,
    to: Day,
) -> Result<Vec<Audience>, StatsError> {
    let span = from.days_until(to);
    if span < 0 {
        return Err(StatsError::BadRange(format!(
            "from ({from}) is after to ({to})"
        )));
    }
    if span >= MAX_HISTORY_DAYS {
        return Err(StatsError::BadRange(format!(
            "at most {MAX_HISTORY_DAYS} days per history, asked for {}",
            span + 1
        )));
    }
    let apps = counted(db, appids).await?;
    let Some(first) = first_day(db).await? else {
        return Ok(Vec::new());
    };
    // The cells as of the day before `from`, then each day's changes.
    let mut cells = match from.pred() {
        Some(before) if before >= first => cells_as_of(db, before).await?,
        _ => Cells::new(),
    };
    let changes = audience_day::Entity::find()
        .filter(audience_day::Column::Day.gte(from.to_string()))
        .filter(audience_day::Column::Day.lte(to.to_string()))
        .order_by_asc(audience_day::Column::Day)
        .all(db)
        .await?;
    let mut by_day: BTreeMap<String, Vec<audience_day::Model>> = BTreeMap::new();
    for row in changes {
        by_day.entry(row.day.clone()).or_default().push(row);
    }
    let mut series = Vec::with_capacity(span as usize + 1);
    let mut day = Some(from);
    while let Some(d) = day.filter(|d| *d <= to) {
        for row in by_day.remove(&d.to_string()).unwrap_or_default() {
            cells.insert((row.app_id, row.mask), row.count);
        }
        if d >= first {
            series.push(project(&apps, &cells, Some(d)));
        }
        day = d.succ();
    }
    Ok(series)
}

/// The official accounts asked about, in registration order.
async fn counted<C: ConnectionTrait>(
    db: &C,
    appids: Option<&[AppId]>,
) -> Result<Vec<Counted>, StatsError> {
    let all = app::Entity::find()
        .order_by_asc(app::Column::Id)
        .all(db)
        .await?;
    let to_counted = |a: &app::Model| {
        a.audience_bit.map(|bit| Counted {
            id: a.id,
            bit: i64::from(bit),
            appid: a.appid.clone(),
            name: a.name.clone(),
        })
    };
    let Some(appids) = appids else {
        return Ok(all.iter().filter_map(to_counted).collect());
    };
    let by_appid: HashMap<&str, &app::Model> = all.iter().map(|a| (a.appid.as_str(), a)).collect();
    let unknown: Vec<String> = appids
        .iter()
        .filter(|a| !by_appid.contains_key(a.as_str()))
        .map(ToString::to_string)
        .collect();
    if !unknown.is_empty() {
        return Err(StatsError::NotRegistered(unknown));
    }
    let mut seen = std::collections::HashSet::new();
    let mut apps = Vec::with_capacity(appids.len());
    for appid in appids {
        if !seen.insert(appid.as_str()) {
            return Err(StatsError::Repeated(appid.to_string()));
        }
        let model = by_appid[appid.as_str()];
        if model.kind != AppKind::OfficialAccount.as_str() {
            return Err(StatsError::NotOfficialAccount(appid.to_string()));
        }
        apps.push(to_counted(model).ok_or_else(|| StatsError::NotCounted(appid.to_string()))?);
    }
    apps.sort_by_key(|a| a.id);
    Ok(apps)
}

/// The cells as they stand now.
async fn current_cells<C: ConnectionTrait>(db: &C) -> Result<Cells, DbErr> {
    Ok(audience_cell::Entity::find()
        .filter(audience_cell::Column::Count.ne(0))
        .all(db)
        .await?
        .into_iter()
        .map(|c| ((c.app_id, c.mask), c.count))
        .collect())
}

/// One cell's value at the end of a day.
#[derive(Debug, FromQueryResult)]
struct CellRow {
    app_id: i64,
    mask: i64,
    count: i64,
}

/// The cells at the end of `day`: each cell's latest row on or before it.
async fn cells_as_of<C: ConnectionTrait>(db: &C, day: Day) -> Result<Cells, DbErr> {
    let latest = Query::select()
        .columns([audience_day::Column::AppId, audience_day::Column::Mask])
        .expr_as(
            Expr::col(audience_day::Column::Day).max(),
            Alias::new("last_day"),
        )
        .from(audience_day::Entity)
        .and_where(Expr::col(audience_day::Column::Day).lte(day.to_string()))
        .group_by_columns([audience_day::Column::AppId, audience_day::Column::Mask])
        .to_owned();
    let latest_alias = Alias::new("latest");
    let query = Query::select()
        .columns([
            (audience_day::Entity, audience_day::Column::AppId),
            (audience_day::Entity, audience_day::Column::Mask),
            (audience_day::Entity, audience_day::Column::Count),
        ])
        .from(audience_day::Entity)
        .join_subquery(
            sea_orm::JoinType::InnerJoin,
            latest,
            latest_alias.clone(),
            Expr::col((latest_alias.clone(), audience_day::Column::AppId))
                .equals((audience_day::Entity, audience_day::Column::AppId))
                .and(
                    Expr::col((latest_alias.clone(), audience_day::Column::Mask))
                        .equals((audience_day::Entity, audience_day::Column::Mask)),
                )
                .and(
                    Expr::col((latest_alias, Alias::new("last_day")))
                        .equals((audience_day::Entity, audience_day::Column::Day)),
                ),
        )
        .to_owned();
    let rows = CellRow::find_by_statement(db.get_database_backend().build(&query))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter(|r| r.count != 0)
        .map(|r| ((r.app_id, r.mask), r.count))
        .collect())
}

/// The first day with a recorded count, if any.
async fn first_day<C: ConnectionTrait>(db: &C) -> Result<Option<Day>, DbErr> {
    let first = audience_day::Entity::find()
        .order_by_asc(audience_day::Column::Day)
        .one(db)
        .await?;
    Ok(first.and_then(|row| Day::parse(&row.day).ok()))
}

/// The numbers for `apps` from the cells.
fn project(apps: &[Counted], cells: &Cells, day: Option<Day>) -> Audience {
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    // Each person's mask, narrowed to the apps asked about and renumbered
    // so that bit `i` is `apps[i]`.
    let mut narrowed: BTreeMap<u64, u64> = BTreeMap::new();
    for (&(app_id, mask), &n) in cells {
        if app_id != 0 || n <= 0 {
            continue;
        }
        let local = apps
            .iter()
            .enumerate()
            .filter(|(_, a)| mask & (1 << a.bit) != 0)
            .fold(0u64, |acc, (i, _)| acc | 1 << i);
        if local != 0 {
            *narrowed.entry(local).or_default() += count(n);
        }
    }
    let followers = apps
        .iter()
        .enumerate()
        .map(|(i, a)| AppFollowers {
            appid: a.appid.clone(),
            name: a.name.clone(),
            linked: narrowed
                .iter()
                .filter(|(m, _)| *m & (1 << i) != 0)
                .map(|(_, n)| n)
                .sum(),
            unlinked: count(cells.get(&(a.id, 1 << a.bit)).copied().unwrap_or(0)),
        })
        .collect::<Vec<_>>();
    let mut pairs = Vec::new();
    for i in 0..apps.len() {
        for j in i + 1..apps.len() {
            let both = (1u64 << i) | (1u64 << j);
            let people = narrowed
                .iter()
                .filter(|(m, _)| *m & both == both)
                .map(|(_, n)| n)
                .sum();
            pairs.push((i, j, people));
        }
    }
    let mut follow_counts = vec![0; apps.len()];
    for (mask, n) in &narrowed {
        follow_counts[mask.count_ones() as usize - 1] += n;
    }
    let mut combinations: Vec<(Vec<usize>, u64)> = narrowed
        .iter()
        .map(|(mask, n)| {
            let members = (0..apps.len()).filter(|i| mask & (1 << i) != 0).collect();
            (members, *n)
        })
        .collect();
    combinations.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Audience {
        day,
        linked_people: narrowed.values().sum(),
        unlinked_followers: followers.iter().map(|f| f.unlinked).sum(),
        apps: followers,
        pairs,
        follow_counts,
        combinations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: i64, bit: i64) -> Counted {
        Counted {
            id,
            bit,
            appid: format!("wx{id}"),
            name: format!("app {id}"),
        }
    }

    #[test]
    fn projection_counts_each_person_once() {
        // Bits 0, 1, 2 for apps 10, 11, 12. Persons: 5 follow {0}, 3 {0,1},
        // 2 {0,1,2}, 4 {2}; app 11 has 7 unlinked followers.
        let cells: Cells = [
            ((0, 0b001), 5),
            ((0, 0b011), 3),
            ((0, 0b111), 2),
            ((0, 0b100), 4),
            ((11, 0b010), 7),
        ]
        .into_iter()
        .collect();
        let all = [app(10, 0), app(11, 1), app(12, 2)];
        let a = project(&all, &cells, None);
        assert_eq!(a.linked_people, 14);
        assert_eq!(a.unlinked_followers, 7);
        assert_eq!(a.distinct_people(), (14, 21));
        let linked: Vec<u64> = a.apps.iter().map(|f| f.linked).collect();
        assert_eq!(linked, [10, 5, 6]);
        assert_eq!(a.apps[1].followers(), 12);
        assert_eq!(a.pairs, [(0, 1, 5), (0, 2, 2), (1, 2, 2)]);
        assert_eq!(a.follow_counts, [9, 3, 2]);
        assert_eq!(a.combinations[0], (vec![0], 5));

        // Only apps 11 and 12: the person following {0} alone drops out,
        // {0,1} becomes {1}.
        let some = [app(11, 1), app(12, 2)];
        let b = project(&some, &cells, None);
        assert_eq!(b.linked_people, 9);
        assert_eq!(b.pairs, [(0, 1, 2)]);
        assert_eq!(b.follow_counts, [7, 2]);
        assert_eq!(
            b.combinations,
            [(vec![1], 4), (vec![0], 3), (vec![0, 1], 2)]
        );
    }
}
