//! Who may read and do what: every field's scope, checked as it resolves.
//!
//! Each field of the schema needs one [`Scope`]: the type's default in
//! [`TYPE_SCOPES`], or its own in [`FIELD_SCOPES`] (personal profile
//! fields, mutations, the admin fields). A field nobody declared is refused
//! to everyone, and a test walks the schema so none is left undeclared.
//!
//! [`ScopeGuard`] checks the caller's key before a field resolves. A refused
//! nullable field becomes `null` with a `FORBIDDEN` error naming the scope it
//! needs, and its siblings are kept (async-graphql would otherwise drop the
//! whole parent object); a refused non-null field fails upward, as the
//! GraphQL specification says for non-null fields.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextResolve, ResolveInfo,
};
use async_graphql::{Context, ErrorExtensions, ServerError, ServerResult, Value};

use super::enums;
use super::error::{ApiError, ApiResult};
use crate::keys::{Principal, Refusal, Scope};
use crate::refresh::RefreshPolicy;

/// The scope of every field of a type, unless [`FIELD_SCOPES`] says otherwise.
pub const TYPE_SCOPES: &[(&str, Scope)] = &[
    ("Query", Scope::Read),
    ("Person", Scope::Read),
    ("PersonConnection", Scope::Read),
    ("PersonEdge", Scope::Read),
    ("Account", Scope::Read),
    ("AccountConnection", Scope::Read),
    ("AccountEdge", Scope::Read),
    ("FieldSource", Scope::Read),
    ("RefreshError", Scope::Read),
    ("PageInfo", Scope::Read),
    ("App", Scope::Read),
    // A field asked for on the interface itself resolves as the interface's.
    ("Node", Scope::Read),
    ("UpsertAccountsPayload", Scope::Write),
    ("UpsertAccountResult", Scope::Write),
    ("RefreshAccountsPayload", Scope::Write),
    ("SignInPayload", Scope::Write),
    ("ApiKey", Scope::Admin),
    ("CreatedApiKey", Scope::Admin),
    ("Audience", Scope::Stats),
    ("AudienceApp", Scope::Stats),
    ("AudiencePair", Scope::Stats),
    ("AudienceCombination", Scope::Stats),
    ("FollowCount", Scope::Stats),
    ("CountRange", Scope::Stats),
    ("SyncJob", Scope::Read),
    ("Subscription", Scope::Read),
    ("AccountEvent", Scope::Read),
];

/// Fields whose scope is not their type's.
pub const FIELD_SCOPES: &[(&str, &str, Scope)] = &[
    // Personal data: the profile.
    ("Person", "nickname", Scope::Pii),
    ("Person", "avatarUrl", Scope::Pii),
    ("Person", "sex", Scope::Pii),
    ("Person", "country", Scope::Pii),
    ("Person", "province", Scope::Pii),
    ("Person", "city", Scope::Pii),
    ("Person", "language", Scope::Pii),
    ("Account", "nickname", Scope::Pii),
    ("Account", "avatarUrl", Scope::Pii),
    ("Account", "sex", Scope::Pii),
    ("Account", "country", Scope::Pii),
    ("Account", "province", Scope::Pii),
    ("Account", "city", Scope::Pii),
    ("Account", "language", Scope::Pii),
    ("Account", "remark", Scope::Pii),
    // Which profile fields are set, and where each came from.
    ("Account", "fieldSources", Scope::Pii),
    // Results of writes hold the accounts written: reading them is reading.
    ("UpsertAccountResult", "account", Scope::Read),
    ("RefreshAccountsPayload", "accounts", Scope::Read),
    // Mutations.
    ("Mutation", "upsertAccounts", Scope::Write),
    ("Mutation", "refreshAccounts", Scope::Write),
    ("Mutation", "startFollowerSync", Scope::Write),
    ("Mutation", "registerApp", Scope::Admin),
    ("Mutation", "setFreshnessTtl", Scope::Admin),
    ("Mutation", "rotateEncodingAesKey", Scope::Admin),
    ("Mutation", "signIn", Scope::Write),
    ("Mutation", "createApiKey", Scope::Admin),
    ("Mutation", "revokeApiKey", Scope::Admin),
    // Keys.
    ("Query", "apiKeys", Scope::Admin),
    // Statistics.
    ("Query", "audience", Scope::Stats),
    ("Query", "audienceHistory", Scope::Stats),
];

/// [`TYPE_SCOPES`] and [`FIELD_SCOPES`], indexed.
struct ScopeTable {
    types: HashMap<&'static str, Scope>,
    fields: HashMap<(&'static str, &'static str), Scope>,
}

static SCOPES: LazyLock<ScopeTable> = LazyLock::new(|| ScopeTable {
    types: TYPE_SCOPES.iter().copied().collect(),
    fields: FIELD_SCOPES
        .iter()
        .map(|&(ty, field, scope)| ((ty, field), scope))
        .collect(),
});

