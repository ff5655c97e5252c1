//! Real DNS servers for the hidden-primary tests: Knot and NSD as secondaries of the
//! seeder's zone (AXFR over TCP, NOTIFY), Knot also signing it, and the tools that judge a
//! zone the way operators will (`kzonecheck`, `named-checkzone`, `kdig`, `delv`). Each
//! daemon runs unprivileged-friendly from its own temporary directory on a loopback
//! address, is stopped on drop, and replays its log when the test is failing.
//!
//! Versions this was written against (Debian 12; `.ci/run` installs them): Knot DNS 3.2.6
//! (`knot`, `knot-dnsutils`, `knot-dnssecutils`), NSD 4.6.1 (`nsd`), BIND 9.18
//! (`bind9-utils`, `bind9-dnsutils`). Found by trying them, as root, as `nobody` and in
//! `unshare -rn`:
//! - knotd, knotc and nsd live in /usr/sbin, not on a normal user's PATH: tools are looked
//!   up in PATH, then in the sbin directories.
//! - Knot: everything it writes (rundir, pidfile, control socket, journal, timer and KASP
//!   databases, log file) goes to the temporary directory; no `user:`, so it stays whoever
//!   started it. It transfers from the address given as `via:`; each secondary gets its
//!   listen address there, so a primary's transfer ACL (`--axfr-allow`) can tell them apart.
//! - What a Knot secondary asks its primary, all over TCP: a bootstrap is a bare AXFR; a
//!   refresh (after NOTIFY, or `knotc zone-refresh`) is a SOA query and then an IXFR on the
//!   same connection. To that IXFR a Knot primary without the history answers with the
//!   whole zone ("AXFR-style IXFR", accepted silently); a primary answering NOTIMP works
//!   too, but Knot logs warnings ("fallback to AXFR") and opens a new connection for AXFR.
//! - A Knot primary answers an AXFR from outside its ACL with NOTAUTH, not REFUSED.
//! - Knot signs a secondary zone (`dnssec-signing: on` beside `master:`): here one ECDSA
//!   P-256 key (single-type signing: a CSK, flags 257), made at the first load. The signed
//!   zone's serial is Knot's own, never lower than the primary's.
//! - NSD: `username: ""` (no privilege drop; inside `unshare -r` there is no `nsd` user to
//!   drop to), `chroot: ""`, `database: ""` (no nsd.db), every file in the temporary
//!   directory; `outgoing-interface` is a zone option (a syntax error under `server:`). It
//!   runs as root and as any user. With `request-xfr: AXFR` it asks no SOA first: a bare
//!   AXFR over TCP at start and on every NOTIFY (one without a SOA record is accepted).
//!   The process started forks the servers; SIGKILL leaves them behind for a moment, so
//!   daemons are stopped with SIGTERM.
//! - delv 9.18 validates against a static key for the zone itself with `-a FILE
//!   +root=ZONE` and `@server`: it never asks the root servers (the test runs without any
//!   route off the machine).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use dnsseeder::testkit::dns_client::{client, exchange, framed, query as packet, tcp_connect_from};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::NULL;
use hickory_proto::rr::{RData, Record, RecordType};

/// How long a daemon may take to answer its first query.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a daemon may take to stop on SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// The Debian package of each tool the harness runs.
const PACKAGES: [(&str, &str); 9] = [
    ("knotd", "knot"),
    ("knotc", "knot"),
    ("kdig", "knot-dnsutils"),
    ("kzonecheck", "knot-dnssecutils"),
    ("nsd", "nsd"),
    ("nsd-checkzone", "nsd"),
    ("named-checkzone", "bind9-utils"),
    ("delv", "bind9-dnsutils"),
    ("keymgr", "knot-dnssecutils"),
];

/// The full path of `tool`: the first in PATH, else in the sbin directories.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let sbin = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(sbin)
        .map(|dir| dir.join(tool))
        .find(|file| file.is_file())
}

/// A command running `tool`, found by [`which`].
fn tool(tool: &str) -> Command {
    Command::new(which(tool).unwrap_or_else(|| PathBuf::from(tool)))
}

/// Why a test needing `tools` cannot run here (the missing ones and their packages), or
/// `None`. Tests print `skipped: ...` with it and return. With `CI` set (`.ci/run` sets it,
/// after installing them) a missing tool fails the test instead.
pub fn missing_tools(tools: &[&str]) -> Option<String> {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    if missing.is_empty() {
        return None;
    }
    let mut packages: Vec<&str> = missing
        .iter()
        .map(|t| PACKAGES.iter().find(|p| p.0 == *t).map_or(*t, |p| p.1))
        .collect();
    packages.sort_unstable();
    packages.dedup();
    let why = format!(
        "{} not installed (apt-get install {})",
        missing.join(", "),
        packages.join(" ")
    );
    assert!(std::env::var_os("CI").is_none(), "in CI: {why}");
    Some(why)
}

