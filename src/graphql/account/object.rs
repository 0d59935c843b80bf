//! The `Account` object: one user as one app sees them.

use std::sync::Arc;

use crate::graphql::scalars::DateTime;
use async_graphql::{Context, ErrorExtensions, ID, Object, SimpleObject};
use entity::account;

use crate::domain::{AppId, OpenId};
use crate::graphql::app::App;
use crate::graphql::batch::Siblings;
use crate::graphql::context::ContextExt;
use crate::graphql::enums::{ProfileSource, Sex};
use crate::graphql::error::{ApiError, ApiResult, ResultExt};
use crate::graphql::node::NodeId;
use crate::graphql::page::connection;
use crate::graphql::person::Person;
use crate::identity::read;
use crate::refresh::{RefreshPolicy, SeenAccount, freshness};

/// Why the last refresh of an account from WeChat failed. The stored profile
/// is kept as it was.
#[derive(SimpleObject)]
pub struct RefreshError {
    /// The WeChat `errcode` (for example 40003 invalid openid, 45009 daily quota,
    /// -1 system busy); null for failures without one (timeouts, unreachable).
    pub code: Option<i32>,
    /// What went wrong.
    pub message: String,
    /// When it failed.
    pub at: DateTime,
}

/// Which source set one profile field of an account.
#[derive(SimpleObject)]
pub struct FieldSource {
    /// The field (`nickname`, `avatarUrl`, `sex`, `language`, `city`, `province`, `country`).
    pub field: &'static str,
    /// Where its current value came from.
    pub source: ProfileSource,
}

/// An account, with the accounts it was fetched with (for batch loading).
pub struct Account {
    /// The account as loaded.
    pub(crate) model: account::Model,
    /// The rows loaded with it.
    pub(crate) siblings: Arc<Siblings>,
}

impl Account {
    /// Wraps rows fetched together (by the root field of `ticket`, in a query).
    pub(crate) fn batch(
        rows: Vec<account::Model>,
        policy: RefreshPolicy,
        ticket: Option<crate::graphql::round::Ticket>,
    ) -> Vec<Self> {
        let siblings = Siblings::of_accounts(&rows, policy, ticket);
        rows.into_iter()
            .map(|model| Self {
                model,
                siblings: siblings.clone(),
            })
            .collect()
    }

    /// The account as this request sees it (refreshed first when stale and
    /// asked for), and whether a wanted refresh missed the request's budget.
    async fn seen(&self, ctx: &Context<'_>) -> ApiResult<SeenAccount> {
        self.siblings.current(ctx, &self.model).await
    }

    /// The account as this request sees it.
    async fn current(&self, ctx: &Context<'_>) -> ApiResult<account::Model> {
        Ok(self.seen(ctx).await?.account)
    }

    async fn load_app(&self, ctx: &Context<'_>) -> ApiResult<entity::app::Model> {
        let state = ctx.state()?;
        ctx.request()?
            .app(state.apps(), self.model.app_id)
            .await
            .api()?
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("account without app")).extend())
    }
}

/// One user as one app sees them: an OpenID with its cached profile and follow status.
#[Object]
impl Account {
    /// The account's global id (see `Node.id`).
    pub async fn id(&self, ctx: &Context<'_>) -> async_graphql::Result<ID> {
        let appid = AppId::parse(self.load_app(ctx).await?.appid).api()?;
        let openid = OpenId::parse(self.model.openid.clone()).api()?;
        Ok(NodeId::Account(appid, openid).encode())
    }

    /// The appid of the app that issued the openid.
    async fn appid(&self, ctx: &Context<'_>) -> ApiResult<String> {
        Ok(self.load_app(ctx).await?.appid)
    }

    /// The OpenID, unique within its app.
    async fn openid(&self) -> &str {
        &self.model.openid
    }

    /// Whether the openid is a snapshot-page virtual user's (WeChat's
    /// `is_snapshotuser`, from a Moments snapshot page): a placeholder that
    /// never creates or joins a person.
    async fn snapshot_user(&self) -> bool {
        self.model.snapshot_user
    }

