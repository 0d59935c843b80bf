//! `union360 bench refresh` (and bare `union360 bench`): lazy refresh.
//!
//! Runs the real server on a temporary SQLite database against an
//! in-process WeChat simulator whose `batchget` answers after a set latency,
//! and times GraphQL queries end to end over HTTP:
//!
//! - `refresh`: one query reading 100 stale accounts spread over 3 official
//!   accounts, which refreshes them (one `batchget` per app, in parallel);
//!   the target is under 1.3 × one WeChat round trip;
//! - the same accounts read by three root fields of one query, one per app:
//!   still one refresh round (one `batchget` per app, in parallel);
//! - `fresh` and `cache-only`: the first query when the profiles are fresh,
//!   with refresh on and off; refresh on must cost no more.
//!
//! Tokens are fetched once before timing starts, as in a running service.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use entity::account;
use sea_orm::EntityTrait;
use sea_orm::sea_query::Expr;
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::crypto::MasterKey;
use crate::refresh::RECENT;
use crate::settings::Settings;
use crate::simulator::{KindMix, SimConfig, Simulator};
use crate::startup::Application;

use super::row;

/// Options of `union360 bench refresh`.
#[derive(Debug, Clone, clap::Args)]
pub struct RefreshArgs {
    /// Timed runs per scenario.
    #[arg(long, default_value_t = 30)]
    pub iterations: u32,
    /// Latency of the simulated WeChat `batchget`, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub wechat_latency_ms: u64,
    /// Stale accounts the refresh query reads.
    #[arg(long, default_value_t = 100)]
    pub accounts: usize,
}

const QUERY: &str = "query($refresh: RefreshPolicy) { people(first: 100, refresh: $refresh) {
    nodes { unionid accounts { openid nickname following stale } } } }";

/// The same accounts, read app by app in three root fields of one query.
const BY_APP: &str = "query($a0: String!, $a1: String!, $a2: String!) {
    a0: accounts(appid: $a0, first: 100) { nodes { openid nickname following stale } }
    a1: accounts(appid: $a1, first: 100) { nodes { openid nickname following stale } }
    a2: accounts(appid: $a2, first: 100) { nodes { openid nickname following stale } } }";

