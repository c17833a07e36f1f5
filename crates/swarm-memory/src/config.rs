//! Settings of a [`crate::SwarmMemory`]: a builder, filled from the seed's environment
//! variables and/or explicit calls (explicit settings win).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use swarm_acl::{AclLevel, SwarmId};
use swarm_codec::Keyring;
use swarm_store::Durability;

use crate::error::{Error, Result};
use crate::events::SystemEvent;

/// The database file used when none is configured.
pub const DEFAULT_DB_PATH: &str = "./swarm-memory.db";
/// The swarm used when none is configured.
pub const DEFAULT_SWARM_ID: &str = "default";
/// The node's name on the coordination bus when `AGENT_ID` is not set (the seed's).
pub const DEFAULT_NODE_ID: &str = "sqlite-system";

/// Where the encryption key comes from.
#[derive(Clone, Debug, Default)]
pub enum KeySource {
    /// The key file beside the database (`<db>.key`), created with mode 0600 when the
    /// database is new. In-memory databases get a random key that lives as long as they
    /// do. ([`Builder::from_env`] replaces this with the text of `SQLITE_ENCRYPTION_KEY`
    /// when that is set.)
    #[default]
    Auto,
    /// This keyring.
    Keyring(Arc<Keyring>),
    /// Key text: 64 hex digits or base64 of 32 bytes.
    Text(String),
    /// This key file (see docs/FORMAT.md section 3); never created implicitly.
    File(PathBuf),
    /// No key: every level is stored in plaintext. For tests and throwaway data.
    None,
}

/// Builds a [`crate::SwarmMemory`]. Start from [`Builder::new`] (defaults only) or
/// [`Builder::from_env`] (the seed's environment variables), then override.
#[derive(Clone, Debug)]
pub struct Builder {
    pub(crate) db_path: Option<PathBuf>,
    pub(crate) memory: bool,
    pub(crate) key: KeySource,
    pub(crate) compression_threshold: Option<usize>,
    pub(crate) swarm: Option<SwarmId>,
    pub(crate) node_id: Option<String>,
    pub(crate) performance_monitoring: bool,
    pub(crate) benchmark_output_dir: Option<PathBuf>,
    pub(crate) encrypt_up_to: Option<AclLevel>,
    pub(crate) durability: Durability,
    pub(crate) create: bool,
    pub(crate) sweep_interval: Option<Duration>,
    pub(crate) clock: Option<Arc<dyn swarm_store::Clock>>,
    pub(crate) listeners: Vec<crossbeam_channel::Sender<SystemEvent>>,
    pub(crate) backend: crate::coordination::Backend,
    pub(crate) swarm_secret: Option<String>,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// Defaults: `./swarm-memory.db`, swarm `default`, key file beside the database,
    /// private and team records encrypted, `synchronous=NORMAL`.
    pub fn new() -> Self {
        Self {
            db_path: None,
            memory: false,
            key: KeySource::Auto,
            compression_threshold: None,
            swarm: None,
            node_id: None,
            performance_monitoring: true,
            benchmark_output_dir: None,
            encrypt_up_to: Some(AclLevel::Team),
            durability: Durability::Normal,
            create: true,
            sweep_interval: Some(Duration::from_secs(5)),
            clock: None,
            listeners: Vec::new(),
            backend: crate::coordination::Backend::InProcess,
            swarm_secret: None,
        }
    }