/// Which server a [`Secondary`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Knot,
    Nsd,
}

/// A daemon in its own temporary directory: its output goes to `stderr.log` there, its
/// own log to `daemon.log`. Stopped on drop (SIGTERM, then SIGKILL); when the test is
/// failing, its logs are printed.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl Daemon {
    /// Starts `cmd` in `dir` and waits until it answers a SOA query for `zone` on
    /// `listen` (any answer: a secondary without its zone yet says SERVFAIL).
    pub fn start(
        name: &str,
        dir: tempfile::TempDir,
        mut cmd: Command,
        zone: &str,
        listen: SocketAddr,
    ) -> Daemon {
        let out = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = cmd
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} starts: {e}"));
        let mut daemon = Daemon {
            name: name.to_owned(),
            dir,
            child,
        };
        daemon.wait_ready(zone, listen);
        daemon
    }

    fn wait_ready(&mut self, zone: &str, listen: SocketAddr) {
        let start = Instant::now();
        let socket = client("127.0.0.1:0");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let soa = packet(next_id(), &absolute(zone), RecordType::SOA, None);
        while exchange(&socket, listen, &soa).is_none() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited with {status}:\n{}", self.name, self.log());
            }
            assert!(
                start.elapsed() < START_TIMEOUT,
                "{} does not answer on {listen} within {START_TIMEOUT:?}",
                self.name
            );
        }
    }

    /// The daemon's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its log and output so far.
    pub fn log(&self) -> String {
        ["daemon.log", "stderr.log"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.dir().join(f)).ok())
            .collect::<Vec<_>>()
            .join("")
    }
}

impl Drop for Daemon {
    /// SIGTERM first: killing NSD's first process leaves its forked server processes
    /// to notice alone. SIGKILL after two seconds.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) && start.elapsed() < STOP_TIMEOUT {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- {} log ----\n{}", self.name, self.log());
        }
    }
}

/// The parts of a knotd configuration that keep it inside `dir`, listening on `listen`,
/// logging everything to `dir/daemon.log`, with its control socket at `dir/knot.sock`.
pub fn knot_server_conf(dir: &Path, listen: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "server:\n    rundir: \"{d}\"\n    pidfile: \"{d}/knot.pid\"\n    \
         listen: {}@{}\n\
         log:\n  - target: \"{d}/daemon.log\"\n    any: debug\n\
         database:\n    storage: \"{d}\"\n\
         control:\n    listen: \"{d}/knot.sock\"\n\
         template:\n  - id: default\n    storage: \"{d}\"\n    zonefile-sync: -1\n",
        listen.ip(),
        listen.port()
    )
}

