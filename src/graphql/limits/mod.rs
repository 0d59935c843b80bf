//! Bounded work: every GraphQL request is measured before it runs, and
//! stopped while it runs once it passes a limit ([`LimitSettings`]).
//!
//! Before any parser reads it, the document's text is scanned in one pass
//! with no recursion ([`scan`]): size, tokens, nesting. It is then parsed
//! once, and the parsed document measured with its fragments expanded
//! ([`document`]); async-graphql receives that parsed document and never
//! parses it again. Its validation computes depth and cost ([`cost`]: lists
//! count once per row they can hold), which [`Checks`] holds to their limits.
//! While it runs, the request reads at most so many rows (counted by the
//! list resolvers through the request context), runs at most so many SQL
//! statements (checked whenever a resolver reaches for the database), ends
//! by its deadline, and answers with at most so many errors.
//!
//! Every refusal carries `extensions.code`: `LIMIT_EXCEEDED` with a message
//! naming the limit and its setting, or `GRAPHQL_PARSE_FAILED` /
//! `GRAPHQL_VALIDATION_FAILED` for documents that are not valid GraphQL.

pub mod cost;
mod document;
mod extension;
mod scan;

use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ErrorExtensionValues, ServerError};

pub use extension::Checks;

use super::ApiSchema;
use super::context::RequestContext;
use crate::error::ErrorCode;
use crate::settings::LimitSettings;

/// Why a request is refused: a code and a one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The `extensions.code` of the error.
    pub code: ErrorCode,
    /// What the client is told.
    pub message: String,
}

impl Refusal {
    /// Over a limit.
    pub fn limit(message: String) -> Self {
        Self {
            code: ErrorCode::LimitExceeded,
            message,
        }
    }

    /// Not valid GraphQL.
    pub fn invalid(message: String) -> Self {
        Self {
            code: ErrorCode::GraphqlValidationFailed,
            message,
        }
    }
}

impl From<Refusal> for ServerError {
    fn from(refusal: Refusal) -> Self {
        let mut error = ServerError::new(refusal.message, None);
        let mut extensions = ErrorExtensionValues::default();
        extensions.set("code", refusal.code.as_str());
        error.extensions = Some(extensions);
        error
    }
}

/// The limits of a schema, kept in its data for the HTTP handler.
#[derive(Debug, Clone, Default)]
pub struct Limits(LimitSettings);

impl Limits {
    /// The limits `settings` set.
    pub fn new(settings: LimitSettings) -> Self {
        Self(settings)
    }

    /// The limits `schema` was built with (the defaults if none).
    pub fn of(schema: &ApiSchema) -> Self {
        schema.data::<Self>().cloned().unwrap_or_default()
    }

    /// Reads `text` once for size, tokens, nesting and repeated input
    /// fields, before any parser sees it; then parses it and measures the
    /// parsed document with its fragments expanded.
    pub fn parse(&self, text: &str) -> Result<ExecutableDocument, ServerError> {
        let limits = &self.0;
        scan::scan(
            text,
            scan::TextLimits {
                max_bytes: limits.max_document_bytes,
                max_tokens: limits.max_tokens,
                // Whatever the setting, never near the parser's stack's end.
                max_nesting: limits.max_nesting.min(crate::settings::MAX_NESTING_CEILING),
            },
        )?;
        let document = async_graphql::parser::parse_query(text).map_err(|e| {
            let mut error = ServerError::from(e);
            error.message = one_line(&error.message);
            super::error::code_if_missing(&mut error, ErrorCode::GraphqlParseFailed);
            error
        })?;
        document::check(
            &document,
            document::DocumentLimits {
                max_selections: limits.max_selections,
                max_directives: limits.max_directives,
                max_root_fields: limits.max_root_fields,
            },
        )?;
        Ok(document)
    }

    /// Runs `request` on `schema` with a request context holding its row
    /// and statement limits, for at most the request deadline; `Err` when it
    /// ran out (the request's work is dropped then). The response holds at
    /// most the error limit's worth of errors.
    pub async fn execute(
        &self,
        schema: &ApiSchema,
        request: async_graphql::Request,
    ) -> Result<async_graphql::Response, ServerError> {
        let context = RequestContext::new(self.0.max_rows, self.0.max_statements);
        let statements = context.statements();
        let run =
            crate::store::counting_statements(statements, schema.execute(request.data(context)));
        let deadline = self.0.request_deadline();
        let mut response = tokio::time::timeout(deadline, run).await.map_err(|_| {
            Refusal::limit(format!(
                "the request ran longer than {} s and was stopped (UNION360_REQUEST_DEADLINE_SECS)",
                deadline.as_secs()
            ))
        })?;
        self.cap_errors(&mut response.errors);
        Ok(response)
    }

    /// The most rows one request (or one subscription result) may read.
    pub fn max_rows(&self) -> usize {
        self.0.max_rows
    }

    /// The most SQL statements one request (or one subscription result)
    /// may run.
    pub fn max_statements(&self) -> u64 {
        self.0.max_statements
    }

    /// The largest response body.
    pub fn max_response_bytes(&self) -> usize {
        self.0.max_response_bytes
    }

    /// The most errors one response holds.
    pub fn max_errors(&self) -> usize {
        self.0.max_errors
    }

    /// Keeps the first errors up to the limit, and one more saying how many
    /// were left out.
    pub fn cap_errors(&self, errors: &mut Vec<ServerError>) {
        let max = self.0.max_errors;
        if errors.len() > max {
            let omitted = errors.len() - max;
            errors.truncate(max);
            errors.push(
                Refusal::limit(format!(
                    "{omitted} more errors were left out of this response (UNION360_MAX_ERRORS)"
                ))
                .into(),
            );
        }
    }
}

/// A syntax error's message on one line: the parser draws the line and a
/// caret under it, which the error's `locations` already say.
fn one_line(message: &str) -> String {
    let expected = message
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("= "));
    match expected {
        Some(what) => format!("syntax error: {what}"),
        None => message.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_past_the_limit_are_counted_in_one() {
        let limits = Limits::new(LimitSettings {
            max_errors: 3,
            ..LimitSettings::default()
        });
        let mut errors: Vec<ServerError> = (0..10)
            .map(|i| ServerError::new(format!("e{i}"), None))
            .collect();
        limits.cap_errors(&mut errors);
        assert_eq!(errors.len(), 4);
        assert_eq!(errors[2].message, "e2");
        assert!(errors[3].message.starts_with("7 more errors"));
        let mut few = vec![ServerError::new("one", None)];
        limits.cap_errors(&mut few);
        assert_eq!(few.len(), 1);
    }

    #[test]
    fn parse_errors_and_refusals_carry_their_code() {
        let limits = Limits::default();
        let code = |text: &str| {
            let error = limits.parse(text).unwrap_err();
            error.extensions.unwrap().get("code").cloned().unwrap()
        };
        assert_eq!(
            code("{ a("),
            async_graphql::Value::from("GRAPHQL_PARSE_FAILED")
        );
        assert_eq!(
            code(&format!("{{a(b:{})}}", "[".repeat(100))),
            async_graphql::Value::from("LIMIT_EXCEEDED")
        );
        assert!(limits.parse("{ a(b: [[1]]) }").is_ok());
        let message = limits.parse("{ a(b: ").unwrap_err().message;
        assert!(message.starts_with("syntax error: expected"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
}
