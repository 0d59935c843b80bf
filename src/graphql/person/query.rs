//! Queries about people.

use crate::graphql::scalars::DateTime;
use async_graphql::{Context, InputObject, Object};

use super::object::{Person, PersonConnection};
use crate::domain::{AppId, UnionId};
use crate::graphql::access;
use crate::graphql::context::{ContextExt, ticket};
use crate::graphql::enums::RefreshPolicy;
use crate::graphql::error::{ApiResult, ResultExt};
use crate::graphql::limits::cost;
use crate::graphql::page::{Cursors, PageArgs, Paging};
use crate::identity::read;

/// Narrows a list of people. All given conditions must hold.
#[derive(InputObject, Default)]
pub struct PeopleFilter {
    /// Only people who follow this official account (by appid).
    pub follows_app: Option<String>,
    /// Only people with an account in this app (by appid), following or not.
    pub in_app: Option<String>,
    /// Only people changed at or after this time.
    pub updated_since: Option<DateTime>,
}

impl PeopleFilter {
    fn parse(self) -> Result<read::PeopleFilter, crate::domain::ParseError> {
        Ok(read::PeopleFilter {
            follows_app: self.follows_app.map(AppId::parse).transpose()?,
            in_app: self.in_app.map(AppId::parse).transpose()?,
            updated_since: self.updated_since.map(|at| at.0),
        })
    }
}

/// Queries about people.
#[derive(Default)]
pub struct PersonQuery;

// A connection's resolver takes its paging, filter and refresh arguments.
#[allow(clippy::too_many_arguments)]
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
        let unionid = UnionId::parse(unionid).api()?;
        let found = read::person(ctx.state()?.db(), &unionid).await.api()?;
        let policy = access::refresh_policy(ctx, refresh)?;
        Ok(Person::batch(found.into_iter().collect(), policy, ticket(ctx)).pop())
    }

    /// Everyone union360 knows by UnionID, in the order first seen.
    #[graphql(complexity = "cost::page(first.or(last), child_complexity)")]
    async fn people(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, from the start (default 20, at most 100).")] first: Option<
            i32,
        >,
        #[graphql(desc = "Cursor to continue after (`pageInfo.endCursor` of the previous page).")]
        after: Option<String>,
        #[graphql(
            desc = "Page size, from the end: the last rows (before `before` when given; at most 100). Not with `first`."
        )]
        last: Option<i32>,
        #[graphql(
            desc = "Cursor to go back from (`pageInfo.startCursor` of the page after); with neither `first` nor `last`, the 20 rows before it."
        )]
        before: Option<String>,
        #[graphql(desc = "Conditions the people must meet.")] filter: Option<PeopleFilter>,
        #[graphql(
            desc = "How to handle stale profiles: IF_STALE (the default), CACHE_ONLY or FORCE."
        )]
        refresh: Option<RefreshPolicy>,
    ) -> ApiResult<PersonConnection> {
        let state = ctx.state()?;
        let cursors = Cursors::new(state.master_key());
        let paging = Paging {
            first,
            after: after.as_deref(),
            last,
            before: before.as_deref(),
        };
        let args = PageArgs::parse(&cursors, PersonConnection::KIND, paging).api()?;
        let filter = filter.unwrap_or_default().parse().api()?;
        let page = read::people(state.db(), &filter, args.request())
            .await
            .api()?;
        ctx.read_rows(page.rows.len())?;
        let policy = access::refresh_policy(ctx, refresh)?;
        Ok(PersonConnection::new(page, args, &cursors, |rows| {
            Person::batch(rows, policy, ticket(ctx))
        }))
    }
}
