//! Configuration of a [`crate::Store`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use swarm_acl::AclLevel;
use swarm_codec::{CodecConfig, Keyring};

use crate::clock::{Clock, SystemClock};

/// Where the database lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A file; created if missing.
    File(PathBuf),
    /// A private in-memory database shared by this store's connections (SQLite's memdb
    /// VFS), gone when the store is dropped.
    Memory,
}

/// How hard a commit tries to survive failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: a commit survives a crash of the process, but the
    /// last transactions may be lost if the machine loses power.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is on stable storage before it returns; survives
    /// power loss, at the cost of an fsync per commit group.
    Full,
}

impl Durability {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        }
    }
}

/// Size limits checked on every write, each with a clear error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest key, in bytes (default 1024).
    pub max_key_len: usize,
    /// Longest namespace, in bytes (default 256).
    pub max_namespace_len: usize,
    /// Largest value, in bytes of plaintext (default 4 MiB).
    pub max_value_len: usize,
    /// Most items in one `mset` or `mget` (default 1000).
    pub max_batch: usize,
    /// Most tags on a record (default 32).
    pub max_tags: usize,
    /// Longest tag, in bytes (default 64).
    pub max_tag_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_key_len: 1024,
            max_namespace_len: 256,
            max_value_len: 4 * 1024 * 1024,
            max_batch: 1000,
            max_tags: 32,
            max_tag_len: 64,
        }
    }
}

/// The default memory-mapped I/O size: SQLite's 64-bit maximum (`SQLITE_MAX_MMAP_SIZE`,
/// 2 GiB less 64 KiB), so that reads of a database up to that size come straight from the
/// OS page cache instead of a `pread` and a copy per page (docs/DECISIONS.md).
pub const DEFAULT_MMAP_SIZE: u64 = 0x7fff_0000;

/// Where a running store reads its keyring again (a key file, read anew on each call).
///
/// The store asks when the database's active key is one its keyring does not make active
/// (another process rotated the key) or when it meets an envelope sealed under a key it
/// does not hold; at most once a second either way. It adopts the answer only if it holds
/// every key the store holds, unchanged, and agrees with the check values the database
/// records. It then seals with the key the database records as active if the answer holds
/// it and its id is above the one sealed with before (ids grow as keys are appended), else
/// with the key it sealed with before. Any other answer is logged and ignored: the store
/// keeps its keys. `load` runs while the store holds a lock of its own: it must not call
/// back into the store.
pub trait KeyringSource: Send + Sync + std::fmt::Debug {
    /// The keyring as it is now.
    fn load(&self) -> std::result::Result<Keyring, String>;
}

/// Everything a store needs to open. Built from [`StoreConfig::file`] or
/// [`StoreConfig::memory`] and refined with the `with_*` methods.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub(crate) location: Location,
    pub(crate) durability: Durability,
    pub(crate) busy_timeout: Duration,
    pub(crate) cache_size_kib: u32,
    pub(crate) mmap_size: u64,
    pub(crate) readers: u32,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) keyring: Option<Arc<Keyring>>,
    pub(crate) keyring_source: Option<Arc<dyn KeyringSource>>,
    pub(crate) codec: CodecConfig,
    pub(crate) encrypt_up_to: Option<AclLevel>,
    pub(crate) limits: Limits,
    pub(crate) acl_cache_ttl_ms: i64,
    pub(crate) audit_reads: bool,
    pub(crate) sweep_interval: Option<Duration>,
    pub(crate) sweep_batch: u32,
    pub(crate) max_group: usize,
    pub(crate) create: bool,
    pub(crate) checkpoint_bytes: u64,
    pub(crate) metrics_interval: Option<Duration>,
    pub(crate) metrics_retention: Duration,
    pub(crate) event_retention: Duration,
    pub(crate) conflict_escalation: Option<Duration>,
    pub(crate) search_scan_budget: usize,
}

