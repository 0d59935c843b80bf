//! Errors at the GraphQL edge: every service error mapped to its
//! [`ErrorCode`], in one place (the policy is [`crate::error`]).
//!
//! An internal error is logged once here with its cause chain and shown
//! only as "internal error": database messages never reach a client.

use std::sync::Arc;

use async_graphql::ErrorExtensions;
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};

use crate::apps::AppError;
use crate::domain::ParseError;
use crate::error::ErrorCode;
use crate::identity::{IdentityError, LookupError};
use crate::refresh::RefreshError;

/// An error as a client sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The caller's API key lacks a scope; the message names it.
    #[error("{0}")]
    Forbidden(String),
    /// The caller's API key has spent its rate limit.
    #[error("{0}")]
    RateLimited(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The input is invalid; the message says how.
    #[error("{0}")]
    BadUserInput(String),
    /// Fields of an input are invalid: the message says how, and
    /// `extensions.fields` names them.
    #[error("{message}")]
    BadFields {
        /// Every problem, in one message.
        message: String,
        /// The names of the invalid fields, as the input spells them.
        fields: Vec<&'static str>,
    },
    /// The request asks for more than a limit allows; the message names it.
    #[error("{0}")]
    LimitExceeded(String),
    /// WeChat refused the caller's input (a sign-in code, say); the
    /// message says why and `extensions.wechatErrcode` gives WeChat's code.
    #[error("{message}")]
    WechatRefused {
        /// What happened.
        message: String,
        /// WeChat's `errcode`.
        errcode: i64,
    },
    /// WeChat failed or could not be reached; `extensions.wechatErrcode`
    /// gives its code when it answered with one.
    #[error("{message}")]
    Upstream {
        /// What happened.
        message: String,
        /// WeChat's `errcode`, when there is one.
        errcode: Option<i64>,
    },
    /// Something failed inside; the cause is logged, not shown.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// The `extensions.code` of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::RateLimited(_) => ErrorCode::RateLimited,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::BadUserInput(_) | Self::BadFields { .. } | Self::WechatRefused { .. } => {
                ErrorCode::BadUserInput
            }
            Self::Upstream { .. } => ErrorCode::UpstreamUnavailable,
            Self::LimitExceeded(_) => ErrorCode::LimitExceeded,
            Self::Internal(_) => ErrorCode::Internal,
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
            // The cause chain on one line: `{:?}` of an `anyhow::Error`
            // would spread it over several, with a backtrace when enabled.
            tracing::error!(error = %format_args!("{cause:#}"), "request failed");
        }
        let code = self.code().as_str();
        async_graphql::Error::new(self.to_string()).extend_with(|_, e| {
            e.set("code", code);
            match self {
                Self::BadFields { fields, .. } => e.set("fields", fields.clone()),
                Self::WechatRefused { errcode, .. }
                | Self::Upstream {
                    errcode: Some(errcode),
                    ..
                } => e.set("wechatErrcode", *errcode),
                _ => {}
            }
        })
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
            AppError::NotRegistered(_) => Self::NotFound(e.to_string()),
            AppError::Invalid(_) | AppError::Duplicate(_) => Self::BadUserInput(e.to_string()),
            AppError::InvalidFields(problems) => Self::BadFields {
                message: problems.to_string(),
                fields: problems.fields(),
            },
            AppError::Crypto(e) => Self::internal(e),
            AppError::Db(e) => Self::internal(e),
        }
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::UnknownApps(_) => Self::NotFound(e.to_string()),
            IdentityError::TooMany(_)
            | IdentityError::DuplicateRow { .. }
            | IdentityError::InvalidRow { .. } => Self::BadUserInput(e.to_string()),
            IdentityError::Db(e) => Self::internal(e),
        }
    }
}

impl From<LookupError> for ApiError {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::NotRegistered(_) | LookupError::NoSuchAccount { .. } => {
                Self::NotFound(e.to_string())
            }
            LookupError::Db(e) => Self::internal(e),
        }
    }
}

impl From<RefreshError> for ApiError {
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::Lookup(e) => e.into(),
            other => Self::internal(other),
        }
    }
}

/// The result type of resolvers.
pub type ApiResult<T> = Result<T, async_graphql::Error>;

/// Gives a code to the field errors async-graphql raises itself: an
/// argument or variable value that does not coerce to its type (a malformed
/// `DateTime`, say) fails its field with a path but no code. Every error of
/// ours carries one already; these are the client's input, `BAD_USER_INPUT`.
pub struct CodedFieldErrors;

impl ExtensionFactory for CodedFieldErrors {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(CodedFieldErrors)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for CodedFieldErrors {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> async_graphql::Response {
        let mut response = next.run(ctx, operation_name).await;
        for error in response.errors.iter_mut().filter(|e| !e.path.is_empty()) {
            code_if_missing(error, ErrorCode::BadUserInput);
        }
        response
    }
}

/// Gives `error` the code `code` unless it has one.
pub fn code_if_missing(error: &mut async_graphql::ServerError, code: ErrorCode) {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AppId;

    #[test]
    fn an_unregistered_app_is_not_found_wherever_it_is_named() {
        let appid = || AppId::parse("wx0000000000000001").expect("valid appid");
        let codes = [
            ApiError::from(AppError::NotRegistered(appid())).code(),
            ApiError::from(LookupError::NotRegistered(appid())).code(),
            ApiError::from(IdentityError::UnknownApps(vec![appid().to_string()])).code(),
            ApiError::from(RefreshError::Lookup(LookupError::NotRegistered(appid()))).code(),
        ];
        assert!(codes.iter().all(|c| *c == ErrorCode::NotFound), "{codes:?}");
    }

    #[test]
    fn internal_errors_are_logged_on_one_line_with_their_cause_chain() {
        use crate::telemetry::capture::Captured;
        let captured = Captured::default();
        let subscriber =
            crate::telemetry::subscriber(crate::settings::LogFormat::Text, false, captured.clone());
        tracing::subscriber::with_default(subscriber, || {
            let cause = anyhow::anyhow!("disk full").context("writing the account");
            let _ = ApiError::internal(cause).extend();
        });
        let text = captured.text();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("writing the account: disk full"), "{text}");
        assert!(!text.contains("backtrace"), "{text}");
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let error = ApiError::from(sea_orm::DbErr::Custom("secret table name".to_owned()));
        assert_eq!(error.code(), ErrorCode::Internal);
        assert_eq!(error.to_string(), "internal error");
    }
}
