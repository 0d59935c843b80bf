//! The `union360` command line: one file per concern, a thin `main`.
//!
//! `serve` is the default. Every flag has an environment twin, and a `.env`
//! file in the working directory is read first when present.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context as _, bail};
use chrono::Utc;
use clap::{Parser, Subcommand};
use secrecy::SecretString;

use crate::apps::{self, NewApp};
use crate::crypto::MasterKey;
use crate::domain::{AppId, AppKind};
use crate::settings::{DatabaseSettings, ServerSettings, Settings};
use crate::simulator::{KindMix, SimConfig, Simulator};
use crate::startup::Application;
use crate::{graphql, store};

/// union360: the customer-360 identity graph for companies on WeChat.
#[derive(Debug, Parser)]
#[command(name = "union360", version, about, long_about = None)]
pub struct Cli {
    /// Database and key settings (shared by every subcommand).
    #[command(flatten)]
    pub database: DatabaseSettings,

    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the GraphQL server (applies pending migrations first).
    Serve(ServerSettings),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Register and list WeChat apps.
    #[command(subcommand)]
    App(AppCommand),
    /// Run the WeChat simulator alone: a local WeChat sandbox with a `/_sim` control plane.
    Simulator(SimulatorArgs),
    /// Run the benchmark harness (server, SQLite and simulator in one process).
    Bench(crate::bench::BenchArgs),
}

/// `union360 simulator …`
#[derive(Debug, clap::Args)]
pub struct SimulatorArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub listen: std::net::SocketAddr,
    /// The seed the world is derived from (same seed, same world).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// How many people live in the world.
    #[arg(long, default_value_t = 1000)]
    pub people: u32,
    /// How many apps the open platform has.
    #[arg(long, default_value_t = 4)]
    pub apps: u32,
    /// The share of apps (0..1) not bound to the open platform.
    #[arg(long, default_value_t = 0.25)]
    pub unbound_share: f64,
    /// Relative weights of the app kinds, e.g. `oa=3,mp=1,app=1,web=1`.
    #[arg(long)]
    pub kinds: Option<KindMix>,
    /// Blank nickname, avatar, sex and places in user/info (WeChat since 2021).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub blank_profiles: bool,
    /// Return UnionIDs of non-followers from user/info (WeChat's older behaviour).
    #[arg(long)]
    pub unionid_for_non_followers: bool,
}

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

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => {
            let server = ServerSettings::parse_defaults();
            serve(cli.database, server).await
        }
        Some(Command::Serve(server)) => serve(cli.database, server).await,
        Some(Command::Migrate) => {
            let store = store::connect(&cli.database.database_url).await?;
            let applied = store::migrate(&store.db).await?;
            println!("{applied} migration(s) applied");
            Ok(())
        }
        Some(Command::Schema) => {
            print!("{}", graphql::sdl());
            Ok(())
        }
        Some(Command::App(command)) => app(cli.database, command).await,
        Some(Command::Simulator(args)) => simulator(args).await,
        Some(Command::Bench(args)) => crate::bench::run(args).await,
    }
}

async fn simulator(args: SimulatorArgs) -> anyhow::Result<()> {
    let config = SimConfig {
        seed: args.seed,
        people: args.people,
        apps: args.apps,
        unbound_share: args.unbound_share,
        kinds: args.kinds.unwrap_or_default(),
        blank_profiles: args.blank_profiles,
        unionid_for_non_followers: args.unionid_for_non_followers,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let handle = Simulator::new(config).serve_on(listener)?;
    println!("WeChat simulator listening on {}", handle.base_url());
    println!("{}", handle.sim.summary());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}

async fn serve(database: DatabaseSettings, server: ServerSettings) -> anyhow::Result<()> {
    let settings = Settings { database, server };
    Application::build(settings)
        .await?
        .run_until_stopped()
        .await
}

impl ServerSettings {
    /// Server settings from the environment and defaults alone (for a bare `union360`).
    fn parse_defaults() -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            server: ServerSettings,
        }
        Only::parse_from(["union360"]).server
    }
}

async fn app(database: DatabaseSettings, command: AppCommand) -> anyhow::Result<()> {
    let store = store::connect(&database.database_url).await?;
    store::migrate(&store.db).await?;
    match command {
        AppCommand::List => {
            let apps = apps::list(&store.db).await?;
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
            let app = apps::register(&store.db, &key, new, Utc::now()).await?;
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
