//! The operation a request runs, and its variables checked before it runs.

use async_graphql::parser::types::{
    BaseType, DocumentOperations, ExecutableDocument, Field, OperationDefinition, Selection,
    SelectionSet, Type,
};
use async_graphql::{Name, Pos, Positioned, ServerError, Value, Variables};

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

/// Refuses a subscription that does not select exactly one root field
/// ("Single root field" in the specification: async-graphql does not check
/// it), selects an introspection field there, or selects its field other
/// than once and directly: async-graphql skips fragments at a
/// subscription's root (the subscription would end at once, empty) and
/// runs each occurrence of a field as a subscription of its own, with part
/// of the selection each, where the specification merges them. Such a
/// document is refused, saying how to write it, rather than answered wrong.
pub fn check_single_root_field(
    operation: &Positioned<OperationDefinition>,
) -> Result<(), ServerError> {
    let items = &operation.node.selection_set.node.items;
    let fields: Vec<&Field> = items
        .iter()
        .filter_map(|s| match &s.node {
            Selection::Field(field) => Some(&field.node),
            _ => None,
        })
        .collect();
    let message = if fields.len() < items.len() {
        "select a subscription's root field directly, not through a fragment"
    } else {
        match fields.as_slice() {
            [field] if !field.name.node.starts_with("__") => return Ok(()),
            [first, rest @ ..]
                if rest
                    .iter()
                    .all(|f| f.response_key().node == first.response_key().node) =>
            {
                "a subscription's root field is selected once: merge its selections into one"
            }
            _ => "a subscription selects exactly one root field, and not an introspection field",
        }
    };
    let mut error = ServerError::new(message, Some(operation.pos));
    code_if_missing(&mut error, ErrorCode::GraphqlValidationFailed);
    Err(error)
}

