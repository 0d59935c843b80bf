//! `union360 bench read`: the read path under load, alone or side by side
//! with PostGraphile v4 on the same PostgreSQL tables (`--peer postgraphile`).
//!
//! The identity graph (`--people` persons, `--accounts` fresh accounts on 3
//! apps, with nicknames and cities) is written through the identity service
//! in bulk, and the database analyzed. Then `union360 serve` runs as a process of its own (this binary),
//! and with `--peer postgraphile` so does PostGraphile v4 (`npm install`ed
//! into a cache folder, `--cluster-workers 2`). Each server gets, in turn
//! (alternating, `--rounds` times), `--connections` clients sending for
//! `--seconds` after a warm-up:
//!
//! - Q1, one person by UnionID with their accounts and apps, the UnionID
//!   varied per request;
//! - Q2, a page of 100 people with their accounts and apps.
//!
//! Every response body is read and checked (a 200 with `errors`, or without
//! the person asked for, is a failure). The report gives requests per second,
//! p50 and p99, failures, and PostgreSQL transactions per request (from
//! `pg_stat_database`; union360 runs each statement in a transaction of its
//! own, so for it that is SQL statements), and the ratios.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use super::{BenchDb, ms, quantile};
use crate::clock::Clock;
use crate::domain::{OpenId, ProfileSource, UnionId};
use crate::identity::{self, AccountUpsert, Follow, MAX_UPSERT_BATCH, Profile};
use crate::settings::DatabaseSettings;
use crate::startup::Application;

/// The PostGraphile release compared against.
const POSTGRAPHILE: &str = "postgraphile@4.14.1";

/// Options of `union360 bench read`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReadArgs {
    /// Persons (each with a UnionID).
    #[arg(long, default_value_t = 100_000)]
    pub people: u32,
    /// Accounts, on 3 apps: between 2 × and 3 × `--people`.
    #[arg(long, default_value_t = 250_000)]
    pub accounts: u64,
    /// Clients sending at once.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Measured seconds per server, query and round (after 2 s of warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Rounds, each running every server in turn.
    #[arg(long, default_value_t = 2)]
    pub rounds: u32,
    /// Another server to run side by side on the same tables (PostgreSQL only).
    #[arg(long, value_enum)]
    pub peer: Option<Peer>,
}

/// A server compared against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Peer {
    /// PostGraphile v4 (needs Node.js and npm), with 2 cluster workers.
    Postgraphile,
}

/// The apps the accounts are in.
const APPS: usize = 3;

/// The two queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Query {
    Q1,
    Q2,
}

/// A server under test.
struct Server {
    name: &'static str,
    url: String,
    client: reqwest::Client,
    dialect: Dialect,
    _process: Running,
}

#[derive(Debug, Clone, Copy)]
enum Dialect {
    Union360,
    Postgraphile,
}

impl Dialect {
    fn body(self, query: Query, unionid: &str) -> String {
        let text = match (self, query) {
            (Self::Union360, Query::Q1) => {
                "query Q1($u: String!) { person(unionid: $u) { unionid accounts { openid nickname city app { name } } } }"
            }
            (Self::Union360, Query::Q2) => {
                "query Q2 { people(first: 100) { nodes { unionid accounts { openid nickname city app { name } } } } }"
            }
            (Self::Postgraphile, Query::Q1) => {
                "query Q1($u: String!) { personByUnionid(unionid: $u) { unionid accountsByPersonId { nodes { openid nickname city appByAppId { name } } } } }"
            }
            (Self::Postgraphile, Query::Q2) => {
                "query Q2 { allPeople(first: 100) { nodes { unionid accountsByPersonId { nodes { openid nickname city appByAppId { name } } } } } }"
            }
        };
        json!({ "query": text, "variables": { "u": unionid } }).to_string()
    }

