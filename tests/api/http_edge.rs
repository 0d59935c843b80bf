//! The HTTP edge: every error answer in the GraphQL shape, CORS, `/metrics`
//! on a listener of its own, and start-up against an unreachable database.

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, ORIGIN};
use reqwest::{Method, Response};
use serde_json::Value;
use union360::settings::Settings;
use union360::startup::Application;

use crate::helpers::{Backend, TestApp, fresh_database, spawn_app, spawn_app_with};

const GQL: &str = "application/graphql-response+json";

/// Asserts `response` is `status` with one error coded `code`, as `media`.
async fn assert_error(response: Response, status: u16, code: &str, media: &str) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with(media), "{content_type}");
    let body: Value = response.json().await.unwrap();
    assert!(body.get("data").is_none(), "{body}");
    assert_eq!(body["errors"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], code, "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().len() > 5);
    body
}

fn url(app: &TestApp, path: &str) -> String {
    format!("{}{path}", app.address)
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_limit_exceeded_in_the_graphql_shape() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.server.body_limit = 1024).await;
    let big = format!(
        r#"{{"query":"{{ __typename }}","pad":"{}"}}"#,
        "x".repeat(4096)
    );
    for (accept, media) in [(None, "application/json"), (Some(GQL), GQL)] {
        let mut request = app
            .client
            .post(url(&app, "/graphql"))
            .header(CONTENT_TYPE, "application/json")
            .body(big.clone());
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        let body = assert_error(request.send().await.unwrap(), 413, "LIMIT_EXCEEDED", media).await;
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("1024"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn http_errors_on_graphql_are_json_with_a_code() {
    let app = spawn_app(Backend::Sqlite).await;
    let graphql = url(&app, "/graphql");
    // 415: not a JSON body.
    let response = app
        .client
        .post(&graphql)
        .header(CONTENT_TYPE, "text/plain")
        .header(ACCEPT, GQL)
        .body("{ __typename }")
        .send()
        .await
        .unwrap();
    assert_error(response, 415, "BAD_REQUEST", GQL).await;
    // 406: a media type union360 does not answer in.
    let response = app
        .client
        .post(&graphql)
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "image/png")
        .body(r#"{"query":"{ __typename }"}"#)
        .send()
        .await
        .unwrap();
    assert_error(response, 406, "BAD_REQUEST", "application/json").await;
    // 405: a method the route does not answer, with `Allow`.
    let response = app.client.put(&graphql).send().await.unwrap();
    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("POST") && allow.contains("GET"), "{allow}");
    assert_error(response, 405, "BAD_REQUEST", "application/json").await;
    // 405: a mutation over GET.
    let response = app
        .client
        .get(&graphql)
        .query(&[("query", "mutation { __typename }")])
        .header(ACCEPT, GQL)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    assert_error(response, 405, "BAD_REQUEST", GQL).await;
    // 404: no such route, under /graphql or anywhere.
    for path in ["/graphql/nope", "/nope"] {
        let response = app.client.get(url(&app, path)).send().await.unwrap();
        assert_error(response, 404, "NOT_FOUND", "application/json").await;
    }
}

async fn preflight(app: &TestApp, origin: &str) -> Response {
    app.client
        .request(Method::OPTIONS, url(app, "/graphql"))
        .header(ORIGIN, origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap()
}

async fn post_from(app: &TestApp, origin: &str) -> Response {
    app.client
        .post(url(app, "/graphql"))
        .header(ORIGIN, origin)
        .json(&serde_json::json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap()
}

const ALLOWED: &str = "https://crm.example.com";
const OTHER: &str = "https://evil.example.net";

#[tokio::test]
async fn cors_answers_only_the_allowed_origins() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.server.http.cors_origins = vec![
            "https://crm.example.com".parse().unwrap(),
            "http://localhost:3000".parse().unwrap(),
        ];
    })
    .await;
    let response = preflight(&app, ALLOWED).await;
    assert!(response.status().is_success(), "{}", response.status());
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], ALLOWED);
    let allowed_headers = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed_headers.contains("authorization") && allowed_headers.contains("content-type"),
        "{allowed_headers}"
    );
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("GET") && methods.contains("POST"),
        "{methods}"
    );

    let response = post_from(&app, ALLOWED).await;
    assert_eq!(response.headers()["access-control-allow-origin"], ALLOWED);

    for response in [preflight(&app, OTHER).await, post_from(&app, OTHER).await] {
        assert!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{:?}",
            response.headers()
        );
    }
}

#[tokio::test]
async fn cors_is_off_by_default() {
    let app = spawn_app(Backend::Sqlite).await;
    for response in [
        preflight(&app, ALLOWED).await,
        post_from(&app, ALLOWED).await,
    ] {
        assert!(
            response
                .headers()
                .keys()
                .all(|name| !name.as_str().starts_with("access-control-")),
            "{:?}",
            response.headers()
        );
    }
}

