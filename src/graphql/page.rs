//! Relay-style connections with opaque, unforgeable keyset cursors.
//!
//! A cursor names the row id a page starts after, signed for its kind of
//! list; the read service reads the page after it (keyset pages, so inserts
//! never shift a page and deep pages cost the same as the first).
//! `totalCount` is only counted when a client asks for it.
//!
//! A cursor is base64url of the id (8 bytes) and a 128-bit HMAC-SHA256 tag
//! of the kind and the id, under a key derived from the master key
//! ([`Cursors`]). A client cannot make a cursor union360 did not give it,
//! nor use one list's cursor in another; one altered in any bit is refused.
//! Cursors stay valid across restarts and instances sharing the master key,
//! and end with it when the master key changes.

use async_graphql::SimpleObject;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::error::ApiError;
use crate::crypto::MasterKey;
use crate::identity::PageRequest;

/// Page size when `first` is not given.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// Largest accepted `first`.
pub const MAX_PAGE_SIZE: usize = 100;

/// Validated pagination arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageArgs {
    /// Rows per page.
    pub size: usize,
    /// Id the page starts after.
    pub after: Option<i64>,
    /// Id the page ends before.
    pub before: Option<i64>,
    /// Whether the page was asked for with `last`: the rows just before
    /// `before` (or the end), not just after `after` (or the start).
    pub from_end: bool,
}

/// A connection's arguments as sent: `first`/`after` page forward,
/// `last`/`before` backward.
#[derive(Debug, Clone, Copy, Default)]
pub struct Paging<'a> {
    /// Rows from the start of the range.
    pub first: Option<i32>,
    /// Cursor the range starts after.
    pub after: Option<&'a str>,
    /// Rows from the end of the range.
    pub last: Option<i32>,
    /// Cursor the range ends before.
    pub before: Option<&'a str>,
}

impl PageArgs {
    /// Validates the sizes and checks and decodes the cursors of `paging`
    /// for a list of `kind`.
    pub fn parse(cursors: &Cursors, kind: &str, paging: Paging<'_>) -> Result<Self, ApiError> {
        let size = |name: &str, n: Option<i32>| match n {
            None => Ok(DEFAULT_PAGE_SIZE),
            Some(n) if n < 0 => Err(ApiError::BadUserInput(format!(
                "{name} must not be negative"
            ))),
            Some(n) if n as usize > MAX_PAGE_SIZE => Err(ApiError::BadUserInput(format!(
                "{name} must be at most {MAX_PAGE_SIZE}; page through with `after` or `before`"
            ))),
            Some(n) => Ok(n as usize),
        };
        let (size, from_end) = match (paging.first, paging.last) {
            (Some(_), Some(_)) => {
                return Err(ApiError::BadUserInput(
                    "give `first` (to page forward) or `last` (to page backward), not both"
                        .to_owned(),
                ));
            }
            (None, Some(last)) => (size("last", Some(last))?, true),
            // `before` alone pages backward from it.
            (None, None) if paging.before.is_some() && paging.after.is_none() => {
                (DEFAULT_PAGE_SIZE, true)
            }
            (first, None) => (size("first", first)?, false),
        };
        let after = paging.after.map(|c| cursors.decode(kind, c)).transpose()?;
        let before = paging.before.map(|c| cursors.decode(kind, c)).transpose()?;
        Ok(Self {
            size,
            after,
            before,
            from_end,
        })
    }

    /// The page to ask the read service for.
    pub fn request(self) -> PageRequest {
        PageRequest {
            size: self.size,
            after: self.after,
            before: self.before,
            from_end: self.from_end,
        }
    }
}

/// Bytes of a cursor's id.
const ID_LEN: usize = 8;
/// Bytes of a cursor's tag (HMAC-SHA256 cut to 128 bits).
const TAG_LEN: usize = 16;

/// Makes and checks cursors, with a key of their own derived from the master key.
#[derive(Clone)]
pub struct Cursors(Hmac<Sha256>);

