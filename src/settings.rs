//! Typed settings, built once from flags, the environment and `.env`.
//!
//! Every setting is a flag with an environment twin (clap `env`), so the
//! same binary is configured the same way by a shell, a `.env` file, a
//! container or a test, which builds a [`Settings`] value directly instead
//! of touching the process environment. Each default is declared once, as a
//! constant below, and serves both the flags and [`Settings::new`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::http::HeaderValue;
use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use secrecy::SecretString;

use crate::domain::TokenEndpoint;

/// The default database: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://union360.db?mode=rwc";
/// The default listening address.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// The default base URL of the WeChat API.
pub const DEFAULT_WECHAT_API_BASE: &str = "https://api.weixin.qq.com";
/// The default freshness TTL, in seconds (24 hours).
pub const DEFAULT_FRESHNESS_TTL_SECS: i64 = 86_400;
/// The default refresh budget of one request, in milliseconds.
pub const DEFAULT_REFRESH_BUDGET_MS: u64 = 800;
/// How far a WeChat push's timestamp may be from now, in seconds, by default.
pub const DEFAULT_CALLBACK_REPLAY_WINDOW_SECS: u64 = 300;
/// The default largest request body, in bytes (2 MiB).
pub const DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;
/// Whether schema introspection is allowed by default (GraphiQL needs it).
pub const DEFAULT_INTROSPECTION: bool = true;
/// The default deepest GraphQL selection.
pub const DEFAULT_MAX_DEPTH: usize = 16;
/// The default highest GraphQL query cost: about the number of values a
/// request may ask for, lists counted by their page size or bound (a page of
/// 100 people with all their fields, accounts and apps costs about 35,000).
pub const DEFAULT_MAX_COMPLEXITY: usize = 100_000;
/// The default largest GraphQL document, in bytes.
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 100_000;
/// The default most tokens in a GraphQL document.
pub const DEFAULT_MAX_TOKENS: usize = 30_000;
/// The default deepest nesting of `{`, `[` and `(` in a GraphQL document.
pub const DEFAULT_MAX_NESTING: usize = 64;
/// The default most selections (fields, fragment spreads and inline
/// fragments, every fragment counted where it is spread) in a document.
pub const DEFAULT_MAX_SELECTIONS: usize = 10_000;
/// The default most directives in a document, counted like selections.
pub const DEFAULT_MAX_DIRECTIVES: usize = 100;
/// The default most rows one request may read.
pub const DEFAULT_MAX_ROWS: usize = 10_000;
/// The default most SQL statements one request may run (an upsert of 1,000
/// new accounts runs about 1,000; a page of people with their accounts, 3).
pub const DEFAULT_MAX_STATEMENTS: u64 = 5_000;
/// The default most errors in one response.
pub const DEFAULT_MAX_ERRORS: usize = 100;
/// The default most root fields in one operation.
pub const DEFAULT_MAX_ROOT_FIELDS: usize = 100;
/// The default largest response body, in bytes (32 MiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// The deepest nesting that may be allowed: the parser is recursive, and
/// this stays far from its stack's end.
pub const MAX_NESTING_CEILING: usize = 256;
/// The default time one GraphQL request may run, in seconds.
pub const DEFAULT_REQUEST_DEADLINE_SECS: u64 = 30;
/// The default shutdown grace period, in seconds.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 10;
/// The default requests per second of an API key without its own rate.
pub const DEFAULT_KEY_RATE_PER_SEC: u32 = 50;
/// The default largest burst of requests of an API key.
pub const DEFAULT_KEY_BURST: u32 = 100;
/// The default number of requests an API key may have in flight at once.
pub const DEFAULT_KEY_MAX_CONCURRENT: u32 = 16;
/// How often API keys' last-use times are written, in seconds.
pub const DEFAULT_KEY_LAST_USED_FLUSH_SECS: u64 = 60;
/// The default time a client has to send a request's headers, in seconds.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 30;
/// The default time an idle kept-alive connection stays open, in seconds.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
/// The default time a client has to send a request's body, in seconds.
pub const DEFAULT_BODY_READ_TIMEOUT_SECS: u64 = 60;
/// The default cap on open connections (keep it below the process's
/// open-file limit, `ulimit -n`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;
/// The default cap on open connections from one IP address.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;
/// The default time allowed for connecting to the database, in seconds.
pub const DEFAULT_DATABASE_CONNECT_TIMEOUT_SECS: u64 = 5;

