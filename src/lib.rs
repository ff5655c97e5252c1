//! dnsseeder: a Bitcoin DNS seeder whose memory lives in SQLite.
//!
//! The design follows sipa's bitcoin-seeder. A fixed pool of crawler threads takes due
//! addresses from a bounded queue fed by a scheduler, probes each peer over a blocking
//! socket (`p2p`), and hands the result to a single writer thread that folds it into the
//! peer's decaying reliability windows (`reliability`) in batched SQLite transactions
//! (`store`). A DNS thread answers A/AAAA queries for the seed name and its `x<hex>`
//! service-filter subdomains from per-mask caches rebuilt by indexed queries (`dns`).
//! The database is an ordinary SQLite file: the `peers`, `stats`, `dump` and `import`
//! subcommands (`commands`) read and write it, and so can `sqlite3`; `backup` copies it
//! consistently while it is written. Secondaries (NSD, Knot, BIND) can carry the zone:
//! the DNS server answers AXFR and sends NOTIFY (`dns::transfer`), and `zone` prints the
//! same zone as a master file (`zone_file`).

pub mod addr;
pub mod asmap;
pub mod backup;
pub mod cli;
pub mod commands;
pub mod config;
pub mod crawler;
pub mod dns;
pub mod dump;
pub mod metrics;
pub mod p2p;
#[cfg(test)]
mod proptests;
pub mod ratelog;
pub mod reliability;
pub mod seeder;
pub mod services;
pub mod sim;
pub mod socks5;
pub mod store;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod thread;
pub mod zone_file;

use std::io::Write;

use cli::{Cli, Command};

/// Seconds since the UNIX epoch, by the system clock.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Runs a parsed command line.
///
/// # Errors
/// Any failure, with its cause chain; [`cli::UsageError`] for unusable arguments.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match cli.command {
        Command::Run(args) => seeder::run(&args)?,
        Command::Demo(args) => seeder::demo(&args)?,
        Command::Peers(args) => commands::peers(&args, &mut out)?,
        Command::Stats(args) => commands::stats(&args, &mut out)?,
        Command::Dump(args) => commands::dump(&args, &mut out)?,
        Command::Import(args) => commands::import(&args, &mut out)?,
        Command::Backup(args) => backup::backup(&args, &mut out)?,
        Command::Zone(args) => zone_file::zone(&args, &mut out)?,
    }
    out.flush()?;
    Ok(())
}
