//! Queries about accounts.

use crate::graphql::scalars::DateTime;
use async_graphql::{Context, InputObject, Object};

use super::object::{Account, AccountConnection};
use crate::domain::{AppId, OpenId};
use crate::graphql::access;
use crate::graphql::context::{ContextExt, ticket};
use crate::graphql::enums::RefreshPolicy;
use crate::graphql::error::{ApiResult, ResultExt};
use crate::graphql::limits::cost;
use crate::graphql::page::{Cursors, PageArgs, Paging};
use crate::identity::read;

/// Narrows a list of accounts. All given conditions must hold.
#[derive(InputObject, Default)]
pub struct AccountFilter {
    /// true: only accounts with a known UnionID; false: only unlinked ones.
    pub has_unionid: Option<bool>,
    /// true: only users who follow the app; false: only those known not to.
    pub following: Option<bool>,
    /// Only accounts changed at or after this time.
    pub updated_since: Option<DateTime>,
}

impl From<AccountFilter> for read::AccountFilter {
    fn from(filter: AccountFilter) -> Self {
        Self {
            has_unionid: filter.has_unionid,
            following: filter.following,
            updated_since: filter.updated_since.map(|at| at.0),
        }
    }
}

/// Queries about accounts.
#[derive(Default)]
pub struct AccountQuery;

// A connection's resolver takes its paging, filter and refresh arguments.
#[allow(clippy::too_many_arguments)]
#[Object]
impl AccountQuery {
    /// One account by app and openid, or null when union360 does not know it.
    /// Fails with NOT_FOUND when the app is not registered.
    async fn account(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The appid of the app that issued the openid.")] appid: String,
        #[graphql(desc = "The OpenID within that app.")] openid: String,
        #[graphql(
            desc = "How to handle stale profiles: IF_STALE (the default), CACHE_ONLY or FORCE."
        )]
        refresh: Option<RefreshPolicy>,
    ) -> ApiResult<Option<Account>> {
        let state = ctx.state()?;
        let appid = AppId::parse(appid).api()?;
        let openid = OpenId::parse(openid).api()?;
        let found = read::account(state.db(), state.apps(), &appid, &openid)
            .await
            .api()?;
        let policy = access::refresh_policy(ctx, refresh)?;
        Ok(Account::batch(found.into_iter().collect(), policy, ticket(ctx)).pop())
    }

    /// The accounts of one app, in the order union360 first saw them.
    #[graphql(complexity = "cost::page(first.or(last), child_complexity)")]
    async fn accounts(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The appid whose accounts to list.")] appid: String,
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
        #[graphql(desc = "Conditions the accounts must meet.")] filter: Option<AccountFilter>,
        #[graphql(
            desc = "How to handle stale profiles: IF_STALE (the default), CACHE_ONLY or FORCE."
        )]
        refresh: Option<RefreshPolicy>,
    ) -> ApiResult<AccountConnection> {
        let state = ctx.state()?;
        let appid = AppId::parse(appid).api()?;
        // A cursor of one app's accounts means nothing in another's.
        let cursors = Cursors::new(state.master_key()).within(appid.as_str());
        let paging = Paging {
            first,
            after: after.as_deref(),
            last,
            before: before.as_deref(),
        };
        let args = PageArgs::parse(&cursors, AccountConnection::KIND, paging).api()?;
        let filter = read::AccountFilter::from(filter.unwrap_or_default());
        let page = read::accounts(state.db(), state.apps(), &appid, &filter, args.request())
            .await
            .api()?;
        ctx.read_rows(page.rows.len())?;
        let policy = access::refresh_policy(ctx, refresh)?;
        Ok(AccountConnection::new(page, args, &cursors, |rows| {
            Account::batch(rows, policy, ticket(ctx))
        }))
    }
}
