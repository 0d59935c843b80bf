//! sea-orm entities of the union360 store.
//!
//! One module per table. These are storage models only: the GraphQL API has
//! its own types in `union360::graphql` that convert from these, so a column
//! rename or a new personal-data column never leaks into the schema by
//! accident. Encrypted columns hold the sealed form produced by
//! `union360::crypto`, never plain text.

pub mod access_token;
pub mod account;
pub mod account_history;
pub mod api_key;
pub mod app;
pub mod audience_cell;
pub mod audience_day;
pub mod callback_receipt;
pub mod person;
pub mod sync_job;
