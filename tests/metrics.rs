//! `GET /metrics` against exact counts.
//!
//! The Prometheus recorder is process-wide, so these assertions live in a
//! test binary of their own, with one server in it: no other test can bump
//! a counter they read, and every count can be asserted exactly.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on unexpected responses"
)]

#[path = "api/helpers.rs"]
#[macro_use]
#[expect(
    dead_code,
    unused_macros,
    reason = "the helpers also serve the api test binary"
)]
mod helpers;

use std::collections::BTreeMap;

use serde_json::{Value, json};
use union360::wechat::client::api;

use helpers::{Backend, SimControl, spawn_app};

/// The samples of a Prometheus text page, by series (name and labels as printed).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn refreshes_and_wechat_calls_are_counted_exactly() {
    let app = spawn_app(Backend::Sqlite).await;
    let appids = app.register_official_accounts().await;
    // Followed accounts of the first people, with their UnionIDs: all stale.
    let mut rows = Vec::new();
    for i in 0..30 {
        let person = app.sim.person(i).await;
        for (appid, openid) in person.followed_in(&appids) {
            rows.push(json!({ "appid": appid, "openid": openid, "unionid": person.unionid }));
        }
    }
    assert!(!rows.is_empty(), "someone follows a registered account");
    app.upsert(json!(rows)).await;

    // Two root fields that read the same people: one refresh round.
    let query = "{ a: people(first: 100) { nodes { accounts { stale } } }
                   b: people(first: 100) { nodes { nickname } } }";
    let data = app.data(query, Value::Null).await;
    assert!(!data.to_string().contains("\"stale\":true"), "{data}");

    // A named query, a document that does not parse, a path nobody serves.
    app.data("query Named { apps { appid } }", Value::Null)
        .await;
    let unparsed = app.graphql("{ apps {", Value::Null).await;
    assert_eq!(
        unparsed["errors"][0]["extensions"]["code"],
        "GRAPHQL_PARSE_FAILED"
    );
    let missing = app
        .client
        .get(format!("{}/no/such/path", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let text = reqwest::get(format!("{}/metrics", app.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let samples = samples(&text);
    let get = |series: &str| samples.get(series).copied();
    let accounts = rows.len() as f64;
    assert_eq!(
        get("union360_refresh_requested_total"),
        Some(accounts),
        "{text}"
    );
    assert_eq!(
        get("union360_refresh_fetched_total"),
        Some(accounts),
        "{text}"
    );
    let batchget = format!(
        "union360_wechat_request_duration_seconds_count{{api=\"{}\",outcome=\"ok\"}}",
        api::BATCHGET
    );
    assert_eq!(
        get(&batchget),
        Some(app.sim.calls_to(api::BATCHGET) as f64),
        "{text}"
    );
    let tokens = format!(
        "union360_wechat_token_fetches_total{{api=\"{}\"}}",
        api::STABLE_TOKEN
    );
    assert_eq!(
        get(&tokens),
        Some(app.sim.calls_to(api::STABLE_TOKEN) as f64),
        "{text}"
    );
    assert!(
        get("union360_sql_statements_total").is_some_and(|n| n > 0.0),
        "{text}"
    );
    // Nothing failed, missed its budget, or left the round waiting; the
    // counters an alert watches are there, at zero.
    let mut zeros = vec![
        "union360_refresh_served_stale_total".to_owned(),
        "union360_refresh_round_incomplete_total".to_owned(),
    ];
    for class in [
        "token_invalid",
        "retryable",
        "quota_daily",
        "quota_minute",
        "bad_input",
        "unauthorized",
        "unknown",
    ] {
        zeros.push(format!(
            "union360_refresh_failed_total{{class=\"{class}\"}}"
        ));
    }
    for series in zeros {
        assert_eq!(get(&series), Some(0.0), "{series} in:\n{text}");
    }
    assert_eq!(
        get(&format!(
            "union360_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        Some(1.0)
    );

    // Requests by route, method and status; operations by name, type and
    // outcome; errors by code (every code present, at zero when unseen).
    assert_eq!(
        get(r#"union360_http_requests_total{route="unmatched",method="GET",status="404"}"#),
        Some(1.0),
        "{text}"
    );
    assert!(
        get(r#"union360_http_requests_total{route="/graphql",method="POST",status="200"}"#)
            .is_some_and(|n| n >= 4.0),
        "{text}"
    );
    assert!(
        get(r#"union360_http_request_duration_seconds_count{route="/graphql",method="POST",status="200"}"#)
            .is_some_and(|n| n >= 4.0),
        "{text}"
    );
    assert_eq!(
        get(r#"union360_graphql_operations_total{operation="Named",type="query",outcome="ok"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        get(
            r#"union360_graphql_operations_total{operation="(anonymous)",type="none",outcome="error"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        get(r#"union360_graphql_errors_total{code="GRAPHQL_PARSE_FAILED"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        get(r#"union360_graphql_errors_total{code="NOT_FOUND"}"#),
        Some(1.0),
        "{text}"
    );
    for code in ["INTERNAL", "LIMIT_EXCEEDED", "UNAUTHENTICATED", "FORBIDDEN"] {
        assert_eq!(
            get(&format!("union360_graphql_errors_total{{code=\"{code}\"}}")),
            Some(0.0),
            "{code} in:\n{text}"
        );
    }
    // The pool, and the process itself.
    assert_eq!(
        get("union360_db_pool_max_connections"),
        Some(16.0),
        "{text}"
    );
    assert!(
        get(r#"union360_db_pool_connections{state="idle"}"#).is_some_and(|n| n >= 1.0),
        "{text}"
    );
    for series in [
        "process_resident_memory_bytes",
        "process_threads",
        "process_open_fds",
    ] {
        assert!(get(series).is_some_and(|n| n > 0.0), "{series} in:\n{text}");
    }
    // Whole seconds: a test's process may not have used one yet.
    assert!(get("process_cpu_seconds_total").is_some(), "{text}");

    // A real Prometheus text parser reads the page, and every family has
    // its TYPE and HELP.
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    assert!(!scrape.samples.is_empty());
    let families: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for family in [
        "union360_build_info",
        "union360_refresh_failed_total",
        "union360_refresh_served_stale_total",
        "union360_sql_statements_total",
        "union360_wechat_request_duration_seconds",
        "union360_http_requests_total",
        "union360_http_request_duration_seconds",
        "union360_graphql_operations_total",
        "union360_graphql_operation_duration_seconds",
        "union360_graphql_errors_total",
        "union360_db_pool_connections",
        "process_resident_memory_bytes",
    ] {
        assert!(families.contains(family), "{family} missing: {families:?}");
    }
    for family in families {
        assert!(
            scrape.docs.get(family).is_some_and(|help| !help.is_empty()),
            "{family} has no HELP:\n{text}"
        );
    }
}