/// Where to find the database, and the key that opens its secrets: flags of
/// the commands that use the database (and of a bare `union360`), not of
/// those that do not (`simulator`, `schema`, `bench`).
#[derive(Clone, Args)]
pub struct DatabaseSettings {
    /// Database URL: `sqlite://file.db?mode=rwc` or `postgres://user@host:5432/db`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// Master key (32 bytes as base64 or hex) that encrypts app secrets at rest.
    /// Optional on SQLite (a key file is generated beside the database); required on PostgreSQL.
    #[arg(long, env = "UNION360_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<SecretString>,

    /// Seconds allowed for reaching the database at start-up; past it (or on a
    /// refused connection) start-up fails, naming the cause.
    #[arg(
        long,
        env = "UNION360_DATABASE_CONNECT_TIMEOUT_SECS",
        default_value_t = DEFAULT_DATABASE_CONNECT_TIMEOUT_SECS
    )]
    pub database_connect_timeout_secs: u64,
}

impl DatabaseSettings {
    /// Settings for `database_url`, every other value at its default.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            master_key: None,
            database_connect_timeout_secs: DEFAULT_DATABASE_CONNECT_TIMEOUT_SECS,
        }
    }

    /// How long start-up waits for the database.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.database_connect_timeout_secs)
    }
}

impl std::fmt::Debug for DatabaseSettings {
    /// Shows the database URL without its password, and never the master key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("database_url", &crate::store::redact(&self.database_url))
            .field("master_key", &self.master_key.as_ref().map(|_| "<set>"))
            .field(
                "database_connect_timeout_secs",
                &self.database_connect_timeout_secs,
            )
            .finish()
    }
}

/// Settings of the HTTP server.
#[derive(Debug, Clone, Args)]
pub struct ServerSettings {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "UNION360_LISTEN", default_value_t = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Base URL of the WeChat API (point it at `union360 simulator` to develop offline).
    #[arg(long, env = "WECHAT_API_BASE", default_value = DEFAULT_WECHAT_API_BASE)]
    pub wechat_api_base: String,

