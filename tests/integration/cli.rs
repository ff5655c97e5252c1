//! The database subcommands on real files: import, peers, stats, dump, and their errors.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use dnsseeder::addr::{Host, PeerAddr};

use crate::util::{Rng, arg, run, run_ok};

/// One generated dump line and what it should import as.
struct Line {
    text: String,
    address: String,
    good: bool,
    services: u64,
}

/// A dnsseed.dump of `n` lines: IPv4, IPv6 and onion; good and not; several masks; an
/// agent with spaces. These addresses are only stored, never dialed.
fn generate_dump(n: usize, seed: u64) -> Vec<Line> {
    let mut rng = Rng(seed);
    let masks = [0x409, 0x9, 0x1, 0x0, 0x449, 0xc09, 0x8];
    (0..n)
        .map(|i| {
            let address = match i % 5 {
                0..=2 => format!(
                    "{}.{}.{}.{}:8333",
                    11 + i % 80,
                    i / 256 % 256,
                    i % 256,
                    1 + i % 250
                ),
                3 => format!(
                    "[2a01:{:x}:{:x}::{:x}]:8333",
                    0x100 + i,
                    rng.below(0xffff),
                    i
                ),
                _ => {
                    let mut key = [0u8; 32];
                    key[..8].copy_from_slice(&(i as u64).to_le_bytes());
                    PeerAddr {
                        host: Host::TorV3(key),
                        port: 8333,
                    }
                    .to_string()
                }
            };
            let good = rng.below(3) != 0;
            let services = masks[rng.below(masks.len() as u64) as usize];
            let pct: Vec<String> = (0..5)
                .map(|_| format!("{:.2}%", rng.below(10_001) as f64 / 100.0))
                .collect();
            let agent = if i % 97 == 0 {
                "/Satoshi:27.0.0(my node)/".to_owned()
            } else {
                format!("/Satoshi:2{}.0.0/", i % 8)
            };
            let text = format!(
                "{address} {} {} {} {} {:08x} {} \"{agent}\"",
                u8::from(good),
                1_700_000_000 + rng.below(10_000_000),
                pct.join(" "),
                800_000 + rng.below(100_000),
                services,
                70015 + rng.below(2),
            );
            Line {
                text,
                address,
                good,
                services,
            }
        })
        .collect()
}

fn write_dump(dir: &std::path::Path, lines: &[Line]) -> std::path::PathBuf {
    let mut text = String::from("# generated dnsseed.dump\n");
    for line in lines {
        writeln!(text, "{}", line.text).unwrap();
    }
    let path = dir.join("input.dump");
    std::fs::write(&path, text).unwrap();
    path
}

fn json_addresses(json: &str) -> BTreeSet<String> {
    let value: serde_json::Value = serde_json::from_str(json).expect("peers prints JSON");
    value
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|p| {
            p["address"]
                .as_str()
                .expect("address is a string")
                .to_owned()
        })
        .collect()
}

/// The data lines of a dump, as token lists.
fn dump_tokens(dump: &str) -> Vec<Vec<String>> {
    dump.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[test]
fn import_peers_dump_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (db_a, db_b) = (dir.path().join("a.db"), dir.path().join("b.db"));
    let lines = generate_dump(1200, 42);
    let input = write_dump(dir.path(), &lines);

    let report = run_ok(&["import", "--db", arg(&db_a), arg(&input)]);
    assert!(report.starts_with("imported 1200 peers"), "{report}");
    assert!(report.contains("skipped 0 lines"), "{report}");

    // peers --good --filter-service WITNESS: exactly the good lines with bit 8.
    let expected: BTreeSet<String> = lines
        .iter()
        .filter(|l| l.good && l.services & 8 == 8)
        .map(|l| l.address.clone())
        .collect();
    assert!(expected.len() > 100);
    let json = run_ok(&[
        "peers",
        "--db",
        arg(&db_a),
        "--good",
        "--filter-service",
        "WITNESS",
        "--format",
        "json",
    ]);
    assert_eq!(json_addresses(&json), expected);

    // The same count through SQL, as an operator would ask sqlite3.
    let conn = rusqlite::Connection::open(&db_a).unwrap();
    let sql_count: i64 = conn
        .query_row(
            "SELECT count(*) FROM peers WHERE good AND services & 9 = 9",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let json9 = run_ok(&[
        "peers",
        "--db",
        arg(&db_a),
        "--good",
        "--filter-service",
        "NETWORK,WITNESS",
        "--format",
        "json",
    ]);
    assert_eq!(json_addresses(&json9).len() as i64, sql_count);
    assert!(sql_count > 0);

    // dump; import into a fresh database; dump again: the same 12 fields on every line.
    let dump_a = dir.path().join("a.dump");
    run_ok(&["dump", "--db", arg(&db_a), "-o", arg(&dump_a)]);
    let text_a = std::fs::read_to_string(&dump_a).unwrap();
    let tokens_a = dump_tokens(&text_a);
    assert_eq!(tokens_a.len(), 1200);
    assert!(
        tokens_a.iter().all(|t| t.len() == 12),
        "every line has 12 tokens"
    );
    run_ok(&["import", "--db", arg(&db_b), arg(&dump_a)]);
    let text_b = run_ok(&["dump", "--db", arg(&db_b)]);
    assert_eq!(dump_tokens(&text_b), tokens_a);

    // And the first dump carries the input's figures (the agent loses its spaces).
    let by_address: std::collections::HashMap<&str, &Vec<String>> =
        tokens_a.iter().map(|t| (t[0].as_str(), t)).collect();
    for line in &lines {
        let input: Vec<String> = line.text.split_whitespace().map(str::to_owned).collect();
        let dumped = by_address[line.address.as_str()];
        assert_eq!(&dumped[..11], &input[..11], "{}", line.text);
        assert_eq!(dumped[11], input[11..].join("").replace(' ', ""));
    }
    assert!(text_a.contains("\"/Satoshi:27.0.0(mynode)/\""));
}

#[test]
fn dump_is_sorted_by_thirty_day_reliability() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let input = write_dump(dir.path(), &generate_dump(300, 7));
    run_ok(&["import", "--db", arg(&db), arg(&input)]);
    let dump = run_ok(&["dump", "--db", arg(&db)]);
    let pct: Vec<f64> = dump_tokens(&dump)
        .iter()
        .map(|t| t[7].trim_end_matches('%').parse().unwrap())
        .collect();
    assert!(pct.windows(2).all(|w| w[0] >= w[1]));
}

