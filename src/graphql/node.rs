//! Global object identification, as the Relay server specification has it:
//! every object a client may cache (`Person`, `Account`, `App`) implements
//! the `Node` interface with an opaque `id`, and `node(id:)` / `nodes(ids:)`
//! fetch objects back by it. Normalised client caches (Apollo's, Relay's)
//! key objects by `__typename` and `id`, so an account renamed by one query
//! is renamed everywhere the client shows it.
//!
//! An id is base64url (no padding) of the type and the object's natural key
//! (`Person:<unionid>`, `Account:<appid>:<openid>`, `App:<appid>`): stable
//! across restarts, instances, databases and master keys, and opaque to
//! clients, which must not build or take ids apart.
//!
//! The objects `node` and `nodes` return have no static type; each records
//! its concrete type ([`RuntimeTypes`]) so that the response's keys can be
//! put in query order with the fragments that apply to it alone
//! ([`super::order`]).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_graphql::{Context, ID, Interface, Object};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::access;
use super::account::Account;
use super::app::App;
use super::context::{ContextExt, ticket};
use super::enums::RefreshPolicy;
use super::error::{ApiError, ApiResult, ResultExt};
use super::limits::cost;
use super::person::Person;
use crate::domain::{AppId, OpenId, UnionId};
use crate::identity::read;

/// The most ids `nodes` takes at once (a page's worth).
pub const MAX_IDS: usize = 100;

/// What a node id names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeId {
    /// A person, by UnionID.
    Person(UnionId),
    /// An account, by its app and OpenID.
    Account(AppId, OpenId),
    /// An app, by appid.
    App(AppId),
}

/// An id that is not one union360 gave out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a node id of this API (ids come from the `id` field of a Person, Account or App)")]
pub struct BadNodeId;

impl NodeId {
    /// The opaque id clients see.
    pub fn encode(&self) -> ID {
        let plain = match self {
            Self::Person(unionid) => format!("Person:{}", unionid.as_str()),
            Self::Account(appid, openid) => {
                format!("Account:{}:{}", appid.as_str(), openid.as_str())
            }
            Self::App(appid) => format!("App:{}", appid.as_str()),
        };
        ID(URL_SAFE_NO_PAD.encode(plain))
    }

    /// What `id` names; every part is checked as the API checks it elsewhere.
    pub fn decode(id: &str) -> Result<Self, BadNodeId> {
        // The longest real id (an account's) is well under 256 characters.
        if id.len() > 256 {
            return Err(BadNodeId);
        }
        let bytes = URL_SAFE_NO_PAD.decode(id).map_err(|_| BadNodeId)?;
        let plain = String::from_utf8(bytes).map_err(|_| BadNodeId)?;
        let (kind, key) = plain.split_once(':').ok_or(BadNodeId)?;
        match kind {
            "Person" => UnionId::parse(key).map(Self::Person).map_err(|_| BadNodeId),
            "App" => AppId::parse(key).map(Self::App).map_err(|_| BadNodeId),
            "Account" => {
                // An appid holds no ':'; an OpenID may, in principle.
                let (appid, openid) = key.split_once(':').ok_or(BadNodeId)?;
                let appid = AppId::parse(appid).map_err(|_| BadNodeId)?;
                let openid = OpenId::parse(openid).map_err(|_| BadNodeId)?;
                Ok(Self::Account(appid, openid))
            }
            _ => Err(BadNodeId),
        }
    }
}

/// An object with a globally unique, stable id.
#[allow(
    clippy::large_enum_variant,
    reason = "values live for one request, at most 100 at a time"
)]
#[derive(Interface)]
#[graphql(field(
    name = "id",
    ty = "ID",
    desc = "An opaque identifier, unique across every type of this API and stable for the object's life: the key normalised client caches (Apollo, Relay) store the object under, and what `node(id:)` takes back. Do not build or parse it."
))]
pub enum Node {
    /// A person.
    Person(Person),
    /// An account.
    Account(Account),
    /// An app.
    App(App),
}

impl Node {
    fn type_name(&self) -> &'static str {
        match self {
            Self::Person(_) => "Person",
            Self::Account(_) => "Account",
            Self::App(_) => "App",
        }
    }
}

/// The concrete types of the objects fields of an abstract type returned in
/// one request, by response path (`node`, `nodes/3`): each with the type
/// conditions that apply to it (its own name and every interface it
/// implements).
#[derive(Default)]
pub struct RuntimeTypes(Mutex<HashMap<String, Vec<String>>>);

