//! `union360 bench audience`: the audience statistics over 4 official
//! accounts, at a small and at a large number of people.
//!
//! The identity graph is written through the identity service in bulk
//! (`upsert_accounts`, as a sync writes it, its tables' statistics refreshed
//! as a sync refreshes them), so the audience counts are kept the normal
//! way. Person `i` follows one to four of the apps: spread so
//! that the accounts add up to `--accounts` exactly, and the combinations
//! followed vary from person to person. After the first `--small-people`
//! persons, the `audience` query over the 4 apps is timed, through GraphQL
//! over HTTP (with an API key, as clients call it) and through the service;
//! then the graph grows to `--people` and the same is timed again. Each
//! stage checks the answer against what was written.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use chrono::Utc;
use serde_json::{Value, json};

use super::{BenchDb, mb, ms, peak_rss, quantile};
use crate::clock::Clock;
use crate::domain::{AppId, OpenId, ProfileSource, UnionId};
use crate::identity::{self, AccountUpsert, Follow, MAX_UPSERT_BATCH, Profile};
use crate::settings::DatabaseSettings;
use crate::startup::Application;

/// Options of `union360 bench audience`.
#[derive(Debug, Clone, clap::Args)]
pub struct AudienceArgs {
    /// People (persons, each with a UnionID) at the large stage.
    #[arg(long, default_value_t = 1_000_000)]
    pub people: u32,
    /// Accounts at the large stage: between `--people` and 4 × `--people`.
    #[arg(long, default_value_t = 3_000_000)]
    pub accounts: u64,
    /// People at the small stage (accounts in the same proportion).
    #[arg(long, default_value_t = 10_000)]
    pub small_people: u32,
    /// Timed queries per stage and way of asking.
    #[arg(long, default_value_t = 200)]
    pub iterations: u32,
    /// Identity writes in flight at once while building the graph.
    #[arg(long, default_value_t = 1)]
    pub writers: usize,
}

/// The official accounts counted.
const APPS: usize = 4;

const QUERY: &str = "query($appids: [String!]) { audience(appids: $appids) {
    day apps { appid name followers linkedFollowers unlinkedFollowers }
    distinctPeople { atLeast atMost } linkedPeople unlinkedFollowers
    pairs { appids people } followCounts { apps people }
    combinations { appids people } } }";

/// One stage's measurements.
struct Stage {
    people: u32,
    accounts: u64,
    build: Duration,
    http: Vec<Duration>,
    service: Vec<Duration>,
    statements: u64,
}

