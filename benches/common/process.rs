//! What the kernel counts for this whole process, for the crawl bench: CPU time, threads
//! that already exited included (`/proc/self/stat`; the simulated network's connection
//! threads are short-lived), and open file descriptors (`/proc/self/fd`).

/// Returns the user + system CPU seconds of this process so far, exited threads included
/// (NaN without `/proc`).
pub fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| stat_ticks(&s))
        .map_or(f64::NAN, |ticks| ticks / clock_ticks())
}

/// Returns how many file descriptors this process has open (0 without `/proc`).
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// User + system time from a `/proc/.../stat` line, in ticks. Fields 14 and 15 follow the
/// parenthesised command name, which may itself contain spaces.
fn stat_ticks(stat: &str) -> Option<f64> {
    let close = stat.rfind(')')?;
    let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15 (1-based over the whole line).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}