    /// Which WeChat endpoint issues access tokens: `stable` (`cgi-bin/stable_token`,
    /// safe for several instances) or `classic` (`cgi-bin/token`).
    #[arg(
        long,
        env = "UNION360_WECHAT_TOKEN_ENDPOINT",
        default_value_t = TokenEndpoint::Stable,
        value_parser = PossibleValuesParser::new(["stable", "classic"]).try_map(|s| s.parse::<TokenEndpoint>()),
    )]
    pub wechat_token_endpoint: TokenEndpoint,

    /// How long an account's profile stays fresh, in seconds, for apps without their own TTL.
    #[arg(long, env = "UNION360_FRESHNESS_TTL_SECS", default_value_t = DEFAULT_FRESHNESS_TTL_SECS)]
    pub freshness_ttl_secs: i64,

    /// How long a request may wait for stale profiles to be refreshed from
    /// WeChat, in milliseconds; past it the stored profile is served, marked stale.
    #[arg(long, env = "UNION360_REFRESH_BUDGET_MS", default_value_t = DEFAULT_REFRESH_BUDGET_MS)]
    pub refresh_budget_ms: u64,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "UNION360_BODY_LIMIT", default_value_t = DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,

    /// Limits on the work of one GraphQL request.
    #[command(flatten)]
    pub limits: LimitSettings,

    /// Whether schema introspection is allowed (GraphiQL needs it).
    #[arg(long, env = "UNION360_INTROSPECTION", default_value_t = DEFAULT_INTROSPECTION, action = clap::ArgAction::Set)]
    pub introspection: bool,

    /// Seconds to let in-flight requests finish on shutdown.
    #[arg(long, env = "UNION360_SHUTDOWN_GRACE_SECS", default_value_t = DEFAULT_SHUTDOWN_GRACE_SECS)]
    pub shutdown_grace_secs: u64,

    /// How far the timestamp of a request WeChat signs (the callback URL's
    /// verification, a push) may be from now, in seconds, either way:
    /// older or later ones are refused as replays.
    #[arg(long, env = "UNION360_CALLBACK_REPLAY_WINDOW_SECS", default_value_t = DEFAULT_CALLBACK_REPLAY_WINDOW_SECS)]
    pub callback_replay_window_secs: u64,

    /// Connections, timeouts, CORS and the metrics listener.
    #[command(flatten)]
    pub http: HttpSettings,
    /// Per-key limits of API keys without their own.
    #[command(flatten)]
    pub keys: KeySettings,
    /// Follower syncs.
    #[command(flatten)]
    pub sync: SyncArgs,
    /// Subscriptions over WebSocket (`/graphql/ws`) and the events they carry.
    #[command(flatten)]
    pub subscriptions: SubscriptionSettings,
}

/// Subscriptions over WebSocket (`/graphql/ws`) and the live account events.
#[derive(Debug, Clone, Copy, Args)]
pub struct SubscriptionSettings {
    /// Batches of account events held for the slowest subscriber; one that
    /// falls further behind is disconnected (close code 1013).
    #[arg(long = "events-buffer", env = "UNION360_EVENTS_BUFFER", default_value_t = DEFAULT_EVENTS_BUFFER)]
    pub events_buffer: usize,
    /// Seconds a WebSocket connection has to send `connection_init`.
    #[arg(long = "ws-init-timeout-secs", env = "UNION360_WS_INIT_TIMEOUT_SECS", default_value_t = DEFAULT_WS_INIT_TIMEOUT_SECS)]
    pub init_timeout_secs: u64,
    /// Subscriptions one API key may hold at once in this instance, over
    /// all its WebSocket connections.
    #[arg(long = "ws-max-subscriptions", env = "UNION360_WS_MAX_SUBSCRIPTIONS", default_value_t = DEFAULT_WS_MAX_SUBSCRIPTIONS)]
    pub max_subscriptions: usize,
    /// Seconds a message to a subscriber may take to be sent; a subscriber
    /// that does not read for longer is disconnected.
    #[arg(long = "ws-send-timeout-secs", env = "UNION360_WS_SEND_TIMEOUT_SECS", default_value_t = DEFAULT_WS_SEND_TIMEOUT_SECS)]
    pub send_timeout_secs: u64,
    /// How often, in seconds, a WebSocket connection's API key is checked
    /// again; a revoked key's connection is closed (4403).
    #[arg(long = "ws-key-recheck-secs", env = "UNION360_WS_KEY_RECHECK_SECS", default_value_t = DEFAULT_WS_KEY_RECHECK_SECS)]
    pub key_recheck_secs: u64,
}

/// Batches of events held for the slowest subscriber by default.
pub const DEFAULT_EVENTS_BUFFER: usize = 1_024;
/// Seconds to send `connection_init` by default.
pub const DEFAULT_WS_INIT_TIMEOUT_SECS: u64 = 10;
/// Subscriptions per API key by default.
pub const DEFAULT_WS_MAX_SUBSCRIPTIONS: usize = 16;
/// Seconds a message to a subscriber may take to be sent by default.
pub const DEFAULT_WS_SEND_TIMEOUT_SECS: u64 = 10;
/// Seconds between checks of a WebSocket connection's key by default.
pub const DEFAULT_WS_KEY_RECHECK_SECS: u64 = 10;

