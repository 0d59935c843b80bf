//! Response keys in the order the query asked for them.
//!
//! The specification orders a result map as its selection set does, with
//! fragments expanded where they are spread ("CollectFields"); snapshot
//! tests, diffs and people reading GraphiQL rely on it. async-graphql
//! resolves sibling fields concurrently and keeps them in the order they
//! complete, so [`in_query_order`] rebuilds each object of `data` in query
//! order once the operation has run.
//!
//! Where a field's type is an object type, every fragment spread in its
//! selection applies (validation saw to that). Where it is abstract (an
//! interface such as `Node`), the object's concrete type was recorded as it
//! resolved ([`RuntimeTypes`]), and only the fragments whose type condition
//! it meets are expanded. `@skip` and `@include` are honoured.

use std::cell::OnceCell;
use std::collections::HashMap;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{
    Directive, ExecutableDocument, Field, FragmentDefinition, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned, Value, Variables};

use super::node::RuntimeTypes;

/// Puts the keys of every object in `data` (the result of the operation
/// `operation_name` of `document`, run with `variables`, whose abstract
/// fields returned objects of `types`) in query order.
pub fn in_query_order(
    data: &mut Value,
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
    types: &RuntimeTypes,
) {
    let Some(operation) = super::operation::selected(document, operation_name) else {
        return;
    };
    let mut defaults = HashMap::new();
    for definition in &operation.node.variable_definitions {
        if let Some(default) = &definition.node.default_value {
            defaults.insert(definition.node.name.node.clone(), default.node.clone());
        }
    }
    let walk = Walk {
        fragments: &document.fragments,
        variables,
        defaults: &defaults,
        types: (!types.is_empty()).then_some(types),
    };
    let collected = walk.collect(&[&operation.node.selection_set.node], None);
    walk.apply(data, &collected, &[], &mut String::new());
}

struct Walk<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    variables: &'a Variables,
    defaults: &'a HashMap<Name, Value>,
    /// The concrete types of abstract fields' objects, when any ran.
    types: Option<&'a RuntimeTypes>,
}

/// The response keys of a selection, in the order first met.
type Collected<'d> = Vec<Entry<'d>>;

/// One response key: its fields, and the keys under them, collected once
/// for every object of a list.
struct Entry<'d> {
    key: &'d Name,
    fields: Vec<&'d Field>,
    children: OnceCell<Option<Collected<'d>>>,
}

