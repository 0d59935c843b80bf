//! `union360 master-key rotate`: re-seal every secret under a new master key.

use anyhow::Context as _;
use clap::Subcommand;
use sea_orm::TransactionTrait;
use secrecy::{ExposeSecret, SecretString};

use crate::apps;
use crate::crypto::{self, KeyOrigin, MasterKey};
use crate::settings::DatabaseSettings;
use crate::store;
use crate::wechat::TokenStore;

/// `union360 master-key …`
#[derive(Debug, Subcommand)]
pub enum MasterKeyCommand {
    /// Re-seal every stored secret (app secrets, callback tokens,
    /// EncodingAESKeys) under a new master key, in one transaction; cached
    /// access tokens are dropped and fetched again. Stop the servers first,
    /// and start them with the new key.
    Rotate {
        /// The new key (32 bytes as base64 or hex); generated when absent.
        #[arg(long, env = "UNION360_NEW_MASTER_KEY", hide_env_values = true)]
        new_key: Option<SecretString>,
    },
}

/// Runs a `master-key` subcommand.
pub(super) async fn run(
    database: DatabaseSettings,
    command: MasterKeyCommand,
) -> anyhow::Result<()> {
    let MasterKeyCommand::Rotate { new_key } = command;
    let url = &database.database_url;
    let (old, origin) = MasterKey::resolve(database.master_key.as_ref(), url)?;
    if matches!(origin, KeyOrigin::Generated(_) | KeyOrigin::Ephemeral) {
        anyhow::bail!("no master key to rotate: this database has none yet");
    }
    let (new, new_text, generated) = match new_key {
        Some(text) => (MasterKey::parse(text.expose_secret())?, text, false),
        None => {
            let (key, text) = MasterKey::generate();
            (key, text, true)
        }
    };
    let store = store::connect(url)
        .await
        .with_context(|| format!("connecting to the database ({})", store::redact(url)))?;
    store::migrate(&store.db).await?;
    let txn = store.db.begin().await?;
    let resealed = apps::reseal_all(&txn, &old, &new).await.context(
        "re-sealing app secrets (is the current master key the one they were sealed with?)",
    )?;
    let tokens = TokenStore::clear(&txn).await?;
    match &origin {
        KeyOrigin::File(path) => {
            // The new key is on disk before the database depends on it.
            let previous = match crypto::replace_key_file(path, &new_text) {
                Ok(previous) => previous,
                Err(e) => {
                    txn.rollback().await?;
                    return Err(e).with_context(|| format!("writing {}", path.display()));
                }
            };
            if let Err(e) = txn.commit().await {
                // The database still holds the old seals: so must the key file.
                let _ = std::fs::rename(previous, path);
                return Err(e).context("committing the re-sealed secrets");
            }
            eprintln!(
                "re-sealed {resealed} secret(s) and dropped {tokens} cached token(s); the new key is in {} (the old one in {}.previous: delete it once the servers run)",
                path.display(),
                path.display()
            );
        }
        _ => {
            txn.commit().await?;
            eprintln!(
                "re-sealed {resealed} secret(s) and dropped {tokens} cached token(s); start every server with the new UNION360_MASTER_KEY"
            );
            if generated {
                eprintln!("the new master key (shown this once):");
                println!("{}", new_text.expose_secret());
            }
        }
    }
    Ok(())
}