impl StoreConfig {
    /// Rows of the key range one search call looks at, by default.
    pub const DEFAULT_SEARCH_SCAN_BUDGET: usize = 2_000;
    /// The smallest scan budget a store accepts.
    pub const MIN_SEARCH_SCAN_BUDGET: usize = 100;
    /// The largest scan budget a store accepts.
    pub const MAX_SEARCH_SCAN_BUDGET: usize = 20_000;

    /// A store on the file at `path` (created unless [`StoreConfig::must_exist`]).
    pub fn file(path: impl AsRef<Path>) -> Self {
        Self::new(Location::File(path.as_ref().to_path_buf()))
    }

    /// A store in memory, private to this process and gone when dropped.
    pub fn memory() -> Self {
        Self::new(Location::Memory)
    }

    fn new(location: Location) -> Self {
        Self {
            location,
            durability: Durability::Normal,
            busy_timeout: Duration::from_secs(5),
            cache_size_kib: 64 * 1024,
            mmap_size: DEFAULT_MMAP_SIZE,
            readers: 4,
            clock: Arc::new(SystemClock),
            keyring: None,
            keyring_source: None,
            codec: CodecConfig::default(),
            encrypt_up_to: Some(AclLevel::Team),
            limits: Limits::default(),
            acl_cache_ttl_ms: swarm_acl::AclCache::<String, ()>::DEFAULT_TTL_MS,
            audit_reads: false,
            sweep_interval: Some(Duration::from_secs(5)),
            sweep_batch: 250,
            max_group: 256,
            create: true,
            checkpoint_bytes: 4 * 1024 * 1024,
            metrics_interval: Some(Duration::from_secs(60)),
            metrics_retention: Duration::from_secs(7 * 24 * 3600),
            event_retention: Duration::from_secs(7 * 24 * 3600),
            conflict_escalation: Some(Duration::from_secs(3600)),
            search_scan_budget: Self::DEFAULT_SEARCH_SCAN_BUDGET,
        }
    }

    /// Commit durability (default [`Durability::Normal`]).
    pub fn with_durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// How long one attempt waits for another process's lock (default 5 s).
    pub fn with_busy_timeout(mut self, t: Duration) -> Self {
        self.busy_timeout = t;
        self
    }

    /// Page cache per connection, in KiB (default 64 MiB).
    pub fn with_cache_size_kib(mut self, kib: u32) -> Self {
        self.cache_size_kib = kib;
        self
    }

    /// Requested memory-mapped I/O size in bytes (default [`DEFAULT_MMAP_SIZE`], just under
    /// 2 GiB). SQLite clamps it to its compile-time maximum; the store reports the effective
    /// value.
    pub fn with_mmap_size(mut self, bytes: u64) -> Self {
        self.mmap_size = bytes;
        self
    }

    /// Number of pooled read connections (default 4, at least 1).
    pub fn with_readers(mut self, n: u32) -> Self {
        self.readers = n;
        self
    }

    /// The clock (default the system clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The keyring encrypted values are sealed and opened with.
    pub fn with_keyring(mut self, keyring: Arc<Keyring>) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// Where to read the keyring again when another process rotates the database's key
    /// (a key file): the store then opens records re-sealed under the new key and seals
    /// new ones with it, without a restart. Without a source, a store keeps the keyring it
    /// was opened with. See [`KeyringSource`].
    pub fn with_keyring_source(mut self, source: Arc<dyn KeyringSource>) -> Self {
        self.keyring_source = Some(source);
        self
    }

    /// Codec settings (cipher, compression threshold, decode bound).
    pub fn with_codec(mut self, codec: CodecConfig) -> Self {
        self.codec = codec;
        self
    }

    /// Records at this level and below are encrypted (default [`AclLevel::Team`]: private
    /// and team records); `None` stores every level in plaintext.
    pub fn with_encrypt_up_to(mut self, level: Option<AclLevel>) -> Self {
        self.encrypt_up_to = level;
        self
    }

