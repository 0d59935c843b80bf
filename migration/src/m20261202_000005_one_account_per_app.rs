//! Identity rule 6: a person has at most one account per app (WeChat gives a
//! user one OpenID per app).
//!
//! A unique index on `account (person_id, app_id)` holds the rule under
//! concurrent writes; unlinked accounts (`person_id` NULL) are not limited,
//! as NULLs never collide in a unique index, on SQLite and PostgreSQL alike.
//! Accounts that break the rule already (several openids of one app linked
//! to one person) are settled first as the identity service settles them
//! now: the account linked first (lowest id) keeps the link; the others are
//! unlinked, with their UnionID recorded as their conflict.

use sea_orm_migration::prelude::*;

/// Settles existing second accounts, then adds `uq_account_person_app`.
#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "uq_account_person_app";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The same SQL on both databases; the conflict time is the account's
        // last change, in the column format the database already uses.
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE account SET \
                    unionid_conflict = unionid, \
                    unionid_conflict_at = updated_at, \
                    unionid = NULL, \
                    person_id = NULL \
                 WHERE person_id IS NOT NULL AND EXISTS ( \
                    SELECT 1 FROM account AS first \
                    WHERE first.person_id = account.person_id \
                      AND first.app_id = account.app_id \
                      AND first.id < account.id)",
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Account::Table)
                    .col(Account::PersonId)
                    .col(Account::AppId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(Account::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Account {
    Table,
    PersonId,
    AppId,
}