    /// Reads the seed's environment variables: `SQLITE_DB_PATH` (`:memory:` for an
    /// in-memory database), `SQLITE_ENCRYPTION_KEY`, `SQLITE_COMPRESSION_THRESHOLD`,
    /// `SWARM_ID`, `AGENT_ID`, `ENABLE_PERFORMANCE_MONITORING`, `BENCHMARK_OUTPUT_DIR`;
    /// Redis from `REDIS_URL` or `REDIS_HOST`/`REDIS_PORT`/`REDIS_PASSWORD`/`REDIS_DB`;
    /// and ours: `SWARM_SECRET` (the swarm's coordination secret) and `SWARM_DURABILITY`
    /// (`normal` or `full`). Invalid values are errors, not silently ignored.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`Builder::from_env`], reading variables through `lookup` (for tests and for
    /// callers with their own configuration source).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut b = Self::new();
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        if let Some(p) = get("SQLITE_DB_PATH") {
            b = b.path(p);
        }
        if let Some(k) = get("SQLITE_ENCRYPTION_KEY") {
            b.key = KeySource::Text(k);
        }
        if let Some(t) = get("SQLITE_COMPRESSION_THRESHOLD") {
            let n = t.trim().parse::<usize>().map_err(|_| {
                Error::Config(format!(
                    "SQLITE_COMPRESSION_THRESHOLD must be a number of bytes, not {t:?}"
                ))
            })?;
            b.compression_threshold = Some(n);
        }
        if let Some(s) = get("SWARM_ID") {
            b.swarm =
                Some(SwarmId::new(s.trim()).map_err(|e| Error::Config(format!("SWARM_ID: {e}")))?);
        }
        if let Some(a) = get("AGENT_ID") {
            b.node_id = Some(a.trim().to_owned());
        }
        if let Some(v) = get("ENABLE_PERFORMANCE_MONITORING") {
            b.performance_monitoring = parse_bool("ENABLE_PERFORMANCE_MONITORING", &v)?;
        }
        if let Some(d) = get("BENCHMARK_OUTPUT_DIR") {
            b.benchmark_output_dir = Some(PathBuf::from(d));
        }
        // Redis only when asked for: REDIS_URL, or REDIS_HOST with its companions.
        if get("REDIS_URL").is_some() || get("REDIS_HOST").is_some() {
            let r = swarm_coord::RedisConfig::from_env_lookup(&lookup)
                .map_err(|e| Error::Config(e.to_string()))?;
            b.backend = crate::coordination::Backend::Redis(r);
        }
        if let Some(d) = get("SWARM_DURABILITY") {
            b.durability = match d.trim().to_ascii_lowercase().as_str() {
                "normal" => Durability::Normal,
                "full" => Durability::Full,
                other => {
                    return Err(Error::Config(format!(
                        "SWARM_DURABILITY must be normal or full, not {other:?}"
                    )));
                }
            };
        }
        if let Some(s) = get("SWARM_SECRET") {
            b.swarm_secret = Some(s.trim().to_owned());
        }
        Ok(b)
    }

    /// The database file; `:memory:` means an in-memory database.
    pub fn path(mut self, path: impl AsRef<Path>) -> Self {
        let p = path.as_ref();
        if p == Path::new(":memory:") {
            self.memory = true;
            self.db_path = None;
        } else {
            self.memory = false;
            self.db_path = Some(p.to_path_buf());
        }
        self
    }

    /// An in-memory database, gone when the system is dropped.
    pub fn in_memory(mut self) -> Self {
        self.memory = true;
        self.db_path = None;
        self
    }

    /// Where the encryption key comes from.
    pub fn key(mut self, key: KeySource) -> Self {
        self.key = key;
        self
    }

    /// LZ4 compression for values of at least this many bytes (default 1024).
    pub fn compression_threshold(mut self, bytes: usize) -> Self {
        self.compression_threshold = Some(bytes);
        self
    }

    /// The swarm of this system (default `default`): agents registered without a swarm
    /// join it, and adapters work in it.
    pub fn swarm(mut self, swarm: SwarmId) -> Self {
        self.swarm = Some(swarm);
        self
    }

    /// This node's name on the coordination bus (the seed's `AGENT_ID`). It is not an ACL
    /// identity: nothing acts with it.
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = Some(id.into());
        self
    }

    /// Whether metrics snapshots are persisted to the database every minute (default on;
    /// `swarm-memory metrics` and the in-process counters work either way).
    pub fn performance_monitoring(mut self, on: bool) -> Self {
        self.performance_monitoring = on;
        self
    }

    /// Where benchmark reports are written.
    pub fn benchmark_output_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.benchmark_output_dir = Some(dir.into());
        self
    }

    /// Records at this level and below are encrypted (default team); `None`: none are.
    pub fn encrypt_up_to(mut self, level: Option<AclLevel>) -> Self {
        self.encrypt_up_to = level;
        self
    }

    /// Commit durability (default normal).
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Refuse to create a missing database.
    pub fn must_exist(mut self) -> Self {
        self.create = false;
        self
    }

    /// How often expired records are swept (default 5 s; `None`: never in the background).
    pub fn sweep_interval(mut self, every: Option<Duration>) -> Self {
        self.sweep_interval = every;
        self
    }

    /// The clock (default the system clock), for tests.
    pub fn clock(mut self, clock: Arc<dyn swarm_store::Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Coordinate through Redis (default: the in-process bus, no Redis needed).
    pub fn redis(mut self, config: swarm_coord::RedisConfig) -> Self {
        self.backend = crate::coordination::Backend::Redis(config);
        self
    }

    /// Coordinate through the Redis at `url` (`redis://[user:password@]host:port/db`).
    pub fn redis_url(self, url: &str) -> Result<Self> {
        let config =
            swarm_coord::RedisConfig::from_url(url).map_err(|e| Error::Config(e.to_string()))?;
        Ok(self.redis(config))
    }

    /// Coordinate in this process only (the default).
    pub fn in_process_coordination(mut self) -> Self {
        self.backend = crate::coordination::Backend::InProcess;
        self
    }

    /// The secret coordination messages are signed with: 64 hex digits or base64 of 32
    /// bytes, the same in every process and host of the swarm (`SWARM_SECRET`). Without
    /// it, the secret is read from `<db>.swarm-secret` beside the database, created with
    /// mode 0600 the first time.
    pub fn swarm_secret(mut self, text: impl Into<String>) -> Self {
        self.swarm_secret = Some(text.into());
        self
    }

    /// Receives system events from the start, `initialized` included.
    pub fn listener(mut self, tx: crossbeam_channel::Sender<SystemEvent>) -> Self {
        self.listeners.push(tx);
        self
    }

    /// The database path this builder will open (`None` for in-memory).
    pub fn db_path(&self) -> Option<PathBuf> {
        if self.memory {
            None
        } else {
            Some(self.db_path.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DB_PATH)))
        }
    }

    /// Opens the system.
    pub fn open(self) -> Result<crate::SwarmMemory> {
        crate::SwarmMemory::open_with(self)
    }
}