impl Default for SubscriptionSettings {
    fn default() -> Self {
        Self {
            events_buffer: DEFAULT_EVENTS_BUFFER,
            init_timeout_secs: DEFAULT_WS_INIT_TIMEOUT_SECS,
            max_subscriptions: DEFAULT_WS_MAX_SUBSCRIPTIONS,
            send_timeout_secs: DEFAULT_WS_SEND_TIMEOUT_SECS,
            key_recheck_secs: DEFAULT_WS_KEY_RECHECK_SECS,
        }
    }
}

impl SubscriptionSettings {
    /// The event bus's settings.
    pub fn events(&self) -> crate::events::EventSettings {
        crate::events::EventSettings {
            buffer: self.events_buffer.clamp(1, 1 << 20),
        }
    }

    /// Time to send `connection_init`.
    pub fn init_timeout(&self) -> Duration {
        Duration::from_secs(self.init_timeout_secs.max(1))
    }

    /// Time a message to a subscriber may take to be sent.
    pub fn send_timeout(&self) -> Duration {
        Duration::from_secs(self.send_timeout_secs.max(1))
    }

    /// Time between checks of a connection's key.
    pub fn key_recheck(&self) -> Duration {
        Duration::from_secs(self.key_recheck_secs.max(1))
    }
}

/// How follower syncs run (`union360 sync` and the server's sync worker).
#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    /// `user/info/batchget` calls in flight at once per sync job.
    #[arg(long = "sync-concurrency", env = "UNION360_SYNC_CONCURRENCY", default_value_t = DEFAULT_SYNC_CONCURRENCY)]
    pub concurrency: usize,
    /// Sync every official account's followers this often, in hours
    /// (the server's schedule; off when not set).
    #[arg(long = "sync-every-hours", env = "UNION360_SYNC_EVERY_HOURS")]
    pub every_hours: Option<u64>,
    /// How long a process's claim on a sync job holds without progress, in
    /// seconds: a job whose process died is resumed by another once it runs
    /// out. Each saved page renews it, so keep it well above the time one
    /// page of 10,000 followers takes.
    #[arg(long = "sync-lease-secs", env = "UNION360_SYNC_LEASE_SECS", default_value_t = DEFAULT_SYNC_LEASE_SECS)]
    pub lease_secs: u64,
}

/// `batchget` calls in flight per sync job by default.
pub const DEFAULT_SYNC_CONCURRENCY: usize = 8;
/// How long a claim on a sync job holds without a saved page by default, in seconds.
pub const DEFAULT_SYNC_LEASE_SECS: u64 = 30;

impl Default for SyncArgs {
    fn default() -> Self {
        Self {
            concurrency: DEFAULT_SYNC_CONCURRENCY,
            every_hours: None,
            lease_secs: DEFAULT_SYNC_LEASE_SECS,
        }
    }
}

impl SyncArgs {
    /// The sync service's settings.
    pub fn settings(&self) -> crate::ingest::sync::SyncSettings {
        crate::ingest::sync::SyncSettings {
            concurrency: self.concurrency.clamp(1, 64),
            every: self
                .every_hours
                .filter(|h| *h > 0)
                .map(|h| Duration::from_secs(h.saturating_mul(3600))),
            lease: Duration::from_secs(self.lease_secs.max(1)),
            ..crate::ingest::sync::SyncSettings::default()
        }
    }
}

/// The default limits of API keys (a key may carry its own).
#[derive(Debug, Clone, Copy, Args)]
pub struct KeySettings {
    /// Requests per second an API key may make (a token bucket's refill rate).
    #[arg(long = "key-rate-per-sec", env = "UNION360_KEY_RATE_PER_SEC", default_value_t = DEFAULT_KEY_RATE_PER_SEC)]
    pub rate_per_sec: u32,

    /// The largest burst of requests an API key may make at once.
    #[arg(long = "key-burst", env = "UNION360_KEY_BURST", default_value_t = DEFAULT_KEY_BURST)]
    pub burst: u32,

