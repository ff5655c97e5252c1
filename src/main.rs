//! The `dnsseeder` binary: parses the command line, sets up logging, runs the command,
//! and maps errors to exit codes (2 for unusable arguments, 1 for runtime failures).

use std::process::ExitCode;

use clap::Parser;
use dnsseeder::cli::{Cli, UsageError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    match dnsseeder::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<UsageError>() => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
