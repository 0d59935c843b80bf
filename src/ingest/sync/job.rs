//! The `sync_job` rows: asking for a job, claiming one, saving progress.
//!
//! A job is claimed with a lease: the instance running it extends the lease
//! each time it saves a page, and a job whose lease ran out (its process was
//! killed) is claimed again by the next instance that looks, and resumes at
//! its saved cursor. Claims take the row with `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, so instances never wait for each other's claims, and in a
//! write transaction on SQLite, which holds the only write lock. At most one
//! unfinished job exists per app (a partial unique index).

use chrono::{DateTime, Utc};
use entity::sync_job;
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, SqlErr,
};

use crate::store;

/// The states of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for an instance to run it.
    Queued,
    /// Being run (or its runner died; it resumes once its lease runs out).
    Running,
    /// Waiting for WeChat's quota to reset (`resume_at`).
    Paused,
    /// Every follower was imported, and those who left were marked.
    Succeeded,
    /// Stopped on an error that retrying did not clear (kept in the job).
    Failed,
}

impl JobState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Running => "RUNNING",
            Self::Paused => "PAUSED",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
        }
    }

    /// Parses a stored name.
    pub fn from_stored(s: &str) -> Option<Self> {
        Some(match s {
            "QUEUED" => Self::Queued,
            "RUNNING" => Self::Running,
            "PAUSED" => Self::Paused,
            "SUCCEEDED" => Self::Succeeded,
            "FAILED" => Self::Failed,
            _ => return None,
        })
    }

    /// Whether the job has ended.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// Asks for a sync of `app_id`: a new queued job, or the app's unfinished
/// one when it has one (whoever asked for it). Returns the job and whether
/// it is new.
pub(super) async fn request(
    db: &DatabaseConnection,
    app_id: i64,
    requested_by: &str,
    now: DateTime<Utc>,
) -> Result<(sync_job::Model, bool), DbErr> {
    for _ in 0..3 {
        if let Some(job) = unfinished(db, app_id).await? {
            return Ok((job, false));
        }
        let job = sync_job::ActiveModel {
            app_id: Set(app_id),
            state: Set(JobState::Queued.as_str().to_owned()),
            requested_by: Set(Some(requested_by.chars().take(200).collect())),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        };
        match job.insert(db).await {
            Ok(job) => return Ok((job, true)),
            // Another caller queued one first: that one is the job.
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {}
            Err(e) => return Err(e),
        }
    }
    unfinished(db, app_id)
        .await?
        .map(|job| (job, false))
        .ok_or_else(|| DbErr::RecordNotFound(format!("sync job of app {app_id}")))
}

/// The app's unfinished job, if any.
pub(super) async fn unfinished<C: ConnectionTrait>(
    db: &C,
    app_id: i64,
) -> Result<Option<sync_job::Model>, DbErr> {
    sync_job::Entity::find()
        .filter(sync_job::Column::AppId.eq(app_id))
        .filter(sync_job::Column::State.is_in([
            JobState::Queued.as_str(),
            JobState::Running.as_str(),
            JobState::Paused.as_str(),
        ]))
        .one(db)
        .await
}

/// Jobs an instance may take now: queued ones, paused ones whose quota
/// window has passed, and running ones whose runner's lease ran out.
fn claimable(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(sync_job::Column::State.eq(JobState::Queued.as_str()))
        .add(
            Condition::all()
                .add(sync_job::Column::State.eq(JobState::Paused.as_str()))
                .add(sync_job::Column::ResumeAt.lte(now)),
        )
        .add(
            Condition::all()
                .add(sync_job::Column::State.eq(JobState::Running.as_str()))
                .add(sync_job::Column::LeaseUntil.lt(now)),
        )
}

/// Claims a job for `owner` until `lease_until`: job `id` when given (if it
/// can be claimed), else the oldest claimable one.
pub(super) async fn claim(
    db: &DatabaseConnection,
    id: Option<i64>,
    owner: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> Result<Option<sync_job::Model>, DbErr> {
    let txn = store::begin_write(db).await?;
    let mut find = sync_job::Entity::find().filter(claimable(now));
    if let Some(id) = id {
        find = find.filter(sync_job::Column::Id.eq(id));
    }
    let Some(job) = find
        .order_by_asc(sync_job::Column::Id)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .one(&txn)
        .await?
    else {
        txn.commit().await?;
        return Ok(None);
    };
    let mut active: sync_job::ActiveModel = job.clone().into();
    active.state = Set(JobState::Running.as_str().to_owned());
    active.owner = Set(Some(owner.to_owned()));
    active.lease_until = Set(Some(lease_until));
    active.resume_at = Set(None);
    active.started_at = Set(Some(job.started_at.unwrap_or(now)));
    active.updated_at = Set(now);
    let job = active.update(&txn).await?;
    txn.commit().await?;
    Ok(Some(job))
}

/// The progress of complete pages, saved with the cursor that fetches the
/// next page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageCounts {
    /// Complete pages.
    pub pages: i64,
    /// Followers on the pages.
    pub listed: i64,
    /// Of those, profiles fetched and written.
    pub imported: i64,
    /// Of those, with a UnionID.
    pub linked: i64,
    /// Followers whose profile could not be fetched (written as followers
    /// with no profile).
    pub failed: i64,
}

