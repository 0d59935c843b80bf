//! `union360 schema`: print the GraphQL schema (SDL), as `schema.graphql` holds it.

/// Prints the schema.
pub(super) fn run() {
    print!("{}", crate::graphql::sdl());
}
