//! The read service: persons and accounts as stored, by key, by page and
//! by relation.
//!
//! Pages are keyset pages in id order (`WHERE id > after ORDER BY id LIMIT
//! first + 1`, or from the end of the range, `WHERE id < before ORDER BY id
//! DESC LIMIT last + 1`), so inserts never shift a page (new rows have higher ids and
//! appear at the end) and deep pages cost the same as the first. A page's
//! total is counted only when asked for ([`Total::count`]). Relations are
//! loaded for many rows at once (`IN (…)`), so a caller that batches never
//! issues one statement per row.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{account, app, person};
use sea_orm::sea_query::{Query, SelectStatement};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Select,
};

use super::lock::account_keys;
use crate::apps::Apps;
use crate::domain::{AppId, OpenId, UnionId};

/// Why a lookup found nothing to work on.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// No app has this appid.
    #[error("app {0} is not registered")]
    NotRegistered(AppId),
    /// The app is registered, but union360 does not know this account.
    #[error("no account {openid} in app {appid}")]
    NoSuchAccount {
        /// The app.
        appid: AppId,
        /// The openid asked for.
        openid: OpenId,
    },
    /// The database failed.
    #[error("database")]
    Db(#[from] DbErr),
}

/// Which page of a list to read: the rows with ids between `after` and
/// `before` (each bound when given), the first `size` of them, or the last
/// when `from_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Rows per page.
    pub size: usize,
    /// The id the page starts after.
    pub after: Option<i64>,
    /// The id the page ends before.
    pub before: Option<i64>,
    /// Whether the page is the last `size` rows of the range, not the first.
    pub from_end: bool,
}

/// One page of a list of `E`.
pub struct Page<E: EntityTrait> {
    /// The rows of the page, in id order.
    pub rows: Vec<E::Model>,
    /// Whether more rows of the range lie beyond the page, on the side it
    /// was read from: after it (read from the start), or before it (read
    /// from the end).
    pub has_more: bool,
    /// The size of the whole list, counted on demand.
    pub total: Total<E>,
}

/// The size of a filtered list, counted only when asked for.
pub struct Total<E: EntityTrait>(Select<E>);

impl<E: EntityTrait> Total<E>
where
    E::Model: Sync,
{
    /// Counts the list (one `COUNT` statement).
    pub async fn count(&self, db: &DatabaseConnection) -> Result<u64, DbErr> {
        self.0.clone().count(db).await
    }
}

/// Reads one page of `select` in `id` order.
async fn page<E: EntityTrait>(
    db: &DatabaseConnection,
    select: Select<E>,
    id: E::Column,
    request: PageRequest,
) -> Result<Page<E>, DbErr> {
    let mut rows = select.clone();
    if let Some(after) = request.after {
        rows = rows.filter(id.gt(after));
    }
    if let Some(before) = request.before {
        rows = rows.filter(id.lt(before));
    }
    let rows = if request.from_end {
        rows.order_by_desc(id)
    } else {
        rows.order_by_asc(id)
    };
    let mut rows = rows.limit(request.size as u64 + 1).all(db).await?;
    let has_more = rows.len() > request.size;
    rows.truncate(request.size);
    if request.from_end {
        rows.reverse();
    }
    Ok(Page {
        rows,
        has_more,
        total: Total(select),
    })
}

/// Conditions on a list of people; all given must hold.
#[derive(Debug, Clone, Default)]
pub struct PeopleFilter {
    /// Only people who follow this official account.
    pub follows_app: Option<AppId>,
    /// Only people with an account in this app, following or not.
    pub in_app: Option<AppId>,
    /// Only people changed at or after this time.
    pub updated_since: Option<DateTime<Utc>>,
}

/// Conditions on a list of accounts; all given must hold.
#[derive(Debug, Clone, Default)]
pub struct AccountFilter {
    /// true: only accounts with a known UnionID; false: only unlinked ones.
    pub has_unionid: Option<bool>,
    /// true: only users who follow the app; false: only those known not to.
    pub following: Option<bool>,
    /// Only accounts changed at or after this time.
    pub updated_since: Option<DateTime<Utc>>,
}