/// Saves complete pages: the cursor moves on and the counts grow, in one
/// statement, only while `owner` holds the job. Returns whether it did.
pub(super) async fn save_page<C: ConnectionTrait>(
    db: &C,
    job: &sync_job::Model,
    owner: &str,
    (cursor, total, counts): (Option<&str>, i64, PageCounts),
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> Result<bool, DbErr> {
    use sync_job::Column as C;
    let add = |c: C, n: i64| Expr::col(c).add(n);
    let result = sync_job::Entity::update_many()
        .col_expr(C::Cursor, Expr::value(cursor.map(str::to_owned)))
        .col_expr(C::Total, Expr::value(total))
        .col_expr(C::Pages, add(C::Pages, counts.pages))
        .col_expr(C::Listed, add(C::Listed, counts.listed))
        .col_expr(C::Imported, add(C::Imported, counts.imported))
        .col_expr(C::Linked, add(C::Linked, counts.linked))
        .col_expr(C::Failed, add(C::Failed, counts.failed))
        .col_expr(C::Attempts, Expr::value(0))
        .col_expr(C::LeaseUntil, Expr::value(lease_until))
        .col_expr(C::UpdatedAt, Expr::value(now))
        .filter(owned_by(job.id, owner))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// The job `id` while `owner` runs it.
fn owned_by(id: i64, owner: &str) -> Condition {
    Condition::all()
        .add(sync_job::Column::Id.eq(id))
        .add(sync_job::Column::Owner.eq(owner))
        .add(sync_job::Column::State.eq(JobState::Running.as_str()))
}

/// How a run left the job.
#[derive(Debug, Clone)]
pub(super) enum Outcome {
    /// Done, with how many accounts were marked as no longer following.
    Succeeded { unfollowed: i64 },
    /// WeChat's quota is used up until `resume_at`.
    Paused {
        code: Option<i64>,
        message: String,
        resume_at: DateTime<Utc>,
    },
    /// An error that retrying did not clear.
    Failed { code: Option<i64>, message: String },
    /// A transient error: tried again at `retry_at` (attempt `attempts`).
    Retry {
        code: Option<i64>,
        message: String,
        attempts: i32,
        retry_at: DateTime<Utc>,
    },
}

/// Records how a run left the job (only while `owner` holds it); the job as stored.
pub(super) async fn finish(
    db: &DatabaseConnection,
    job: &sync_job::Model,
    owner: &str,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> Result<Option<sync_job::Model>, DbErr> {
    use sync_job::Column as C;
    let error = |code: Option<i64>, message: String| {
        [
            (
                C::ErrorCode,
                Expr::value(code.and_then(|c| i32::try_from(c).ok())),
            ),
            (
                C::ErrorMessage,
                Expr::value(crate::domain::storable(message)),
            ),
        ]
    };
    let mut update = sync_job::Entity::update_many()
        .col_expr(C::UpdatedAt, Expr::value(now))
        .col_expr(C::Owner, Expr::value(Option::<String>::None))
        .col_expr(C::LeaseUntil, Expr::value(Option::<DateTime<Utc>>::None));
    let (state, values) = match outcome {
        Outcome::Succeeded { unfollowed } => {
            update = update
                .col_expr(C::Unfollowed, Expr::value(unfollowed))
                .col_expr(C::FinishedAt, Expr::value(now))
                .col_expr(C::Cursor, Expr::value(Option::<String>::None));
            (
                JobState::Succeeded,
                [
                    (C::ErrorCode, Expr::value(Option::<i32>::None)),
                    (C::ErrorMessage, Expr::value(Option::<String>::None)),
                ],
            )
        }
        Outcome::Paused {
            code,
            message,
            resume_at,
        } => {
            update = update.col_expr(C::ResumeAt, Expr::value(resume_at));
            (JobState::Paused, error(code, message))
        }
        Outcome::Retry {
            code,
            message,
            attempts,
            retry_at,
        } => {
            update = update
                .col_expr(C::ResumeAt, Expr::value(retry_at))
                .col_expr(C::Attempts, Expr::value(attempts));
            (JobState::Paused, error(code, message))
        }
        Outcome::Failed { code, message } => {
            update = update.col_expr(C::FinishedAt, Expr::value(now));
            (JobState::Failed, error(code, message))
        }
    };
    for (column, value) in values {
        update = update.col_expr(column, value);
    }
    update
        .col_expr(C::State, Expr::value(state.as_str()))
        .filter(owned_by(job.id, owner))
        .exec(db)
        .await?;
    sync_job::Entity::find_by_id(job.id).one(db).await
}

/// Lets go of a job without ending it (the process is stopping): another
/// instance, or this one restarted, resumes it at once.
pub(super) async fn release(
    db: &DatabaseConnection,
    job_id: i64,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    sync_job::Entity::update_many()
        .col_expr(
            sync_job::Column::State,
            Expr::value(JobState::Queued.as_str()),
        )
        .col_expr(sync_job::Column::Owner, Expr::value(Option::<String>::None))
        .col_expr(
            sync_job::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(sync_job::Column::UpdatedAt, Expr::value(now))
        .filter(owned_by(job_id, owner))
        .exec(db)
        .await?;
    Ok(())
}
