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
mod connections;
mod graphql_http;
mod health;
mod http_edge;
mod identity;
mod pagination;
mod refresh;
mod schema;
mod shapes;
mod simulator;
mod statements;
mod wechat_client;
