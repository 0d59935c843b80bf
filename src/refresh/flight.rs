//! Process-wide single flight of refreshes.
//!
//! Concurrent requests that need the same stale account share one WeChat
//! call: the first starts a background task for the accounts nobody is
//! fetching yet, and every request (itself included) waits on the tasks
//! covering its accounts. The task runs to the end even when the waiting
//! request gives up at its deadline, so the store is updated for the next
//! reader.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use entity::account;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::state::AppState;

type Flight = Shared<BoxFuture<'static, ()>>;

/// How long a finished refresh counts as "just done": long enough to cover a
/// request that loaded an account just before its refresh landed.
pub const RECENT: Duration = Duration::from_secs(1);

/// Refreshes in flight, by account id.
pub struct Refresher {
    /// This instance's name on refresh leases.
    holder: String,
    inflight: Mutex<HashMap<i64, Flight>>,
    /// Accounts refreshed moments ago: a request that read them stale just
    /// before that refresh landed reloads them instead of fetching again.
    recent: Mutex<HashMap<i64, Instant>>,
    started: AtomicU64,
    coalesced: AtomicU64,
}

impl Default for Refresher {
    fn default() -> Self {
        Self {
            holder: format!("{:016x}", rand::random::<u64>()),
            inflight: Mutex::default(),
            recent: Mutex::default(),
            started: AtomicU64::default(),
            coalesced: AtomicU64::default(),
        }
    }
}

impl std::fmt::Debug for Refresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher")
            .field("started", &self.started())
            .field("coalesced", &self.coalesced())
            .finish_non_exhaustive()
    }
}

impl Refresher {
    /// Accounts whose refresh this process started.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Accounts whose refresh joined one already in flight.
    pub fn coalesced(&self) -> u64 {
        self.coalesced.load(Ordering::Relaxed)
    }

    /// Refreshes `accounts`, joining fetches already in flight and, unless
    /// `force`, skipping those refreshed in the last few seconds; completes when
    /// every one of them is done (cancel-safe: dropping it leaves the fetches running).
    pub fn refresh(
        &self,
        state: &AppState,
        accounts: Vec<account::Model>,
        force: bool,
    ) -> BoxFuture<'static, ()> {
        let mut waits: Vec<Flight> = Vec::new();
        let mut new = Vec::new();
        let accounts = if force {
            accounts
        } else {
            let mut recent = self
                .recent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            recent.retain(|_, at| at.elapsed() < RECENT);
            accounts
                .into_iter()
                .filter(|a| {
                    let skip = recent.contains_key(&a.id);
                    if skip {
                        self.coalesced.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("union360_refresh_coalesced_total").increment(1);
                    }
                    !skip
                })
                .collect()
        };
        {
            let mut inflight = self
                .inflight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for account in accounts {
                match inflight.get(&account.id) {
                    Some(flight) => {
                        self.coalesced.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("union360_refresh_coalesced_total").increment(1);
                        waits.push(flight.clone());
                    }
                    None => new.push(account),
                }
            }
            if !new.is_empty() {
                self.started.fetch_add(new.len() as u64, Ordering::Relaxed);
                let ids: Vec<i64> = new.iter().map(|a| a.id).collect();
                let task_state = state.clone();
                let task_ids = ids.clone();
                let task = tokio::spawn(async move {
                    if let Err(e) = refresh_leased(&task_state, new, force).await {
                        tracing::error!(error = %e, "refresh could not write to the store");
                    }
                    let refresher = task_state.refresher();
                    let mut inflight = refresher
                        .inflight
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let mut recent = refresher
                        .recent
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let done = Instant::now();
                    for id in task_ids {
                        inflight.remove(&id);
                        recent.insert(id, done);
                    }
                });
                let flight: Flight = async move {
                    let _ = task.await;
                }
                .boxed()
                .shared();
                for id in ids {
                    inflight.insert(id, flight.clone());
                }
                waits.push(flight);
            }
        }
        async move {
            futures::future::join_all(waits).await;
        }
        .boxed()
    }
}

/// Refreshes the accounts whose lease this instance wins, and waits for the
/// others, which another instance is refreshing, to land.
///
/// An account another instance refreshed between this request's read and
/// the lease (its `refreshed_at` moved) is not fetched again, unless forced.
async fn refresh_leased(
    state: &AppState,
    accounts: Vec<account::Model>,
    force: bool,
) -> Result<(), sea_orm::DbErr> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    let holder = &state.refresher().holder;
    let ids: Vec<i64> = accounts.iter().map(|a| a.id).collect();
    let won = super::lease::claim(state.db(), &ids, holder).await?;
    let (mut mine, theirs): (Vec<_>, Vec<_>) =
        accounts.into_iter().partition(|a| won.contains(&a.id));
    if !force
        && !mine.is_empty()
        && state.db().get_database_backend() == sea_orm::DbBackend::Postgres
    {
        let current: HashMap<i64, Option<chrono::DateTime<chrono::Utc>>> = account::Entity::find()
            .filter(account::Column::Id.is_in(mine.iter().map(|a| a.id)))
            .all(state.db())
            .await?
            .into_iter()
            .map(|a| (a.id, a.refreshed_at))
            .collect();
        mine.retain(|a| current.get(&a.id).is_none_or(|at| *at == a.refreshed_at));
    }
    let refreshed = super::refresh_accounts(state, &mine).await;
    super::lease::release(state.db(), &won, holder).await?;
    refreshed?;
    let theirs: Vec<i64> = theirs.iter().map(|a| a.id).collect();
    super::lease::wait_for(state.db(), &theirs).await
}
