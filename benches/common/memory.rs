//! The memory of another process, for the scale bench, which samples the resident set of
//! the seeder it spawned: the numeric fields of `/proc/PID/status` (`VmRSS`, `VmHWM`,
//! `RssAnon`, `Threads`, ...).

/// Returns the numeric field `field` of `/proc/PID/status` (in KiB for the sizes).
///
/// # Errors
/// When the file cannot be read (the process exited) or has no such field.
pub fn status_field(pid: u32, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/{pid}/status (did it exit?)"))
}
