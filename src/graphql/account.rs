//! Accounts in the API: one user as one app sees them.

use async_graphql::{Context, Enum, ErrorExtensions, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::account;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::app::App;
use super::error::{ApiError, ApiResult, ResultExt};
use super::loaders::{RequestCache, Siblings};
use super::page::{self, PageArgs, connection};
use super::person::Person;
use super::round::{self, Ticket};
use crate::domain::{AppId, OpenId, ProfileSource, UnionId};
use crate::identity::{self, AccountUpsert, Follow, Outcome, Profile};
use crate::refresh::RefreshPolicy;
use crate::state::AppState;
use crate::{apps, refresh};
use std::sync::Arc;

/// Sex as WeChat reports it. WeChat has stopped sending it in `user/info`
/// since 2021, so it is usually known only from sign-in or imports.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum Sex {
    /// WeChat code 1.
    Male,
    /// WeChat code 2.
    Female,
}

impl Sex {
    pub(crate) fn from_code(code: Option<i32>) -> Option<Self> {
        match code {
            Some(1) => Some(Self::Male),
            Some(2) => Some(Self::Female),
            _ => None,
        }
    }

    fn code(this: Option<Self>) -> i32 {
        match this {
            Some(Self::Male) => 1,
            Some(Self::Female) => 2,
            None => 0,
        }
    }
}

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
    pub at: DateTime<Utc>,
}

/// Which source set one profile field of an account.
#[derive(SimpleObject)]
pub struct FieldSource {
    /// The field (`nickname`, `avatarUrl`, `sex`, `language`, `city`, `province`, `country`).
    pub field: &'static str,
    /// Where its current value came from.
    pub source: ProfileSource,
}

/// An account with the accounts it was fetched with (for batch loading).
pub struct Account(pub(crate) account::Model, pub(crate) Arc<Siblings>);

impl Account {
    /// Wraps rows fetched together (by the root field of `ticket`, in a query).
    pub(crate) fn batch(
        rows: Vec<account::Model>,
        policy: RefreshPolicy,
        ticket: Option<Ticket>,
    ) -> Vec<Self> {
        let siblings = Siblings::of_accounts(&rows, policy, ticket);
        rows.into_iter()
            .map(|r| Self(r, siblings.clone()))
            .collect()
    }

    /// The account as this request sees it (refreshed first when stale and asked
    /// for), and whether a wanted refresh missed the request's budget.
    async fn current(&self, ctx: &Context<'_>) -> ApiResult<(account::Model, bool)> {
        self.1.current(ctx, &self.0).await
    }

    async fn load_app(&self, ctx: &Context<'_>) -> ApiResult<entity::app::Model> {
        let state = ctx.data::<AppState>()?;
        let cache = ctx.data::<RequestCache>()?;
        cache
            .app(state, self.0.app_id)
            .await
            .api()?
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("account without app")).extend())
    }
}

/// One user as one app sees them: an OpenID with its cached profile and follow status.
#[Object]
impl Account {
    /// The appid of the app that issued the openid.
    async fn appid(&self, ctx: &Context<'_>) -> ApiResult<String> {
        Ok(self.load_app(ctx).await?.appid)
    }

    /// The OpenID, unique within its app.
    async fn openid(&self) -> &str {
        &self.0.openid
    }

    /// The UnionID, once known; null while the account is unlinked.
    async fn unionid(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        let (m, _) = self.current(ctx).await?;
        Ok(m.unionid)
    }

    /// A different UnionID that a source reported for this account later. An
    /// account's UnionID never changes, so this is recorded as an anomaly for
    /// an operator to look at; it is not applied.
    async fn unionid_conflict(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        let (m, _) = self.current(ctx).await?;
        Ok(m.unionid_conflict)
    }

    /// The app that issued the openid.
    async fn app(&self, ctx: &Context<'_>) -> ApiResult<App> {
        Ok(App(self.load_app(ctx).await?))
    }

    /// The person (UnionID) this account belongs to; null while unlinked.
    async fn person(&self, ctx: &Context<'_>) -> ApiResult<Option<Person>> {
        let (m, _) = self.current(ctx).await?;
        let Some(person_id) = m.person_id else {
            return Ok(None);
        };
        let state = ctx.data::<AppState>()?;
        if let Some(person) = self.1.person(state.db(), person_id).await.api()? {
            return Ok(Some(Person(person, self.1.clone())));
        }
        // Linked by this request's refresh: not among the siblings' persons.
        let person = entity::person::Entity::find_by_id(person_id)
            .one(state.db())
            .await
            .api()?;
        Ok(person.map(|p| {
            Person(
                p.clone(),
                Siblings::of_persons(&[p], RefreshPolicy::CacheOnly, None),
            )
        }))
    }

