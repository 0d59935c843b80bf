//! `upsertAccounts`: backfills from an existing CRM through the identity service.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject};

use super::object::Account;
use crate::domain::{AppId, OpenId, ParseError, ProfileSource, UnionId};
use crate::graphql::context::ContextExt;
use crate::graphql::enums::{RefreshPolicy, Sex};
use crate::graphql::error::{ApiError, ApiResult, ResultExt};
use crate::graphql::limits::cost;
use crate::identity::{self, AccountUpsert, Follow, Outcome, Profile, UpsertResult};

/// One account to create or update, as a CRM backfill knows it.
#[derive(InputObject)]
pub struct AccountInput {
    /// The appid of the app that issued the openid (must be registered).
    pub appid: String,
    /// The OpenID within that app.
    pub openid: String,
    /// The UnionID, when known. Links the account to the person with this
    /// UnionID, created if needed. Refused (and recorded) when the account
    /// already has a different one, or when that person already has another
    /// account in this app.
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
        let at = |e: ParseError| ApiError::BadUserInput(format!("row {index}: {e}"));
        Ok(AccountUpsert {
            appid: AppId::parse(self.appid).map_err(at)?,
            openid: OpenId::parse(self.openid).map_err(at)?,
            unionid: self.unionid.map(UnionId::parse).transpose().map_err(at)?,
            snapshot_user: false,
            profile: Profile {
                nickname: self.nickname,
                avatar_url: self.avatar_url,
                sex: self.sex.map(Sex::code),
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
    /// The row's UnionID was refused; `reason` says why, and the account
    /// records it as `unionidConflict`. The rest of the row (profile, follow
    /// status) applied, and the account was created if it was new.
    Refused,
}

/// Why a row was refused.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    /// The row's UnionID differs from the account's. An account's UnionID
    /// never changes; the conflict is recorded on the account (`unionidConflict`).
    UnionidConflict,
    /// The person with the row's UnionID already has another account in this
    /// app, and a person has one account (one OpenID) per app. The account is
    /// not linked; the UnionID is recorded on it (`unionidConflict`).
    SecondAccountInApp,
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
    /// CRM. All or nothing: if any row is invalid (malformed id, the same
    /// account twice), the call fails with BAD_USER_INPUT, and if a row names
    /// an app that is not registered, with NOT_FOUND; nothing is written then.
    /// A row whose UnionID conflicts with the stored one, or whose UnionID's
    /// person already has another account in the row's app, has its UnionID
    /// refused individually (outcome REFUSED, with the reason) while the
    /// others apply.
    #[graphql(complexity = "cost::rows(input.len(), child_complexity)")]
    async fn upsert_accounts(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The accounts, at most 1,000.")] input: Vec<AccountInput>,
    ) -> ApiResult<UpsertAccountsPayload> {
        let state = ctx.state()?;
        if input.len() > identity::MAX_UPSERT_BATCH {
            return Err(identity::IdentityError::TooMany(input.len())).api();
        }
        let rows = input
            .into_iter()
            .enumerate()
            .map(|(i, row)| row.parse(i))
            .collect::<Result<Vec<_>, _>>()
            .api()?;
        let now = state.now();
        let results = identity::upsert_accounts(state.db(), rows, ProfileSource::Import, now)
            .await
            .api()?;
        state.events().accounts(&results, now);
        Ok(UpsertAccountsPayload::from(results))
    }
}

impl From<Vec<UpsertResult>> for UpsertAccountsPayload {
    fn from(results: Vec<UpsertResult>) -> Self {
        let count = |o: Outcome| results.iter().filter(|r| r.outcome == o).count() as i32;
        let payload = Self {
            created: count(Outcome::Created),
            linked: count(Outcome::Linked),
            updated: count(Outcome::Updated),
            unchanged: count(Outcome::Unchanged),
            refused: count(Outcome::RefusedUnionidConflict)
                + count(Outcome::RefusedSecondAccountInApp),
            persons_created: results.iter().filter(|r| r.person_created).count() as i32,
            results: Vec::new(),
        };
        let accounts = Account::batch(
            results.iter().map(|r| r.account.clone()).collect(),
            RefreshPolicy::CacheOnly.into(),
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
                        Outcome::RefusedSecondAccountInApp => (
                            UpsertOutcome::Refused,
                            Some(RefusalReason::SecondAccountInApp),
                        ),
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
