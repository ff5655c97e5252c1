//! Named threads. Every long-lived thread of the seeder (crawler, writer, DNS, simulated
//! network) starts through [`spawn`], so each shows its name in `top -H`, in panics and in
//! the log, and a thread that fails logs its whole error chain before it ends instead of
//! vanishing with an `Err` nobody joins.

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

    #[test]
    fn a_failing_thread_ends_without_panicking() {
        let handle = spawn("failing-test", || anyhow::bail!("on purpose")).expect("starts");
        assert!(handle.join().is_ok(), "an Err is logged, not a panic");
    }
}
