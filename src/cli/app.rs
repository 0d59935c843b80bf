//! `union360 app`: register and list WeChat apps, and change an official
//! account's EncodingAESKey.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;
use clap::Subcommand;
use sea_orm::DatabaseConnection;
use secrecy::SecretString;

use crate::apps::{self, AppError, AppField, AppInput, Apps, FieldProblems};
use crate::clock::Clock;
use crate::crypto::MasterKey;
use crate::domain::AppKind;
use crate::settings::DatabaseSettings;
use crate::store;

/// `union360 app …`
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Register an app. Secrets are read from the environment
    /// (UNION360_APP_SECRET, UNION360_APP_CALLBACK_TOKEN, UNION360_APP_AES_KEY)
    /// or, when unset, from standard input, one per line; never from a flag.
    /// Every invalid field is reported at once.
    #[command(visible_alias = "register")]
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
    /// Set a new EncodingAESKey for an official account, keeping the
    /// current one so that pushes sealed with either are opened until the
    /// next change. The key is read from UNION360_APP_AES_KEY or, when
    /// unset, from standard input. Run it first, then change the key in
    /// the WeChat console.
    RotateAesKey {
        /// The official account's appid.
        #[arg(long)]
        appid: String,
    },
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
            let (key, _) =
                MasterKey::resolve(database.master_key.as_ref(), &database.database_url)?;
            let mut input = SecretInput::new();
            let secret = input
                .read("UNION360_APP_SECRET", "App secret")?
                .unwrap_or_else(|| SecretString::from(String::new()));
            let official = kind.parse::<AppKind>() == Ok(AppKind::OfficialAccount);
            let (callback_token, aes_key) = if official {
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
            let parsed = AppInput {
                appid,
                kind,
                name,
                secret,
                callback_token,
                aes_key,
                freshness_ttl_secs: None,
            }
            .parse();
            let new = match parsed {
                Ok(new) => new,
                Err(AppError::InvalidFields(problems)) => bail!(describe(&problems)),
                Err(e) => return Err(e.into()),
            };
            let app = Apps::new(db.clone(), key, Clock::system())
                .register(new)
                .await?;
            println!("registered {} ({}) as {}", app.appid, app.kind, app.name);
            Ok(())
        }
        AppCommand::RotateAesKey { appid } => {
            let (key, _) =
                MasterKey::resolve(database.master_key.as_ref(), &database.database_url)?;
            let appid = crate::domain::AppId::parse(appid)?;
            let Some(aes_key) =
                SecretInput::new().read("UNION360_APP_AES_KEY", "EncodingAESKey")?
            else {
                bail!("no EncodingAESKey: set UNION360_APP_AES_KEY or pass it on standard input");
            };
            let app = Apps::new(db.clone(), key, Clock::system())
                .rotate_aes_key(&appid, aes_key)
                .await?;
            println!(
                "{}: new EncodingAESKey set; the previous one still opens pushes until the next change",
                app.appid
            );
            Ok(())
        }
    }
}

/// Every problem on a line of its own, each under the flag or variable it
/// came from.
fn describe(problems: &FieldProblems) -> String {
    let mut text = String::from("invalid app:");
    for problem in &problems.0 {
        let source = match problem.field {
            AppField::Appid => "--appid",
            AppField::Kind => "--kind",
            AppField::Name => "--name",
            AppField::Secret => "UNION360_APP_SECRET (or line 1 of standard input)",
            AppField::CallbackToken => "UNION360_APP_CALLBACK_TOKEN (or line 2)",
            AppField::EncodingAesKey => "UNION360_APP_AES_KEY (or line 3)",
            AppField::FreshnessTtlSeconds => "the freshness TTL",
        };
        text.push_str(&format!("\n  {source}: {}", problem.message));
    }
    text
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
