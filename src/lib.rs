//! union360: the customer-360 identity graph for companies on WeChat.
//!
//! WeChat gives each user a different OpenID in every app and one UnionID
//! across the apps of an open platform account. union360 keeps that graph
//! (a person per UnionID, with an account per app), caches profiles, and
//! serves it all through a typed GraphQL API.
//!
//! # Layout
//!
//! Layers point one way: `http → graphql → services → store / wechat /
//! domain`. Services take what they need explicitly and know nothing of
//! GraphQL, HTTP or the application state.
//!
//! - [`cli`]: the command line, one file per command (`serve`, `migrate`, `schema`, `app`,
//!   `simulator`, `bench`); `main.rs` only calls it.
//! - [`settings`]: typed settings from flags, environment and `.env`, each default declared once.
//! - [`startup`]: [`startup::Application`] builds (connect, migrate, bind) and runs the server.
//! - [`state`]: the composition root: builds each service from explicit parts.
//! - [`http`]: routes: GraphQL over HTTP, the offline GraphiQL playground and audience
//!   dashboard, WeChat's callback URL, health checks;
//!   the accept loop that bounds every connection (timeouts, caps, graceful shutdown).
//! - [`graphql`]: the schema, one module per domain (object, query, mutation), global
//!   object ids, the per-request context, batch loading, the query-wide refresh round,
//!   errors, and the answer made exact (nulls, key order, variables).
//! - services:
//!   - [`identity`]: every write to the identity graph (the identity rules) and the read
//!     service (lookups, pages, relations, a person's best profile);
//!   - [`apps`]: registering apps, their secrets, and the in-memory copy of them;
//!   - [`keys`]: API keys: creating, revoking, authenticating, scopes and per-key limits;
//!   - [`refresh`]: profiles from WeChat: the freshness rule, fetching, single flight,
//!     leases, and the refresh of what one read touched within its budget;
//!   - [`stats`]: the audience statistics (distinct followers, overlaps, history);
//!   - [`ingest`]: follower sync jobs, from WeChat's follower list into the identity graph,
//!     WeChat's message pushes, and sign-in code exchange;
//!   - [`events`]: live account events, from every writer to every subscriber (across
//!     instances on PostgreSQL).
//! - [`store`]: connecting and migrating SQLite or PostgreSQL; entities live in the
//!   `entity` crate and migrations in the `migration` crate.
//! - [`error`]: the error policy (which error type where, what a client sees, what is logged).
//! - [`crypto`]: sealing secrets at rest under the master key.
//! - [`domain`]: identifiers and enums parsed at the edge.
//! - [`wechat`]: the WeChat API client (tokens, retries, breakers, lenient decoding) and the
//!   message-push crypto (signatures, safe-mode cipher, XML).
//! - [`clock`]: injectable time for freshness, tokens, breakers, leases and the app cache.
//! - [`metrics`]: Prometheus counters and histograms (`GET /metrics`).
//! - [`telemetry`]: logging set-up (text or JSON lines, no colour off a terminal).
//! - [`simulator`]: a local WeChat sandbox (the WeChat API plus a `/_sim` control plane)
//!   for tests, the demo and benchmarks.

pub mod apps;
pub mod cli;
pub mod clock;
pub mod crypto;
pub mod domain;
pub mod error;
pub mod events;
pub mod graphql;
pub mod http;
pub mod identity;
pub mod ingest;
pub mod keys;
pub mod metrics;
pub mod refresh;
pub mod settings;
pub mod simulator;
pub mod startup;
pub mod state;
pub mod stats;
pub mod store;
pub mod telemetry;
pub mod wechat;
