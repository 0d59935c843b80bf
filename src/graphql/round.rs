//! One refresh for a whole query.
//!
//! Stale accounts read anywhere in one query are fetched from WeChat
//! together, whichever root fields they come from: `{ a: person(..) {..}
//! b: accounts(..) {..} }` makes one `batchget` per app and 100 accounts, not
//! one per root field.
//!
//! Every root field of a query runs under a [`Ticket`], set by the root
//! query type ([`super::Query`]) around the field's whole resolution, from
//! its arguments to its last nested field. Rows fetched under a ticket (a
//! [`Siblings`] group) join the request's [`Round`]. A root field *arrives* the first time
//! it reads a profile, and in any case when it finishes, with or without an
//! error. A profile read waits until every root field of the operation has
//! arrived; the first reader then refreshes the stale accounts of every group
//! at once, and all readers share the outcome. Rows a group loads after the
//! round (deeper in its selection) are refreshed by the group itself.
//!
//! The number of root fields is counted from the operation before anything
//! waits, exactly as async-graphql expands the root selection set, so the
//! round does not depend on timing or on the order fields are polled in.
//! Introspection fields (`__schema`, `__type`, `__typename`) neither count
//! nor get a ticket. Mutations run their root fields one after the other and
//! have no round. The wait for the other root fields counts against the
//! request's refresh budget, like the refresh itself.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use async_graphql::parser::types::{FragmentDefinition, Selection, SelectionSet};
use async_graphql::{Context, Name, OutputType, Positioned, ServerResult, Value};
use sea_orm::DbErr;
use tokio::sync::{OnceCell, watch};

use super::loaders::{Refreshed, RequestCache, Siblings};
use crate::state::AppState;

tokio::task_local! {
    /// The ticket of the root field being resolved.
    static ROOT: Ticket;
}

/// The request-wide refresh of one query.
#[derive(Default)]
pub struct Round {
    /// How many root fields have arrived.
    arrived: watch::Sender<usize>,
    /// How many root fields the operation has (counted at the first read).
    expected: OnceLock<usize>,
    /// The groups of rows fetched under the round's tickets.
    groups: Mutex<Vec<Weak<Siblings>>>,
    /// Whether a reader stopped waiting for the other root fields.
    gave_up: AtomicBool,
    outcome: OnceCell<Refreshed>,
}

impl Round {
    /// Adds a group of rows to the round (unless it has already run).
    pub(super) fn register(&self, group: &Arc<Siblings>) {
        if self.outcome.initialized() {
            return;
        }
        self.groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::downgrade(group));
    }

    /// The outcome of the round, once every root field has arrived. Arrives
    /// for `ticket` first: its root field is reading a profile.
    pub(super) async fn outcome(
        &self,
        ctx: &Context<'_>,
        ticket: &Ticket,
    ) -> Result<&Refreshed, DbErr> {
        ticket.arrive();
        if let Some(outcome) = self.outcome.get() {
            return Ok(outcome);
        }
        let expected = *self.expected.get_or_init(|| {
            let env = ctx.query_env;
            let query = super::Query::type_name();
            root_fields(
                &env.operation.node.selection_set.node,
                &env.fragments,
                &query,
            )
        });
        let state = ctx.data_unchecked::<AppState>();
        let cache = ctx.data_unchecked::<RequestCache>();
        let mut arrivals = self.arrived.subscribe();
        // Every root field arrives at the latest when it finishes, so this
        // waits for real work only; the request's budget bounds it, as it
        // bounds the refresh: a slow root field (or a miscount) must never
        // hold a read beyond it.
        let deadline = cache.deadline(state.settings().refresh_budget());
        let incomplete = tokio::time::timeout_at(deadline, arrivals.wait_for(|n| *n >= expected))
            .await
            .is_err();
        if incomplete && !self.gave_up.swap(true, Ordering::AcqRel) {
            metrics::counter!("union360_refresh_round_incomplete_total").increment(1);
            tracing::warn!(
                expected,
                arrived = *self.arrived.borrow(),
                "refresh round stopped waiting for the query's other root fields at the refresh budget"
            );
        }
        self.outcome
            .get_or_try_init(|| async {
                // Copied, not taken: if this reader is dropped mid-refresh,
                // the next one starts the round with every group.
                let groups: Vec<Arc<Siblings>> = self
                    .groups
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .iter()
                    .filter_map(Weak::upgrade)
                    .collect();
                let members = groups.iter().flat_map(|g| g.members()).collect();
                super::loaders::refresh_members(state, cache, members).await
            })
            .await
    }
}

