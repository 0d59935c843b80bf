//! `callback_receipt`: the pushes from WeChat already applied, so that a
//! push WeChat retries (it tries 3 times when an answer is slow) changes
//! nothing twice, whichever instance of a fleet it reaches.
//!
//! - `app_id` and `key`: the app and the SHA-256 (hex) of the push's
//!   deduplication key (`FromUserName`, `CreateTime`, `Event`, `EventKey`);
//!   the primary key, so of two instances applying one push at once, one
//!   inserts the receipt and the other finds it.
//! - `expires_at`: when the receipt may be forgotten (long after WeChat's
//!   last retry); indexed for the purge.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Creates `callback_receipt`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CallbackReceipt::Table)
                    .col(big_integer(CallbackReceipt::AppId))
                    .col(string_len(CallbackReceipt::Key, 64))
                    .col(timestamp_with_time_zone(CallbackReceipt::ReceivedAt))
                    .col(timestamp_with_time_zone(CallbackReceipt::ExpiresAt))
                    .primary_key(
                        Index::create()
                            .col(CallbackReceipt::AppId)
                            .col(CallbackReceipt::Key),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_callback_receipt_app")
                            .from(CallbackReceipt::Table, CallbackReceipt::AppId)
                            .to(App::Table, App::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_callback_receipt_expires")
                    .table(CallbackReceipt::Table)
                    .col(CallbackReceipt::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(CallbackReceipt::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum CallbackReceipt {
    Table,
    AppId,
    Key,
    ReceivedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum App {
    Table,
    Id,
}
