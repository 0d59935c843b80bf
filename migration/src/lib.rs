//! Schema migrations of the union360 store.
//!
//! One file per migration, applied in order; the same code serves SQLite and
//! PostgreSQL. An applied migration is never edited: changes come as new
//! files.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_identity;
mod m20261124_000002_access_token;
mod m20261124_000003_refresh_lease;
mod m20261201_000004_snapshot_user;
mod m20261202_000005_one_account_per_app;
mod m20261202_000006_api_key;
mod m20261207_000007_audience;
mod m20261207_000008_sync_job;
mod m20261207_000009_drop_redundant_person_index;
mod m20261207_000010_callback_receipt;

/// The ordered list of union360 migrations.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_identity::Migration),
            Box::new(m20261124_000002_access_token::Migration),
            Box::new(m20261124_000003_refresh_lease::Migration),
            Box::new(m20261201_000004_snapshot_user::Migration),
            Box::new(m20261202_000005_one_account_per_app::Migration),
            Box::new(m20261202_000006_api_key::Migration),
            Box::new(m20261207_000007_audience::Migration),
            Box::new(m20261207_000008_sync_job::Migration),
            Box::new(m20261207_000009_drop_redundant_person_index::Migration),
            Box::new(m20261207_000010_callback_receipt::Migration),
        ]
    }
}
