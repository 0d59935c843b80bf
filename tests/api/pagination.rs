//! Keyset pagination and filters of `people` and `accounts`.

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};

const OA: &str = "wx00000000000000a1";
const MP: &str = "wx00000000000000b2";

async fn page(app: &TestApp, first: i64, after: Value) -> (Vec<String>, Value) {
    let data = app
        .data(
            "query($first: Int, $after: String) { people(first: $first, after: $after) {
                totalCount edges { cursor node { unionid } } pageInfo { hasNextPage hasPreviousPage endCursor } } }",
            json!({ "first": first, "after": after }),
        )
        .await;
    let ids = data["people"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["unionid"].as_str().unwrap().to_owned())
        .collect();
    (ids, data["people"].clone())
}

on_each_backend!(pages_are_stable_under_inserts);
async fn pages_are_stable_under_inserts(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_app(OA, "OFFICIAL_ACCOUNT").await;
    let rows: Vec<Value> = (0..25)
        .map(
            |i| json!({ "appid": OA, "openid": format!("o{i:02}"), "unionid": format!("u{i:02}") }),
        )
        .collect();
    app.upsert(json!(rows)).await;

    let (first, info) = page(&app, 10, Value::Null).await;
    assert_eq!(first.len(), 10);
    assert_eq!(info["totalCount"], 25);
    assert_eq!(info["pageInfo"]["hasNextPage"], true);
    assert_eq!(info["pageInfo"]["hasPreviousPage"], false);
    // Someone new arrives between two pages: the next page is unaffected.
    app.upsert(json!([{ "appid": OA, "openid": "late", "unionid": "u-late" }]))
        .await;
    let (second, info) = page(&app, 10, info["pageInfo"]["endCursor"].clone()).await;
    assert_eq!(
        second.first().map(String::as_str),
        Some("u10"),
        "{backend:?}"
    );
    let (third, info) = page(&app, 10, info["pageInfo"]["endCursor"].clone()).await;
    assert_eq!(third.len(), 6);
    assert_eq!(third.last().map(String::as_str), Some("u-late"));
    assert_eq!(info["pageInfo"]["hasNextPage"], false);
    let mut all = [first, second, third].concat();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 26, "no person seen twice or skipped");
}

#[tokio::test]
async fn cursors_of_another_list_are_refused() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    app.register_app(OA, "OFFICIAL_ACCOUNT").await;
    app.upsert(json!([{ "appid": OA, "openid": "o", "unionid": "u" }]))
        .await;
    let accounts = app
        .data(
            &format!(r#"{{ accounts(appid: "{OA}") {{ pageInfo {{ endCursor }} }} }}"#),
            json!({}),
        )
        .await;
    let cursor = accounts["accounts"]["pageInfo"]["endCursor"].clone();
    let body = app
        .graphql(
            "query($c: String) { people(after: $c) { totalCount } }",
            json!({ "c": cursor }),
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
}

on_each_backend!(forged_or_tampered_cursors_are_refused);
async fn forged_or_tampered_cursors_are_refused(backend: Backend) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let app = spawn_app(backend).await;
    app.register_app(OA, "OFFICIAL_ACCOUNT").await;
    let rows: Vec<Value> = (0..3)
        .map(|i| json!({ "appid": OA, "openid": format!("o{i}"), "unionid": format!("u{i}") }))
        .collect();
    app.upsert(json!(rows)).await;
    let (_, info) = page(&app, 1, Value::Null).await;
    let cursor = info["pageInfo"]["endCursor"].as_str().unwrap().to_owned();
    let (next, _) = page(&app, 1, json!(cursor)).await;
    assert_eq!(next, ["u1"], "{backend:?}: the cursor as given pages on");

    let bytes = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
    let mut skip_ahead = bytes.clone();
    skip_ahead[7] ^= 1; // another row id, same tag
    let mut bad_tag = bytes.clone();
    *bad_tag.last_mut().unwrap() ^= 1;
    let forged = [
        URL_SAFE_NO_PAD.encode(skip_ahead),
        URL_SAFE_NO_PAD.encode(bad_tag),
        URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() - 1]),
        URL_SAFE_NO_PAD.encode("person:2"),
        format!("{cursor}A"),
        "not a cursor".to_owned(),
    ];
    for forged in forged {
        let body = app
            .graphql(
                "query($c: String) { people(first: 1, after: $c) { nodes { unionid } } }",
                json!({ "c": forged }),
            )
            .await;
        let error = &body["errors"][0];
        assert_eq!(
            error["extensions"]["code"], "BAD_USER_INPUT",
            "{forged}: {body}"
        );
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .starts_with("invalid cursor"),
            "{body}"
        );
        assert_eq!(body["data"], Value::Null, "{body}");
    }
}