impl Cursors {
    /// The cursors of the server whose master key is `key`.
    pub fn new(key: &MasterKey) -> Self {
        Self(key.mac_for("cursor"))
    }

    /// The cursors of one instance of a list (the accounts of one app, say):
    /// a cursor of another instance is refused.
    pub fn within(&self, list: &str) -> Self {
        let mut mac = self.0.clone();
        mac.update(list.as_bytes());
        mac.update(b"\0");
        Self(mac)
    }

    /// The tagger for row `id` of a list of `kind`.
    fn mac(&self, kind: &str, id: [u8; ID_LEN]) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(kind.as_bytes());
        mac.update(b"\0");
        mac.update(&id);
        mac
    }

    /// The cursor of row `id` of a list of `kind`.
    pub fn encode(&self, kind: &str, id: i64) -> String {
        let id = id.to_be_bytes();
        let tag = self.mac(kind, id).finalize().into_bytes();
        let mut bytes = id.to_vec();
        bytes.extend_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The row id of a cursor this server made for a list of `kind`; any
    /// other text is refused as an invalid cursor.
    pub fn decode(&self, kind: &str, cursor: &str) -> Result<i64, ApiError> {
        let invalid = || {
            ApiError::BadUserInput(format!(
                "invalid cursor: `after` and `before` take a cursor of this {kind} list, as received"
            ))
        };
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
        if bytes.len() != ID_LEN + TAG_LEN {
            return Err(invalid());
        }
        let (id, tag) = bytes.split_at(ID_LEN);
        let id: [u8; ID_LEN] = id.try_into().map_err(|_| invalid())?;
        // Compared in constant time.
        self.mac(kind, id)
            .verify_truncated_left(tag)
            .map_err(|_| invalid())?;
        Ok(i64::from_be_bytes(id))
    }
}

/// Relay page information.
#[derive(Debug, Clone, SimpleObject)]
pub struct PageInfo {
    /// Whether more rows follow this page: read forward, whether the list
    /// goes on; read backward (`last`), whether `before` was given.
    pub has_next_page: bool,
    /// Whether rows precede this page: read backward (`last`), whether the
    /// list goes back further; read forward, whether `after` was given.
    pub has_previous_page: bool,
    /// Cursor of the first row of this page; pass it as `before` for the
    /// previous page.
    pub start_cursor: Option<String>,
    /// Cursor of the last row of this page; pass it as `after` for the next page.
    pub end_cursor: Option<String>,
}

