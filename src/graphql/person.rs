//! Persons in the API: the human behind accounts, keyed by UnionID.

use async_graphql::{Context, InputObject, Object};
use chrono::{DateTime, Utc};
use entity::{account, app, person};
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::account::{Account, Sex};
use super::error::{ApiResult, ResultExt};
use super::loaders::{RequestCache, Siblings};
use super::page::{self, PageArgs, connection};
use super::round::{self, Ticket};
use crate::domain::{AppId, ProfileSource, UnionId};
use crate::refresh::RefreshPolicy;
use crate::state::AppState;
use std::sync::Arc;

/// A person with the persons it was fetched with (for batch loading).
pub struct Person(pub(crate) person::Model, pub(crate) Arc<Siblings>);

impl Person {
    /// Wraps rows fetched together (by the root field of `ticket`, in a query).
    pub(crate) fn batch(
        rows: Vec<person::Model>,
        policy: RefreshPolicy,
        ticket: Option<Ticket>,
    ) -> Vec<Self> {
        let siblings = Siblings::of_persons(&rows, policy, ticket);
        rows.into_iter()
            .map(|r| Self(r, siblings.clone()))
            .collect()
    }

    /// The person's accounts as stored.
    async fn stored_accounts(&self, ctx: &Context<'_>) -> ApiResult<Vec<account::Model>> {
        let state = ctx.data::<AppState>()?;
        self.1.accounts_of(state.db(), self.0.id).await.api()
    }

    /// The person's accounts as this request sees them (refreshed when stale and asked for).
    async fn all_accounts(&self, ctx: &Context<'_>) -> ApiResult<Vec<account::Model>> {
        let mut current = Vec::new();
        for account in self.stored_accounts(ctx).await? {
            current.push(self.1.current(ctx, &account).await?.0);
        }
        Ok(current)
    }

    /// The best known value of one field across the accounts.
    async fn best<T: Clone>(
        &self,
        ctx: &Context<'_>,
        field: impl Fn(&account::Model) -> (Option<T>, Option<&str>),
    ) -> ApiResult<Option<T>> {
        let accounts = self.all_accounts(ctx).await?;
        Ok(accounts
            .iter()
            .filter_map(|a| {
                let (value, source) = field(a);
                let rank = source
                    .and_then(ProfileSource::from_stored)
                    .map_or(0, ProfileSource::rank);
                value.map(|v| ((rank, a.updated_at), v))
            })
            .max_by_key(|(key, _)| *key)
            .map(|(_, v)| v))
    }
}

fn text(value: &Option<String>) -> Option<String> {
    value.clone().filter(|v| !v.is_empty())
}

/// A person: one human, known by their WeChat UnionID, with an account in
/// each app they use. Profile fields here are the best value known across
/// their accounts: values the user gave at sign-in beat imports, which beat
/// `user/info`; among equals the most recently updated account wins.
#[Object]
impl Person {
    /// The WeChat UnionID.
    async fn unionid(&self) -> &str {
        &self.0.unionid
    }

    /// The person's accounts, in the order union360 first saw them.
    async fn accounts(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only the account in this app.")] appid: Option<String>,
    ) -> ApiResult<Vec<Account>> {
        let mut accounts = self.stored_accounts(ctx).await?;
        if let Some(appid) = appid {
            let appid = AppId::parse(appid).api()?;
            let state = ctx.data::<AppState>()?;
            let apps = ctx.data::<RequestCache>()?.apps(state).await.api()?;
            accounts.retain(|a| {
                apps.get(&a.app_id)
                    .is_some_and(|app| app.appid == appid.as_str())
            });
        }
        Ok(accounts
            .into_iter()
            .map(|a| Account(a, self.1.clone()))
            .collect())
    }

    /// Best known nickname.
    async fn nickname(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        self.best(ctx, |a| (text(&a.nickname), a.nickname_source.as_deref()))
            .await
    }

    /// Best known avatar URL.
    async fn avatar_url(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        self.best(ctx, |a| {
            (text(&a.avatar_url), a.avatar_url_source.as_deref())
        })
        .await
    }

    /// Best known sex.
    async fn sex(&self, ctx: &Context<'_>) -> ApiResult<Option<Sex>> {
        self.best(ctx, |a| (Sex::from_code(a.sex), a.sex_source.as_deref()))
            .await
    }

    /// Best known language.
    async fn language(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        self.best(ctx, |a| (text(&a.language), a.language_source.as_deref()))
            .await
    }