/// The scope field `field` of type `type_name` needs, or `None` when none
/// was declared (such a field is refused to everyone).
pub fn required_scope(type_name: &str, field: &str) -> Option<Scope> {
    SCOPES
        .fields
        .get(&(type_name, field))
        .or_else(|| SCOPES.types.get(type_name))
        .copied()
}

/// The caller of a request, from its data (`None` outside an authenticated request).
fn principal<'a>(ctx: &ExtensionContext<'a>) -> Option<&'a Principal> {
    ctx.data_opt::<Principal>()
}

/// Errors of refused nullable fields, added to the response when it is
/// done: at most so many are kept (the response keeps no more anyway), the
/// rest only counted.
pub struct Refused {
    max: usize,
    errors: Mutex<(Vec<ServerError>, usize)>,
}

impl Refused {
    /// Keeps at most `max` errors.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            errors: Mutex::new((Vec::new(), 0)),
        }
    }

    fn push(&self, error: ServerError) {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.0.len() < self.max {
            errors.0.push(error);
        } else {
            errors.1 += 1;
        }
    }

    fn take(&self) -> Vec<ServerError> {
        let (mut kept, dropped) =
            std::mem::take(&mut *self.errors.lock().unwrap_or_else(|e| e.into_inner()));
        if dropped > 0 {
            kept.push(
                ApiError::Forbidden(format!(
                    "{dropped} more fields were refused for want of a scope"
                ))
                .extend()
                .into_server_error(async_graphql::Pos::default()),
            );
        }
        kept
    }
}

/// Enforces [`required_scope`] on every field (see the module docs).
pub struct ScopeGuard;

impl ExtensionFactory for ScopeGuard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ScopeGuard)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for ScopeGuard {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> async_graphql::Response {
        let mut response = next.run(ctx, operation_name).await;
        if let Some(refused) = ctx.data_opt::<Refused>() {
            response.errors.extend(refused.take());
        }
        response
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        // Root query fields are checked by `guard_root`, inside the refresh
        // round's bookkeeping; the items of a list were checked as its field.
        if info.is_for_introspection
            || info.name.starts_with("__")
            || info.parent_type == "Query"
            || info.parent_type.starts_with('[')
        {
            return next.run(ctx, info).await;
        }
        let Err(error) = check(principal(ctx), info.parent_type, info.name) else {
            return next.run(ctx, info).await;
        };
        let mut error = error.into_server_error(async_graphql::Pos::default());
        error.locations.clear();
        error.path = super::nulls::path_of(info.path_node);
        if info.return_type.ends_with('!') {
            return Err(error);
        }
        match ctx.data_opt::<Refused>() {
            Some(refused) => {
                refused.push(error);
                Ok(Some(Value::Null))
            }
            None => Err(error),
        }
    }
}

/// Whether `caller` may resolve `type_name.field`, as a coded error if not.
fn check(caller: Option<&Principal>, type_name: &str, field: &str) -> ApiResult<()> {
    let needed = required_scope(type_name, field);
    match (needed, caller) {
        (Some(scope), Some(caller)) if caller.may(scope) => Ok(()),
        (Some(scope), _) => Err(ApiError::Forbidden(format!(
            "`{type_name}.{field}` needs the `{scope}` scope, which this API key does not have"
        ))
        .extend()),
        (None, _) => {
            Err(ApiError::Forbidden(format!("`{type_name}.{field}` is not available")).extend())
        }
    }
}

