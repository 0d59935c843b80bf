//! `refreshAccounts`: an operator's refresh of given accounts, now.

use async_graphql::{Context, InputObject, Object, SimpleObject};

use super::object::Account;
use crate::domain::{AppId, OpenId, ParseError};
use crate::graphql::access;
use crate::graphql::context::ContextExt;
use crate::graphql::error::{ApiError, ApiResult, ResultExt};
use crate::graphql::limits::cost;
use crate::identity::{IdentityError, MAX_UPSERT_BATCH};
use crate::refresh::RefreshPolicy;

/// One account by app and openid.
#[derive(InputObject)]
pub struct AccountKey {
    /// The appid.
    pub appid: String,
    /// The openid within that app.
    pub openid: String,
}

impl AccountKey {
    fn parse(self, index: usize) -> Result<(AppId, OpenId), ApiError> {
        let at = |e: ParseError| ApiError::BadUserInput(format!("key {index}: {e}"));
        Ok((
            AppId::parse(self.appid).map_err(at)?,
            OpenId::parse(self.openid).map_err(at)?,
        ))
    }
}

/// What `refreshAccounts` did.
#[derive(SimpleObject)]
pub struct RefreshAccountsPayload {
    /// Accounts fetched from WeChat and written.
    pub fetched: i32,
    /// Accounts whose fetch failed; each carries its `refreshError`, and its
    /// stored profile is kept. Counts the accounts left unverified in a batch
    /// WeChat refused as holding an invalid openid (errcode 40003, message
    /// "not verified: …"), which are tried again after the freshness TTL.
    pub failed: i32,
    /// Accounts WeChat refused as invalid openids (errcode 40003).
    pub invalid: i32,
    /// Accounts of apps that are not official accounts, which have nothing to fetch.
    pub skipped: i32,
    /// The accounts as stored after the refresh, in the order asked.
    pub accounts: Vec<Account>,
}

/// Operator mutations of accounts.
#[derive(Default)]
pub struct RefreshMutation;

#[Object]
impl RefreshMutation {
    /// Fetches the given accounts from WeChat now, fresh or not (at most 1,000;
    /// batched by app in calls of 100). A WeChat failure does not fail the
    /// mutation: it is counted and recorded on each account. An unregistered
    /// app or an unknown account fails the call with NOT_FOUND.
    #[graphql(complexity = "cost::rows(keys.len(), child_complexity)")]
    async fn refresh_accounts(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The accounts to refresh.")] keys: Vec<AccountKey>,
    ) -> ApiResult<RefreshAccountsPayload> {
        if keys.len() > MAX_UPSERT_BATCH {
            return Err(IdentityError::TooMany(keys.len())).api();
        }
        // One token per WeChat call it may cost, beyond the request's own.
        let calls = keys.len().div_ceil(100).saturating_sub(1);
        access::spend(
            access::caller(ctx)?,
            u32::try_from(calls).unwrap_or(u32::MAX),
            "refreshes",
        )?;
        let keys = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| key.parse(i))
            .collect::<Result<Vec<_>, _>>()
            .api()?;
        let (report, accounts) = ctx
            .state()?
            .refresher()
            .refresh_accounts(&keys)
            .await
            .api()?;
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        Ok(RefreshAccountsPayload {
            fetched: count(report.fetched),
            failed: count(report.failed),
            invalid: count(report.invalid),
            skipped: count(report.skipped),
            accounts: Account::batch(accounts, RefreshPolicy::CacheOnly, None),
        })
    }
}
