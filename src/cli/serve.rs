//! `union360 serve` (and a bare `union360`): run the GraphQL server.

use clap::Parser;

use crate::settings::{DatabaseSettings, ServerSettings, Settings};
use crate::startup::Application;

/// Builds the server and runs it until Ctrl-C or SIGTERM.
pub(super) async fn run(database: DatabaseSettings, server: ServerSettings) -> anyhow::Result<()> {
    let settings = Settings { database, server };
    Application::build(settings)
        .await?
        .run_until_stopped()
        .await
}

/// Server settings from the environment and defaults alone (for a bare `union360`).
pub(super) fn from_environment() -> ServerSettings {
    #[derive(Parser)]
    struct Only {
        #[command(flatten)]
        server: ServerSettings,
    }
    Only::parse_from(["union360"]).server
}
