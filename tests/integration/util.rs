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