impl<'d> Walk<'d> {
    /// Orders `value` (an object, a list of them, or nothing to order) by
    /// `collected`, the keys under `owner` (the fields of its response key).
    /// `path` is its response path, kept only while there are [`RuntimeTypes`].
    fn apply(
        &self,
        value: &mut Value,
        collected: &Collected<'d>,
        owner: &[&'d Field],
        path: &mut String,
    ) {
        match value {
            Value::List(items) => {
                for (at, item) in items.iter_mut().enumerate() {
                    let len = path.len();
                    if self.types.is_some() {
                        push_segment(path, &at.to_string());
                    }
                    self.apply(item, collected, owner, path);
                    path.truncate(len);
                }
            }
            Value::Object(map) => {
                // An object of an abstract field: only the fragments its
                // concrete type meets count.
                let typed;
                let collected = match self.types.and_then(|types| types.at(path)) {
                    Some(applies) => {
                        typed = self.collect(&selection_sets(owner), Some(&applies));
                        &typed
                    }
                    None => collected,
                };
                let mut old = std::mem::take(map);
                let mut ordered = IndexMap::with_capacity(old.len());
                for entry in collected {
                    // `swap_remove`: constant time (what is left is kept
                    // below, in whatever order).
                    if let Some(mut inner) = old.swap_remove(entry.key) {
                        let children = entry.children.get_or_init(|| self.children(&entry.fields));
                        if let Some(children) = children {
                            let len = path.len();
                            if self.types.is_some() {
                                push_segment(path, entry.key);
                            }
                            self.apply(&mut inner, children, &entry.fields, path);
                            path.truncate(len);
                        }
                        ordered.insert(entry.key.clone(), inner);
                    }
                }
                // Keys the walk did not meet (none, unless a document the
                // walk cannot read ran) keep their place after the others.
                ordered.extend(old);
                *map = ordered;
            }
            _ => {}
        }
    }

    /// The keys under `fields` (one response key's), merged; `None` for leaves.
    fn children(&self, fields: &[&'d Field]) -> Option<Collected<'d>> {
        let sets = selection_sets(fields);
        (!sets.is_empty()).then(|| self.collect(&sets, None))
    }

    /// The fields of `sets`, by response key, in the order first met; with
    /// `applies`, only fragments on those types (and without a condition)
    /// are expanded.
    fn collect(&self, sets: &[&'d SelectionSet], applies: Option<&[String]>) -> Collected<'d> {
        let mut collected: Collected<'d> = Vec::new();
        let mut index: HashMap<&'d Name, usize> = HashMap::new();
        for set in sets {
            self.collect_into(set, applies, &mut collected, &mut index, 0);
        }
        collected
    }

    fn collect_into(
        &self,
        set: &'d SelectionSet,
        applies: Option<&[String]>,
        collected: &mut Collected<'d>,
        index: &mut HashMap<&'d Name, usize>,
        depth: usize,
    ) {
        let meets = |condition: &Name| {
            applies.is_none_or(|applies| applies.iter().any(|ty| ty == condition.as_str()))
        };
        // Validation refuses fragment cycles; this only guards the walk.
        if depth > 64 {
            return;
        }
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    if !self.included(&field.node.directives) {
                        continue;
                    }
                    let key = &field.node.response_key().node;
                    match index.get(key) {
                        Some(&at) => collected[at].fields.push(&field.node),
                        None => {
                            index.insert(key, collected.len());
                            collected.push(Entry {
                                key,
                                fields: vec![&field.node],
                                children: OnceCell::new(),
                            });
                        }
                    }
                }
                Selection::FragmentSpread(spread) => {
                    if !self.included(&spread.node.directives) {
                        continue;
                    }
                    if let Some(fragment) = self.fragments.get(&spread.node.fragment_name.node)
                        && meets(&fragment.node.type_condition.node.on.node)
                    {
                        self.collect_into(
                            &fragment.node.selection_set.node,
                            applies,
                            collected,
                            index,
                            depth + 1,
                        );
                    }
                }
                Selection::InlineFragment(inline) => {
                    let condition = inline.node.type_condition.as_ref();
                    if self.included(&inline.node.directives)
                        && condition.is_none_or(|c| meets(&c.node.on.node))
                    {
                        self.collect_into(
                            &inline.node.selection_set.node,
                            applies,
                            collected,
                            index,
                            depth + 1,
                        );
                    }
                }
            }
        }
    }

    /// Whether `@skip` and `@include` let a selection through.
    fn included(&self, directives: &[Positioned<Directive>]) -> bool {
        directives.iter().all(|d| match d.node.name.node.as_str() {
            "skip" => !self.condition(&d.node),
            "include" => self.condition(&d.node),
            _ => true,
        })
    }

    /// The value of a directive's `if` argument.
    fn condition(&self, directive: &Directive) -> bool {
        let Some((_, value)) = directive.arguments.iter().find(|(n, _)| n.node == "if") else {
            return false;
        };
        let value = value.node.clone().into_const_with(|name| {
            self.variables
                .get(&name)
                .or_else(|| self.defaults.get(&name))
                .cloned()
                .ok_or(())
        });
        matches!(value, Ok(Value::Boolean(true)))
    }
}

/// The non-empty selection sets of `fields`.
fn selection_sets<'d>(fields: &[&'d Field]) -> Vec<&'d SelectionSet> {
    fields
        .iter()
        .map(|f| &f.selection_set.node)
        .filter(|s| !s.items.is_empty())
        .collect()
}