    /// Whether the user follows this official account; null when unknown or not an official account.
    async fn following(&self, ctx: &Context<'_>) -> ApiResult<Option<bool>> {
        let (m, _) = self.current(ctx).await?;
        Ok(m.subscribed)
    }

    /// The operator's remark on this user.
    async fn remark(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        let (m, _) = self.current(ctx).await?;
        Ok(m.remark)
    }

    /// When the user last followed this official account (WeChat's
    /// `subscribe_time`); null when unknown or never fetched.
    async fn followed_at(&self, ctx: &Context<'_>) -> ApiResult<Option<DateTime<Utc>>> {
        let (m, _) = self.current(ctx).await?;
        Ok(m.subscribe_time)
    }

    /// How the user came to follow, as WeChat names it (`subscribe_scene`:
    /// `ADD_SCENE_SEARCH`, `ADD_SCENE_QR_CODE`, `ADD_SCENE_PROFILE_CARD`,
    /// `ADD_SCENE_PAID`, `ADD_SCENE_OTHERS`, …); null when unknown.
    async fn follow_scene(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        let (m, _) = self.current(ctx).await?;
        Ok(m.subscribe_scene)
    }

    /// The numeric scene of the parametric QR code the user followed through
    /// (`qr_scene`); null when they did not follow through one.
    async fn qr_scene(&self, ctx: &Context<'_>) -> ApiResult<Option<i32>> {
        let (m, _) = self.current(ctx).await?;
        Ok(m.qr_scene.and_then(|s| i32::try_from(s).ok()))
    }

    /// The string scene of that QR code (`qr_scene_str`); null when none.
    async fn qr_scene_str(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        let (m, _) = self.current(ctx).await?;
        Ok(m.qr_scene_str)
    }

    /// The ids of the official account's tags the user carries (`tagid_list`),
    /// as of the last refresh; empty when none or never fetched.
    async fn tag_ids(&self, ctx: &Context<'_>) -> ApiResult<Vec<i32>> {
        let (m, _) = self.current(ctx).await?;
        let ids: Vec<i64> = m
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
        let (m, _) = self.current(ctx).await?;
        Ok(m.nickname)
    }

    /// Avatar URL.
    async fn avatar_url(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        let (m, _) = self.current(ctx).await?;
        Ok(m.avatar_url)
    }

    /// Sex, when known.
    async fn sex(&self, ctx: &Context<'_>) -> ApiResult<Option<Sex>> {
        let (m, _) = self.current(ctx).await?;
        Ok(Sex::from_code(m.sex))
    }

    /// Language (for example `zh_CN`).
    async fn language(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        let (m, _) = self.current(ctx).await?;
        Ok(m.language)
    }

    /// City.
    async fn city(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        let (m, _) = self.current(ctx).await?;
        Ok(m.city)
    }

    /// Province.
    async fn province(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        let (m, _) = self.current(ctx).await?;
        Ok(m.province)
    }

    /// Country.
    async fn country(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        let (m, _) = self.current(ctx).await?;
        Ok(m.country)
    }

    /// Where each set profile field came from.
    async fn field_sources(&self, ctx: &Context<'_>) -> ApiResult<Vec<FieldSource>> {
        let (m, _) = self.current(ctx).await?;
        Ok([
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
            let source = ProfileSource::from_stored(source.as_deref()?)?;
            Some(FieldSource { field, source })
        })
        .collect())
    }

    /// When the profile was last fetched from WeChat; null when never.
    async fn refreshed_at(&self, ctx: &Context<'_>) -> ApiResult<Option<DateTime<Utc>>> {
        let (m, _) = self.current(ctx).await?;
        Ok(m.refreshed_at)
    }

    /// Whether union360 refreshes this account from WeChat: only official
    /// accounts have `user/info`; accounts of other apps keep what sign-in and
    /// imports gave them.
    async fn refreshable(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        let app = self.load_app(ctx).await?;
        Ok(apps::kind_of(&app) == Some(crate::domain::AppKind::OfficialAccount))
    }

    /// Whether the profile is older than its app's freshness TTL (or was never
    /// fetched). Official accounts are refreshed from WeChat; accounts of other
    /// kinds keep what sign-in and imports gave them and stay stale.
    async fn stale(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        let state = ctx.data::<AppState>()?;
        let app = self.load_app(ctx).await?;
        let (m, _) = self.current(ctx).await?;
        let ttl = refresh::ttl_of(&app, state.settings().freshness_ttl());
        Ok(refresh::is_stale(m.refreshed_at, ttl, state.now()))
    }

    /// The last failed refresh from WeChat, when the last attempt failed.
    async fn refresh_error(&self, ctx: &Context<'_>) -> ApiResult<Option<RefreshError>> {
        let (m, missed) = self.current(ctx).await?;
        if missed {
            let budget = ctx.data::<AppState>()?.settings().server.refresh_budget_ms;
            return Ok(Some(RefreshError {
                code: None,
                message: format!(
                    "WeChat did not answer within this request's refresh budget ({budget} ms); the refresh goes on in the background"
                ),
                at: Utc::now(),
            }));
        }
        Ok(m.refresh_error_message
            .zip(m.refresh_error_at)
            .map(|(message, at)| RefreshError {
                code: m.refresh_error_code,
                message,
                at,
            }))
    }

    /// When union360 first stored this account.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// When this account last changed.
    async fn updated_at(&self, ctx: &Context<'_>) -> ApiResult<DateTime<Utc>> {
        let (m, _) = self.current(ctx).await?;
        Ok(m.updated_at)
    }
}

