//! `union360 sync`: import the followers of official accounts from WeChat,
//! with a progress bar on a terminal and plain progress lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::apps;
use crate::clock::Clock;
use crate::domain::{AppId, AppKind};
use crate::ingest::sync::{JobState, Progress, Syncer};
use crate::settings::{
    DEFAULT_WECHAT_API_BASE, DatabaseSettings, ServerSettings, Settings, SyncArgs,
};
use crate::{startup, store};

/// `union360 sync …`
#[derive(Debug, Args)]
pub struct SyncCommand {
    /// Database and key settings.
    #[command(flatten)]
    pub database: DatabaseSettings,
    /// The official account to sync (an appid; repeat for several).
    #[arg(long = "app", required_unless_present = "all")]
    pub apps: Vec<String>,
    /// Sync every registered official account.
    #[arg(long, conflicts_with = "apps")]
    pub all: bool,
    /// Base URL of the WeChat API (point it at `union360 simulator` to develop offline).
    #[arg(long, env = "WECHAT_API_BASE", default_value = DEFAULT_WECHAT_API_BASE)]
    pub wechat_api_base: String,
    /// How syncs run.
    #[command(flatten)]
    pub sync: SyncArgs,
}

/// Runs `union360 sync`.
pub(super) async fn run(command: SyncCommand) -> anyhow::Result<()> {
    let database = command.database.clone();
    let server = ServerSettings {
        wechat_api_base: command.wechat_api_base.clone(),
        sync: command.sync.clone(),
        ..ServerSettings::default()
    };
    let state = startup::build_state(Settings { database, server }, Clock::system()).await?;
    let appids = if command.all {
        let all: Vec<AppId> = apps::list(state.db())
            .await?
            .into_iter()
            .filter(|a| apps::kind_of(a) == Some(AppKind::OfficialAccount))
            .filter_map(|a| AppId::parse(a.appid).ok())
            .collect();
        if all.is_empty() {
            bail!(
                "no official account is registered: register one with `union360 app register` first"
            );
        }
        all
    } else {
        command
            .apps
            .iter()
            .map(|a| AppId::parse(a.as_str()).with_context(|| format!("--app {a}")))
            .collect::<anyhow::Result<_>>()?
    };
    let mut failed = 0;
    for appid in &appids {
        if !sync_one(state.syncer(), appid).await? {
            failed += 1;
        }
    }
    store::close(state.db()).await?;
    if failed > 0 {
        bail!("{failed} of {} syncs did not finish", appids.len());
    }
    Ok(())
}

/// Syncs one app to the end, showing progress; whether it succeeded.
pub async fn sync_one(syncer: &Syncer, appid: &AppId) -> anyhow::Result<bool> {
    let (job, _) = syncer.request(appid, "cli").await?;
    let shown = Shown::new(appid);
    let progress = |p: &Progress| shown.update(p);
    let job = match syncer.run_next(Some(job.id), &progress).await? {
        Some(job) => job,
        None => {
            // Another instance holds it, or it waits for WeChat's quota.
            let job = syncer.job(job.id).await?.context("the sync job vanished")?;
            shown.finish();
            match JobState::from_stored(&job.state) {
                Some(JobState::Paused) => eprintln!(
                    "{appid}: sync job {} is paused until {}: {}",
                    job.id,
                    job.resume_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                    job.error_message.unwrap_or_default()
                ),
                _ => eprintln!(
                    "{appid}: sync job {} is {} in another process (its lease runs until {}); follow it with the `syncJob` query",
                    job.id,
                    job.state.to_lowercase(),
                    job.lease_until.map(|t| t.to_rfc3339()).unwrap_or_default()
                ),
            }
            return Ok(false);
        }
    };
    shown.finish();
    let state = JobState::from_stored(&job.state);
    let summary = format!(
        "{appid}: {} followers listed, {} profiles imported ({} linked by UnionID, {} without a profile), {} marked as no longer following",
        job.listed, job.imported, job.linked, job.failed, job.unfollowed
    );
    match state {
        Some(JobState::Succeeded) => {
            println!("{summary}");
            Ok(true)
        }
        Some(JobState::Paused) => {
            eprintln!(
                "{summary}; paused until {}: {} (a running server resumes it then, or run this again)",
                job.resume_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                job.error_message.unwrap_or_default()
            );
            Ok(false)
        }
        _ => {
            eprintln!(
                "{summary}; failed: {}",
                job.error_message.unwrap_or_default()
            );
            Ok(false)
        }
    }
}

/// Progress as shown: a bar on a terminal, a line every few seconds otherwise.
struct Shown {
    bar: Option<ProgressBar>,
    appid: String,
    started: Instant,
    last_line: Mutex<Option<Instant>>,
}

impl Shown {
    fn new(appid: &AppId) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} followers, {msg} ({per_sec}, ETA {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(appid.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            appid: appid.to_string(),
            started: Instant::now(),
            last_line: Mutex::new(None),
        }
    }

    fn update(&self, p: &Progress) {
        let done = u64::try_from(p.imported + p.failed).unwrap_or(0);
        let total = p.total.and_then(|t| u64::try_from(t).ok());
        let message = if p.finishing {
            "marking followers who left".to_owned()
        } else {
            format!("{} pages, {} linked", p.pages, p.linked)
        };
        if let Some(bar) = &self.bar {
            if let Some(total) = total {
                bar.set_length(total.max(done));
            }
            bar.set_position(done);
            bar.set_message(message);
            return;
        }
        let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
        let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(2)) || p.finishing;
        if !due {
            return;
        }
        *last = Some(Instant::now());
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        eprintln!(
            "{}: {done}/{} followers, {message}, {:.0}/s",
            self.appid,
            total.map_or("?".to_owned(), |t| t.to_string()),
            done as f64 / secs
        );
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