#[test]
fn garbage_lines_are_skipped_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let path = dir.path().join("mixed.txt");
    let good = &generate_dump(3, 1);
    let mut text = format!("{}\n{}\n127.0.0.1:8333\n", good[0].text, good[1].text);
    text.push_str("not an address\nhello:world\n1.2.3:4\n");
    text.push_str("127.0.0.2:8333 1 2 3\n");
    text.push_str("127.0.0.3:8333 1 1700000000 x% 1% 1% 1% 1% 1 1 70016 \"a\"\n");
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(b"\xff\xfe\xfd\n");
    std::fs::write(&path, bytes).unwrap();
    let out = run(&["import", "--db", arg(&db), arg(&path)]);
    assert!(out.status.success());
    let report = String::from_utf8(out.stdout).unwrap();
    assert!(report.starts_with("imported 3 peers"), "{report}");
    assert!(report.contains("skipped 6 lines"), "{report}");
    assert!(
        report.contains("3 unparsable address (first at line 4)"),
        "{report}"
    );
    assert!(
        report.contains("1 wrong number of fields (first at line 7)"),
        "{report}"
    );
    assert!(
        report.contains("1 bad number or field (first at line 8)"),
        "{report}"
    );
    assert!(
        report.contains("1 not a text line (first at line 9)"),
        "{report}"
    );
    let all = run_ok(&["peers", "--db", arg(&db), "--format", "json"]);
    assert_eq!(json_addresses(&all).len(), 3);
    let new = run_ok(&[
        "peers",
        "--db",
        arg(&db),
        "--status",
        "new",
        "--format",
        "csv",
    ]);
    assert_eq!(new.lines().count(), 2, "header and the plain line:\n{new}");
    assert!(
        new.lines()
            .nth(1)
            .unwrap()
            .starts_with("127.0.0.1:8333,ipv4,new,0,0,")
    );
}

#[test]
fn missing_import_file_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "import",
        "--db",
        arg(&dir.path().join("a.db")),
        "/nonexistent/peers.txt",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot open /nonexistent/peers.txt"), "{err}");
}

#[test]
fn foreign_database_file_is_refused_and_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("important.txt");
    std::fs::write(&db, "these are not peers, but they matter\n".repeat(200)).unwrap();
    let before = std::fs::read(&db).unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "127.0.0.1:8333\n").unwrap();
    for args in [
        vec!["peers", "--db", arg(&db)],
        vec!["stats", "--db", arg(&db)],
        vec!["dump", "--db", arg(&db)],
        vec!["import", "--db", arg(&db), arg(&list)],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("is not a dnsseeder database"), "{err}");
    }
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

#[test]
fn missing_database_is_not_created_by_readers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("none.db");
    let out = run(&["peers", "--db", arg(&db)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("does not exist")
    );
    assert!(!db.exists());
}