connection!(
    AccountConnection,
    AccountEdge,
    Account,
    account::Entity,
    "accounts"
);

/// Narrows a list of accounts. All given conditions must hold.
#[derive(InputObject, Default)]
pub struct AccountFilter {
    /// true: only accounts with a known UnionID; false: only unlinked ones.
    pub has_unionid: Option<bool>,
    /// true: only users who follow the app; false: only those known not to.
    pub following: Option<bool>,
    /// Only accounts changed at or after this time.
    pub updated_since: Option<DateTime<Utc>>,
}

/// Queries about accounts.
#[derive(Default)]
pub struct AccountQuery;

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
        let state = ctx.data::<AppState>()?;
        let appid = AppId::parse(appid).api()?;
        let openid = OpenId::parse(openid).api()?;
        let app = state
            .apps()
            .by_appid(state.db(), &appid)
            .await
            .api()?
            .ok_or_else(|| ApiError::NotFound(format!("app {appid} is not registered")))
            .api()?;
        let found = account::Entity::find()
            .filter(account::Column::AppId.eq(app.id))
            .filter(account::Column::Openid.eq(openid.as_str()))
            .one(state.db())
            .await
            .api()?;
        let policy = refresh.unwrap_or_default();
        Ok(Account::batch(found.into_iter().collect(), policy, round::ticket(ctx)).pop())
    }

    /// The accounts of one app, in the order union360 first saw them.
    async fn accounts(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The appid whose accounts to list.")] appid: String,
        #[graphql(desc = "Page size (default 20, at most 100).")] first: Option<i32>,
        #[graphql(desc = "Cursor to continue after (`pageInfo.endCursor` of the previous page).")]
        after: Option<String>,
        #[graphql(desc = "Conditions the accounts must meet.")] filter: Option<AccountFilter>,
        #[graphql(
            desc = "How to handle stale profiles: IF_STALE (the default), CACHE_ONLY or FORCE."
        )]
        refresh: Option<RefreshPolicy>,
    ) -> ApiResult<AccountConnection> {
        let state = ctx.data::<AppState>()?;
        let args = PageArgs::parse("account", first, after.as_deref()).api()?;
        let appid = AppId::parse(appid).api()?;
        let app = state
            .apps()
            .by_appid(state.db(), &appid)
            .await
            .api()?
            .ok_or_else(|| ApiError::NotFound(format!("app {appid} is not registered")))
            .api()?;
        let filter = filter.unwrap_or_default();
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
        let (rows, has_next) = page::fetch(state.db(), select.clone(), account::Column::Id, args)
            .await
            .api()?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        Ok(AccountConnection {
            page_info: page::page_info("account", &ids, has_next, args),
            edges: Account::batch(rows, refresh.unwrap_or_default(), round::ticket(ctx))
                .into_iter()
                .map(|node| AccountEdge {
                    cursor: page::encode_cursor("account", node.0.id),
                    node,
                })
                .collect(),
            total: select,
        })
    }
}

/// One account to create or update, as a CRM backfill knows it.
#[derive(InputObject)]
pub struct AccountInput {
    /// The appid of the app that issued the openid (must be registered).
    pub appid: String,
    /// The OpenID within that app.
    pub openid: String,
    /// The UnionID, when known. Links the account to the person with this
    /// UnionID, created if needed. Refused (and recorded) when the account
    /// already has a different one.
    pub unionid: Option<String>,
    /// Nickname. An empty string clears a nickname that an import set, and
    /// never one that another source set.
    pub nickname: Option<String>,
    /// Avatar URL (same empty-value rule as nickname).
    pub avatar_url: Option<String>,
    /// Sex.
    pub sex: Option<Sex>,
    /// Language (for example `zh_CN`).
    pub language: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Province.
    pub province: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// Whether the user follows the (official account) app.
    pub following: Option<bool>,
    /// The operator's remark.
    pub remark: Option<String>,
}

