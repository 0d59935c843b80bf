//! Refresh leases across instances (PostgreSQL).
//!
//! Before fetching, an instance claims a short lease on each account in the
//! `refresh_lease` table with one `INSERT … ON CONFLICT DO UPDATE … WHERE
//! expired RETURNING`: it fetches the accounts it won, and waits for the
//! others, whose refresh another instance is making, to land in the store.
//! Leases expire on their own, so a crashed instance blocks nobody for long.
//! SQLite serves one instance, whose single flight suffices: every account
//! counts as won there.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value};

use crate::clock::Clock;

/// How long a lease holds when its holder never releases it.
const LEASE: chrono::Duration = chrono::Duration::seconds(10);
/// How often a waiting instance looks for the other's result.
const POLL: Duration = Duration::from_millis(50);

/// Claims leases on `ids` for `holder`, as of `clock`; returns the ids won.
pub async fn claim(
    db: &DatabaseConnection,
    clock: &Clock,
    ids: &[i64],
    holder: &str,
) -> Result<Vec<i64>, DbErr> {
    if db.get_database_backend() != DbBackend::Postgres || ids.is_empty() {
        return Ok(ids.to_vec());
    }
    let now = clock.now();
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO refresh_lease (account_id, holder, expires_at)
             SELECT id, $2, $3 FROM unnest($1::bigint[]) AS id
             ON CONFLICT (account_id) DO UPDATE
                SET holder = excluded.holder, expires_at = excluded.expires_at
                WHERE refresh_lease.expires_at < $4
             RETURNING account_id",
            [
                id_array(ids),
                holder.into(),
                (now + LEASE).into(),
                now.into(),
            ],
        ))
        .await?;
    rows.iter()
        .map(|row| row.try_get::<i64>("", "account_id"))
        .collect()
}

/// Releases `holder`'s leases on `ids`.
pub async fn release(db: &DatabaseConnection, ids: &[i64], holder: &str) -> Result<(), DbErr> {
    if db.get_database_backend() != DbBackend::Postgres || ids.is_empty() {
        return Ok(());
    }
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "DELETE FROM refresh_lease WHERE holder = $1 AND account_id = ANY($2::bigint[])",
        [holder.into(), id_array(ids)],
    ))
    .await?;
    Ok(())
}

/// Waits until the leases on `ids` are gone (their refresh landed, or their
/// holder died and they expired by `clock`), at most one lease period.
pub async fn wait_for(db: &DatabaseConnection, clock: &Clock, ids: &[i64]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + LEASE.to_std().unwrap_or(Duration::from_secs(10));
    while tokio::time::Instant::now() < deadline {
        let held = db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT count(*) AS held FROM refresh_lease WHERE account_id = ANY($1::bigint[]) AND expires_at > $2",
                [
                    id_array(ids),
                    clock.now().into(),
                ],
            ))
            .await?
            .map(|row| row.try_get::<i64>("", "held"))
            .transpose()?
            .unwrap_or(0);
        if held == 0 {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Account ids as a PostgreSQL `bigint[]` parameter.
fn id_array(ids: &[i64]) -> Value {
    Value::Array(
        sea_orm::sea_query::ArrayType::BigInt,
        Some(Box::new(
            ids.iter().map(|id| Value::BigInt(Some(*id))).collect(),
        )),
    )
}