    /// The UnionID, once known; null while the account is unlinked.
    async fn unionid(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        Ok(self.current(ctx).await?.unionid)
    }

    /// A UnionID a source reported for this account that was refused, as an
    /// anomaly for an operator to look at: either it differs from the
    /// account's own (an account's UnionID never changes), or, on an
    /// unlinked account, its person already has another account in this app
    /// (a person has one OpenID per app). It is recorded, never applied.
    async fn unionid_conflict(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        Ok(self.current(ctx).await?.unionid_conflict)
    }

    /// The app that issued the openid.
    async fn app(&self, ctx: &Context<'_>) -> ApiResult<App> {
        Ok(App(self.load_app(ctx).await?))
    }

    /// The person (UnionID) this account belongs to; null while unlinked.
    async fn person(&self, ctx: &Context<'_>) -> ApiResult<Option<Person>> {
        let Some(person_id) = self.current(ctx).await?.person_id else {
            return Ok(None);
        };
        let db = ctx.state()?.db();
        if let Some(person) = self.siblings.person(db, person_id).await.api()? {
            return Ok(Some(Person::new(person, self.siblings.clone())));
        }
        // Linked by this request's refresh: not among the siblings' persons.
        let person = read::person_by_id(db, person_id).await.api()?;
        Ok(person.map(|p| Person::batch(vec![p], RefreshPolicy::CacheOnly, None).remove(0)))
    }

    /// Whether the user follows this official account; null when unknown or not an official account.
    async fn following(&self, ctx: &Context<'_>) -> ApiResult<Option<bool>> {
        Ok(self.current(ctx).await?.subscribed)
    }

    /// The operator's remark on this user.
    async fn remark(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        Ok(self.current(ctx).await?.remark)
    }

    /// When the user last followed this official account (WeChat's
    /// `subscribe_time`); null when unknown or never fetched.
    async fn followed_at(&self, ctx: &Context<'_>) -> ApiResult<Option<DateTime>> {
        Ok(self.current(ctx).await?.subscribe_time.map(DateTime))
    }

    /// When union360 last saw the user stop following this official account
    /// (a follower sync that no longer listed them, or WeChat saying so);
    /// null when never seen.
    async fn unfollowed_at(&self, ctx: &Context<'_>) -> ApiResult<Option<DateTime>> {
        Ok(self.current(ctx).await?.unfollowed_at.map(DateTime))
    }

    /// How the user came to follow, as WeChat names it (`subscribe_scene`:
    /// `ADD_SCENE_SEARCH`, `ADD_SCENE_QR_CODE`, `ADD_SCENE_PROFILE_CARD`,
    /// `ADD_SCENE_PAID`, `ADD_SCENE_OTHERS`, …); null when unknown.
    async fn follow_scene(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        Ok(self.current(ctx).await?.subscribe_scene)
    }

    /// The numeric scene of the parametric QR code the user followed through
    /// (`qr_scene`); null when they did not follow through one.
    async fn qr_scene(&self, ctx: &Context<'_>) -> ApiResult<Option<i32>> {
        Ok(self
            .current(ctx)
            .await?
            .qr_scene
            .and_then(|s| i32::try_from(s).ok()))
    }

    /// The string scene of that QR code (`qr_scene_str`); null when none.
    async fn qr_scene_str(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        Ok(self.current(ctx).await?.qr_scene_str)
    }

    /// The ids of the official account's tags the user carries (`tagid_list`),
    /// as of the last refresh; empty when none or never fetched.
    async fn tag_ids(&self, ctx: &Context<'_>) -> ApiResult<Vec<i32>> {
        let ids: Vec<i64> = self
            .current(ctx)
            .await?
            .tag_ids
            .and_then(|json| serde_json::from_value(json).ok())
            .unwrap_or_default();
        Ok(ids
            .into_iter()
            .filter_map(|id| i32::try_from(id).ok())
            .collect())
    }

