//! Follower sync: every follower of an official account imported from
//! WeChat, as a durable job.
//!
//! A job lists the followers with `user/get` (10,000 openids a page, the
//! data-less page after the last one handled), fetches their profiles with
//! `user/info/batchget` (100 a call, several calls at once) and writes them
//! through the identity service in bulk, so UnionIDs link people. Listing
//! and fetching run ahead of the writes (a bounded channel between them),
//! so WeChat's latency and the database's overlap.
//!
//! Each complete page (about 10,000 followers) is written in one
//! transaction with the job's cursor and counts: a process killed at any
//! moment resumes after the last page committed, so no follower is lost
//! and none is counted twice. At the end of a complete pass, the app's
//! accounts that were not listed are marked as no longer following, with
//! the time; they are never deleted.
//!
//! WeChat's daily quota (45009) or minute limit (45011) pauses the job until
//! the quota window passes; other errors are retried with backoff, then fail
//! the job with the error kept. Jobs are claimed with a lease ([`job`]), so
//! one sync per app runs at a time across instances.

pub mod job;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use entity::{account, app, sync_job};
use futures::StreamExt;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use tokio::sync::{Notify, mpsc};

pub use job::{JobState, PageCounts};

use crate::apps::{self, Apps};
use crate::clock::Clock;
use crate::domain::{AppId, AppKind, OpenId, ProfileSource};
use crate::events::Events;
use crate::identity::{self, AccountUpsert, Follow};
use crate::refresh::upsert_from;
use crate::store;
use crate::wechat::breaker::next_quota_reset;
use crate::wechat::client::BATCHGET_MAX;
use crate::wechat::error::{ErrorClass, WechatError};
use crate::wechat::{AppCredentials, WechatClient};

/// How follower syncs run.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// `batchget` calls in flight at once per job.
    pub concurrency: usize,
    /// How long a claim on a job holds without a saved page.
    pub lease: Duration,
    /// Attempts at a failing step before the job fails.
    pub max_attempts: i32,
    /// Backoff before the second attempt; doubles each time.
    pub retry_base: Duration,
    /// Start a sync of every official account this often (off when `None`).
    pub every: Option<Duration>,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            concurrency: 8,
            lease: Duration::from_secs(30),
            max_attempts: 5,
            retry_base: Duration::from_secs(5),
            every: None,
        }
    }
}

/// Why a sync cannot be asked for or run.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// No app has this appid.
    #[error("app {0} is not registered")]
    NotRegistered(AppId),
    /// Only official accounts have followers.
    #[error("app {0} is not an official account; only official accounts have followers")]
    NotOfficialAccount(AppId),
    /// Another runner took the job over (this one's lease ran out).
    #[error("sync job {0} was taken over by another runner")]
    LeaseLost(i64),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// What a running job has done so far, for progress bars and logs.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The job.
    pub job_id: i64,
    /// The app.
    pub appid: String,
    /// Followers WeChat reports in all, once the first page is in.
    pub total: Option<i64>,
    /// Complete pages.
    pub pages: i64,
    /// Followers listed in complete pages.
    pub listed: i64,
    /// Profiles fetched and written, in complete pages.
    pub imported: i64,
    /// Of those, with a UnionID.
    pub linked: i64,
    /// Followers whose profile could not be fetched.
    pub failed: i64,
    /// Marking the followers who left (after the last page).
    pub finishing: bool,
}

impl Progress {
    fn of(job: &sync_job::Model, appid: &str) -> Self {
        Self {
            job_id: job.id,
            appid: appid.to_owned(),
            total: job.total,
            pages: job.pages,
            listed: job.listed,
            imported: job.imported,
            linked: job.linked,
            failed: job.failed,
            finishing: false,
        }
    }
}

/// The follower sync service: a cheap-clone handle.
#[derive(Clone, Debug)]
pub struct Syncer(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    db: DatabaseConnection,
    wechat: Arc<WechatClient>,
    apps: Apps,
    clock: Clock,
    events: Events,
    settings: SyncSettings,
    /// This instance's name in job claims.
    owner: String,
    /// Woken when a job is asked for.
    wake: Notify,
}

/// A cursor saved after the last page: listing is done and only marking
/// the followers who left remains.
const LISTED_ALL: &str = "";

