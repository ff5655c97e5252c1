//! A child process that cannot outlive a failed bench: the scale bench runs the real
//! `dnsseeder` binary, and an error half-way (a `?` anywhere) must not leave it crawling
//! in the background. [`Running`] kills the child when dropped, unless it was stopped.

use std::io;
use std::process::{Child, ChildStderr, Command};
use std::thread;
use std::time::{Duration, Instant};

/// A running child process, killed (and reaped) on drop unless [`Running::terminate`]
/// saw it exit.
#[derive(Debug)]
pub struct Running {
    /// The child until it was seen to exit.
    child: Option<Child>,
    pid: u32,
}

impl Running {
    /// Spawns `command`.
    ///
    /// # Errors
    /// When the program cannot be started.
    pub fn spawn(command: &mut Command) -> io::Result<Running> {
        let child = command.spawn()?;
        Ok(Running {
            pid: child.id(),
            child: Some(child),
        })
    }

    /// Returns the child's process id.
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Takes the child's standard error (piped by the command), for a reader thread.
    ///
    /// # Errors
    /// When the command did not pipe it, or it was taken already.
    pub fn take_stderr(&mut self) -> anyhow::Result<ChildStderr> {
        self.child
            .as_mut()
            .and_then(|c| c.stderr.take())
            .ok_or_else(|| anyhow::anyhow!("no stderr: spawn the child with Stdio::piped()"))
    }

    /// Sends SIGTERM (through `kill`) and waits up to `timeout` for the child to exit;
    /// returns how it exited and how long that took.
    ///
    /// # Errors
    /// When `kill` fails, or the child is still running after `timeout` (it is then
    /// killed on drop).
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<String> {
        let pid = self.pid;
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("process {pid} has already exited"))?;
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM {pid} failed");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(format!(
                    "{status} after SIGTERM in {:.1} s",
                    start.elapsed().as_secs_f64()
                ));
            }
            anyhow::ensure!(
                start.elapsed() < timeout,
                "process {pid} did not exit within {timeout:?} of SIGTERM (it is killed now)"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
