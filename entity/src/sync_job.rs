//! A follower sync job: one import of an official account's followers.

use sea_orm::entity::prelude::*;

/// One sync job, saved after every complete page so that it resumes where it
/// stopped.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sync_job")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The official account whose followers are imported.
    pub app_id: i64,
    /// `QUEUED`, `RUNNING`, `PAUSED`, `SUCCEEDED` or `FAILED`.
    pub state: String,
    /// The `next_openid` that fetches the page being worked on; `None` for
    /// the first page.
    pub cursor: Option<String>,
    /// Followers WeChat reported in all (`total` of `user/get`).
    pub total: Option<i64>,
    /// Complete pages.
    pub pages: i64,
    /// Followers listed in complete pages.
    pub listed: i64,
    /// Followers whose profile was fetched and written.
    pub imported: i64,
    /// Of those, followers whose UnionID is known.
    pub linked: i64,
    /// Followers whose profile could not be fetched (invalid openid).
    pub failed: i64,
    /// Accounts marked as no longer following at the end of the pass.
    pub unfollowed: i64,
    /// Attempts at the current step since its last success.
    pub attempts: i32,
    /// WeChat `errcode` of the last error.
    pub error_code: Option<i32>,
    /// The last error.
    pub error_message: Option<String>,
    /// Who asked for the job (an API key's name, `cli`, `schedule`).
    pub requested_by: Option<String>,
    /// The instance running the job.
    pub owner: Option<String>,
    /// Until when the owner's claim holds; a running job past it is resumed
    /// by whichever instance claims it next.
    pub lease_until: Option<DateTimeUtc>,
    /// When a paused job may resume.
    pub resume_at: Option<DateTimeUtc>,
    /// When the job was asked for.
    pub created_at: DateTimeUtc,
    /// When it first ran.
    pub started_at: Option<DateTimeUtc>,
    /// When it last changed.
    pub updated_at: DateTimeUtc,
    /// When it ended.
    pub finished_at: Option<DateTimeUtc>,
}

/// Relations of a sync job.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The app synced.
    #[sea_orm(
        belongs_to = "super::app::Entity",
        from = "Column::AppId",
        to = "super::app::Column::Id"
    )]
    App,
}

impl Related<super::app::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::App.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
