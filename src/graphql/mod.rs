//! The typed GraphQL API.
//!
//! One module per domain (`app`, `person`, `account`), each with its own
//! query and mutation objects, merged here into one schema. Resolvers are
//! thin: they parse arguments into domain types, call a service and convert
//! the result. Every type, field and argument is documented, because the
//! descriptions are what partner teams read in `schema.graphql`.

pub mod account;
pub mod app;
pub mod error;
pub mod loaders;
pub mod page;
pub mod person;
pub mod round;

use async_graphql::{EmptySubscription, MergedObject, SDLExportOptions, Schema, SchemaBuilder};

use crate::state::AppState;

/// The root query.
#[derive(MergedObject, Default)]
pub struct Query(person::PersonQuery, account::AccountQuery, app::AppQuery);

/// The root mutation.
#[derive(MergedObject, Default)]
pub struct Mutation(
    account::AccountMutation,
    account::RefreshMutation,
    app::AppMutation,
);

/// The union360 schema type.
pub type ApiSchema = Schema<Query, Mutation, EmptySubscription>;

fn builder() -> SchemaBuilder<Query, Mutation, EmptySubscription> {
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
}

/// Builds the schema served with `state`, with the configured limits.
pub fn build_schema(state: AppState) -> ApiSchema {
    let server = &state.settings().server;
    let mut builder = builder()
        .limit_depth(server.max_depth)
        .limit_complexity(server.max_complexity)
        .extension(round::RefreshRounds);
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
            .sorted_enum_items(),
    )
}