    /// Requests an API key may have in flight at once.
    #[arg(long = "key-max-concurrent", env = "UNION360_KEY_MAX_CONCURRENT", default_value_t = DEFAULT_KEY_MAX_CONCURRENT)]
    pub max_concurrent: u32,

    /// How often API keys' last-use times are written, in seconds.
    #[arg(long = "key-last-used-flush-secs", env = "UNION360_KEY_LAST_USED_FLUSH_SECS", default_value_t = DEFAULT_KEY_LAST_USED_FLUSH_SECS)]
    pub last_used_flush_secs: u64,
}

impl Default for KeySettings {
    fn default() -> Self {
        Self {
            rate_per_sec: DEFAULT_KEY_RATE_PER_SEC,
            burst: DEFAULT_KEY_BURST,
            max_concurrent: DEFAULT_KEY_MAX_CONCURRENT,
            last_used_flush_secs: DEFAULT_KEY_LAST_USED_FLUSH_SECS,
        }
    }
}

impl KeySettings {
    /// How often last-use times are written.
    pub fn last_used_flush(&self) -> Duration {
        Duration::from_secs(self.last_used_flush_secs.max(1))
    }

    /// The limits of a key without its own.
    pub fn limits(&self) -> crate::keys::Limits {
        crate::keys::Limits {
            rate_per_sec: self.rate_per_sec.max(1),
            burst: self.burst.max(1),
            max_concurrent: self.max_concurrent.max(1),
        }
    }
}

impl Default for ServerSettings {
    /// Every server setting at its default (the environment is not read).
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            wechat_api_base: DEFAULT_WECHAT_API_BASE.to_owned(),
            wechat_token_endpoint: TokenEndpoint::Stable,
            freshness_ttl_secs: DEFAULT_FRESHNESS_TTL_SECS,
            refresh_budget_ms: DEFAULT_REFRESH_BUDGET_MS,
            body_limit: DEFAULT_BODY_LIMIT,
            limits: LimitSettings::default(),
            introspection: DEFAULT_INTROSPECTION,
            shutdown_grace_secs: DEFAULT_SHUTDOWN_GRACE_SECS,
            callback_replay_window_secs: DEFAULT_CALLBACK_REPLAY_WINDOW_SECS,
            keys: KeySettings::default(),
            http: HttpSettings::default(),
            sync: SyncArgs::default(),
            subscriptions: SubscriptionSettings::default(),
        }
    }
}

/// Limits on the work of one GraphQL request, checked before it runs
/// (document size, tokens, nesting, selections, directives, depth, cost) and
/// while it runs (rows, time, errors). Over a limit, the request or the field
/// fails with `LIMIT_EXCEEDED`.
#[derive(Debug, Clone, Args)]
pub struct LimitSettings {
    /// Largest accepted GraphQL document (the `query` text), in bytes.
    #[arg(long, env = "UNION360_MAX_DOCUMENT_BYTES", default_value_t = DEFAULT_MAX_DOCUMENT_BYTES)]
    pub max_document_bytes: usize,

    /// Most tokens (names, values, punctuation) in a GraphQL document.
    #[arg(long, env = "UNION360_MAX_TOKENS", default_value_t = DEFAULT_MAX_TOKENS)]
    pub max_tokens: usize,

