//! Accounts in the API: the object, its queries and its mutations.

mod object;
mod query;
mod refresh;
mod upsert;

pub use object::{Account, AccountConnection, AccountEdge, FieldSource, RefreshError};
pub use query::{AccountFilter, AccountQuery};
pub use refresh::{AccountKey, RefreshAccountsPayload, RefreshMutation};
pub use upsert::{
    AccountInput, AccountMutation, RefusalReason, UpsertAccountResult, UpsertAccountsPayload,
    UpsertOutcome,
};
