//! Field errors handled as the GraphQL specification says ("Handling
//! Execution Errors"): a field whose resolver fails is `null` with its error
//! in `errors`, its siblings kept; when the field may not be `null`, the
//! `null` goes to its nearest nullable parent (a list item, a field), and
//! to `data` itself when no parent may be `null`.
//!
//! async-graphql instead drops a failed field's key from its object and
//! turns an object whose every field failed into `null`, whatever the types
//! say. [`FieldErrors`] sees every field resolve (its errors caught as they
//! return) and moves each `null` where the specification puts it.

use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextResolve, ResolveInfo,
};
use async_graphql::{
    PathSegment, QueryPathNode, QueryPathSegment, ServerError, ServerResult, Value,
};

/// The extension: one [`Nulls`] per request.
pub struct FieldErrors;

impl ExtensionFactory for FieldErrors {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Nulls::default())
    }
}

/// A request's field errors, and the non-null fields whose `null` has not
/// found its place yet (it goes to a parent, which resolves after them).
#[derive(Default)]
struct Nulls(Mutex<State>);

#[derive(Default)]
struct State {
    errors: Vec<ServerError>,
    unplaced: Vec<Vec<PathSegment>>,
}

impl Nulls {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Nulls {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> async_graphql::Response {
        let mut response = next.run(ctx, operation_name).await;
        let mut state = self.state();
        // A root field that may not be null failed: so does `data`.
        if !state.unplaced.is_empty() {
            response.data = Value::Null;
        }
        let mut errors = std::mem::take(&mut state.errors);
        errors.append(&mut response.errors);
        response.errors = errors;
        response
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let path_node = info.path_node;
        let return_type = info.return_type;
        match next.run(ctx, info).await {
            Err(mut error) => {
                let path = path_of(path_node);
                if error.path.is_empty() {
                    error.path.clone_from(&path);
                }
                let mut state = self.state();
                state.errors.push(error);
                if return_type.ends_with('!') {
                    state.unplaced.push(path);
                }
                Ok(Some(Value::Null))
            }
            Ok(value) => {
                let mut state = self.state();
                if state.unplaced.is_empty() {
                    return Ok(value);
                }
                let here = path_of(path_node);
                let (below, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut state.unplaced)
                    .into_iter()
                    .partition(|p| p.len() > here.len() && p.starts_with(&here));
                state.unplaced = rest;
                let mut value = value.unwrap_or_default();
                let nullable = list_levels(return_type);
                for path in below {
                    let indexes: Vec<usize> = path[here.len()..]
                        .iter()
                        .map_while(|s| match s {
                            PathSegment::Index(i) => Some(*i),
                            PathSegment::Field(_) => None,
                        })
                        .collect();
                    // The innermost list item that may be null takes it;
                    // else the field itself, if it may; else its parent.
                    let item = (1..=indexes.len())
                        .rev()
                        .find(|depth| nullable.get(*depth).copied().unwrap_or(false));
                    match item {
                        Some(depth) => set_null(&mut value, &indexes[..depth]),
                        None if nullable[0] => {
                            value = Value::Null;
                            break;
                        }
                        None => {
                            value = Value::Null;
                            state.unplaced.push(here);
                            break;
                        }
                    }
                }
                Ok(Some(value))
            }
        }
    }
}

/// Whether the field and each level of list in its type may be null, outer
/// first: `[[T!]]!` is `[false, true, false]`.
fn list_levels(mut ty: &str) -> Vec<bool> {
    let mut levels = Vec::new();
    loop {
        let non_null = ty.ends_with('!');
        levels.push(!non_null);
        ty = ty.strip_suffix('!').unwrap_or(ty);
        match ty.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            Some(inner) => ty = inner,
            None => return levels,
        }
    }
}

/// Replaces the list item at `indexes` (one per level) in `value` with null.
fn set_null(value: &mut Value, indexes: &[usize]) {
    let mut at = value;
    for index in indexes {
        match at {
            Value::List(items) if *index < items.len() => at = &mut items[*index],
            _ => return,
        }
    }
    *at = Value::Null;
}

