//! This process's threads as `/proc/self/task` shows them: id, name and CPU time. The
//! crawl bench splits its CPU by thread role and the DNS bench times and pins its serving
//! threads; both read the exact nanoseconds of `schedstat`, not the user + system ticks of
//! `stat`, which the timer tick charges: threads that run in bursts of a few microseconds
//! between blocking reads showed a quarter of their real time there.

/// One thread of this process.
#[derive(Debug, Clone)]
pub struct Thread {
    /// The thread id (the main thread's is the process id).
    pub tid: i32,
    /// Its name (`comm`), as set by `thread::Builder::name`, at most 15 bytes.
    pub name: String,
    /// Nanoseconds it has spent on a CPU (`schedstat`, first field).
    pub cpu_ns: u64,
}

/// Lists this process's threads; one that exits while it is read is left out, and so are
/// all on a system without `/proc`.
pub fn threads() -> Vec<Thread> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| {
            let path = task.path();
            let tid = task.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            let schedstat = std::fs::read_to_string(path.join("schedstat")).ok()?;
            let cpu_ns = schedstat.split_whitespace().next()?.parse().ok()?;
            Some(Thread {
                tid,
                name: name.trim_end().to_owned(),
                cpu_ns,
            })
        })
        .collect()
}
