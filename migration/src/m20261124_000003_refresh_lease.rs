//! Short refresh leases, so a fleet of instances makes one WeChat call per account.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Creates `refresh_lease`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RefreshLease::Table)
                    .col(big_integer(RefreshLease::AccountId).primary_key())
                    .col(string_len(RefreshLease::Holder, 64))
                    .col(timestamp_with_time_zone(RefreshLease::ExpiresAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_refresh_lease_account")
                            .from(RefreshLease::Table, RefreshLease::AccountId)
                            .to(Account::Table, Account::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RefreshLease::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum RefreshLease {
    Table,
    AccountId,
    Holder,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Account {
    Table,
    Id,
}
