//! The identity service: accounts, persons and the links between them.
//!
//! Every write to the identity graph goes through [`upsert_accounts`]
//! (GraphQL upserts, refreshes, and later the webhook and sign-in) or, in a
//! transaction of the caller's, [`upsert_within`] (the follower sync),
//! which applies the identity rules of the design:
//!
//! 1. `(app, openid)` is unique, an account links to at most one person and
//!    a person's UnionID is unique (enforced by unique constraints);
//! 2. a UnionID seen for an account links it to the person with that
//!    UnionID, created if absent with an insert-or-get under the unique
//!    constraint, so concurrent discoveries of one UnionID make one person
//!    (`lock`);
//! 3. an account's UnionID never changes: a different one is recorded as a
//!    conflict on the account, never applied (`apply`);
//! 4. a snapshot-page virtual user is stored as an account, marked, and
//!    never creates or joins a person (`apply`);
//! 5. an empty value never overwrites a non-empty value from another source
//!    ([`merge`]);
//! 6. a person has at most one account per app: another openid of that app
//!    reporting the person's UnionID is recorded as a conflict on the
//!    account and not linked (`apply`; a unique index on linked `(person,
//!    app)` holds it under concurrency, and a call that loses that race is
//!    written again: by `upsert`, or by the caller of [`upsert_within`]).
//!
//! Reads of the graph (lookups, pages, relations, the best-known profile of
//! a person) are the [`read`] service.
//!
//! - [`types`]: what a source reports and what an upsert did;
//! - `validate`: checks before anything is written, and [`make_storable`]
//!   for what WeChat sends;
//! - `upsert`: the orchestration, one transaction per call;
//! - `history`: the account history.

mod apply;
mod audience;
mod history;
mod lock;
pub mod merge;
pub mod profile;
pub mod read;
pub mod types;
mod upsert;
mod validate;

pub(crate) use lock::existing_accounts;
pub use profile::best_profile;
pub use read::{LookupError, Page, PageRequest};
pub use types::{
    AccountUpsert, Changed, Follow, IdentityError, MAX_UPSERT_BATCH, Outcome, Profile, UpsertResult,
};
pub use upsert::{Attempts, upsert_accounts, upsert_in_batches, upsert_within};
pub use validate::make_storable;
