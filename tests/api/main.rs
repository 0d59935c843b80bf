//! Integration tests: the real server on `127.0.0.1:0`, over real HTTP,
//! on SQLite and, when `TEST_DATABASE_URL` is set, on PostgreSQL too (the
//! PostgreSQL variants are reported as ignored without it).

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on unexpected responses"
)]
#[macro_use]
mod helpers;

mod apps;
mod audience;
mod bad_input;
mod binary;
mod callback;
mod connections;
mod dashboard;
mod demo;
mod graphql_http;
mod health;
mod hostile;
mod http_edge;
mod identity;
mod nodes;
mod pagination;
mod push;
mod random_input;
mod readme;
mod refresh;
mod schema;
mod secrets;
mod security;
mod shapes;
mod signin;
mod simulator;
mod statements;
mod subscriptions;
mod sync;
mod wechat_client;