/// Runs every scenario and prints a Markdown report.
pub(super) async fn run(args: RefreshArgs) -> anyhow::Result<()> {
    let sim = Simulator::spawn(SimConfig {
        people: 2000,
        apps: 3,
        unbound_share: 0.0,
        kinds: KindMix::OFFICIAL_ACCOUNTS,
        ..SimConfig::default()
    })
    .await?;
    let dir = std::env::temp_dir().join(format!("union360-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut settings = Settings::new(format!(
        "sqlite://{}?mode=rwc",
        dir.join("bench.db").display()
    ));
    settings.server.listen = "127.0.0.1:0".parse()?;
    settings.server.wechat_api_base = sim.base_url();
    settings.server.refresh_budget_ms = 5_000;
    settings.database.master_key = Some(MasterKey::generate().1);
    let clock = Clock::manual(chrono::Utc::now());
    let app = Application::build_with_clock(settings, clock.clone()).await?;
    let url = format!("http://{}/graphql", app.local_addr()?);
    let state = app.state().clone();
    tokio::spawn(app.run_until(std::future::pending()));
    let http = super::unlimited_client(&state).await?;
    let gql = |query: &'static str, variables: Value| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let body: Value = http
                .post(&url)
                .json(&json!({ "query": query, "variables": variables }))
                .send()
                .await?
                .json()
                .await?;
            if body.get("errors").is_some() {
                bail!("GraphQL errors: {body}");
            }
            Ok::<Value, anyhow::Error>(body)
        }
    };

    // The world: 3 official accounts; people's follows imported up to N accounts.
    let apps = sim.sim.apps();
    for oa in &apps {
        gql(
            "mutation($i: RegisterAppInput!) { registerApp(input: $i) { appid } }",
            json!({ "i": { "appid": oa.appid, "kind": "OFFICIAL_ACCOUNT", "name": oa.appid, "secret": oa.secret } }),
        )
        .await?;
    }
    let control = reqwest::Client::new();
    let mut rows = Vec::new();
    let mut person = 0;
    while rows.len() < args.accounts && person < 2000 {
        let p: Value = control
            .get(format!("{}/_sim/people/{person}", sim.base_url()))
            .send()
            .await?
            .json()
            .await?;
        for a in p["apps"].as_array().context("people shape")? {
            if a["following"] == true && rows.len() < args.accounts {
                rows.push(
                    json!({ "appid": a["appid"], "openid": a["openid"], "unionid": p["unionid"] }),
                );
            }
        }
        person += 1;
    }
    gql(
        "mutation($rows: [AccountInput!]!) { upsertAccounts(input: $rows) { created } }",
        json!({ "rows": rows }),
    )
    .await?;
    // Warm up: tokens fetched, code paths touched.
    gql(QUERY, json!({ "refresh": "FORCE" })).await?;
    control
        .post(format!("{}/_sim/faults", sim.base_url()))
        .json(
            &json!({ "path": "/cgi-bin/user/info/batchget", "latency_ms": args.wechat_latency_ms }),
        )
        .send()
        .await?;

    let appids: Vec<&str> = apps.iter().map(|a| a.appid.as_str()).collect();
    let by_app = json!({ "a0": appids[0], "a1": appids[1], "a2": appids[2] });
    let batchget = || {
        sim.sim
            .calls()
            .get("/cgi-bin/user/info/batchget")
            .copied()
            .unwrap_or(0)
    };
    // One timed run per iteration of each query: the accounts marked stale,
    // then read (and so refreshed) by the query.
    let mut timed = Vec::new();
    for (query, variables) in [(QUERY, json!({})), (BY_APP, by_app.clone())] {
        let mut samples = Vec::new();
        let calls_before = batchget();
        for _ in 0..args.iterations {
            // A refresh moments ago would count as done (see `refresh::RECENT`):
            // move the server's clock past it rather than wait.
            clock.advance(RECENT + chrono::Duration::milliseconds(100));
            account::Entity::update_many()
                .col_expr(
                    account::Column::RefreshedAt,
                    Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
                )
                .exec(state.db())
                .await?;
            let started = Instant::now();
            let body = gql(query, variables.clone()).await?;
            samples.push(started.elapsed());
            if body.to_string().contains("\"stale\":true") {
                bail!("an account stayed stale: the refresh did not complete");
            }
        }
        let calls = (batchget() - calls_before) as f64 / f64::from(args.iterations.max(1));
        timed.push((samples, calls));
    }
    let mut fresh = Vec::new();
    let mut cache_only = Vec::new();
    for _ in 0..args.iterations {
        let started = Instant::now();
        gql(QUERY, json!({})).await?;
        fresh.push(started.elapsed());
        let started = Instant::now();
        gql(QUERY, json!({ "refresh": "CACHE_ONLY" })).await?;
        cache_only.push(started.elapsed());
    }
    let statements = |policy: &'static str| {
        let gql = &gql;
        let state = &state;
        async move {
            let before = state.store().client_statements.get();
            gql(QUERY, json!({ "refresh": policy })).await?;
            Ok::<u64, anyhow::Error>(state.store().client_statements.get() - before)
        }
    };
    let (fresh_statements, cache_statements) = (
        statements("IF_STALE").await?,
        statements("CACHE_ONLY").await?,
    );
    let _ = std::fs::remove_dir_all(&dir);

    let round_trip = Duration::from_millis(args.wechat_latency_ms);
    println!("| scenario | runs | p50 | p90 | min | max |");
    println!("|---|---|---|---|---|---|");
    let names = [
        "refresh 100 stale accounts over 3 apps (one page of people)",
        "refresh the same accounts read by 3 root fields (one per app)",
    ];
    let mut notes = Vec::new();
    for (name, (samples, calls)) in names.into_iter().zip(&mut timed) {
        let p50 = row(name, samples);
        notes.push(format!(
            "{name}: p50 = {:.2} × the {} ms WeChat round trip (target < 1.3 ×); {calls:.1} batchget calls per query",
            p50.as_secs_f64() / round_trip.as_secs_f64(),
            args.wechat_latency_ms
        ));
    }
    row("page of people, profiles fresh, refresh on", &mut fresh);
    row("page of people, refresh off (CACHE_ONLY)", &mut cache_only);
    println!();
    for note in notes {
        println!("- {note}");
    }
    println!(
        "- SQL statements per query: {fresh_statements} with refresh on (fresh profiles), {cache_statements} with refresh off."
    );
    Ok(())
}
