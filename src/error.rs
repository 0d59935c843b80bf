//! The error policy: which error type belongs where, what reaches a client,
//! and what is logged.
//!
//! # Which type where
//!
//! 1. **What union360 talks to** has its own `thiserror` enum, in its own
//!    terms: [`crate::wechat::WechatError`] (transport, `Api { errcode,
//!    errmsg }`, decode, breakers) for the WeChat API,
//!    [`crate::crypto::CryptoError`] for keys and sealed values, and
//!    `sea_orm::DbErr` for the database. [`crate::domain::ParseError`] says
//!    why a value from outside is not a valid identifier.
//! 2. **Each service** returns its own enum naming the conditions a caller
//!    can act on, and wraps the errors below it with `#[from]` so the cause
//!    chain survives: [`crate::apps::AppError`],
//!    [`crate::identity::IdentityError`], [`crate::identity::LookupError`],
//!    [`crate::refresh::RefreshError`]. A service never flattens an error
//!    into a string or into another service's type.
//! 3. **The GraphQL edge** (`graphql::error`) maps every service error to one
//!    [`ErrorCode`], in one place, and every error a resolver returns carries
//!    it as `extensions.code`. `anyhow` is for start-up, the command line and
//!    the benchmark harness only, where a person reads the chain.
//!
//! # What a client sees
//!
//! The same condition has the same code everywhere:
//!
//! | condition | code |
//! |---|---|
//! | an app or account the request names does not exist; a path no route serves | `NOT_FOUND` |
//! | input that does not parse or breaks a rule (a malformed id, a page too large, a cursor of another list, the same account twice, too many rows, a TTL too short, an appid taken); a variable missing, null where it may not be, or of the wrong type | `BAD_USER_INPUT` |
//! | a document that does not parse | `GRAPHQL_PARSE_FAILED` |
//! | a document that breaks a GraphQL rule (an unknown field, a fragment that spreads itself, an input field given twice) | `GRAPHQL_VALIDATION_FAILED` |
//! | an HTTP request that is not a GraphQL request union360 can take (a body that is not JSON, a media type it does not speak, a method the route does not answer) | `BAD_REQUEST` |
//! | a request over a limit (body size, document size, tokens, nesting, selections, directives, depth, cost, rows, statements, time, errors) | `LIMIT_EXCEEDED`, the message naming the limit |
//! | anything else (the database, a sealed value, a bug) | `INTERNAL`, with the message "internal error" |
//!
//! A lookup that finds nothing where nothing is a valid answer (`person`,
//! `account` for a registered app, `app`) is `null`, not an error, and a
//! filter that names an unregistered app (`people(filter: { followsApp })`,
//! `Person.accounts(appid:)`) matches nothing, like any filter nobody meets.
//! WeChat
//! failures are never errors of a read: the stored profile is served with its
//! `refreshError`, and `refreshAccounts` counts them. Database messages,
//! paths and secrets never reach a client.
//!
//! # What is logged
//!
//! An error is logged once, where it is handled: an `INTERNAL` error by the
//! GraphQL edge with its cause chain; a WeChat failure by the refresh service
//! where it records it on the accounts (`wechat.errcode`); a failed
//! background refresh by the task that ran it; start-up and command-line
//! errors by `main`. Client errors (`NOT_FOUND`, `BAD_USER_INPUT`, the
//! `GRAPHQL_*` codes, `LIMIT_EXCEEDED`) are not logged: they are the
//! client's to handle. Never a secret or a raw token: secrets are
//! `SecretString`, tokens are logged by fingerprint.

/// The `extensions.code` of an error a client receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// No valid API key came with the request.
    Unauthenticated,
    /// The API key lacks the scope a field needs.
    Forbidden,
    /// The API key's rate or concurrency limit is spent.
    RateLimited,
    /// The thing asked for does not exist.
    NotFound,
    /// The input is invalid; the message says how.
    BadUserInput,
    /// The document does not parse.
    GraphqlParseFailed,
    /// The document breaks a rule of GraphQL or of the schema.
    GraphqlValidationFailed,
    /// The HTTP request is not one the endpoint can take.
    BadRequest,
    /// The request asks for more work than a limit allows; the message names it.
    LimitExceeded,
    /// A persisted query's hash this server does not know: send the document with it.
    PersistedQueryNotFound,
    /// WeChat failed or could not be reached for a call that cannot be
    /// answered without it (a sign-in code exchange); try again later.
    UpstreamUnavailable,
    /// Something failed inside; the cause is logged, not shown.
    Internal,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [Self; 12] = [
        Self::Unauthenticated,
        Self::Forbidden,
        Self::RateLimited,
        Self::NotFound,
        Self::BadUserInput,
        Self::GraphqlParseFailed,
        Self::GraphqlValidationFailed,
        Self::BadRequest,
        Self::LimitExceeded,
        Self::PersistedQueryNotFound,
        Self::UpstreamUnavailable,
        Self::Internal,
    ];

    /// The code as clients see it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::RateLimited => "RATE_LIMITED",
            Self::NotFound => "NOT_FOUND",
            Self::BadUserInput => "BAD_USER_INPUT",
            Self::GraphqlParseFailed => "GRAPHQL_PARSE_FAILED",
            Self::GraphqlValidationFailed => "GRAPHQL_VALIDATION_FAILED",
            Self::BadRequest => "BAD_REQUEST",
            Self::LimitExceeded => "LIMIT_EXCEEDED",
            Self::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            Self::UpstreamUnavailable => "UPSTREAM_UNAVAILABLE",
            Self::Internal => "INTERNAL",
        }
    }
}
