//! `union360 bench`: the benchmark harness.
//!
//! Each scenario runs the real code in one process: the services on a
//! fresh database (a temporary SQLite file, or the empty PostgreSQL
//! database `--database-url` names) and an in-process WeChat simulator
//! reached over loopback HTTP. Each prints a Markdown report to paste into
//! `BENCHMARKS.md` with the command that made it.
//!
//! - [`refresh`] (also bare `union360 bench`): lazy refresh of stale
//!   profiles through GraphQL;
//! - [`sync`]: a follower sync of one official account with many followers
//!   and a set latency on every WeChat call;
//! - [`audience`]: the audience statistics over a large identity graph,
//!   and over a small one, to show the cost does not grow with the audience;
//! - [`read`]: the read path under load, alone or beside PostGraphile;
//! - [`push`]: WeChat's message pushes to the callback, under load.

mod audience;
mod push;
mod read;
mod refresh;
mod sync;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use futures::StreamExt;
use secrecy::ExposeSecret;

pub use audience::AudienceArgs;
pub use push::PushArgs;
pub use read::{Peer, ReadArgs};
pub use refresh::RefreshArgs;
pub use sync::SyncBenchArgs;

use crate::crypto::MasterKey;
use crate::keys::{KeyLimits, MAX_LIMIT, NewKey, Scopes};
use crate::settings::{DatabaseSettings, Settings};
use crate::store::{self, SqliteLocation};

/// Options of `union360 bench`: a scenario, or the refresh scenario's
/// options alone (bare `union360 bench` runs `refresh`).
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// The scenario to run (default: refresh).
    #[command(subcommand)]
    pub scenario: Option<Scenario>,
    /// Options of the refresh scenario when no scenario is named.
    #[command(flatten)]
    pub refresh: RefreshArgs,
}

/// The benchmark scenarios.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Scenario {
    /// Lazy refresh: GraphQL queries reading stale accounts, which WeChat
    /// answers after a set latency (SQLite only).
    Refresh(RefreshArgs),
    /// Follower sync: every follower of an official account imported
    /// through the sync service, with a set latency on every WeChat call.
    /// On SQLite, or on the empty PostgreSQL database `--database-url` names.
    Sync(SyncBenchArgs),
    /// Audience statistics over 4 official accounts, at a small and at a
    /// large number of people, through GraphQL over HTTP and the service.
    /// On SQLite, or on the empty PostgreSQL database `--database-url` names.
    Audience(AudienceArgs),
    /// The read path under load: one person by UnionID, and a page of 100
    /// people, each with their accounts; with `--peer postgraphile`, side by
    /// side with PostGraphile v4 on the same PostgreSQL tables.
    Read(ReadArgs),
    /// WeChat's message pushes: signed, safe-mode follows and unfollows
    /// (and retries) sent to the callback by many connections at once, then
    /// checked: each applied once, none lost. On SQLite, or on the empty
    /// PostgreSQL database `--database-url` names.
    Push(PushArgs),
}

/// Runs the scenario `args` names.
pub async fn run(database: DatabaseSettings, args: BenchArgs) -> anyhow::Result<()> {
    match args.scenario {
        None => refresh::run(args.refresh).await,
        Some(Scenario::Refresh(args)) => refresh::run(args).await,
        Some(Scenario::Sync(args)) => sync::run(&database, args).await,
        Some(Scenario::Audience(args)) => audience::run(&database, args).await,
        Some(Scenario::Read(args)) => read::run(&database, args).await,
        Some(Scenario::Push(args)) => push::run(&database, args).await,
    }
}

/// Where a scenario writes: the PostgreSQL database given, or a fresh SQLite
/// file in a temporary directory (removed when done).
struct BenchDb {
    url: String,
    dir: Option<PathBuf>,
}

impl BenchDb {
    /// The database of `database` when it is PostgreSQL; else a new SQLite file.
    fn new(database: &DatabaseSettings, scenario: &str) -> anyhow::Result<Self> {
        let url = &database.database_url;
        if store::sqlite_location(url) == SqliteLocation::NotSqlite {
            return Ok(Self {
                url: url.clone(),
                dir: None,
            });
        }
        let dir =
            std::env::temp_dir().join(format!("union360-bench-{scenario}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            url: format!("sqlite://{}?mode=rwc", dir.join("bench.db").display()),
            dir: Some(dir),
        })
    }

