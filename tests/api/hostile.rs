//! Hostile input against the real server: documents built to crash it,
//! stall it or make it read without end are refused before they run, or
//! stopped while they run, with a coded error; and the server keeps
//! answering normal queries afterwards.

use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use serde_json::{Value, json};
use union360::wechat::client::api;

use crate::helpers::{Backend, SimControl, TestApp, codes, spawn_app, spawn_app_with};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// POSTs `query` asking for `application/graphql-response+json`; the status and body.
async fn post(app: &TestApp, query: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .header(ACCEPT, GRAPHQL_RESPONSE)
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("the server answers");
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

/// GETs `query` asking for `application/graphql-response+json`; the status and body.
async fn get(app: &TestApp, query: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .get(format!("{}/graphql", app.address))
        .query(&[("query", query)])
        .header(ACCEPT, GRAPHQL_RESPONSE)
        .send()
        .await
        .expect("the server answers");
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

/// Asserts `body` is a request error with one error of `code` whose
/// one-line message contains `naming`.
fn assert_refused(status: StatusCode, body: &Value, code: &str, naming: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:#}");
    assert!(body.get("data").is_none(), "{body:#}");
    assert_eq!(codes(body), [code], "{body:#}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains(naming), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
}

/// The server still answers a normal query.
async fn still_answers(app: &TestApp) {
    let data = app
        .data(
            "{ people(first: 5) { nodes { unionid } } apps { appid } }",
            json!({}),
        )
        .await;
    assert!(data["people"]["nodes"].is_array(), "{data:#}");
}

/// Registers an app and gives `people` persons an account in it each.
async fn people_in_one_app(app: &TestApp, people: usize) -> String {
    let appid = "wx00000000000000a1".to_owned();
    app.register_app(&appid, "MINI_PROGRAM").await;
    let rows: Vec<Value> = (0..people)
        .map(|p| json!({ "appid": appid, "openid": format!("o-{p}"), "unionid": format!("u-{p}"), "nickname": format!("n{p}") }))
        .collect();
    app.upsert(json!(rows)).await;
    appid
}

/// A document whose argument nests `depth` lists: 2,000 deep is a 4 KB request that once overflowed the stack.
fn nested_argument(depth: usize) -> String {
    format!("{{a(b:{}{})}}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test]
async fn a_document_nested_thousands_deep_is_refused_by_post_and_get() {
    let app = spawn_app(Backend::Sqlite).await;
    let query = nested_argument(2_000);
    let (status, body) = post(&app, &query).await;
    assert_refused(status, &body, "LIMIT_EXCEEDED", "UNION360_MAX_NESTING");
    let (status, body) = get(&app, &query).await;
    assert_refused(status, &body, "LIMIT_EXCEEDED", "UNION360_MAX_NESTING");
    // Under application/json too, with its status rules.
    let body = app.graphql(&nested_argument(200_000), json!({})).await;
    assert_eq!(codes(&body), ["LIMIT_EXCEEDED"], "{body:#}");
    // At the limit, the parser and validation go through it unharmed.
    let at_limit = format!(
        "{{ people(first: {}1{}) {{ totalCount }} }}",
        "[".repeat(62),
        "]".repeat(62)
    );
    let (status, body) = post(&app, &at_limit).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:#}");
    let errors = codes(&body);
    assert!(!errors.is_empty(), "{body:#}");
    assert!(
        errors.iter().all(|c| c == "GRAPHQL_VALIDATION_FAILED"),
        "{body:#}"
    );
    // Brackets inside a string are text, not nesting.
    let (status, body) = post(
        &app,
        &format!(
            "{{ person(unionid: \"{}\") {{ unionid }} }}",
            "[".repeat(2_000)
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(codes(&body), ["BAD_USER_INPUT"], "{body:#}");
    still_answers(&app).await;
}

#[tokio::test]
async fn documents_too_large_or_with_too_many_tokens_are_refused() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.server.limits.max_document_bytes = 1_000;
        s.server.limits.max_tokens = 100;
    })
    .await;
    let (status, body) = post(
        &app,
        &format!("{{ apps {{ appid }} }} #{}", "x".repeat(1_000)),
    )
    .await;
    assert_refused(status, &body, "LIMIT_EXCEEDED", "1000 bytes");
    let (status, body) = post(&app, &format!("{{ {} }}", "a ".repeat(100))).await;
    assert_refused(status, &body, "LIMIT_EXCEEDED", "100 tokens");
    still_answers(&app).await;
}

/// Fragments `F0`…`F9`, each spreading the next ten times: a 905-byte document that once pinned a core for minutes.
fn fragment_bomb() -> String {
    let mut text = String::from("query { ...F0 }\n");
    for level in 0..10 {
        let spreads = format!("...F{} ", level + 1).repeat(10);
        text.push_str(&format!("fragment F{level} on Query {{ {spreads} }}\n"));
    }
    text.push_str("fragment F10 on Query { __typename }\n");
    text
}

#[tokio::test]
async fn fragments_that_multiply_are_refused_before_validation() {
    let app = spawn_app(Backend::Sqlite).await;
    let query = fragment_bomb();
    assert!(query.len() < 1_000, "the attack is a short document");
    // Expanded, this is ten billion fields: it would pin a core for minutes.
    let (status, body) = post(&app, &query).await;
    assert_refused(status, &body, "LIMIT_EXCEEDED", "UNION360_MAX_SELECTIONS");
    // A fragment that spreads itself twice doubles at every level.
    let (status, body) = post(&app, "{ ...A } fragment A on Query { ...A ...A }").await;
    assert_refused(
        status,
        &body,
        "GRAPHQL_VALIDATION_FAILED",
        "`A` spreads itself",
    );
    still_answers(&app).await;
}

#[tokio::test]
async fn directives_are_bounded() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.server.limits.max_directives = 6).await;
    let (status, body) = post(
        &app,
        "{ ...F ...F } fragment F on Query { apps @include(if: true) { appid @skip(if: false) } }",
    )
    .await;
    // 2 in the fragment, counted where it is defined and at each spread.
    assert_eq!(status, StatusCode::OK, "6 directives pass: {body:#}");
    let (status, body) = post(
        &app,
        "{ ...F ...F ...F } fragment F on Query { apps @include(if: true) { appid @skip(if: false) } }",
    )
    .await;
    assert_refused(status, &body, "LIMIT_EXCEEDED", "UNION360_MAX_DIRECTIVES");
}

/// `aliases` aliases of a page of 100 people with their accounts: 1,000 of them once starved the pool for everyone.
fn aliased_pages(aliases: usize) -> String {
    let page = "people(first:100){nodes{unionid accounts{openid nickname app{name}}}}";
    let fields: Vec<String> = (0..aliases).map(|i| format!("a{i}:{page}")).collect();
    format!("{{{}}}", fields.join(" "))
}

on_each_backend!(a_thousand_aliased_pages_are_refused_before_running);
async fn a_thousand_aliased_pages_are_refused_before_running(backend: Backend) {
    let app = spawn_app(backend).await;
    people_in_one_app(&app, 100).await;
    let statements = app.statements_from_now().await;
    let (status, body) = post(&app, &aliased_pages(1_000)).await;
    assert_refused(status, &body, "LIMIT_EXCEEDED", "UNION360_MAX_ROOT_FIELDS");
    // Cost counts page sizes: thirty pages of 100 are too many as well.
    let (status, body) = post(&app, &aliased_pages(30)).await;
    assert_refused(status, &body, "LIMIT_EXCEEDED", "UNION360_MAX_COMPLEXITY");
    assert_eq!(
        app.state.store().client_statements.get(),
        statements,
        "{backend:?}: refused before any SQL ran"
    );
    // 7,000 aliases (440 KB) do not get that far.
    let (status, body) = post(&app, &aliased_pages(7_000)).await;
    assert_refused(
        status,
        &body,
        "LIMIT_EXCEEDED",
        "UNION360_MAX_DOCUMENT_BYTES",
    );
    still_answers(&app).await;
}

on_each_backend!(a_page_of_100_people_with_accounts_and_apps_is_within_the_limits);
async fn a_page_of_100_people_with_accounts_and_apps_is_within_the_limits(backend: Backend) {
    let app = spawn_app(backend).await;
    people_in_one_app(&app, 100).await;
    let data = app
        .data(
            "{ people(first: 100) {
                totalCount pageInfo { hasNextPage endCursor }
                edges { cursor node {
                    unionid nickname avatarUrl sex language city province country oldestRefreshedAt createdAt updatedAt
                    accounts {
                        appid openid unionid unionidConflict following remark followedAt followScene qrScene qrSceneStr tagIds
                        nickname avatarUrl sex language city province country fieldSources { field source }
                        refreshedAt refreshable stale refreshError { code message at } createdAt updatedAt
                        app { appid kind name callbackConfigured freshnessTtlSeconds createdAt updatedAt }
                    }
                } }
            } }",
            json!({}),
        )
        .await;
    assert_eq!(data["people"]["edges"].as_array().unwrap().len(), 100);
}