    /// Deepest nesting of braces, brackets and parentheses in a GraphQL
    /// document (at most 256: the parser is recursive).
    #[arg(
        long,
        env = "UNION360_MAX_NESTING",
        default_value_t = DEFAULT_MAX_NESTING,
        value_parser = clap::value_parser!(u64).range(1..=MAX_NESTING_CEILING as u64).map(|n| n as usize),
    )]
    pub max_nesting: usize,

    /// Most selections (fields, aliases included, fragment spreads and inline
    /// fragments) in a document, each fragment counted every time it is spread.
    #[arg(long, env = "UNION360_MAX_SELECTIONS", default_value_t = DEFAULT_MAX_SELECTIONS)]
    pub max_selections: usize,

    /// Most directives in a document, each fragment's counted every time it is spread.
    #[arg(long, env = "UNION360_MAX_DIRECTIVES", default_value_t = DEFAULT_MAX_DIRECTIVES)]
    pub max_directives: usize,

    /// Deepest accepted GraphQL selection.
    #[arg(long, env = "UNION360_MAX_DEPTH", default_value_t = DEFAULT_MAX_DEPTH)]
    pub max_depth: usize,

    /// Highest accepted query cost: one per field, a list's fields counted
    /// once per row it can hold (its page size, or its bound).
    #[arg(long, env = "UNION360_MAX_COMPLEXITY", default_value_t = DEFAULT_MAX_COMPLEXITY)]
    pub max_complexity: usize,

    /// Most rows (people, accounts, apps) one request may read; past it,
    /// list fields fail with `LIMIT_EXCEEDED`.
    #[arg(long, env = "UNION360_MAX_ROWS", default_value_t = DEFAULT_MAX_ROWS)]
    pub max_rows: usize,

    /// Most SQL statements one request may run; past it, fields that need
    /// the database fail with `LIMIT_EXCEEDED` (a field already running
    /// finishes, so a mutation is never cut in half).
    #[arg(long, env = "UNION360_MAX_STATEMENTS", default_value_t = DEFAULT_MAX_STATEMENTS)]
    pub max_statements: u64,

    /// Most errors in one response; the rest are counted in one last error.
    #[arg(long, env = "UNION360_MAX_ERRORS", default_value_t = DEFAULT_MAX_ERRORS)]
    pub max_errors: usize,

    /// Most root fields in one operation, fragments counted where they are
    /// spread (each root field runs on its own, with its own SQL).
    #[arg(long, env = "UNION360_MAX_ROOT_FIELDS", default_value_t = DEFAULT_MAX_ROOT_FIELDS)]
    pub max_root_fields: usize,

    /// Largest response body, in bytes; a larger answer is replaced by a
    /// `LIMIT_EXCEEDED` error.
    #[arg(long, env = "UNION360_MAX_RESPONSE_BYTES", default_value_t = DEFAULT_MAX_RESPONSE_BYTES)]
    pub max_response_bytes: usize,

    /// Seconds one GraphQL request may run before it is abandoned.
    #[arg(long, env = "UNION360_REQUEST_DEADLINE_SECS", default_value_t = DEFAULT_REQUEST_DEADLINE_SECS)]
    pub request_deadline_secs: u64,
}

impl Default for LimitSettings {
    /// Every limit at its default (the environment is not read).
    fn default() -> Self {
        Self {
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            max_tokens: DEFAULT_MAX_TOKENS,
            max_nesting: DEFAULT_MAX_NESTING,
            max_selections: DEFAULT_MAX_SELECTIONS,
            max_directives: DEFAULT_MAX_DIRECTIVES,
            max_depth: DEFAULT_MAX_DEPTH,
            max_complexity: DEFAULT_MAX_COMPLEXITY,
            max_rows: DEFAULT_MAX_ROWS,
            max_statements: DEFAULT_MAX_STATEMENTS,
            max_errors: DEFAULT_MAX_ERRORS,
            max_root_fields: DEFAULT_MAX_ROOT_FIELDS,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            request_deadline_secs: DEFAULT_REQUEST_DEADLINE_SECS,
        }
    }
}

/// Settings of the HTTP edge: what bounds each connection, which browser
/// origins may call the API, and where `/metrics` is served.
#[derive(Debug, Clone, Args)]
pub struct HttpSettings {
    /// Seconds a client has to send a request's headers, counted from the
    /// connection's opening or from the first byte of a later request; a
    /// connection that has not sent them in time is closed.
    #[arg(long, env = "UNION360_HEADER_READ_TIMEOUT_SECS", default_value_t = DEFAULT_HEADER_READ_TIMEOUT_SECS)]
    pub header_read_timeout_secs: u64,