    /// "SQLite" or "PostgreSQL".
    fn backend(&self) -> &'static str {
        if self.dir.is_some() {
            "SQLite"
        } else {
            "PostgreSQL"
        }
    }

    /// Settings on this database, with a throw-away master key.
    fn settings(&self) -> Settings {
        let mut settings = Settings::new(self.url.clone());
        settings.database.master_key = Some(MasterKey::generate().1);
        settings
    }

    /// Fails unless the database holds no app yet (a benchmark needs a fresh one).
    async fn ensure_empty(&self, db: &sea_orm::DatabaseConnection) -> anyhow::Result<()> {
        use sea_orm::{EntityTrait, PaginatorTrait};
        let apps = entity::app::Entity::find().count(db).await?;
        if apps > 0 {
            bail!(
                "the database {} already holds {apps} apps: benchmarks need an empty database",
                store::redact(&self.url)
            );
        }
        Ok(())
    }
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Registers `n` official accounts named `Official account {i}`, with appids
/// `{prefix}{i:03}` (`prefix`: `wx` and 13 hexadecimal digits), and with
/// `callback` the token and EncodingAESKey of [`callback_secrets`].
async fn register_official_accounts(
    state: &crate::state::AppState,
    prefix: &str,
    n: usize,
    callback: bool,
) -> anyhow::Result<Vec<crate::domain::AppId>> {
    let mut appids = Vec::with_capacity(n);
    for i in 0..n {
        let appid = crate::domain::AppId::parse(format!("{prefix}{i:03}"))?;
        state
            .apps()
            .register(crate::apps::NewApp {
                appid: appid.clone(),
                kind: crate::domain::AppKind::OfficialAccount,
                name: format!("Official account {i}"),
                secret: secrecy::SecretString::from(format!("{i:032}")),
                callback_token: callback
                    .then(|| secrecy::SecretString::from(callback_secrets(i).0)),
                aes_key: callback.then(|| secrecy::SecretString::from(callback_secrets(i).1)),
                freshness_ttl_secs: None,
            })
            .await?;
        appids.push(appid);
    }
    Ok(appids)
}

/// Runs `calls` (each one write of the identity graph), `writers` at a
/// time, and refreshes the tables' statistics each time the calls done
/// double, as a sync does as its pages double: without them, PostgreSQL
/// plans the lookups by key of a table grown from nothing as scans of all
/// of it.
async fn write_graph<F>(
    db: &sea_orm::DatabaseConnection,
    calls: impl Iterator<Item = F>,
    writers: usize,
) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut writes = futures::stream::iter(calls).buffer_unordered(writers.max(1));
    let mut done: u64 = 0;
    while let Some(result) = writes.next().await {
        result?;
        done += 1;
        if done.is_power_of_two() {
            store::refresh_statistics(db, &["account", "person"]).await?;
        }
    }
    Ok(())
}

/// The callback token and EncodingAESKey of the `i`th official account a
/// benchmark registers.
fn callback_secrets(i: usize) -> (String, String) {
    (
        format!("benchtoken{i}"),
        format!("{:0>43}", format!("bench{i}")),
    )
}

/// A new key with every scope and limits the harness never reaches.
async fn unlimited_key(state: &crate::state::AppState) -> anyhow::Result<String> {
    let key = state
        .keys()
        .create(NewKey {
            name: "bench".to_owned(),
            scopes: Scopes::all(),
            limits: KeyLimits {
                rate_per_sec: Some(MAX_LIMIT),
                burst: Some(MAX_LIMIT),
                max_concurrent: Some(MAX_LIMIT),
            },
        })
        .await?;
    Ok(key.key.expose_secret().to_owned())
}

/// An HTTP client that sends an [`unlimited_key`] with every request.
async fn unlimited_client(state: &crate::state::AppState) -> anyhow::Result<reqwest::Client> {
    let key = unlimited_key(state).await?;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse()?,
    );
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .build()?)
}

/// The process's peak resident set (`VmHWM`), in bytes, where the system says.
fn peak_rss() -> Option<u64> {
    proc_status_kib("VmHWM:").map(|k| k * 1024)
}

/// The process's resident set now (`VmRSS`), in bytes, where the system says.
fn current_rss() -> Option<u64> {
    proc_status_kib("VmRSS:").map(|k| k * 1024)
}

fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Bytes as MB (10^6), or "n/a".
fn mb(bytes: Option<u64>) -> String {
    bytes.map_or("n/a".to_owned(), |b| format!("{:.1} MB", b as f64 / 1e6))
}

/// A duration in milliseconds, one decimal.
fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The `q` quantile (0..1) of sorted samples (nearest rank).
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Prints one row of p50, p90, min and max; returns the median.
fn row(name: &str, samples: &mut [Duration]) -> Duration {
    samples.sort();
    let at = |q: f64| quantile(samples, q);
    println!(
        "| {name} | {} | {} | {} | {} | {} |",
        samples.len(),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.0)),
        ms(at(1.0))
    );
    at(0.5)
}
