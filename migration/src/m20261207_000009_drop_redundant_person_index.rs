//! Drops `idx_account_person`: `uq_account_person_app (person_id, app_id)`
//! begins with the same column and serves every lookup of a person's
//! accounts, so the narrower index only cost every write of an account.

use sea_orm_migration::prelude::*;

/// Drops `idx_account_person`; down restores it.
#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "idx_account_person";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(Account::Table).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Account::Table)
                    .col(Account::PersonId)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Account {
    Table,
    PersonId,
}
