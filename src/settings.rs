//! Typed settings, built once from flags, the environment and `.env`.
//!
//! Every setting is a flag with an environment twin (clap `env`), so the
//! same binary is configured the same way by a shell, a `.env` file, a
//! container or a test, which builds a [`Settings`] value directly instead
//! of touching the process environment.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use secrecy::SecretString;

use crate::wechat::TokenEndpoint;

/// The default database: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://union360.db?mode=rwc";

/// Where to find the database.
#[derive(Debug, Clone, Args)]
pub struct DatabaseSettings {
    /// Database URL: `sqlite://file.db?mode=rwc` or `postgres://user@host:5432/db`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,

    /// Master key (32 bytes as base64 or hex) that encrypts app secrets at rest.
    /// Optional on SQLite (a key file is generated beside the database); required on PostgreSQL.
    #[arg(
        long,
        env = "UNION360_MASTER_KEY",
        hide_env_values = true,
        global = true
    )]
    pub master_key: Option<SecretString>,
}

/// Settings of the HTTP server.
#[derive(Debug, Clone, Args)]
pub struct ServerSettings {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "UNION360_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Base URL of the WeChat API (point it at `union360 simulator` to develop offline).
    #[arg(
        long,
        env = "WECHAT_API_BASE",
        default_value = "https://api.weixin.qq.com"
    )]
    pub wechat_api_base: String,

    /// Which WeChat endpoint issues access tokens: `stable` (`cgi-bin/stable_token`,
    /// safe for several instances) or `classic` (`cgi-bin/token`).
    #[arg(long, env = "UNION360_WECHAT_TOKEN_ENDPOINT", value_enum, default_value_t = TokenEndpoint::Stable)]
    pub wechat_token_endpoint: TokenEndpoint,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "UNION360_BODY_LIMIT", default_value_t = 2 * 1024 * 1024)]
    pub body_limit: usize,

    /// Deepest accepted GraphQL selection.
    #[arg(long, env = "UNION360_MAX_DEPTH", default_value_t = 16)]
    pub max_depth: usize,

    /// Highest accepted GraphQL query complexity.
    #[arg(long, env = "UNION360_MAX_COMPLEXITY", default_value_t = 50_000)]
    pub max_complexity: usize,

    /// Whether schema introspection is allowed (GraphiQL needs it).
    #[arg(long, env = "UNION360_INTROSPECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub introspection: bool,

    /// Seconds to let in-flight requests finish on shutdown.
    #[arg(long, env = "UNION360_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
}

/// Everything `union360 serve` needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Database settings.
    pub database: DatabaseSettings,
    /// Server settings.
    pub server: ServerSettings,
}

impl Settings {
    /// Settings for a server on `database_url`, with every other value at its default.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database: DatabaseSettings {
                database_url: database_url.into(),
                master_key: None,
            },
            server: ServerSettings {
                listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
                wechat_api_base: "https://api.weixin.qq.com".to_owned(),
                wechat_token_endpoint: TokenEndpoint::Stable,
                body_limit: 2 * 1024 * 1024,
                max_depth: 16,
                max_complexity: 50_000,
                introspection: true,
                shutdown_grace_secs: 10,
            },
        }
    }

    /// How long shutdown waits for in-flight requests.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.server.shutdown_grace_secs)
    }
}
