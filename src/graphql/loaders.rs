//! Batch loading without N+1, and without timers.
//!
//! Rows that one resolver fetched together (a page of people, a page of
//! accounts, the accounts of those people) share a [`Siblings`] value. The
//! first time any of them needs a relation, the relation is loaded for all
//! of them with one `IN (…)` statement, behind a once-cell, so concurrent
//! resolvers wait for that one statement instead of issuing their own. The
//! number of statements of a query therefore depends on its shape, never on
//! the page size or on timing. Apps are few and are loaded whole, once per
//! request ([`RequestCache`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use entity::{account, app, person};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder};
use tokio::sync::OnceCell;

use crate::domain::AppKind;
use crate::refresh::{self, RefreshPolicy};
use crate::state::AppState;

/// Per-request caches.
#[derive(Default)]
pub struct RequestCache {
    apps: OnceCell<HashMap<i64, app::Model>>,
}

impl RequestCache {
    /// Every app by id, loaded once per request.
    pub async fn apps(&self, db: &DatabaseConnection) -> Result<&HashMap<i64, app::Model>, DbErr> {
        self.apps
            .get_or_try_init(|| async {
                let all = app::Entity::find().all(db).await?;
                Ok(all.into_iter().map(|a| (a.id, a)).collect())
            })
            .await
    }
}

/// Rows fetched together, and the relations loaded for all of them at once.
///
/// Freshness works the same way: the first time a resolver reads the profile
/// of any sibling account, every stale sibling account is refreshed from
/// WeChat in one go (grouped by app, 100 per call), within the request's
/// budget, and all siblings then read the result.
pub struct Siblings {
    policy: RefreshPolicy,
    person_ids: Vec<i64>,
    rows: Vec<account::Model>,
    accounts: OnceCell<HashMap<i64, Vec<account::Model>>>,
    persons: OnceCell<HashMap<i64, person::Model>>,
    refreshed: OnceCell<Refreshed>,
}

/// The outcome of a request's refresh of sibling accounts.
#[derive(Default)]
pub struct Refreshed {
    accounts: HashMap<i64, account::Model>,
    missed: HashSet<i64>,
}

impl Siblings {
    /// Siblings of a page of persons (whose rows are known already).
    pub fn of_persons(persons: &[person::Model], policy: RefreshPolicy) -> Arc<Self> {
        Arc::new(Self {
            policy,
            person_ids: persons.iter().map(|p| p.id).collect(),
            rows: Vec::new(),
            accounts: OnceCell::new(),
            persons: OnceCell::new_with(Some(persons.iter().map(|p| (p.id, p.clone())).collect())),
            refreshed: OnceCell::new(),
        })
    }

    /// Siblings of a set of accounts (their persons are loaded when first asked for).
    pub fn of_accounts(accounts: &[account::Model], policy: RefreshPolicy) -> Arc<Self> {
        let ids: BTreeSet<i64> = accounts.iter().filter_map(|a| a.person_id).collect();
        Arc::new(Self {
            policy,
            person_ids: ids.into_iter().collect(),
            rows: accounts.to_vec(),
            accounts: OnceCell::new(),
            persons: OnceCell::new(),
            refreshed: OnceCell::new(),
        })
    }

    /// The account as this request should see it: refreshed from WeChat first
    /// when it (or any sibling) is stale and the policy asks for it. The flag
    /// says whether a refresh was wanted but missed the request's budget.
    pub async fn current(
        &self,
        state: &AppState,
        cache: &RequestCache,
        account: &account::Model,
    ) -> Result<(account::Model, bool), DbErr> {
        if self.policy == RefreshPolicy::CacheOnly {
            return Ok((account.clone(), false));
        }
        let refreshed = self
            .refreshed
            .get_or_try_init(|| self.refresh_all(state, cache))
            .await?;
        let model = refreshed
            .accounts
            .get(&account.id)
            .cloned()
            .unwrap_or_else(|| account.clone());
        Ok((model, refreshed.missed.contains(&account.id)))
    }

    async fn refresh_all(
        &self,
        state: &AppState,
        cache: &RequestCache,
    ) -> Result<Refreshed, DbErr> {
        let members: Vec<account::Model> = if self.rows.is_empty() {
            self.accounts
                .get()
                .map(|by_person| by_person.values().flatten().cloned().collect())
                .unwrap_or_default()
        } else {
            self.rows.clone()
        };
        let apps = cache.apps(state.db()).await?;
        let now = state.now();
        let default_ttl = state.settings().freshness_ttl();
        let targets: Vec<account::Model> = members
            .into_iter()
            .filter(|a| {
                let Some(app) = apps.get(&a.app_id) else {
                    return false;
                };
                crate::apps::kind_of(app) == Some(AppKind::OfficialAccount)
                    && (self.policy == RefreshPolicy::Force
                        || refresh::is_stale(
                            a.refreshed_at,
                            refresh::ttl_of(app, default_ttl),
                            now,
                        ))
            })
            .collect();
        if targets.is_empty() {
            return Ok(Refreshed::default());
        }
        let ids: Vec<i64> = targets.iter().map(|a| a.id).collect();
        metrics::counter!("union360_refresh_requested_total").increment(ids.len() as u64);
        let flight = state
            .refresher()
            .refresh(state, targets, self.policy == RefreshPolicy::Force);
        let done = tokio::time::timeout(state.settings().refresh_budget(), flight)
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
        Ok(Refreshed { accounts, missed })
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