    /// Whether `body` is a full answer to `query` (for `unionid`).
    fn answered(self, query: Query, body: &Value, unionid: &str) -> bool {
        if body.get("errors").is_some() {
            return false;
        }
        let data = &body["data"];
        let (accounts, app) = match self {
            Self::Union360 => ("accounts", "app"),
            Self::Postgraphile => ("accountsByPersonId", "appByAppId"),
        };
        let person_ok = |person: &Value| {
            let list = match self {
                Self::Union360 => &person[accounts],
                Self::Postgraphile => &person[accounts]["nodes"],
            };
            list.as_array().is_some_and(|accounts| {
                !accounts.is_empty()
                    && accounts
                        .iter()
                        .all(|a| a["nickname"].is_string() && a[app]["name"].is_string())
            })
        };
        match (self, query) {
            (Self::Union360, Query::Q1) => {
                data["person"]["unionid"] == unionid && person_ok(&data["person"])
            }
            (Self::Postgraphile, Query::Q1) => {
                data["personByUnionid"]["unionid"] == unionid && person_ok(&data["personByUnionid"])
            }
            (Self::Union360, Query::Q2) => page_ok(&data["people"]["nodes"], person_ok),
            (Self::Postgraphile, Query::Q2) => page_ok(&data["allPeople"]["nodes"], person_ok),
        }
    }
}

fn page_ok(nodes: &Value, person_ok: impl Fn(&Value) -> bool) -> bool {
    nodes
        .as_array()
        .is_some_and(|nodes| nodes.len() == 100 && nodes.iter().all(person_ok))
}

/// A child process, killed with its process group when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(pid) = self.0.id() {
            // PostGraphile's cluster workers share the group of their master.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.0.start_kill();
    }
}