fn parse_bool(name: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(Error::Config(format!("{name} must be true or false, not {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> =
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn reads_the_seed_variables() {
        let b = Builder::from_lookup(env(&[
            ("SQLITE_DB_PATH", "/tmp/x.db"),
            ("SQLITE_COMPRESSION_THRESHOLD", "2048"),
            ("SWARM_ID", "phase-1"),
            ("AGENT_ID", "sqlite-system"),
            ("ENABLE_PERFORMANCE_MONITORING", "false"),
            ("BENCHMARK_OUTPUT_DIR", "./reports"),
            ("SWARM_DURABILITY", "Full"),
        ]))
        .unwrap();
        assert_eq!(b.durability, Durability::Full);
        assert_eq!(b.db_path(), Some(PathBuf::from("/tmp/x.db")));
        assert_eq!(b.compression_threshold, Some(2048));
        assert_eq!(b.swarm.as_ref().map(|s| s.as_str()), Some("phase-1"));
        assert!(!b.performance_monitoring);
        // Explicit settings win over the environment.
        let b = b.path(":memory:").swarm(SwarmId::new("mine").unwrap());
        assert_eq!(b.db_path(), None);
        assert_eq!(b.swarm.as_ref().map(|s| s.as_str()), Some("mine"));
    }

    #[test]
    fn invalid_values_are_errors() {
        for (k, v) in [
            ("SQLITE_COMPRESSION_THRESHOLD", "lots"),
            ("SWARM_ID", "bad id!"),
            ("ENABLE_PERFORMANCE_MONITORING", "maybe"),
            ("SWARM_DURABILITY", "paranoid"),
        ] {
            let e = Builder::from_lookup(env(&[(k, v)])).unwrap_err();
            assert!(e.to_string().contains(k), "{k}: {e}");
        }
    }

    #[test]
    fn defaults() {
        let b = Builder::from_lookup(env(&[])).unwrap();
        assert_eq!(b.db_path(), Some(PathBuf::from(DEFAULT_DB_PATH)));
        assert!(b.performance_monitoring);
        assert_eq!(b.durability, Durability::Normal);
    }
}