/// Runs the scenario and prints its report.
pub(super) async fn run(database: &DatabaseSettings, args: AudienceArgs) -> anyhow::Result<()> {
    let people = args.people.max(1);
    if args.accounts < u64::from(people) || args.accounts > APPS as u64 * u64::from(people) {
        bail!("--accounts must be between --people and {APPS} × --people");
    }
    if args.small_people > people {
        bail!("--small-people must not exceed --people");
    }
    let bench_db = BenchDb::new(database, "audience")?;
    let mut settings = bench_db.settings();
    settings.server.listen = "127.0.0.1:0".parse()?;
    let app = Application::build_with_clock(settings, Clock::system()).await?;
    let url = format!("http://{}/graphql", app.local_addr()?);
    let state = app.state().clone();
    tokio::spawn(app.run_until(std::future::pending()));
    bench_db.ensure_empty(state.db()).await?;

    let appids = super::register_official_accounts(&state, "wxbe0c4a0d1e0ce", APPS, false).await?;
    let http = super::unlimited_client(&state).await?;
    let variables = json!({ "appids": appids.iter().map(AppId::as_str).collect::<Vec<_>>() });

    let graph = Graph {
        people,
        accounts: args.accounts,
        appids: appids.clone(),
    };
    // Persons by the exact set of apps they follow (bit i = app i).
    let mut expected: BTreeMap<u32, u64> = BTreeMap::new();
    let mut stages = Vec::new();
    let mut built_to = 0;
    for target in [args.small_people, people] {
        if target <= built_to && !stages.is_empty() {
            continue;
        }
        let started = Instant::now();
        let written = graph
            .build(&state, built_to..target, args.writers, &mut expected)
            .await?;
        let build = started.elapsed();
        built_to = target;
        let accounts: u64 = expected
            .iter()
            .map(|(mask, n)| u64::from(mask.count_ones()) * n)
            .sum();
        eprintln!(
            "{target} people, {accounts} accounts: {written} accounts written in {:.1} s",
            build.as_secs_f64()
        );

        // Checked once: the answer is exact.
        let answer = crate::stats::audience(state.db(), Some(&appids), None).await?;
        check(&answer, &expected)?;
        let body = gql(&http, &url, &variables).await?;
        ensure!(
            body["data"]["audience"]["linkedPeople"] == json!(u64::from(target)),
            "GraphQL counts {} people, {target} expected",
            body["data"]["audience"]["linkedPeople"]
        );

        let mut stage = Stage {
            people: target,
            accounts,
            build,
            http: Vec::new(),
            service: Vec::new(),
            statements: 0,
        };
        for _ in 0..args.iterations {
            let started = Instant::now();
            gql(&http, &url, &variables).await?;
            stage.http.push(started.elapsed());
            let started = Instant::now();
            let answer = crate::stats::audience(state.db(), Some(&appids), None).await?;
            stage.service.push(started.elapsed());
            std::hint::black_box(answer);
        }
        let before = state.store().client_statements.get();
        crate::stats::audience(state.db(), Some(&appids), None).await?;
        stage.statements = state.store().client_statements.get() - before;
        stages.push(stage);
    }

    println!(
        "| database | people | accounts | built in | via | runs | p50 | p95 | min | max | SQL statements |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for stage in &mut stages {
        for (via, samples) in [
            ("GraphQL over HTTP", &mut stage.http),
            ("service", &mut stage.service),
        ] {
            samples.sort();
            println!(
                "| {} | {} | {} | {:.1} s | {via} | {} | {} | {} | {} | {} | {} |",
                bench_db.backend(),
                stage.people,
                stage.accounts,
                stage.build.as_secs_f64(),
                samples.len(),
                ms(quantile(samples, 0.5)),
                ms(quantile(samples, 0.95)),
                ms(quantile(samples, 0.0)),
                ms(quantile(samples, 1.0)),
                stage.statements,
            );
        }
    }
    println!();
    let combos = expected.len();
    println!(
        "- Answers checked against what was written: {combos} combinations of apps followed, every person counted once."
    );
    if let [small, large] = &stages[..] {
        let p50 = |s: &[Duration]| quantile(s, 0.5).as_secs_f64();
        let ratio = p50(&large.http) / p50(&small.http).max(1e-9);
        println!(
            "- GraphQL p50 at {} people / at {} people: {ratio:.2} × (target ≤ 2 ×); p95 at {} people {} (target ≤ 50 ms).",
            large.people,
            small.people,
            large.people,
            ms(quantile(&large.http, 0.95))
        );
        let rate = (large.accounts - small.accounts) as f64 / (large.build.as_secs_f64().max(1e-9));
        println!(
            "- Build rate of the large stage: {rate:.0} accounts/s through the identity service."
        );
    }
    println!("- Peak RSS (VmHWM): {}.", mb(peak_rss()));
    Ok(())
}

/// Sends the audience query; fails on GraphQL errors.
async fn gql(http: &reqwest::Client, url: &str, variables: &Value) -> anyhow::Result<Value> {
    let body: Value = http
        .post(url)
        .json(&json!({ "query": QUERY, "variables": variables }))
        .send()
        .await?
        .json()
        .await?;
    if body.get("errors").is_some() {
        bail!("GraphQL errors: {body}");
    }
    Ok(body)
}