/// Refuses, with `BAD_USER_INPUT` for each, the variables of `operation`
/// that are required (non-null) but missing or null, and those whose value
/// does not fit a built-in scalar type they are declared with (a string for
/// an `Int`, an `Int` outside 32 bits, a fraction for an `Int`, at any list
/// depth): "CoerceVariableValues" in the specification, a request error
/// before anything runs. A missing one with a default takes its default.
/// Values of input objects, enums and the API's own scalars are checked
/// where they are used ([`code_variable_errors`]).
pub fn check_variables(
    operation: &OperationDefinition,
    variables: &Variables,
) -> Result<(), Vec<ServerError>> {
    let errors: Vec<ServerError> = operation
        .variable_definitions
        .iter()
        .filter_map(|d| {
            let name = &d.node.name.node;
            let ty = &d.node.var_type.node;
            let message = match variables.get(name) {
                Some(Value::Null) if !ty.nullable => {
                    format!("Variable \"${name}\" of non-null type \"{ty}\" must not be null.")
                }
                None if !ty.nullable && d.node.default_value.is_none() => {
                    format!("Variable \"${name}\" of required type \"{ty}\" was not provided.")
                }
                Some(value) => {
                    let problem = scalar_problem(ty, value)?;
                    format!("Variable \"${name}\" got an invalid value: {problem}.")
                }
                None => return None,
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

/// Why `value` does not fit `ty`, as far as built-in scalars tell: `None`
/// when it fits, or when `ty` names a type checked elsewhere.
fn scalar_problem(ty: &Type, value: &Value) -> Option<String> {
    match (&ty.base, value) {
        (_, Value::Null) if ty.nullable => None,
        (_, Value::Null) => Some(format!("null where \"{ty}\" takes no null")),
        (BaseType::List(inner), Value::List(items)) => {
            items.iter().find_map(|item| scalar_problem(inner, item))
        }
        // A single value where a list is expected is a list of one.
        (BaseType::List(inner), single) => scalar_problem(inner, single),
        (BaseType::Named(name), value) => {
            let fits = match name.as_str() {
                "Int" => value_as_i64(value).is_some_and(|n| i32::try_from(n).is_ok()),
                "Float" => matches!(value, Value::Number(_)),
                "String" => matches!(value, Value::String(_)),
                "Boolean" => matches!(value, Value::Boolean(_)),
                "ID" => matches!(value, Value::String(_)) || value_as_i64(value).is_some(),
                _ => return None,
            };
            (!fits).then(|| {
                let mut shown = value.to_string();
                if shown.len() > 64 {
                    let cut = shown.floor_char_boundary(64);
                    shown.truncate(cut);
                    shown.push('…');
                }
                match name.as_str() {
                    "Int" => format!(
                        "Int takes whole numbers from {} to {}, not {shown}",
                        i32::MIN,
                        i32::MAX
                    ),
                    other => format!("{other} cannot represent {shown}"),
                }
            })
        }
    }
}

/// A JSON number without a fraction, as an `i64`.
fn value_as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// Gives `BAD_USER_INPUT` to the errors of `document`'s validation that
/// blame a variable's value rather than the document: an argument of the
/// wrong type where the faulty part of the argument is a variable
/// (`first: $n` with `"n": "ten"` or `3000000000`). The same fault written
/// into the document stays `GRAPHQL_VALIDATION_FAILED`.
pub fn code_variable_errors(errors: &mut [ServerError], document: &ExecutableDocument) {
    for error in errors {
        let Some(path) = error
            .message
            .strip_prefix("Invalid value for argument \"")
            .and_then(|rest| rest.split_once('"'))
            .map(|(path, _)| path)
        else {
            continue;
        };
        let Some(&at) = error.locations.first() else {
            continue;
        };
        let mut segments = path.split('.');
        segments.next();
        let blames_variable =
            argument_at(document, at).is_some_and(|value| reaches_variable(value, segments));
        if blames_variable {
            let extensions = error.extensions.get_or_insert_with(Default::default);
            extensions.set("code", ErrorCode::BadUserInput.as_str());
        }
    }
}

/// The value of the argument whose name is at `at`, in any operation or fragment.
fn argument_at(document: &ExecutableDocument, at: Pos) -> Option<&async_graphql_value::Value> {
    fn in_set(set: &SelectionSet, at: Pos, depth: usize) -> Option<&async_graphql_value::Value> {
        if depth > 256 {
            return None;
        }
        set.items
            .iter()
            .find_map(|selection| match &selection.node {
                Selection::Field(field) => field
                    .node
                    .arguments
                    .iter()
                    .chain(
                        field
                            .node
                            .directives
                            .iter()
                            .flat_map(|d| d.node.arguments.iter()),
                    )
                    .find(|(name, _): &&(Positioned<Name>, Positioned<_>)| name.pos == at)
                    .map(|(_, value)| &value.node)
                    .or_else(|| in_set(&field.node.selection_set.node, at, depth + 1)),
                Selection::InlineFragment(inline) => {
                    in_set(&inline.node.selection_set.node, at, depth + 1)
                }
                Selection::FragmentSpread(_) => None,
            })
    }
    document
        .operations
        .iter()
        .map(|(_, op)| &op.node.selection_set.node)
        .chain(
            document
                .fragments
                .values()
                .map(|f| &f.node.selection_set.node),
        )
        .find_map(|set| in_set(set, at, 0))
}

/// Whether following `path` (object fields and list indexes) into `value`
/// meets a variable: the part at fault came from the variables.
fn reaches_variable<'p>(
    value: &async_graphql_value::Value,
    mut path: impl Iterator<Item = &'p str>,
) -> bool {
    use async_graphql_value::Value as Literal;
    match value {
        Literal::Variable(_) => true,
        Literal::Object(fields) => path
            .next()
            .and_then(|field| fields.get(field))
            .is_some_and(|inner| reaches_variable(inner, path)),
        Literal::List(items) => path
            .next()
            .and_then(|index| index.parse::<usize>().ok())
            .and_then(|index| items.get(index))
            .is_some_and(|inner| reaches_variable(inner, path)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(query: &str, variables: serde_json::Value) -> Vec<String> {
        let document = async_graphql::parser::parse_query(query).unwrap();
        let operation = selected(&document, None).unwrap();
        match check_variables(&operation.node, &Variables::from_json(variables)) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.message).collect(),
        }
    }

    #[test]
    fn built_in_scalars_are_coerced_at_any_list_depth() {
        let query = "query($i: Int, $l: [[Int!]], $s: String, $id: ID, $f: Float, $b: Boolean, $e: Color, $o: Input) { x }";
        let fine = json!({
            "i": -2147483648, "l": [[1, 2], null], "s": "x", "id": 7, "f": 1.5, "b": false,
            "e": 12, "o": "anything: checked where it is used",
        });
        assert_eq!(check(query, fine), Vec::<String>::new());
        // A single value where a list is expected is a list of one.
        assert_eq!(check(query, json!({ "l": 3 })), Vec::<String>::new());
        assert_eq!(
            check(
                query,
                json!({ "i": 2147483648_i64, "l": [[1, null]], "s": 1, "id": 1.5, "b": "no" })
            ),
            [
                "Variable \"$i\" got an invalid value: Int takes whole numbers from -2147483648 to 2147483647, not 2147483648.",
                "Variable \"$l\" got an invalid value: null where \"Int!\" takes no null.",
                "Variable \"$s\" got an invalid value: String cannot represent 1.",
                "Variable \"$id\" got an invalid value: ID cannot represent 1.5.",
                "Variable \"$b\" got an invalid value: Boolean cannot represent \"no\".",
            ]
        );
        let long = "x".repeat(1000);
        let [message] = check(query, json!({ "i": long })).try_into().unwrap();
        assert!(message.len() < 200, "{message}");
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
        assert!(check_variables(&b.node, &Variables::default()).is_ok());
        let a = selected(&document, Some("A")).unwrap();
        assert!(check_variables(&a.node, &Variables::default()).is_err());
    }
}
