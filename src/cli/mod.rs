//! The `union360` command line: one file per command, a thin `main`.
//!
//! `serve` is the default. Every flag has an environment twin, and a `.env`
//! file in the working directory is read first when present.

mod apikey;
mod app;
mod audience;
pub mod bench;
mod master_key;
mod migrate;
mod schema;
mod serve;
mod simulator;
pub mod sync;

use clap::{Parser, Subcommand};

pub use apikey::ApiKeyCommand;
pub use app::AppCommand;
pub use audience::AudienceCommand;
pub use master_key::MasterKeyCommand;
pub use simulator::SimulatorArgs;
pub use sync::SyncCommand;

use crate::settings::{DatabaseSettings, LogSettings, ServerSettings};

/// union360: the customer-360 identity graph for companies on WeChat.
#[derive(Debug, Parser)]
#[command(name = "union360", version, about, long_about = None)]
pub struct Cli {
    /// Database and key settings (shared by every subcommand).
    #[command(flatten)]
    pub database: DatabaseSettings,

    /// Log settings (shared by every subcommand).
    #[command(flatten)]
    pub log: LogSettings,

    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the GraphQL server (applies pending migrations first).
    Serve(Box<ServerSettings>),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Register and list WeChat apps.
    #[command(subcommand)]
    App(AppCommand),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Apikey(ApiKeyCommand),
    /// Manage the master key that encrypts secrets at rest.
    #[command(subcommand, name = "master-key")]
    MasterKey(MasterKeyCommand),
    /// Run the WeChat simulator alone: a local WeChat sandbox with a `/_sim` control plane.
    Simulator(SimulatorArgs),
    /// Import the followers of official accounts from WeChat (resumes where a stopped sync left off).
    Sync(SyncCommand),
    /// Print the audience statistics: distinct followers and overlaps.
    Audience(AudienceCommand),
    /// Run the benchmark harness: refresh (the default), sync or audience,
    /// each with the real services and a WeChat simulator in one process.
    Bench(bench::BenchArgs),
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => serve::run(cli.database, serve::from_environment()).await,
        Some(Command::Serve(server)) => serve::run(cli.database, *server).await,
        Some(Command::Migrate) => migrate::run(cli.database).await,
        Some(Command::Schema) => {
            schema::run();
            Ok(())
        }
        Some(Command::App(command)) => app::run(cli.database, command).await,
        Some(Command::Apikey(command)) => apikey::run(cli.database, command).await,
        Some(Command::MasterKey(command)) => master_key::run(cli.database, command).await,
        Some(Command::Simulator(args)) => simulator::run(args).await,
        Some(Command::Bench(args)) => bench::run(cli.database, args).await,
        Some(Command::Sync(command)) => sync::run(cli.database, command).await,
        Some(Command::Audience(command)) => audience::run(cli.database, command).await,
    }
}