#[test]
fn unknown_service_flag_exits_2_and_lists_names() {
    let out = run(&[
        "peers",
        "--db",
        "x.db",
        "--filter-service",
        "NETWORK,SEGWIT",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("unknown service flag 'SEGWIT'"), "{err}");
    assert!(
        err.contains("WITNESS, COMPACT_FILTERS, NETWORK_LIMITED, P2P_V2"),
        "{err}"
    );
}

#[test]
fn stats_and_network_filter() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let lines = generate_dump(500, 3);
    let input = write_dump(dir.path(), &lines);
    run_ok(&["import", "--db", arg(&db), arg(&input)]);
    let stats: serde_json::Value =
        serde_json::from_str(&run_ok(&["stats", "--db", arg(&db), "--format", "json"])).unwrap();
    assert_eq!(stats["known"], 500);
    let good = lines.iter().filter(|l| l.good).count();
    assert_eq!(stats["good"], good);
    assert_eq!(stats["networks"]["onion"]["known"], 100);
    let onions = run_ok(&[
        "peers",
        "--db",
        arg(&db),
        "--network",
        "onion",
        "--format",
        "json",
    ]);
    let onions = json_addresses(&onions);
    assert_eq!(onions.len(), 100);
    assert!(onions.iter().all(|a| a.ends_with(".onion:8333")));
    let limited = run_ok(&["peers", "--db", arg(&db), "--limit", "7"]);
    assert_eq!(limited.lines().count(), 8, "header and seven rows");
    let table = run_ok(&["stats", "--db", arg(&db)]);
    assert!(table.starts_with("known          500"), "{table}");
}

/// A database filled by the test kit's generator reads back through the real binary:
/// the counts asked for, loopback addresses only.
#[test]
fn generated_database_reads_back_through_the_cli() {
    use dnsseeder::testkit::generate::{Options, generate};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gen.db");
    let store = dnsseeder::store::Store::open(&db).unwrap();
    let options = Options {
        rows: 20_000,
        good: 1500,
        seed: 1,
        loopback: true,
        now: dnsseeder::unix_now(),
    };
    generate(store.connection(), &options).unwrap();
    drop(store);
    let stats: serde_json::Value =
        serde_json::from_str(&run_ok(&["stats", "--db", arg(&db), "--format", "json"])).unwrap();
    assert_eq!(stats["known"], 20000);
    assert_eq!(stats["good"], 1500);
    assert_eq!(stats["networks"]["ipv4"]["known"], 20000);
    let good = run_ok(&["peers", "--db", arg(&db), "--good", "--format", "csv"]);
    let rows: Vec<&str> = good.lines().skip(1).collect();
    assert_eq!(rows.len(), 1500);
    assert!(rows.iter().all(|r| r.starts_with("127.")), "{}", rows[0]);
    let all = run_ok(&["peers", "--db", arg(&db), "--format", "csv"]);
    assert!(all.lines().skip(1).all(|r| r.starts_with("127.")));
}

/// The generator is test code: the shipped binary has no `generate` command, hidden or not.
#[test]
fn generate_is_not_a_command_of_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gen.db");
    let out = run(&["generate", "--db", arg(&db), "--rows", "10", "--good", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unrecognized subcommand"), "{stderr}");
    assert!(!db.exists(), "a refused command created the database");
    let help = run_ok(&["--help"]);
    assert!(
        help.contains("import") && !help.contains("generate"),
        "{help}"
    );
}

/// Every row of `peers` with every column, ordered by address.
fn all_rows(db: &std::path::Path) -> Vec<Vec<rusqlite::types::Value>> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT * FROM peers ORDER BY address")
        .unwrap();
    let columns = stmt.column_count();
    stmt.query_map([], |r| (0..columns).map(|i| r.get(i)).collect())
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// `backup` of a generated database is the same rows, column for column, in a file that
/// needs no `-wal`; the report names the rows; the database itself is refused as OUT.
#[test]
fn backup_copies_every_row_and_refuses_the_database_as_out() {
    let dir = tempfile::tempdir().unwrap();
    let (db, copy) = (dir.path().join("src.db"), dir.path().join("copy.db"));
    let store = dnsseeder::store::Store::open(&db).unwrap();
    dnsseeder::testkit::generate::fill(store.connection(), 5000, 800, 11).unwrap();
    drop(store);

    let report = run_ok(&["backup", "--db", arg(&db), arg(&copy)]);
    assert_eq!(report.lines().count(), 1, "{report}");
    assert!(report.starts_with("backed up 5000 rows ("), "{report}");
    assert!(!dir.path().join("copy.db-wal").exists());
    crate::util::assert_integrity(&copy);
    assert_eq!(all_rows(&copy), all_rows(&db));
    // A second backup replaces the first.
    run_ok(&["backup", "--db", arg(&db), arg(&copy)]);
    assert_eq!(all_rows(&copy), all_rows(&db));

    let before = std::fs::read(&db).unwrap();
    let same = dir.path().join(".").join("src.db");
    let out = run(&["backup", "--db", arg(&db), arg(&same)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is the database itself"), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), before);
    let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(leftovers, 2, "a temporary file was left behind");
}

/// A missing `--db` is one line and exit 1, and leaves neither the database nor OUT.
#[test]
fn backup_of_a_missing_database_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (db, copy) = (dir.path().join("none.db"), dir.path().join("copy.db"));
    let out = run(&["backup", "--db", arg(&db), arg(&copy)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("does not exist"), "{err}");
    assert!(!db.exists() && !copy.exists());
}