/// Starts knotd with `conf` (from [`knot_server_conf`] for `dir` and `listen`, plus the
/// zone parts). Ready once it answers for `zone` and its control socket is bound.
pub fn start_knot(
    name: &str,
    dir: tempfile::TempDir,
    listen: SocketAddr,
    conf: &str,
    zone: &str,
) -> Daemon {
    let file = dir.path().join("knot.conf");
    std::fs::write(&file, conf).unwrap();
    let mut cmd = tool("knotd");
    cmd.arg("-c").arg(&file);
    let daemon = Daemon::start(name, dir, cmd, zone, listen);
    let start = Instant::now();
    while !daemon.dir().join("knot.sock").exists() {
        assert!(start.elapsed() < START_TIMEOUT, "{name}: no control socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon
}

/// A Knot or NSD secondary (or an NSD serving a file) on a loopback address.
#[derive(Debug)]
pub struct Secondary {
    pub kind: Kind,
    pub addr: SocketAddr,
    daemon: Daemon,
}

impl Secondary {
    /// knotd as a secondary of `zone`: transfers from `primary` over TCP (AXFR at first,
    /// then IXFR with AXFR fallback) from its own address `listen.ip()`, and refreshes
    /// when NOTIFY comes from `notify_from`. With `sign`, it signs the zone itself with
    /// one ECDSAP256SHA256 CSK (flags 257: [`dnskey_anchor`] finds it).
    pub fn knot(
        zone: &str,
        primary: SocketAddr,
        listen: SocketAddr,
        notify_from: IpAddr,
        sign: bool,
    ) -> Secondary {
        let dir = tempfile::tempdir().unwrap();
        let mut conf = knot_server_conf(dir.path(), listen);
        conf += &format!(
            "remote:\n  - id: primary\n    address: {}@{}\n    via: {}\n\
             acl:\n  - id: notify\n    address: {notify_from}\n    action: notify\n",
            primary.ip(),
            primary.port(),
            listen.ip()
        );
        if sign {
            conf += "policy:\n  - id: csk\n    algorithm: ecdsap256sha256\n    \
                     single-type-signing: on\n";
        }
        conf += &format!("zone:\n  - domain: {zone}\n    master: primary\n    acl: notify\n");
        if sign {
            conf += "    dnssec-signing: on\n    dnssec-policy: csk\n";
        }
        let daemon = start_knot("knotd (secondary)", dir, listen, &conf, zone);
        Secondary {
            kind: Kind::Knot,
            addr: listen,
            daemon,
        }
    }

    /// nsd as a secondary of `zone`: AXFR from `primary` over TCP from `listen.ip()`,
    /// refreshing when NOTIFY comes from `notify_from`.
    pub fn nsd(
        zone: &str,
        primary: SocketAddr,
        listen: SocketAddr,
        notify_from: IpAddr,
    ) -> Secondary {
        let zone_conf = format!(
            "    zonefile: \"{zone}.zone\"\n    request-xfr: AXFR {}@{} NOKEY\n    \
             allow-notify: {notify_from} NOKEY\n    outgoing-interface: {}\n",
            primary.ip(),
            primary.port(),
            listen.ip()
        );
        Secondary::start_nsd(tempfile::tempdir().unwrap(), zone, &zone_conf, listen)
    }

    /// nsd serving `zone` from a copy of the master file at `path`.
    pub fn nsd_from_file(zone: &str, path: &Path, listen: SocketAddr) -> Secondary {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(path, dir.path().join("zone.txt")).unwrap();
        Secondary::start_nsd(dir, zone, "    zonefile: \"zone.txt\"\n", listen)
    }

    fn start_nsd(dir: tempfile::TempDir, zone: &str, zone_conf: &str, listen: SocketAddr) -> Self {
        let d = dir.path().display();
        let conf = format!(
            "server:\n    ip-address: {}@{port}\n    port: {port}\n    \
             username: \"\"\n    chroot: \"\"\n    database: \"\"\n    \
             zonesdir: \"{d}\"\n    pidfile: \"{d}/nsd.pid\"\n    \
             xfrdfile: \"{d}/xfrd.state\"\n    zonelistfile: \"{d}/zone.list\"\n    \
             xfrdir: \"{d}\"\n    logfile: \"{d}/daemon.log\"\n    \
             verbosity: 2\n    server-count: 1\n\
             remote-control:\n    control-enable: no\n\
             zone:\n    name: {zone}\n{zone_conf}",
            listen.ip(),
            port = listen.port()
        );
        let file = dir.path().join("nsd.conf");
        std::fs::write(&file, conf).unwrap();
        let mut cmd = tool("nsd");
        cmd.arg("-d").arg("-c").arg(&file);
        Secondary {
            kind: Kind::Nsd,
            addr: listen,
            daemon: Daemon::start("nsd", dir, cmd, zone, listen),
        }
    }

    /// Its log so far, for failure messages.
    pub fn log(&self) -> String {
        self.daemon.log()
    }
}

/// Runs `cmd`; `Ok` when it exits 0, else its output.
fn check(mut cmd: Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{cmd:?} exited with {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// `kzonecheck -o ORIGIN PATH` (Knot's syntax and semantic checks).
///
/// # Errors
/// Its report, when it finds anything wrong.
pub fn kzonecheck(path: &Path, origin: &str) -> Result<(), String> {
    let mut cmd = tool("kzonecheck");
    cmd.arg("-o").arg(origin).arg(path);
    check(cmd)
}

/// `named-checkzone ORIGIN PATH` (BIND's checks).
///
/// # Errors
/// Its report, when it finds anything wrong.
pub fn named_checkzone(origin: &str, path: &Path) -> Result<(), String> {
    let mut cmd = tool("named-checkzone");
    cmd.arg(origin).arg(path);
    check(cmd)
}

/// A fresh query ID.
fn next_id() -> u16 {
    static ID: AtomicU16 = AtomicU16::new(0x2000);
    ID.fetch_add(1, Ordering::Relaxed)
}

/// `name` with its trailing dot.
fn absolute(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// The answer of `server` to `name` `rtype` over UDP (EDNS, 1232 bytes), if it comes
/// within the client's timeout. `m.metadata.authoritative` is the AA bit.
pub fn try_query(server: SocketAddr, name: &str, rtype: RecordType) -> Option<Message> {
    let socket = client("127.0.0.1:0");
    exchange(
        &socket,
        server,
        &packet(next_id(), &absolute(name), rtype, Some(1232)),
    )
}

/// Like [`try_query`]; panics without an answer.
pub fn query(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    try_query(server, name, rtype).unwrap_or_else(|| panic!("{server} answers {name} {rtype}"))
}

/// The serial of the SOA `server` answers for `zone` with AA, if it does.
pub fn soa_serial(server: SocketAddr, zone: &str) -> Option<u32> {
    let m = try_query(server, zone, RecordType::SOA)?;
    if !m.metadata.authoritative {
        return None;
    }
    m.answers.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    })
}

/// Waits until `server` serves `zone` with a serial of at least `at_least` (compared as
/// plain numbers) and returns it; panics after `timeout`.
pub fn wait_serial(server: SocketAddr, zone: &str, at_least: u32, timeout: Duration) -> u32 {
    let start = Instant::now();
    loop {
        let serial = soa_serial(server, zone);
        if let Some(s) = serial.filter(|&s| s >= at_least) {
            return s;
        }
        assert!(
            start.elapsed() < timeout,
            "{server} serves {zone} with serial {serial:?}, not >= {at_least}, after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `kdig +dnssec +norecurse` output for `name` `rtype` from `server`.
pub fn kdig_dnssec(server: SocketAddr, name: &str, rtype: RecordType) -> String {
    let out = tool("kdig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args(["+dnssec", "+norecurse", "+timeout=2", "+retry=1"])
        .arg(name)
        .arg(rtype.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "kdig: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A delv trust-anchors clause with the key-signing DNSKEY (flags 257) `server` serves
/// for `zone`.
pub fn dnskey_anchor(server: SocketAddr, zone: &str) -> String {
    let m = query(server, zone, RecordType::DNSKEY);
    let key = m
        .answers
        .iter()
        .find_map(|r| match &r.data {
            // Without hickory's DNSSEC features a DNSKEY stays raw: flags (2 bytes),
            // protocol, algorithm, key.
            RData::Unknown { rdata, .. } if rdata.anything.get(..2) == Some(&[1, 1]) => {
                Some(rdata.anything.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("{server} serves no DNSKEY 257 for {zone}: {m:?}"));
    // NULL displays its bytes as base64.
    let base64 = NULL::with(key[4..].to_vec()).to_string();
    format!(
        "trust-anchors {{ \"{}\" static-key 257 {} {} \"{base64}\"; }};\n",
        absolute(zone),
        key[2],
        key[3]
    )
}

/// `delv` asking `server` for `name` `rtype` and validating up to the key in
/// `anchor_file` for `zone` (`+root=ZONE`: nothing above the zone is asked). Output
/// holds "; fully validated" when the answer validated.
pub fn delv_validated(
    server: SocketAddr,
    zone: &str,
    name: &str,
    rtype: RecordType,
    anchor_file: &Path,
) -> String {
    let out = tool("delv")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .arg("-a")
        .arg(anchor_file)
        .arg(format!("+root={}", absolute(zone)))
        .arg(name)
        .arg(rtype.to_string())
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What an AXFR brought: the RCODE of the last message and the records of all.
#[derive(Debug)]
pub struct Axfr {
    pub rcode: ResponseCode,
    pub messages: usize,
    pub records: Vec<Record>,
}

/// Asks `server` for an AXFR of `zone` over TCP from the address `source`, reading
/// messages until the closing SOA, an error RCODE, or the end of the connection.
///
/// # Errors
/// When the connection fails, or closes or times out before any message.
pub fn axfr_with(source: IpAddr, server: SocketAddr, zone: &str) -> io::Result<Axfr> {
    let mut stream = tcp_connect_from(source, server)?;
    stream.write_all(&framed(&packet(
        next_id(),
        &absolute(zone),
        RecordType::AXFR,
        None,
    )))?;
    let mut axfr = Axfr {
        rcode: ResponseCode::NoError,
        messages: 0,
        records: Vec::new(),
    };
    loop {
        let m = match read_message(&mut stream) {
            Ok(m) => m,
            Err(_) if axfr.messages > 0 => return Ok(axfr),
            Err(e) => return Err(e),
        };
        axfr.messages += 1;
        axfr.rcode = m.metadata.response_code;
        axfr.records.extend(m.answers);
        let soas = axfr
            .records
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .count();
        if axfr.rcode != ResponseCode::NoError || soas >= 2 {
            return Ok(axfr);
        }
    }
}

/// One length-prefixed message from `stream`.
fn read_message(stream: &mut impl Read) -> io::Result<Message> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf)?;
    Message::from_vec(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
