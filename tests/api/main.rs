//! Integration tests: the real server on `127.0.0.1:0`, over real HTTP,
//! on SQLite and, when `TEST_DATABASE_URL` is set, on PostgreSQL too.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on unexpected responses"
)]
mod apps;
mod graphql_http;
mod health;
mod helpers;
mod identity;
mod pagination;
mod refresh;
mod schema;
mod simulator;
mod statements;
mod wechat_client;