impl Syncer {
    /// The service over its parts.
    pub fn new(
        db: DatabaseConnection,
        wechat: Arc<WechatClient>,
        apps: Apps,
        clock: Clock,
        events: Events,
        settings: SyncSettings,
    ) -> Self {
        let owner = format!("{}-{:08x}", std::process::id(), rand::random::<u32>());
        Self(Arc::new(Inner {
            db,
            wechat,
            apps,
            clock,
            events,
            settings,
            owner,
            wake: Notify::new(),
        }))
    }

    /// Asks for a sync of `appid`: a new job, or the app's unfinished one.
    /// Returns the job and whether it is new. Wakes this instance's worker.
    pub async fn request(
        &self,
        appid: &AppId,
        requested_by: &str,
    ) -> Result<(sync_job::Model, bool), SyncError> {
        let app = self.official_account(appid).await?;
        let (job, new) = job::request(&self.0.db, app.id, requested_by, self.0.clock.now()).await?;
        if new {
            tracing::info!(app.appid = %appid, job.id = job.id, requested_by, "follower sync queued");
        }
        self.0.wake.notify_one();
        Ok((job, new))
    }

    /// A job by id.
    pub async fn job(&self, id: i64) -> Result<Option<sync_job::Model>, DbErr> {
        sync_job::Entity::find_by_id(id).one(&self.0.db).await
    }

    /// The latest jobs, newest first, of one app or of all.
    pub async fn jobs(
        &self,
        appid: Option<&AppId>,
        limit: u64,
    ) -> Result<Vec<sync_job::Model>, SyncError> {
        let mut find = sync_job::Entity::find();
        if let Some(appid) = appid {
            let app = self.registered(appid).await?;
            find = find.filter(sync_job::Column::AppId.eq(app.id));
        }
        Ok(find
            .order_by_desc(sync_job::Column::Id)
            .limit(limit)
            .all(&self.0.db)
            .await?)
    }

    /// The appid of each app, by id (for showing jobs).
    pub async fn appids(&self) -> Result<std::collections::HashMap<i64, String>, DbErr> {
        Ok(apps::list(&self.0.db)
            .await?
            .into_iter()
            .map(|a| (a.id, a.appid))
            .collect())
    }

    async fn registered(&self, appid: &AppId) -> Result<app::Model, SyncError> {
        self.0
            .apps
            .find(appid)
            .await?
            .ok_or_else(|| SyncError::NotRegistered(appid.clone()))
    }

    async fn official_account(&self, appid: &AppId) -> Result<app::Model, SyncError> {
        let app = self.registered(appid).await?;
        if apps::kind_of(&app) != Some(AppKind::OfficialAccount) {
            return Err(SyncError::NotOfficialAccount(appid.clone()));
        }
        Ok(app)
    }

