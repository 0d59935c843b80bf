//! Relay-style connections with opaque keyset cursors.
//!
//! A cursor encodes the kind of list and the row id it points after; the
//! read service reads the page after it (keyset pages, so inserts never
//! shift a page and deep pages cost the same as the first). `totalCount` is
//! only counted when a client asks for it.

use async_graphql::SimpleObject;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::error::ApiError;
use crate::identity::PageRequest;

/// Page size when `first` is not given.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// Largest accepted `first`.
pub const MAX_PAGE_SIZE: usize = 100;

/// Validated pagination arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageArgs {
    /// Rows per page.
    pub first: usize,
    /// Id the page starts after.
    pub after: Option<i64>,
}

impl PageArgs {
    /// Validates `first` and decodes `after` for a list of `kind`.
    pub fn parse(kind: &str, first: Option<i32>, after: Option<&str>) -> Result<Self, ApiError> {
        let first = match first {
            None => DEFAULT_PAGE_SIZE,
            Some(n) if n < 0 => {
                return Err(ApiError::BadUserInput(
                    "first must not be negative".to_owned(),
                ));
            }
            Some(n) if n as usize > MAX_PAGE_SIZE => {
                return Err(ApiError::BadUserInput(format!(
                    "first must be at most {MAX_PAGE_SIZE}; page through with `after`"
                )));
            }
            Some(n) => n as usize,
        };
        let after = after.map(|c| decode_cursor(kind, c)).transpose()?;
        Ok(Self { first, after })
    }

    /// The page to ask the read service for.
    pub fn request(self) -> PageRequest {
        PageRequest {
            first: self.first,
            after: self.after,
        }
    }
}

/// Encodes a cursor for row `id` of a list of `kind`.
pub fn encode_cursor(kind: &str, id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{id}"))
}

/// Decodes a cursor of a list of `kind`.
pub fn decode_cursor(kind: &str, cursor: &str) -> Result<i64, ApiError> {
    let bad = || ApiError::BadUserInput(format!("`after` is not a cursor of this {kind} list"));
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let id = text
        .strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix(':'))
        .ok_or_else(bad)?;
    id.parse().map_err(|_| bad())
}

/// Relay page information.
#[derive(Debug, Clone, SimpleObject)]
pub struct PageInfo {
    /// Whether more rows follow this page.
    pub has_next_page: bool,
    /// Whether rows precede this page (true when `after` was given).
    pub has_previous_page: bool,
    /// Cursor of the first row of this page.
    pub start_cursor: Option<String>,
    /// Cursor of the last row of this page; pass it as `after` for the next page.
    pub end_cursor: Option<String>,
}

/// Builds a page info from the ids of a page.
pub fn page_info(kind: &str, ids: &[i64], has_next: bool, args: PageArgs) -> PageInfo {
    PageInfo {
        has_next_page: has_next,
        has_previous_page: args.after.is_some(),
        start_cursor: ids.first().map(|id| encode_cursor(kind, *id)),
        end_cursor: ids.last().map(|id| encode_cursor(kind, *id)),
    }
}

/// Declares a connection type and its edge type for a node type, over a
/// page of `$entity` rows of the list `$kind` (the cursors' prefix).
macro_rules! connection {
    ($conn:ident, $edge:ident, $node:ty, $entity:path, $what:literal, $kind:literal) => {
        #[doc = concat!("A page of ", $what, ".")]
        pub struct $conn {
            edges: Vec<$edge>,
            page_info: $crate::graphql::page::PageInfo,
            total: $crate::identity::read::Total<$entity>,
        }

        impl $conn {
            /// The kind of list, as its cursors name it.
            pub const KIND: &'static str = $kind;

            /// The connection over `page`, read as `args` asked, with its
            /// rows wrapped as nodes by `wrap` (in order).
            pub fn new(
                page: $crate::identity::Page<$entity>,
                args: $crate::graphql::page::PageArgs,
                wrap: impl FnOnce(
                    Vec<<$entity as sea_orm::EntityTrait>::Model>,
                ) -> Vec<$node>,
            ) -> Self {
                let ids: Vec<i64> = page.rows.iter().map(|r| r.id).collect();
                let page_info =
                    $crate::graphql::page::page_info(Self::KIND, &ids, page.has_next, args);
                let edges = ids
                    .iter()
                    .zip(wrap(page.rows))
                    .map(|(id, node)| $edge {
                        cursor: $crate::graphql::page::encode_cursor(Self::KIND, *id),
                        node,
                    })
                    .collect();
                Self {
                    edges,
                    page_info,
                    total: page.total,
                }
            }
        }

        #[doc = concat!("A page of ", $what, ".")]
        #[async_graphql::Object]
        impl $conn {
            #[doc = concat!("The ", $what, " of this page with their cursors.")]
            async fn edges(&self) -> &[$edge] {
                &self.edges
            }

            #[doc = concat!("The ", $what, " of this page, without cursors.")]
            async fn nodes(&self) -> Vec<&$node> {
                self.edges.iter().map(|e| &e.node).collect()
            }

            /// Where this page stands in the list.
            async fn page_info(&self) -> &$crate::graphql::page::PageInfo {
                &self.page_info
            }

            #[doc = concat!("How many ", $what, " match the filter in all (one COUNT query, run only when asked).")]
            async fn total_count(
                &self,
                ctx: &async_graphql::Context<'_>,
            ) -> $crate::graphql::error::ApiResult<u64> {
                use $crate::graphql::context::ContextExt;
                use $crate::graphql::error::ResultExt;
                self.total.count(ctx.state()?.db()).await.api()
            }
        }

        #[doc = concat!("One of ", $what, " with its cursor.")]
        #[derive(async_graphql::SimpleObject)]
        pub struct $edge {
            /// Opaque cursor of this row; pass it as `after` to continue after it.
            pub cursor: String,
            /// The row itself.
            pub node: $node,
        }
    };
}

pub(crate) use connection;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_are_bound_to_their_list() {
        let c = encode_cursor("person", 42);
        assert_eq!(decode_cursor("person", &c).unwrap(), 42);
        assert!(decode_cursor("account", &c).is_err());
        assert!(decode_cursor("person", "!!").is_err());
    }

    #[test]
    fn page_size_is_bounded() {
        assert_eq!(PageArgs::parse("p", None, None).unwrap().first, 20);
        assert!(PageArgs::parse("p", Some(101), None).is_err());
        assert!(PageArgs::parse("p", Some(-1), None).is_err());
        assert_eq!(PageArgs::parse("p", Some(100), None).unwrap().first, 100);
    }
}
