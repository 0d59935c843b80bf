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

/// Whether the app secrets stored at `url` open under `key` (`None`: no
/// app, or the database cannot be read).
async fn sealed_under(url: &str, key: &MasterKey) -> Option<bool> {
    let store = store::connect(url).await.ok()?;
    let app = apps::list(&store.db).await.ok()?.into_iter().next()?;
    Some(
        key.open(
            &apps::seal_purpose("secret", &app.appid),
            &app.secret_sealed,
        )
        .is_ok(),
    )
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
                // A failed commit may still have been applied (the connection
                // can drop after the server committed): keep whichever key
                // opens what the database now holds.
                let holds_new = sealed_under(url, &new).await;
                if holds_new == Some(false) {
                    let _ = std::fs::rename(&previous, path);
                }
                let kept = match holds_new {
                    Some(true) => {
                        "the database holds the new seals: the key file has the new key".to_owned()
                    }
                    Some(false) => {
                        "the database holds the old seals: the key file has the old key again"
                            .to_owned()
                    }
                    None => format!(
                        "could not tell which key the database holds: {} has the new key, {} the old one; start a server with each to see which opens the apps",
                        path.display(),
                        previous.display()
                    ),
                };
                return Err(e).context(format!("committing the re-sealed secrets ({kept})"));
            }
            eprintln!(
                "re-sealed {resealed} secret(s) and dropped {tokens} cached token(s); the new key is in {} (the old one in {}.previous: delete it once the servers run)",
                path.display(),
                path.display()
            );
        }
        _ => {
            // Shown before the database depends on it: if this process dies
            // after the commit, the operator has it already.
            if generated {
                eprintln!("the new master key (shown this once):");
                println!("{}", new_text.expose_secret());
                std::io::Write::flush(&mut std::io::stdout())
                    .context("printing the new master key")?;
            }
            txn.commit().await.context(
                "committing the re-sealed secrets (if it was applied after all, the new key opens them)",
            )?;
            eprintln!(
                "re-sealed {resealed} secret(s) and dropped {tokens} cached token(s); start every server with the new UNION360_MASTER_KEY"
            );
        }
    }
    store::close(&store.db).await?;
    Ok(())
}
