//! Random and mutated documents and variables thrown at the real endpoint:
//! whatever arrives, the server answers with a JSON body, never a 5xx, and
//! every error it reports carries a code.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::header::ACCEPT;
use serde_json::{Map, Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};

/// Documents the mutations start from.
const VALID: &[&str] = &[
    "{ people(first: 3) { nodes { unionid accounts { openid app { name } } } } }",
    "query($u: String!, $r: RefreshPolicy = CACHE_ONLY) { person(unionid: $u, refresh: $r) { unionid nickname } }",
    "{ accounts(appid: \"wx00000000000000a1\", first: 2, filter: {following: true}) { edges { cursor node { openid } } pageInfo { hasNextPage } } }",
    "query Q { ...F } fragment F on Query { apps { appid kind } a: apps { name } }",
    "{ __schema { types { name fields { name type { name ofType { name } } } } } }",
    "mutation($rows: [AccountInput!]!) { upsertAccounts(input: $rows) { created results { index outcome } } }",
    "{ people(filter: {inApp: \"wx00000000000000a1\"}) @include(if: true) { totalCount } }",
    "query { ... on Query { app(appid: \"\"\"wx[{(\"\"\") { name } } }",
];

/// Pieces of GraphQL syntax, including the ones that open and close things.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            "(",
            ")",
            ":",
            "=",
            "!",
            "$",
            "@",
            "|",
            "&",
            "...",
            ",",
            "\"",
            "\"\"\"",
            "\\",
            "#",
            "\n",
            " ",
            "query",
            "mutation",
            "subscription",
            "fragment",
            "on",
            "people",
            "person",
            "accounts",
            "nodes",
            "apps",
            "unionid",
            "first",
            "after",
            "filter",
            "inApp",
            "$v",
            "@include(if: $v)",
            "@skip(if: true)",
            "__typename",
            "true",
            "null",
            "CACHE_ONLY",
            "{a: 1, a: 2}",
            "\u{0}",
            "é",
            "\u{feff}",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z_][a-zA-Z0-9_]{0,8}",
        "-?[0-9]{1,6}(\\.[0-9]{1,3})?(e[+-]?[0-9]{1,3})?",
        "\"[^\"\\\\\n]{0,12}\"",
        any::<char>().prop_map(String::from),
    ]
}

/// A document made of random tokens.
fn random_document() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 0..80).prop_map(|tokens| tokens.join(" "))
}

/// An edit of a document: delete a span, insert a token, or repeat a span.
#[derive(Debug, Clone)]
enum Edit {
    Delete(Index, usize),
    Insert(Index, String),
    Repeat(Index, usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), 1..20usize).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<Index>(), token()).prop_map(|(at, t)| Edit::Insert(at, t)),
        (any::<Index>(), 1..30usize, 2..50usize)
            .prop_map(|(at, n, times)| Edit::Repeat(at, n, times)),
    ]
}

/// A valid document with a few edits.
fn mutated_document() -> impl Strategy<Value = String> {
    (
        prop::sample::select(VALID.to_vec()),
        prop::collection::vec(edit(), 1..6),
    )
        .prop_map(|(doc, edits)| {
            let mut chars: Vec<char> = doc.chars().collect();
            for edit in edits {
                let len = chars.len().max(1);
                match edit {
                    Edit::Delete(at, n) => {
                        let start = at.index(len).min(chars.len());
                        let end = (start + n).min(chars.len());
                        chars.drain(start..end);
                    }
                    Edit::Insert(at, token) => {
                        let start = at.index(len).min(chars.len());
                        chars.splice(start..start, token.chars());
                    }
                    Edit::Repeat(at, n, times) => {
                        let start = at.index(len).min(chars.len());
                        let end = (start + n).min(chars.len());
                        let span: Vec<char> = chars[start..end].to_vec();
                        let repeated: Vec<char> =
                            std::iter::repeat_n(span, times).flatten().collect();
                        chars.splice(end..end, repeated);
                    }
                }
            }
            chars.into_iter().collect()
        })
}

/// Random JSON variables, nested a few levels.
fn variables() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-zA-Z0-9_\\[\\]{}\u{0}é]{0,12}".prop_map(Value::from),
        Just(json!("wx00000000000000a1")),
        Just(json!("CACHE_ONLY")),
    ];
    let value = leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z$]{1,8}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    });
    prop::collection::btree_map(
        prop::sample::select(vec!["u", "r", "v", "rows", "first", "x"]),
        value,
        0..4,
    )
    .prop_map(|m| {
        Value::Object(
            m.into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<Map<_, _>>(),
        )
    })
}

/// Sends one request; fails the case on a 5xx, a body that is not JSON, or
/// an error without a code.
async fn check(
    app: &TestApp,
    query: String,
    variables: Value,
    strict: bool,
) -> Result<(), TestCaseError> {
    let accept = if strict {
        "application/graphql-response+json"
    } else {
        "application/json"
    };
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .header(ACCEPT, accept)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
    let status = response.status();
    prop_assert!(!status.is_server_error(), "{status} for {query:?}");
    let text = response.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text)
        .map_err(|_| TestCaseError::fail(format!("not JSON ({status}): {text:?} for {query:?}")))?;
    for error in body["errors"].as_array().into_iter().flatten() {
        prop_assert!(
            error["extensions"]["code"].is_string(),
            "an error without a code: {error} for {query:?}"
        );
    }
    Ok(())
}

#[test]
fn random_and_mutated_documents_never_get_a_server_error() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(async {
        let app = spawn_app(Backend::Sqlite).await;
        app.register_app("wx00000000000000a1", "MINI_PROGRAM").await;
        app.upsert(json!([
            { "appid": "wx00000000000000a1", "openid": "o-1", "unionid": "u-1", "nickname": "n" }
        ]))
        .await;
        app
    });
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    let input = (
        prop_oneof![random_document(), mutated_document()],
        variables(),
        any::<bool>(),
    );
    runner
        .run(&input, |(query, variables, strict)| {
            runtime.block_on(check(&app, query, variables, strict))
        })
        .unwrap();
    // And it still answers.
    runtime.block_on(async {
        app.data("{ apps { appid } }", json!({})).await;
    });
}
