//! union360: the customer-360 identity graph for companies on WeChat.
//!
//! WeChat gives each user a different OpenID in every app and one UnionID
//! across the apps of an open platform account. union360 keeps that graph
//! (a person per UnionID, with an account per app), caches profiles, and
//! serves it all through a typed GraphQL API.
//!
//! # Layout
//!
//! - [`bench`]: the benchmark harness (`union360 bench`).
//! - [`cli`]: the command line (`serve`, `migrate`, `schema`, `app`, `simulator`); `main.rs` only calls it.
//! - [`settings`]: typed settings from flags, environment and `.env`.
//! - [`startup`]: [`startup::Application`] builds (connect, migrate, bind) and runs the server.
//! - [`http`]: routes: GraphQL over HTTP, the offline GraphiQL playground, health checks.
//! - [`graphql`]: the schema, one module per domain, batch loaders, pagination, errors.
//! - services: [`identity`] (accounts, persons, the identity rules), [`apps`] (registration),
//!   [`refresh`] (profiles from WeChat).
//! - [`store`]: connecting and migrating SQLite or PostgreSQL; entities live in the
//!   `entity` crate and migrations in the `migration` crate.
//! - [`crypto`]: sealing secrets at rest under the master key.
//! - [`domain`]: identifiers and enums parsed at the edge.
//! - [`wechat`]: the WeChat API client (tokens, retries, breakers, lenient decoding) and the
//!   message-push crypto (signatures, safe-mode cipher, XML).
//! - [`clock`]: injectable time for expiry and breakers.
//! - [`metrics`]: Prometheus counters and histograms (`GET /metrics`).
//! - [`simulator`]: a local WeChat sandbox (the WeChat API plus a `/_sim` control plane)
//!   for tests, the demo and benchmarks.

pub mod apps;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod crypto;
pub mod domain;
pub mod graphql;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod refresh;
pub mod settings;
pub mod simulator;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod wechat;
