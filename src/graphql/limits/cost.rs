//! What fields cost, for the complexity limit.
//!
//! A field costs one, plus what its selection costs; a list's selection
//! counts once per row the list can hold, so a query's cost tracks the
//! values it can return, not the length of its text. Connections hold their
//! page size (`first`, 20 when not given, never more than 100); lists without
//! paging hold at most [`LIST_BOUND`] rows as far as cost goes; the lists a
//! mutation returns hold one row per input row.
//!
//! Resolvers name these functions in `#[graphql(complexity = "…")]`.

use crate::graphql::page::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

/// How many rows a list without paging is assumed to hold: a person's
/// accounts (one per app, by the identity rules) and the registered apps.
/// A company runs a handful of apps, rarely more than ten; a longer list is
/// still served in full, and the per-request row limit bounds what it reads.
pub const LIST_BOUND: usize = 10;

/// A list of `n` rows, each costing `child`.
pub fn rows(n: usize, child: usize) -> usize {
    child.saturating_mul(n).saturating_add(1)
}

/// A page of a connection asked for with `first`.
pub fn page(first: Option<i32>, child: usize) -> usize {
    let size = first.map_or(DEFAULT_PAGE_SIZE, |n| {
        usize::try_from(n).unwrap_or(0).min(MAX_PAGE_SIZE)
    });
    rows(size, child)
}

/// A list without paging (at most one row when `one` says so).
pub fn list(one: bool, child: usize) -> usize {
    rows(if one { 1 } else { LIST_BOUND }, child)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_multiply_by_what_they_hold() {
        assert_eq!(page(Some(100), 4), 401);
        assert_eq!(page(None, 4), 81);
        assert_eq!(page(Some(1_000_000), 4), 401);
        assert_eq!(page(Some(-5), 4), 1);
        assert_eq!(list(false, 3), 31);
        assert_eq!(list(true, 3), 4);
        assert_eq!(rows(usize::MAX, 2), usize::MAX);
    }
}
