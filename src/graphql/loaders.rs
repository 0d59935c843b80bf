//! Batch loading without N+1, and without timers.
//!
//! Rows that one resolver fetched together (a page of people, a page of
//! accounts, the accounts of those people) share a [`Siblings`] value. The
//! first time any of them needs a relation, the relation is loaded for all
//! of them with one `IN (…)` statement, behind a once-cell, so concurrent
//! resolvers wait for that one statement instead of issuing their own. The
//! number of statements of a query therefore depends on its shape, never on
//! the page size or on timing. Apps are few and are loaded whole, once per
//! request ([`RequestCache`]). Stale profiles are refreshed the same way,
//! for the whole query at once: see [`super::round`].

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use async_graphql::Context;
use entity::{account, app, person};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::error::ResultExt;
use super::round::{Round, Ticket};
use crate::apps::AppsById;
use crate::domain::AppKind;
use crate::refresh::{self, RefreshPolicy};
use crate::state::AppState;

/// Per-request caches.
#[derive(Default)]
pub struct RequestCache {
    apps: OnceCell<Arc<AppsById>>,
    round: Arc<Round>,
    deadline: OnceLock<Instant>,
}

impl RequestCache {
    /// Every app by id, as the request first saw them (from the process's
    /// in-memory copy).
    pub async fn apps(&self, state: &AppState) -> Result<&Arc<AppsById>, DbErr> {
        self.apps
            .get_or_try_init(|| state.apps().get(state.db()))
            .await
    }

    /// App `id`; one registered since the request's copy was taken is
    /// found by reloading the apps.
    pub async fn app(&self, state: &AppState, id: i64) -> Result<Option<app::Model>, DbErr> {
        if let Some(app) = self.apps(state).await?.get(&id) {
            return Ok(Some(app.clone()));
        }
        let apps = state.apps().covering(state.db(), [id]).await?;
        Ok(apps.get(&id).cloned())
    }

    /// The apps, including every one of `ids` that is registered (the
    /// request's copy, or a newer one when it lacks one of them).
    async fn apps_covering(
        &self,
        state: &AppState,
        ids: impl IntoIterator<Item = i64>,
    ) -> Result<Arc<AppsById>, DbErr> {
        let apps = self.apps(state).await?;
        let ids: Vec<i64> = ids.into_iter().collect();
        if ids.iter().all(|id| apps.contains_key(id)) {
            return Ok(apps.clone());
        }
        state.apps().covering(state.db(), ids).await
    }

    /// The request's refresh round (used by queries only).
    pub(super) fn round(&self) -> &Arc<Round> {
        &self.round
    }

    /// When the request's refresh budget runs out: `budget` after it first
    /// waited for a refresh (or for its round to gather).
    pub(super) fn deadline(&self, budget: std::time::Duration) -> Instant {
        *self.deadline.get_or_init(|| Instant::now() + budget)
    }
}

/// Rows fetched together, and the relations loaded for all of them at once.
///
/// Freshness works the same way: the first time a resolver reads the profile
/// of any member account, the stale members are refreshed from WeChat in one
/// go (grouped by app, 100 per call), within the request's budget, and all
/// members then read the result. In a query, that refresh is the request's
/// [`Round`], shared with the groups of every other root field.
pub struct Siblings {
    policy: RefreshPolicy,
    person_ids: Vec<i64>,
    rows: Vec<account::Model>,
    accounts: OnceCell<HashMap<i64, Vec<account::Model>>>,
    persons: OnceCell<HashMap<i64, person::Model>>,
    /// The root field this group was fetched under, in a query.
    ticket: Option<Ticket>,
    /// The group's own refreshes, of members no round covered (loaded after
    /// it, or outside a query).
    refreshed: tokio::sync::Mutex<Refreshed>,
}

/// The outcome of a refresh of accounts.
#[derive(Default)]
pub struct Refreshed {
    /// Every account the refresh considered (fresh, refreshed or not).
    covered: HashSet<i64>,
    /// The accounts it fetched whether fresh or not (FORCE).
    forced: HashSet<i64>,
    /// The refreshed accounts as stored afterwards.
    accounts: HashMap<i64, account::Model>,
    /// Accounts whose refresh missed the request's budget.
    missed: HashSet<i64>,
}

impl Refreshed {
    /// How the refresh left `account`, if it considered it as `policy` asks;
    /// the flag says whether its refresh missed the request's budget.
    fn get(
        &self,
        account: &account::Model,
        policy: RefreshPolicy,
    ) -> Option<(account::Model, bool)> {
        let considered = match policy {
            RefreshPolicy::Force => &self.forced,
            RefreshPolicy::IfStale | RefreshPolicy::CacheOnly => &self.covered,
        };
        considered.contains(&account.id).then(|| {
            let model = self.accounts.get(&account.id).unwrap_or(account);
            (model.clone(), self.missed.contains(&account.id))
        })
    }