impl RuntimeTypes {
    /// The type conditions that apply to the object at `path`, if recorded.
    pub fn at(&self, path: &str) -> Option<Vec<String>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
            .cloned()
    }

    /// Whether nothing was recorded (the usual case: no abstract field ran).
    pub fn is_empty(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    fn record(&self, ctx: &Context<'_>, path: String, node: &Node) {
        let concrete = node.type_name();
        let mut applies = vec![concrete.to_owned()];
        applies.extend(
            ctx.schema_env
                .registry
                .types
                .values()
                .filter(|ty| ty.is_abstract() && ty.is_possible_type(concrete))
                .map(|ty| ty.name().to_owned()),
        );
        self.set(path, applies);
    }

    /// Records that the type conditions `applies` apply to the object at `path`.
    pub fn set(&self, path: String, applies: Vec<String>) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path, applies);
    }
}

/// The response path of the field `ctx` resolves, as [`RuntimeTypes`] keys it.
fn path_of(ctx: &Context<'_>) -> String {
    let mut path = String::new();
    for segment in ctx
        .path_node
        .map(|node| node.to_string_vec())
        .unwrap_or_default()
    {
        super::order::push_segment(&mut path, &segment);
    }
    path
}

/// Records the concrete types of `nodes`, the values of the field `ctx`
/// resolves (a list of them when `listed`).
fn record_types<'a>(ctx: &Context<'_>, nodes: impl Iterator<Item = (Option<usize>, &'a Node)>) {
    let Some(types) = ctx.data_opt::<std::sync::Arc<RuntimeTypes>>() else {
        return;
    };
    let path = path_of(ctx);
    for (index, node) in nodes {
        let at = match index {
            Some(index) => {
                let mut at = path.clone();
                super::order::push_segment(&mut at, &index.to_string());
                at
            }
            None => path.clone(),
        };
        types.record(ctx, at, node);
    }
}

/// The nodes of `ids`, in order: `None` where nothing has the id. Persons
/// are read in one statement and accounts in another, each batch loading
/// its relations together, as a page's rows do.
async fn load(
    ctx: &Context<'_>,
    ids: &[NodeId],
    refresh: Option<RefreshPolicy>,
) -> ApiResult<Vec<Option<Node>>> {
    let state = ctx.state()?;
    let db = state.db();
    let mut unionids = Vec::new();
    let mut account_keys = Vec::new();
    for id in ids {
        match id {
            NodeId::Person(unionid) => unionids.push(unionid),
            NodeId::Account(appid, openid) => account_keys.push((appid.clone(), openid.clone())),
            NodeId::App(_) => {}
        }
    }
    let person_rows = if unionids.is_empty() {
        Vec::new()
    } else {
        let found = read::persons_by_unionids(db, &unionids).await.api()?;
        // `get`, not `remove`: an id may be asked for more than once.
        unionids
            .iter()
            .map(|unionid| found.get(unionid.as_str()).cloned())
            .collect()
    };
    let account_rows = if account_keys.is_empty() {
        Vec::new()
    } else {
        read::accounts_by_keys(db, state.apps(), &account_keys)
            .await
            .api()?
    };
    ctx.read_rows(person_rows.iter().flatten().count() + account_rows.iter().flatten().count())?;
    let policy = access::refresh_policy(ctx, refresh)?;
    let mut persons = aligned(person_rows, |rows| Person::batch(rows, policy, ticket(ctx)));
    let mut accounts = aligned(account_rows, |rows| {
        Account::batch(rows, policy, ticket(ctx))
    });
    // The apps looked up together: unknown ones cost one reload in all.
    let app_ids: Vec<&AppId> = ids
        .iter()
        .filter_map(|id| match id {
            NodeId::App(appid) => Some(appid),
            _ => None,
        })
        .collect();
    let mut apps = if app_ids.is_empty() {
        Vec::new()
    } else {
        state.apps().by_appids(&app_ids).await.api()?
    }
    .into_iter();
    let mut nodes = Vec::with_capacity(ids.len());
    for id in ids {
        nodes.push(match id {
            NodeId::Person(_) => persons.next().flatten().map(Node::Person),
            NodeId::Account(..) => accounts.next().flatten().map(Node::Account),
            NodeId::App(_) => apps.next().flatten().map(|a| Node::App(App(a))),
        });
    }
    Ok(nodes)
}

