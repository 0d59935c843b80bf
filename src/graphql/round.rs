//! One refresh for a whole query.
//!
//! Stale accounts read anywhere in one query are fetched from WeChat
//! together, whichever root fields they come from: `{ a: person(..) {..}
//! b: accounts(..) {..} }` makes one `batchget` per app and 100 accounts, not
//! one per root field.
//!
//! Every root field of a query has a [`Ticket`] (by its response key), and
//! the rows its resolver fetches (a [`Group`], in practice the batch loader's
//! `Siblings`) join the request's [`Round`]. A root field *arrives* the first time it reads a profile, and
//! in any case when it finishes, with or without an error: the root query
//! type (`super::Query`) reports each finished resolution, argument errors
//! included. A profile read waits until every root field of the operation
//! has arrived; the first reader then refreshes the stale accounts of every
//! group at once (the refresh service's [`Refresher::refresh_read`]), and all
//! readers share the outcome. Rows a group loads after
//! the round (deeper in its selection) are refreshed by the group itself.
//!
//! The number of root fields is counted from the operation before anything
//! waits, exactly as async-graphql expands the root selection set, so the
//! round does not depend on timing or on the order fields are polled in.
//! Introspection fields (`__schema`, `__type`, `__typename`) neither count
//! nor get a ticket. Mutations run their root fields one after the other and
//! have no round. The wait for the other root fields counts against the
//! request's refresh budget, like the refresh itself.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use async_graphql::parser::types::{FragmentDefinition, Selection, SelectionSet};
use async_graphql::{Context, Name, Positioned};
use entity::account;
use tokio::sync::{OnceCell, watch};
use tokio::time::Instant;

use crate::apps::AppsById;
use crate::refresh::{RefreshError, RefreshPolicy, Refreshed, Refresher};

/// Rows fetched together that take part in a round: the accounts known so
/// far, each with the policy it was read under.
pub trait Group: Send + Sync {
    /// The member accounts known so far.
    fn members(&self) -> Vec<(account::Model, RefreshPolicy)>;
}

/// The request-wide refresh of one query.
#[derive(Default)]
pub struct Round {
    /// The query's root fields by response key, with how many times each is
    /// resolved (counted at first need).
    roots: OnceLock<HashMap<String, usize>>,
    /// Which root fields have arrived, and how many resolutions of each finished.
    progress: Mutex<Progress>,
    /// How many root fields have arrived.
    arrived: watch::Sender<usize>,
    /// The groups of rows fetched under the round's tickets.
    groups: Mutex<Vec<Weak<dyn Group>>>,
    /// Whether a reader stopped waiting for the other root fields.
    gave_up: AtomicBool,
    outcome: OnceCell<Refreshed>,
}

#[derive(Default)]
struct Progress {
    arrived: HashSet<String>,
    finished: HashMap<String, usize>,
}

impl Round {
    /// Adds a group of rows to the round (unless it has already run).
    pub(super) fn register(&self, group: Weak<dyn Group>) {
        if self.outcome.initialized() {
            return;
        }
        self.groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(group);
    }

    fn roots(&self, ctx: &Context<'_>) -> &HashMap<String, usize> {
        self.roots.get_or_init(|| {
            let env = ctx.query_env;
            let mut roots = HashMap::new();
            root_fields(
                &env.operation.node.selection_set.node,
                &env.fragments,
                &ctx.schema_env.registry.query_type,
                &mut roots,
            );
            roots
        })
    }

    /// Marks root field `key` as arrived (once).
    fn arrive(&self, key: &str) {
        let mut progress = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        if progress.arrived.insert(key.to_owned()) {
            self.arrived.send_modify(|n| *n += 1);
        }
    }

    /// One resolution of root field `key` finished: the field has arrived
    /// once all its resolutions have.
    pub(super) fn finished(&self, ctx: &Context<'_>, key: &str) {
        let resolutions = self.roots(ctx).get(key).copied().unwrap_or(1);
        let done = {
            let mut progress = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
            let finished = progress.finished.entry(key.to_owned()).or_default();
            *finished += 1;
            *finished >= resolutions
        };
        if done {
            self.arrive(key);
        }
    }

    /// The outcome of the round, once every root field has arrived (or the
    /// request's `deadline` passed). Arrives for `ticket` first: its root
    /// field is reading a profile. The first reader refreshes the groups'
    /// accounts with `refresher`; `apps` is the request's copy of the apps.
    pub(super) async fn outcome(
        &self,
        ctx: &Context<'_>,
        ticket: &Ticket,
        refresher: &Refresher,
        apps: &Arc<AppsById>,
        deadline: Instant,
    ) -> Result<&Refreshed, RefreshError> {
        self.arrive(&ticket.key);
        if let Some(outcome) = self.outcome.get() {
            return Ok(outcome);
        }
        let expected = self.roots(ctx).len();
        let mut arrivals = self.arrived.subscribe();
        // Every root field arrives at the latest when it finishes, so this
        // waits for real work only; the request's budget bounds it, as it
        // bounds the refresh: a slow root field (or a miscount) must never
        // hold a read beyond it.
        let incomplete = tokio::time::timeout_at(deadline, arrivals.wait_for(|n| *n >= expected))
            .await
            .is_err();
        if incomplete && !self.gave_up.swap(true, Ordering::AcqRel) {
            refresher.note_incomplete_round();
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
                let groups: Vec<Arc<dyn Group>> = self
                    .groups
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .filter_map(Weak::upgrade)
                    .collect();
                let members = groups.iter().flat_map(|g| g.members()).collect();
                refresher.refresh_read(members, apps, deadline).await
            })
            .await
    }
}