    fn absorb(&mut self, other: Self) {
        self.covered.extend(other.covered);
        self.forced.extend(other.forced);
        self.accounts.extend(other.accounts);
        self.missed.extend(other.missed);
    }
}

impl Siblings {
    fn new(
        policy: RefreshPolicy,
        ticket: Option<Ticket>,
        person_ids: Vec<i64>,
        rows: Vec<account::Model>,
        persons: Option<HashMap<i64, person::Model>>,
    ) -> Arc<Self> {
        let group = Arc::new(Self {
            policy,
            person_ids,
            rows,
            accounts: OnceCell::new(),
            persons: OnceCell::new_with(persons),
            ticket,
            refreshed: tokio::sync::Mutex::default(),
        });
        if let Some(ticket) = &group.ticket {
            ticket.round().register(&group);
        }
        group
    }

    /// Siblings of a page of persons (whose rows are known already), fetched
    /// by the root field of `ticket` in a query.
    pub fn of_persons(
        persons: &[person::Model],
        policy: RefreshPolicy,
        ticket: Option<Ticket>,
    ) -> Arc<Self> {
        Self::new(
            policy,
            ticket,
            persons.iter().map(|p| p.id).collect(),
            Vec::new(),
            Some(persons.iter().map(|p| (p.id, p.clone())).collect()),
        )
    }

    /// Siblings of a set of accounts (their persons are loaded when first
    /// asked for), fetched by the root field of `ticket` in a query.
    pub fn of_accounts(
        accounts: &[account::Model],
        policy: RefreshPolicy,
        ticket: Option<Ticket>,
    ) -> Arc<Self> {
        let ids: BTreeSet<i64> = accounts.iter().filter_map(|a| a.person_id).collect();
        Self::new(
            policy,
            ticket,
            ids.into_iter().collect(),
            accounts.to_vec(),
            None,
        )
    }

    /// The member accounts known so far (the rows, and the accounts of the
    /// persons once loaded), with the group's policy.
    pub(super) fn members(&self) -> Vec<(account::Model, RefreshPolicy)> {
        let loaded = self
            .accounts
            .get()
            .into_iter()
            .flat_map(|m| m.values().flatten());
        self.rows
            .iter()
            .chain(loaded)
            .map(|a| (a.clone(), self.policy))
            .collect()
    }

    /// The account as this request should see it: refreshed from WeChat first
    /// when it (or any member) is stale and the policy asks for it. The flag
    /// says whether a refresh was wanted but missed the request's budget.
    pub async fn current(
        &self,
        ctx: &Context<'_>,
        account: &account::Model,
    ) -> async_graphql::Result<(account::Model, bool)> {
        if self.policy == RefreshPolicy::CacheOnly {
            return Ok((account.clone(), false));
        }
        let mut round = None;
        if let Some(ticket) = &self.ticket {
            let outcome = ticket.round().outcome(ctx, ticket).await.api()?;
            if let Some(seen) = outcome.get(account, self.policy) {
                return Ok(seen);
            }
            round = Some(outcome);
        }
        let state = ctx.data::<AppState>()?;
        let cache = ctx.data::<RequestCache>()?;
        // Members no refresh has considered yet (loaded since) are refreshed
        // together, once; readers of the group wait for that one refresh.
        let mut own = self.refreshed.lock().await;
        if let Some(seen) = own.get(account, self.policy) {
            return Ok(seen);
        }
        let policy = self.policy;
        let members: Vec<_> = self
            .members()
            .into_iter()
            .filter(|(a, _)| {
                round.is_none_or(|r| r.get(a, policy).is_none()) && own.get(a, policy).is_none()
            })
            .collect();
        own.absorb(refresh_members(state, cache, members).await.api()?);
        Ok(own
            .get(account, policy)
            .unwrap_or_else(|| (account.clone(), false)))
    }

    /// The accounts of person `id`, loading those of every sibling person on first use.
    pub async fn accounts_of(
        &self,
        db: &DatabaseConnection,
        id: i64,
    ) -> Result<Vec<account::Model>, DbErr> {
        let all = self
            .accounts
            .get_or_try_init(|| async {
                let rows = account::Entity::find()
                    .filter(account::Column::PersonId.is_in(self.person_ids.iter().copied()))
                    .order_by_asc(account::Column::Id)
                    .all(db)
                    .await?;
                let mut map: HashMap<i64, Vec<account::Model>> = HashMap::new();
                for row in rows {
                    if let Some(person_id) = row.person_id {
                        map.entry(person_id).or_default().push(row);
                    }
                }
                Ok::<_, DbErr>(map)
            })
            .await?;
        Ok(all.get(&id).cloned().unwrap_or_default())
    }

