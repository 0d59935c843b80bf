//! Checks of a parsed document, before async-graphql validates it.
//!
//! Validating and executing a document expands every fragment where it is
//! spread, so a short document can stand for an enormous one: ten fragments
//! that each spread the next ten times stand for ten billion fields, and a
//! fragment that spreads itself twice for an endless tree. Here each
//! fragment's expanded size is computed once, in an order where the
//! fragments it spreads come first, so the whole document is measured in
//! time linear in its length, with no recursion through fragments; cycles
//! are refused on the way. The count covers every operation and every
//! fragment definition, so it bounds the work of every validation rule.
//!
//! The same pass bounds what introspection can produce. Its lists (`types`,
//! `fields`, `args`, …) are not counted by the cost limit, and a type's
//! fields lead to types with fields again, so a short introspection query
//! can ask for billions of values. Each selection is counted once per value
//! it can produce, every introspection list multiplying what it holds by a
//! bound at least as large as the schema's (see [`INTROSPECTION_LISTS`]).

use std::collections::HashMap;

use async_graphql::Positioned;
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};

use super::Refusal;

/// Introspection's list fields and a bound on their length in this schema
/// (a test checks the schema stays within them).
pub const INTROSPECTION_LISTS: [(&str, usize); 9] = [
    ("types", 64),
    ("fields", 32),
    ("args", 8),
    ("inputFields", 16),
    ("enumValues", 24),
    ("interfaces", 4),
    ("possibleTypes", 8),
    ("directives", 8),
    ("locations", 24),
];

/// The most values an introspection query may produce, as estimated with
/// [`INTROSPECTION_LISTS`]: GraphiQL's full introspection query comes to
/// about 410,000 on this estimate (its real answer is far smaller).
pub const MAX_INTROSPECTION_VALUES: usize = 1_000_000;

fn list_bound(field: &str) -> usize {
    INTROSPECTION_LISTS
        .iter()
        .find(|(name, _)| *name == field)
        .map_or(1, |(_, bound)| *bound)
}

/// The limits of this check.
#[derive(Debug, Clone, Copy)]
pub struct DocumentLimits {
    /// Most selections (fields, fragment spreads, inline fragments), expanded.
    pub max_selections: usize,
    /// Most directives, expanded.
    pub max_directives: usize,
    /// Most root fields in one operation, expanded. Each root field runs on
    /// its own, with its own statements, so a document repeating one root
    /// field thousands of times would hold the database for everyone.
    pub max_root_fields: usize,
}

/// The expanded size of a part of a document (saturating: a size past any
/// limit is as good as infinite).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Size {
    selections: usize,
    directives: usize,
    /// The values the selections can produce, introspection lists counted
    /// by their bound (other lists are the cost limit's).
    values: usize,
    /// Fields at the set's own level (through fragments and inline
    /// fragments spread there, not inside fields).
    top: usize,
}

impl Size {
    fn add(self, other: Self) -> Self {
        Self {
            selections: self.selections.saturating_add(other.selections),
            directives: self.directives.saturating_add(other.directives),
            values: self.values.saturating_add(other.values),
            top: self.top.saturating_add(other.top),
        }
    }

    fn directives(n: usize) -> Self {
        Self {
            selections: 0,
            directives: n,
            values: 0,
            top: 0,
        }
    }

    /// One selection with `directives` directives.
    fn selection(directives: usize) -> Self {
        Self {
            selections: 1,
            directives,
            values: 1,
            top: 0,
        }
    }

    /// What a field holding `inner` produces, repeated `times` times.
    fn repeated(self, times: usize) -> Self {
        Self {
            values: self.values.saturating_mul(times),
            ..self
        }
    }
}

