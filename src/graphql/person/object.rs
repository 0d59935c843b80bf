//! The `Person` object: the human behind accounts, keyed by UnionID.

use std::sync::Arc;

use crate::graphql::scalars::DateTime;
use async_graphql::{Context, ID, Object};
use entity::{account, person};

use crate::domain::{AppId, UnionId};
use crate::graphql::account::Account;
use crate::graphql::batch::Siblings;
use crate::graphql::context::ContextExt;
use crate::graphql::enums::Sex;
use crate::graphql::error::{ApiResult, ResultExt};
use crate::graphql::limits::cost;
use crate::graphql::node::NodeId;
use crate::graphql::page::connection;
use crate::graphql::round::Ticket;
use crate::identity::{Profile, best_profile, profile};
use crate::refresh::RefreshPolicy;

/// A person, with the persons it was fetched with (for batch loading).
pub struct Person {
    /// The person as loaded.
    model: person::Model,
    /// The rows loaded with it.
    siblings: Arc<Siblings>,
}

impl Person {
    /// A person loaded with `siblings`.
    pub(crate) fn new(model: person::Model, siblings: Arc<Siblings>) -> Self {
        Self { model, siblings }
    }

    /// Wraps rows fetched together (by the root field of `ticket`, in a query).
    pub(crate) fn batch(
        rows: Vec<person::Model>,
        policy: RefreshPolicy,
        ticket: Option<Ticket>,
    ) -> Vec<Self> {
        let siblings = Siblings::of_persons(&rows, policy, ticket);
        rows.into_iter()
            .map(|model| Self::new(model, siblings.clone()))
            .collect()
    }

    /// The person's accounts as stored.
    async fn stored_accounts(&self, ctx: &Context<'_>) -> ApiResult<Vec<account::Model>> {
        let db = ctx.state()?.db();
        self.siblings.accounts_of(db, self.model.id).await.api()
    }

    /// The person's accounts as this request sees them (refreshed when stale and asked for).
    async fn current_accounts(&self, ctx: &Context<'_>) -> ApiResult<Vec<account::Model>> {
        let mut current = Vec::new();
        for account in self.stored_accounts(ctx).await? {
            current.push(self.siblings.current(ctx, &account).await?.account);
        }
        Ok(current)
    }

    /// The best known profile across the accounts, as this request sees them.
    async fn best(&self, ctx: &Context<'_>) -> ApiResult<Profile> {
        Ok(best_profile(&self.current_accounts(ctx).await?))
    }
}

/// A person: one human, known by their WeChat UnionID, with an account in
/// each app they use. Profile fields here are the best value known across
/// their accounts: values the user gave at sign-in beat imports, which beat
/// `user/info`; among equals the most recently updated account wins.
#[Object]
impl Person {
    /// The person's global id (see `Node.id`).
    pub async fn id(&self, _ctx: &Context<'_>) -> async_graphql::Result<ID> {
        let unionid = UnionId::parse(self.model.unionid.clone()).api()?;
        Ok(NodeId::Person(unionid).encode())
    }

    /// The WeChat UnionID.
    async fn unionid(&self) -> &str {
        &self.model.unionid
    }

    /// The person's accounts, in the order union360 first saw them.
    #[graphql(complexity = "cost::list(appid.is_some(), child_complexity)")]
    async fn accounts(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only the account in this app.")] appid: Option<String>,
    ) -> ApiResult<Vec<Account>> {
        let mut accounts = self.stored_accounts(ctx).await?;
        if let Some(appid) = appid {
            let appid = AppId::parse(appid).api()?;
            let apps = ctx.request()?.apps(ctx.state()?.apps()).await.api()?;
            accounts.retain(|a| {
                apps.get(&a.app_id)
                    .is_some_and(|app| app.appid == appid.as_str())
            });
        }
        ctx.read_rows(accounts.len())?;
        Ok(accounts
            .into_iter()
            .map(|model| Account {
                model,
                siblings: self.siblings.clone(),
            })
            .collect())
    }

    /// Best known nickname.
    async fn nickname(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        Ok(self.best(ctx).await?.nickname)
    }

    /// Best known avatar URL.
    async fn avatar_url(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        Ok(self.best(ctx).await?.avatar_url)
    }

    /// Best known sex.
    async fn sex(&self, ctx: &Context<'_>) -> ApiResult<Option<Sex>> {
        Ok(Sex::from_code(self.best(ctx).await?.sex))
    }

    /// Best known language.
    async fn language(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        Ok(self.best(ctx).await?.language)
    }

    /// Best known city.
    async fn city(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        Ok(self.best(ctx).await?.city)
    }

    /// Best known province.
    async fn province(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        Ok(self.best(ctx).await?.province)
    }

    /// Best known country.
    async fn country(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        Ok(self.best(ctx).await?.country)
    }

    /// The oldest freshness among the person's accounts: when the least
    /// recently fetched account was fetched from WeChat; null when any of
    /// them has never been fetched (or the person has no account).
    async fn oldest_refreshed_at(&self, ctx: &Context<'_>) -> ApiResult<Option<DateTime>> {
        Ok(profile::oldest_refreshed_at(&self.current_accounts(ctx).await?).map(DateTime))
    }

    /// When union360 first saw this UnionID.
    async fn created_at(&self) -> DateTime {
        self.model.created_at.into()
    }

    /// When the person or one of their accounts last changed.
    async fn updated_at(&self) -> DateTime {
        self.model.updated_at.into()
    }
}

connection!(
    PersonConnection,
    PersonEdge,
    Person,
    person::Entity,
    "people",
    "person"
);
