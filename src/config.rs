//! The command line: clap structures for every subcommand, and the parsers of the
//! values operators type (service flags, address families). Validation that clap cannot
//! express ends in a [`UsageError`], which the binary maps to exit code 2.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::addr::Family;
use crate::store::Status;

/// A Bitcoin DNS seeder whose memory lives in SQLite.
#[derive(Debug, Parser)]
#[command(name = "dnsseeder", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List peers from the database, best first.
    Peers(PeersArgs),
    /// Show counts by status, address family and failure reason.
    Stats(StatsArgs),
    /// Write the database as a sipa-format dnsseed.dump.
    Dump(DumpArgs),
    /// Import a dnsseed.dump (or one IP:PORT per line) into the database.
    Import(ImportArgs),
}

/// The database flag shared by every subcommand.
#[derive(Debug, Args)]
pub struct DbArg {
    /// SQLite database file.
    #[arg(long, env = "DNSSEEDER_DB", default_value = "dnsseeder.db")]
    pub db: PathBuf,
}

/// Output formats of `peers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// Output formats of `stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatsFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct PeersArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Only good peers (short for --status good).
    #[arg(long, conflicts_with = "status")]
    pub good: bool,
    /// Only peers with this status: new, good, reachable, unreachable, banned.
    #[arg(long, value_parser = parse_status)]
    pub status: Option<Status>,
    /// Only peers having all these service bits: names (NETWORK,WITNESS), 0x-hex or decimal.
    #[arg(long, value_parser = parse_services)]
    pub filter_service: Option<u64>,
    /// Only this address family: ipv4, ipv6, onion, i2p, cjdns.
    #[arg(long, value_parser = parse_family)]
    pub network: Option<Family>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// At most this many rows.
    #[arg(long)]
    pub limit: Option<u64>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = StatsFormat::Table)]
    pub format: StatsFormat,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Write to this file (atomically) instead of standard output.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// A dnsseed.dump, or a file with one IP:PORT per line.
    pub file: PathBuf,
}

/// A problem with the arguments that clap could not see; exits with code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Parses `--filter-service` (see [`crate::services::parse`]).
///
/// # Errors
/// A one-line message naming the known flags.
pub fn parse_services(text: &str) -> Result<u64, String> {
    crate::services::parse(text)
}

fn parse_family(text: &str) -> Result<Family, String> {
    text.parse()
}

fn parse_status(text: &str) -> Result<Status, String> {
    text.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
