//! The files operators deploy (`contrib/`), checked by the tools that will read them:
//! `systemd-analyze` for the unit, `promtool` for the Prometheus config and rules. A
//! missing tool skips its part with a line saying what to install.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{arg, run_ok};

/// The unit's ExecStart, rewritten to a real binary for `systemd-analyze verify`.
const EXEC_START: &str = "ExecStart=/usr/local/bin/dnsseeder run";
/// The most exposure `systemd-analyze security` may score the unit (1.5 with systemd 252).
const MAX_EXPOSURE: f64 = 2.0;

fn contrib(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(path)
}

/// Runs `tool ARGS`, or says it is skipped and returns `None` when `tool` is missing.
fn tool(tool: &str, package: &str, args: &[&str]) -> Option<Output> {
    match Command::new(tool).args(args).output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipped: {tool} is not installed (apt-get install {package})");
            None
        }
        Err(e) => panic!("{tool} cannot be run: {e}"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed with {}:\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A copy of the unit whose ExecStart names a copy of the built binary, which
/// `systemd-analyze verify` requires to exist.
fn unit_with_real_binary(dir: &Path) -> PathBuf {
    let binary = dir.join("dnsseeder");
    std::fs::copy(env!("CARGO_BIN_EXE_dnsseeder"), &binary).unwrap();
    let unit = std::fs::read_to_string(contrib("systemd/dnsseeder.service")).unwrap();
    assert!(
        unit.lines().any(|l| l == EXEC_START),
        "the unit has `{EXEC_START}`"
    );
    let rewritten = unit.replace(EXEC_START, &format!("ExecStart={} run", arg(&binary)));
    let path = dir.join("dnsseeder.service");
    std::fs::write(&path, rewritten).unwrap();
    path
}

#[test]
fn systemd_unit_verifies_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_with_real_binary(dir.path());
    let Some(out) = tool("systemd-analyze", "systemd", &["verify", arg(&unit)]) else {
        return;
    };
    assert_success("systemd-analyze verify", &out);
    // Unknown keys and bad values are warnings with exit status 0, naming the file.
    let stderr = text(&out.stderr);
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("dnsseeder")).collect();
    assert!(
        ours.is_empty(),
        "systemd-analyze verify warns:\n{}",
        ours.join("\n")
    );
}

#[test]
fn systemd_unit_exposure_stays_low() {
    let unit = contrib("systemd/dnsseeder.service");
    let args = ["security", "--offline=yes", arg(&unit)];
    let Some(out) = tool("systemd-analyze", "systemd", &args) else {
        return;
    };
    let stdout = text(&out.stdout);
    let Some(line) = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
    else {
        eprintln!("skipped: this systemd-analyze has no offline security check (systemd < 250)");
        return;
    };
    let score: f64 = line
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("an exposure score in {line:?}"));
    eprintln!("{line}");
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}:\n{stdout}"
    );
}

#[test]
fn environment_file_names_only_real_variables() {
    let help = run_ok(&["run", "--help"]);
    let example = std::fs::read_to_string(contrib("systemd/dnsseeder.env.example")).unwrap();
    for line in example.lines() {
        let assignment = line.trim_start_matches('#');
        let Some((name, _)) = assignment.split_once('=') else {
            continue;
        };
        if !name.starts_with("DNSSEEDER_") {
            continue;
        }
        assert!(
            help.contains(&format!("[env: {name}=")),
            "{name} in dnsseeder.env.example is not a variable of `dnsseeder run`"
        );
    }
}

#[test]
fn prometheus_rules_check() {
    let rules = contrib("prometheus/dnsseeder.rules.yml");
    let Some(out) = tool("promtool", "prometheus", &["check", "rules", arg(&rules)]) else {
        return;
    };
    assert_success("promtool check rules", &out);
    assert!(
        text(&out.stdout).contains("SUCCESS: 5 rules found"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn prometheus_config_checks() {
    let config = contrib("prometheus/prometheus.yml");
    let Some(out) = tool("promtool", "prometheus", &["check", "config", arg(&config)]) else {
        return;
    };
    assert_success("promtool check config", &out);
}
