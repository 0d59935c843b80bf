//! `union360 migrate`: apply pending database migrations and exit.

use crate::settings::DatabaseSettings;
use crate::store;

/// Applies the pending migrations and says how many.
pub(super) async fn run(database: DatabaseSettings) -> anyhow::Result<()> {
    let store = crate::startup::connect_database(&database).await?;
    let applied = store::migrate(&store.db).await?;
    println!("{applied} migration(s) applied");
    store::close(&store.db).await?;
    Ok(())
}
