//! Follower sync jobs in the API: starting one (`write` scope) and
//! following its progress (`read` scope).

use crate::graphql::scalars::DateTime;
use async_graphql::{Context, Enum, ID, Object};
use entity::sync_job;

use super::access::caller;
use super::context::ContextExt;
use super::error::{ApiError, ApiResult, ResultExt};
use super::limits::cost;
use crate::domain::AppId;
use crate::ingest::sync::{JobState, SyncError};

/// Where a follower sync job stands.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// Waiting for a server to run it (within seconds while one is up).
    Queued,
    /// Importing followers.
    Running,
    /// Waiting: WeChat's quota is used up, or a transient error is retried
    /// after a backoff; resumes by itself at `resumeAt`.
    Paused,
    /// Every follower was imported, and those who left were marked.
    Succeeded,
    /// Stopped on an error that retrying did not clear (see `errorMessage`).
    Failed,
}

impl From<JobState> for SyncState {
    fn from(s: JobState) -> Self {
        match s {
            JobState::Queued => Self::Queued,
            JobState::Running => Self::Running,
            JobState::Paused => Self::Paused,
            JobState::Succeeded => Self::Succeeded,
            JobState::Failed => Self::Failed,
        }
    }
}

impl From<SyncError> for ApiError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::NotRegistered(_) => Self::NotFound(e.to_string()),
            SyncError::NotOfficialAccount(_) => Self::BadUserInput(e.to_string()),
            SyncError::LeaseLost(_) | SyncError::Db(_) => Self::internal(e),
        }
    }
}

/// A follower sync job as the API shows it, with its app's appid.
pub struct SyncJob {
    job: sync_job::Model,
    appid: String,
}

impl SyncJob {
    /// The job `job` of the app `appid`.
    pub(crate) fn new(job: sync_job::Model, appid: String) -> Self {
        Self { job, appid }
    }
}

/// One import of an official account's followers from WeChat. Progress is
/// saved after every page of 10,000 followers, so a stopped server resumes
/// it where it was.
#[Object]
impl SyncJob {
    /// The job's id.
    async fn id(&self) -> ID {
        ID(self.job.id.to_string())
    }

    /// The official account whose followers are imported.
    async fn appid(&self) -> &str {
        &self.appid
    }

    /// Where the job stands.
    async fn state(&self) -> Option<SyncState> {
        JobState::from_stored(&self.job.state).map(SyncState::from)
    }

    /// Followers WeChat reports in all; null until the first page is in.
    async fn total(&self) -> Option<i64> {
        self.job.total
    }

    /// Pages of followers complete.
    async fn pages(&self) -> i64 {
        self.job.pages
    }

    /// Followers listed in complete pages.
    async fn listed(&self) -> i64 {
        self.job.listed
    }

    /// Of those, followers whose profile was fetched and written.
    async fn imported(&self) -> i64 {
        self.job.imported
    }

    /// Of those, followers whose UnionID is known (linked to a person).
    async fn linked(&self) -> i64 {
        self.job.linked
    }

    /// Followers whose profile WeChat would not give (stored as followers without a profile).
    async fn failed(&self) -> i64 {
        self.job.failed
    }

    /// Accounts marked as no longer following at the end of the pass.
    async fn unfollowed(&self) -> i64 {
        self.job.unfollowed
    }

    /// Share of the followers listed so far, from 0 to 1; null until the total is known.
    async fn progress(&self) -> Option<f64> {
        let total = self.job.total?;
        Some(if total <= 0 {
            1.0
        } else {
            (self.job.listed as f64 / total as f64).min(1.0)
        })
    }

    /// Followers listed per second since the job started.
    async fn rate(&self) -> Option<f64> {
        let started = self.job.started_at?;
        let until = self.job.finished_at.unwrap_or(self.job.updated_at);
        let secs = (until - started).num_milliseconds() as f64 / 1000.0;
        (secs > 0.0).then(|| self.job.listed as f64 / secs)
    }

    /// WeChat's `errcode` of the last error, if any.
    async fn error_code(&self) -> Option<i32> {
        self.job.error_code
    }

    /// The last error, if any (kept when the job failed or paused).
    async fn error_message(&self) -> Option<&str> {
        self.job.error_message.as_deref()
    }

    /// Who asked for the job: an API key's id, `cli` or `schedule`.
    async fn requested_by(&self) -> Option<&str> {
        self.job.requested_by.as_deref()
    }

    /// When a paused job resumes.
    async fn resume_at(&self) -> Option<DateTime> {
        self.job.resume_at.map(DateTime)
    }

    /// When the job was asked for.
    async fn created_at(&self) -> DateTime {
        self.job.created_at.into()
    }

    /// When it first ran.
    async fn started_at(&self) -> Option<DateTime> {
        self.job.started_at.map(DateTime)
    }

    /// When it last changed.
    async fn updated_at(&self) -> DateTime {
        self.job.updated_at.into()
    }

    /// When it ended.
    async fn finished_at(&self) -> Option<DateTime> {
        self.job.finished_at.map(DateTime)
    }
}

/// Most jobs one `syncJobs` returns.
const MAX_JOBS: i32 = 100;

/// Queries about follower syncs.
#[derive(Default)]
pub struct SyncQuery;

#[Object]
impl SyncQuery {
    /// One follower sync job by id, or null when there is none.
    async fn sync_job(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The job's id.")] id: ID,
    ) -> ApiResult<Option<SyncJob>> {
        let Ok(id) = id.parse::<i64>() else {
            return Ok(None);
        };
        let syncer = ctx.state()?.syncer();
        let Some(job) = syncer.job(id).await.api()? else {
            return Ok(None);
        };
        let appid = syncer
            .appids()
            .await
            .api()?
            .remove(&job.app_id)
            .unwrap_or_default();
        Ok(Some(SyncJob { job, appid }))
    }

    /// The latest follower sync jobs, newest first: of one app, or of all.
    #[graphql(complexity = "cost::rows(first.clamp(1, MAX_JOBS) as usize, child_complexity)")]
    async fn sync_jobs(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only this app's jobs (an appid).")] appid: Option<String>,
        #[graphql(desc = "How many jobs (1 to 100).", default = 20)] first: i32,
    ) -> ApiResult<Vec<SyncJob>> {
        let appid = appid.map(AppId::parse).transpose().api()?;
        let syncer = ctx.state()?.syncer();
        let limit = first.clamp(1, MAX_JOBS) as u64;
        let jobs = syncer.jobs(appid.as_ref(), limit).await.api()?;
        ctx.read_rows(jobs.len())?;
        let appids = syncer.appids().await.api()?;
        Ok(jobs
            .into_iter()
            .map(|job| SyncJob {
                appid: appids.get(&job.app_id).cloned().unwrap_or_default(),
                job,
            })
            .collect())
    }
}

/// Mutations of follower syncs.
#[derive(Default)]
pub struct SyncMutation;

#[Object]
impl SyncMutation {
    /// Imports every follower of an official account from WeChat, as a job
    /// the server runs in the background; returns it at once. When the app
    /// already has an unfinished sync, that job is returned instead of a new
    /// one. Follow it with `syncJob(id:)`.
    async fn start_follower_sync(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The official account (appid).")] appid: String,
    ) -> ApiResult<SyncJob> {
        let appid = AppId::parse(appid).api()?;
        let requested_by = format!("key {}", caller(ctx)?.key_id);
        let (job, _) = ctx
            .state()?
            .syncer()
            .request(&appid, &requested_by)
            .await
            .api()?;
        Ok(SyncJob {
            job,
            appid: appid.to_string(),
        })
    }
}