    /// Size limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Time to live of cached principals (default five minutes, as in the seed). Grants,
    /// revokes and membership changes invalidate entries at once regardless.
    pub fn with_acl_cache_ttl(mut self, ttl: Duration) -> Self {
        self.acl_cache_ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// Also audit successful reads (default off: writes, deletes and denials are always
    /// audited).
    pub fn with_audit_reads(mut self, on: bool) -> Self {
        self.audit_reads = on;
        self
    }

    /// How often the background sweeper deletes expired records (default 5 s); `None`
    /// runs no sweeper (expired records are still never returned).
    pub fn with_sweep_interval(mut self, every: Option<Duration>) -> Self {
        self.sweep_interval = every;
        self
    }

    /// Most rows one sweep transaction deletes (default 250), so a sweep never holds the
    /// write lock for long: a write queued behind a batch of 1000 waited 6-19 ms on a
    /// 2-core machine, behind a batch of 250 a few.
    pub fn with_sweep_batch(mut self, n: u32) -> Self {
        self.sweep_batch = n;
        self
    }

    /// Most write batches grouped into one transaction (default 256).
    pub fn with_max_group(mut self, n: usize) -> Self {
        self.max_group = n;
        self
    }

    /// Checkpoint the WAL in the background once it grows past this many bytes (default
    /// 4 MiB). Checkpoints never run on the commit path.
    pub fn with_checkpoint_bytes(mut self, bytes: u64) -> Self {
        self.checkpoint_bytes = bytes;
        self
    }

    /// How often metrics are written to the `metrics` table (default every minute);
    /// `None` keeps them in memory only.
    pub fn with_metrics_interval(mut self, every: Option<Duration>) -> Self {
        self.metrics_interval = every;
        self
    }

    /// How long persisted metrics are kept (default 7 days).
    pub fn with_metrics_retention(mut self, keep: Duration) -> Self {
        self.metrics_retention = keep;
        self
    }

    /// How long acknowledged and dead events stay in the log (default 7 days). Expired
    /// events are deleted by the sweeper whatever this says (they are never delivered).
    pub fn with_event_retention(mut self, keep: Duration) -> Self {
        self.event_retention = keep;
        self
    }

    /// Open conflicts older than this are escalated to a consensus round by the sweeper
    /// (default one hour); `None` never escalates.
    pub fn with_conflict_escalation(mut self, after: Option<Duration>) -> Self {
        self.conflict_escalation = after;
        self
    }

    /// Rows of the key range one [`crate::Store::search`] call looks at (default
    /// [`StoreConfig::DEFAULT_SEARCH_SCAN_BUDGET`]), clamped to
    /// [`StoreConfig::MIN_SEARCH_SCAN_BUDGET`]..=[`StoreConfig::MAX_SEARCH_SCAN_BUDGET`].
    ///
    /// The window counts rows the caller cannot see, so where a page ends (and how many
    /// pages a search takes) roughly reveals how many rows a key range holds, to the
    /// nearest budget. That is why the budget is the operator's setting and not a query
    /// option, and why it has a floor: a small window would measure more finely.
    pub fn with_search_scan_budget(mut self, rows: usize) -> Self {
        self.search_scan_budget =
            rows.clamp(Self::MIN_SEARCH_SCAN_BUDGET, Self::MAX_SEARCH_SCAN_BUDGET);
        self
    }

    /// Refuse to create the database: opening a missing file is an error.
    pub fn must_exist(mut self) -> Self {
        self.create = false;
        self
    }

    /// Where the database lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The configured limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Records at this level and below are encrypted (`None`: none are).
    pub fn encrypts_up_to(&self) -> Option<AclLevel> {
        self.encrypt_up_to
    }

    /// Commit durability.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Codec settings (cipher, compression threshold, decode bound).
    pub fn codec(&self) -> &CodecConfig {
        &self.codec
    }
}
