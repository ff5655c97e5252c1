//! The machine's load average, which the DNS and scale benches print at their start and
//! end: the machine is shared, and their figures mean little without it.

/// Returns the first three fields of `/proc/loadavg` (1, 5 and 15 minutes), or
/// `unknown (...)` with the reason it could not be read.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |e| format!("unknown ({e})"),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}
