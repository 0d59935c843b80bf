//! Process-wide single flight of refreshes.
//!
//! Concurrent requests that need the same stale account share one WeChat
//! call: the first starts a background task for the accounts nobody is
//! fetching yet, and every request (itself included) waits on the tasks
//! covering its accounts. The task runs to the end even when the waiting
//! request gives up at its deadline, so the store is updated for the next
//! reader.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};
use entity::account;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use sea_orm::{ColumnTrait, DbBackend, EntityTrait, QueryFilter};
use tracing::Instrument;

use super::{RefreshError, Refresher, lease};

type Flight = Shared<BoxFuture<'static, ()>>;

/// How long a finished refresh counts as "just done", by the service's
/// clock: long enough to cover a request that loaded an account just before
/// its refresh landed.
pub const RECENT: Duration = Duration::seconds(1);

/// Lands a flight's accounts when its task ends, even by a panic: they
/// leave the in-flight map, so later reads do not wait on a dead flight.
struct Landing {
    refresher: Refresher,
    ids: Vec<i64>,
}

impl Drop for Landing {
    fn drop(&mut self) {
        self.refresher.landed(&self.ids);
    }
}

/// Refreshes in flight, by account id.
pub(super) struct Flights {
    /// This instance's name on refresh leases.
    holder: String,
    inflight: Mutex<HashMap<i64, Flight>>,
    /// Accounts refreshed moments ago: a request that read them stale just
    /// before that refresh landed reloads them instead of fetching again.
    recent: Mutex<HashMap<i64, DateTime<Utc>>>,
    started: AtomicU64,
    coalesced: AtomicU64,
}

impl Default for Flights {
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

impl std::fmt::Debug for Flights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flights")
            .field("started", &self.started())
            .field("coalesced", &self.coalesced())
            .finish_non_exhaustive()
    }
}

impl Flights {
    pub(super) fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    pub(super) fn coalesced(&self) -> u64 {
        self.coalesced.load(Ordering::Relaxed)
    }

    fn joined(&self) {
        self.coalesced.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("union360_refresh_coalesced_total").increment(1);
    }
}

impl Refresher {
    /// Refreshes `accounts`, joining fetches already in flight and, unless
    /// `force`, skipping those refreshed moments ago ([`RECENT`]); completes
    /// when every one of them is done (cancel-safe: dropping it leaves the
    /// fetches running).
    pub(super) fn fly(&self, accounts: Vec<account::Model>, force: bool) -> BoxFuture<'static, ()> {
        let flights = &self.0.flights;
        let accounts = if force {
            accounts
        } else {
            let clock = &self.0.clock;
            let mut recent = flights
                .recent
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            recent.retain(|_, at| clock.within(*at, RECENT));
            accounts
                .into_iter()
                .filter(|a| {
                    let skip = recent.contains_key(&a.id);
                    if skip {
                        flights.joined();
                    }
                    !skip
                })
                .collect()
        };
        let mut waits: Vec<Flight> = Vec::new();
        let mut new = Vec::new();
        let mut inflight = flights
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for account in accounts {
            match inflight.get(&account.id) {
                Some(flight) => {
                    flights.joined();
                    waits.push(flight.clone());
                }
                None => new.push(account),
            }
        }
        if !new.is_empty() {
            flights
                .started
                .fetch_add(new.len() as u64, Ordering::Relaxed);
            let ids: Vec<i64> = new.iter().map(|a| a.id).collect();
            let landing = Landing {
                refresher: self.clone(),
                ids: ids.clone(),
            };
            let span = tracing::info_span!("refresh.flight", accounts = ids.len(), force);
            let task = tokio::spawn(
                async move {
                    let refresher = landing.refresher.clone();
                    if let Err(e) = refresher.refresh_leased(new, force).await {
                        tracing::error!(error = ?e, "refresh could not write to the store");
                    }
                    drop(landing);
                }
                .instrument(span),
            );
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
        drop(inflight);
        async move {
            futures::future::join_all(waits).await;
        }
        .boxed()
    }

    /// The refresh of `ids` is over: they are no longer in flight, and count
    /// as just refreshed.
    fn landed(&self, ids: &[i64]) {
        let flights = &self.0.flights;
        let mut inflight = flights
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut recent = flights
            .recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let done = self.0.clock.now();
        for id in ids {
            inflight.remove(id);
            recent.insert(*id, done);
        }
    }

    /// Refreshes the accounts whose lease this instance wins, and waits for
    /// the others, which another instance is refreshing, to land.
    ///
    /// An account another instance refreshed between this request's read and
    /// the lease (its `refreshed_at` moved) is not fetched again, unless forced.
    async fn refresh_leased(
        &self,
        accounts: Vec<account::Model>,
        force: bool,
    ) -> Result<(), RefreshError> {
        let (db, clock) = (&self.0.db, &self.0.clock);
        let holder = &self.0.flights.holder;
        let ids: Vec<i64> = accounts.iter().map(|a| a.id).collect();
        let won = lease::claim(db, clock, &ids, holder).await?;
        let (mut mine, theirs): (Vec<_>, Vec<_>) =
            accounts.into_iter().partition(|a| won.contains(&a.id));
        if !force && !mine.is_empty() && db.get_database_backend() == DbBackend::Postgres {
            let current: HashMap<i64, Option<DateTime<Utc>>> = account::Entity::find()
                .filter(account::Column::Id.is_in(mine.iter().map(|a| a.id)))
                .all(db)
                .await?
                .into_iter()
                .map(|a| (a.id, a.refreshed_at))
                .collect();
            mine.retain(|a| current.get(&a.id).is_none_or(|at| *at == a.refreshed_at));
        }
        let fetched = self.fetch(&mine).await;
        lease::release(db, &won, holder).await?;
        fetched?;
        let theirs: Vec<i64> = theirs.iter().map(|a| a.id).collect();
        lease::wait_for(db, clock, &theirs).await?;
        Ok(())
    }
}
