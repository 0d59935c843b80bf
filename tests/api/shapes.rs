//! The shapes clients depend on, as snapshots: error bodies and
//! representative responses. A change to any of them shows up as a diff to
//! review (`cargo insta review`), never silently.

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};

const OA: &str = "wx0000000000000001";
const MP: &str = "wx0000000000000002";

/// A server with two apps and one person in both, known from imports.
async fn with_one_person() -> TestApp {
    let app = spawn_app(Backend::Sqlite).await;
    app.register_app(OA, "OFFICIAL_ACCOUNT").await;
    app.register_app(MP, "MINI_PROGRAM").await;
    app.upsert(json!([
        { "appid": OA, "openid": "o-oa-1", "unionid": "u-1", "nickname": "Ann", "city": "Shenzhen", "following": true },
        { "appid": MP, "openid": "o-mp-1", "unionid": "u-1", "sex": "FEMALE", "language": "zh_CN" },
        { "appid": OA, "openid": "o-oa-2" },
    ]))
    .await;
    app
}

/// Time stamps and cursors (signed with each run's master key) change with
/// every run; everything else must not.
macro_rules! assert_shape {
    ($name:literal, $value:expr) => {
        insta::assert_json_snapshot!($name, $value, {
            ".**.createdAt" => "[time]",
            ".**.updatedAt" => "[time]",
            ".**.cursor" => "[cursor]",
            ".**.startCursor" => "[cursor]",
            ".**.endCursor" => "[cursor]",
        })
    };
}

#[tokio::test]
async fn error_bodies() {
    let app = with_one_person().await;
    let cases: [(&str, &str, Value); 8] = [
        (
            "not_found_app",
            r#"{ accounts(appid: "wx0123456789abcdef") { totalCount } }"#,
            Value::Null,
        ),
        (
            "bad_user_input_identifier",
            r#"{ person(unionid: " padded") { unionid } }"#,
            Value::Null,
        ),
        (
            "bad_user_input_argument",
            "query($t: DateTime!) { people(filter: { updatedSince: $t }) { totalCount } }",
            json!({ "t": "2026-02-30T00:00:00Z" }),
        ),
        (
            "bad_user_input_page_size",
            "{ people(first: 1000) { totalCount } }",
            Value::Null,
        ),
        (
            "bad_user_input_duplicate_row",
            "mutation($rows: [AccountInput!]!) { upsertAccounts(input: $rows) { created } }",
            json!({ "rows": [{ "appid": OA, "openid": "a" }, { "appid": OA, "openid": "a" }] }),
        ),
        (
            "not_found_refresh_key",
            "mutation($keys: [AccountKey!]!) { refreshAccounts(keys: $keys) { fetched } }",
            json!({ "keys": [{ "appid": OA, "openid": "o-unknown" }] }),
        ),
        (
            "not_found_refresh_app",
            "mutation($keys: [AccountKey!]!) { refreshAccounts(keys: $keys) { fetched } }",
            json!({ "keys": [{ "appid": "wx0123456789abcdef", "openid": "o-oa-1" }] }),
        ),
        (
            "not_found_ttl_app",
            "mutation { setFreshnessTtl(appid: \"wx0123456789abcdef\", seconds: 3600) { appid } }",
            Value::Null,
        ),
    ];
    for (name, query, variables) in cases {
        let body = app.graphql(query, variables).await;
        insta::assert_json_snapshot!(name, body);
    }
}

#[tokio::test]
async fn a_person_with_accounts() {
    let app = with_one_person().await;
    let data = app
        .data(
            r#"{ person(unionid: "u-1", refresh: CACHE_ONLY) {
                unionid nickname sex language city oldestRefreshedAt createdAt updatedAt
                accounts { appid openid unionid nickname sex city following stale refreshable
                           refreshError { code } fieldSources { field source }
                           app { appid kind name } person { unionid } }
            } }"#,
            Value::Null,
        )
        .await;
    assert_shape!("person_with_accounts", data);
}

#[tokio::test]
async fn a_page_of_accounts() {
    let app = with_one_person().await;
    let data = app
        .data(
            &format!(
                r#"{{ accounts(appid: "{OA}", first: 1, refresh: CACHE_ONLY) {{
                    totalCount pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
                    edges {{ cursor node {{ openid unionid nickname following }} }} }} }}"#
            ),
            Value::Null,
        )
        .await;
    assert_shape!("page_of_accounts", data);
}

#[tokio::test]
async fn an_upsert_payload() {
    let app = with_one_person().await;
    let payload = app
        .upsert(json!([
            { "appid": OA, "openid": "o-oa-1", "unionid": "u-other" },
            { "appid": OA, "openid": "o-oa-2", "unionid": "u-2" },
            { "appid": MP, "openid": "o-mp-1", "nickname": "Annie" },
            { "appid": MP, "openid": "o-mp-3" },
        ]))
        .await;
    assert_shape!("upsert_payload", payload);
}
