//! GraphQL over HTTP: what the specification asks of `/graphql`.

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};

const GQL: &str = "application/graphql-response+json";

async fn post(app: &TestApp, accept: Option<&str>, body: &str) -> (u16, String, Value) {
    let mut request = app
        .client
        .post(format!("{}/graphql", app.address))
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_owned());
    if let Some(accept) = accept {
        request = request.header(ACCEPT, accept);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, content_type, body)
}

#[tokio::test]
async fn the_response_type_follows_accept() {
    let app = spawn_app(Backend::Sqlite).await;
    let query = r#"{"query":"{ __typename }"}"#;
    let (status, ct, body) = post(&app, Some(GQL), query).await;
    assert_eq!((status, ct.starts_with(GQL)), (200, true));
    assert_eq!(body["data"]["__typename"], "Query");
    for accept in [Some("application/json"), Some("*/*"), None] {
        let (status, ct, _) = post(&app, accept, query).await;
        assert_eq!(status, 200);
        assert!(ct.starts_with("application/json"), "{accept:?} gave {ct}");
    }
    let (status, _, _) = post(&app, Some("image/png"), query).await;
    assert_eq!(status, 406);
}

#[tokio::test]
async fn request_errors_are_400_without_data_for_graphql_response_json() {
    let app = spawn_app(Backend::Sqlite).await;
    // A body that is not JSON is a 400 for everyone.
    for accept in [GQL, "application/json"] {
        let (status, _, response) = post(&app, Some(accept), r#"{ "not json"#).await;
        assert_eq!(status, 400);
        assert!(response.get("data").is_none());
    }
    for body in [
        r#"{"qeury":"{ __typename }"}"#,
        r#"{"query":0}"#,
        r#"{"query":"{ __typename }","variables":"x"}"#,
        r#"{"query":"{"}"#,
        r#"{"query":"{ noSuchField }"}"#,
    ] {
        let (status, _, response) = post(&app, Some(GQL), body).await;
        assert_eq!(status, 400, "{body}");
        assert!(response.get("data").is_none(), "{body}: {response}");
        assert!(response["errors"].as_array().is_some_and(|e| !e.is_empty()));
        // Legacy clients asking for application/json get 200 with errors.
        let (status, _, response) = post(&app, Some("application/json"), body).await;
        assert_eq!(status, 200, "{body}");
        assert!(response["errors"].as_array().is_some_and(|e| !e.is_empty()));
    }
}

#[tokio::test]
async fn post_bodies_must_be_json() {
    let app = spawn_app(Backend::Sqlite).await;
    let url = format!("{}/graphql", app.address);
    let plain = app
        .client
        .post(&url)
        .header(CONTENT_TYPE, "text/plain")
        .body("{ __typename }")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 415);
    let none = app.client.post(&url).send().await.unwrap();
    assert_eq!(none.status(), 415);
}

