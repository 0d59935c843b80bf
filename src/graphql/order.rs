//! Response keys in the order the query asked for them.
//!
//! The specification orders a result map as its selection set does, with
//! fragments expanded where they are spread ("CollectFields"); snapshot
//! tests, diffs and people reading GraphiQL rely on it. async-graphql
//! resolves sibling fields concurrently and keeps them in the order they
//! complete, so [`in_query_order`] rebuilds each object of `data` in query
//! order once the operation has run.
//!
//! Type conditions are not evaluated: every fragment is expanded. That is
//! exact while every type a fragment can apply to is an object type (a
//! fragment on an object type applies exactly where validation lets it be
//! spread); `@skip` and `@include` are honoured.

use std::cell::OnceCell;
use std::collections::HashMap;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{
    Directive, ExecutableDocument, Field, FragmentDefinition, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned, Value, Variables};

/// Puts the keys of every object in `data` (the result of the operation
/// `operation_name` of `document`, run with `variables`) in query order.
pub fn in_query_order(
    data: &mut Value,
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
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
    };
    let collected = walk.collect(&[&operation.node.selection_set.node]);
    walk.apply(data, &collected);
}

struct Walk<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    variables: &'a Variables,
    defaults: &'a HashMap<Name, Value>,
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
    /// `collected`.
    fn apply(&self, value: &mut Value, collected: &Collected<'d>) {
        match value {
            Value::List(items) => {
                for item in items {
                    self.apply(item, collected);
                }
            }
            Value::Object(map) => {
                let mut old = std::mem::take(map);
                let mut ordered = IndexMap::with_capacity(old.len());
                for entry in collected {
                    // `swap_remove`: constant time (what is left is kept
                    // below, in whatever order).
                    if let Some(mut inner) = old.swap_remove(entry.key) {
                        let children = entry.children.get_or_init(|| self.children(&entry.fields));
                        if let Some(children) = children {
                            self.apply(&mut inner, children);
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
        let sets: Vec<&SelectionSet> = fields
            .iter()
            .map(|f| &f.selection_set.node)
            .filter(|s| !s.items.is_empty())
            .collect();
        (!sets.is_empty()).then(|| self.collect(&sets))
    }

    /// The fields of `sets`, by response key, in the order first met.
    fn collect(&self, sets: &[&'d SelectionSet]) -> Collected<'d> {
        let mut collected: Collected<'d> = Vec::new();
        let mut index: HashMap<&'d Name, usize> = HashMap::new();
        for set in sets {
            self.collect_into(set, &mut collected, &mut index, 0);
        }
        collected
    }

    fn collect_into(
        &self,
        set: &'d SelectionSet,
        collected: &mut Collected<'d>,
        index: &mut HashMap<&'d Name, usize>,
        depth: usize,
    ) {
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
                    if let Some(fragment) = self.fragments.get(&spread.node.fragment_name.node) {
                        self.collect_into(
                            &fragment.node.selection_set.node,
                            collected,
                            index,
                            depth + 1,
                        );
                    }
                }
                Selection::InlineFragment(inline) => {
                    if self.included(&inline.node.directives) {
                        self.collect_into(
                            &inline.node.selection_set.node,
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ordered(query: &str, data: serde_json::Value, variables: serde_json::Value) -> String {
        let document = async_graphql::parser::parse_query(query).unwrap();
        let mut data = Value::from_json(data).unwrap();
        in_query_order(&mut data, &document, None, &Variables::from_json(variables));
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
    fn lists_of_lists_and_nulls_are_walked() {
        let query = "{ grid { b a } none { a } }";
        let data = json!({ "none": null, "grid": [[{ "a": 1, "b": 2 }], null] });
        assert_eq!(
            ordered(query, data, json!({})),
            r#"{"grid":[[{"b":2,"a":1}],null],"none":null}"#
        );
    }
}
