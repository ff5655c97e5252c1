//! The database subcommands: `peers`, `stats`, `dump` and `import`. Each opens its own
//! connection, so they are safe to run while `dnsseeder run` writes the same file.

use std::io::Write;

use anyhow::Context;
use serde_json::json;

use crate::addr::PeerAddr;
use crate::asmap::Asmap;
use crate::cli::{DumpArgs, Format, ImportArgs, PeersArgs, StatsArgs, StatsFormat};
use crate::reliability::WINDOW_NAMES;
use crate::store::{PeerFilter, PeerRow, Status, Store, Summary};
use crate::{dump, unix_now};

/// `dnsseeder peers`.
///
/// # Errors
/// When the database cannot be read or the output written.
pub fn peers(args: &PeersArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let asmap = load_asmap(args.asmap.as_deref())?;
    let store = Store::open_existing(&args.db.db)?;
    let filter = PeerFilter {
        status: if args.good {
            Some(Status::Good)
        } else {
            args.status
        },
        services: args.filter_service,
        family: args.network,
        // `--asn` filters after the ASNs are looked up: the limit applies after it.
        limit: args.limit.filter(|_| args.asn.is_none()),
    };
    let mut rows = store.peers(&filter, unix_now()).context("listing peers")?;
    if let Some(asmap) = &asmap {
        with_asns(&mut rows, asmap, args.asn, args.limit);
    }
    match args.format {
        Format::Table => write_table(&rows, out)?,
        Format::Json => {
            let list: Vec<_> = rows.iter().map(row_json).collect();
            serde_json::to_writer_pretty(&mut *out, &list)?;
            writeln!(out)?;
        }
        Format::Csv => write_csv(&rows, out)?,
    }
    Ok(())
}

/// Fills in each row's ASN; with `asn`, keeps only that ASN's rows, at most `limit`.
fn with_asns(rows: &mut Vec<PeerRow>, asmap: &Asmap, asn: Option<u32>, limit: Option<u64>) {
    for r in rows.iter_mut() {
        r.asn = Some(asn_of(&r.address, asmap));
    }
    if let Some(asn) = asn {
        rows.retain(|r| r.asn == Some(asn));
        rows.truncate(limit.map_or(usize::MAX, |l| l as usize));
    }
}

/// Reads `--asmap`, if given.
fn load_asmap(path: Option<&std::path::Path>) -> anyhow::Result<Option<Asmap>> {
    Ok(path.map(Asmap::from_file).transpose()?)
}

/// The ASN of the peer at `address` (0 for Tor and I2P names and unmapped addresses).
fn asn_of(address: &str, asmap: &Asmap) -> u32 {
    let ip = address
        .parse::<PeerAddr>()
        .ok()
        .and_then(|a| a.socket_addr());
    ip.map_or(0, |sock| asmap.lookup(sock.ip()))
}

fn row_json(r: &PeerRow) -> serde_json::Value {
    let reliability: serde_json::Map<String, serde_json::Value> = WINDOW_NAMES
        .iter()
        .zip(r.reliability)
        .map(|(name, v)| ((*name).to_owned(), json!(v)))
        .collect();
    json!({
        "address": r.address,
        "network": r.family.name(),
        "status": r.status,
        "good": r.good,
        "services": r.services,
        "services_hex": format!("{:08x}", r.services),
        "tries": r.tries,
        "successes": r.successes,
        "last_try": r.last_try,
        "last_success": r.last_success,
        "last_error": r.last_error,
        "reliability": reliability,
        "version": r.version,
        "user_agent": r.user_agent,
        "start_height": r.start_height,
        "banned_until": r.banned_until,
        "transport": r.transport,
        "asn": r.asn,
    })
}

/// Headings of the table's columns before the agent.
const TABLE_HEADINGS: [&str; 14] = [
    "address",
    "status",
    "services",
    "2h",
    "8h",
    "1d",
    "1w",
    "1m",
    "tries",
    "ok",
    "version",
    "height",
    "transport",
    "asn",
];
/// Widths of those columns; the first two are left-aligned, the others right-aligned.
const TABLE_WIDTHS: [usize; 14] = [46, 11, 8, 7, 7, 7, 7, 7, 6, 6, 7, 8, 9, 10];

fn write_table(rows: &[PeerRow], out: &mut impl Write) -> std::io::Result<()> {
    write_table_line(out, &TABLE_HEADINGS.map(str::to_owned), "agent")?;
    for r in rows {
        write_table_line(out, &table_cells(r), &r.user_agent)?;
    }
    Ok(())
}