on_each_backend!(a_person_reached_again_through_its_accounts_is_bounded);
async fn a_person_reached_again_through_its_accounts_is_bounded(backend: Backend) {
    // A list bomb: one UnionID with 200 openids in one app, read through
    // `accounts { person { accounts … } }` three levels down.
    let app = spawn_app_with(backend, |s| s.server.limits.max_rows = 1_000).await;
    let appid = "wx00000000000000b1";
    app.register_app(appid, "MINI_PROGRAM").await;
    let rows: Vec<Value> = (0..200)
        .map(|i| json!({ "appid": appid, "openid": format!("bomb-{i}"), "unionid": "uBOMB" }))
        .collect();
    app.upsert(json!(rows)).await;
    let query = r#"{person(unionid:"uBOMB",refresh:CACHE_ONLY){accounts{openid person{accounts{openid person{accounts{openid}}}}}}}"#;
    let (status, body) = post(&app, query).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    let text = body["data"].to_string();
    let returned = text.matches("\"openid\"").count();
    assert!(
        returned <= 1_000,
        "{backend:?}: {returned} accounts returned"
    );
    let errors = codes(&body);
    assert!(errors.len() <= 101, "{backend:?}: {} errors", errors.len());
    assert!(
        errors.iter().all(|c| c == "LIMIT_EXCEEDED"),
        "{backend:?}: {errors:?}"
    );
    still_answers(&app).await;
}

