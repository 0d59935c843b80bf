//! Field errors handled as the GraphQL specification says ("Handling
//! Execution Errors"): a field whose resolver fails is `null` with its error
//! in `errors`, its siblings kept; when the field may not be `null`, the
//! `null` goes to its nearest nullable parent (a list item, a field), and
//! to `data` itself when no parent may be `null`.
//!
//! async-graphql instead drops a failed field's key from its object and
//! turns an object whose every field failed into `null`, whatever the types
//! say. [`FieldErrors`] catches every field's error as it returns (the field
//! is `null`, the error kept), notes the types of the fields that hold
//! failed ones, and once the operation has run moves each `null` of a non-null
//! field up to where the specification puts it, in the merged answer (a
//! response key selected twice, in fragments say, is one object there).
//! Once a failure has doomed `data`, the mutations left are not run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// A request's field errors, the non-null fields that failed, and the
/// types of the fields that hold others, by path.
#[derive(Default)]
struct Nulls {
    state: Mutex<State>,
    /// A non-null field has failed.
    any_failed: AtomicBool,
    /// A failure reaches `data`: it will be null whatever else runs.
    doomed: AtomicBool,
}

#[derive(Default)]
struct State {
    errors: Vec<ServerError>,
    failed: Vec<Vec<PathSegment>>,
    /// By [`key`] of their path.
    types: HashMap<String, String>,
}

impl Nulls {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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
        let state = &mut *state;
        for path in &state.failed {
            match nullable_parent(&state.types, path) {
                Some(at) => set_null(&mut response.data, &path[..at]),
                None => {
                    response.data = Value::Null;
                    break;
                }
            }
        }
        let mut errors = std::mem::take(&mut state.errors);
        errors.append(&mut response.errors);
        response.errors = errors;
        // A subscription executes once per event, with these same
        // extensions: the next starts afresh.
        state.failed.clear();
        state.types.clear();
        self.any_failed.store(false, Ordering::Release);
        self.doomed.store(false, Ordering::Release);
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
        let at_root = path_node.parent.is_none();
        let holds_fields = !info.field.selection_set.node.items.is_empty();
        // Mutations run one after the other: none runs once `data` is lost.
        if at_root && self.doomed.load(Ordering::Acquire) {
            return Ok(Some(Value::Null));
        }
        let (value, error) = match next.run(ctx, info).await {
            Ok(value) => (value, None),
            Err(error) => (Some(Value::Null), Some(error)),
        };
        let failed_here = error.is_some() && return_type.ends_with('!');
        // A field completes after the fields under it, so a failure under it
        // is known by now. The types of fields holding others are noted only
        // from the first non-null failure on: nothing, when nothing fails.
        if error.is_none() && !self.any_failed.load(Ordering::Acquire) {
            return Ok(value);
        }
        let mut state = self.state();
        if holds_fields {
            state
                .types
                .insert(key(&path_of(path_node)), return_type.to_owned());
        }
        if let Some(mut error) = error {
            let path = path_of(path_node);
            if error.path.is_empty() {
                error.path.clone_from(&path);
            }
            state.errors.push(error);
            if failed_here {
                state.failed.push(path);
                self.any_failed.store(true, Ordering::Release);
            }
        }
        if at_root
            && state
                .failed
                .iter()
                .any(|p| nullable_parent(&state.types, p).is_none())
        {
            self.doomed.store(true, Ordering::Release);
        }
        Ok(value)
    }
}

/// How long the prefix of `path` is that names the nearest position above
/// the failed non-null field at `path` that may be null: a list item or a
/// field. `None` when there is none below `data`.
fn nullable_parent(types: &HashMap<String, String>, path: &[PathSegment]) -> Option<usize> {
    (1..path.len()).rev().find(|&end| {
        let prefix = &path[..end];
        // The field this position is in, and how many list levels deep.
        let field_end = prefix
            .iter()
            .rposition(|s| matches!(s, PathSegment::Field(_)))
            .map_or(0, |i| i + 1);
        let depth = end - field_end;
        types
            .get(&key(&path[..field_end]))
            .and_then(|ty| list_levels(ty).get(depth).copied())
            // Unknown: as if non-null, so the null goes further up.
            .unwrap_or(false)
    })
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

/// A path as text (`people.nodes[3].accounts`): names cannot hold `.` or `[`.
fn key(path: &[PathSegment]) -> String {
    let mut key = String::new();
    for segment in path {
        match segment {
            PathSegment::Field(name) => {
                key.push('.');
                key.push_str(name);
            }
            PathSegment::Index(i) => {
                key.push('[');
                key.push_str(&i.to_string());
                key.push(']');
            }
        }
    }
    key
}

/// Replaces the value at `path` in `data` with null (nothing when a
/// position on the way is already null or missing).
fn set_null(data: &mut Value, path: &[PathSegment]) {
    let mut at = data;
    for segment in path {
        at = match (segment, at) {
            (PathSegment::Field(key), Value::Object(map)) => match map.get_mut(key.as_str()) {
                Some(value) => value,
                None => return,
            },
            (PathSegment::Index(i), Value::List(items)) if *i < items.len() => &mut items[*i],
            _ => return,
        };
    }
    *at = Value::Null;
}

/// The response path of a field being resolved.
/// The response path of the field at `node`, root first.
pub(super) fn path_of(node: &QueryPathNode<'_>) -> Vec<PathSegment> {
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
    use std::sync::Arc;

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
    async fn a_key_selected_twice_is_one_object_that_the_null_reaches() {
        // `child` twice (as fragments do): one copy fails inside.
        let (data, _) = run("{ ok child { a } ...F } fragment F on Root { child { bad } }").await;
        assert_eq!(data, json!({ "ok": 1, "child": null }));
        let (data, _) = run("{ child { a } child { maybe } }").await;
        assert_eq!(data, json!({ "child": { "a": 1, "maybe": null } }));
        // An alias is its own position.
        let (data, _) = run("{ x: child { a } y: child { bad } }").await;
        assert_eq!(data, json!({ "x": { "a": 1 }, "y": null }));
    }

    struct Writes(Arc<std::sync::atomic::AtomicUsize>);

    #[Object]
    impl Writes {
        async fn write(&self) -> i32 {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            1
        }
        async fn fail(&self) -> async_graphql::Result<i32> {
            Err("write failed".into())
        }
    }

    #[tokio::test]
    async fn no_mutation_runs_once_data_is_lost() {
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let schema = Schema::build(Root, Writes(done.clone()), EmptySubscription)
            .extension(FieldErrors)
            .finish();
        let response = schema
            .execute("mutation { a: write b: fail c: write }")
            .await;
        assert_eq!(response.data, Value::Null);
        assert_eq!(response.errors.len(), 1);
        assert_eq!(
            done.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "`c` did not run"
        );
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
        set_null(&mut value, &[PathSegment::Index(0), PathSegment::Index(1)]);
        assert_eq!(
            value,
            Value::List(vec![
                Value::List(vec![Value::from(1), Value::Null]),
                Value::from(3)
            ])
        );
    }
}
