//! The shared access-token cache: one current token per app for every instance.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Creates `access_token`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AccessToken::Table)
                    .col(big_pk_auto(AccessToken::Id))
                    .col(string_len_uniq(AccessToken::Appid, 128))
                    .col(text(AccessToken::TokenSealed))
                    .col(string_len(AccessToken::Fingerprint, 64))
                    .col(timestamp_with_time_zone(AccessToken::ExpiresAt))
                    .col(timestamp_with_time_zone(AccessToken::FetchedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AccessToken::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AccessToken {
    Table,
    Id,
    Appid,
    TokenSealed,
    Fingerprint,
    ExpiresAt,
    FetchedAt,
}
