//! Follower sync jobs: one import of an official account's followers, saved
//! as it goes so that a process stopped at any moment resumes where it was.
//!
//! - `sync_job`: the app, the state (`QUEUED`, `RUNNING`, `PAUSED`,
//!   `SUCCEEDED`, `FAILED`), the cursor (`next_openid` of the page being
//!   worked on), the counts of complete pages, the last error, and the
//!   lease of the instance running it (`lease_until`).
//! - At most one unfinished job per app (a partial unique index, on SQLite
//!   and PostgreSQL alike).
//! - `account.listed_in`: the last job that listed the account as a
//!   follower; at the end of a complete pass, followers it did not list are
//!   marked as no longer following.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Creates `sync_job` and `account.listed_in`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SyncJob::Table)
                    .col(big_pk_auto(SyncJob::Id))
                    .col(big_integer(SyncJob::AppId))
                    .col(string_len(SyncJob::State, 16))
                    .col(string_len_null(SyncJob::Cursor, 256))
                    .col(big_integer_null(SyncJob::Total))
                    .col(big_integer(SyncJob::Pages).default(0))
                    .col(big_integer(SyncJob::Listed).default(0))
                    .col(big_integer(SyncJob::Imported).default(0))
                    .col(big_integer(SyncJob::Linked).default(0))
                    .col(big_integer(SyncJob::Failed).default(0))
                    .col(big_integer(SyncJob::Unfollowed).default(0))
                    .col(integer(SyncJob::Attempts).default(0))
                    .col(integer_null(SyncJob::ErrorCode))
                    .col(text_null(SyncJob::ErrorMessage))
                    .col(string_len_null(SyncJob::RequestedBy, 200))
                    .col(string_len_null(SyncJob::Owner, 64))
                    .col(timestamp_with_time_zone_null(SyncJob::LeaseUntil))
                    .col(timestamp_with_time_zone_null(SyncJob::ResumeAt))
                    .col(timestamp_with_time_zone(SyncJob::CreatedAt))
                    .col(timestamp_with_time_zone_null(SyncJob::StartedAt))
                    .col(timestamp_with_time_zone(SyncJob::UpdatedAt))
                    .col(timestamp_with_time_zone_null(SyncJob::FinishedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_sync_job_app")
                            .from(SyncJob::Table, SyncJob::AppId)
                            .to(App::Table, App::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sync_job_app")
                    .table(SyncJob::Table)
                    .col(SyncJob::AppId)
                    .col(SyncJob::Id)
                    .to_owned(),
            )
            .await?;
        // One unfinished job per app; the same SQL on both databases.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX uq_sync_job_unfinished ON sync_job (app_id) \
                 WHERE state IN ('QUEUED', 'RUNNING', 'PAUSED')",
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Account::Table)
                    .add_column(big_integer_null(Account::ListedIn))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Account::Table)
                    .drop_column(Account::ListedIn)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(SyncJob::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum SyncJob {
    Table,
    Id,
    AppId,
    State,
    Cursor,
    Total,
    Pages,
    Listed,
    Imported,
    Linked,
    Failed,
    Unfollowed,
    Attempts,
    ErrorCode,
    ErrorMessage,
    RequestedBy,
    Owner,
    LeaseUntil,
    ResumeAt,
    CreatedAt,
    StartedAt,
    UpdatedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum App {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Account {
    Table,
    ListedIn,
}