/// One person by UnionID.
#[tracing::instrument(name = "identity.read.person", level = "debug", skip_all)]
pub async fn person(
    db: &DatabaseConnection,
    unionid: &UnionId,
) -> Result<Option<person::Model>, DbErr> {
    person::Entity::find()
        .filter(person::Column::Unionid.eq(unionid.as_str()))
        .one(db)
        .await
}

/// One person by id.
pub async fn person_by_id(
    db: &DatabaseConnection,
    id: i64,
) -> Result<Option<person::Model>, DbErr> {
    person::Entity::find_by_id(id).one(db).await
}

/// A page of the people matching `filter`, in the order first seen.
#[tracing::instrument(name = "identity.read.people", level = "debug", skip_all, fields(page.size = request.size))]
pub async fn people(
    db: &DatabaseConnection,
    filter: &PeopleFilter,
    request: PageRequest,
) -> Result<Page<person::Entity>, DbErr> {
    let mut select = person::Entity::find();
    for (appid, following_only) in [(&filter.follows_app, true), (&filter.in_app, false)] {
        if let Some(appid) = appid {
            select =
                select.filter(person::Column::Id.in_subquery(members_of(appid, following_only)));
        }
    }
    if let Some(since) = filter.updated_since {
        select = select.filter(person::Column::UpdatedAt.gte(since));
    }
    page(db, select, person::Column::Id, request).await
}

/// `SELECT person_id FROM account WHERE app_id = (SELECT id FROM app WHERE appid = ?)`,
/// optionally only followers: one statement with the page query, no app lookup first.
fn members_of(appid: &AppId, following_only: bool) -> SelectStatement {
    let app_id = Query::select()
        .column(app::Column::Id)
        .from(app::Entity)
        .and_where(app::Column::Appid.eq(appid.as_str()))
        .to_owned();
    let mut members = Query::select();
    members
        .column(account::Column::PersonId)
        .from(account::Entity)
        .and_where(account::Column::AppId.in_subquery(app_id))
        .and_where(account::Column::PersonId.is_not_null());
    if following_only {
        members.and_where(account::Column::Subscribed.eq(true));
    }
    members.to_owned()
}

/// The registered app `appid`.
async fn registered(apps: &Apps, appid: &AppId) -> Result<app::Model, LookupError> {
    apps.by_appid(appid)
        .await?
        .ok_or_else(|| LookupError::NotRegistered(appid.clone()))
}

/// One account by app and openid; `None` when union360 does not know it.
#[tracing::instrument(name = "identity.read.account", level = "debug", skip_all, fields(app.appid = %appid))]
pub async fn account(
    db: &DatabaseConnection,
    apps: &Apps,
    appid: &AppId,
    openid: &OpenId,
) -> Result<Option<account::Model>, LookupError> {
    let app = registered(apps, appid).await?;
    Ok(account::Entity::find()
        .filter(account::Column::AppId.eq(app.id))
        .filter(account::Column::Openid.eq(openid.as_str()))
        .one(db)
        .await?)
}

/// A page of the accounts of app `appid` matching `filter`, in the order first seen.
#[tracing::instrument(name = "identity.read.accounts", level = "debug", skip_all, fields(app.appid = %appid, page.size = request.size))]
pub async fn accounts(
    db: &DatabaseConnection,
    apps: &Apps,
    appid: &AppId,
    filter: &AccountFilter,
    request: PageRequest,
) -> Result<Page<account::Entity>, LookupError> {
    let app = registered(apps, appid).await?;
    let mut select = account::Entity::find().filter(account::Column::AppId.eq(app.id));
    if let Some(has) = filter.has_unionid {
        select = select.filter(if has {
            account::Column::Unionid.is_not_null()
        } else {
            account::Column::Unionid.is_null()
        });
    }
    if let Some(following) = filter.following {
        select = select.filter(account::Column::Subscribed.eq(following));
    }
    if let Some(since) = filter.updated_since {
        select = select.filter(account::Column::UpdatedAt.gte(since));
    }
    Ok(page(db, select, account::Column::Id, request).await?)
}

