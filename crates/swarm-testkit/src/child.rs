//! Child processes for multi-process tests: the test binary runs itself again, as one
//! test, with a role in an environment variable.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

/// The variable that tells a re-invoked test binary which role to play.
pub const CHILD_ROLE_VAR: &str = "SWARM_CHILD_ROLE";

/// The role this process was started with, if it is a child.
///
/// The child's entry point is an ordinary test that does nothing unless this is set:
///
/// ```no_run
/// #[test]
/// fn child_entry() {
///     let Some(role) = swarm_testkit::child_role() else { return };
///     // ... play `role`, printing `SWARM:` lines for the parent ...
/// #   let _ = role;
/// }
/// ```
pub fn child_role() -> Option<String> {
    std::env::var(CHILD_ROLE_VAR).ok().filter(|r| !r.is_empty())
}

/// A child process running one test of the current test binary. Its stdout lines are
/// collected; it is killed (SIGKILL) when dropped.
pub struct ChildProcess {
    child: Option<Child>,
    stdin: Option<std::process::ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl ChildProcess {
    /// Runs `current_exe() <test> --exact --nocapture --test-threads=1` with
    /// `SWARM_CHILD_ROLE=<role>` and the extra variables. `test` is the test's full path in
    /// the binary (for example `multiprocess::child_entry`).
    pub fn spawn(test: &str, role: &str, envs: &[(&str, &str)]) -> Self {
        let exe = std::env::current_exe().expect("current test binary");
        let mut cmd = Command::new(exe);
        cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ROLE_VAR, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn the test binary as a child");
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let (tx, rx) = crossbeam_channel::unbounded();
        // The reader ends when the child's stdout closes, which killing the child does.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child: Some(child), stdin, lines: rx, seen: Vec::new() }
    }

    /// Writes one line to the child's stdin (children that wait for a go signal read it).
    pub fn send_line(&mut self, line: &str) {
        use std::io::Write as _;
        if let Some(stdin) = &mut self.stdin {
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
    }

    /// The process id.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits for a stdout line containing `marker` and returns the line from the marker on
    /// (the test harness may print `test name ... ` before a child's first line); lines
    /// read meanwhile are kept in [`ChildProcess::output`]. `None` on timeout or when the
    /// child exits first.
    pub fn wait_line(&mut self, marker: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(at) = line.find(marker) {
                        return Some(line[at..].to_owned());
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Every line read so far.
    pub fn output(&self) -> &[String] {
        &self.seen
    }

    /// Kills the child with SIGKILL (no cleanup runs in it) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `timeout` for the child to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