on_each_backend!(filters_select_followers_members_and_unlinked_accounts);
async fn filters_select_followers_members_and_unlinked_accounts(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_app(OA, "OFFICIAL_ACCOUNT").await;
    app.register_app(MP, "MINI_PROGRAM").await;
    app.upsert(json!([
        { "appid": OA, "openid": "a1", "unionid": "ua", "following": true },
        { "appid": OA, "openid": "b1", "unionid": "ub", "following": false },
        { "appid": MP, "openid": "c2", "unionid": "uc" },
        { "appid": MP, "openid": "a2", "unionid": "ua" },
        { "appid": OA, "openid": "d1", "following": true },
    ]))
    .await;
    let people = |filter: Value| {
        let app = &app;
        async move {
            let data = app
                .data(
                    "query($f: PeopleFilter) { people(filter: $f) { totalCount nodes { unionid } } }",
                    json!({ "f": filter }),
                )
                .await;
            let mut ids: Vec<String> = data["people"]["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["unionid"].as_str().unwrap().to_owned())
                .collect();
            ids.sort();
            assert_eq!(data["people"]["totalCount"], ids.len());
            ids
        }
    };
    assert_eq!(
        people(json!({ "followsApp": OA })).await,
        ["ua"],
        "{backend:?}"
    );
    assert_eq!(people(json!({ "inApp": OA })).await, ["ua", "ub"]);
    assert_eq!(
        people(json!({ "inApp": MP, "followsApp": OA })).await,
        ["ua"]
    );
    assert_eq!(
        people(json!({ "updatedSince": "2999-01-01T00:00:00Z" })).await,
        Vec::<String>::new()
    );
    assert_eq!(people(json!({})).await.len(), 3);

    let unlinked = app
        .data(
            &format!(r#"{{ accounts(appid: "{OA}", filter: {{ hasUnionid: false }}) {{ nodes {{ openid }} }} }}"#),
            json!({}),
        )
        .await;
    assert_eq!(unlinked["accounts"]["nodes"], json!([{ "openid": "d1" }]));
    let followers = app
        .data(
            &format!(
                r#"{{ accounts(appid: "{OA}", filter: {{ following: true }}) {{ totalCount }} }}"#
            ),
            json!({}),
        )
        .await;
    assert_eq!(followers["accounts"]["totalCount"], 2);
}

on_each_backend!(pages_go_backward_with_last_and_before);
async fn pages_go_backward_with_last_and_before(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_app(OA, "OFFICIAL_ACCOUNT").await;
    let rows: Vec<Value> = (0..25)
        .map(
            |i| json!({ "appid": OA, "openid": format!("o{i:02}"), "unionid": format!("u{i:02}") }),
        )
        .collect();
    app.upsert(json!(rows)).await;
    let back = |last: Option<i64>, before: Value, after: Value| {
        let app = &app;
        async move {
            let data = app
                .data(
                    "query($last: Int, $before: String, $after: String) { people(last: $last, before: $before, after: $after) {
                        totalCount nodes { unionid } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }",
                    json!({ "last": last, "before": before, "after": after }),
                )
                .await;
            let ids: Vec<String> = data["people"]["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["unionid"].as_str().unwrap().to_owned())
                .collect();
            (
                ids,
                data["people"]["pageInfo"].clone(),
                data["people"]["totalCount"].clone(),
            )
        }
    };
    let names = |range: std::ops::Range<usize>| -> Vec<String> {
        range.map(|i| format!("u{i:02}")).collect()
    };
    // The last 10, in list order.
    let (ids, info, total) = back(Some(10), Value::Null, Value::Null).await;
    assert_eq!(ids, names(15..25), "{backend:?}");
    assert_eq!(total, 25);
    assert_eq!(
        (info["hasPreviousPage"].clone(), info["hasNextPage"].clone()),
        (json!(true), json!(false))
    );
    // Back from its start: the 10 before, then the 5 left.
    let (ids, info, _) = back(Some(10), info["startCursor"].clone(), Value::Null).await;
    assert_eq!(ids, names(5..15));
    assert_eq!(
        (info["hasPreviousPage"].clone(), info["hasNextPage"].clone()),
        (json!(true), json!(true))
    );
    let (ids, info, _) = back(Some(10), info["startCursor"].clone(), Value::Null).await;
    assert_eq!(ids, names(0..5));
    assert_eq!(info["hasPreviousPage"], false);
    // Between two cursors: `after` u04 and `before` u10, the last 3.
    let after = page(&app, 5, Value::Null).await.1["pageInfo"]["endCursor"].clone();
    let before = page(&app, 10, Value::Null).await.1["pageInfo"]["endCursor"].clone();
    let (ids, _, _) = back(Some(3), before.clone(), after).await;
    assert_eq!(ids, names(6..9));
    // `before` alone: the 20 rows before it (here, the 9 there are).
    let (ids, _, _) = back(None, before, Value::Null).await;
    assert_eq!(ids, names(0..9));
    // `first` and `last` together are refused.
    let body = app
        .graphql("{ people(first: 2, last: 2) { totalCount } }", json!({}))
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{body}"
    );
    // The accounts of an app page backward too.
    let data = app
        .data(
            "query($a: String!) { accounts(appid: $a, last: 2) { nodes { openid } pageInfo { hasPreviousPage } } }",
            json!({ "a": OA }),
        )
        .await;
    assert_eq!(
        data["accounts"]["nodes"],
        json!([{ "openid": "o23" }, { "openid": "o24" }])
    );
    assert_eq!(data["accounts"]["pageInfo"]["hasPreviousPage"], true);
}