#[tokio::test]
async fn rows_past_the_limit_fail_their_field() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.server.limits.max_rows = 12).await;
    people_in_one_app(&app, 10).await;
    let (status, body) = post(
        &app,
        "{ people(first: 10) { nodes { unionid accounts { openid } } } }",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    // 10 people read, then 10 lists of one account: the third list passes
    // 12 and fails, which nulls the page (a person's accounts are non-null).
    let errors = body["errors"].as_array().unwrap();
    assert!(!errors.is_empty(), "{body:#}");
    assert!(
        codes(&body).iter().all(|c| c == "LIMIT_EXCEEDED"),
        "{body:#}"
    );
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("UNION360_MAX_ROWS")
    );
    assert!(!errors[0]["path"].as_array().unwrap().is_empty());
    // The limit is per request.
    app.data("{ people(first: 10) { nodes { unionid } } }", json!({}))
        .await;
}

#[tokio::test]
async fn sql_statements_past_the_limit_fail_the_fields_that_need_the_database() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.server.limits.max_statements = 1).await;
    let appid = people_in_one_app(&app, 1).await;
    // Mutations run their fields one after the other: the first runs its
    // statements whole, the second finds the limit reached.
    let set = |alias: &str, seconds: u32| {
        format!(
            "{alias}: setFreshnessTtl(appid: \"{appid}\", seconds: {seconds}) {{ freshnessTtlSeconds }}"
        )
    };
    let (status, body) = post(
        &app,
        &format!("mutation {{ {} {} }}", set("a", 600), set("b", 700)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(codes(&body), ["LIMIT_EXCEEDED"], "{body:#}");
    assert_eq!(body["errors"][0]["path"], json!(["b"]), "{body:#}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("UNION360_MAX_STATEMENTS"), "{message}");
    let data = app
        .data(
            "query($a: String!) { app(appid: $a) { freshnessTtlSeconds } }",
            json!({ "a": appid }),
        )
        .await;
    assert_eq!(
        data["app"]["freshnessTtlSeconds"], 600,
        "the first field ran whole"
    );
}

#[tokio::test]
async fn an_input_object_naming_a_field_twice_is_refused() {
    // GraphQL requires input field names to be unique.
    let app = spawn_app(Backend::Sqlite).await;
    for query in [
        r#"{ people(filter: {inApp: "wx00000000000000a1", inApp: "wx00000000000000a2"}) { nodes { unionid } } }"#,
        r#"query($f: PeopleFilter = {inApp: "wx00000000000000a1", inApp: "wx00000000000000a2"}) { people(filter: $f) { nodes { unionid } } }"#,
    ] {
        let (status, body) = post(&app, query).await;
        assert_refused(
            status,
            &body,
            "GRAPHQL_VALIDATION_FAILED",
            "`inApp` more than once",
        );
    }
    // And in variables, which JSON would otherwise let the last one win.
    let body = r#"{"query":"query($f: PeopleFilter) { people(filter: $f) { nodes { unionid } } }","variables":{"f":{"inApp":"wx00000000000000a1","inApp":"wx00000000000000a2"}}}"#;
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .header(ACCEPT, GRAPHQL_RESPONSE)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_refused(status, &body, "BAD_REQUEST", "names the key `inApp` twice");
    let (status, body) = get_with_variables(
        &app,
        "query($f: PeopleFilter) { people(filter: $f) { nodes { unionid } } }",
        r#"{"f":{"inApp":"wx00000000000000a1","inApp":"wx00000000000000a2"}}"#,
    )
    .await;
    assert_refused(status, &body, "BAD_REQUEST", "names the key `inApp` twice");
    still_answers(&app).await;
}

/// GETs `query` with raw JSON `variables`, asking for `application/graphql-response+json`.
async fn get_with_variables(app: &TestApp, query: &str, variables: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .get(format!("{}/graphql", app.address))
        .query(&[("query", query), ("variables", variables)])
        .header(ACCEPT, GRAPHQL_RESPONSE)
        .send()
        .await
        .expect("the server answers");
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

#[tokio::test]
async fn limits_async_graphql_measures_are_coded_too() {
    let app = spawn_app(Backend::Sqlite).await;
    // Depth: 17 levels of fields.
    let mut deep = String::from("unionid");
    for _ in 0..8 {
        deep = format!("accounts {{ person {{ {deep} }} }}");
    }
    let (status, body) = post(&app, &format!("{{ person(unionid: \"u\") {{ {deep} }} }}")).await;
    assert_refused(status, &body, "LIMIT_EXCEEDED", "UNION360_MAX_DEPTH");
    // Fields and fragments nested past async-graphql's recursion limit.
    let nested = format!(
        "{}__typename{}",
        "... on Query { ".repeat(40),
        " }".repeat(40)
    );
    let (status, body) = post(&app, &format!("{{ {nested} }}")).await;
    assert_refused(status, &body, "LIMIT_EXCEEDED", "recursion depth");
    // Parse and validation failures carry their codes.
    let (status, body) = post(&app, "{ apps { appid }").await;
    assert_refused(status, &body, "GRAPHQL_PARSE_FAILED", "syntax error");
    let (status, body) = post(&app, "{ nothingHere }").await;
    assert_refused(status, &body, "GRAPHQL_VALIDATION_FAILED", "nothingHere");
    still_answers(&app).await;
}

#[tokio::test]
async fn errors_past_the_limit_are_counted_in_one() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.server.limits.max_errors = 3).await;
    let fields: Vec<String> = (0..10)
        .map(|i| format!("a{i}: app(appid: \"not-an-appid\") {{ appid }}"))
        .collect();
    let (status, body) = post(&app, &format!("{{ {} }}", fields.join(" "))).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(
        codes(&body),
        [
            "BAD_USER_INPUT",
            "BAD_USER_INPUT",
            "BAD_USER_INPUT",
            "LIMIT_EXCEEDED"
        ]
    );
    let last = body["errors"][3]["message"].as_str().unwrap();
    assert!(last.starts_with("7 more errors"), "{last}");
}

#[tokio::test]
async fn a_request_past_its_deadline_is_stopped() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        // Short, but not so short that a loaded machine misses it on setup.
        s.server.limits.request_deadline_secs = 3;
    })
    .await;
    let appid = app.register_official_accounts().await.remove(0);
    let person = app.sim.person(0).await;
    let (_, openid, _) = person
        .accounts
        .iter()
        .find(|(a, _, _)| *a == appid)
        .cloned()
        .unwrap();
    app.upsert(json!([{ "appid": appid, "openid": openid }]))
        .await;
    // WeChat never answers: the refresh would wait out its timeouts and retries.
    app.sim.fault(api::BATCHGET, json!({ "hang": true })).await;
    app.sim.fault(api::USER_INFO, json!({ "hang": true })).await;
    let body = app
        .graphql(
            "mutation($keys: [AccountKey!]!) { refreshAccounts(keys: $keys) { fetched } }",
            json!({ "keys": [{ "appid": appid, "openid": openid }] }),
        )
        .await;
    assert_eq!(body["data"], Value::Null, "{body:#}");
    assert_eq!(codes(&body), ["LIMIT_EXCEEDED"], "{body:#}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("UNION360_REQUEST_DEADLINE_SECS"),
        "{message}"
    );
    still_answers(&app).await;
}

