//! The `dnsseed.dump` format of sipa's seeder, which Bitcoin Core's
//! `contrib/seeds/makeseeds.py` reads, in both directions: [`write()`] produces it from the
//! store, [`parse_line`] reads it (and plain `IP:PORT` lines) for `dnsseeder import`, so
//! an operator can move from another seeder without a cold start.
//!
//! A data line has exactly 12 whitespace-separated tokens:
//! `address good lastSuccess %2h %8h %1d %7d %30d blocks services version "useragent"`.

use std::fs::File;
use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

use anyhow::Context;

use crate::addr::PeerAddr;
use crate::store::Store;

/// A peer as imported from a dump line (figures absent for a plain `IP:PORT` line).
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedPeer {
    pub addr: PeerAddr,
    pub figures: Option<DumpFigures>,
}

/// The recorded figures of a dump line.
#[derive(Debug, Clone, PartialEq)]
pub struct DumpFigures {
    pub good: bool,
    pub last_success: i64,
    /// 2h, 8h, 1d, 1w, 1m reliabilities, 0..1.
    pub reliability: [f64; 5],
    pub start_height: i64,
    pub services: u64,
    pub version: i64,
    pub user_agent: String,
}

/// The header line, as sipa's seeder writes it.
pub const HEADER: &str = "# address                                        good  lastSuccess    \
    %(2h)   %(8h)   %(1d)   %(7d)  %(30d)  blocks      svcs  version";

/// Formats one data line (without the newline).
pub fn format_line(addr: &PeerAddr, f: &DumpFigures) -> String {
    let agent: String = f
        .user_agent
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '"' && !c.is_control())
        .collect();
    let pct = f.reliability.map(|r| 100.0 * r);
    format!(
        "{:<46} {:>4} {:>12} {:>6.2}% {:>6.2}% {:>6.2}% {:>6.2}% {:>6.2}% {:>7} {:08x} {:>8} \"{}\"",
        addr.to_string(),
        u8::from(f.good),
        f.last_success,
        pct[0],
        pct[1],
        pct[2],
        pct[3],
        pct[4],
        f.start_height,
        f.services,
        f.version,
        agent
    )
}

/// Writes the dump of `store` to `out`. Returns the number of data lines.
///
/// # Errors
/// On database or write errors.
pub fn write(store: &Store, out: &mut impl Write) -> anyhow::Result<usize> {
    writeln!(out, "{HEADER}")?;
    let mut lines = 0;
    store.for_each_dump_row(|addr, figures| {
        writeln!(out, "{}", format_line(addr, figures))?;
        lines += 1;
        Ok(())
    })?;
    out.flush()?;
    Ok(lines)
}

/// Writes the dump to `path` atomically: a temporary file beside it, synced, then renamed.
///
/// # Errors
/// When the directory is not writable, or on database errors; `path` is then unchanged.
pub fn write_file(store: &Store, path: &Path) -> anyhow::Result<usize> {
    let dir = directory_of(path);
    let tmp = tempfile::Builder::new()
        .prefix(".dnsseed.dump.")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let mut out = BufWriter::new(tmp);
    let lines = write(store, &mut out)?;
    let tmp = out.into_inner().context("flushing the dump")?;
    tmp.as_file().sync_all().context("syncing the dump")?;
    tmp.persist(path)
        .with_context(|| format!("cannot write the dump to {}", path.display()))?;
    Ok(lines)
}

/// The directory a dump at `path` is written in (its temporary file goes there too).
pub fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Why an input line was not imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// The address token is not a peer address.
    BadAddress,
    /// Neither 1 token (`IP:PORT`) nor 12 (a dump line).
    FieldCount,
    /// A number, percentage, flag or the quoted agent did not parse.
    BadField,
    /// Not UTF-8 or absurdly long.
    NotText,
}

impl SkipReason {
    /// A short description for the import report.
    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::BadAddress => "unparsable address",
            SkipReason::FieldCount => "wrong number of fields",
            SkipReason::BadField => "bad number or field",
            SkipReason::NotText => "not a text line",
        }
    }
}

/// Longest line considered; longer ones are skipped without being parsed.
pub const MAX_LINE: usize = 4096;
/// Longest user agent kept from an import line, in characters: what a probe keeps
/// (Bitcoin Core's limit too), and short enough that the dump line fits [`MAX_LINE`].
const MAX_AGENT: usize = 256;

/// Reads one line: `Ok(None)` for blank and `#` comment lines.
///
/// # Errors
/// The reason the line cannot be imported.
pub fn parse_line(line: &str) -> Result<Option<ImportedPeer>, SkipReason> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    if line.len() > MAX_LINE {
        return Err(SkipReason::NotText);
    }
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let addr: PeerAddr = tokens[0].parse().map_err(|_| SkipReason::BadAddress)?;
    match tokens.len() {
        1 => Ok(Some(ImportedPeer {
            addr,
            figures: None,
        })),
        n if n >= 12 => Ok(Some(ImportedPeer {
            addr,
            figures: Some(parse_figures(&tokens[1..11], &tokens[11..])?),
        })),
        _ => Err(SkipReason::FieldCount),
    }
}