/// A root field's place in its request's [`Round`].
#[derive(Clone)]
pub struct Ticket(Arc<TicketInner>);

struct TicketInner {
    round: Arc<Round>,
    arrived: AtomicBool,
}

impl Ticket {
    /// The ticket of the root field being resolved, if the operation is a query.
    pub(super) fn current() -> Option<Self> {
        ROOT.try_with(Clone::clone).ok()
    }

    /// The round this ticket belongs to.
    pub(super) fn round(&self) -> &Arc<Round> {
        &self.0.round
    }

    /// Marks the root field as arrived (once).
    fn arrive(&self) {
        if !self.0.arrived.swap(true, Ordering::AcqRel) {
            self.0.round.arrived.send_modify(|n| *n += 1);
        }
    }
}

/// How many root fields of `set` take part in the round: async-graphql
/// resolves each field of the selection once, with fragments on the query
/// type expanded; `@skip`/`@include` are already applied to the operation
/// and fragments when execution starts.
fn root_fields(
    set: &SelectionSet,
    fragments: &HashMap<Name, Positioned<FragmentDefinition>>,
    query: &str,
) -> usize {
    set.items
        .iter()
        .map(|selection| match &selection.node {
            Selection::Field(field) => usize::from(takes_part(&field.node.name.node)),
            Selection::FragmentSpread(spread) => fragments
                .get(&spread.node.fragment_name.node)
                .filter(|f| f.node.type_condition.node.on.node == query)
                .map_or(0, |f| {
                    root_fields(&f.node.selection_set.node, fragments, query)
                }),
            Selection::InlineFragment(inline) => {
                let applies = inline
                    .node
                    .type_condition
                    .as_ref()
                    .is_none_or(|c| c.node.on.node == query);
                if applies {
                    root_fields(&inline.node.selection_set.node, fragments, query)
                } else {
                    0
                }
            }
        })
        .sum()
}

/// Whether root field `name` takes part in the round (gets a ticket and is
/// counted): every field but introspection's.
fn takes_part(name: &str) -> bool {
    !name.starts_with("__")
}

/// Resolves one root field of a query (`resolution`: its whole resolution,
/// arguments included) under a ticket of the request's round, and marks the
/// field arrived when it is done, whether it succeeded or not.
pub(super) async fn resolve_root<F>(ctx: &Context<'_>, resolution: F) -> ServerResult<Option<Value>>
where
    F: Future<Output = ServerResult<Option<Value>>>,
{
    let cache = ctx.data_opt::<RequestCache>();
    match cache.filter(|_| takes_part(&ctx.item.node.name.node)) {
        Some(cache) => {
            let ticket = Ticket(Arc::new(TicketInner {
                round: cache.round().clone(),
                arrived: AtomicBool::new(false),
            }));
            let resolved = ROOT.scope(ticket.clone(), resolution).await;
            ticket.arrive();
            resolved
        }
        None => resolution.await,
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;
    use async_graphql::parser::types::DocumentOperations;

    use super::root_fields;

    fn count(document: &str) -> usize {
        let doc = parse_query(document).expect("valid document");
        let DocumentOperations::Single(operation) = &doc.operations else {
            panic!("one operation");
        };
        root_fields(&operation.node.selection_set.node, &doc.fragments, "Query")
    }

    #[test]
    fn every_root_field_counts_once_except_introspection() {
        assert_eq!(
            count(
                "{ a: person(unionid: \"u\") { unionid } b: person(unionid: \"v\") { unionid } apps { appid } __typename }"
            ),
            3
        );
        assert_eq!(count("{ __typename }"), 0);
        assert_eq!(
            count("{ __schema { queryType { name } } __type(name: \"Query\") { name } }"),
            0
        );
    }

    #[test]
    fn fragments_on_the_query_type_are_expanded_wherever_they_are_spread() {
        let document =
            "query { ...A ... on Query { c: apps { appid } ...B } ... { d: apps { appid } } }
            fragment A on Query { a: apps { appid } __typename ...B }
            fragment B on Query { b: apps { appid } }";
        assert_eq!(count(document), 5);
        assert_eq!(
            count("{ ... on Mutation { apps { appid } } x: apps { appid } }"),
            1
        );
    }
}
