//! Small helpers to run the real binary and look at what a user would see.

use std::path::Path;
use std::process::{Command, Output};

/// The `dnsseeder` binary built for these tests.
pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dnsseeder"));
    cmd.env_remove("DNSSEEDER_DB").env("RUST_LOG", "warn");
    cmd
}

/// Runs `dnsseeder ARGS` to completion.
pub fn run(args: &[&str]) -> Output {
    bin()
        .args(args)
        .output()
        .expect("the dnsseeder binary runs")
}

/// Runs `dnsseeder ARGS`, requires success, returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "dnsseeder {args:?} failed with {}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// The path as a `&str` argument.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// A small deterministic generator (xorshift), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Heavy tests (a simulated network plus a seeder process) run one at a time: the
/// machine has two cores.
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running `dnsseeder` process. Its stderr is collected; on drop it is killed, and
/// if the test is failing its log is replayed so the failure shows the seeder's side.
pub struct Seeder {
    child: Option<std::process::Child>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Seeder {
    /// Starts `dnsseeder ARGS` with `RUST_LOG` set to `log`.
    pub fn start(args: &[&str], log: &str) -> Seeder {
        use std::io::BufRead;
        let mut child = bin()
            .args(args)
            .env("RUST_LOG", log)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the dnsseeder binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Seeder {
            child: Some(child),
            log: lines,
            reader: Some(reader),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// A copy of the log so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a log line contains `needle`; panics after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: std::time::Duration) -> String {
        let start = std::time::Instant::now();
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            assert!(
                start.elapsed() < timeout,
                "no log line with {needle:?} within {timeout:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Sends a signal by name (`TERM`, `KILL`, `INT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit; panics after `timeout`. Returns its status and
    /// the time it took.
    pub fn wait_exit(
        &mut self,
        timeout: std::time::Duration,
    ) -> (std::process::ExitStatus, std::time::Duration) {
        let start = std::time::Instant::now();
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait works") {
                self.child = None;
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return (status, start.elapsed());
            }
            assert!(
                start.elapsed() < timeout,
                "the seeder did not exit within {timeout:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Seeder {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self
                .log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(path) = std::env::var_os("DNSSEEDER_TEST_LOG") {
                let _ = std::fs::write(path, log.join("\n"));
            }
            let tail = log.len().saturating_sub(200);
            eprintln!(
                "---- seeder log (last {} of {} lines) ----",
                log.len() - tail,
                log.len()
            );
            for line in &log[tail..] {
                eprintln!("{line}");
            }
        }
    }
}

/// Flags that make `run` serve DNS for `seed.example.com` on a free loopback port, with
/// the rate limiter off (tests send from one address).
pub const DNS_FLAGS: [&str; 10] = [
    "--host",
    "seed.example.com",
    "--ns",
    "ns.seed.example.com",
    "--mbox",
    "hostmaster.seed.example.com",
    "--dns-listen",
    "127.0.0.1:0",
    "--dns-rate-limit",
    "0",
];

impl Seeder {
    /// The DNS server's address, read from its `DNS listening on udp+tcp ADDR` line.
    pub fn dns_addr(&self) -> std::net::SocketAddr {
        let line = self.wait_for_log(
            "DNS listening on udp+tcp ",
            std::time::Duration::from_secs(20),
        );
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }
}

/// Requires `PRAGMA integrity_check` to say `ok`.
pub fn assert_integrity(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

/// The flags every crawl test passes: loopback only, no DNS seeds, no DNS server.
pub fn crawl_args<'a>(db: &'a str, seed: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "--db",
        db,
        "--network",
        "regtest",
        "--no-dns-seed",
        "--allow-private",
        "--connect-timeout",
        "1",
        "--probe-timeout",
        "2",
        "--status-interval",
        "1",
    ];
    if !seed.is_empty() {
        args.extend(["--seed", seed]);
    }
    args.extend_from_slice(extra);
    args
}

/// How many of `addrs` are good in the database at `db` (0 while it cannot be read).
pub fn good_count(db: &std::path::Path, addrs: &[String]) -> usize {
    let Ok(conn) = rusqlite::Connection::open(db) else {
        return 0;
    };
    let good: rusqlite::Result<usize> = conn.query_row(
        "SELECT count(*) FROM peers WHERE good = 1 AND address IN \
         (SELECT value FROM json_each(?1))",
        [serde_json::to_string(addrs).expect("addresses as JSON")],
        |r| r.get(0),
    );
    good.unwrap_or(0)
}

/// Polls until at least `percent` of `addrs` are good; returns how long it took, or fails
/// the test after `limit`.
pub fn wait_until_good(
    db: &std::path::Path,
    addrs: &[String],
    percent: usize,
    limit: std::time::Duration,
) -> std::time::Duration {
    let start = std::time::Instant::now();
    loop {
        let good = good_count(db, addrs);
        if good * 100 >= addrs.len() * percent {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "only {good} of {} good nodes good after {limit:?}",
            addrs.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// A loopback port nobody listens on (free a moment ago).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `promtool check metrics` finds nothing to say about a scraped page (skipped, and said,
/// without promtool).
pub fn promtool_check_metrics(page: &str) {
    use std::io::Write;
    use std::process::Stdio;
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("skipped: promtool check metrics: promtool is not installed");
        return;
    };
    // The pipe closes when the handle drops at the end of the statement: promtool sees EOF.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics: {report}"
    );
}
