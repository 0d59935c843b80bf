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
