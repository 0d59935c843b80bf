//! The limits async-graphql measures during validation (depth and cost),
//! and codes for the errors it raises before execution.
//!
//! Depth and cost are not handed to async-graphql's own limits, whose
//! errors carry no code and no figure: [`Checks`] reads them from the
//! validation result and refuses with `LIMIT_EXCEEDED`, naming the limit.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerError, ServerResult, ValidationResult, Variables};

use super::Refusal;
use crate::error::ErrorCode;
use crate::graphql::error::code_if_missing;
use crate::settings::LimitSettings;

/// Holds validation to the depth and cost limits, and codes the errors
/// raised before execution.
#[derive(Debug, Clone, Copy)]
pub struct Checks {
    max_depth: usize,
    max_complexity: usize,
}

impl Checks {
    /// The checks of `settings`.
    pub fn new(settings: &LimitSettings) -> Self {
        Self {
            max_depth: settings.max_depth,
            max_complexity: settings.max_complexity,
        }
    }
}

impl ExtensionFactory for Checks {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(*self)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Checks {
    async fn request(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextRequest<'_>,
    ) -> async_graphql::Response {
        let mut response = next.run(ctx).await;
        // Anything else refused before execution (an unknown operation name,
        // say) is a document the request cannot run as sent.
        for error in response.errors.iter_mut().filter(|e| e.path.is_empty()) {
            code_if_missing(error, ErrorCode::GraphqlValidationFailed);
        }
        response
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables).await.map_err(|mut error| {
            // The document arrives parsed; what async-graphql checks here is
            // how deep fields and fragments nest.
            if error.message.starts_with("The recursion depth") {
                let message = error.message.replace('`', "");
                error = Refusal::limit(format!("{message} (fields and fragments nested)")).into();
            }
            code_if_missing(&mut error, ErrorCode::GraphqlParseFailed);
            error
        })
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await.map_err(|mut errors| {
            for error in &mut errors {
                code_if_missing(error, ErrorCode::GraphqlValidationFailed);
            }
            errors
        })?;
        let refused = if result.depth > self.max_depth {
            format!(
                "the query nests fields {} deep, deeper than {} (UNION360_MAX_DEPTH)",
                result.depth, self.max_depth
            )
        } else if result.complexity > self.max_complexity {
            format!(
                "the query costs {}, more than {} (UNION360_MAX_COMPLEXITY); a list's fields count once per row it can hold, so ask for smaller pages or fewer fields",
                result.complexity, self.max_complexity
            )
        } else {
            return Ok(result);
        };
        Err(vec![Refusal::limit(refused).into()])
    }
}