fn parse_figures(t: &[&str], agent: &[&str]) -> Result<DumpFigures, SkipReason> {
    let num = |s: &str| s.parse::<i64>().map_err(|_| SkipReason::BadField);
    let good = match t[0] {
        "0" => false,
        "1" => true,
        _ => return Err(SkipReason::BadField),
    };
    Ok(DumpFigures {
        good,
        last_success: num(t[1])?,
        reliability: [
            percent(t[2])?,
            percent(t[3])?,
            percent(t[4])?,
            percent(t[5])?,
            percent(t[6])?,
        ],
        start_height: num(t[7])?,
        services: u64::from_str_radix(t[8], 16).map_err(|_| SkipReason::BadField)?,
        version: num(t[9])?,
        user_agent: unquote_agent(agent)?,
    })
}

/// `99.50%` as 0.995; only 0% to 100%.
fn percent(s: &str) -> Result<f64, SkipReason> {
    let v: f64 = s
        .strip_suffix('%')
        .and_then(|v| v.parse().ok())
        .ok_or(SkipReason::BadField)?;
    if (0.0..=100.0).contains(&v) {
        // `-0%` is in range but would be written back as `-0.00%`: store a plain zero.
        Ok(if v == 0.0 { 0.0 } else { v / 100.0 })
    } else {
        Err(SkipReason::BadField)
    }
}

/// The quoted agent, cut to [`MAX_AGENT`] characters. Other seeders' agents may contain
/// spaces: the quoted token runs to the end of the line.
fn unquote_agent(tokens: &[&str]) -> Result<String, SkipReason> {
    let agent = tokens.join(" ");
    let agent = agent
        .strip_prefix('"')
        .and_then(|a| a.strip_suffix('"'))
        .ok_or(SkipReason::BadField)?;
    Ok(agent.chars().take(MAX_AGENT).collect())
}

/// What reading an import file found.
#[derive(Debug, Default)]
pub struct ImportFile {
    pub peers: Vec<ImportedPeer>,
    /// Skipped lines by reason, with the first offending line number of each.
    pub skipped: std::collections::BTreeMap<SkipReason, (usize, usize)>,
}

/// Reads an import file: dump lines and plain `IP:PORT` lines; bad lines are counted.
///
/// # Errors
/// When the file cannot be opened or read.
pub fn read_file(path: &Path) -> anyhow::Result<ImportFile> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    read(std::io::BufReader::new(file)).with_context(|| format!("reading {}", path.display()))
}

/// Reads import lines from `input` (see [`read_file`]).
///
/// # Errors
/// On read errors.
pub fn read<R: BufRead>(mut input: R) -> std::io::Result<ImportFile> {
    let mut result = ImportFile::default();
    let mut buf = Vec::new();
    let mut number = 0;
    loop {
        buf.clear();
        // Bound each line: a file without newlines must not be read into memory whole.
        let n = std::io::Read::take(&mut input, MAX_LINE as u64 + 1).read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        number += 1;
        let parsed = if buf.len() > MAX_LINE && buf.last() != Some(&b'\n') {
            skip_rest_of_line(&mut input)?;
            Err(SkipReason::NotText)
        } else {
            std::str::from_utf8(&buf)
                .map_err(|_| SkipReason::NotText)
                .and_then(parse_line)
        };
        match parsed {
            Ok(Some(peer)) => result.peers.push(peer),
            Ok(None) => {}
            Err(reason) => result.skipped.entry(reason).or_insert((0, number)).0 += 1,
        }
    }
    Ok(result)
}