/// Resolves one root query field (`resolution`) if the caller's key may: a
/// refused nullable field is `null` with its error, a refused non-null one
/// fails upward.
pub async fn guard_root<F>(ctx: &Context<'_>, resolution: F) -> ServerResult<Option<Value>>
where
    F: Future<Output = ServerResult<Option<Value>>>,
{
    let name = ctx.item.node.name.node.as_str();
    if name.starts_with("__") {
        return resolution.await;
    }
    let Err(error) = check(ctx.data_opt::<Principal>(), "Query", name) else {
        return resolution.await;
    };
    let error = ctx.set_error_path(error.into_server_error(ctx.item.pos));
    let non_null = ctx
        .schema_env
        .registry
        .types
        .get("Query")
        .and_then(|query| query.field_by_name(name))
        .is_none_or(|field| field.ty.ends_with('!'));
    if non_null {
        return Err(error);
    }
    ctx.add_error(error);
    Ok(Some(Value::Null))
}

/// The refresh policy a read asked for, if the caller may use it: `FORCE`
/// needs the `write` scope and takes a token from the key's rate limit, so
/// no client can spend an app's WeChat quota by forcing refreshes.
pub fn refresh_policy(
    ctx: &Context<'_>,
    asked: Option<enums::RefreshPolicy>,
) -> ApiResult<RefreshPolicy> {
    let policy: RefreshPolicy = asked.unwrap_or_default().into();
    if policy != RefreshPolicy::Force {
        return Ok(policy);
    }
    let caller = caller(ctx)?;
    if !caller.may(Scope::Write) {
        return Err(ApiError::Forbidden(
            "refresh: FORCE needs the `write` scope, which this API key does not have".to_owned(),
        )
        .extend());
    }
    spend(caller, 1, "forced refreshes")?;
    Ok(policy)
}

/// Takes `cost` tokens from the caller's rate limit for work that calls
/// WeChat (`what`, for the message), or refuses with RATE_LIMITED.
pub fn spend(caller: &Principal, cost: u32, what: &str) -> ApiResult<()> {
    caller.limiter.take(cost).map_err(|refusal| {
        let message = match refusal {
            Refusal::Rate { retry_after } => format!(
                "this API key's rate limit is spent; {what} may resume in {} s",
                retry_after.as_secs().max(1)
            ),
            Refusal::Concurrency => {
                format!("this API key has as many requests in flight as it may; {what} may resume in 1 s")
            }
            Refusal::OverBurst { cost, burst } => format!(
                "these {what} cost {cost} tokens, more than this API key's burst of {burst}: ask for fewer at once"
            ),
        };
        ApiError::RateLimited(message).extend()
    })
}

/// The caller of a request (a request without one was refused at the door;
/// this is for work that must be charged to it).
pub fn caller<'a>(ctx: &Context<'a>) -> ApiResult<&'a Principal> {
    ctx.data_opt::<Principal>()
        .ok_or_else(|| ApiError::Forbidden("this operation needs an API key".to_owned()).extend())
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_schema;
    use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};

    use super::*;

    /// Pairs of names: (type, field), or (interface, implementing type).
    type Pairs = Vec<(String, String)>;

    /// Every field of every object and interface type in the schema, by
    /// type name, and the types implementing each interface.
    fn schema_fields() -> (Pairs, Pairs) {
        let document = parse_schema(crate::graphql::sdl()).expect("the SDL parses");
        let mut fields = Vec::new();
        let mut implementations = Vec::new();
        for definition in document.definitions {
            let TypeSystemDefinition::Type(ty) = definition else {
                continue;
            };
            let name = ty.node.name.node.to_string();
            let own = match &ty.node.kind {
                TypeKind::Object(object) => {
                    for interface in &object.implements {
                        implementations.push((interface.node.to_string(), name.clone()));
                    }
                    &object.fields
                }
                TypeKind::Interface(interface) => &interface.fields,
                _ => continue,
            };
            for field in own {
                fields.push((name.clone(), field.node.name.node.to_string()));
            }
        }
        (fields, implementations)
    }

    fn object_fields() -> Vec<(String, String)> {
        schema_fields().0
    }

    /// A field asked for on an interface is checked against the interface's
    /// scope: it must be the scope of that field on every implementing type.
    #[test]
    fn interface_fields_need_what_their_implementations_need() {
        let (fields, implementations) = schema_fields();
        assert!(!implementations.is_empty());
        for (interface, object) in implementations {
            for (_, field) in fields.iter().filter(|(ty, _)| *ty == interface) {
                assert_eq!(
                    required_scope(&interface, field),
                    required_scope(&object, field),
                    "{interface}.{field} and {object}.{field}"
                );
            }
        }
    }

    #[test]
    fn every_field_of_the_schema_has_a_declared_scope() {
        let undeclared: Vec<String> = object_fields()
            .into_iter()
            .filter(|(ty, field)| required_scope(ty, field).is_none())
            .map(|(ty, field)| format!("{ty}.{field}"))
            .collect();
        assert!(
            undeclared.is_empty(),
            "fields without a scope (add them to TYPE_SCOPES or FIELD_SCOPES): {undeclared:?}"
        );
    }

    #[test]
    fn every_declared_scope_names_a_field_of_the_schema() {
        let fields = object_fields();
        for (ty, _) in TYPE_SCOPES {
            assert!(fields.iter().any(|(t, _)| t == ty), "no type {ty}");
        }
        for (ty, field, _) in FIELD_SCOPES {
            assert!(
                fields.iter().any(|(t, f)| t == ty && f == field),
                "no field {ty}.{field}"
            );
        }
    }

    #[test]
    fn personal_profile_fields_need_pii() {
        for ty in ["Person", "Account"] {
            for field in [
                "nickname",
                "avatarUrl",
                "sex",
                "country",
                "province",
                "city",
            ] {
                assert_eq!(required_scope(ty, field), Some(Scope::Pii), "{ty}.{field}");
            }
            assert_eq!(required_scope(ty, "unionid"), Some(Scope::Read));
        }
        assert_eq!(required_scope("Account", "remark"), Some(Scope::Pii));
        assert_eq!(
            required_scope("Mutation", "registerApp"),
            Some(Scope::Admin)
        );
        assert_eq!(required_scope("Mutation", "noSuchMutation"), None);
    }
}