/// `rows` wrapped together by `wrap`, each in its place: `None` stays `None`.
fn aligned<M, T>(
    rows: Vec<Option<M>>,
    wrap: impl FnOnce(Vec<M>) -> Vec<T>,
) -> impl Iterator<Item = Option<T>> {
    let present: Vec<bool> = rows.iter().map(Option::is_some).collect();
    let mut wrapped = wrap(rows.into_iter().flatten().collect()).into_iter();
    present
        .into_iter()
        .map(move |present| if present { wrapped.next() } else { None })
}

fn decode_all(ids: &[ID]) -> ApiResult<Vec<NodeId>> {
    if ids.len() > MAX_IDS {
        return Err(ApiError::BadUserInput(format!(
            "`nodes` takes at most {MAX_IDS} ids; ask in several requests"
        ))
        .into());
    }
    ids.iter()
        .enumerate()
        .map(|(at, id)| {
            NodeId::decode(id).map_err(|e| ApiError::BadUserInput(format!("ids[{at}]: {e}")).into())
        })
        .collect()
}

/// The root fields of global object identification.
#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// The object with this id (from the `id` field of a Person, Account or
    /// App), or null when it no longer exists. Fails with BAD_USER_INPUT
    /// when the id is not one this API gives out. Stale profiles are
    /// refreshed as `IF_STALE` says (this field takes the id alone, as
    /// Relay requires; `nodes` takes a `refresh` policy).
    async fn node(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The object's `id`.")] id: ID,
    ) -> ApiResult<Option<Node>> {
        let id = NodeId::decode(&id).map_err(|e| ApiError::BadUserInput(e.to_string()))?;
        let node = load(ctx, std::slice::from_ref(&id), None)
            .await?
            .pop()
            .flatten();
        record_types(ctx, node.iter().map(|n| (None, n)));
        Ok(node)
    }

    /// The objects with these ids, in the same order: null where nothing has
    /// the id. At most 100 ids; fails with BAD_USER_INPUT when one is not an
    /// id this API gives out.
    #[graphql(complexity = "cost::rows(ids.len().min(MAX_IDS), child_complexity)")]
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The objects' `id`s (at most 100).")] ids: Vec<ID>,
        #[graphql(
            desc = "How to handle stale profiles: IF_STALE (the default), CACHE_ONLY or FORCE."
        )]
        refresh: Option<RefreshPolicy>,
    ) -> ApiResult<Vec<Option<Node>>> {
        let ids = decode_all(&ids)?;
        let nodes = load(ctx, &ids, refresh).await?;
        record_types(
            ctx,
            nodes
                .iter()
                .enumerate()
                .filter_map(|(at, n)| n.as_ref().map(|n| (Some(at), n))),
        );
        Ok(nodes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(id: NodeId) {
        let encoded = id.encode();
        assert_eq!(NodeId::decode(&encoded), Ok(id));
    }

    #[test]
    fn ids_round_trip() {
        round_trip(NodeId::Person(
            UnionId::parse("o6_bmasdasdsad6_2sgVt7hMZOPfL").unwrap(),
        ));
        round_trip(NodeId::App(AppId::parse("wx0000000000000001").unwrap()));
        round_trip(NodeId::Account(
            AppId::parse("wx0000000000000001").unwrap(),
            OpenId::parse("oLVPpjqs9BhvzwPj5A-vTYAX3GLc").unwrap(),
        ));
    }

    #[test]
    fn ids_are_opaque_and_stable() {
        let id = NodeId::App(AppId::parse("wx0000000000000001").unwrap()).encode();
        // base64url of "App:wx0000000000000001", no padding: the same on every run.
        assert_eq!(id.0, "QXBwOnd4MDAwMDAwMDAwMDAwMDAwMQ");
        assert!(!id.0.contains("wx"));
    }

    #[test]
    fn foreign_ids_are_refused() {
        for bad in [
            "",
            "not base64!",
            "UGVyc29u",                                        // "Person" without a key
            &URL_SAFE_NO_PAD.encode("Thing:x"),                // unknown type
            &URL_SAFE_NO_PAD.encode("Person: padded"),         // a UnionID refused by its parser
            &URL_SAFE_NO_PAD.encode("Account:wx1"),            // no openid
            &URL_SAFE_NO_PAD.encode("App:not-an-appid"),       // a malformed appid
            &URL_SAFE_NO_PAD.encode([0xff, 0xfe, b':', b'x']), // not UTF-8
            &"A".repeat(10_000),
        ] {
            assert_eq!(NodeId::decode(bad), Err(BadNodeId), "{bad:.40}");
        }
    }
}