/// The response path of a field being resolved.
fn path_of(node: &QueryPathNode<'_>) -> Vec<PathSegment> {
    let mut path: Vec<PathSegment> = std::iter::once(node)
        .chain(node.parents())
        .map(|node| match node.segment {
            QueryPathSegment::Index(i) => PathSegment::Index(i),
            QueryPathSegment::Name(name) => PathSegment::Field(name.to_owned()),
        })
        .collect();
    path.reverse();
    path
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
    use serde_json::{Value as Json, json};

    use super::*;

    struct Root;

    #[Object]
    impl Root {
        async fn ok(&self) -> i32 {
            1
        }
        async fn nullable_fails(&self) -> async_graphql::Result<Option<i32>> {
            Err("nullable failed".into())
        }
        async fn non_null_fails(&self) -> async_graphql::Result<i32> {
            Err("non-null failed".into())
        }
        async fn child(&self) -> Option<Child> {
            Some(Child)
        }
        async fn items(&self) -> Vec<Option<Child>> {
            vec![Some(Child), Some(Child)]
        }
        async fn strict_items(&self) -> Option<Vec<Child>> {
            Some(vec![Child, Child])
        }
        async fn grid(&self) -> Vec<Option<Vec<Child>>> {
            vec![Some(vec![Child]), Some(vec![Child])]
        }
    }

    struct Child;

    #[Object]
    impl Child {
        async fn a(&self) -> i32 {
            1
        }
        async fn bad(&self) -> async_graphql::Result<i32> {
            Err("bad failed".into())
        }
        async fn maybe(&self) -> async_graphql::Result<Option<i32>> {
            Err("maybe failed".into())
        }
    }

    /// The data and the error paths of `query`.
    async fn run(query: &str) -> (Json, Vec<Json>) {
        let schema = Schema::build(Root, EmptyMutation, EmptySubscription)
            .extension(FieldErrors)
            .finish();
        let response = serde_json::to_value(schema.execute(query).await).unwrap();
        let paths = response["errors"]
            .as_array()
            .map(|errors| errors.iter().map(|e| e["path"].clone()).collect())
            .unwrap_or_default();
        (response["data"].clone(), paths)
    }

    #[tokio::test]
    async fn a_failed_nullable_field_is_null_and_its_siblings_stay() {
        let (data, paths) = run("{ ok nullableFails }").await;
        assert_eq!(data, json!({ "ok": 1, "nullableFails": null }));
        assert_eq!(paths, [json!(["nullableFails"])]);
        let (data, _) = run("{ nullableFails }").await;
        assert_eq!(data, json!({ "nullableFails": null }));
        let (data, paths) = run("{ child { a maybe } }").await;
        assert_eq!(data, json!({ "child": { "a": 1, "maybe": null } }));
        assert_eq!(paths, [json!(["child", "maybe"])]);
    }

    #[tokio::test]
    async fn a_failed_non_null_field_nulls_its_nearest_nullable_parent() {
        // An object field.
        let (data, paths) = run("{ ok child { a bad } }").await;
        assert_eq!(data, json!({ "ok": 1, "child": null }));
        assert_eq!(paths, [json!(["child", "bad"])]);
        // Nullable items of a non-null list.
        let (data, paths) = run("{ ok items { a bad } }").await;
        assert_eq!(data, json!({ "ok": 1, "items": [null, null] }));
        assert_eq!(paths.len(), 2);
        // Non-null items of a nullable list.
        let (data, _) = run("{ ok strictItems { a bad } }").await;
        assert_eq!(data, json!({ "ok": 1, "strictItems": null }));
        // `[[Child!]]!`: the inner list, nullable, takes it.
        let (data, _) = run("{ ok grid { bad } }").await;
        assert_eq!(data, json!({ "ok": 1, "grid": [null, null] }));
        // Nothing nullable up to the root: `data` is null.
        let (data, paths) = run("{ ok nonNullFails }").await;
        assert_eq!(data, Json::Null);
        assert_eq!(paths, [json!(["nonNullFails"])]);
    }

    #[tokio::test]
    async fn fields_that_do_not_fail_are_untouched() {
        let (data, paths) = run("{ ok child { a } items { a } grid { a } }").await;
        assert_eq!(
            data,
            json!({ "ok": 1, "child": { "a": 1 }, "items": [{ "a": 1 }, { "a": 1 }], "grid": [[{ "a": 1 }], [{ "a": 1 }]] })
        );
        assert!(paths.is_empty());
    }

    #[test]
    fn list_levels_read_outer_first() {
        assert_eq!(list_levels("String"), [true]);
        assert_eq!(list_levels("String!"), [false]);
        assert_eq!(list_levels("[Person!]!"), [false, false]);
        assert_eq!(list_levels("[[Person!]]!"), [false, true, false]);
        assert_eq!(list_levels("[Person]"), [true, true]);
    }

    #[test]
    fn set_null_replaces_one_item() {
        let mut value = Value::List(vec![
            Value::List(vec![Value::from(1), Value::from(2)]),
            Value::from(3),
        ]);
        set_null(&mut value, &[0, 1]);
        assert_eq!(
            value,
            Value::List(vec![
                Value::List(vec![Value::from(1), Value::Null]),
                Value::from(3)
            ])
        );
    }
}