    /// Claims job `id` (or, when `None`, the oldest claimable job) and runs
    /// it until it succeeds, pauses or fails; `None` when there was nothing
    /// this instance may claim.
    pub async fn run_next(
        &self,
        id: Option<i64>,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<Option<sync_job::Model>, SyncError> {
        let now = self.0.clock.now();
        let Some(job) =
            job::claim(&self.0.db, id, &self.0.owner, now, self.lease_from(now)).await?
        else {
            return Ok(None);
        };
        self.run_claimed(job, progress).await.map(Some)
    }

    /// Runs claimed jobs as they come until `stop` resolves; a job running
    /// then is let go, to be resumed at its saved page by the next runner.
    /// Also asks for a sync of every official account when one is due, if
    /// the settings say so.
    pub async fn work(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.schedule().await {
                tracing::error!(error = %e, "scheduling follower syncs failed");
            }
            let now = self.0.clock.now();
            let claimed =
                job::claim(&self.0.db, None, &self.0.owner, now, self.lease_from(now)).await;
            match claimed {
                Ok(Some(job)) => {
                    let id = job.id;
                    tokio::select! {
                        result = self.run_claimed(job, &|_| {}) => {
                            if let Err(e) = result {
                                tracing::error!(job.id = id, error = %e, "follower sync stopped");
                            }
                            continue;
                        }
                        () = &mut stop => {
                            if let Err(e) = job::release(&self.0.db, id, &self.0.owner, self.0.clock.now()).await {
                                tracing::warn!(job.id = id, error = %e, "could not let go of the sync job; it resumes when its lease runs out");
                            }
                            return;
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "claiming a follower sync failed"),
            }
            tokio::select! {
                () = self.0.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
                () = &mut stop => return,
            }
        }
    }

    /// Asks for a sync of every official account whose last sync ended
    /// longer ago than the schedule's interval (never, when there is none).
    async fn schedule(&self) -> Result<(), SyncError> {
        let Some(every) = self.0.settings.every else {
            return Ok(());
        };
        let now = self.0.clock.now();
        let due_before = now - chrono::Duration::from_std(every).unwrap_or(chrono::Duration::MAX);
        for app in apps::list(&self.0.db).await? {
            if apps::kind_of(&app) != Some(AppKind::OfficialAccount) {
                continue;
            }
            let last = sync_job::Entity::find()
                .filter(sync_job::Column::AppId.eq(app.id))
                .order_by_desc(sync_job::Column::Id)
                .one(&self.0.db)
                .await?;
            let due = last.is_none_or(|job| {
                JobState::from_stored(&job.state).is_some_and(JobState::is_final)
                    && job.finished_at.is_none_or(|t| t < due_before)
            });
            if due {
                job::request(&self.0.db, app.id, "schedule", now).await?;
            }
        }
        Ok(())
    }

    fn lease_from(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.0.settings.lease).unwrap_or(chrono::Duration::MAX)
    }

    /// Runs a job this instance holds.
    #[tracing::instrument(name = "sync.run", skip_all, fields(job.id = job.id))]
    async fn run_claimed(
        &self,
        job: sync_job::Model,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<sync_job::Model, SyncError> {
        let app = app::Entity::find_by_id(job.app_id)
            .one(&self.0.db)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(format!("app {}", job.app_id)))?;
        let outcome = match self.import(&job, &app, progress).await {
            Ok(unfollowed) => job::Outcome::Succeeded { unfollowed },
            Err(Stop::Db(e)) => return Err(e.into()),
            Err(Stop::LeaseLost) => return Err(SyncError::LeaseLost(job.id)),
            Err(Stop::Wechat(e)) => self.after_error(&job, &e),
            Err(Stop::Setup(message)) => job::Outcome::Failed {
                code: None,
                message,
            },
        };
        match &outcome {
            job::Outcome::Succeeded { unfollowed } => {
                tracing::info!(app.appid = %app.appid, unfollowed, "follower sync done")
            }
            job::Outcome::Paused {
                message, resume_at, ..
            } => {
                tracing::warn!(app.appid = %app.appid, %resume_at, message, "follower sync paused")
            }
            job::Outcome::Retry {
                message,
                retry_at,
                attempts,
                ..
            } => {
                tracing::warn!(app.appid = %app.appid, %retry_at, attempts, message, "follower sync will retry")
            }
            job::Outcome::Failed { message, .. } => {
                tracing::error!(app.appid = %app.appid, message, "follower sync failed")
            }
        }
        let now = self.0.clock.now();
        let finished = job::finish(&self.0.db, &job, &self.0.owner, outcome, now)
            .await?
            .ok_or_else(|| SyncError::Db(DbErr::RecordNotFound(format!("sync job {}", job.id))))?;
        self.0.events.sync_progress(job.id, job.app_id, now);
        Ok(finished)
    }

    /// What a WeChat error does to the job: quota errors pause it until the
    /// window passes; others are tried again with backoff, then fail it.
    fn after_error(&self, job: &sync_job::Model, e: &WechatError) -> job::Outcome {
        let now = self.0.clock.now();
        let code = e.errcode();
        let message = e.to_string();
        match e.class() {
            ErrorClass::QuotaDaily => job::Outcome::Paused {
                code,
                message: format!(
                    "WeChat's daily quota is used up; resumes when it resets: {message}"
                ),
                resume_at: match e {
                    WechatError::BreakerOpen { until, .. } => *until,
                    _ => next_quota_reset(now),
                },
            },
            ErrorClass::QuotaMinute => job::Outcome::Paused {
                code,
                message: format!(
                    "WeChat's per-minute limit was hit; resumes in a minute: {message}"
                ),
                resume_at: match e {
                    WechatError::BreakerOpen { until, .. } => *until,
                    _ => now + chrono::Duration::seconds(60),
                },
            },
            ErrorClass::Retryable | ErrorClass::Unknown | ErrorClass::TokenInvalid
                if job.attempts + 1 < self.0.settings.max_attempts =>
            {
                let attempts = job.attempts + 1;
                let backoff = self.0.settings.retry_base * 2u32.saturating_pow(attempts as u32 - 1);
                job::Outcome::Retry {
                    code,
                    message,
                    attempts,
                    retry_at: now
                        + chrono::Duration::from_std(backoff).unwrap_or(chrono::Duration::MAX),
                }
            }
            _ => job::Outcome::Failed { code, message },
        }
    }

    /// Lists, fetches and writes from the job's cursor to the end, then
    /// marks the followers who left; how many were marked.
    async fn import(
        &self,
        job: &sync_job::Model,
        app: &app::Model,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<i64, Stop> {
        let appid = AppId::parse(app.appid.clone()).map_err(|e| Stop::Setup(e.to_string()))?;
        let credentials = self.0.apps.credentials(app).map_err(|e| {
            Stop::Setup(format!(
                "the app secret cannot be decrypted with this master key: {e}"
            ))
        })?;
        let mut shown = Progress::of(job, &app.appid);
        progress(&shown);
        if job.cursor.as_deref() != Some(LISTED_ALL) {
            // The fetching side runs ahead of the writes, two pages at most:
            // one waiting in the channel, one being fetched.
            let (tx, mut rx) = mpsc::channel(1);
            let fetcher = Fetcher {
                wechat: self.0.wechat.clone(),
                credentials,
                appid: appid.clone(),
                concurrency: self.0.settings.concurrency.max(1),
                clock: self.0.clock.clone(),
            };
            let start = job.cursor.clone();
            let producer = tokio::spawn(store::counted_as_here(async move {
                fetcher.run(start, tx).await
            }));
            let mut result = Ok(());
            let mut saved_pages = 0u64;
            while let Some(page) = rx.recv().await {
                let page = match page {
                    Ok(page) => page,
                    Err(e) => {
                        result = Err(Stop::Wechat(e));
                        break;
                    }
                };
                let total = page.total;
                let counts = match self.save(job, &appid, page).await {
                    Ok(counts) => counts,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                };
                // The tables grow a page at a time: their statistics are
                // refreshed each time the pages written double.
                // (The page is committed: a failure here costs speed only.)
                saved_pages += 1;
                if saved_pages.is_power_of_two()
                    && let Err(e) =
                        store::refresh_statistics(&self.0.db, &["account", "person"]).await
                {
                    tracing::warn!(error = %e, "refreshing the table statistics failed; the sync goes on");
                }
                shown.pages += counts.pages;
                shown.listed += counts.listed;
                shown.imported += counts.imported;
                shown.linked += counts.linked;
                shown.failed += counts.failed;
                shown.total = Some(total);
                progress(&shown);
            }
            if result.is_ok() {
                // The list ended: after its last page, unless the fetching
                // side died, and then the followers not yet listed must not
                // be marked as gone.
                if let Err(e) = producer.await {
                    return Err(Stop::Setup(format!("fetching the followers stopped: {e}")));
                }
            } else {
                producer.abort();
            }
            result?;
        }
        shown.finishing = true;
        progress(&shown);
        let unfollowed = self.mark_unfollowed(job, &appid).await.map_err(Stop::Db)?;
        Ok(unfollowed)
    }

    /// Writes rows through the identity service, a batch at a time.
    async fn write(&self, rows: &[AccountUpsert]) -> Result<(), DbErr> {
        let now = self.0.clock.now();
        identity::upsert_in_batches(&self.0.db, rows, ProfileSource::UserInfo, now, |written| {
            self.0.events.accounts(written, now)
        })
        .await
        .map_err(|e| match e {
            identity::IdentityError::Db(e) => e,
            // Rows from WeChat are fitted before they get here.
            other => DbErr::Custom(other.to_string()),
        })
    }

    /// Writes a complete page in one transaction: its followers through
    /// the identity service, each marked as listed by the job, with the
    /// job's new cursor and counts; so a page is saved whole or not at all.
    /// Returns the page's counts.
    async fn save(
        &self,
        job: &sync_job::Model,
        appid: &AppId,
        page: Page,
    ) -> Result<PageCounts, Stop> {
        let Page {
            mut rows,
            failed,
            next,
            total,
            listed_at,
        } = page;
        let counts = PageCounts {
            pages: 1,
            listed: (rows.len() + failed.len()) as i64,
            imported: rows.len() as i64,
            linked: rows.iter().filter(|r| r.unionid.is_some()).count() as i64,
            failed: failed.len() as i64,
        };
        rows.extend(
            failed
                .into_iter()
                .map(|openid| follower_only(appid, openid, listed_at)),
        );
        for row in &mut rows {
            row.follow.listed_in = Some(job.id);
        }
        let cursor = Some(next.as_deref().unwrap_or(LISTED_ALL));
        let mut attempts = identity::Attempts::default();
        loop {
            let now = self.0.clock.now();
            let saved = async {
                let txn = store::begin_bulk_write(&self.0.db).await?;
                let written =
                    identity::upsert_within(&txn, &rows, ProfileSource::UserInfo, now).await?;
                let saved = job::save_page(
                    &txn,
                    job,
                    &self.0.owner,
                    (cursor, total, counts),
                    now,
                    self.lease_from(now),
                )
                .await?;
                if saved {
                    txn.commit().await?;
                    self.0.events.accounts(&written, now);
                    self.0.events.sync_progress(job.id, job.app_id, now);
                } else {
                    txn.rollback().await?;
                }
                Ok::<_, identity::IdentityError>(saved)
            }
            .await;
            match saved {
                Ok(true) => return Ok(counts),
                Ok(false) => return Err(Stop::LeaseLost),
                Err(e) if attempts.again(&e) => {}
                Err(identity::IdentityError::Db(e)) => return Err(Stop::Db(e)),
                // Rows from WeChat are fitted and deduplicated before they get here.
                Err(other) => return Err(Stop::Db(DbErr::Custom(other.to_string()))),
            }
        }
    }

    /// Marks the app's followers the job did not list as no longer
    /// following (those who followed after the job started excepted: the
    /// list may have been read before they came); returns how many accounts
    /// the job has marked so.
    async fn mark_unfollowed(&self, job: &sync_job::Model, appid: &AppId) -> Result<i64, DbErr> {
        let started = job.started_at.unwrap_or(job.created_at);
        // Whole seconds, as WeChat's follow times are: a follow in the
        // second the job started may not be listed, and is left alone.
        let started_second = Utc
            .timestamp_opt(started.timestamp(), 0)
            .single()
            .unwrap_or(started);
        let not_listed = Condition::all()
            .add(account::Column::AppId.eq(job.app_id))
            .add(
                Condition::any()
                    .add(account::Column::ListedIn.is_null())
                    .add(account::Column::ListedIn.ne(job.id)),
            );
        loop {
            let openids: Vec<String> = account::Entity::find()
                .select_only()
                .column(account::Column::Openid)
                .filter(not_listed.clone())
                .filter(account::Column::Subscribed.eq(true))
                .filter(
                    Condition::any()
                        .add(account::Column::SubscribeTime.is_null())
                        .add(account::Column::SubscribeTime.lt(started_second)),
                )
                .order_by_asc(account::Column::Id)
                .limit(identity::MAX_UPSERT_BATCH as u64)
                .into_tuple()
                .all(&self.0.db)
                .await?;
            if openids.is_empty() {
                break;
            }
            let rows = openids
                .into_iter()
                .filter_map(|openid| {
                    let openid = OpenId::parse(openid).ok()?;
                    // Not following as of the listing: a follow pushed
                    // since then stands.
                    Some(AccountUpsert {
                        follow: Follow {
                            subscribed: Some(false),
                            as_of: Some(started),
                            ..Follow::default()
                        },
                        ..follower_only(appid, openid, started)
                    })
                })
                .collect::<Vec<_>>();
            if rows.is_empty() {
                break;
            }
            self.write(&rows).await?;
        }
        let marked = account::Entity::find()
            .filter(not_listed)
            .filter(account::Column::Subscribed.eq(false))
            .filter(account::Column::UnfollowedAt.gte(started))
            .count(&self.0.db)
            .await?;
        Ok(i64::try_from(marked).unwrap_or(i64::MAX))
    }
}

/// A listed follower whose profile could not be fetched, listed at
/// `listed_at`: stored as a follower all the same, so that no follower is
/// lost (unless a later unfollow is stored).
fn follower_only(appid: &AppId, openid: OpenId, listed_at: DateTime<Utc>) -> AccountUpsert {
    AccountUpsert {
        appid: appid.clone(),
        openid,
        unionid: None,
        snapshot_user: false,
        profile: identity::Profile::default(),
        follow: Follow {
            subscribed: Some(true),
            as_of: Some(listed_at),
            ..Follow::default()
        },
        refreshed: false,
    }
}

/// Why an import stopped.
enum Stop {
    /// WeChat refused or failed.
    Wechat(WechatError),
    /// The database failed.
    Db(DbErr),
    /// Another runner took the job.
    LeaseLost,
    /// The app cannot be synced as stored.
    Setup(String),
}

/// A complete page, fetched: what the fetching side hands the writing side.
struct Page {
    /// Profiles of the page's followers.
    rows: Vec<AccountUpsert>,
    /// Followers whose profile could not be fetched.
    failed: Vec<OpenId>,
    /// The cursor of the next page (`None` after the last).
    next: Option<String>,
    /// Followers WeChat reports in all.
    total: i64,
    /// When WeChat was asked for the page: its followers followed then.
    listed_at: DateTime<Utc>,
}

/// The fetching side of an import.
struct Fetcher {
    wechat: Arc<WechatClient>,
    credentials: AppCredentials,
    appid: AppId,
    concurrency: usize,
    clock: Clock,
}

impl Fetcher {
    /// Lists pages from `cursor` and fetches their profiles, sending each
    /// complete page on (or the error that stopped it).
    async fn run(self, mut cursor: Option<String>, tx: mpsc::Sender<Result<Page, WechatError>>) {
        loop {
            let (page, next) = match self.page(cursor.as_deref()).await {
                Ok(fetched) => fetched,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            if tx.send(Ok(page)).await.is_err() || next.is_none() {
                return;
            }
            cursor = next;
        }
    }

    /// Lists the page at `cursor` and fetches its followers' profiles;
    /// the page and the cursor of the next one.
    async fn page(&self, cursor: Option<&str>) -> Result<(Page, Option<String>), WechatError> {
        let asked_at = self.clock.now();
        let listed = self
            .wechat
            .followers_page(&self.credentials, cursor)
            .await?;
        let total = i64::try_from(listed.total).unwrap_or(i64::MAX);
        // Each follower once, in WeChat's order.
        let mut seen = std::collections::HashSet::new();
        let openids: Vec<OpenId> = listed
            .openids()
            .iter()
            .filter_map(|o| OpenId::parse(o.as_str()).ok())
            .filter(|o| seen.insert(o.as_str().to_owned()))
            .collect();
        let next = (!listed.is_last())
            .then(|| listed.next_openid.clone())
            .flatten();
        // Checked before any profile is asked for: a list going round in
        // circles would spend the quota on every turn.
        if next.is_some() && next.as_deref() == cursor {
            return Err(WechatError::Decode(
                "user/get returned the same next_openid twice".to_owned(),
            ));
        }
        let chunks: Vec<Vec<OpenId>> = openids
            .chunks(BATCHGET_MAX)
            .map(<[OpenId]>::to_vec)
            .collect();
        let mut batches = futures::stream::iter(chunks)
            .map(|chunk| {
                let (wechat, credentials) = (self.wechat.clone(), self.credentials.clone());
                async move {
                    let asked: Vec<String> = chunk.iter().map(|o| o.as_str().to_owned()).collect();
                    let result = wechat.batchget(&credentials, &asked).await;
                    (chunk, result)
                }
            })
            .buffer_unordered(self.concurrency);
        let mut rows = Vec::with_capacity(openids.len());
        let mut failed = Vec::new();
        while let Some((chunk, result)) = batches.next().await {
            match result {
                Ok(outcome) => {
                    let got: Vec<AccountUpsert> = outcome
                        .users
                        .iter()
                        .filter_map(|user| upsert_from(&self.appid, user, asked_at))
                        .filter(|row| chunk.contains(&row.openid))
                        .collect();
                    let answered: std::collections::HashSet<&str> =
                        got.iter().map(|r| r.openid.as_str()).collect();
                    let missing = chunk.iter().filter(|o| !answered.contains(o.as_str()));
                    failed.extend(missing.cloned());
                    rows.extend(got);
                }
                Err(e) if e.class() == ErrorClass::BadInput => failed.extend(chunk.iter().cloned()),
                Err(e) => return Err(e),
            }
        }
        // A profile WeChat sent twice is written once.
        let mut kept = std::collections::HashSet::new();
        rows.retain(|r| kept.insert(r.openid.as_str().to_owned()));
        let page = Page {
            rows,
            failed,
            next: next.clone(),
            total,
            listed_at: asked_at,
        };
        Ok((page, next))
    }
}
