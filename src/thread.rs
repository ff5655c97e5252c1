//! Named threads. Every long-lived thread of the seeder (crawler, writer, DNS, simulated
//! network) starts through [`spawn`], so each shows its name in `top -H`, in panics and in
//! the log, and a thread that fails logs its whole error chain before it ends instead of
//! vanishing with an `Err` nobody joins.
//!
//! Background threads that must yield the CPU to serving (the crawler's) start through
//! [`spawn_lowered`]: on Linux each lowers its own scheduling priority (a per-thread nice
//! value) before it runs, so that under load the DNS threads, which keep the priority of
//! the process, run first. Elsewhere the priority is left alone.

use std::thread::JoinHandle;

use anyhow::Context;

/// Starts a thread named `name` with the standard stack size; see [`spawn_with_stack`].
///
/// # Errors
/// When the OS refuses a thread (the message names it).
pub fn spawn(
    name: &str,
    f: impl FnOnce() -> anyhow::Result<()> + Send + 'static,
) -> anyhow::Result<JoinHandle<()>> {
    start(std::thread::Builder::new(), name, f)
}

/// Starts a thread named `name` with a stack of `stack` bytes (for pools of hundreds of
/// threads that need little stack). The thread logs at error level, with its cause chain,
/// when `f` fails, and at trace level when it returns.
///
/// # Errors
/// When the OS refuses a thread (the message names it).
pub fn spawn_with_stack(
    name: &str,
    stack: usize,
    f: impl FnOnce() -> anyhow::Result<()> + Send + 'static,
) -> anyhow::Result<JoinHandle<()>> {
    start(std::thread::Builder::new().stack_size(stack), name, f)
}

/// Starts a thread as [`spawn_with_stack`] does, whose first act is to lower its own
/// scheduling priority by `nice` levels below that of the thread that starts it (at most
/// to 19, the lowest); see [`lower_priority`].
///
/// # Errors
/// When the OS refuses a thread (the message names it).
pub fn spawn_lowered(
    name: &str,
    stack: usize,
    nice: i32,
    f: impl FnOnce() -> anyhow::Result<()> + Send + 'static,
) -> anyhow::Result<JoinHandle<()>> {
    let lowered = move || {
        lower_priority(nice);
        f()
    };
    start(std::thread::Builder::new().stack_size(stack), name, lowered)
}

/// Lowers the calling thread's scheduling priority by `by` nice levels (Linux: its own
/// nice value, which `setpriority(PRIO_PROCESS, gettid())` sets for one thread only).
/// A failure (not permitted, say) is logged once at debug level, and the thread runs on
/// at its former priority; on other systems this does nothing.
pub fn lower_priority(by: i32) {
    if by <= 0 {
        return;
    }
    if let Err(e) = os::lower_priority(by) {
        static LOGGED: std::sync::Once = std::sync::Once::new();
        LOGGED.call_once(|| log::debug!("cannot lower a thread's priority: {e}"));
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod os {
    use rustix::process::{getpriority_process, setpriority_process};
    use rustix::thread::gettid;

    /// The nice value of the calling thread plus `by`, at most 19.
    pub(super) fn lower_priority(by: i32) -> std::io::Result<()> {
        let me = Some(gettid());
        let nice = getpriority_process(me)?.saturating_add(by).min(19);
        setpriority_process(me, nice)?;
        Ok(())
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod os {
    /// Leaves the priority alone: only Linux has a nice value per thread.
    pub(super) fn lower_priority(_by: i32) -> std::io::Result<()> {
        Ok(())
    }
}

fn start(
    builder: std::thread::Builder,
    name: &str,
    f: impl FnOnce() -> anyhow::Result<()> + Send + 'static,
) -> anyhow::Result<JoinHandle<()>> {
    let owned = name.to_owned();
    builder
        .name(owned.clone())
        .spawn(move || match f() {
            Ok(()) => log::trace!("thread {owned} stopped"),
            Err(e) => log::error!("thread {owned} failed: {e:#}"),
        })
        .with_context(|| format!("cannot start thread {name}"))
}

/// The nice value of the task `/proc/<task>` (`thread-self`, `self/task/<tid>`): field
/// 19 of its `stat`; `None` without `/proc` (not Linux) or once the thread has ended.
#[cfg(test)]
pub(crate) fn nice_of(task: &str) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{task}/stat")).ok()?;
    // Fields 3 onward follow the name, which is in parentheses and may hold spaces.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19 - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_carry_their_name_and_stack() {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = spawn_with_stack("named-test", 256 * 1024, move || {
            tx.send(std::thread::current().name().map(str::to_owned))?;
            Ok(())
        })
        .expect("a thread starts");
        handle.join().expect("the thread ends without panicking");
        assert_eq!(rx.recv().expect("a name"), Some("named-test".to_owned()));
    }

    /// On Linux a lowered thread's own nice value is raised.
    #[test]
    fn a_lowered_thread_runs_at_a_lower_priority() {
        let Some(before) = nice_of("thread-self") else {
            eprintln!("skipped: no per-thread nice value in /proc (Linux only)");
            return;
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = spawn_lowered("lowered-test", 256 * 1024, 5, move || {
            tx.send(nice_of("thread-self"))?;
            Ok(())
        })
        .expect("a thread starts");
        handle.join().expect("the thread ends");
        let after = rx.recv().expect("a nice value");
        assert_eq!(after, Some((before + 5).min(19)));
    }

    #[test]
    fn a_failing_thread_ends_without_panicking() {
        let handle = spawn("failing-test", || anyhow::bail!("on purpose")).expect("starts");
        assert!(handle.join().is_ok(), "an Err is logged, not a panic");
    }
}
