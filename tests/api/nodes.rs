//! Global object identification: `id` on every cacheable object, and
//! `node` / `nodes` fetching objects back by it, on both databases.

use serde_json::{Value, json};
use union360::domain::{AppId, UnionId};
use union360::graphql::node::NodeId;
use union360::keys::Scope;

use crate::helpers::{Backend, TestApp, client_with_key, codes, create_key, spawn_app};

const OA: &str = "wx0000000000000001";
const MP: &str = "wx0000000000000002";

async fn with_one_person(backend: Backend) -> TestApp {
    let app = spawn_app(backend).await;
    app.register_app(OA, "OFFICIAL_ACCOUNT").await;
    app.register_app(MP, "MINI_PROGRAM").await;
    app.upsert(json!([
        { "appid": OA, "openid": "o-oa-1", "unionid": "u-1", "nickname": "Ann", "following": true },
        { "appid": MP, "openid": "o-mp-1", "unionid": "u-1" },
        { "appid": OA, "openid": "o-oa-2", "nickname": "Bo" },
    ]))
    .await;
    app
}

/// The ids of the person `u-1`, its accounts and their apps.
async fn ids(app: &TestApp) -> (String, Vec<String>, Vec<String>) {
    let data = app
        .data(
            r#"{ person(unionid: "u-1") { id accounts { id app { id } } } }"#,
            json!({}),
        )
        .await;
    let person = &data["person"];
    let accounts = person["accounts"].as_array().unwrap();
    (
        person["id"].as_str().unwrap().to_owned(),
        accounts
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect(),
        accounts
            .iter()
            .map(|a| a["app"]["id"].as_str().unwrap().to_owned())
            .collect(),
    )
}

const NODE: &str = "query($id: ID!) { node(id: $id) { __typename id
    ... on Person { unionid }
    ... on Account { openid nickname }
    ... on App { appid } } }";

on_each_backend!(every_id_fetches_its_object_back);
async fn every_id_fetches_its_object_back(backend: Backend) {
    let app = with_one_person(backend).await;
    let (person, accounts, apps) = ids(&app).await;
    // Distinct, and opaque: no natural key shows through.
    let mut all = vec![person.clone()];
    all.extend(accounts.iter().cloned());
    all.extend(apps.iter().cloned());
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "{all:?}");
    for id in &all {
        assert!(
            !id.contains("u-1") && !id.contains("wx") && !id.contains("o-"),
            "{id}"
        );
    }

    let node = |id: String| {
        let app = &app;
        async move { app.data(NODE, json!({ "id": id })).await["node"].clone() }
    };
    assert_eq!(
        node(person.clone()).await,
        json!({ "__typename": "Person", "id": person, "unionid": "u-1" })
    );
    assert_eq!(
        node(accounts[0].clone()).await,
        json!({ "__typename": "Account", "id": accounts[0], "openid": "o-oa-1", "nickname": "Ann" })
    );
    assert_eq!(
        node(apps[1].clone()).await,
        json!({ "__typename": "App", "id": apps[1], "appid": MP })
    );

    // Ids are stable: the same on another instance of the same database.
    let other = app.another_instance().await;
    assert_eq!(ids(&other).await, (person, accounts, apps));
}

on_each_backend!(nodes_answers_in_the_order_asked_with_nulls_for_the_unknown);
async fn nodes_answers_in_the_order_asked_with_nulls_for_the_unknown(backend: Backend) {
    let app = with_one_person(backend).await;
    let (person, accounts, apps) = ids(&app).await;
    let unlinked = app
        .data(
            r#"{ account(appid: "wx0000000000000001", openid: "o-oa-2") { id } }"#,
            json!({}),
        )
        .await["account"]["id"]
        .clone();
    // Well-formed ids of things never stored: a person, an account, an app.
    let stranger = NodeId::Person(UnionId::parse("u-404").unwrap()).encode().0;
    let asked = json!([
        accounts[1],
        stranger,
        person,
        unlinked,
        apps[0],
        accounts[1],
        NodeId::App(AppId::parse("wx00000000000000ff").unwrap())
            .encode()
            .0,
    ]);
    let query = "query($ids: [ID!]!) { nodes(ids: $ids, refresh: CACHE_ONLY) { id
        ... on Account { openid person { unionid } }
        ... on Person { unionid accounts { openid } } } }";
    let statements = app.statements_from_now().await;
    let data = app.data(query, json!({ "ids": asked })).await;
    let spent = app.statements_from_now().await - statements;
    assert_eq!(
        data["nodes"],
        json!([
            { "id": accounts[1], "openid": "o-mp-1", "person": { "unionid": "u-1" } },
            null,
            { "id": person, "unionid": "u-1", "accounts": [{ "openid": "o-oa-1" }, { "openid": "o-mp-1" }] },
            { "id": unlinked, "openid": "o-oa-2", "person": null },
            { "id": apps[0] },
            { "id": accounts[1], "openid": "o-mp-1", "person": { "unionid": "u-1" } },
            null,
        ])
    );
    // Batched: persons in one statement, accounts in another, their
    // relations loaded together; twice the ids cost no more statements.
    let twice: Vec<Value> = asked
        .as_array()
        .unwrap()
        .iter()
        .cycle()
        .take(14)
        .cloned()
        .collect();
    let statements = app.statements_from_now().await;
    let again = app.data(query, json!({ "ids": twice })).await;
    // Every id answered in its place, a repeated one as often as asked.
    let expected: Vec<Value> = data["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .cycle()
        .take(14)
        .cloned()
        .collect();
    assert_eq!(again["nodes"], json!(expected));
    assert_eq!(app.statements_from_now().await - statements, spent);
    assert!(spent <= 6, "{spent} statements for 7 ids");
}

