//! Running the binary: a temporary working directory, a clean environment, and the
//! agents a scenario needs.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_swarm-memory");

/// One user's working directory with (after [`Env::init`]) a database in it.
pub(crate) struct Env {
    dir: tempfile::TempDir,
}

/// A registered agent and its token.
#[derive(Clone, Debug)]
pub(crate) struct Agent {
    pub(crate) id: String,
    pub(crate) token: String,
}

/// What one invocation did.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) bytes: Vec<u8>,
    pub(crate) stderr: String,
    args: String,
}

impl Run {
    /// What a finished process did.
    pub(crate) fn from(args: &[&str], out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            bytes: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            args: args.join(" "),
        }
    }

    /// Asserts the exit code.
    #[track_caller]
    pub(crate) fn code(self, expected: i32) -> Self {
        assert_eq!(
            self.code, expected,
            "`swarm-memory {}` exited {}, not {expected}\nstdout: {}\nstderr: {}",
            self.args, self.code, self.stdout, self.stderr
        );
        self
    }

    /// Asserts success.
    #[track_caller]
    pub(crate) fn ok(self) -> Self {
        self.code(0)
    }

    /// Stdout without the final newline.
    pub(crate) fn out(&self) -> &str {
        self.stdout.strip_suffix('\n').unwrap_or(&self.stdout)
    }

    /// Stdout as exactly one JSON document.
    #[track_caller]
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`swarm-memory {}` printed no single JSON document ({e}):\n{}",
                self.args, self.stdout
            )
        })
    }

    /// Asserts a failure reported the documented way: one `error: ` line on stderr.
    #[track_caller]
    pub(crate) fn fails(self, expected: i32, needle: &str) -> Self {
        let r = self.code(expected);
        let lines: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(lines.len(), 1, "one error line expected on stderr:\n{}", r.stderr);
        assert!(lines[0].contains(needle), "{:?} does not mention {needle:?}", lines[0]);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        r
    }

    /// The `error: ` line on stderr.
    pub(crate) fn error_line(&self) -> &str {
        self.stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or("")
    }
}

impl Env {
    /// An empty working directory.
    pub(crate) fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    /// A working directory with an initialised database.
    pub(crate) fn init() -> Self {
        let env = Self::new();
        env.run(&["init"]).ok();
        env
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn db(&self) -> PathBuf {
        self.path("swarm-memory.db")
    }

    /// The command with nothing in its environment but PATH and HOME.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .stdin(Stdio::null());
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        Run::from(args, self.command(args).output().unwrap())
    }

    pub(crate) fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = self.command(args);
        c.envs(env.iter().copied());
        Run::from(args, c.output().unwrap())
    }

    /// Runs as `agent`, credentials in the environment as a script would pass them.
    pub(crate) fn run_as(&self, agent: &Agent, args: &[&str]) -> Run {
        self.run_with(args, &[("SWARM_AGENT_ID", &agent.id), ("SWARM_AGENT_TOKEN", &agent.token)])
    }

    /// Runs as `agent` with `input` on stdin.
    pub(crate) fn run_as_with_stdin(&self, agent: &Agent, args: &[&str], input: &[u8]) -> Run {
        let mut c = self.command(args);
        c.env("SWARM_AGENT_ID", &agent.id)
            .env("SWARM_AGENT_TOKEN", &agent.token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        Run::from(args, child.wait_with_output().unwrap())
    }

    /// Starts the command as `agent` without waiting for it, stdout and stderr piped.
    pub(crate) fn spawn_as(&self, agent: &Agent, args: &[&str]) -> std::process::Child {
        self.command(args)
            .env("SWARM_AGENT_ID", &agent.id)
            .env("SWARM_AGENT_TOKEN", &agent.token)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Registers an agent with this id (and any further `agent register` arguments).
    pub(crate) fn register(&self, id: &str, extra: &[&str]) -> Agent {
        let mut args =
            vec!["agent", "register", "--name", id, "--type", "worker", "--id", id, "--json"];
        args.extend_from_slice(extra);
        let doc = self.run(&args).ok().json();
        Agent { id: id.to_owned(), token: doc["token"].as_str().unwrap().to_owned() }
    }

    /// Asserts that registering `id` in swarm `other`, which does not exist, is refused
    /// and creates nothing.
    #[track_caller]
    pub(crate) fn register_fails_in_missing_swarm(&self, id: &str) {
        let args = ["agent", "register", "--name", id, "--type", "worker", "--swarm", "other"];
        self.run(&args)
            .fails(3, "swarm other not found: create it with `swarm-memory swarm create other`");
        let swarms = self.run(&["swarm", "list", "--json"]).ok().json();
        assert!(swarms["swarms"].as_array().unwrap().iter().all(|s| s["id"] != "other"));
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }
}