/// Builds a page info from the cursors of a page's rows, read as `args`
/// asked, `has_more` saying whether the range goes on where it was read
/// from.
pub fn page_info(cursors: &[String], has_more: bool, args: PageArgs) -> PageInfo {
    let (has_next_page, has_previous_page) = if args.from_end {
        (args.before.is_some(), has_more)
    } else {
        (has_more, args.after.is_some())
    };
    PageInfo {
        has_next_page,
        has_previous_page,
        start_cursor: cursors.first().cloned(),
        end_cursor: cursors.last().cloned(),
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
            /// rows wrapped as nodes by `wrap` (in order) and their cursors
            /// made by `cursors`.
            pub fn new(
                page: $crate::identity::Page<$entity>,
                args: $crate::graphql::page::PageArgs,
                cursors: &$crate::graphql::page::Cursors,
                wrap: impl FnOnce(
                    Vec<<$entity as sea_orm::EntityTrait>::Model>,
                ) -> Vec<$node>,
            ) -> Self {
                let cursors: Vec<String> = page
                    .rows
                    .iter()
                    .map(|r| cursors.encode(Self::KIND, r.id))
                    .collect();
                let page_info =
                    $crate::graphql::page::page_info(&cursors, page.has_more, args);
                let edges = cursors
                    .into_iter()
                    .zip(wrap(page.rows))
                    .map(|(cursor, node)| $edge { cursor, node })
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

    fn cursors() -> Cursors {
        Cursors::new(&MasterKey::generate().0)
    }

    #[test]
    fn cursors_round_trip_and_are_bound_to_their_list_and_key() {
        let cursors = cursors();
        let c = cursors.encode("person", 42);
        assert_eq!(cursors.decode("person", &c).unwrap(), 42);
        assert_eq!(
            cursors
                .decode("person", &cursors.encode("person", -1))
                .unwrap(),
            -1
        );
        assert!(cursors.decode("account", &c).is_err());
        assert!(cursors.decode("person", "!!").is_err());
        assert!(cursors.decode("person", "").is_err());
        assert!(
            self::cursors().decode("person", &c).is_err(),
            "another master key"
        );
    }

    #[test]
    fn cursors_of_one_app_s_accounts_are_refused_on_another_s() {
        let cursors = cursors();
        let a = cursors.within("wx00000000000000a1");
        let c = a.encode("account", 7);
        assert_eq!(a.decode("account", &c).unwrap(), 7);
        assert!(
            cursors
                .within("wx00000000000000a2")
                .decode("account", &c)
                .is_err()
        );
        assert!(cursors.decode("account", &c).is_err());
    }

    #[test]
    fn a_cursor_altered_in_any_bit_is_refused() {
        let cursors = cursors();
        let bytes = URL_SAFE_NO_PAD.decode(cursors.encode("person", 7)).unwrap();
        for bit in 0..bytes.len() * 8 {
            let mut forged = bytes.clone();
            forged[bit / 8] ^= 1 << (bit % 8);
            let forged = URL_SAFE_NO_PAD.encode(forged);
            assert!(cursors.decode("person", &forged).is_err(), "bit {bit}");
        }
        // Nor is the id of the old, readable form accepted.
        assert!(
            cursors
                .decode("person", &URL_SAFE_NO_PAD.encode("person:7"))
                .is_err()
        );
    }

    #[test]
    fn page_size_is_bounded() {
        let c = cursors();
        let parse = |paging: Paging<'_>| PageArgs::parse(&c, "p", paging);
        assert_eq!(parse(Paging::default()).unwrap().size, 20);
        for n in [101, -1] {
            assert!(
                parse(Paging {
                    first: Some(n),
                    ..Paging::default()
                })
                .is_err()
            );
            assert!(
                parse(Paging {
                    last: Some(n),
                    ..Paging::default()
                })
                .is_err()
            );
        }
        assert_eq!(
            parse(Paging {
                first: Some(100),
                ..Paging::default()
            })
            .unwrap()
            .size,
            100
        );
        let last = parse(Paging {
            last: Some(7),
            ..Paging::default()
        })
        .unwrap();
        assert_eq!((last.size, last.from_end), (7, true));
        assert!(
            parse(Paging {
                first: Some(1),
                last: Some(1),
                ..Paging::default()
            })
            .is_err()
        );
    }

    #[test]
    fn page_info_reads_the_side_the_page_came_from() {
        let c = cursors();
        let id = c.encode("p", 5);
        let args = |paging: Paging<'_>| PageArgs::parse(&c, "p", paging).unwrap();
        let rows = ["a".to_owned(), "b".to_owned()];
        // Forward: more rows after, and something before only past `after`.
        let forward = page_info(
            &rows,
            true,
            args(Paging {
                after: Some(&id),
                ..Paging::default()
            }),
        );
        assert!(forward.has_next_page && forward.has_previous_page);
        let first = page_info(&rows, false, args(Paging::default()));
        assert!(!first.has_next_page && !first.has_previous_page);
        // Backward: more rows before, and something after only before `before`.
        let backward = page_info(
            &rows,
            true,
            args(Paging {
                last: Some(2),
                ..Paging::default()
            }),
        );
        assert!(!backward.has_next_page && backward.has_previous_page);
        let before = args(Paging {
            before: Some(&id),
            ..Paging::default()
        });
        assert!(before.from_end);
        let info = page_info(&rows, false, before);
        assert!(info.has_next_page && !info.has_previous_page);
        assert_eq!(info.start_cursor.as_deref(), Some("a"));
    }
}
