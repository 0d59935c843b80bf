//! `union360 apikey`: create, list and revoke API keys.

use clap::Subcommand;
use secrecy::ExposeSecret;

use crate::clock::Clock;
use crate::keys::{KeyInfo, KeyLimits, Keys, NewKey, Scopes};
use crate::settings::{DatabaseSettings, KeySettings};
use crate::store;

/// `union360 apikey …`
#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key and print it, the only time it is shown (only its hash is kept).
    Create {
        /// Who or what will use the key.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes: read, pii, stats, write, admin.
        #[arg(long)]
        scopes: Scopes,
        /// Requests per second (default: the server's `UNION360_KEY_RATE_PER_SEC`).
        #[arg(long)]
        rate_per_sec: Option<u32>,
        /// The largest burst of requests (default: the server's `UNION360_KEY_BURST`).
        #[arg(long)]
        burst: Option<u32>,
        /// Requests in flight at once (default: the server's `UNION360_KEY_MAX_CONCURRENT`).
        #[arg(long)]
        max_concurrent: Option<u32>,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by its id (`u360_…`, as `apikey list` shows it).
    Revoke {
        /// The key's id.
        key_id: String,
    },
}

/// Runs an `apikey` subcommand.
pub(super) async fn run(database: DatabaseSettings, command: ApiKeyCommand) -> anyhow::Result<()> {
    let store = store::connect(&database.database_url).await?;
    store::migrate(&store.db).await?;
    let keys = Keys::new(
        store.db.clone(),
        Clock::system(),
        KeySettings::default().limits(),
    );
    match command {
        ApiKeyCommand::Create {
            name,
            scopes,
            rate_per_sec,
            burst,
            max_concurrent,
        } => {
            let created = keys
                .create(NewKey {
                    name,
                    scopes,
                    limits: KeyLimits {
                        rate_per_sec,
                        burst,
                        max_concurrent,
                    },
                })
                .await?;
            eprintln!(
                "created {} ({}) with scopes {}; the key is shown this once:",
                created.info.key_id, created.info.name, created.info.scopes
            );
            println!("{}", created.key.expose_secret());
        }
        ApiKeyCommand::List => {
            let all = keys.list().await?;
            if all.is_empty() {
                println!("no API keys; create one with `union360 apikey create`");
            }
            for key in all {
                println!("{}", line(&key));
            }
        }
        ApiKeyCommand::Revoke { key_id } => {
            let key = keys.revoke(&key_id).await?;
            println!("revoked {}", line(&key));
        }
    }
    // Closing checkpoints a SQLite file's write-ahead log and removes it.
    store::close(&store.db).await?;
    Ok(())
}

/// One key as a tab-separated line: id, name, scopes, state, created, last used.
fn line(key: &KeyInfo) -> String {
    let state = match key.revoked_at {
        Some(at) => format!("revoked {}", at.to_rfc3339()),
        None => "active".to_owned(),
    };
    let last_used = key.last_used_at.map_or_else(
        || "never used".to_owned(),
        |at| format!("last used {}", at.to_rfc3339()),
    );
    format!(
        "{}\t{}\t{}\t{state}\tcreated {}\t{last_used}",
        key.key_id,
        key.name,
        key.scopes,
        key.created_at.to_rfc3339()
    )
}
