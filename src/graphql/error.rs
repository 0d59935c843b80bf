//! Errors at the GraphQL edge.
//!
//! Every error a resolver returns carries `extensions.code`, one of
//! `NOT_FOUND`, `BAD_USER_INPUT`, `UNAUTHENTICATED`, `FORBIDDEN`,
//! `UPSTREAM_UNAVAILABLE` or `INTERNAL`, so clients can branch on it. An
//! internal error is logged once here with its cause and shown only as
//! "internal error": database messages never reach a client.

use async_graphql::ErrorExtensions;

use crate::apps::AppError;
use crate::domain::ParseError;
use crate::identity::IdentityError;

/// An error as a client sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The input is invalid; the message says how.
    #[error("{0}")]
    BadUserInput(String),
    /// Something failed inside; the cause is logged, not shown.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// The `extensions.code` of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "NOT_FOUND",
            Self::BadUserInput(_) => "BAD_USER_INPUT",
            Self::Internal(_) => "INTERNAL",
        }
    }

    /// An internal error from any cause.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self::Internal(cause.into())
    }
}

impl ErrorExtensions for ApiError {
    fn extend(&self) -> async_graphql::Error {
        if let Self::Internal(cause) = self {
            tracing::error!(error = ?cause, "request failed");
        }
        async_graphql::Error::new(self.to_string()).extend_with(|_, e| e.set("code", self.code()))
    }
}

/// Converts service results into resolver results with `extensions.code` set.
///
/// (async-graphql turns any `Display` error into a GraphQL error with `?`,
/// which would drop the code; resolvers call `.api()` instead.)
pub trait ResultExt<T> {
    /// Maps the error through [`ApiError`] into a coded GraphQL error.
    fn api(self) -> ApiResult<T>;
}

impl<T, E: Into<ApiError>> ResultExt<T> for Result<T, E> {
    fn api(self) -> ApiResult<T> {
        self.map_err(|e| e.into().extend())
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::internal(e)
    }
}

impl From<ParseError> for ApiError {
    fn from(e: ParseError) -> Self {
        Self::BadUserInput(e.to_string())
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Invalid(_) | AppError::Duplicate(_) => Self::BadUserInput(e.to_string()),
            AppError::Crypto(e) => Self::internal(e),
            AppError::Db(e) => Self::internal(e),
        }
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Db(e) => Self::internal(e),
            other => Self::BadUserInput(other.to_string()),
        }
    }
}

/// The result type of resolvers.
pub type ApiResult<T> = Result<T, async_graphql::Error>;