/// Refuses `doc` when a fragment spreads itself (directly or not), or when
/// its fragments expanded hold more selections or directives than `limits`.
pub fn check(doc: &ExecutableDocument, limits: DocumentLimits) -> Result<(), Refusal> {
    let sizes = fragment_sizes(doc)?;
    let mut total = Size::default();
    // The most root fields of one operation.
    let mut root_fields = 0;
    for (_, operation) in doc.operations.iter() {
        let op = &operation.node;
        let body = size_of(&op.selection_set, &sizes);
        root_fields = root_fields.max(body.top);
        total = total
            .add(Size::directives(op.directives.len()))
            .add(Size { top: 0, ..body });
        for variable in &op.variable_definitions {
            total = total.add(Size::directives(variable.node.directives.len()));
        }
    }
    for size in sizes.values() {
        total = total.add(*size);
    }
    if total.selections > limits.max_selections {
        return Err(Refusal::limit(format!(
            "the document selects more than {} fields, fragments counted where they are spread (UNION360_MAX_SELECTIONS)",
            limits.max_selections
        )));
    }
    if root_fields > limits.max_root_fields {
        return Err(Refusal::limit(format!(
            "an operation has more than {} root fields, fragments counted where they are spread (UNION360_MAX_ROOT_FIELDS)",
            limits.max_root_fields
        )));
    }
    if total.values > MAX_INTROSPECTION_VALUES {
        return Err(Refusal::limit(format!(
            "the document's introspection could produce more than {MAX_INTROSPECTION_VALUES} values"
        )));
    }
    if total.directives > limits.max_directives {
        return Err(Refusal::limit(format!(
            "the document has more than {} directives, fragments counted where they are spread (UNION360_MAX_DIRECTIVES)",
            limits.max_directives
        )));
    }
    Ok(())
}

/// The expanded size of every fragment, each computed once after the
/// fragments it spreads; an error when fragments spread each other in a cycle.
fn fragment_sizes(doc: &ExecutableDocument) -> Result<HashMap<&str, Size>, Refusal> {
    let names: Vec<&str> = doc.fragments.keys().map(|n| n.as_str()).collect();
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let spreads: Vec<Vec<usize>> = names
        .iter()
        .map(|name| {
            let mut out = Vec::new();
            if let Some(fragment) = doc.fragments.get(*name) {
                spreads_in(&fragment.node.selection_set, &mut |spread| {
                    // An unknown fragment is validation's to report.
                    out.extend(index.get(spread).copied());
                });
            }
            out
        })
        .collect();

    // Depth-first over the spreads with a stack of our own; a fragment is
    // finished once every fragment it spreads is.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut marks = vec![Mark::New; names.len()];
    let mut order = Vec::with_capacity(names.len());
    for start in 0..names.len() {
        if marks[start] != Mark::New {
            continue;
        }
        marks[start] = Mark::Open;
        let mut stack = vec![(start, 0usize)];
        while let Some((node, next)) = stack.last_mut() {
            let node = *node;
            if let Some(&child) = spreads[node].get(*next) {
                *next += 1;
                match marks[child] {
                    Mark::New => {
                        marks[child] = Mark::Open;
                        stack.push((child, 0));
                    }
                    Mark::Open => {
                        return Err(Refusal::invalid(format!(
                            "the fragment `{}` spreads itself",
                            names[child]
                        )));
                    }
                    Mark::Done => {}
                }
            } else {
                marks[node] = Mark::Done;
                order.push(node);
                stack.pop();
            }
        }
    }

    let mut sizes = HashMap::with_capacity(names.len());
    for node in order {
        let name = names[node];
        if let Some(fragment) = doc.fragments.get(name) {
            let size = Size::directives(fragment.node.directives.len())
                .add(size_of(&fragment.node.selection_set, &sizes));
            sizes.insert(name, size);
        }
    }
    Ok(sizes)
}

/// Calls `found` with the name of every fragment spread in `set` (nested
/// fields and inline fragments included, other fragments not).
fn spreads_in<'a>(set: &'a Positioned<SelectionSet>, found: &mut impl FnMut(&'a str)) {
    for item in &set.node.items {
        match &item.node {
            Selection::Field(field) => spreads_in(&field.node.selection_set, found),
            Selection::InlineFragment(inline) => spreads_in(&inline.node.selection_set, found),
            Selection::FragmentSpread(spread) => found(spread.node.fragment_name.node.as_str()),
        }
    }
}