#[tokio::test]
async fn ids_that_are_not_ours_are_bad_user_input() {
    let app = with_one_person(Backend::Sqlite).await;
    for id in ["", "u-1", "not base64!", "VGhpbmc6eA", &"A".repeat(5000)] {
        let body = app.graphql(NODE, json!({ "id": id })).await;
        assert_eq!(codes(&body), ["BAD_USER_INPUT"], "{id:.20}: {body}");
        assert_eq!(body["data"], json!({ "node": null }), "{body}");
    }
    // One bad id among good ones fails the whole field, naming it.
    let (person, _, _) = ids(&app).await;
    let body = app
        .graphql(
            "query($ids: [ID!]!) { nodes(ids: $ids) { id } apps { appid } }",
            json!({ "ids": [person, "nope"] }),
        )
        .await;
    assert_eq!(codes(&body), ["BAD_USER_INPUT"], "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("ids[1]"),
        "{body}"
    );
    // `nodes` is non-null: the error reaches the root, as the specification says.
    assert_eq!(body["data"], Value::Null, "{body}");

    // More ids than a page's worth are refused before anything is read.
    let many: Vec<String> = (0..101).map(|_| person.clone()).collect();
    let body = app
        .graphql(
            "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
            json!({ "ids": many }),
        )
        .await;
    let code = codes(&body);
    assert!(
        code == ["BAD_USER_INPUT"] || code == ["LIMIT_EXCEEDED"],
        "{body}"
    );
}

#[tokio::test]
async fn a_node_s_fields_keep_their_scopes() {
    let app = with_one_person(Backend::Sqlite).await;
    let (_, accounts, _) = ids(&app).await;
    let key = create_key(&app.state, "reader", [Scope::Read].into_iter().collect()).await;
    let body: Value = client_with_key(&key)
        .post(format!("{}/graphql", app.address))
        .json(&json!({ "query": NODE, "variables": { "id": accounts[0] } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["data"]["node"],
        json!({ "__typename": "Account", "id": accounts[0], "openid": "o-oa-1", "nickname": null }),
        "{body}"
    );
    assert_eq!(codes(&body), ["FORBIDDEN"], "{body}");
    assert_eq!(body["errors"][0]["path"], json!(["node", "nickname"]));
}

/// Fragments on different types may give one response key to different
/// fields; each object answers in the order of the fragments that apply to
/// its own type (the text is read, not a map that sorts its keys).
#[tokio::test]
async fn fragments_on_the_interface_and_the_types_answer_in_query_order() {
    let app = with_one_person(Backend::Sqlite).await;
    let (person, accounts, _) = ids(&app).await;
    let query = "query($ids: [ID!]!, $person: ID!) { nodes(ids: $ids) {
            ... on Account { b: openid a: nickname }
            ...N
            ... on Person { a: nickname b: unionid }
        } one: node(id: $person) { ... on Account { z: openid } ... on Person { y: unionid } ...N } }
        fragment N on Node { id t: __typename }";
    for _ in 0..3 {
        let text = app
            .client
            .post(format!("{}/graphql", app.address))
            .json(&json!({ "query": query, "variables": { "ids": [accounts[0], person], "person": person } }))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let account = format!(
            r#"{{"b":"o-oa-1","a":"Ann","id":"{}","t":"Account"}}"#,
            accounts[0]
        );
        let person_node = format!(r#"{{"id":"{person}","t":"Person","a":"Ann","b":"u-1"}}"#);
        let one = format!(r#""one":{{"y":"u-1","id":"{person}","t":"Person"}}"#);
        assert!(
            text.contains(&format!(r#""nodes":[{account},{person_node}]"#)),
            "{text}"
        );
        assert!(text.contains(&one), "{text}");
    }
}
