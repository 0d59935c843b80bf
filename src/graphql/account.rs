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
use crate::apps;
use crate::domain::{AppId, OpenId, ProfileSource, UnionId};
use crate::identity::{self, AccountUpsert, Follow, Outcome, Profile};
use crate::state::AppState;
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
    /// Wraps rows fetched together.
    pub(crate) fn batch(rows: Vec<account::Model>) -> Vec<Self> {
        let siblings = Siblings::of_accounts(&rows);
        rows.into_iter()
            .map(|r| Self(r, siblings.clone()))
            .collect()
    }

    async fn load_app(&self, ctx: &Context<'_>) -> ApiResult<entity::app::Model> {
        let state = ctx.data::<AppState>()?;
        let apps = ctx.data::<RequestCache>()?.apps(state.db()).await.api()?;
        apps.get(&self.0.app_id)
            .cloned()
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
    async fn unionid(&self) -> Option<&str> {
        self.0.unionid.as_deref()
    }

    /// A different UnionID that a source reported for this account later. An
    /// account's UnionID never changes, so this is recorded as an anomaly for
    /// an operator to look at; it is not applied.
    async fn unionid_conflict(&self) -> Option<&str> {
        self.0.unionid_conflict.as_deref()
    }

    /// The app that issued the openid.
    async fn app(&self, ctx: &Context<'_>) -> ApiResult<App> {
        Ok(App(self.load_app(ctx).await?))
    }

    /// The person (UnionID) this account belongs to; null while unlinked.
    async fn person(&self, ctx: &Context<'_>) -> ApiResult<Option<Person>> {
        let Some(person_id) = self.0.person_id else {
            return Ok(None);
        };
        let state = ctx.data::<AppState>()?;
        let person = self.1.person(state.db(), person_id).await.api()?;
        Ok(person.map(|p| Person(p, self.1.clone())))
    }

    /// Whether the user follows this official account; null when unknown or not an official account.
    async fn following(&self) -> Option<bool> {
        self.0.subscribed
    }

    /// The operator's remark on this user.
    async fn remark(&self) -> Option<&str> {
        self.0.remark.as_deref()
    }

    /// Nickname.
    async fn nickname(&self) -> Option<&str> {
        self.0.nickname.as_deref()
    }

    /// Avatar URL.
    async fn avatar_url(&self) -> Option<&str> {
        self.0.avatar_url.as_deref()
    }

    /// Sex, when known.
    async fn sex(&self) -> Option<Sex> {
        Sex::from_code(self.0.sex)
    }

    /// Language (for example `zh_CN`).
    async fn language(&self) -> Option<&str> {
        self.0.language.as_deref()
    }

    /// City.
    async fn city(&self) -> Option<&str> {
        self.0.city.as_deref()
    }

    /// Province.
    async fn province(&self) -> Option<&str> {
        self.0.province.as_deref()
    }

    /// Country.
    async fn country(&self) -> Option<&str> {
        self.0.country.as_deref()
    }

    /// Where each set profile field came from.
    async fn field_sources(&self) -> Vec<FieldSource> {
        let m = &self.0;
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
            let source = ProfileSource::from_stored(source.as_deref()?)?;
            Some(FieldSource { field, source })
        })
        .collect()
    }

    /// When the profile was last fetched from WeChat; null when never.
    async fn refreshed_at(&self) -> Option<DateTime<Utc>> {
        self.0.refreshed_at
    }

    /// When union360 first stored this account.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// When this account last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
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
    ) -> ApiResult<Option<Account>> {
        let state = ctx.data::<AppState>()?;
        let appid = AppId::parse(appid).api()?;
        let openid = OpenId::parse(openid).api()?;
        let app = apps::find(state.db(), &appid)
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
        Ok(found.map(|a| Account(a.clone(), Siblings::of_accounts(&[a]))))
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
    ) -> ApiResult<AccountConnection> {
        let state = ctx.data::<AppState>()?;
        let args = PageArgs::parse("account", first, after.as_deref()).api()?;
        let appid = AppId::parse(appid).api()?;
        let app = apps::find(state.db(), &appid)
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
            edges: Account::batch(rows)
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
            identity::upsert_accounts(state.db(), rows, ProfileSource::Import, Utc::now())
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
        let accounts = Account::batch(results.iter().map(|r| r.account.clone()).collect());
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