/// Appends one segment to a response path (`a/0/b`): the key
/// [`RuntimeTypes`] records objects under.
pub(super) fn push_segment(path: &mut String, segment: &str) {
    if !path.is_empty() {
        path.push('/');
    }
    path.push_str(segment);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ordered(query: &str, data: serde_json::Value, variables: serde_json::Value) -> String {
        let document = async_graphql::parser::parse_query(query).unwrap();
        let mut data = Value::from_json(data).unwrap();
        in_query_order(
            &mut data,
            &document,
            None,
            &Variables::from_json(variables),
            &RuntimeTypes::default(),
        );
        serde_json::to_string(&data).unwrap()
    }

    #[test]
    fn keys_follow_the_selection_set() {
        let data = json!({ "c": "Query", "a": [{ "name": "x", "appid": "y" }], "b": [] });
        assert_eq!(
            ordered(
                "{ b: apps { appid } a: apps { appid name } c: __typename }",
                data,
                json!({})
            ),
            r#"{"b":[],"a":[{"appid":"y","name":"x"}],"c":"Query"}"#
        );
    }

    #[test]
    fn fragments_count_where_they_are_spread() {
        let query = "query { ...F z: __typename ... on Query { y: __typename } p { ...G b } }
            fragment F on Query { x: __typename p { a } }
            fragment G on P { c a }";
        let data = json!({ "p": { "b": 2, "a": 1, "c": 3 }, "y": "Q", "z": "Q", "x": "Q" });
        assert_eq!(
            ordered(query, data, json!({})),
            r#"{"x":"Q","p":{"a":1,"c":3,"b":2},"z":"Q","y":"Q"}"#
        );
    }

    #[test]
    fn skipped_fields_do_not_take_a_place() {
        let query = "query($no: Boolean!, $yes: Boolean = true) { a @skip(if: $no) b a @include(if: $yes) }";
        let data = json!({ "a": 1, "b": 2 });
        assert_eq!(
            ordered(query, data.clone(), json!({ "no": true })),
            r#"{"b":2,"a":1}"#
        );
        assert_eq!(
            ordered(query, data, json!({ "no": false })),
            r#"{"a":1,"b":2}"#
        );
    }

    #[test]
    fn fragments_of_abstract_fields_apply_by_the_concrete_type() {
        let query = "{ nodes { ... on A { x: f y: g } ...B id } one { ...B ... on A { y: g } } }
            fragment B on B { y: h x: i }";
        let document = async_graphql::parser::parse_query(query).unwrap();
        let types = RuntimeTypes::default();
        types.set("nodes/0".into(), vec!["A".into(), "Node".into()]);
        types.set("nodes/1".into(), vec!["B".into(), "Node".into()]);
        types.set("one".into(), vec!["B".into()]);
        let data = json!({
            "one": { "x": 2, "y": 1 },
            "nodes": [{ "id": 0, "y": 2, "x": 1 }, { "id": 0, "x": 2, "y": 1 }, null],
        });
        let mut data = Value::from_json(data).unwrap();
        in_query_order(&mut data, &document, None, &Variables::default(), &types);
        assert_eq!(
            serde_json::to_string(&data).unwrap(),
            r#"{"nodes":[{"x":1,"y":2,"id":0},{"y":1,"x":2,"id":0},null],"one":{"y":1,"x":2}}"#
        );
    }

    #[test]
    fn lists_of_lists_and_nulls_are_walked() {
        let query = "{ grid { b a } none { a } }";
        let data = json!({ "none": null, "grid": [[{ "a": 1, "b": 2 }], null] });
        assert_eq!(
            ordered(query, data, json!({})),
            r#"{"grid":[[{"b":2,"a":1}],null],"none":null}"#
        );
    }
}
