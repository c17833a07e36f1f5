//! Test helpers for swarm-memory (for tests and the benchmark runner, never published): a
//! real Redis for every test that needs one, private `redis-server`s that can be killed and
//! restarted for outage tests, unique names so tests sharing one server never see each
//! other, and child processes for multi-process tests.
//!
//! What it is not: a mock. Tests that need Redis get a real one or fail loudly; this crate
//! does not depend on the `redis` crate either (it speaks RESP over a `TcpStream`), so what
//! it sends is what any client could send, forged messages included.
//!
//! ```no_run
//! use swarm_testkit::TestRedis;
//!
//! let redis = TestRedis::start();          // SWARM_TEST_REDIS_URL, 127.0.0.1:6379, or a spawned server
//! let scope = redis.scope();               // a unique `test-...` name; its keys are deleted on drop
//! let mut raw = redis.client();            // a raw RESP connection
//! raw.publish(&format!("swarm:{}:events", scope.id()), b"not even JSON").unwrap();
//! ```

mod child;
mod resp;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use child::{CHILD_ROLE_VAR, ChildProcess, child_role};
pub use resp::{RedisAddr, Resp, RespClient};

/// The variable naming the Redis that tests use; default `redis://127.0.0.1:6379`.
pub const REDIS_URL_VAR: &str = "SWARM_TEST_REDIS_URL";

const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// A unique name: `{prefix}-` and 16 random hex characters.
pub fn unique_id(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random generator works");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}

/// The Redis a test uses: the one at `SWARM_TEST_REDIS_URL` (default
/// `redis://127.0.0.1:6379`) when it answers `PING`, otherwise a `redis-server` started
/// for this handle and stopped when it is dropped.
pub struct TestRedis {
    addr: RedisAddr,
    _owned: Option<PrivateRedis>,
}

impl TestRedis {
    /// Finds or starts a Redis. Panics, saying how to fix it, when neither works: a test
    /// that needs Redis never passes without one.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| panic!("no Redis for tests: {e}"))
    }

    /// As [`TestRedis::start`], but says why as an error instead of panicking, for callers
    /// that report it their own way (the benchmark runner). The message says how to fix it.
    pub fn try_start() -> Result<Self, String> {
        Self::find(std::env::var(REDIS_URL_VAR).ok())
    }

    /// The Redis at `url` (the value of [`REDIS_URL_VAR`], if set), else at the default URL,
    /// else a private server. An explicit URL that does not answer is an error rather than a
    /// reason to start another server: whoever set it meant that one.
    fn find(url: Option<String>) -> Result<Self, String> {
        let url = url.filter(|u| !u.trim().is_empty());
        let explicit = url.is_some();
        let url = url.unwrap_or_else(|| DEFAULT_URL.to_owned());
        let addr = RedisAddr::parse(&url)
            .ok_or_else(|| format!("{REDIS_URL_VAR}={url:?} is not a redis://host:port URL"))?;
        let ping = RespClient::connect(&addr, IO_TIMEOUT).and_then(|mut c| c.ping());
        match ping {
            Ok(true) => return Ok(Self { addr, _owned: None }),
            Ok(false) | Err(_) if explicit => {
                return Err(format!(
                    "{REDIS_URL_VAR}={url} does not answer PING ({ping:?}); start that Redis or unset {REDIS_URL_VAR}"
                ));
            }
            _ => {}
        }
        match PrivateRedis::try_start() {
            Ok(server) => Ok(Self { addr: server.addr(), _owned: Some(server) }),
            Err(e) => Err(format!(
                "nothing answers PING at {url} and `redis-server` could not be started ({e}). \
                 Install Redis (`apt-get install redis-server`) or set {REDIS_URL_VAR} to a running server."
            )),
        }
    }

    /// The URL (`redis://host:port/db`).
    pub fn url(&self) -> String {
        self.addr.url()
    }

    /// The address.
    pub fn addr(&self) -> &RedisAddr {
        &self.addr
    }

    /// A raw RESP connection. Panics if the server cannot be reached.
    pub fn client(&self) -> RespClient {
        RespClient::connect(&self.addr, IO_TIMEOUT).expect("test Redis reachable")
    }

    /// A unique name (`test-...`) whose keys are deleted when the scope is dropped.
    pub fn scope(&self) -> KeyScope {
        KeyScope { id: unique_id("test"), addr: self.addr.clone() }
    }
}

/// A unique name for one test (use it as the swarm id or a key prefix). On drop every key
/// containing it is deleted (SCAN + DEL).
pub struct KeyScope {
    id: String,
    addr: RedisAddr,
}