impl AccountInput {
    fn parse(self, index: usize) -> Result<AccountUpsert, ApiError> {
        let at = |e: crate::domain::ParseError| ApiError::BadUserInput(format!("row {index}: {e}"));
        Ok(AccountUpsert {
            appid: AppId::parse(self.appid).map_err(at)?,
            openid: OpenId::parse(self.openid).map_err(at)?,
            unionid: self.unionid.map(UnionId::parse).transpose().map_err(at)?,
            profile: Profile {
                nickname: self.nickname,
                avatar_url: self.avatar_url,
                sex: self.sex.map(|s| Sex::code(Some(s))),
                language: self.language,
                city: self.city,
                province: self.province,
                country: self.country,
            },
            follow: Follow {
                subscribed: self.following,
                remark: self.remark,
                ..Follow::default()
            },
            refreshed: false,
        })
    }
}

/// What an upsert did to one account.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum UpsertOutcome {
    /// The account was new.
    Created,
    /// The account existed and is now linked to a person.
    Linked,
    /// The account existed and some value changed.
    Updated,
    /// The account existed and nothing changed.
    Unchanged,
    /// The row was refused; `reason` says why. Nothing of it was applied.
    Refused,
}

/// Why a row was refused.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    /// The row's UnionID differs from the account's. An account's UnionID
    /// never changes; the conflict is recorded on the account (`unionidConflict`).
    UnionidConflict,
}

/// The result for one input row.
#[derive(SimpleObject)]
pub struct UpsertAccountResult {
    /// Position of the row in the input list (from 0).
    pub index: i32,
    /// What happened to the account.
    pub outcome: UpsertOutcome,
    /// Why the row was refused, when it was.
    pub reason: Option<RefusalReason>,
    /// Whether this row's UnionID created a new person.
    pub person_created: bool,
    /// The account as stored after the call.
    pub account: Account,
}

/// The result of `upsertAccounts`.
#[derive(SimpleObject)]
pub struct UpsertAccountsPayload {
    /// One result per input row, in input order.
    pub results: Vec<UpsertAccountResult>,
    /// How many accounts were created.
    pub created: i32,
    /// How many existing accounts were linked to a person.
    pub linked: i32,
    /// How many existing accounts changed otherwise.
    pub updated: i32,
    /// How many accounts were already as given.
    pub unchanged: i32,
    /// How many rows were refused.
    pub refused: i32,
    /// How many new persons the call created.
    pub persons_created: i32,
}

/// Mutations of accounts.
#[derive(Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
    /// Creates or updates up to 1,000 accounts, for backfills from an existing
    /// CRM. All or nothing: if any row is invalid (unknown app, malformed id,
    /// the same account twice), the call fails with BAD_USER_INPUT and nothing
    /// is written. Rows whose UnionID conflicts with the stored one are
    /// refused individually (outcome REFUSED) while the others apply.
    async fn upsert_accounts(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The accounts, at most 1,000.")] input: Vec<AccountInput>,
    ) -> ApiResult<UpsertAccountsPayload> {
        let state = ctx.data::<AppState>()?;
        if input.len() > identity::MAX_UPSERT_BATCH {
            return Err(ApiError::BadUserInput(format!(
                "at most {} accounts per call, got {}",
                identity::MAX_UPSERT_BATCH,
                input.len()
            ))
            .extend());
        }
        let rows = input
            .into_iter()
            .enumerate()
            .map(|(i, row)| row.parse(i))
            .collect::<Result<Vec<_>, _>>()
            .api()?;
        let results =
            identity::upsert_accounts(state.db(), rows, ProfileSource::Import, state.now())
                .await
                .api()?;
        Ok(UpsertAccountsPayload::from(results))
    }
}