/// The accounts of each of `person_ids` (one statement), each person's in
/// the order first seen.
pub async fn accounts_of_persons(
    db: &DatabaseConnection,
    person_ids: &[i64],
) -> Result<HashMap<i64, Vec<account::Model>>, DbErr> {
    let rows = account::Entity::find()
        .filter(account::Column::PersonId.is_in(person_ids.iter().copied()))
        .order_by_asc(account::Column::Id)
        .all(db)
        .await?;
    let mut by_person: HashMap<i64, Vec<account::Model>> = HashMap::new();
    for row in rows {
        if let Some(person_id) = row.person_id {
            by_person.entry(person_id).or_default().push(row);
        }
    }
    Ok(by_person)
}

/// The persons of `ids` by id (one statement).
pub async fn persons_by_ids(
    db: &DatabaseConnection,
    ids: &[i64],
) -> Result<HashMap<i64, person::Model>, DbErr> {
    let rows = person::Entity::find()
        .filter(person::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|p| (p.id, p)).collect())
}

/// The accounts of `ids` in the order of `ids` (one statement); ids not
/// stored are left out.
pub async fn accounts_by_ids(
    db: &DatabaseConnection,
    ids: &[i64],
) -> Result<Vec<account::Model>, DbErr> {
    let mut found: HashMap<i64, account::Model> = account::Entity::find()
        .filter(account::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|a| (a.id, a))
        .collect();
    Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
}

/// The accounts of `keys`, in order; an unregistered app or an unknown
/// account fails the whole lookup.
#[tracing::instrument(name = "identity.read.find_accounts", level = "debug", skip_all, fields(keys = keys.len()))]
pub async fn find_accounts(
    db: &DatabaseConnection,
    apps: &Apps,
    keys: &[(AppId, OpenId)],
) -> Result<Vec<account::Model>, LookupError> {
    for (appid, _) in keys {
        registered(apps, appid).await?;
    }
    let found = accounts_by_keys(db, apps, keys).await?;
    keys.iter()
        .zip(found)
        .map(|((appid, openid), account)| {
            account.ok_or_else(|| LookupError::NoSuchAccount {
                appid: appid.clone(),
                openid: openid.clone(),
            })
        })
        .collect()
}

/// The accounts of `keys`, in order (one statement): `None` where the app
/// is not registered or the account not known.
#[tracing::instrument(name = "identity.read.accounts_by_keys", level = "debug", skip_all, fields(keys = keys.len()))]
pub async fn accounts_by_keys(
    db: &DatabaseConnection,
    apps: &Apps,
    keys: &[(AppId, OpenId)],
) -> Result<Vec<Option<account::Model>>, DbErr> {
    let mut distinct: Vec<&AppId> = keys.iter().map(|(appid, _)| appid).collect();
    distinct.sort_unstable_by_key(|appid| appid.as_str());
    distinct.dedup();
    let app_ids: HashMap<&AppId, Option<i64>> = distinct
        .iter()
        .copied()
        .zip(apps.by_appids(&distinct).await?)
        .map(|(appid, app)| (appid, app.map(|app| app.id)))
        .collect();
    let pairs: Vec<(i64, &str)> = keys
        .iter()
        .filter_map(|(appid, openid)| Some((app_ids[appid]?, openid.as_str())))
        .collect();
    let found: HashMap<(i64, String), account::Model> = if pairs.is_empty() {
        HashMap::new()
    } else {
        account::Entity::find()
            .filter(account_keys(&pairs))
            .all(db)
            .await?
            .into_iter()
            .map(|account| ((account.app_id, account.openid.clone()), account))
            .collect()
    };
    Ok(keys
        .iter()
        .map(|(appid, openid)| {
            let app_id = app_ids[appid]?;
            found.get(&(app_id, openid.as_str().to_owned())).cloned()
        })
        .collect())
}

/// The persons of `unionids`, by UnionID (one statement); UnionIDs not
/// stored are left out.
pub async fn persons_by_unionids(
    db: &DatabaseConnection,
    unionids: &[&UnionId],
) -> Result<HashMap<String, person::Model>, DbErr> {
    let rows = person::Entity::find()
        .filter(person::Column::Unionid.is_in(unionids.iter().map(|u| u.as_str())))
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|p| (p.unionid.clone(), p)).collect())
}
