//! The typed GraphQL API.
//!
//! One module per domain (`app`, `person`, `account`), each with its own
//! query and mutation objects, merged here into one schema. Resolvers are
//! thin: they parse arguments into domain types, call a service and convert
//! the result; no SQL is built here. Every type, field and argument is
//! documented, because the descriptions are what partner teams read in
//! `schema.graphql`.
//!
//! - [`access`]: every field's scope, enforced as it resolves;
//! - [`context`]: the per-request context and how resolvers reach the state;
//! - [`batch`]: rows fetched together and their relations, loaded at once;
//! - [`round`]: one refresh for all the stale accounts of a query;
//! - [`page`]: Relay connections and cursors;
//! - [`node`]: global object identification (`Node`, `node`, `nodes`);
//! - [`persisted`]: automatic persisted queries (documents known by their hash);
//! - [`enums`]: the GraphQL faces of the domain's enums;
//! - [`scalars`]: `DateTime` and `Date`, described and specified;
//! - [`error`]: service errors mapped to `extensions.code`;
//! - [`nulls`]: a failed field is `null`, where the specification puts it;
//! - [`operation`]: the operation a request runs, its required variables checked;
//! - [`order`]: response keys in the order the query asked for them;
//! - [`limits`]: the work a request may ask for, bounded before and while it runs;
//! - [`events`]: the root subscription, live account events.

pub mod access;
pub mod account;
pub mod apikey;
pub mod app;
pub mod batch;
pub mod context;
pub mod enums;
pub mod error;
pub mod events;
pub mod limits;
pub mod node;
pub mod nulls;
pub mod operation;
pub mod order;
pub mod page;
pub mod persisted;
pub mod person;
pub mod round;
pub mod scalars;
pub mod signin;
pub mod stats;
pub mod sync;

use std::borrow::Cow;

use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::resolver_utils::{ContainerType, resolve_container};
use async_graphql::{
    Context, ContextSelectionSet, MergedObject, ObjectType, OutputType, Positioned,
    SDLExportOptions, Schema, SchemaBuilder, ServerResult, Value,
};

use crate::state::AppState;

/// The root query: the queries of every domain, each root field resolved as
/// part of the request's refresh round ([`round`]).
#[derive(Default)]
pub struct Query(QueryFields);

/// The root query.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryFields(
    person::PersonQuery,
    account::AccountQuery,
    app::AppQuery,
    apikey::ApiKeyQuery,
    stats::StatsQuery,
    sync::SyncQuery,
    node::NodeQuery,
);

impl OutputType for Query {
    fn type_name() -> Cow<'static, str> {
        QueryFields::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        QueryFields::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        resolve_container(ctx, self).await
    }
}

impl ContainerType for Query {
    async fn resolve_field(&self, ctx: &Context<'_>) -> ServerResult<Option<Value>> {
        context::resolve_root(ctx, access::guard_root(ctx, self.0.resolve_field(ctx))).await
    }
}

impl ObjectType for Query {}

/// The root mutation.
#[derive(MergedObject, Default)]
pub struct Mutation(
    account::AccountMutation,
    account::RefreshMutation,
    app::AppMutation,
    apikey::ApiKeyMutation,
    sync::SyncMutation,
    signin::SignInMutation,
);

/// The union360 schema type.
pub type ApiSchema = Schema<Query, Mutation, events::EventSubscription>;

fn builder() -> SchemaBuilder<Query, Mutation, events::EventSubscription> {
    Schema::build(
        Query::default(),
        Mutation::default(),
        events::EventSubscription,
    )
}

/// Builds the schema served with `state`, with the configured limits.
pub fn build_schema(state: AppState) -> ApiSchema {
    let server = &state.settings().server;
    let mut builder = builder()
        .extension(error::CodedFieldErrors)
        .extension(nulls::FieldErrors)
        .extension(access::ScopeGuard)
        .extension(limits::Checks::new(&server.limits))
        .data(limits::Limits::new(server.limits.clone()))
        .data(persisted::PersistedQueries::default());
    if !server.introspection {
        builder = builder.disable_introspection();
    }
    builder.data(state).finish()
}

/// The schema in SDL, sorted and stable: what `union360 schema` prints and
/// `schema.graphql` holds.
pub fn sdl() -> String {
    builder().finish().sdl_with_options(
        SDLExportOptions::new()
            .sorted_fields()
            .sorted_arguments()
            .sorted_enum_items()
            .include_specified_by(),
    )
}