/// A root field's place in its request's [`Round`].
#[derive(Clone)]
pub struct Ticket {
    round: Arc<Round>,
    /// The root field's response key.
    key: Arc<str>,
}

impl Ticket {
    /// The ticket of the root field with response `key` in `round`.
    pub(super) fn new(round: Arc<Round>, key: &str) -> Self {
        Self {
            round,
            key: Arc::from(key),
        }
    }

    /// The round this ticket belongs to.
    pub(super) fn round(&self) -> &Arc<Round> {
        &self.round
    }

    /// The root field's response key.
    pub(super) fn key(&self) -> &str {
        &self.key
    }
}

/// The response key of the root field `ctx` belongs to.
pub(super) fn root_key<'a>(ctx: &'a Context<'_>) -> Option<&'a str> {
    let mut node = ctx.path_node.as_ref()?;
    while let Some(parent) = node.parent {
        node = parent;
    }
    match node.segment {
        async_graphql::QueryPathSegment::Name(key) => Some(key),
        async_graphql::QueryPathSegment::Index(_) => None,
    }
}

/// The name of the root field being resolved, when `ctx` is a root field's.
pub(super) fn root_name<'a>(ctx: &'a Context<'_>) -> Option<&'a str> {
    let root = ctx.path_node.as_ref()?;
    root.parent
        .is_none()
        .then(|| ctx.item.node.name.node.as_str())
}

/// Whether a root field named `name` takes part in the round (is waited
/// for): every field but introspection's.
pub(super) fn takes_part(name: &str) -> bool {
    !name.starts_with("__")
}

/// Counts the root fields of `set` that take part in the round into
/// `roots`, by response key: async-graphql resolves each field of the
/// selection once, with fragments on the query type expanded (`@skip` and
/// `@include` are already applied when execution starts).
fn root_fields(
    set: &SelectionSet,
    fragments: &HashMap<Name, Positioned<FragmentDefinition>>,
    query: &str,
    roots: &mut HashMap<String, usize>,
) {
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => {
                if takes_part(&field.node.name.node) {
                    *roots
                        .entry(field.node.response_key().node.to_string())
                        .or_default() += 1;
                }
            }
            Selection::FragmentSpread(spread) => {
                let fragment = fragments
                    .get(&spread.node.fragment_name.node)
                    .filter(|f| f.node.type_condition.node.on.node == query);
                if let Some(fragment) = fragment {
                    root_fields(&fragment.node.selection_set.node, fragments, query, roots);
                }
            }
            Selection::InlineFragment(inline) => {
                let applies = inline
                    .node
                    .type_condition
                    .as_ref()
                    .is_none_or(|c| c.node.on.node == query);
                if applies {
                    root_fields(&inline.node.selection_set.node, fragments, query, roots);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;
    use async_graphql::parser::types::DocumentOperations;

    use std::collections::HashMap;

    use super::root_fields;

    fn count(document: &str) -> HashMap<String, usize> {
        let doc = parse_query(document).expect("valid document");
        let DocumentOperations::Single(operation) = &doc.operations else {
            panic!("one operation");
        };
        let mut roots = HashMap::new();
        root_fields(
            &operation.node.selection_set.node,
            &doc.fragments,
            "Query",
            &mut roots,
        );
        roots
    }

    fn keys(pairs: &[(&str, usize)]) -> HashMap<String, usize> {
        pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
    }

    #[test]
    fn every_root_field_counts_by_response_key_except_introspection() {
        assert_eq!(
            count(
                "{ a: person(unionid: \"u\") { unionid } b: person(unionid: \"v\") { unionid } apps { appid } __typename }"
            ),
            keys(&[("a", 1), ("b", 1), ("apps", 1)])
        );
        assert_eq!(count("{ __typename }"), keys(&[]));
        assert_eq!(
            count("{ __schema { queryType { name } } __type(name: \"Query\") { name } }"),
            keys(&[])
        );
        // Fields merged under one response key are resolved once each.
        assert_eq!(
            count("{ a: apps { appid } a: apps { name } }"),
            keys(&[("a", 2)])
        );
    }

    #[test]
    fn fragments_on_the_query_type_are_expanded_wherever_they_are_spread() {
        let document =
            "query { ...A ... on Query { c: apps { appid } ...B } ... { d: apps { appid } } }
            fragment A on Query { a: apps { appid } __typename ...B }
            fragment B on Query { b: apps { appid } }";
        assert_eq!(
            count(document),
            keys(&[("a", 1), ("b", 2), ("c", 1), ("d", 1)])
        );
        assert_eq!(
            count("{ ... on Mutation { apps { appid } } x: apps { appid } }"),
            keys(&[("x", 1)])
        );
    }
}