impl From<Vec<identity::UpsertResult>> for UpsertAccountsPayload {
    fn from(results: Vec<identity::UpsertResult>) -> Self {
        let count = |o: Outcome| results.iter().filter(|r| r.outcome == o).count() as i32;
        let payload = Self {
            created: count(Outcome::Created),
            linked: count(Outcome::Linked),
            updated: count(Outcome::Updated),
            unchanged: count(Outcome::Unchanged),
            refused: count(Outcome::RefusedUnionidConflict),
            persons_created: results.iter().filter(|r| r.person_created).count() as i32,
            results: Vec::new(),
        };
        let accounts = Account::batch(
            results.iter().map(|r| r.account.clone()).collect(),
            RefreshPolicy::CacheOnly,
            None,
        );
        Self {
            results: results
                .into_iter()
                .zip(accounts)
                .map(|(r, account)| {
                    let (outcome, reason) = match r.outcome {
                        Outcome::Created => (UpsertOutcome::Created, None),
                        Outcome::Linked => (UpsertOutcome::Linked, None),
                        Outcome::Updated => (UpsertOutcome::Updated, None),
                        Outcome::Unchanged => (UpsertOutcome::Unchanged, None),
                        Outcome::RefusedUnionidConflict => {
                            (UpsertOutcome::Refused, Some(RefusalReason::UnionidConflict))
                        }
                    };
                    UpsertAccountResult {
                        index: r.index as i32,
                        outcome,
                        reason,
                        person_created: r.person_created,
                        account,
                    }
                })
                .collect(),
            ..payload
        }
    }
}

/// One account by app and openid.
#[derive(InputObject)]
pub struct AccountKey {
    /// The appid.
    pub appid: String,
    /// The openid within that app.
    pub openid: String,
}

/// What `refreshAccounts` did.
#[derive(SimpleObject)]
pub struct RefreshAccountsPayload {
    /// Accounts fetched from WeChat and written.
    pub fetched: i32,
    /// Accounts whose fetch failed; each carries its `refreshError`, and its stored profile is kept.
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
    /// mutation: it is counted and recorded on each account. Unknown accounts
    /// fail the call with BAD_USER_INPUT.
    async fn refresh_accounts(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The accounts to refresh.")] keys: Vec<AccountKey>,
    ) -> ApiResult<RefreshAccountsPayload> {
        let state = ctx.data::<AppState>()?;
        if keys.len() > identity::MAX_UPSERT_BATCH {
            return Err(ApiError::BadUserInput(format!(
                "at most {} accounts per call",
                identity::MAX_UPSERT_BATCH
            ))
            .extend());
        }
        let accounts = find_accounts(state, keys).await?;
        let report = refresh::refresh_accounts(state, &accounts).await.api()?;
        let ids: Vec<i64> = accounts.iter().map(|a| a.id).collect();
        let mut reloaded: std::collections::HashMap<i64, account::Model> = account::Entity::find()
            .filter(account::Column::Id.is_in(ids.iter().copied()))
            .all(state.db())
            .await
            .api()?
            .into_iter()
            .map(|a| (a.id, a))
            .collect();
        let ordered = ids.iter().filter_map(|id| reloaded.remove(id)).collect();
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        Ok(RefreshAccountsPayload {
            fetched: count(report.fetched),
            failed: count(report.failed),
            invalid: count(report.invalid),
            skipped: count(report.skipped),
            accounts: Account::batch(ordered, RefreshPolicy::CacheOnly, None),
        })
    }
}

/// Finds the accounts of `keys`, in order; unknown apps or accounts are a BAD_USER_INPUT.
async fn find_accounts(state: &AppState, keys: Vec<AccountKey>) -> ApiResult<Vec<account::Model>> {
    let apps: std::collections::HashMap<String, i64> = apps::list(state.db())
        .await
        .api()?
        .into_iter()
        .map(|a| (a.appid, a.id))
        .collect();
    let mut wanted = Vec::with_capacity(keys.len());
    for key in keys {
        let app_id = *apps.get(&key.appid).ok_or_else(|| {
            ApiError::BadUserInput(format!("app {} is not registered", key.appid)).extend()
        })?;
        wanted.push((app_id, key));
    }
    let pairs: Vec<(i64, &str)> = wanted
        .iter()
        .map(|(id, key)| (*id, key.openid.as_str()))
        .collect();
    let found: std::collections::HashMap<(i64, String), account::Model> = if pairs.is_empty() {
        Default::default()
    } else {
        account::Entity::find()
            .filter(identity::account_keys(&pairs))
            .all(state.db())
            .await
            .api()?
            .into_iter()
            .map(|a| ((a.app_id, a.openid.clone()), a))
            .collect()
    };
    wanted
        .into_iter()
        .map(|(app_id, key)| {
            found
                .get(&(app_id, key.openid.clone()))
                .cloned()
                .ok_or_else(|| {
                    ApiError::BadUserInput(format!(
                        "no account {} in app {}",
                        key.openid, key.appid
                    ))
                    .extend()
                })
        })
        .collect()
}