    /// Nickname.
    async fn nickname(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        Ok(self.current(ctx).await?.nickname)
    }

    /// Avatar URL.
    async fn avatar_url(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        Ok(self.current(ctx).await?.avatar_url)
    }

    /// Sex, when known.
    async fn sex(&self, ctx: &Context<'_>) -> ApiResult<Option<Sex>> {
        Ok(Sex::from_code(self.current(ctx).await?.sex))
    }

    /// Language (for example `zh_CN`).
    async fn language(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        Ok(self.current(ctx).await?.language)
    }

    /// City.
    async fn city(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        Ok(self.current(ctx).await?.city)
    }

    /// Province.
    async fn province(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        Ok(self.current(ctx).await?.province)
    }

    /// Country.
    async fn country(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        Ok(self.current(ctx).await?.country)
    }

    /// Where each set profile field came from; null, with a `FORBIDDEN`
    /// error, for an API key without the `pii` scope (which fields are set
    /// is personal too).
    async fn field_sources(&self, ctx: &Context<'_>) -> ApiResult<Option<Vec<FieldSource>>> {
        let m = self.current(ctx).await?;
        Ok(Some(
            [
                ("nickname", &m.nickname_source),
                ("avatarUrl", &m.avatar_url_source),
                ("sex", &m.sex_source),
                ("language", &m.language_source),
                ("city", &m.city_source),
                ("province", &m.province_source),
                ("country", &m.country_source),
            ]
            .into_iter()
            .filter_map(|(field, source)| {
                let source = crate::domain::ProfileSource::from_stored(source.as_deref()?)?;
                Some(FieldSource {
                    field,
                    source: source.into(),
                })
            })
            .collect(),
        ))
    }

    /// When the profile was last fetched from WeChat; null when never.
    async fn refreshed_at(&self, ctx: &Context<'_>) -> ApiResult<Option<DateTime>> {
        Ok(self.current(ctx).await?.refreshed_at.map(DateTime))
    }

    /// Whether union360 refreshes this account from WeChat: only official
    /// accounts have `user/info`; accounts of other apps keep what sign-in and
    /// imports gave them.
    async fn refreshable(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        Ok(freshness::refreshable(&self.load_app(ctx).await?))
    }

    /// Whether the profile is older than its app's freshness TTL (or was never
    /// fetched). Official accounts are refreshed from WeChat; accounts of other
    /// kinds keep what sign-in and imports gave them and stay stale.
    async fn stale(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        let app = self.load_app(ctx).await?;
        let account = self.current(ctx).await?;
        Ok(ctx.state()?.refresher().is_stale(&account, &app))
    }

    /// The last failed refresh from WeChat, when the last attempt failed.
    async fn refresh_error(&self, ctx: &Context<'_>) -> ApiResult<Option<RefreshError>> {
        let SeenAccount {
            account: m,
            missed_budget,
        } = self.seen(ctx).await?;
        if missed_budget {
            let state = ctx.state()?;
            let budget = state.refresher().settings().budget.as_millis();
            return Ok(Some(RefreshError {
                code: None,
                message: format!(
                    "WeChat did not answer within this request's refresh budget ({budget} ms); the refresh goes on in the background"
                ),
                at: state.now().into(),
            }));
        }
        Ok(m.refresh_error_message
            .zip(m.refresh_error_at)
            .map(|(message, at)| RefreshError {
                code: m.refresh_error_code,
                message,
                at: at.into(),
            }))
    }

    /// When union360 first stored this account.
    async fn created_at(&self) -> DateTime {
        self.model.created_at.into()
    }

    /// When this account last changed.
    async fn updated_at(&self, ctx: &Context<'_>) -> ApiResult<DateTime> {
        Ok(self.current(ctx).await?.updated_at.into())
    }
}

connection!(
    AccountConnection,
    AccountEdge,
    Account,
    account::Entity,
    "accounts",
    "account"
);