impl KeyScope {
    /// The unique name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Keys containing the name, now.
    pub fn keys(&self) -> Vec<String> {
        let mut client = RespClient::connect(&self.addr, IO_TIMEOUT).expect("test Redis reachable");
        client.keys_matching(&format!("*{}*", self.id)).expect("SCAN works")
    }
}

impl Drop for KeyScope {
    fn drop(&mut self) {
        // Best effort: the server may be a private one that a test has just killed.
        if let Ok(mut c) = RespClient::connect(&self.addr, IO_TIMEOUT) {
            let _ = c.delete_matching(&format!("*{}*", self.id));
        }
    }
}

/// A `redis-server` of its own on a free port, in a temporary directory, with no
/// persistence: it can be killed and restarted on the same port, for outage tests.
pub struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts one; panics with a hint when `redis-server` cannot be started.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| {
            panic!("cannot start a private redis-server ({e}); install Redis (`apt-get install redis-server`)")
        })
    }

    fn try_start() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let mut server = Self { port, dir, child: None };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let binary = std::env::var_os("SWARM_TEST_REDIS_SERVER")
            .map_or_else(|| PathBuf::from("redis-server"), PathBuf::from);
        let port = self.port.to_string();
        let child = Command::new(&binary)
            .args(["--port", &port, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if RespClient::connect(&self.addr(), Duration::from_millis(200))
                .and_then(|mut c| c.ping())
                .unwrap_or(false)
            {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(format!("redis-server exited at start ({status})"));
            }
            if Instant::now() > deadline {
                self.kill();
                return Err("redis-server did not answer PING within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address.
    pub fn addr(&self) -> RedisAddr {
        RedisAddr {
            host: "127.0.0.1".into(),
            port: self.port,
            username: None,
            password: None,
            db: 0,
        }
    }

    /// The URL.
    pub fn url(&self) -> String {
        self.addr().url()
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (killing it first if running). Panics if it
    /// does not come up.
    pub fn restart(&mut self) {
        self.kill();
        // The port was just released; a new listener may need a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("restarting redis-server on port {}: {e}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_server_can_be_killed_and_restarted_on_its_port() {
        let mut server = PrivateRedis::start();
        let port = server.port();
        let mut c = RespClient::connect(&server.addr(), IO_TIMEOUT).unwrap();
        assert!(c.ping().unwrap());
        c.command(&[b"SET", b"k-test-1", b"v"]).unwrap();
        assert_eq!(c.keys_matching("*test-1*").unwrap(), ["k-test-1"]);
        assert_eq!(c.delete_matching("*test-1*").unwrap(), 1);
        assert_eq!(c.publish("nobody", b"x").unwrap(), 0);
        server.kill();
        assert!(!server.is_running());
        assert!(
            RespClient::connect(&server.addr(), Duration::from_millis(200))
                .and_then(|mut c| c.ping())
                .is_err()
        );
        server.restart();
        assert_eq!(server.port(), port);
        assert!(server.is_running());
        assert!(RespClient::connect(&server.addr(), IO_TIMEOUT).unwrap().ping().unwrap());
    }

    #[test]
    fn an_explicit_url_that_does_not_answer_is_an_error_naming_the_variable() {
        // Port 1 is privileged and never a Redis; nothing is started in its place.
        let Err(e) = TestRedis::find(Some("redis://127.0.0.1:1".into())) else {
            panic!("found a Redis on port 1")
        };
        assert!(e.contains(REDIS_URL_VAR) && e.contains("does not answer PING"), "{e}");
        let Err(e) = TestRedis::find(Some("http://127.0.0.1:6379".into())) else {
            panic!("accepted an http URL")
        };
        assert!(e.contains("is not a redis://host:port URL"), "{e}");
    }

    #[test]
    fn scopes_are_unique_and_clean_up_their_keys() {
        let server = PrivateRedis::start();
        let redis = TestRedis { addr: server.addr(), _owned: None };
        let (a, b) = (redis.scope(), redis.scope());
        assert_ne!(a.id(), b.id());
        assert!(a.id().starts_with("test-") && a.id().len() == 21, "{}", a.id());
        let mut c = redis.client();
        let key = format!("swarm:{{{}}}:x", a.id());
        c.command(&[b"SET", key.as_bytes(), b"1"]).unwrap();
        assert_eq!(a.keys(), std::slice::from_ref(&key));
        drop(a);
        assert!(c.keys_matching(&key).unwrap().is_empty());
    }
}