    /// Person `id`, loading every sibling's person on first use.
    pub async fn person(
        &self,
        db: &DatabaseConnection,
        id: i64,
    ) -> Result<Option<person::Model>, DbErr> {
        let all = self
            .persons
            .get_or_try_init(|| async {
                let rows = person::Entity::find()
                    .filter(person::Column::Id.is_in(self.person_ids.iter().copied()))
                    .all(db)
                    .await?;
                Ok::<_, DbErr>(rows.into_iter().map(|p| (p.id, p)).collect())
            })
            .await?;
        Ok(all.get(&id).cloned())
    }
}

/// Refreshes the stale official-account accounts among `members` (each with
/// the policy of the group it was read in; FORCE wins), apps in parallel and
/// 100 per call, waiting at most until the request's deadline.
pub(super) async fn refresh_members(
    state: &AppState,
    cache: &RequestCache,
    members: Vec<(account::Model, RefreshPolicy)>,
) -> Result<Refreshed, DbErr> {
    let mut wanted: HashMap<i64, (account::Model, bool)> = HashMap::new();
    for (account, policy) in members {
        let force = match policy {
            RefreshPolicy::CacheOnly => continue,
            RefreshPolicy::IfStale => false,
            RefreshPolicy::Force => true,
        };
        match wanted.entry(account.id) {
            Entry::Vacant(slot) => {
                slot.insert((account, force));
            }
            // Read twice: decide on the older copy (the refresher skips an
            // account another request has just refreshed anyway).
            Entry::Occupied(mut slot) => {
                let (kept, forced) = slot.get_mut();
                *forced |= force;
                if account.refreshed_at < kept.refreshed_at {
                    *kept = account;
                }
            }
        }
    }
    let covered: HashSet<i64> = wanted.keys().copied().collect();
    let forced_ids: HashSet<i64> = wanted
        .iter()
        .filter(|(_, (_, force))| *force)
        .map(|(id, _)| *id)
        .collect();
    let apps = cache
        .apps_covering(state, wanted.values().map(|(a, _)| a.app_id))
        .await?;
    let now = state.now();
    let default_ttl = state.settings().freshness_ttl();
    let (forced, if_stale): (Vec<_>, Vec<_>) = wanted
        .into_values()
        .filter(|(a, force)| {
            let Some(app) = apps.get(&a.app_id) else {
                return false;
            };
            crate::apps::kind_of(app) == Some(AppKind::OfficialAccount)
                && (*force
                    || refresh::wants_refresh(
                        a.refreshed_at,
                        a.refresh_error_code.zip(a.refresh_error_at),
                        refresh::ttl_of(app, default_ttl),
                        now,
                    ))
        })
        .partition(|(_, force)| *force);
    let forced: Vec<account::Model> = forced.into_iter().map(|(a, _)| a).collect();
    let if_stale: Vec<account::Model> = if_stale.into_iter().map(|(a, _)| a).collect();
    let ids: Vec<i64> = forced.iter().chain(&if_stale).map(|a| a.id).collect();
    if ids.is_empty() {
        return Ok(Refreshed {
            covered,
            forced: forced_ids,
            ..Refreshed::default()
        });
    }
    metrics::counter!("union360_refresh_requested_total").increment(ids.len() as u64);
    let refresher = state.refresher();
    let flights = futures::future::join(
        refresher.refresh(state, forced, true),
        refresher.refresh(state, if_stale, false),
    );
    let budget = state.settings().refresh_budget();
    let done = tokio::time::timeout_at(cache.deadline(budget), flights)
        .await
        .is_ok();
    if !done {
        metrics::counter!("union360_refresh_served_stale_total").increment(ids.len() as u64);
        tracing::info!(
            accounts = ids.len(),
            budget_ms = state.settings().server.refresh_budget_ms,
            "refresh missed the request's budget; serving stored profiles"
        );
    }
    let accounts = account::Entity::find()
        .filter(account::Column::Id.is_in(ids.iter().copied()))
        .all(state.db())
        .await?
        .into_iter()
        .map(|a| (a.id, a))
        .collect();
    let missed = if done {
        HashSet::new()
    } else {
        ids.into_iter().collect()
    };
    Ok(Refreshed {
        covered,
        forced: forced_ids,
        accounts,
        missed,
    })
}