fn skip_rest_of_line(input: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(());
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                return Ok(());
            }
            None => {
                let len = chunk.len();
                input.consume(len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> DumpFigures {
        DumpFigures {
            good: true,
            last_success: 1_700_000_123,
            reliability: [0.995, 0.5, 0.1234, 0.0, 1.0],
            start_height: 870_000,
            services: 0x409,
            version: 70016,
            user_agent: "/Satoshi:27.0.0(my node \"x\")/".into(),
        }
    }

    #[test]
    fn line_has_twelve_tokens_in_makeseeds_grammar() {
        let addr: PeerAddr = "[2001:DB8::1]:8333".parse().unwrap();
        let line = format_line(&addr, &figures());
        let tokens: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(tokens.len(), 12, "{line}");
        assert_eq!(tokens[0], "[2001:db8::1]:8333");
        assert_eq!(tokens[1], "1");
        assert_eq!(tokens[2], "1700000123");
        assert_eq!(
            &tokens[3..8],
            ["99.50%", "50.00%", "12.34%", "0.00%", "100.00%"]
        );
        assert_eq!(tokens[8], "870000");
        assert_eq!(tokens[9], "00000409");
        assert_eq!(tokens[10], "70016");
        assert_eq!(tokens[11], "\"/Satoshi:27.0.0(mynodex)/\"");
    }

    #[test]
    fn empty_agent_keeps_its_token() {
        let addr: PeerAddr = "1.2.3.4:8333".parse().unwrap();
        let line = format_line(
            &addr,
            &DumpFigures {
                user_agent: String::new(),
                ..figures()
            },
        );
        assert_eq!(line.split_whitespace().count(), 12);
        assert!(line.ends_with(" \"\""));
    }

    #[test]
    fn dump_line_round_trips() {
        let addr: PeerAddr = "1.2.3.4:8333".parse().unwrap();
        let f = DumpFigures {
            user_agent: "/Satoshi:27.0.0/".into(),
            ..figures()
        };
        let line = format_line(&addr, &f);
        let peer = parse_line(&line).unwrap().unwrap();
        assert_eq!(peer.addr, addr);
        let back = peer.figures.unwrap();
        assert_eq!(format_line(&addr, &back), line);
    }

    #[test]
    fn sipa_lines_and_plain_lines_parse() {
        let sipa = "1.2.3.4:8333    1  1700000000  100.00%  99.00%  98.00%  97.00%  96.00%  850000  00000409  70016 \"/Satoshi:26.0.0/\"";
        let p = parse_line(sipa).unwrap().unwrap();
        assert_eq!(p.figures.unwrap().services, 0x409);
        let spaced =
            "1.2.3.4:8333 0 1 1.00% 1.00% 1.00% 1.00% 1.00% 1 00000001 70016 \"/btcd:0.24 (x)/\"";
        assert_eq!(
            parse_line(spaced)
                .unwrap()
                .unwrap()
                .figures
                .unwrap()
                .user_agent,
            "/btcd:0.24 (x)/"
        );
        assert!(
            parse_line("5.6.7.8:8333")
                .unwrap()
                .unwrap()
                .figures
                .is_none()
        );
        assert_eq!(parse_line("# header").unwrap(), None);
        assert_eq!(parse_line("   ").unwrap(), None);
    }

    #[test]
    fn bad_lines_have_reasons() {
        assert_eq!(
            parse_line("hello:world").unwrap_err(),
            SkipReason::BadAddress
        );
        assert_eq!(
            parse_line("1.2.3.4:8333 1 2").unwrap_err(),
            SkipReason::FieldCount
        );
        let bad_pct = "1.2.3.4:8333 1 1 x% 1% 1% 1% 1% 1 1 1 \"a\"";
        assert_eq!(parse_line(bad_pct).unwrap_err(), SkipReason::BadField);
        let over = "1.2.3.4:8333 1 1 101% 1% 1% 1% 1% 1 1 1 \"a\"";
        assert_eq!(parse_line(over).unwrap_err(), SkipReason::BadField);
        let unquoted = "1.2.3.4:8333 1 1 1% 1% 1% 1% 1% 1 1 1 agent";
        assert_eq!(parse_line(unquoted).unwrap_err(), SkipReason::BadField);
    }

    #[test]
    fn negative_zero_percentage_imports_as_zero() {
        // Found by the `import_lines` fuzz target: `-0%` parsed to -0.0, dumped as `-0.00%`.
        let line = "1.2.3.4:8333 1 1 -0% -0.00% 0% 1% 1% 1 00000001 70016 \"/x/\"";
        let f = parse_line(line).unwrap().unwrap().figures.unwrap();
        assert!(f.reliability.iter().all(|r| r.is_sign_positive()));
        let addr: PeerAddr = "1.2.3.4:8333".parse().unwrap();
        let dumped = format_line(&addr, &f);
        let tokens: Vec<&str> = dumped.split_whitespace().collect();
        assert_eq!(tokens[3..6], ["0.00%", "0.00%", "0.00%"], "{dumped}");
    }

    #[test]
    fn overlong_agent_is_cut_so_the_dump_line_imports_again() {
        // A 4096-byte import line with a long agent was accepted, but its dump line (wider
        // columns) exceeded MAX_LINE and was skipped on the next import.
        let head = "1.1.1.1:1 0 0 0% 0% 0% 0% 0% 0 0 0 ";
        let line = format!("{head}\"{}\"", "a".repeat(MAX_LINE - head.len() - 2));
        assert_eq!(line.len(), MAX_LINE);
        let peer = parse_line(&line).unwrap().unwrap();
        let f = peer.figures.unwrap();
        assert_eq!(f.user_agent, "a".repeat(MAX_AGENT));
        let dumped = format_line(&peer.addr, &f);
        assert!(dumped.len() <= MAX_LINE);
        assert_eq!(parse_line(&dumped).unwrap().unwrap().figures.unwrap(), f);
    }

    #[test]
    fn reader_counts_and_bounds_lines() {
        let mut input = b"1.2.3.4:8333\n\xff\xfe\nbogus\n".to_vec();
        input.extend(std::iter::repeat_n(b'a', 100_000));
        input.extend(b"\n5.6.7.8:8333");
        let result = read(&input[..]).unwrap();
        assert_eq!(result.peers.len(), 2);
        assert_eq!(result.skipped[&SkipReason::NotText], (2, 2));
        assert_eq!(result.skipped[&SkipReason::BadAddress], (1, 3));
    }
}
