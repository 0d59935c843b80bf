//! `union360 app`: register and list WeChat apps.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use sea_orm::DatabaseConnection;
use secrecy::SecretString;

use crate::apps::{self, Apps, NewApp};
use crate::clock::Clock;
use crate::crypto::MasterKey;
use crate::domain::{AppId, AppKind};
use crate::settings::DatabaseSettings;
use crate::store;

/// `union360 app …`
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Register an app. Secrets are read from the environment
    /// (UNION360_APP_SECRET, UNION360_APP_CALLBACK_TOKEN, UNION360_APP_AES_KEY)
    /// or, when unset, from standard input, one per line; never from a flag.
    Add {
        /// The WeChat appid (`wx…`).
        #[arg(long)]
        appid: String,
        /// official-account, mini-program, mobile-app or website.
        #[arg(long)]
        kind: String,
        /// A display name.
        #[arg(long)]
        name: String,
    },
    /// List registered apps (never their secrets).
    List,
}

/// Runs an `app` subcommand.
pub(super) async fn run(database: DatabaseSettings, command: AppCommand) -> anyhow::Result<()> {
    let store = crate::startup::connect_database(&database).await?;
    store::migrate(&store.db).await?;
    let result = run_on(&store.db, &database, command).await;
    // Closing checkpoints a SQLite file's write-ahead log and removes it.
    store::close(&store.db).await?;
    result
}

async fn run_on(
    db: &DatabaseConnection,
    database: &DatabaseSettings,
    command: AppCommand,
) -> anyhow::Result<()> {
    match command {
        AppCommand::List => {
            let apps = apps::list(db).await?;
            if apps.is_empty() {
                println!("no apps registered; add one with `union360 app add`");
            }
            for app in apps {
                let callback =
                    if app.callback_token_sealed.is_some() && app.aes_key_sealed.is_some() {
                        "callback configured"
                    } else {
                        "no callback"
                    };
                println!("{}\t{}\t{}\t{callback}", app.appid, app.kind, app.name);
            }
            Ok(())
        }
        AppCommand::Add { appid, kind, name } => {
            let appid = AppId::parse(appid)?;
            let kind: AppKind = kind.parse()?;
            let (key, _) =
                MasterKey::resolve(database.master_key.as_ref(), &database.database_url)?;
            let mut input = SecretInput::new();
            let secret = input
                .read("UNION360_APP_SECRET", "App secret")?
                .context("an app secret is required")?;
            let (callback_token, aes_key) = if kind == AppKind::OfficialAccount {
                (
                    input.read(
                        "UNION360_APP_CALLBACK_TOKEN",
                        "Callback token (empty for none)",
                    )?,
                    input.read("UNION360_APP_AES_KEY", "EncodingAESKey (empty for none)")?,
                )
            } else {
                (None, None)
            };
            let new = NewApp {
                appid,
                kind,
                name,
                secret,
                callback_token,
                aes_key,
                freshness_ttl_secs: None,
            };
            let app = Apps::new(db.clone(), key, Clock::system())
                .register(new)
                .await?;
            println!("registered {} ({}) as {}", app.appid, app.kind, app.name);
            Ok(())
        }
    }
}

/// Reads secrets from the environment, else from standard input (prompting on a terminal).
struct SecretInput {
    stdin: std::io::StdinLock<'static>,
    interactive: bool,
}

impl SecretInput {
    fn new() -> Self {
        let stdin = std::io::stdin();
        let interactive = stdin.is_terminal();
        Self {
            stdin: stdin.lock(),
            interactive,
        }
    }

    fn read(&mut self, env: &str, prompt: &str) -> anyhow::Result<Option<SecretString>> {
        if let Ok(value) = std::env::var(env) {
            return Ok(Some(value)
                .filter(|v| !v.is_empty())
                .map(SecretString::from));
        }
        if self.interactive {
            eprint!("{prompt}: ");
            std::io::stderr().flush()?;
        }
        let mut line = String::new();
        if self.stdin.read_line(&mut line)? == 0 && prompt.starts_with("App secret") {
            bail!("no app secret: set {env} or pass it on standard input");
        }
        let value = line.trim_end_matches(['\r', '\n']).to_owned();
        Ok(Some(value)
            .filter(|v| !v.is_empty())
            .map(SecretString::from))
    }
}