#[tokio::test]
async fn get_runs_queries_with_operation_name_and_variables_but_never_mutations() {
    let app = spawn_app(Backend::Sqlite).await;
    let url = format!("{}/graphql", app.address);
    let query = "query A { __typename } query B($name: String!) { __type(name: $name) { name } }";
    let response: Value = app
        .client
        .get(&url)
        .query(&[
            ("query", query),
            ("operationName", "B"),
            ("variables", r#"{"name":"Person"}"#),
        ])
        .header(ACCEPT, GQL)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(response["data"]["__type"]["name"], "Person");

    let mutation = app
        .client
        .get(&url)
        .query(&[("query", "mutation { __typename }")])
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(mutation.status(), 405);
    assert_eq!(mutation.headers()["allow"], "POST");
}

#[tokio::test]
async fn browsers_get_the_playground_on_graphql_and_graphiql() {
    let app = spawn_app(Backend::Sqlite).await;
    for path in ["/graphql", "/graphiql"] {
        let response = app
            .client
            .get(format!("{}{path}", app.address))
            .header(ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let page = response.text().await.unwrap();
        assert!(page.contains("GraphiQL"), "{path}");
        assert!(
            !page.contains("https://"),
            "{path} loads something from outside"
        );
    }
}

#[tokio::test]
async fn errors_carry_a_code() {
    let app = spawn_app(Backend::Sqlite).await;
    let missing = app
        .graphql(
            r#"{ accounts(appid: "wx0123456789abcdef") { totalCount } }"#,
            json!({}),
        )
        .await;
    assert_eq!(missing["errors"][0]["extensions"]["code"], "NOT_FOUND");
    let too_many = app
        .graphql("{ people(first: 1000) { totalCount } }", json!({}))
        .await;
    assert_eq!(
        too_many["errors"][0]["extensions"]["code"],
        "BAD_USER_INPUT"
    );
    let bad_id = app
        .graphql(r#"{ person(unionid: " padded") { unionid } }"#, json!({}))
        .await;
    assert_eq!(bad_id["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert!(
        bad_id["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("white space")
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let app = spawn_app(Backend::Sqlite).await;
    let huge = format!(
        r#"{{"query":"{{ __typename }}","extensions":{{"pad":"{}"}}}}"#,
        "x".repeat(3 << 20)
    );
    let (status, _, _) = post(&app, None, &huge).await;
    assert_eq!(status, 413);
    // A larger configured limit is honoured (beyond axum's built-in 2 MiB).
    let roomy =
        crate::helpers::spawn_app_with(Backend::Sqlite, |s| s.server.body_limit = 8 << 20).await;
    let (status, _, body) = post(&roomy, None, &huge).await;
    assert_eq!(status, 200, "{body}");
}

/// "Handling Execution Errors": a failed nullable field is null with its
/// error, its siblings kept; a failed non-null root field makes `data` null.
#[tokio::test]
async fn a_failed_field_is_null_where_the_specification_says() {
    let app = spawn_app(Backend::Sqlite).await;
    let unknown = r#"account(appid: \"wxnotreg00000001\", openid: \"x\") { openid }"#;
    let body = format!(r#"{{"query":"{{ apps {{ appid }} {unknown} }}"}}"#);
    let (status, _, body) = post(&app, Some(GQL), &body).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"],
        json!({ "apps": [], "account": null }),
        "{body}"
    );
    assert_eq!(body["errors"][0]["path"], json!(["account"]));
    assert_eq!(body["errors"][0]["extensions"]["code"], "NOT_FOUND");
    let (_, _, body) = post(
        &app,
        Some(GQL),
        &format!(r#"{{"query":"{{ {unknown} }}"}}"#),
    )
    .await;
    assert_eq!(body["data"], json!({ "account": null }), "{body}");
    // `audience` is `Audience!`: nothing above it may be null but `data`.
    let audience =
        r#"{"query":"{ apps { appid } audience(appids: [\"wxnotreg00000001\"]) { day } }"}"#;
    let (status, _, body) = post(&app, Some(GQL), audience).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"], Value::Null, "{body}");
    assert_eq!(body["errors"][0]["path"], json!(["audience"]));
}

/// The answer's keys come in the order the query asked for them, whichever
/// field finished first (the text is read, not a map that sorts its keys).
#[tokio::test]
async fn response_keys_are_in_query_order() {
    let app = spawn_app(Backend::Sqlite).await;
    let appid = "wx00000000000000a1";
    app.register_app(appid, "MINI_PROGRAM").await;
    let rows: Vec<Value> = (0..20)
        .map(|i| json!({ "appid": appid, "openid": format!("o-{i}"), "unionid": format!("u-{i}"), "nickname": format!("n{i}") }))
        .collect();
    app.upsert(json!(rows)).await;
    let query = "query Q($skip: Boolean!) { z: apps { name appid } ...F y: __typename
        p: people(first: 20) { nodes { unionid accounts { nickname app { appid } openid } } totalCount }
        s: apps @skip(if: $skip) { appid } a: apps { appid } }
        fragment F on Query { m: __typename z: apps { kind } }";
    let expected_root = ["z", "m", "y", "p", "a"];
    for _ in 0..5 {
        let text = app
            .client
            .post(format!("{}/graphql", app.address))
            .json(&json!({ "query": query, "variables": { "skip": true } }))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let keys: Vec<usize> = expected_root
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).expect(k))
            .collect();
        assert!(keys.is_sorted(), "root keys out of order: {text}");
        assert!(!text.contains("\"s\":"), "{text}");
        assert!(text.contains(r#""z":[{"name":"wx00000000000000a1","appid":"wx00000000000000a1","kind":"MINI_PROGRAM"}]"#), "{text}");
        let nodes = &text[text.find("\"nodes\"").unwrap()..];
        assert_eq!(nodes.matches(r#"{"nickname":"#).count(), 20, "{text}");
        assert_eq!(
            nodes
                .matches(r#""app":{"appid":"wx00000000000000a1"},"openid":"#)
                .count(),
            20,
            "{text}"
        );
        assert!(text.contains(r#"]}],"totalCount":20}"#), "{text}");
    }
}

/// A required variable missing or null is a request error: nothing runs,
/// 400 under `application/graphql-response+json`, `BAD_USER_INPUT`.
#[tokio::test]
async fn required_variables_missing_or_null_are_request_errors() {
    let app = spawn_app(Backend::Sqlite).await;
    let query = r#"query($a: String!, $n: Int!) { account(appid: $a, openid: \"x\") { openid } people(first: $n) { totalCount } }"#;
    for (variables, expected) in [
        (
            "{}",
            "Variable \"$a\" of required type \"String!\" was not provided.",
        ),
        (
            r#"{"a":"wx0000000000000001","n":null}"#,
            "Variable \"$n\" of non-null type \"Int!\" must not be null.",
        ),
    ] {
        let body = format!(r#"{{"query":"{query}","variables":{variables}}}"#);
        let (status, _, response) = post(&app, Some(GQL), &body).await;
        assert_eq!(status, 400, "{response}");
        assert!(response.get("data").is_none(), "{response}");
        assert_eq!(response["errors"][0]["message"], expected, "{response}");
        assert_eq!(
            response["errors"][0]["extensions"]["code"],
            "BAD_USER_INPUT"
        );
        assert!(response["errors"][0]["locations"][0]["line"].is_number());
        let (status, _, response) = post(&app, Some("application/json"), &body).await;
        assert_eq!(status, 200);
        assert!(
            response.get("data").is_none_or(Value::is_null),
            "{response}"
        );
        assert_eq!(
            response["errors"][0]["extensions"]["code"],
            "BAD_USER_INPUT"
        );
    }
    // Given, they run.
    let body = format!(r#"{{"query":"{query}","variables":{{"a":"wx0000000000000001","n":1}}}}"#);
    let (status, _, response) = post(&app, Some(GQL), &body).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["data"]["people"]["totalCount"], 0, "{response}");
}

/// A variable whose value does not fit its type (a string for an `Int`, an
/// `Int` out of range, a wrong type deep in an input object or a list) is
/// the caller's input: `BAD_USER_INPUT`, a 400 before anything runs. The
/// same fault written into the document is a validation failure.
#[tokio::test]
async fn wrongly_typed_variables_are_bad_user_input() {
    let app = spawn_app(Backend::Sqlite).await;
    let cases = [
        (
            "query($n: Int) { people(first: $n) { totalCount } }",
            r#"{"n":"ten"}"#,
        ),
        (
            "query($n: Int) { people(first: $n) { totalCount } }",
            r#"{"n":3000000000}"#,
        ),
        (
            "query($f: PeopleFilter) { people(filter: $f) { totalCount } }",
            r#"{"f":{"followsApp":7}}"#,
        ),
        (
            "query($a: String) { people(filter: { followsApp: $a }) { totalCount } }",
            r#"{"a":["x"]}"#,
        ),
        (
            "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
            r#"{"ids":[true]}"#,
        ),
    ];
    for (query, variables) in cases {
        let body = json!({ "query": query, "variables": serde_json::from_str::<Value>(variables).unwrap() });
        let (status, _, response) = post(&app, Some(GQL), &body.to_string()).await;
        assert_eq!(status, 400, "{query} {variables}: {response}");
        assert!(response.get("data").is_none(), "{response}");
        assert_eq!(
            response["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{query} {variables}: {response}"
        );
    }
    // Written into the document, the same faults are the document's.
    for query in [
        r#"{ people(first: "ten") { totalCount } }"#,
        "{ people(first: 3000000000) { totalCount } }",
        "{ people(filter: { followsApp: 7 }) { totalCount } }",
    ] {
        let body = json!({ "query": query });
        let (status, _, response) = post(&app, Some(GQL), &body.to_string()).await;
        assert_eq!(status, 400, "{query}: {response}");
        assert_eq!(
            response["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
            "{query}: {response}"
        );
    }
}

/// Automatic persisted queries as Apollo's persisted-queries link sends
/// them: the hash alone (GET), PERSISTED_QUERY_NOT_FOUND, then the
/// document with its hash (POST), then the hash alone again.
#[tokio::test]
async fn persisted_queries_are_answered_by_their_hash() {
    use sha2::Digest;
    let app = spawn_app(Backend::Sqlite).await;
    let query = "query Apps($n: Int) { people(first: $n) { totalCount } apps { appid } }";
    let hash = hex::encode(sha2::Sha256::digest(query.as_bytes()));
    let extensions = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    let get = |accept: &'static str| {
        let request = app
            .client
            .get(format!("{}/graphql", app.address))
            .query(&[
                ("operationName", "Apps".to_owned()),
                ("variables", json!({ "n": 1 }).to_string()),
                ("extensions", extensions.to_string()),
            ])
            .header(ACCEPT, accept);
        async move {
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    for accept in [GQL, "application/json"] {
        let (status, body) = get(accept).await;
        assert_eq!(status, 200, "{accept}: {body}");
        assert_eq!(body["errors"][0]["message"], "PersistedQueryNotFound");
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            "PERSISTED_QUERY_NOT_FOUND"
        );
    }
    // A document sent under another's hash is refused and not kept.
    let wrong = json!({ "query": "{ apps { name } }", "extensions": extensions });
    let (status, _, body) = post(&app, Some(GQL), &wrong.to_string()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["errors"][0]["message"],
        "provided sha does not match query"
    );
    let (_, body) = get(GQL).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_FOUND"
    );
    // A document that does not validate is not kept either.
    let invalid = "{ noSuchField }";
    let invalid_hash = hex::encode(sha2::Sha256::digest(invalid.as_bytes()));
    let invalid_ext = json!({ "persistedQuery": { "version": 1, "sha256Hash": invalid_hash } });
    let sent = json!({ "query": invalid, "extensions": invalid_ext });
    let (status, _, _) = post(&app, Some(GQL), &sent.to_string()).await;
    assert_eq!(status, 400);
    let (_, _, body) = post(
        &app,
        Some(GQL),
        &json!({ "extensions": invalid_ext }).to_string(),
    )
    .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND",
        "{body}"
    );
    // The document with its hash runs, and is kept.
    let full = json!({ "query": query, "variables": { "n": 1 }, "extensions": extensions });
    let (status, _, body) = post(&app, Some(GQL), &full.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["people"]["totalCount"], 0, "{body}");
    let (status, body) = get(GQL).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["people"]["totalCount"], 0, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    // A version union360 does not speak is a request error.
    let v2 = json!({ "extensions": { "persistedQuery": { "version": 2, "sha256Hash": hash } } });
    let (status, _, body) = post(&app, Some(GQL), &v2.to_string()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BAD_REQUEST",
        "{body}"
    );
}