/// One measured run.
struct Run {
    server: &'static str,
    query: Query,
    round: u32,
    elapsed: Duration,
    latencies: Vec<Duration>,
    failed: u64,
    transactions: Option<f64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs the scenario and prints its report.
pub(super) async fn run(database: &DatabaseSettings, args: ReadArgs) -> anyhow::Result<()> {
    let people = args.people.max(100);
    if args.accounts < 2 * u64::from(people) || args.accounts > APPS as u64 * u64::from(people) {
        bail!("--accounts must be between 2 × and {APPS} × --people");
    }
    let bench_db = BenchDb::new(database, "read")?;
    if args.peer.is_some() && bench_db.dir.is_some() {
        bail!("--peer needs PostgreSQL: give --database-url postgres://… (an empty database)");
    }
    let mut settings = bench_db.settings();
    settings.server.listen = "127.0.0.1:0".parse()?;
    let master_key = settings
        .database
        .master_key
        .clone()
        .context("the bench settings have a master key")?;
    let app = Application::build_with_clock(settings, Clock::system()).await?;
    let state = app.state().clone();
    bench_db.ensure_empty(state.db()).await?;

    let started = Instant::now();
    let unionids = build(&state, people, args.accounts).await?;
    eprintln!(
        "{people} people, {} accounts written in {:.1} s",
        args.accounts,
        started.elapsed().as_secs_f64()
    );
    // Planner statistics for the new rows, as autovacuum would gather them
    // in time (some servers run without it).
    sea_orm::ConnectionTrait::execute_unprepared(state.db(), "ANALYZE").await?;
    let union360_client = super::unlimited_client(&state).await?;
    drop(app);
    drop(state);

    let mut servers = vec![start_union360(&bench_db.url, &master_key, union360_client).await?];
    if args.peer == Some(Peer::Postgraphile) {
        servers.push(start_postgraphile(&bench_db.url).await?);
    }
    let unionids = Arc::new(unionids);
    let pg = if bench_db.dir.is_none() {
        Some(crate::store::connect(&bench_db.url).await?.db)
    } else {
        None
    };

    let mut runs = Vec::new();
    for round in 1..=args.rounds.max(1) {
        for query in [Query::Q1, Query::Q2] {
            for server in &servers {
                drive(
                    server,
                    query,
                    &unionids,
                    args.connections,
                    Duration::from_secs(2),
                )
                .await;
                let before = transactions(pg.as_ref()).await;
                let (elapsed, latencies, failed) = drive(
                    server,
                    query,
                    &unionids,
                    args.connections,
                    Duration::from_secs(args.seconds),
                )
                .await;
                let after = transactions(pg.as_ref()).await;
                let transactions = before
                    .zip(after)
                    .map(|(b, a)| (a - b) as f64 / (latencies.len() as f64).max(1.0));
                let run = Run {
                    server: server.name,
                    query,
                    round,
                    elapsed,
                    latencies,
                    failed,
                    transactions,
                };
                eprintln!(
                    "round {round}, {query:?}, {}: {:.0} req/s, {} failed",
                    run.server,
                    run.rate(),
                    run.failed
                );
                runs.push(run);
            }
        }
    }
    report(&bench_db, &args, &mut runs);
    Ok(())
}

/// Writes `people` persons with `accounts` fresh accounts on 3 apps;
/// returns the UnionIDs.
async fn build(
    state: &crate::state::AppState,
    people: u32,
    accounts: u64,
) -> anyhow::Result<Vec<String>> {
    let appids = super::register_official_accounts(state, "wxbe0c4ead0000a", APPS, false).await?;
    // The first `three` persons have an account in every app, the others in two.
    let three = (accounts - 2 * u64::from(people)) as u32;
    let now = Utc::now();
    let per_call = (MAX_UPSERT_BATCH / APPS) as u32;
    let db = state.db();
    let appids = &appids;
    let calls = (0..people)
        .step_by(per_call as usize)
        .map(|from| async move {
            let mut rows = Vec::new();
            for person in from..(from + per_call).min(people) {
                let unionid = UnionId::parse(unionid_of(person))?;
                for (app, appid) in appids.iter().enumerate() {
                    if person >= three && app == (person % APPS as u32) as usize {
                        continue;
                    }
                    rows.push(AccountUpsert {
                        appid: appid.clone(),
                        openid: OpenId::parse(format!("o{app}{person:026}"))?,
                        unionid: Some(unionid.clone()),
                        snapshot_user: false,
                        profile: Profile {
                            nickname: Some(format!("Nick {person}")),
                            city: Some("Shenzhen".to_owned()),
                            ..Profile::default()
                        },
                        follow: Follow {
                            subscribed: Some(true),
                            ..Follow::default()
                        },
                        refreshed: true,
                    });
                }
            }
            identity::upsert_accounts(db, rows, ProfileSource::UserInfo, now).await?;
            Ok(())
        });
    super::write_graph(db, calls, 2).await?;
    Ok((0..people).map(unionid_of).collect())
}

fn unionid_of(person: u32) -> String {
    format!("oU{person:026}")
}

/// A free port on 127.0.0.1.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `union360 serve` (this binary) on `url`.
async fn start_union360(
    url: &str,
    master_key: &SecretString,
    client: reqwest::Client,
) -> anyhow::Result<Server> {
    let port = free_port()?;
    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .args(["--database-url", url, "serve", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env("UNION360_MASTER_KEY", master_key.expose_secret())
        .env("RUST_LOG", "warn")
        .env_remove("UNION360_LISTEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .context("starting union360 serve")?;
    let process = Running(child);
    let base = format!("http://127.0.0.1:{port}");
    wait_until(|| {
        let url = format!("{base}/healthz");
        async move {
            reqwest::get(url)
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await
    .context("union360 did not start")?;
    Ok(Server {
        name: "union360",
        url: format!("{base}/graphql"),
        client,
        dialect: Dialect::Union360,
        _process: process,
    })
}

/// Installs PostGraphile v4 into the cache folder (once) and starts it on `url`.
async fn start_postgraphile(url: &str) -> anyhow::Result<Server> {
    let folder = cache_folder().join("postgraphile-4");
    let cli = folder.join("node_modules/postgraphile/cli.js");
    if !cli.exists() {
        std::fs::create_dir_all(&folder)?;
        eprintln!(
            "installing {POSTGRAPHILE} with npm into {}",
            folder.display()
        );
        let status = Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(&folder)
            .arg(POSTGRAPHILE)
            .stdin(Stdio::null())
            .status()
            .await
            .context("running npm (is Node.js installed?)")?;
        ensure!(status.success(), "npm install {POSTGRAPHILE} failed");
    }
    let port = free_port()?;
    let child = Command::new("node")
        .arg(&cli)
        .args([
            "--connection",
            url,
            "--schema",
            "public",
            "--host",
            "127.0.0.1",
        ])
        .args(["--port", &port.to_string()])
        .args(["--cluster-workers", "2", "--disable-query-log"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .context("starting PostGraphile")?;
    let process = Running(child);
    let endpoint = format!("http://127.0.0.1:{port}/graphql");
    let client = reqwest::Client::new();
    wait_until(|| {
        let (client, endpoint) = (client.clone(), endpoint.clone());
        async move {
            client
                .post(endpoint)
                .header("content-type", "application/json")
                .body(r#"{"query":"{ __typename }"}"#)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await
    .context("PostGraphile did not start")?;
    Ok(Server {
        name: "PostGraphile 4",
        url: endpoint,
        client,
        dialect: Dialect::Postgraphile,
        _process: process,
    })
}

/// `$XDG_CACHE_HOME/union360`, else `~/.cache/union360`, else the temporary folder's.
fn cache_folder() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("union360")
}

/// Polls `ready` for up to 60 s.
async fn wait_until<F, Fut>(ready: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if ready().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("not ready within 60 s")
}

/// Committed and rolled-back transactions of the current PostgreSQL database.
async fn transactions(pg: Option<&sea_orm::DatabaseConnection>) -> Option<i64> {
    use sea_orm::{ConnectionTrait, Statement};
    let pg = pg?;
    // The statistics collector reports with a short delay.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let row = pg
        .query_one_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT (xact_commit + xact_rollback)::bigint AS n FROM pg_stat_database WHERE datname = current_database()",
        ))
        .await
        .ok()??;
    row.try_get::<i64>("", "n").ok()
}

/// `connections` clients sending `query` to `server` for `duration`;
/// returns the time taken, the latencies of full answers and the failures.
async fn drive(
    server: &Server,
    query: Query,
    unionids: &Arc<Vec<String>>,
    connections: usize,
    duration: Duration,
) -> (Duration, Vec<Duration>, u64) {
    let started = Instant::now();
    let deadline = started + duration;
    let failed = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections.max(1) {
        let (client, url, dialect) = (server.client.clone(), server.url.clone(), server.dialect);
        let (unionids, failed, next) = (unionids.clone(), failed.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                // A different person each time, spread over the whole table.
                let n = next.fetch_add(1, Ordering::Relaxed);
                let unionid =
                    &unionids[(n.wrapping_mul(2_654_435_761) % unionids.len() as u64) as usize];
                let body = dialect.body(query, unionid);
                let sent = Instant::now();
                let answer = async {
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .ok()?;
                    if !response.status().is_success() {
                        return None;
                    }
                    serde_json::from_slice::<Value>(&response.bytes().await.ok()?).ok()
                }
                .await;
                match answer {
                    Some(body) if dialect.answered(query, &body, unionid) => {
                        latencies.push(sent.elapsed());
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        if let Ok(mut own) = task.await {
            latencies.append(&mut own);
        }
    }
    (started.elapsed(), latencies, failed.load(Ordering::Relaxed))
}

/// Prints the runs, then each query's totals and ratios.
fn report(bench_db: &BenchDb, args: &ReadArgs, runs: &mut [Run]) {
    println!(
        "{} database, {} people, {} accounts on {APPS} apps; {} connections, {} s per run after 2 s of warm-up.",
        bench_db.backend(),
        args.people,
        args.accounts,
        args.connections,
        args.seconds
    );
    println!();
    println!(
        "| query | server | round | req/s | p50 | p99 | failed | PostgreSQL transactions per request |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for run in runs.iter_mut() {
        run.latencies.sort();
        println!(
            "| {:?} | {} | {} | {:.0} | {} | {} | {} | {} |",
            run.query,
            run.server,
            run.round,
            run.rate(),
            ms(quantile(&run.latencies, 0.5)),
            ms(quantile(&run.latencies, 0.99)),
            run.failed,
            run.transactions
                .map_or("n/a".to_owned(), |t| format!("{t:.2}")),
        );
    }
    println!();
    for query in [Query::Q1, Query::Q2] {
        let total = |server: &str| {
            let mine: Vec<&Run> = runs
                .iter()
                .filter(|r| r.query == query && r.server == server)
                .collect();
            let requests: usize = mine.iter().map(|r| r.latencies.len()).sum();
            let seconds: f64 = mine.iter().map(|r| r.elapsed.as_secs_f64()).sum();
            let mut all: Vec<Duration> = mine.iter().flat_map(|r| r.latencies.clone()).collect();
            all.sort();
            (requests as f64 / seconds.max(1e-9), quantile(&all, 0.99))
        };
        let (ours, our_p99) = total("union360");
        match args.peer {
            Some(_) => {
                let (theirs, their_p99) = total("PostGraphile 4");
                println!(
                    "- {query:?}: union360 {ours:.0} req/s, p99 {}; PostGraphile {theirs:.0} req/s, p99 {}: {:.2} × the requests per second (target ≥ 3 ×), p99 {:.2} of theirs (target ≤ 0.33).",
                    ms(our_p99),
                    ms(their_p99),
                    ours / theirs.max(1e-9),
                    our_p99.as_secs_f64() / their_p99.as_secs_f64().max(1e-9),
                );
            }
            None => println!(
                "- {query:?}: union360 {ours:.0} req/s, p99 {}.",
                ms(our_p99)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(unionid: &str) -> Value {
        json!({ "unionid": unionid, "accounts": [{ "openid": "o", "nickname": "N", "city": "C", "app": { "name": "A" } }] })
    }

    #[test]
    fn only_full_answers_count() {
        let ours = Dialect::Union360;
        assert!(ours.answered(
            Query::Q1,
            &json!({ "data": { "person": person("u") } }),
            "u"
        ));
        // Another person, none, or errors beside the data: failures.
        assert!(!ours.answered(
            Query::Q1,
            &json!({ "data": { "person": person("v") } }),
            "u"
        ));
        assert!(!ours.answered(Query::Q1, &json!({ "data": { "person": null } }), "u"));
        assert!(!ours.answered(
            Query::Q1,
            &json!({ "data": { "person": person("u") }, "errors": [{ "message": "x" }] }),
            "u"
        ));
        let page = |n: usize| json!({ "data": { "people": { "nodes": vec![person("u"); n] } } });
        assert!(ours.answered(Query::Q2, &page(100), ""));
        assert!(!ours.answered(Query::Q2, &page(99), ""));
        // A nickname withheld (null) is not a full answer.
        let mut withheld = page(100);
        withheld["data"]["people"]["nodes"][7]["accounts"][0]["nickname"] = Value::Null;
        assert!(!ours.answered(Query::Q2, &withheld, ""));

        let theirs = Dialect::Postgraphile;
        let their_person = json!({ "unionid": "u", "accountsByPersonId": { "nodes": [{ "nickname": "N", "appByAppId": { "name": "A" } }] } });
        assert!(theirs.answered(
            Query::Q1,
            &json!({ "data": { "personByUnionid": their_person } }),
            "u"
        ));
        assert!(!theirs.answered(
            Query::Q1,
            &json!({ "data": { "personByUnionid": null } }),
            "u"
        ));
    }
}