#[tokio::test]
async fn one_root_field_repeated_thousands_of_times_is_refused_before_it_runs() {
    let app = spawn_app(Backend::Sqlite).await;
    let before = app.statements_from_now().await;
    let query = format!("{{ {} }}", "apps { appid } ".repeat(4500));
    let (status, body) = post(&app, &query).await;
    assert_refused(status, &body, "LIMIT_EXCEEDED", "more than 100 root fields");
    // Through fragments too.
    let spreads = "...F ".repeat(60);
    let (status, body) = post(
        &app,
        &format!("{{ {spreads} }} fragment F on Query {{ apps {{ appid }} a: apps {{ name }} }}"),
    )
    .await;
    assert_refused(status, &body, "LIMIT_EXCEEDED", "root fields");
    assert!(
        app.state.store().client_statements.get() - before <= 2,
        "refused before any SQL (an API key table reload at most)"
    );
    still_answers(&app).await;
}

#[tokio::test]
async fn long_aliases_and_introspection_that_multiplies_are_refused() {
    let app = spawn_app(Backend::Sqlite).await;
    let alias = "a".repeat(90_000);
    let (status, body) = post(&app, &format!("{{ {alias}: apps {{ appid }} }}")).await;
    assert_refused(status, &body, "LIMIT_EXCEEDED", "longer than 128 bytes");
    // A type's fields lead to types with fields: every hop multiplies.
    let bomb = "{ __schema { types { fields { type { ofType { ofType { fields { type { ofType { ofType { fields { name } } } } } } } } } } } }";
    let (status, body) = post(&app, bomb).await;
    assert_refused(status, &body, "LIMIT_EXCEEDED", "introspection");
    let copies: String = (0..30)
        .map(|i| format!("t{i}: types {{ ...F }} "))
        .collect();
    let (status, body) = post(
        &app,
        &format!("{{ __schema {{ {copies} }} }} fragment F on __Type {{ fields {{ args {{ name description }} type {{ name }} name description }} }}"),
    )
    .await;
    assert_refused(status, &body, "LIMIT_EXCEEDED", "introspection");
    // The schema itself is still one query away.
    let (status, body) = post(&app, "{ __schema { types { name fields { name args { name } type { name ofType { name } } } } } }").await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert!(body["data"]["__schema"]["types"].as_array().unwrap().len() > 10);
    still_answers(&app).await;
}

#[tokio::test]
async fn a_response_over_its_size_limit_is_replaced_by_an_error() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.server.limits.max_response_bytes = 20_000;
    })
    .await;
    people_in_one_app(&app, 50).await;
    let page =
        "people(first: 50) { nodes { unionid nickname accounts { openid appid nickname } } }";
    let (status, body) = post(
        &app,
        &format!("{{ a: {page} b: {page} c: {page} d: {page} }}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert!(body["data"].is_null(), "{body:#}");
    assert_eq!(codes(&body), ["LIMIT_EXCEEDED"]);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("UNION360_MAX_RESPONSE_BYTES")
    );
    let (_, small) = post(&app, "{ people(first: 2) { nodes { unionid } } }").await;
    assert!(small.get("errors").is_none(), "{small:#}");
}