    /// Best known city.
    async fn city(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        self.best(ctx, |a| (text(&a.city), a.city_source.as_deref()))
            .await
    }

    /// Best known province.
    async fn province(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        self.best(ctx, |a| (text(&a.province), a.province_source.as_deref()))
            .await
    }

    /// Best known country.
    async fn country(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        self.best(ctx, |a| (text(&a.country), a.country_source.as_deref()))
            .await
    }

    /// The oldest freshness among the person's accounts: when the least
    /// recently fetched account was fetched from WeChat; null when any of
    /// them has never been fetched (or the person has no account).
    async fn oldest_refreshed_at(&self, ctx: &Context<'_>) -> ApiResult<Option<DateTime<Utc>>> {
        let accounts = self.all_accounts(ctx).await?;
        let times: Option<Vec<DateTime<Utc>>> = accounts.iter().map(|a| a.refreshed_at).collect();
        Ok(times.and_then(|t| t.into_iter().min()))
    }

    /// When union360 first saw this UnionID.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// When the person or one of their accounts last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

connection!(
    PersonConnection,
    PersonEdge,
    Person,
    person::Entity,
    "people"
);

/// Narrows a list of people. All given conditions must hold.
#[derive(InputObject, Default)]
pub struct PeopleFilter {
    /// Only people who follow this official account (by appid).
    pub follows_app: Option<String>,
    /// Only people with an account in this app (by appid), following or not.
    pub in_app: Option<String>,
    /// Only people changed at or after this time.
    pub updated_since: Option<DateTime<Utc>>,
}

/// Queries about people.
#[derive(Default)]
pub struct PersonQuery;

#[Object]
impl PersonQuery {
    /// One person by UnionID, or null when union360 has not seen it.
    async fn person(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The WeChat UnionID.")] unionid: String,
        #[graphql(
            desc = "How to handle stale profiles: IF_STALE (the default), CACHE_ONLY or FORCE."
        )]
        refresh: Option<RefreshPolicy>,
    ) -> ApiResult<Option<Person>> {
        let state = ctx.data::<AppState>()?;
        let unionid = UnionId::parse(unionid).api()?;
        let found = person::Entity::find()
            .filter(person::Column::Unionid.eq(unionid.as_str()))
            .one(state.db())
            .await
            .api()?;
        let policy = refresh.unwrap_or_default();
        Ok(Person::batch(found.into_iter().collect(), policy, round::ticket(ctx)).pop())
    }

    /// Everyone union360 knows by UnionID, in the order first seen.
    async fn people(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size (default 20, at most 100).")] first: Option<i32>,
        #[graphql(desc = "Cursor to continue after (`pageInfo.endCursor` of the previous page).")]
        after: Option<String>,
        #[graphql(desc = "Conditions the people must meet.")] filter: Option<PeopleFilter>,
        #[graphql(
            desc = "How to handle stale profiles: IF_STALE (the default), CACHE_ONLY or FORCE."
        )]
        refresh: Option<RefreshPolicy>,
    ) -> ApiResult<PersonConnection> {
        let state = ctx.data::<AppState>()?;
        let args = PageArgs::parse("person", first, after.as_deref()).api()?;
        let filter = filter.unwrap_or_default();
        let mut select = person::Entity::find();
        for (appid, following_only) in [(filter.follows_app, true), (filter.in_app, false)] {
            let Some(appid) = appid else { continue };
            let appid = AppId::parse(appid).api()?;
            select =
                select.filter(person::Column::Id.in_subquery(members_of(&appid, following_only)));
        }
        if let Some(since) = filter.updated_since {
            select = select.filter(person::Column::UpdatedAt.gte(since));
        }
        let (rows, has_next) = page::fetch(state.db(), select.clone(), person::Column::Id, args)
            .await
            .api()?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        Ok(PersonConnection {
            page_info: page::page_info("person", &ids, has_next, args),
            edges: Person::batch(rows, refresh.unwrap_or_default(), round::ticket(ctx))
                .into_iter()
                .map(|node| PersonEdge {
                    cursor: page::encode_cursor("person", node.0.id),
                    node,
                })
                .collect(),
            total: select,
        })
    }
}

/// `SELECT person_id FROM account WHERE app_id = (SELECT id FROM app WHERE appid = ?)`,
/// optionally only followers: one statement with the page query, no app lookup first.
fn members_of(appid: &AppId, following_only: bool) -> sea_orm::sea_query::SelectStatement {
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
