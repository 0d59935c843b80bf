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
#[derive(Clone, Args)]
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

impl std::fmt::Debug for DatabaseSettings {
    /// Shows the database URL without its password, and never the master key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("database_url", &crate::startup::redact(&self.database_url))
            .field("master_key", &self.master_key.as_ref().map(|_| "<set>"))
            .finish()
    }
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

    /// How long an account's profile stays fresh, in seconds, for apps without their own TTL.
    #[arg(long, env = "UNION360_FRESHNESS_TTL_SECS", default_value_t = 86_400)]
    pub freshness_ttl_secs: i64,

    /// How long a request may wait for stale profiles to be refreshed from
    /// WeChat, in milliseconds; past it the stored profile is served, marked stale.
    #[arg(long, env = "UNION360_REFRESH_BUDGET_MS", default_value_t = 800)]
    pub refresh_budget_ms: u64,

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
                freshness_ttl_secs: 86_400,
                refresh_budget_ms: 800,
                body_limit: 2 * 1024 * 1024,
                max_depth: 16,
                max_complexity: 50_000,
                introspection: true,
                shutdown_grace_secs: 10,
            },
        }
    }

    /// The server-wide freshness TTL.
    pub fn freshness_ttl(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.server.freshness_ttl_secs.max(0))
    }

    /// The refresh budget of one request.
    pub fn refresh_budget(&self) -> Duration {
        Duration::from_millis(self.server.refresh_budget_ms)
    }

    /// How long shutdown waits for in-flight requests.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.server.shutdown_grace_secs)
    }
}
