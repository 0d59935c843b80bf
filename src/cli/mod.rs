//! The `union360` command line: one file per command, a thin `main`.
//!
//! `serve` is the default. Every flag has an environment twin, and a `.env`
//! file in the working directory is read first when present.

mod apikey;
mod app;
mod audience;
pub mod bench;
mod demo;
mod master_key;
mod migrate;
mod schema;
mod serve;
mod simulator;
pub mod sync;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

pub use apikey::ApiKeyCommand;
pub use app::AppCommand;
pub use audience::AudienceCommand;
pub use master_key::MasterKeyCommand;
pub use simulator::SimulatorArgs;
pub use sync::SyncCommand;

use crate::settings::{DatabaseSettings, LogSettings, ServerSettings};

/// The ids of the database flags ([`DatabaseSettings`]'s fields).
const DATABASE_ARGS: [&str; 3] = [
    "database_url",
    "master_key",
    "database_connect_timeout_secs",
];

/// union360: the customer-360 identity graph for companies on WeChat.
///
/// Parse it with [`Cli::parse_args`] (or [`Cli::try_parse_args_from`]),
/// which lets the database flags go before or after the subcommand.
#[derive(Debug, Parser)]
#[command(name = "union360", version, about, long_about = None)]
pub struct Cli {
    /// Database and key settings of a bare `union360` (which serves), also
    /// taken by a subcommand that uses the database when given before it.
    #[command(flatten)]
    pub database: DatabaseSettings,

    /// Log settings (shared by every subcommand).
    #[command(flatten)]
    pub log: LogSettings,

    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands. Those that use the database carry its settings
/// themselves, so only their help lists them.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the GraphQL server (applies pending migrations first).
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Register and list WeChat apps.
    App(AppArgs),
    /// Create, list and revoke API keys.
    Apikey(ApiKeyArgs),
    /// Manage the master key that encrypts secrets at rest.
    #[command(name = "master-key")]
    MasterKey(MasterKeyArgs),
    /// Run the WeChat simulator alone: a local WeChat sandbox with a `/_sim` control plane.
    Simulator(SimulatorArgs),
    /// Import the followers of official accounts from WeChat (resumes where a stopped sync left off).
    Sync(SyncCommand),
    /// Print the audience statistics: distinct followers and overlaps.
    Audience(AudienceCommand),
    /// Try union360 on simulated WeChat data: simulator, sync, server, dashboard and a key, in one command.
    Demo(demo::DemoArgs),
    /// Run the benchmark harness: refresh (the default), sync or audience,
    /// each with the real services and a WeChat simulator in one process.
    Bench(bench::BenchArgs),
}

/// `union360 serve`: the database and the server settings.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Database and key settings.
    #[command(flatten)]
    pub database: DatabaseSettings,
    /// Server settings.
    #[command(flatten)]
    pub server: ServerSettings,
}

/// A subcommand that needs only the database settings.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Database and key settings.
    #[command(flatten)]
    pub database: DatabaseSettings,
}

/// `union360 app …`
#[derive(Debug, Args)]
pub struct AppArgs {
    /// Database and key settings.
    #[command(flatten)]
    pub database: DatabaseSettings,
    /// What to do with apps.
    #[command(subcommand)]
    pub command: AppCommand,
}

/// `union360 apikey …`
#[derive(Debug, Args)]
pub struct ApiKeyArgs {
    /// Database and key settings.
    #[command(flatten)]
    pub database: DatabaseSettings,
    /// What to do with API keys.
    #[command(subcommand)]
    pub command: ApiKeyCommand,
}

/// `union360 master-key …`
#[derive(Debug, Args)]
pub struct MasterKeyArgs {
    /// Database and key settings.
    #[command(flatten)]
    pub database: DatabaseSettings,
    /// What to do with the master key.
    #[command(subcommand)]
    pub command: MasterKeyCommand,
}

impl Command {
    /// The database settings of a subcommand that uses the database.
    fn database_mut(&mut self) -> Option<&mut DatabaseSettings> {
        match self {
            Self::Serve(args) => Some(&mut args.database),
            Self::Migrate(args) => Some(&mut args.database),
            Self::App(args) => Some(&mut args.database),
            Self::Apikey(args) => Some(&mut args.database),
            Self::MasterKey(args) => Some(&mut args.database),
            Self::Sync(args) => Some(&mut args.database),
            Self::Audience(args) => Some(&mut args.database),
            Self::Schema | Self::Simulator(_) | Self::Bench(_) | Self::Demo(_) => None,
        }
    }
}

