//! The operation a request runs, and its variables checked before it runs.

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationDefinition};
use async_graphql::{Positioned, ServerError, Value, Variables};

use super::error::code_if_missing;
use crate::error::ErrorCode;

/// The operation of `document` that `name` selects (the only one when no
/// name is given), or `None` when there is no such operation (execution
/// reports that).
pub fn selected<'d>(
    document: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<&'d Positioned<OperationDefinition>> {
    match (&document.operations, name) {
        // A lone operation is anonymous: a name asks for another one.
        (DocumentOperations::Single(op), None) => Some(op),
        (DocumentOperations::Single(_), Some(_)) => None,
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        _ => None,
    }
}

/// Refuses, with `BAD_USER_INPUT` for each, the variables of `operation`
/// that are required (non-null) but missing or null ("CoerceVariableValues"
/// in the specification): a request error, before anything runs. A missing
/// one with a default takes its default.
pub fn check_required(
    operation: &OperationDefinition,
    variables: &Variables,
) -> Result<(), Vec<ServerError>> {
    let errors: Vec<ServerError> = operation
        .variable_definitions
        .iter()
        .filter(|d| !d.node.var_type.node.nullable)
        .filter_map(|d| {
            let name = &d.node.name.node;
            let ty = &d.node.var_type.node;
            let message = match variables.get(name) {
                Some(Value::Null) => {
                    format!("Variable \"${name}\" of non-null type \"{ty}\" must not be null.")
                }
                None if d.node.default_value.is_none() => {
                    format!("Variable \"${name}\" of required type \"{ty}\" was not provided.")
                }
                _ => return None,
            };
            let mut error = ServerError::new(message, Some(d.pos));
            code_if_missing(&mut error, ErrorCode::BadUserInput);
            Some(error)
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(query: &str, variables: serde_json::Value) -> Vec<String> {
        let document = async_graphql::parser::parse_query(query).unwrap();
        let operation = selected(&document, None).unwrap();
        match check_required(&operation.node, &Variables::from_json(variables)) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.message).collect(),
        }
    }

    #[test]
    fn required_variables_must_be_given_and_not_null() {
        let query = "query($a: String!, $b: Int, $c: [ID!]!, $d: Boolean! = true) { x }";
        assert_eq!(
            check(query, json!({})),
            [
                "Variable \"$a\" of required type \"String!\" was not provided.",
                "Variable \"$c\" of required type \"[ID!]!\" was not provided.",
            ]
        );
        assert_eq!(
            check(query, json!({ "a": null, "c": [], "d": null })),
            [
                "Variable \"$a\" of non-null type \"String!\" must not be null.",
                "Variable \"$d\" of non-null type \"Boolean!\" must not be null.",
            ]
        );
        assert!(check(query, json!({ "a": "", "c": ["1"], "b": null })).is_empty());
    }

    #[test]
    fn the_named_operation_is_the_one_checked() {
        let document =
            async_graphql::parser::parse_query("query A($a: Int!) { x } query B { y }").unwrap();
        assert!(selected(&document, None).is_none());
        let b = selected(&document, Some("B")).unwrap();
        assert!(check_required(&b.node, &Variables::default()).is_ok());
        let a = selected(&document, Some("A")).unwrap();
        assert!(check_required(&a.node, &Variables::default()).is_err());
    }
}
