//! The standard `process_*` metrics, read from `/proc/self` at each scrape (Linux; on
//! other systems, or when a file cannot be read, the metric is left out).

use std::fs;

/// The process's figures at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    pub resident_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub start_time: Option<f64>,
}

/// Reads the current figures.
pub fn read() -> ProcessStats {
    let stat = fs::read_to_string("/proc/self/stat").ok();
    let fields = stat.as_deref().map(stat_fields).unwrap_or_default();
    let ticks = clock_ticks();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let cpu = field(11)
        .zip(field(12))
        .map(|(u, s)| (u + s) as f64 / ticks);
    let start = field(19)
        .zip(boot_time())
        .map(|(t, boot)| boot as f64 + t as f64 / ticks);
    ProcessStats {
        resident_bytes: resident_bytes(),
        cpu_seconds: cpu,
        open_fds: fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64),
        start_time: start,
    }
}

/// The fields of `/proc/self/stat` after the command name: the state is index 0, so
/// utime (field 14 of proc(5)) is index 11, stime 12 and starttime (field 22) 19.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default()
}

/// `VmRSS` of `/proc/self/status`, in bytes.
fn resident_bytes() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `btime` of `/proc/stat`: when the system booted, Unix seconds.
fn boot_time() -> Option<u64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("btime "))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn clock_ticks() -> f64 {
    rustix::param::clock_ticks_per_second() as f64
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn clock_ticks() -> f64 {
    100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_skip_a_name_with_spaces_and_parentheses() {
        let stat = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 111 222 0 0 20 0 1 0 3333 0";
        let f = stat_fields(stat);
        assert_eq!((f[0], f[11], f[12], f[19]), ("S", "111", "222", "3333"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let p = read();
        assert!(p.resident_bytes.unwrap() > 0);
        assert!(p.open_fds.unwrap() >= 3);
        assert!(p.cpu_seconds.unwrap() >= 0.0);
        let start = p.start_time.unwrap();
        assert!((start - crate::unix_now() as f64).abs() < 3600.0);
    }
}