/// A row's cells under [`TABLE_HEADINGS`].
fn table_cells(r: &PeerRow) -> [String; 14] {
    let [r2h, r8h, r1d, r1w, r1m] = r.reliability.map(|v| format!("{:.2}%", 100.0 * v));
    [
        r.address.clone(),
        r.status.clone(),
        format!("{:08x}", r.services),
        r2h,
        r8h,
        r1d,
        r1w,
        r1m,
        r.tries.to_string(),
        r.successes.to_string(),
        r.version.to_string(),
        r.start_height.to_string(),
        r.transport.clone().unwrap_or_else(|| "-".to_owned()),
        r.asn.map_or_else(|| "-".to_owned(), |a| a.to_string()),
    ]
}

/// Writes one line of the table: the cells padded to [`TABLE_WIDTHS`], then the agent.
fn write_table_line(
    out: &mut impl Write,
    cells: &[String; 14],
    agent: &str,
) -> std::io::Result<()> {
    for (i, (cell, width)) in cells.iter().zip(TABLE_WIDTHS).enumerate() {
        if i < 2 {
            write!(out, "{cell:<width$} ")?;
        } else {
            write!(out, "{cell:>width$} ")?;
        }
    }
    writeln!(out, " {agent}")
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The header line of `peers --format csv`.
const CSV_HEADER: &str = "address,network,status,good,services,tries,successes,last_try,\
    last_success,last_error,reliability_2h,reliability_8h,reliability_1d,reliability_1w,\
    reliability_1m,version,user_agent,start_height,transport,asn";

fn write_csv(rows: &[PeerRow], out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "{CSV_HEADER}")?;
    for r in rows {
        writeln!(out, "{}", csv_record(r))?;
    }
    Ok(())
}

/// A row as a CSV record under [`CSV_HEADER`].
fn csv_record(r: &PeerRow) -> String {
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    let rel: Vec<String> = r.reliability.iter().map(|v| format!("{v:.6}")).collect();
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        csv_field(&r.address),
        r.family.name(),
        r.status,
        u8::from(r.good),
        r.services,
        r.tries,
        r.successes,
        opt(r.last_try),
        opt(r.last_success),
        csv_field(r.last_error.as_deref().unwrap_or("")),
        rel.join(","),
        r.version,
        csv_field(&r.user_agent),
        r.start_height,
        r.transport.as_deref().unwrap_or(""),
        r.asn.map_or(String::new(), |a| a.to_string())
    )
}

/// `dnsseeder stats`.
///
/// # Errors
/// When the database cannot be read or the output written.
pub fn stats(args: &StatsArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let asmap = load_asmap(args.asmap.as_deref())?;
    let store = Store::open_existing(&args.db.db)?;
    let summary = store.summary(unix_now()).context("counting peers")?;
    let top = match &asmap {
        Some(asmap) => top_asns(&store, asmap)?,
        None => Vec::new(),
    };
    match args.format {
        StatsFormat::Json => write_stats_json(&summary, &top, out)?,
        StatsFormat::Table => {
            write_stats_table(&summary, out)?;
            if asmap.is_some() {
                write_top_asns(&top, summary.good, out)?;
            }
        }
    }
    Ok(())
}

fn write_stats_json(s: &Summary, top: &[(u32, u64)], out: &mut impl Write) -> anyhow::Result<()> {
    let families: serde_json::Map<_, _> = s
        .by_family
        .iter()
        .map(|(f, known, good)| (f.name().to_owned(), json!({"known": known, "good": good})))
        .collect();
    let errors: serde_json::Map<_, _> = s
        .by_error
        .iter()
        .map(|(e, n)| (e.clone(), json!(n)))
        .collect();
    let transports: serde_json::Map<_, _> = (s.by_transport.iter())
        .map(|(f, v1, v2)| (f.name().to_owned(), json!({"v1": v1, "v2": v2})))
        .collect();
    let value = json!({
        "known": s.known, "good": s.good, "new": s.new, "reachable": s.reachable,
        "unreachable": s.unreachable, "banned": s.banned,
        "tried_last_hour": s.tried_last_hour,
        "networks": families, "errors": errors, "transports": transports,
        "top_asns": top.iter().map(|&(asn, n)| json!({"asn": asn, "good": n})).collect::<Vec<_>>(),
    });
    serde_json::to_writer_pretty(&mut *out, &value)?;
    writeln!(out)?;
    Ok(())
}

fn write_stats_table(s: &Summary, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "known          {}", s.known)?;
    for (name, n) in [
        ("good", s.good),
        ("reachable", s.reachable),
        ("unreachable", s.unreachable),
        ("new", s.new),
        ("banned", s.banned),
        ("tried (1h)", s.tried_last_hour),
    ] {
        writeln!(out, "  {name:<13}{n}")?;
    }
    writeln!(out, "by network     known / good")?;
    for (family, known, good) in &s.by_family {
        writeln!(out, "  {:<13}{known} / {good}", family.name())?;
    }
    writeln!(out, "by transport   v1 / v2 (of the last successful probe)")?;
    for (family, v1, v2) in &s.by_transport {
        writeln!(out, "  {:<13}{v1} / {v2}", family.name())?;
    }
    writeln!(out, "last errors")?;
    for (error, n) in &s.by_error {
        writeln!(out, "  {error:<13}{n}")?;
    }
    Ok(())
}

