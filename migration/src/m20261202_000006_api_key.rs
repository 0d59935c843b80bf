//! API keys: who may call the GraphQL API, with which scopes and limits.
//! Only a SHA-256 of each key is stored; the key itself is shown once.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Creates `api_key`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiKey::Table)
                    .col(big_pk_auto(ApiKey::Id))
                    .col(string_len_uniq(ApiKey::KeyId, 32))
                    .col(string_len(ApiKey::Name, 200))
                    .col(string_len(ApiKey::Hash, 64))
                    .col(string_len(ApiKey::Scopes, 100))
                    .col(integer_null(ApiKey::RatePerSec))
                    .col(integer_null(ApiKey::Burst))
                    .col(integer_null(ApiKey::MaxConcurrent))
                    .col(timestamp_with_time_zone(ApiKey::CreatedAt))
                    .col(timestamp_with_time_zone_null(ApiKey::LastUsedAt))
                    .col(timestamp_with_time_zone_null(ApiKey::RevokedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ApiKey::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ApiKey {
    Table,
    Id,
    KeyId,
    Name,
    Hash,
    Scopes,
    RatePerSec,
    Burst,
    MaxConcurrent,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}