    /// Seconds a kept-alive connection may stay idle (no request in flight,
    /// none begun) before it is closed.
    #[arg(long, env = "UNION360_IDLE_TIMEOUT_SECS", default_value_t = DEFAULT_IDLE_TIMEOUT_SECS)]
    pub idle_timeout_secs: u64,

    /// Seconds a client has to send a request's body, counted from the end of
    /// its headers; a body still incomplete then is refused (400).
    #[arg(long, env = "UNION360_BODY_READ_TIMEOUT_SECS", default_value_t = DEFAULT_BODY_READ_TIMEOUT_SECS)]
    pub body_read_timeout_secs: u64,

    /// Most connections open at once; further ones are closed as soon as they
    /// are accepted. Keep it below the open-file limit (`ulimit -n`).
    #[arg(long, env = "UNION360_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Most connections open at once from one IP address (an IPv6 /64
    /// network counts as one address); further ones are closed as soon as
    /// they are accepted. Behind a reverse proxy every
    /// client shares the proxy's address: raise it to `max_connections` there.
    #[arg(long, env = "UNION360_MAX_CONNECTIONS_PER_IP", default_value_t = DEFAULT_MAX_CONNECTIONS_PER_IP)]
    pub max_connections_per_ip: usize,

    /// Browser origins allowed to call the API (CORS), comma-separated, such
    /// as `https://crm.example.com`; empty (the default) sends no CORS headers.
    #[arg(
        long,
        env = "UNION360_CORS_ORIGINS",
        value_delimiter = ',',
        value_parser = parse_origin,
    )]
    pub cors_origins: Vec<HeaderValue>,

    /// A separate address to serve `/metrics` on (only there); unset serves
    /// it on the main listener.
    #[arg(long, env = "UNION360_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for HttpSettings {
    /// Every HTTP setting at its default (the environment is not read).
    fn default() -> Self {
        Self {
            header_read_timeout_secs: DEFAULT_HEADER_READ_TIMEOUT_SECS,
            idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS,
            body_read_timeout_secs: DEFAULT_BODY_READ_TIMEOUT_SECS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            cors_origins: Vec::new(),
            metrics_listen: None,
        }
    }
}

impl LimitSettings {
    /// How long one GraphQL request may run.
    pub fn request_deadline(&self) -> Duration {
        Duration::from_secs(self.request_deadline_secs)
    }
}

impl HttpSettings {
    /// How long a client has to send a request's headers.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }

    /// How long an idle kept-alive connection stays open.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// How long a client has to send a request's body.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.body_read_timeout_secs)
    }
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing after.
fn parse_origin(value: &str) -> Result<HeaderValue, String> {
    let value = value.trim().trim_end_matches('/');
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or_else(|| {
            format!("`{value}` is not an origin: it must start with https:// or http://")
        })?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '*', ' ']) {
        return Err(format!(
            "`{value}` is not an origin: it must be scheme://host[:port], nothing after"
        ));
    }
    HeaderValue::from_str(value).map_err(|_| format!("`{value}` is not an origin"))
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured only on a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Settings of the logs (every subcommand).
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct LogSettings {
    /// Log line format: `text` or `json` (one object per line). The level
    /// is set with `RUST_LOG`.
    #[arg(long, env = "UNION360_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
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
            database: DatabaseSettings::new(database_url),
            server: ServerSettings::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        assert_eq!(
            parse_origin("https://crm.example.com/").unwrap(),
            "https://crm.example.com"
        );
        assert!(parse_origin("http://localhost:3000").is_ok());
        assert!(parse_origin("crm.example.com").is_err());
        assert!(parse_origin("https://crm.example.com/app").is_err());
        assert!(parse_origin("https://*.example.com").is_err());
        assert!(parse_origin("https://").is_err());
    }
}
