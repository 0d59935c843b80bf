//! The refresh of what one read touched, within the read's deadline.
//!
//! A read hands over the accounts it loaded, each with the policy it was
//! read under; the stale official-account accounts among them (all of them,
//! under FORCE) are refreshed together: grouped by app, 100 per call, apps
//! in parallel, through the single flight. The read waits at most until its
//! deadline; past it, it sees the stored profiles, marked as having missed
//! the budget, and the refresh goes on in the background.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use entity::account;
use tokio::time::Instant;

use super::freshness::{refreshable, wants_fetch};
use super::{RefreshError, RefreshPolicy, Refresher};
use crate::apps::AppsById;
use crate::identity;

/// An account as one read sees it.
#[derive(Debug, Clone)]
pub struct SeenAccount {
    /// The account: as stored after the read's refresh, or as loaded.
    pub account: account::Model,
    /// Whether its refresh was wanted but missed the read's budget.
    pub missed_budget: bool,
}

/// The outcome of the refresh of one read's accounts.
#[derive(Debug, Default)]
pub struct Refreshed {
    /// Every account the refresh considered (fresh, refreshed or not).
    covered: HashSet<i64>,
    /// The accounts it fetched whether fresh or not (FORCE).
    forced: HashSet<i64>,
    /// The refreshed accounts as stored afterwards.
    accounts: HashMap<i64, account::Model>,
    /// Accounts whose refresh missed the read's budget.
    missed: HashSet<i64>,
}

impl Refreshed {
    /// How the refresh left `account`, if it considered it as `policy` asks.
    pub fn get(&self, account: &account::Model, policy: RefreshPolicy) -> Option<SeenAccount> {
        let considered = match policy {
            RefreshPolicy::Force => &self.forced,
            RefreshPolicy::IfStale | RefreshPolicy::CacheOnly => &self.covered,
        };
        considered.contains(&account.id).then(|| SeenAccount {
            account: self.accounts.get(&account.id).unwrap_or(account).clone(),
            missed_budget: self.missed.contains(&account.id),
        })
    }

    /// Adds what a later refresh of the same read did.
    pub fn absorb(&mut self, other: Self) {
        self.covered.extend(other.covered);
        self.forced.extend(other.forced);
        self.accounts.extend(other.accounts);
        self.missed.extend(other.missed);
    }
}

impl Refresher {
    /// Refreshes the stale official-account accounts among `members` (each
    /// with the policy it was read under; FORCE wins), waiting at most until
    /// `deadline`. `apps` is the read's copy of the apps; apps it lacks are
    /// looked up.
    #[tracing::instrument(name = "refresh.read", skip_all, fields(accounts = members.len()))]
    pub async fn refresh_read(
        &self,
        members: Vec<(account::Model, RefreshPolicy)>,
        apps: &Arc<AppsById>,
        deadline: Instant,
    ) -> Result<Refreshed, RefreshError> {
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
                // Read twice: decide on the older copy (the single flight
                // skips an account another request has just refreshed anyway).
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
        let app_ids: Vec<i64> = wanted.values().map(|(a, _)| a.app_id).collect();
        let apps = if app_ids.iter().all(|id| apps.contains_key(id)) {
            apps.clone()
        } else {
            self.0.apps.covering(app_ids).await?
        };
        let now = self.0.clock.now();
        let (forced, if_stale): (Vec<_>, Vec<_>) = wanted
            .into_values()
            .filter(|(a, force)| {
                apps.get(&a.app_id).is_some_and(|app| {
                    refreshable(app) && (*force || wants_fetch(a, self.ttl(app), now))
                })
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
        let flights = futures::future::join(self.fly(forced, true), self.fly(if_stale, false));
        let done = tokio::time::timeout_at(deadline, flights).await.is_ok();
        if !done {
            metrics::counter!("union360_refresh_served_stale_total").increment(ids.len() as u64);
            tracing::info!(
                accounts = ids.len(),
                budget_ms = self.0.settings.budget.as_millis() as u64,
                "refresh missed the read's budget; serving stored profiles"
            );
        }
        let accounts = identity::read::accounts_by_ids(&self.0.db, &ids)
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
}
