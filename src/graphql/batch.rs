//! Batch loading without N+1, and without timers.
//!
//! Rows that one resolver fetched together (a page of people, a page of
//! accounts, the accounts of those people) share a [`Siblings`] value. The
//! first time any of them needs a relation, the relation is loaded for all
//! of them with one statement of the read service, behind a once-cell, so
//! concurrent resolvers wait for that one statement instead of issuing their
//! own. The number of statements of a query therefore depends on its shape,
//! never on the page size or on timing. Apps come from the request's copy
//! ([`super::context::RequestContext`]). Stale profiles are refreshed the
//! same way, for the whole query at once: see [`super::round`].

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};

use async_graphql::Context;
use entity::{account, person};
use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::OnceCell;

use super::context::ContextExt;
use super::error::{ApiResult, ResultExt};
use super::round::{Group, Ticket};
use crate::identity::read;
use crate::refresh::{RefreshPolicy, Refreshed, SeenAccount};

/// Rows fetched together, and the relations loaded for all of them at once.
///
/// Freshness works the same way: the first time a resolver reads the profile
/// of any member account, the stale members are refreshed from WeChat in one
/// go (grouped by app, 100 per call), within the request's budget, and all
/// members then read the result. In a query, that refresh is the request's
/// round, shared with the groups of every other root field.
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

impl Group for Siblings {
    fn members(&self) -> Vec<(account::Model, RefreshPolicy)> {
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
            let weak: Weak<dyn Group> = Arc::downgrade(&group) as Weak<Siblings>;
            ticket.round().register(weak);
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

    /// The account as this request sees it: refreshed from WeChat first when
    /// it (or any member) is stale and the policy asks for it.
    pub async fn current(
        &self,
        ctx: &Context<'_>,
        account: &account::Model,
    ) -> ApiResult<SeenAccount> {
        let as_stored = || SeenAccount {
            account: account.clone(),
            missed_budget: false,
        };
        if self.policy == RefreshPolicy::CacheOnly {
            return Ok(as_stored());
        }
        let state = ctx.state()?;
        let request = ctx.request()?;
        let refresher = state.refresher();
        let apps = &request.apps(state.apps()).await.api()?;
        let deadline = request.deadline(refresher.settings().budget);
        let mut round = None;
        if let Some(ticket) = &self.ticket {
            let outcome = ticket
                .round()
                .outcome(ctx, ticket, refresher, apps, deadline)
                .await
                .api()?;
            if let Some(seen) = outcome.get(account, self.policy) {
                return Ok(seen);
            }
            round = Some(outcome);
        }
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
        own.absorb(
            refresher
                .refresh_read(members, apps, deadline)
                .await
                .api()?,
        );
        Ok(own.get(account, policy).unwrap_or_else(as_stored))
    }

    /// The accounts of person `id`, loading those of every sibling person on first use.
    pub async fn accounts_of(
        &self,
        db: &DatabaseConnection,
        id: i64,
    ) -> Result<Vec<account::Model>, DbErr> {
        let all = self
            .accounts
            .get_or_try_init(|| read::accounts_of_persons(db, &self.person_ids))
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
            .get_or_try_init(|| read::persons_by_ids(db, &self.person_ids))
            .await?;
        Ok(all.get(&id).cloned())
    }
}