/// How many ASNs `stats --asmap` lists.
const TOP_ASNS: usize = 10;

/// The ASNs with the most good peers, with their counts, most first (ties by ASN).
fn top_asns(store: &Store, asmap: &Asmap) -> anyhow::Result<Vec<(u32, u64)>> {
    let filter = PeerFilter {
        status: Some(Status::Good),
        ..PeerFilter::default()
    };
    let rows = store
        .peers(&filter, unix_now())
        .context("listing good peers")?;
    let mut counts = std::collections::HashMap::<u32, u64>::new();
    for r in &rows {
        *counts.entry(asn_of(&r.address, asmap)).or_default() += 1;
    }
    let mut top: Vec<(u32, u64)> = counts.into_iter().collect();
    top.sort_unstable_by_key(|&(asn, n)| (std::cmp::Reverse(n), asn));
    top.truncate(TOP_ASNS);
    Ok(top)
}

/// The top ASNs as `stats` prints them: ASN, good peers, share of the good peers.
fn write_top_asns(top: &[(u32, u64)], good: u64, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "top ASNs       good peers (share of all good)")?;
    for &(asn, n) in top {
        let share = 100.0 * n as f64 / good.max(1) as f64;
        let name = if asn == 0 {
            "unmapped".to_owned()
        } else {
            format!("AS{asn}")
        };
        writeln!(out, "  {name:<13}{n} ({share:.1}%)")?;
    }
    Ok(())
}

/// `dnsseeder dump`.
///
/// # Errors
/// When the database cannot be read or the dump written.
pub fn dump(args: &DumpArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let store = Store::open_existing(&args.db.db)?;
    match &args.output {
        Some(path) => {
            let lines = dump::write_file(&store, path)?;
            log::info!("wrote {lines} peers to {}", path.display());
        }
        None => {
            dump::write(&store, out)?;
        }
    }
    Ok(())
}

/// `dnsseeder import`: prints how many lines were imported and skipped, by reason.
///
/// # Errors
/// When the file cannot be read or the database written.
pub fn import(args: &ImportArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let file = dump::read_file(&args.file)?;
    let mut store = Store::open(&args.db.db)?;
    let changed = store
        .import(&file.peers, unix_now())
        .context("writing imported peers")?;
    let skipped: usize = file.skipped.values().map(|(n, _)| n).sum();
    writeln!(
        out,
        "imported {} peers from {} ({} rows new or updated), skipped {} lines",
        file.peers.len(),
        args.file.display(),
        changed,
        skipped
    )?;
    for (reason, (n, first)) in &file.skipped {
        writeln!(out, "  {n} {} (first at line {first})", reason.describe())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Family;

    fn row() -> PeerRow {
        PeerRow {
            address: "1.2.3.4:8333".into(),
            family: Family::Ipv4,
            status: "good".into(),
            good: true,
            services: 0x409,
            tries: 12,
            successes: 11,
            last_try: Some(1_700_000_000),
            last_success: None,
            last_error: Some("a, \"quoted\" error".into()),
            reliability: [0.5, 0.25, 1.0, 0.0, 0.123_456_7],
            version: 70016,
            user_agent: "/Satoshi:27.0.0/".into(),
            start_height: 900_000,
            banned_until: 0,
            transport: Some("v2".into()),
            asn: Some(64_500),
        }
    }

    #[test]
    fn table_lines_are_padded_to_their_columns() {
        let mut out = Vec::new();
        write_table(&[row()], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                "{:<46} {:<11} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>7} {:>8} {:>9} {:>10}  agent",
                "address",
                "status",
                "services",
                "2h",
                "8h",
                "1d",
                "1w",
                "1m",
                "tries",
                "ok",
                "version",
                "height",
                "transport",
                "asn"
            )
        );
        assert_eq!(
            lines[1],
            format!(
                "{:<46} {:<11} {:>08x} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>7} {:>8} {:>9} {:>10}  {}",
                "1.2.3.4:8333",
                "good",
                0x409,
                "50.00%",
                "25.00%",
                "100.00%",
                "0.00%",
                "12.35%",
                12,
                11,
                70016,
                900_000,
                "v2",
                64_500,
                "/Satoshi:27.0.0/"
            )
        );
    }

    #[test]
    fn csv_records_quote_what_needs_it() {
        let mut out = Vec::new();
        write_csv(&[row()], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines[0].split(',').count(), 20);
        assert_eq!(
            lines[1],
            "1.2.3.4:8333,ipv4,good,1,1033,12,11,1700000000,,\"a, \"\"quoted\"\" error\",\
             0.500000,0.250000,1.000000,0.000000,0.123457,70016,/Satoshi:27.0.0/,900000,v2,64500"
        );
    }
}
