//! Automatic persisted queries, as Apollo's clients speak them: a request
//! may send `extensions.persistedQuery = { version: 1, sha256Hash }` with
//! no `query`; the server answers from the documents it has seen, or with
//! `PERSISTED_QUERY_NOT_FOUND`, and the client sends the document once
//! with its hash. Repeated queries then travel as a hash (and as GET
//! requests a CDN can cache).
//!
//! The cache is bounded in entries and bytes; the documents used least
//! recently go first. A document is kept only once it has passed the
//! request limits and validation, and only under its own SHA-256.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Documents kept at most.
pub const MAX_ENTRIES: usize = 2_000;
/// Bytes of documents kept at most.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

/// Why a request's persisted query cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum PersistedError {
    /// A hash alone, of a document this server does not hold: the client
    /// sends the document with it.
    NotFound,
    /// The document sent does not have the hash sent with it.
    HashMismatch,
    /// `persistedQuery` is not `{ version: 1, sha256Hash: <64 hex> }`.
    Malformed(String),
}

impl std::fmt::Display for PersistedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The message Apollo's clients look for.
            Self::NotFound => f.write_str("PersistedQueryNotFound"),
            Self::HashMismatch => f.write_str("provided sha does not match query"),
            Self::Malformed(why) => f.write_str(why),
        }
    }
}

/// What a request asks to run.
#[derive(Debug, PartialEq, Eq)]
pub struct Asked {
    /// The document's text.
    pub query: String,
    /// Its hash, when the request named one and the document is not stored
    /// yet: [`PersistedQueries::keep`] it once it passed the limits.
    pub to_keep: Option<String>,
}

/// The documents seen with their hashes, shared by every request.
#[derive(Debug, Clone)]
pub struct PersistedQueries(Arc<Mutex<Kept>>);

