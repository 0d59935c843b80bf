//! Audience statistics kept as they change, so that counting the company's
//! distinct followers costs the same for ten people as for ten million.
//!
//! - `app.audience_bit`: each official account's bit in a person's mask
//!   (0..=62, in registration order; `NULL` for other kinds, and for
//!   official accounts past the 63rd, which are left out of the statistics).
//! - `person.audience_mask`: the bits of the official accounts the person
//!   follows through their linked accounts.
//! - `audience_cell`: with `app_id` 0, how many persons have each non-zero
//!   mask; with an app's id (and that app's bit as `mask`), how many of the
//!   app's followers are linked to no person (UnionID unknown).
//! - `audience_day`: the value of each cell at the end of each day on which
//!   it changed (days in China Standard Time, `YYYY-MM-DD`), for "as of"
//!   answers and daily series.
//! - `account.unfollowed_at`: when the account was last seen to stop
//!   following.
//!
//! Existing data is counted once here: bits, masks, cells, and one day row
//! per cell for the day of the upgrade.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Adds the audience columns and tables and counts what is stored.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// Official accounts past this many are left out of the masks (a `BIGINT`
/// holds 63 bits without touching the sign).
const BITS: i64 = 63;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        manager
            .alter_table(
                Table::alter()
                    .table(App::Table)
                    .add_column(small_integer_null(App::AudienceBit))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Person::Table)
                    .add_column(big_integer(Person::AudienceMask).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Account::Table)
                    .add_column(timestamp_with_time_zone_null(Account::UnfollowedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_app_audience_bit")
                    .table(App::Table)
                    .col(App::AudienceBit)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AudienceCell::Table)
                    .col(big_integer(AudienceCell::AppId))
                    .col(big_integer(AudienceCell::Mask))
                    .col(big_integer(AudienceCell::Count))
                    .primary_key(
                        Index::create()
                            .col(AudienceCell::AppId)
                            .col(AudienceCell::Mask),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AudienceDay::Table)
                    .col(string_len(AudienceDay::Day, 10))
                    .col(big_integer(AudienceDay::AppId))
                    .col(big_integer(AudienceDay::Mask))
                    .col(big_integer(AudienceDay::Count))
                    .primary_key(
                        Index::create()
                            .col(AudienceDay::Day)
                            .col(AudienceDay::AppId)
                            .col(AudienceDay::Mask),
                    )
                    .to_owned(),
            )
            .await?;

        // The same SQL on both databases.
        let db = manager.get_connection();
        db.execute_unprepared(&format!(
            "UPDATE app SET audience_bit = ( \
                SELECT COUNT(*) FROM app AS earlier \
                WHERE earlier.kind = 'OFFICIAL_ACCOUNT' AND earlier.id < app.id) \
             WHERE kind = 'OFFICIAL_ACCOUNT' AND ( \
                SELECT COUNT(*) FROM app AS earlier \
                WHERE earlier.kind = 'OFFICIAL_ACCOUNT' AND earlier.id < app.id) < {BITS}"
        ))
        .await?;
        // A person has one account per app, so the sum of the bits is their union.
        db.execute_unprepared(
            "UPDATE person SET audience_mask = COALESCE(( \
                SELECT SUM(CAST(1 AS BIGINT) << app.audience_bit) \
                FROM account JOIN app ON app.id = account.app_id \
                WHERE account.person_id = person.id \
                  AND account.subscribed = TRUE \
                  AND app.audience_bit IS NOT NULL), 0)",
        )
        .await?;
        db.execute_unprepared(
            "INSERT INTO audience_cell (app_id, mask, count) \
             SELECT 0, audience_mask, COUNT(*) FROM person \
             WHERE audience_mask <> 0 GROUP BY audience_mask",
        )
        .await?;
        db.execute_unprepared(
            "INSERT INTO audience_cell (app_id, mask, count) \
             SELECT app.id, CAST(1 AS BIGINT) << app.audience_bit, COUNT(*) \
             FROM account JOIN app ON app.id = account.app_id \
             WHERE account.person_id IS NULL AND account.subscribed = TRUE \
               AND app.audience_bit IS NOT NULL \
             GROUP BY app.id, app.audience_bit",
        )
        .await?;
        // China Standard Time has no daylight saving: UTC+8 all year.
        let today = (chrono::Utc::now() + chrono::TimeDelta::hours(8))
            .format("%Y-%m-%d")
            .to_string();
        db.execute_unprepared(&format!(
            "INSERT INTO audience_day (day, app_id, mask, count) \
             SELECT '{today}', app_id, mask, count FROM audience_cell"
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AudienceDay::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AudienceCell::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("uq_app_audience_bit")
                    .table(App::Table)
                    .to_owned(),
            )
            .await?;
        for (table, column) in [
            (App::Table.into_iden(), App::AudienceBit.into_iden()),
            (Person::Table.into_iden(), Person::AudienceMask.into_iden()),
            (
                Account::Table.into_iden(),
                Account::UnfollowedAt.into_iden(),
            ),
        ] {
            manager
                .alter_table(Table::alter().table(table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum App {
    Table,
    AudienceBit,
}

#[derive(DeriveIden)]
enum Person {
    Table,
    AudienceMask,
}

#[derive(DeriveIden)]
enum Account {
    Table,
    UnfollowedAt,
}

#[derive(DeriveIden)]
enum AudienceCell {
    Table,
    AppId,
    Mask,
    Count,
}

#[derive(DeriveIden)]
enum AudienceDay {
    Table,
    Day,
    AppId,
    Mask,
    Count,
}
