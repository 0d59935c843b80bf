//! The `union360` binary: parse the command line, run it.

use std::io::Write as _;

#[tokio::main]
async fn main() {
    // A `.env` file is optional; its absence is not an error.
    let _ = dotenvy::dotenv();
    let cli = union360::cli::Cli::parse_args();
    union360::telemetry::init_with(cli.log.log_format);
    let code = match union360::cli::run(cli).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("union360: {e:#}");
            1
        }
    };
    // End here, whatever tasks remain: dropping the runtime would wait for
    // a task stuck in a long computation, and a stopped server must exit.
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}