impl Cli {
    /// The command line's definition. The database flags of a subcommand
    /// with subcommands of its own (`app add`) are accepted after those too.
    pub fn definition() -> clap::Command {
        let mut cli = <Self as CommandFactory>::command();
        let nested: Vec<String> = cli
            .get_subcommands()
            .filter(|sub| sub.has_subcommands())
            .filter(|sub| sub.get_arguments().any(|a| a.get_id() == DATABASE_ARGS[0]))
            .map(|sub| sub.get_name().to_owned())
            .collect();
        for name in nested {
            cli = cli.mut_subcommand(name, |sub| {
                DATABASE_ARGS
                    .iter()
                    .fold(sub, |sub, id| sub.mut_arg(id, |arg| arg.global(true)))
            });
        }
        cli
    }

    /// Parses the process's arguments; prints the help, the version or the
    /// error and exits when they ask for it or do not parse.
    pub fn parse_args() -> Self {
        Self::try_parse_args_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses `args` (the first is the program's name). A database flag
    /// given before a subcommand that uses the database applies to it,
    /// unless the subcommand is given the same flag itself.
    pub fn try_parse_args_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut definition = Self::definition();
        let matches = definition.try_get_matches_from_mut(args)?;
        let mut cli = Self::from_arg_matches(&matches).map_err(|e| e.format(&mut definition))?;
        if let (Some(command), Some((_, sub))) = (cli.command.as_mut(), matches.subcommand())
            && let Some(database) = command.database_mut()
        {
            inherit(database, &cli.database, sub, &matches);
        }
        Ok(cli)
    }
}

/// Copies into a subcommand's database settings the flags given before it
/// and not given to it.
fn inherit(
    sub: &mut DatabaseSettings,
    top: &DatabaseSettings,
    sub_m: &ArgMatches,
    top_m: &ArgMatches,
) {
    let given =
        |matches: &ArgMatches, id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let before = |id: &str| given(top_m, id) && !given(sub_m, id);
    if before("database_url") {
        sub.database_url.clone_from(&top.database_url);
    }
    if before("master_key") {
        sub.master_key.clone_from(&top.master_key);
    }
    if before("database_connect_timeout_secs") {
        sub.database_connect_timeout_secs = top.database_connect_timeout_secs;
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => serve::run(cli.database, serve::from_environment()).await,
        Some(Command::Serve(args)) => {
            let ServeArgs { database, server } = *args;
            serve::run(database, server).await
        }
        Some(Command::Migrate(args)) => migrate::run(args.database).await,
        Some(Command::Schema) => {
            schema::run();
            Ok(())
        }
        Some(Command::App(args)) => app::run(args.database, args.command).await,
        Some(Command::Apikey(args)) => apikey::run(args.database, args.command).await,
        Some(Command::MasterKey(args)) => master_key::run(args.database, args.command).await,
        Some(Command::Simulator(args)) => simulator::run(args).await,
        Some(Command::Bench(args)) => bench::run(cli.database, args).await,
        Some(Command::Sync(command)) => sync::run(command).await,
        Some(Command::Demo(args)) => demo::run(args).await,
        Some(Command::Audience(command)) => audience::run(command).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database_url(args: &[&str]) -> String {
        let mut cli = Cli::try_parse_args_from(args).unwrap();
        cli.command
            .as_mut()
            .and_then(Command::database_mut)
            .map_or(cli.database.database_url, |d| d.database_url.clone())
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::definition().debug_assert();
    }

    #[test]
    fn database_flags_go_before_or_after_the_subcommand() {
        let url = |s: &str| format!("sqlite://{s}.db");
        for (args, expected) in [
            (
                vec![
                    "union360",
                    "--database-url",
                    "sqlite://a.db",
                    "apikey",
                    "list",
                ],
                url("a"),
            ),
            (
                vec![
                    "union360",
                    "apikey",
                    "list",
                    "--database-url",
                    "sqlite://b.db",
                ],
                url("b"),
            ),
            (
                vec![
                    "union360",
                    "apikey",
                    "--database-url",
                    "sqlite://c.db",
                    "list",
                ],
                url("c"),
            ),
            (
                vec!["union360", "serve", "--database-url", "sqlite://d.db"],
                url("d"),
            ),
            (
                vec!["union360", "--database-url", "sqlite://e.db", "migrate"],
                url("e"),
            ),
            (
                vec!["union360", "--database-url", "sqlite://f.db"],
                url("f"),
            ),
            // The subcommand's own flag wins over one given before it.
            (
                vec![
                    "union360",
                    "--database-url",
                    "sqlite://g.db",
                    "app",
                    "list",
                    "--database-url",
                    "sqlite://h.db",
                ],
                url("h"),
            ),
        ] {
            assert_eq!(database_url(&args), expected, "{args:?}");
        }
    }

    #[test]
    fn the_simulator_takes_no_database_flag() {
        for flag in ["--database-url", "--master-key"] {
            let refused = Cli::try_parse_args_from(["union360", "simulator", flag, "x"]);
            assert!(refused.is_err(), "simulator {flag}");
        }
    }
}
