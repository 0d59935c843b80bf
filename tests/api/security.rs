//! API keys and scopes: who may call union360 and what each key sees.

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use union360::clock::Clock;
use union360::keys::{Scope, Scopes};
use union360::simulator::SimConfig;
use union360::wechat::client::api;

use crate::helpers::{
    Backend, SimControl, TestApp, client_with_key, codes, create_key, spawn_app,
    spawn_app_without_keys,
};

/// POSTs `query` with `client` and returns the status, a header and the body.
async fn post_with(
    app: &TestApp,
    client: &reqwest::Client,
    query: &str,
    variables: Value,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let response = client
        .post(format!("{}/graphql", app.address))
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap())
}

/// The paths of the errors with `code`, as dotted strings, sorted.
fn paths_with(body: &Value, code: &str) -> Vec<String> {
    let mut paths: Vec<String> = body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["extensions"]["code"] == code)
        .map(|e| {
            e["path"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.to_string().trim_matches('"').to_owned())
                .collect::<Vec<_>>()
                .join(".")
        })
        .collect();
    paths.sort();
    paths
}

async fn unauthenticated(app: &TestApp, client: &reqwest::Client) -> String {
    let (status, headers, body) = post_with(app, client, "{ apps { appid } }", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(headers.get(WWW_AUTHENTICATE).is_some());
    assert!(
        headers[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert!(body.get("data").is_none(), "{body}");
    assert_eq!(codes(&body), ["UNAUTHENTICATED"]);
    body["errors"][0]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_fresh_install_answers_401_saying_how_to_create_a_key() {
    let app = spawn_app_without_keys(
        Backend::Sqlite,
        Clock::system(),
        SimConfig::default(),
        |_| {},
    )
    .await;
    let message = unauthenticated(&app, &app.client).await;
    assert!(message.contains("union360 apikey create"), "{message}");
    // The playground stays public.
    let page = app
        .client
        .get(format!("{}/graphiql", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let health = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn missing_malformed_wrong_and_revoked_keys_get_401() {
    let app = spawn_app(Backend::Sqlite).await;
    let message = unauthenticated(&app, &reqwest::Client::new()).await;
    assert!(message.contains("Authorization: Bearer"), "{message}");
    for key in [
        "nonsense".to_owned(),
        format!("{}x", app.key),
        // The right id with another secret.
        format!("{}_{}", &app.key[..17], "A".repeat(43)),
    ] {
        let message = unauthenticated(&app, &client_with_key(&key)).await;
        assert_eq!(message, "the API key is not valid");
    }
    let doomed = create_key(&app.state, "doomed", Scopes::all()).await;
    let doomed_client = client_with_key(&doomed);
    let (status, _, _) = post_with(&app, &doomed_client, "{ apps { appid } }", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let revoked = app
        .data(
            "mutation($id: String!) { revokeApiKey(keyId: $id) { keyId revokedAt } }",
            json!({ "id": &doomed[..17] }),
        )
        .await;
    assert!(revoked["revokeApiKey"]["revokedAt"].is_string());
    let message = unauthenticated(&app, &doomed_client).await;
    assert_eq!(message, "the API key was revoked");
    // The other key still works.
    app.data("{ apps { appid } }", json!({})).await;
}

/// A person with an account whose profile has personal data.
async fn seed(app: &TestApp) -> String {
    let appid = "wx00000000000000a1";
    app.register_app(appid, "WEBSITE").await;
    app.upsert(json!([{
        "appid": appid, "openid": "o-scope", "unionid": "u-scope",
        "nickname": "Nick", "city": "Shenzhen", "remark": "vip"
    }]))
    .await;
    appid.to_owned()
}

const READ_ALL: &str = "{ apps { appid name } \
    people { totalCount nodes { unionid nickname city accounts { openid nickname remark app { name } } } } }";

#[tokio::test]
async fn each_scope_sees_exactly_its_fields() {
    let app = spawn_app(Backend::Sqlite).await;
    seed(&app).await;
    let client_for = async |scopes: &[Scope]| {
        let key = create_key(&app.state, "scoped", scopes.iter().copied().collect()).await;
        client_with_key(&key)
    };

    // read: the graph, with every personal field null and refused, siblings kept.
    let read = client_for(&[Scope::Read]).await;
    let (status, _, body) = post_with(&app, &read, READ_ALL, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let person = &body["data"]["people"]["nodes"][0];
    assert_eq!(person["unionid"], "u-scope", "{body}");
    assert_eq!(person["accounts"][0]["openid"], "o-scope");
    assert_eq!(person["accounts"][0]["app"]["name"], "wx00000000000000a1");
    for value in [
        &person["nickname"],
        &person["city"],
        &person["accounts"][0]["nickname"],
        &person["accounts"][0]["remark"],
    ] {
        assert!(value.is_null(), "{body}");
    }
    assert_eq!(
        paths_with(&body, "FORBIDDEN"),
        [
            "people.nodes.0.accounts.0.nickname",
            "people.nodes.0.accounts.0.remark",
            "people.nodes.0.city",
            "people.nodes.0.nickname",
        ]
    );
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("`pii` scope"), "{message}");

    // read + pii: everything readable.
    let pii = client_for(&[Scope::Read, Scope::Pii]).await;
    let (_, _, body) = post_with(&app, &pii, READ_ALL, json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(body["data"]["people"]["nodes"][0]["nickname"], "Nick");
    assert_eq!(
        body["data"]["people"]["nodes"][0]["accounts"][0]["remark"],
        "vip"
    );

    // pii alone, stats alone: not even the graph.
    for scopes in [[Scope::Pii], [Scope::Stats]] {
        let client = client_for(&scopes).await;
        let (_, _, body) = post_with(&app, &client, "{ apps { appid } }", json!({})).await;
        assert_eq!(codes(&body), ["FORBIDDEN"], "{scopes:?}: {body}");
    }

    // Writes need write; app registration and keys need admin.
    let upsert = "mutation { upsertAccounts(input: [{ appid: \"wx00000000000000a1\", openid: \"o-2\" }]) { created } }";
    let register = "mutation { registerApp(input: { appid: \"wx00000000000000b2\", kind: WEBSITE, name: \"B\", secret: \"0123456789abcdef0123456789abcdef\" }) { appid } }";
    let register_again = register.replace("b2", "b3");
    let keys = "{ apiKeys { keyId name } }";
    let cases: [(&[Scope], &str, bool); 8] = [
        (&[Scope::Read, Scope::Pii], upsert, false),
        (&[Scope::Write], upsert, true),
        (&[Scope::Write], register, false),
        // What a mutation returns is read with the scopes of reading it.
        (&[Scope::Admin], register, false),
        (&[Scope::Admin, Scope::Read], &register_again, true),
        (&[Scope::Read, Scope::Write], keys, false),
        (&[Scope::Admin], keys, true),
        (&[Scope::Write], READ_ALL, false),
    ];
    for (scopes, query, allowed) in cases {
        let client = client_for(scopes).await;
        let (_, _, body) = post_with(&app, &client, query, json!({})).await;
        if allowed {
            assert!(body.get("errors").is_none(), "{scopes:?} {query}: {body}");
        } else {
            assert!(
                codes(&body).iter().any(|c| c == "FORBIDDEN"),
                "{scopes:?} {query}: {body}"
            );
        }
    }
}

#[tokio::test]
async fn forcing_a_refresh_needs_write() {
    let app = spawn_app(Backend::Sqlite).await;
    seed(&app).await;
    let query = "{ person(unionid: \"u-scope\", refresh: FORCE) { unionid } }";
    let read = client_with_key(&create_key(&app.state, "reader", Scope::Read.into()).await);
    let (_, _, body) = post_with(&app, &read, query, json!({})).await;
    assert_eq!(codes(&body), ["FORBIDDEN"], "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("`write`")
    );
    app.data(query, json!({})).await;
}

#[tokio::test]
async fn a_key_over_its_rate_gets_429_with_retry_after() {
    let app = spawn_app(Backend::Sqlite).await;
    let created = app
        .data(
            "mutation { createApiKey(input: { name: \"slow\", scopes: [READ], ratePerSec: 1, burst: 2 }) \
             { key apiKey { keyId scopes ratePerSec burst maxConcurrent } } }",
            json!({}),
        )
        .await;
    let api_key = &created["createApiKey"]["apiKey"];
    assert_eq!(api_key["scopes"], json!(["READ"]));
    assert_eq!(
        (api_key["ratePerSec"].clone(), api_key["burst"].clone()),
        (json!(1), json!(2))
    );
    assert!(api_key["maxConcurrent"].is_null());
    let client = client_with_key(created["createApiKey"]["key"].as_str().unwrap());
    for _ in 0..2 {
        let (status, _, body) = post_with(&app, &client, "{ apps { appid } }", json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, headers, body) = post_with(&app, &client, "{ apps { appid } }", json!({})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(codes(&body), ["RATE_LIMITED"]);
    let retry: u64 = headers[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After: {retry}");
    // Other keys are not affected.
    app.data("{ apps { appid } }", json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_with_as_many_requests_in_flight_as_it_may_gets_429() {
    let world = SimConfig {
        people: 20,
        apps: 2,
        ..SimConfig::default()
    };
    let app = crate::helpers::spawn_app_in(Backend::Sqlite, Clock::system(), world, |_| {}).await;
    let appids = app.register_official_accounts().await;
    let person = app.sim.person(0).await;
    let (appid, openid) = person.followed_in(&appids)[0].clone();
    app.upsert(json!([{ "appid": appid, "openid": openid }]))
        .await;
    // WeChat hangs, so a read of the stale account's follow status stays in flight.
    app.sim
        .fault(api::BATCHGET, json!({ "latency_ms": 8000 }))
        .await;
    app.sim.reset_calls().await;
    let created = app
        .data(
            "mutation { createApiKey(input: { name: \"one\", scopes: [READ], maxConcurrent: 1 }) { key } }",
            json!({}),
        )
        .await;
    let client = client_with_key(created["createApiKey"]["key"].as_str().unwrap());
    let slow = {
        let client = client.clone();
        let url = format!("{}/graphql", app.address);
        tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({ "query": "query($a: String!, $o: String!) { account(appid: $a, openid: $o) { openid following } }",
                                "variables": { "a": appid, "o": openid } }))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    };
    // Only once the first request is waiting on WeChat is it surely in flight.
    let waited = std::time::Instant::now();
    while app.sim.calls_to(api::BATCHGET) == 0 {
        assert!(
            !slow.is_finished(),
            "the first request ended before it reached WeChat"
        );
        assert!(waited.elapsed() < std::time::Duration::from_secs(30));
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut refused = false;
    while !slow.is_finished() {
        let (status, headers, body) = post_with(&app, &client, "{ __typename }", json!({})).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(codes(&body), ["RATE_LIMITED"]);
            assert!(headers.get(RETRY_AFTER).is_some());
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let slow = slow.await.unwrap();
    assert!(
        refused,
        "a second request while one was in flight was admitted (the first: {slow})"
    );
    assert!(slow.contains("\"openid\""), "{slow}");
}

on_each_backend!(keys_are_stored_hashed_and_last_use_is_recorded);
async fn keys_are_stored_hashed_and_last_use_is_recorded(backend: Backend) {
    let app = spawn_app(backend).await;
    let listed = app
        .data(
            "{ apiKeys { keyId name scopes lastUsedAt revokedAt } }",
            json!({}),
        )
        .await;
    let key = &listed["apiKeys"][0];
    assert_eq!(key["keyId"].as_str().unwrap(), &app.key[..17]);
    assert_eq!(
        key["scopes"],
        json!(["READ", "PII", "STATS", "WRITE", "ADMIN"])
    );
    // Recorded in memory, written in bulk: the listing flushes first.
    assert!(key["lastUsedAt"].is_string(), "{listed}");
    assert!(key["revokedAt"].is_null());
    let db = app.state.db();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT key_id, name, hash, scopes FROM api_key".to_owned(),
        ))
        .await
        .unwrap();
    let secret = &app.key[18..];
    for row in rows {
        for column in ["key_id", "name", "hash", "scopes"] {
            let value: String = row.try_get("", column).unwrap();
            assert!(!value.contains(secret), "{column} holds the key's secret");
        }
        let hash: String = row.try_get("", "hash").unwrap();
        assert_eq!(hash.len(), 64, "a SHA-256, in hex");
    }
}

#[tokio::test]
async fn key_input_is_checked() {
    let app = spawn_app(Backend::Sqlite).await;
    for input in [
        "{ name: \"\", scopes: [READ] }",
        "{ name: \"x\", scopes: [] }",
        "{ name: \"x\", scopes: [READ], burst: 0 }",
    ] {
        let body = app
            .graphql(
                &format!("mutation {{ createApiKey(input: {input}) {{ key }} }}"),
                json!({}),
            )
            .await;
        assert_eq!(codes(&body), ["BAD_USER_INPUT"], "{input}: {body}");
    }
    let body = app
        .graphql(
            "mutation { revokeApiKey(keyId: \"u360_000000000000\") { keyId } }",
            json!({}),
        )
        .await;
    assert_eq!(codes(&body), ["NOT_FOUND"], "{body}");
}

#[test]
fn the_command_line_creates_lists_and_revokes_keys() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("cli.db").display());
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_union360"))
            .env("DATABASE_URL", &url)
            .env_remove("UNION360_MASTER_KEY")
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let key = run(&["apikey", "create", "--name", "ci", "--scopes", "read,pii"]);
    let key = key.trim();
    assert!(key.starts_with("u360_") && key.len() == 61, "{key}");
    let listed = run(&["apikey", "list"]);
    assert!(
        listed.contains(&key[..17]) && listed.contains("read,pii"),
        "{listed}"
    );
    assert!(!listed.contains(&key[18..]), "listing shows the secret");
    let revoked = run(&["apikey", "revoke", &key[..17]]);
    assert!(revoked.contains("revoked"), "{revoked}");
}

#[tokio::test]
async fn a_flood_of_unknown_keys_does_not_reread_the_key_table() {
    let app = spawn_app(Backend::Sqlite).await;
    let before = app.statements_from_now().await;
    let started = std::time::Instant::now();
    let forged = client_with_key(&format!("u360_000000000000_{}", "A".repeat(43)));
    let malformed = client_with_key("nonsense");
    let requests = (0..200).map(|i| {
        let client = if i % 2 == 0 { &forged } else { &malformed };
        post_with(&app, client, "{ apps { appid } }", json!({}))
    });
    for (status, _, _) in futures::future::join_all(requests).await {
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let reads = app.state.store().client_statements.get() - before;
    // At most one reload a second for unknown ids, and one each time the
    // copy ages (a slow machine takes seconds over these requests).
    let secs = started.elapsed().as_secs();
    assert!(
        reads <= 2 + secs + secs / 5,
        "{reads} statements for 200 requests with bad keys"
    );
}

on_each_backend!(revoking_a_malformed_id_is_not_found);
async fn revoking_a_malformed_id_is_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    for id in ["u360_\u{0}b", "u360_0000000000zz", ""] {
        let body = app
            .graphql(
                "mutation($id: String!) { revokeApiKey(keyId: $id) { keyId } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(codes(&body), ["NOT_FOUND"], "{backend:?} {id:?}: {body}");
    }
}

#[tokio::test]
async fn which_profile_fields_are_set_is_personal_too() {
    let app = spawn_app(Backend::Sqlite).await;
    let appid = seed(&app).await;
    let read = client_with_key(&create_key(&app.state, "reader", Scope::Read.into()).await);
    let (_, _, body) = post_with(
        &app,
        &read,
        "query($a: String!) { account(appid: $a, openid: \"o-scope\") { openid fieldSources { field } } }",
        json!({ "a": appid }),
    )
    .await;
    assert_eq!(body["data"]["account"]["openid"], "o-scope", "{body}");
    assert!(body["data"]["account"]["fieldSources"].is_null(), "{body}");
    assert_eq!(codes(&body), ["FORBIDDEN"]);
}

#[tokio::test]
async fn work_costing_more_than_a_keys_burst_is_refused_saying_so() {
    let app = spawn_app(Backend::Sqlite).await;
    let appid = seed(&app).await;
    let created = app
        .data(
            "mutation { createApiKey(input: { name: \"small\", scopes: [READ, WRITE], burst: 5 }) { key } }",
            json!({}),
        )
        .await;
    let client = client_with_key(created["createApiKey"]["key"].as_str().unwrap());
    // 700 accounts: 7 batches, 6 beyond the request's own token.
    let keys: Vec<Value> = (0..700)
        .map(|i| json!({ "appid": appid, "openid": format!("o-{i}") }))
        .collect();
    let (status, _, body) = post_with(
        &app,
        &client,
        "mutation($k: [AccountKey!]!) { refreshAccounts(keys: $k) { fetched } }",
        json!({ "k": keys }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(codes(&body), ["RATE_LIMITED"], "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("more than this API key's burst of 5"),
        "{message}"
    );
}