/// Checks an answer against the persons written, by combination.
fn check(answer: &crate::stats::Audience, expected: &BTreeMap<u32, u64>) -> anyhow::Result<()> {
    let got: BTreeMap<u32, u64> = answer
        .combinations
        .iter()
        .map(|(members, n)| (members.iter().fold(0u32, |m, i| m | 1 << i), *n))
        .collect();
    ensure!(
        &got == expected,
        "the audience's combinations {got:?} differ from those written {expected:?}"
    );
    ensure!(
        answer.unlinked_followers == 0,
        "{} unlinked followers counted where none were written",
        answer.unlinked_followers
    );
    Ok(())
}

/// The generated identity graph.
struct Graph {
    people: u32,
    accounts: u64,
    appids: Vec<AppId>,
}

impl Graph {
    /// The apps person `i` follows, as a mask (bit i = app i): their share of
    /// the accounts (so that every person's add up to the total), one more
    /// or one less for some pairs of people, on apps that start at a place
    /// of their own.
    fn mask(&self, person: u32) -> u32 {
        let share = |p: u32| {
            let at = |p: u32| u64::from(p) * self.accounts / u64::from(self.people);
            (at(p + 1) - at(p)) as u32
        };
        let mut n = share(person);
        // Pairs (2j, 2j + 1) with odd j: the first follows one more, the second one less.
        let pair = person / 2;
        if pair % 2 == 1 && person / 2 * 2 + 1 < self.people {
            let (first, second) = (share(pair * 2), share(pair * 2 + 1));
            if first < APPS as u32 && second > 1 {
                n = if person.is_multiple_of(2) {
                    n + 1
                } else {
                    n - 1
                };
            }
        }
        let start = person.wrapping_mul(2_654_435_761) >> 30;
        (0..n).fold(0, |m, k| m | 1 << ((start + k) % APPS as u32))
    }

    /// Writes persons `range` and their accounts, a few hundred persons per
    /// call; counts them into `expected`; returns the accounts written.
    async fn build(
        &self,
        state: &crate::state::AppState,
        range: std::ops::Range<u32>,
        writers: usize,
        expected: &mut BTreeMap<u32, u64>,
    ) -> anyhow::Result<u64> {
        let mut written = 0;
        for person in range.clone() {
            let mask = self.mask(person);
            *expected.entry(mask).or_default() += 1;
            written += u64::from(mask.count_ones());
        }
        let now = Utc::now();
        let db = state.db();
        let per_call = (MAX_UPSERT_BATCH / APPS) as u32;
        let end = range.end;
        let calls = range.step_by(per_call as usize).map(|from| async move {
            let rows = self.rows(from..(from + per_call).min(end), now)?;
            identity::upsert_accounts(db, rows, ProfileSource::UserInfo, now).await?;
            Ok(())
        });
        super::write_graph(db, calls, writers).await?;
        Ok(written)
    }

    /// The accounts of persons `range`, as a fetch from WeChat reports them.
    fn rows(
        &self,
        range: std::ops::Range<u32>,
        now: chrono::DateTime<Utc>,
    ) -> anyhow::Result<Vec<AccountUpsert>> {
        let mut rows = Vec::with_capacity(range.len() * APPS);
        for person in range {
            let mask = self.mask(person);
            let unionid = UnionId::parse(format!("oU{person:026}"))?;
            for (app, appid) in self.appids.iter().enumerate() {
                if mask & (1 << app) == 0 {
                    continue;
                }
                rows.push(AccountUpsert {
                    appid: appid.clone(),
                    openid: OpenId::parse(format!("o{app}{person:026}"))?,
                    unionid: Some(unionid.clone()),
                    snapshot_user: false,
                    profile: Profile::default(),
                    follow: Follow {
                        subscribed: Some(true),
                        subscribe_time: Some(now - chrono::Duration::days(i64::from(person % 900))),
                        subscribe_scene: Some("ADD_SCENE_QR_CODE".to_owned()),
                        ..Follow::default()
                    },
                    refreshed: true,
                });
            }
        }
        Ok(rows)
    }
}