#[tokio::test]
async fn metrics_can_have_a_listener_of_their_own() {
    let (url, _dir) = fresh_database(Backend::Sqlite).await;
    let mut settings = Settings::new(url);
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.server.wechat_api_base = "http://127.0.0.1:1".to_owned();
    settings.server.http.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let app = Application::build(settings).await.unwrap();
    let main = app.local_addr().unwrap();
    let metrics = app.metrics_addr().expect("a metrics listener");
    assert_ne!(main, metrics);
    tokio::spawn(app.run_until(std::future::pending()));
    let client = reqwest::Client::new();
    let get = |addr: std::net::SocketAddr, path: &'static str| {
        let client = client.clone();
        async move {
            client
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .unwrap()
        }
    };
    let there = get(metrics, "/metrics").await;
    assert_eq!(there.status(), 200);
    assert!(there.text().await.unwrap().contains("union360_"));
    assert_eq!(get(main, "/metrics").await.status(), 404);
    assert_eq!(get(main, "/healthz").await.status(), 200);
    assert_eq!(get(metrics, "/healthz").await.status(), 404);
}

#[tokio::test]
async fn metrics_are_on_the_main_listener_by_default() {
    let app = spawn_app(Backend::Sqlite).await;
    let response = app.client.get(url(&app, "/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn start_up_against_a_closed_port_fails_fast_and_names_the_cause() {
    let mut settings = Settings::new("postgres://postgres@127.0.0.1:1/x");
    settings.database.master_key = Some(union360::crypto::MasterKey::generate().1);
    // Generous: only a hang fails here; the answer takes milliseconds.
    let result = tokio::time::timeout(Duration::from_secs(20), Application::build(settings))
        .await
        .expect("start-up gives up instead of hanging");
    let Err(error) = result else {
        panic!("start-up against a closed port succeeded")
    };
    let message = format!("{error:#}").to_ascii_lowercase();
    assert!(
        message.contains("postgres://postgres@127.0.0.1:1/x"),
        "{message}"
    );
    assert!(message.contains("connection refused"), "{message}");
}

/// Answers are compressed with gzip or brotli when the client accepts it,
/// and decompress to what an uncompressed answer says.
#[tokio::test]
async fn answers_are_compressed_when_the_client_accepts_it() {
    use std::io::Read;
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await;
    let appid = "wx00000000000000a1";
    app.register_app(appid, "MINI_PROGRAM").await;
    let rows: Vec<serde_json::Value> = (0..100)
        .map(|i| serde_json::json!({ "appid": appid, "openid": format!("o-{i}"), "unionid": format!("u-{i}"), "nickname": format!("nickname {i}"), "city": "Shenzhen" }))
        .collect();
    app.upsert(serde_json::json!(rows)).await;
    let query = serde_json::json!({ "query": "{ people(first: 100) { nodes { unionid accounts { openid nickname city app { name } } } } }" });
    let fetch = |encoding: Option<&'static str>| {
        let mut request = app
            .client
            .post(format!("{}/graphql", app.address))
            .json(&query);
        if let Some(encoding) = encoding {
            request = request.header(reqwest::header::ACCEPT_ENCODING, encoding);
        }
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            let headers = response.headers().clone();
            (headers, response.bytes().await.unwrap().to_vec())
        }
    };
    let (headers, plain) = fetch(None).await;
    assert!(headers.get(reqwest::header::CONTENT_ENCODING).is_none());
    let plain: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(
        plain["data"]["people"]["nodes"].as_array().unwrap().len(),
        100
    );
    let plain_len = serde_json::to_vec(&plain).unwrap().len();
    for (accept, encoding) in [
        ("gzip", "gzip"),
        ("br", "br"),
        ("br;q=1.0, gzip;q=0.5", "br"),
    ] {
        let (headers, body) = fetch(Some(accept)).await;
        assert_eq!(
            headers[reqwest::header::CONTENT_ENCODING],
            encoding,
            "{accept}"
        );
        assert!(
            headers[reqwest::header::VARY]
                .to_str()
                .unwrap()
                .to_ascii_lowercase()
                .contains("accept-encoding")
        );
        assert!(
            body.len() * 3 < plain_len,
            "{accept}: {} of {plain_len} bytes",
            body.len()
        );
        let mut text = Vec::new();
        if encoding == "gzip" {
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut text)
                .unwrap();
        } else {
            brotli::Decompressor::new(&body[..], 4096)
                .read_to_end(&mut text)
                .unwrap();
        }
        let decoded: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(decoded, plain, "{accept}");
    }
    // The playground page too.
    let page = app
        .client
        .get(format!("{}/graphiql", app.address))
        .header(reqwest::header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(page.headers()[reqwest::header::CONTENT_ENCODING], "gzip");
}