#[derive(Debug)]
struct Kept {
    by_hash: HashMap<String, Arc<str>>,
    order: VecDeque<String>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl Default for PersistedQueries {
    fn default() -> Self {
        Self::with_bounds(MAX_ENTRIES, MAX_BYTES)
    }
}

impl PersistedQueries {
    /// A cache of at most `max_entries` documents and `max_bytes` bytes.
    pub fn with_bounds(max_entries: usize, max_bytes: usize) -> Self {
        Self(Arc::new(Mutex::new(Kept {
            by_hash: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_entries,
            max_bytes,
        })))
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The document a request runs: its `query`, checked against the hash
    /// it names, or the stored document of that hash. `Ok(None)` when the
    /// request has neither a query nor a persisted query.
    pub fn resolve(
        &self,
        query: Option<String>,
        extensions: Option<&Map<String, Value>>,
    ) -> Result<Option<Asked>, PersistedError> {
        let hash = match extensions.and_then(|e| e.get("persistedQuery")) {
            None | Some(Value::Null) => None,
            Some(persisted) => Some(hash_of(persisted)?),
        };
        match (query, hash) {
            (Some(query), None) => Ok(Some(Asked {
                query,
                to_keep: None,
            })),
            (None, None) => Ok(None),
            (Some(query), Some(hash)) => {
                if hex::encode(Sha256::digest(query.as_bytes())) != hash {
                    return Err(PersistedError::HashMismatch);
                }
                let to_keep = (!self.kept().by_hash.contains_key(&hash)).then_some(hash);
                Ok(Some(Asked { query, to_keep }))
            }
            (None, Some(hash)) => {
                let mut kept = self.kept();
                let Some(query) = kept.by_hash.get(&hash).map(|q| q.to_string()) else {
                    return Err(PersistedError::NotFound);
                };
                // Used: it goes to the back of the eviction queue.
                if let Some(at) = kept.order.iter().position(|h| *h == hash) {
                    kept.order.remove(at);
                    kept.order.push_back(hash);
                }
                Ok(Some(Asked {
                    query,
                    to_keep: None,
                }))
            }
        }
    }

    /// Keeps `query` under `hash` (its SHA-256, checked by
    /// [`Self::resolve`]), making room by dropping the oldest documents.
    pub fn keep(&self, hash: String, query: &str) {
        let mut kept = self.kept();
        if query.len() > kept.max_bytes || kept.by_hash.contains_key(&hash) {
            return;
        }
        while kept.by_hash.len() >= kept.max_entries || kept.bytes + query.len() > kept.max_bytes {
            let Some(oldest) = kept.order.pop_front() else {
                break;
            };
            if let Some(dropped) = kept.by_hash.remove(&oldest) {
                kept.bytes -= dropped.len();
            }
        }
        kept.bytes += query.len();
        kept.order.push_back(hash.clone());
        kept.by_hash.insert(hash, Arc::from(query));
    }
}

/// The hash a `persistedQuery` extension names (lower-case hex).
fn hash_of(persisted: &Value) -> Result<String, PersistedError> {
    let malformed = |why: &str| Err(PersistedError::Malformed(why.to_owned()));
    let Value::Object(persisted) = persisted else {
        return malformed("`extensions.persistedQuery` must be an object");
    };
    if persisted.get("version").and_then(Value::as_i64) != Some(1) {
        return malformed("Unsupported persisted query version: union360 speaks version 1");
    }
    match persisted.get("sha256Hash").and_then(Value::as_str) {
        Some(hash) if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(hash.to_ascii_lowercase())
        }
        _ => malformed("`extensions.persistedQuery.sha256Hash` must be 64 hexadecimal digits"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn extensions(hash: &str) -> Map<String, Value> {
        let value = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
        value.as_object().unwrap().clone()
    }

    fn sha(text: &str) -> String {
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    #[test]
    fn a_hash_alone_is_answered_once_its_document_was_sent() {
        let cache = PersistedQueries::default();
        let query = "{__typename}";
        // The example of Apollo's protocol description: SHA-256 of `{__typename}`.
        assert_eq!(
            sha(query),
            "ecf4edb46db40b5132295c0291d62fb65d6759a9eedfa4d5d612dd5ec54a6b38"
        );
        let ext = extensions(&sha(query));
        assert_eq!(
            cache.resolve(None, Some(&ext)),
            Err(PersistedError::NotFound)
        );
        let asked = cache
            .resolve(Some(query.to_owned()), Some(&ext))
            .unwrap()
            .unwrap();
        assert_eq!(asked.to_keep.as_deref(), Some(sha(query).as_str()));
        cache.keep(asked.to_keep.unwrap(), &asked.query);
        let asked = cache.resolve(None, Some(&ext)).unwrap().unwrap();
        assert_eq!(
            asked,
            Asked {
                query: query.to_owned(),
                to_keep: None
            }
        );
        // Upper-case hex names the same document.
        let upper = extensions(&sha(query).to_ascii_uppercase());
        assert!(cache.resolve(None, Some(&upper)).is_ok());
    }

    #[test]
    fn a_document_is_kept_only_under_its_own_hash() {
        let cache = PersistedQueries::default();
        let ext = extensions(&sha("{ a }"));
        assert_eq!(
            cache.resolve(Some("{ b }".to_owned()), Some(&ext)),
            Err(PersistedError::HashMismatch)
        );
        assert_eq!(
            cache.resolve(None, Some(&ext)),
            Err(PersistedError::NotFound)
        );
    }

    #[test]
    fn malformed_extensions_are_refused() {
        let cache = PersistedQueries::default();
        for bad in [
            json!({ "persistedQuery": 1 }),
            json!({ "persistedQuery": { "version": 2, "sha256Hash": sha("{ a }") } }),
            json!({ "persistedQuery": { "version": 1, "sha256Hash": "abc" } }),
            json!({ "persistedQuery": { "version": 1 } }),
        ] {
            let result = cache.resolve(None, bad.as_object());
            assert!(matches!(result, Err(PersistedError::Malformed(_))), "{bad}");
        }
        // No extension: the query as sent; nothing at all: nothing.
        assert!(
            cache
                .resolve(Some("{ a }".to_owned()), None)
                .unwrap()
                .is_some()
        );
        assert!(cache.resolve(None, Some(&Map::new())).unwrap().is_none());
    }

    #[test]
    fn a_document_in_use_stays() {
        let cache = PersistedQueries::with_bounds(2, 1_000);
        let known = |q: &str| cache.resolve(None, Some(&extensions(&sha(q)))).is_ok();
        cache.keep(sha("{ a }"), "{ a }");
        cache.keep(sha("{ b }"), "{ b }");
        assert!(known("{ a }"));
        cache.keep(sha("{ c }"), "{ c }");
        assert!(known("{ a }") && !known("{ b }") && known("{ c }"));
    }

    #[test]
    fn the_oldest_documents_make_room() {
        let cache = PersistedQueries::with_bounds(2, 20);
        for query in ["{ a }", "{ b }", "{ c }"] {
            cache.keep(sha(query), query);
        }
        let known = |q: &str| cache.resolve(None, Some(&extensions(&sha(q)))).is_ok();
        assert!(!known("{ a }") && known("{ b }") && known("{ c }"));
        // Bytes bound too: 17 bytes more drop both (one for the entries,
        // one for the bytes).
        let d = "{ ddddddddddddd }";
        cache.keep(sha(d), d);
        assert!(!known("{ b }") && !known("{ c }") && known(d));
        // A document larger than the whole cache is not kept.
        let big = "{ ".to_owned() + &"e".repeat(30) + " }";
        cache.keep(sha(&big), &big);
        assert!(!known(&big) && known(d));
    }
}