/// The expanded size of `set`, the fragments it spreads taken from `sizes`.
///
/// Recursion here follows the text's own nesting only, which the guard has
/// bounded before the document was parsed.
fn size_of(set: &Positioned<SelectionSet>, sizes: &HashMap<&str, Size>) -> Size {
    set.node.items.iter().fold(Size::default(), |total, item| {
        let own = Size::selection(item.node.directives().len());
        let inner = match &item.node {
            Selection::Field(field) => Size {
                top: 1,
                ..size_of(&field.node.selection_set, sizes)
                    .repeated(list_bound(field.node.name.node.as_str()))
            },
            Selection::InlineFragment(inline) => size_of(&inline.node.selection_set, sizes),
            Selection::FragmentSpread(spread) => sizes
                .get(spread.node.fragment_name.node.as_str())
                .copied()
                .unwrap_or_default(),
        };
        total.add(own).add(inner)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    const LIMITS: DocumentLimits = DocumentLimits {
        max_selections: 100,
        max_directives: 10,
        max_root_fields: usize::MAX,
    };

    fn check_text(text: &str) -> Result<(), (ErrorCode, String)> {
        let doc = async_graphql::parser::parse_query(text).expect("parses");
        check(&doc, LIMITS).map_err(|r| (r.code, r.message))
    }

    /// Fragments `F0`…`F{levels}`, each spreading the next `fan` times.
    fn fragment_chain(levels: usize, fan: usize) -> String {
        let mut text = String::from("{ ...F0 }\n");
        for level in 0..levels {
            let spreads = format!("...F{} ", level + 1).repeat(fan);
            text.push_str(&format!("fragment F{level} on Query {{ {spreads} }}\n"));
        }
        text.push_str(&format!("fragment F{levels} on Query {{ a }}\n"));
        text
    }

    #[test]
    fn selections_are_counted_with_fragments_expanded() {
        // 1 spread + 3 × (1 spread + 1 field): 7 selections in the operation,
        // plus the fragments' own, expanded: F0 holds 6, F1 holds 1. Total 14.
        let text =
            "{ ...F0 } fragment F0 on Query { ...F1 ...F1 ...F1 } fragment F1 on Query { a }";
        let doc = async_graphql::parser::parse_query(text).unwrap();
        let limits = |max_selections| DocumentLimits {
            max_selections,
            ..LIMITS
        };
        assert!(check(&doc, limits(14)).is_ok());
        assert!(check(&doc, limits(13)).is_err());
    }

    #[test]
    fn a_chain_of_fragments_each_spreading_the_next_ten_times_is_refused_at_once() {
        // Ten billion fields if expanded; measured in a blink.
        let (code, message) = check_text(&fragment_chain(10, 10)).unwrap_err();
        assert_eq!(code, ErrorCode::LimitExceeded);
        assert!(message.contains("more than 100 fields"), "{message}");
        // Long chains do not recurse: a thousand fragments deep is measured
        // (each definition counted expanded, as validation reads them).
        assert!(check_text(&fragment_chain(1_000, 1)).is_err());
        let doc = async_graphql::parser::parse_query(fragment_chain(1_000, 1)).unwrap();
        let roomy = DocumentLimits {
            max_selections: 1_000_000,
            ..LIMITS
        };
        assert!(check(&doc, roomy).is_ok());
        // Counts past any integer saturate rather than wrap.
        assert!(check_text(&fragment_chain(100, 10)).is_err());
    }

    #[test]
    fn fragment_cycles_are_refused() {
        for text in [
            "{ ...A } fragment A on Query { ...A ...A }",
            "{ ...A } fragment A on Query { b { ...B } } fragment B on T { ... on T { ...C } } fragment C on T { ...A }",
            "{ a } fragment A on Query { ...B } fragment B on Query { ...A }",
        ] {
            let (code, message) = check_text(text).unwrap_err();
            assert_eq!(code, ErrorCode::GraphqlValidationFailed, "{text}");
            assert!(message.contains("spreads itself"), "{message}");
        }
        // A fragment spread twice, or from two places, is no cycle.
        assert!(
            check_text("{ ...A ...B } fragment A on Query { ...B ...B } fragment B on Query { a }")
                .is_ok()
        );
        // An unknown fragment is left to validation.
        assert!(check_text("{ ...Nowhere }").is_ok());
    }

    #[test]
    fn directives_are_counted_with_fragments_expanded() {
        let text = "query($v: Int @d) @d { ...F @d ...F } fragment F on Query @d { a @d @e }";
        // 2 (operation, variable) + 1 (spread) + 2 × 3 (fragment) + 3 (definition) = 12.
        let doc = async_graphql::parser::parse_query(text).unwrap();
        let limits = |max_directives| DocumentLimits {
            max_directives,
            ..LIMITS
        };
        assert!(check(&doc, limits(12)).is_ok());
        let refusal = check(&doc, limits(11)).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::LimitExceeded);
        assert!(refusal.message.contains("11 directives"));
    }

    /// The introspection query GraphiQL sends (the standard one, with
    /// descriptions, deprecations and `specifiedByURL`).
    const FULL_INTROSPECTION: &str = "query IntrospectionQuery { __schema { queryType { name } mutationType { name } subscriptionType { name } types { ...FullType } directives { name description locations args { ...InputValue } } } }
        fragment FullType on __Type { kind name description specifiedByURL fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason } inputFields { ...InputValue } interfaces { ...TypeRef } enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason } possibleTypes { ...TypeRef } }
        fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
        fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }";

    #[test]
    fn the_full_introspection_query_passes_and_introspection_bombs_do_not() {
        let roomy = DocumentLimits {
            max_selections: 10_000,
            max_directives: 100,
            max_root_fields: 100,
        };
        let doc = async_graphql::parser::parse_query(FULL_INTROSPECTION).unwrap();
        assert!(check(&doc, roomy).is_ok());
        // A type's fields lead to types with fields: each hop multiplies.
        let bomb = "{ __schema { types { fields { type { ofType { ofType { fields { type { ofType { ofType { fields { name } } } } } } } } } } } }";
        let doc = async_graphql::parser::parse_query(bomb).unwrap();
        let refusal = check(&doc, roomy).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::LimitExceeded);
        assert!(
            refusal.message.contains("introspection"),
            "{}",
            refusal.message
        );
        // Thirty copies of the types list, through a fragment, count thirty times.
        let copies: String = (0..30)
            .map(|i| format!("t{i}: types {{ ...F }} "))
            .collect();
        let text = format!(
            "{{ __schema {{ {copies} }} }} fragment F on __Type {{ fields {{ args {{ name description }} type {{ name }} name description }} }}"
        );
        let doc = async_graphql::parser::parse_query(text).unwrap();
        assert!(check(&doc, roomy).is_err());
    }

    #[test]
    fn root_fields_are_counted_through_fragments() {
        // 2 + 3 × 3 = 11 root fields; fields inside fields do not count.
        let text =
            "{ a b ...F ...F ... on Query { ...F } } fragment F on Query { c { d e f g } d e }";
        let doc = async_graphql::parser::parse_query(text).unwrap();
        let limits = |max_root_fields| DocumentLimits {
            max_root_fields,
            ..LIMITS
        };
        assert!(check(&doc, limits(11)).is_ok());
        let refusal = check(&doc, limits(10)).unwrap_err();
        assert!(
            refusal.message.contains("more than 10 root fields"),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn the_schema_stays_within_the_introspection_bounds() {
        use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
        let document = async_graphql::parser::parse_schema(crate::graphql::sdl()).unwrap();
        let bound = |name: &str| list_bound(name);
        // The schema's own types, plus introspection's 8 and the 5 built-in scalars.
        let mut types = 8 + 5;
        for definition in &document.definitions {
            let TypeSystemDefinition::Type(ty) = definition else {
                continue;
            };
            types += 1;
            match &ty.node.kind {
                TypeKind::Object(object) => {
                    assert!(
                        object.fields.len() <= bound("fields"),
                        "{}",
                        ty.node.name.node
                    );
                    assert!(object.implements.len() <= bound("interfaces"));
                    for field in &object.fields {
                        assert!(field.node.arguments.len() <= bound("args"));
                    }
                }
                TypeKind::InputObject(input) => {
                    assert!(
                        input.fields.len() <= bound("inputFields"),
                        "{}",
                        ty.node.name.node
                    );
                }
                TypeKind::Enum(values) => {
                    assert!(
                        values.values.len() <= bound("enumValues"),
                        "{}",
                        ty.node.name.node
                    );
                }
                TypeKind::Union(union) => {
                    assert!(union.members.len() <= bound("possibleTypes"));
                }
                _ => {}
            }
        }
        assert!(types <= bound("types"), "{types} types");
        // Introspection's own: `__Type` has 11 fields, `__DirectiveLocation` 19 values.
        assert!(11 <= bound("fields") && 19 <= bound("enumValues") && 19 <= bound("locations"));
    }
}
