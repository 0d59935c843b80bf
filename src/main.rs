//! The `union360` binary: parse the command line, run it.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A `.env` file is optional; its absence is not an error.
    let _ = dotenvy::dotenv();
    union360::telemetry::init();
    let cli = union360::cli::Cli::parse();
    match union360::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("union360: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
