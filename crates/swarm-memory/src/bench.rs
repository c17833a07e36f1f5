//! [`SwarmMemory::run_benchmarks`]: the seed's performance report, measured on this
//! system's configuration, each figure beside a raw SQLite baseline from the same run.
//!
//! The run never touches the system's own database (whose audit log is never trimmed): it
//! opens a scratch system in a temporary directory (beside the database by default, so it
//! measures the same file system) with the same durability, compression threshold and
//! encrypted levels, a freshly generated key, a swarm, a team and agents of its own, and
//! removes it afterwards. The raw baseline ([`swarm_store::Baseline`]) is a scratch file
//! of its own with the store's pragmas and one plain table.
//!
//! Units: latencies in microseconds (fields ending `_us`; the seed reported milliseconds),
//! wall times in milliseconds (`_ms`), throughput in operations per second (`opsPerSecond`,
//! the seed's name), sizes in bytes. `ratio` is our time per operation divided by the
//! baseline's: 1.0 means as fast as raw SQLite, 2.0 twice the time.

use std::fmt;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use hdrhistogram::Histogram;
use serde::Serialize;
use swarm_acl::{AclLevel, Action, AgentId, Identity, ResourceType, SwarmId};
use swarm_codec::{Cipher, Codec, CodecConfig, Key as CodecKey, KeyId, Keyring, Seal};
use swarm_registry::AgentSpec;
use swarm_store::{
    BackupMethod, Baseline, Durability, Key, KeyPattern, Limits, Namespace, PragmaReport,
    RecordKey, SetOptions, Store, Value,
};

use crate::config::KeySource;
use crate::error::{Error, Result};
use crate::events::SystemEvent;
use crate::system::SwarmMemory;

/// Most calls measured per operation.
pub const MAX_ITERATIONS: u64 = 1_000_000;
/// Most threads of the concurrent runs.
pub const MAX_CONCURRENCY: usize = 256;
/// Most namespaces of the namespace run.
pub const MAX_NAMESPACES: usize = 1_000;
/// The longest TTL the TTL run waits out.
pub const MAX_TTL: Duration = Duration::from_secs(10);
/// What the report's `format` field says; changes when a field changes meaning.
pub const REPORT_FORMAT: &str = "swarm-memory-bench/1";

/// Calls of one side before the other side's turn: ours and the baseline alternate in
/// blocks, so a change in the machine's load lands on both.
const BLOCK: u64 = 250;
/// Calls made before measuring a read-only operation (warm statement caches).
const WARMUP: u64 = 50;
/// The value the encryption run seals.
const SEAL_BYTES: usize = 1024;
/// The JSON the compression run compresses.
const COMPRESS_BYTES: usize = 10 * 1024;
/// Most keys per namespace in the namespace run (one listing page).
const MAX_KEYS_PER_NAMESPACE: usize = swarm_store::ListQuery::MAX_LIMIT;
/// Prefix of the scratch directory's name.
const SCRATCH_PREFIX: &str = ".swarm-memory-bench-";
/// The scratch system's swarm and team.
const SWARM: &str = "bench";
const TEAM: &str = "bench-team";
/// Associated data of the encryption run: the coordinates of a record, as the store binds.
const AAD: &[u8] = b"swarm=bench;ns=encryption;key=sealed;level=1;owner=bench-agent-000;team=";

/// Where the progress of a run is reported.
pub type ProgressFn = Arc<dyn Fn(BenchProgress) + Send + Sync>;

/// Progress of a run: `done` of `total` operations, in the named phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchProgress {
    /// The section being measured (`basic_operations`, ..., `done` at the end).
    pub phase: &'static str,
    /// Operations done.
    pub done: u64,
    /// Operations in all.
    pub total: u64,
}

/// What [`SwarmMemory::run_benchmarks`] measures: the seed's `testIterations`,
/// `concurrency`, `enableEncryption` and `enableCompression`, and a few more.
#[derive(Clone)]
pub struct BenchOptions {
    iterations: u64,
    concurrency: usize,
    value_bytes: usize,
    large_value_bytes: usize,
    namespaces: usize,
    ttl: Duration,
    encryption: bool,
    compression: bool,
    output_dir: Option<PathBuf>,
    scratch_dir: Option<PathBuf>,
    progress: Option<ProgressFn>,
}

impl fmt::Debug for BenchOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BenchOptions")
            .field("iterations", &self.iterations)
            .field("concurrency", &self.concurrency)
            .field("value_bytes", &self.value_bytes)
            .field("large_value_bytes", &self.large_value_bytes)
            .field("namespaces", &self.namespaces)
            .field("ttl", &self.ttl)
            .field("encryption", &self.encryption)
            .field("compression", &self.compression)
            .field("output_dir", &self.output_dir)
            .field("scratch_dir", &self.scratch_dir)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl BenchOptions {
    /// The seed's defaults: 5000 iterations, 20 threads, encryption and compression as
    /// the system has them; 256-byte values, 1 MiB large values, 10 namespaces, a 200 ms
    /// TTL; the report written only where the system's `BENCHMARK_OUTPUT_DIR` says.
    pub fn new() -> Self {
        Self {
            iterations: 5_000,
            concurrency: 20,
            value_bytes: 256,
            large_value_bytes: 1024 * 1024,
            namespaces: 10,
            ttl: Duration::from_millis(200),
            encryption: true,
            compression: true,
            output_dir: None,
            scratch_dir: None,
            progress: None,
        }
    }

    /// Calls measured per operation (1 to [`MAX_ITERATIONS`]; the seed's `testIterations`).
    /// Concurrent runs share this many calls between their threads; large values run one
    /// call per 100 (1 to 50), listings one per 50 (5 to 100).
    pub fn iterations(mut self, n: u64) -> Self {
        self.iterations = n;
        self
    }

    /// Threads of the concurrent runs (1 to [`MAX_CONCURRENCY`]; the seed's `concurrency`).
    pub fn concurrency(mut self, threads: usize) -> Self {
        self.concurrency = threads;
        self
    }

    /// Size of the values of the basic, concurrent, TTL and namespace runs (1 byte to the
    /// store's value limit; default 256).
    pub fn value_bytes(mut self, bytes: usize) -> Self {
        self.value_bytes = bytes;
        self
    }

    /// Size of the large values (1 byte to the store's value limit; default 1 MiB).
    pub fn large_value_bytes(mut self, bytes: usize) -> Self {
        self.large_value_bytes = bytes;
        self
    }

    /// Namespaces of the namespace run (1 to [`MAX_NAMESPACES`]; default 10).
    pub fn namespaces(mut self, n: usize) -> Self {
        self.namespaces = n;
        self
    }

    /// TTL of the TTL run's records (1 ms to [`MAX_TTL`]; default 200 ms): the run waits
    /// this long after its last write before reading them back.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Whether records are encrypted at the levels the system encrypts (default true; the
    /// seed's `enableEncryption`). The encryption section is measured either way.
    pub fn encryption(mut self, on: bool) -> Self {
        self.encryption = on;
        self
    }

    /// Whether values above the system's compression threshold are compressed (default
    /// true; the seed's `enableCompression`). The compression section is measured either
    /// way.
    pub fn compression(mut self, on: bool) -> Self {
        self.compression = on;
        self
    }

    /// Write the JSON report into this directory (created if missing), instead of the
    /// system's `BENCHMARK_OUTPUT_DIR`.
    pub fn output_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.output_dir = Some(dir.into());
        self
    }

    /// Create the scratch directory in `dir` (default: beside the system's database, so
    /// the run measures the same file system; the system temporary directory for an
    /// in-memory system).
    pub fn scratch_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.scratch_dir = Some(dir.into());
        self
    }

    /// Called as the run progresses (from the measuring threads too, between measured
    /// calls), for a progress bar.
    pub fn on_progress(mut self, f: impl Fn(BenchProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Calls measured per operation.
    pub fn get_iterations(&self) -> u64 {
        self.iterations
    }

    /// Threads of the concurrent runs.
    pub fn get_concurrency(&self) -> usize {
        self.concurrency
    }

    /// The directory the report goes to, if set here.
    pub fn get_output_dir(&self) -> Option<&Path> {
        self.output_dir.as_deref()
    }

    /// Refuses options outside their bounds, naming the option.
    pub fn validate(&self, limits: &Limits) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if !(1..=MAX_ITERATIONS).contains(&self.iterations) {
            return bad(format!(
                "benchmark iterations must be 1 to {MAX_ITERATIONS}, not {}",
                self.iterations
            ));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return bad(format!(
                "benchmark concurrency must be 1 to {MAX_CONCURRENCY} threads, not {}",
                self.concurrency
            ));
        }
        for (name, v) in [("value", self.value_bytes), ("large value", self.large_value_bytes)] {
            if !(1..=limits.max_value_len).contains(&v) {
                return bad(format!(
                    "benchmark {name} size must be 1 to {} bytes (the store's value limit), not {v}",
                    limits.max_value_len
                ));
            }
        }
        if !(1..=MAX_NAMESPACES).contains(&self.namespaces) {
            return bad(format!(
                "benchmark namespaces must be 1 to {MAX_NAMESPACES}, not {}",
                self.namespaces
            ));
        }
        if self.ttl < Duration::from_millis(1) || self.ttl > MAX_TTL {
            return bad(format!(
                "benchmark TTL must be 1 ms to {} s, not {} ms",
                MAX_TTL.as_secs(),
                self.ttl.as_millis()
            ));
        }
        Ok(())
    }

    /// How many calls each run makes, derived from the options.
    fn plan(&self) -> Plan {
        let n = self.iterations;
        let keys_per_namespace = usize::try_from(n)
            .unwrap_or(usize::MAX)
            .div_ceil(self.namespaces)
            .clamp(1, MAX_KEYS_PER_NAMESPACE);
        Plan {
            n,
            threads: self.concurrency.min(usize::try_from(n).unwrap_or(usize::MAX)).max(1),
            large: (n / 100).clamp(1, 50),
            listings: (n / 50).clamp(5, 100),
            keys_per_namespace,
        }
    }
}

/// Calls per run.
#[derive(Clone, Copy, Debug)]
struct Plan {
    n: u64,
    threads: usize,
    large: u64,
    listings: u64,
    keys_per_namespace: usize,
}

impl Plan {
    /// Every operation the run reports progress for, ours and the baseline's.
    fn total(&self, namespaces: usize) -> u64 {
        let n = self.n;
        let setup = 1 + self.threads as u64;
        let basic = 4 * 2 * n;
        let concurrent = 2 * 2 * n;
        let acl = 2 * n;
        let codec = 2 * 2 * n + 2 * 2 * n;
        let large = 2 * 2 * self.large;
        let ttl = 2 * 2 * n + 1;
        let ns = 2 * (namespaces * self.keys_per_namespace) as u64 + 2 * self.listings;
        let backup = 2;
        setup + basic + concurrent + acl + codec + large + ttl + ns + backup
    }
}

/// What the `units` field of a report says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Units {
    /// Fields ending `_us`.
    pub latency: &'static str,
    /// Fields ending `_ms`.
    pub time: &'static str,
    /// `opsPerSecond`.
    pub throughput: &'static str,
    /// Fields ending `_bytes`.
    pub size: &'static str,
    /// `ratio`.
    pub ratio: &'static str,
}

const UNITS: Units = Units {
    latency: "microseconds (the seed reported milliseconds)",
    time: "milliseconds",
    throughput: "operations per second",
    size: "bytes",
    ratio: "our time per operation / the baseline's (1.0: as fast as raw SQLite; higher is slower)",
};

/// Latency and throughput of one operation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Timing {
    /// Calls measured.
    pub operations: u64,
    /// Threads that made them.
    pub threads: usize,
    /// Mean latency of a call.
    pub avg_us: f64,
    /// Median latency.
    pub p50_us: f64,
    /// 95th percentile latency.
    pub p95_us: f64,
    /// 99th percentile latency.
    pub p99_us: f64,
    /// Slowest call.
    pub max_us: f64,
    /// Wall time of the run: the sum of the calls' latencies on one thread, first start to
    /// last end on several.
    pub wall_ms: f64,
    /// `operations` per second of wall time.
    #[serde(rename = "opsPerSecond")]
    pub ops_per_second: f64,
}

/// Our figure (flattened, so `set.avg_us` is ours), beside the raw baseline measured in
/// the same run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Compared {
    /// Ours.
    #[serde(flatten)]
    pub ours: Timing,
    /// The raw baseline, when there is one.
    pub baseline: Option<Timing>,
    /// What the baseline does.
    pub baseline_op: Option<String>,
    /// Our wall time per operation over the baseline's (for one thread: our mean latency
    /// over the baseline's).
    pub ratio: Option<f64>,
}

impl Compared {
    fn new(ours: Timing, baseline: Timing, what: &str) -> Self {
        let ratio = ratio(&ours, &baseline);
        Self { ours, baseline: Some(baseline), baseline_op: Some(what.to_owned()), ratio }
    }

    fn alone(ours: Timing) -> Self {
        Self { ours, baseline: None, baseline_op: None, ratio: None }
    }
}

fn ratio(ours: &Timing, baseline: &Timing) -> Option<f64> {
    if ours.ops_per_second > 0.0 && baseline.ops_per_second > 0.0 {
        Some(baseline.ops_per_second / ours.ops_per_second)
    } else {
        None
    }
}

/// The seed's `basic_operations`: single-thread point operations as one agent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BasicOperations {
    /// SET of a new record.
    pub set: Compared,
    /// GET of an existing record, in random order.
    pub get: Compared,
    /// HAS of an existing record.
    pub has: Compared,
    /// DELETE of an existing record.
    pub delete: Compared,
}

/// The seed's `concurrent_operations`: `threads` agents at once, one thread each.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConcurrentOperations {
    /// Threads (the concurrency, or fewer when there are fewer iterations).
    pub threads: usize,
    /// SETs of new records, each agent its own keys; the baseline's threads share its
    /// one write connection (SQLite has one writer).
    pub concurrent_sets: Compared,
    /// GETs of the records just written; the baseline's threads have a read connection
    /// each.
    pub concurrent_gets: Compared,
}

/// The seed's `acl_performance`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AclPerformance {
    /// `has_permission` (the seed's `hasPermission`) with the principal cached, cycling
    /// through two allowed and two refused checks.
    pub acl_checks: Compared,
    /// Principal cache hits over lookups, for the whole scratch run up to here.
    pub cache_hit_rate: f64,
    /// Principal cache hits.
    pub cache_hits: u64,
    /// Principal cache misses.
    pub cache_misses: u64,
}

/// Sealing and opening a 1 KiB value with swarm-codec.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Encryption {
    /// The cipher (the system's).
    pub cipher: String,
    /// Plaintext size.
    pub value_bytes: usize,
    /// Envelope size (header, nonce and tag included).
    pub envelope_bytes: usize,
    /// `Codec::encode` with encryption, compression off.
    pub seal: Compared,
    /// `Codec::decode` of that envelope.
    pub open: Compared,
}

/// LZ4 compression of 10 KiB of JSON with swarm-codec.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Compression {
    /// Input size.
    pub input_bytes: usize,
    /// Our (plain) envelope's size.
    pub compressed_bytes: usize,
    /// `input_bytes / compressed_bytes`.
    pub compression_ratio: f64,
    /// lz4_flex's own output size (with its 4-byte length prefix).
    pub baseline_compressed_bytes: usize,
    /// `input_bytes / baseline_compressed_bytes`.
    pub baseline_compression_ratio: f64,
    /// `Codec::encode` (plain, compressed).
    pub compress: Compared,
    /// `Codec::decode` of that envelope.
    pub decompress: Compared,
}

/// Large values.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LargeValues {
    /// Value size.
    pub value_bytes: usize,
    /// Whether the store kept them encrypted.
    pub encrypted: bool,
    /// SET of a new large record.
    pub set: Compared,
    /// GET of one.
    pub get: Compared,
}

/// Records with a TTL.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TtlFigures {
    /// The records' TTL.
    pub ttl_ms: u64,
    /// Records written with it.
    pub records: u64,
    /// SET with a TTL (`setex`).
    pub set_with_ttl: Compared,
    /// GET once the TTL has passed (before any sweep): must find nothing.
    pub get_after_expiry: Compared,
    /// Expired records a GET still returned (0 unless TTL enforcement is broken).
    pub expired_returned: u64,
    /// Expired records the sweep then deleted.
    pub swept: u64,
    /// How long the sweep took.
    pub sweep_ms: f64,
}

/// Keys across namespaces.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Namespaces {
    /// Namespaces written.
    pub namespaces: usize,
    /// Keys in each.
    pub keys_per_namespace: usize,
    /// Writing them all (`mset` per namespace).
    pub load_ms: f64,
    /// The baseline writing as many rows (one transaction per namespace).
    pub baseline_load_ms: f64,
    /// Listing every key of one namespace (`keys` with `*`).
    pub list_one: Compared,
    /// Keys each listing returned.
    pub listed: usize,
}

/// An online backup of the scratch database.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackupFigures {
    /// Size of the copy.
    pub bytes: u64,
    /// Pages copied.
    pub pages: u64,
    /// How long `Store::backup` took (integrity check of the copy and audit row included).
    pub time_ms: f64,
    /// The copy's integrity check.
    pub integrity: String,
    /// Size of the raw copy.
    pub baseline_bytes: u64,
    /// How long the raw copy took.
    pub baseline_time_ms: f64,
    /// What the baseline does.
    pub baseline_op: String,
    /// `time_ms / baseline_time_ms`.
    pub ratio: f64,
}

/// Every section, under the seed's names.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchResults {
    /// `basic_operations.{set,get,has,delete}`.
    pub basic_operations: BasicOperations,
    /// `concurrent_operations.{concurrent_sets,concurrent_gets}`.
    pub concurrent_operations: ConcurrentOperations,
    /// `acl_performance.{acl_checks,cache_hit_rate}`.
    pub acl_performance: AclPerformance,
    /// `encryption.{seal,open}`.
    pub encryption: Encryption,
    /// `compression.{compress,decompress,compression_ratio}`.
    pub compression: Compression,
    /// `large_values.{set,get}`.
    pub large_values: LargeValues,
    /// `ttl`.
    pub ttl: TtlFigures,
    /// `namespaces`.
    pub namespaces: Namespaces,
    /// `backup`.
    pub backup: BackupFigures,
}

/// The settings a run used.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchSettings {
    /// Calls per operation.
    pub iterations: u64,
    /// Concurrency asked for.
    pub concurrency: usize,
    /// Threads the concurrent runs used.
    pub threads: usize,
    /// Value size of the basic, concurrent, TTL and namespace runs.
    pub value_bytes: usize,
    /// Large value size.
    pub large_value_bytes: usize,
    /// Calls per large-value operation.
    pub large_iterations: u64,
    /// Namespaces of the namespace run.
    pub namespaces: usize,
    /// Keys per namespace.
    pub keys_per_namespace: usize,
    /// Listings measured.
    pub listings: u64,
    /// TTL of the TTL run.
    pub ttl_ms: u64,
    /// The encryption option.
    pub encryption: bool,
    /// The compression option.
    pub compression: bool,
    /// The level the measured records are written at (the default for new records).
    pub record_level: String,
    /// Whether the store kept those records encrypted.
    pub records_encrypted: bool,
    /// Records at this level and below are encrypted (`None`: none are).
    pub encrypted_levels: Option<String>,
    /// Values of at least this many bytes are compressed (`None`: compression off).
    pub compression_threshold: Option<usize>,
    /// The cipher.
    pub cipher: String,
    /// `normal` or `full` (`synchronous`).
    pub durability: String,
    /// The database whose settings these are (`:memory:` for an in-memory system).
    pub database: String,
    /// Where the scratch directory was: `beside the database`, `given directory` or
    /// `system temporary directory`.
    pub scratch: String,
    /// The directory it was created in (and removed from afterwards).
    pub scratch_parent: PathBuf,
    /// The scratch store's pragmas.
    pub pragmas: PragmaReport,
    /// Whether the baseline's pragmas are the same.
    pub baseline_pragmas_match: bool,
    /// CPUs available to this process.
    pub cpus: usize,
    /// Operating system.
    pub os: &'static str,
    /// CPU architecture.
    pub arch: &'static str,
}

/// What [`SwarmMemory::run_benchmarks`] measured. Serializes to the JSON report; its
/// [`Display`](fmt::Display) (or [`BenchReport::render_table`]) is the readable table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchReport {
    /// [`REPORT_FORMAT`].
    pub format: &'static str,
    /// The units of the fields.
    pub units: Units,
    /// When the run started (Unix milliseconds).
    pub started_at_ms: i64,
    /// How long it took.
    pub duration_ms: f64,
    /// The settings used.
    pub settings: BenchSettings,
    /// The figures, under the seed's names.
    pub results: BenchResults,
    /// Things worth knowing about this run's figures.
    pub notes: Vec<String>,
    /// Where the JSON report was written, if anywhere.
    pub report_path: Option<PathBuf>,
}

impl SwarmMemory {
    /// The seed's `runBenchmarks`: measures the memory API, concurrency, ACL checks,
    /// encryption, compression, large values, TTL, namespaces and backup on a scratch
    /// system with this system's settings, each beside raw SQLite measured in the same run.
    ///
    /// This system's database is not touched (nothing is read from or written to it). The
    /// report is written as JSON into [`BenchOptions::output_dir`], else the system's
    /// `BENCHMARK_OUTPUT_DIR`, if either is set; [`SystemEvent::BenchmarksCompleted`] is
    /// emitted on this system's event bus.
    ///
    /// # Errors
    /// [`Error::Config`] for options out of bounds (before anything runs); [`Error::Bench`]
    /// when the scratch directory or the report cannot be written, or a measured operation
    /// answers wrongly; store errors of the scratch system.
    pub fn run_benchmarks(&self, options: &BenchOptions) -> Result<BenchReport> {
        self.check_open()?;
        options.validate(self.store().config().limits())?;
        match self.bench(options) {
            Ok(report) => {
                self.emit(SystemEvent::BenchmarksCompleted {
                    report: report.report_path.as_ref().map(|p| p.display().to_string()),
                });
                Ok(report)
            }
            Err(e) => {
                self.emit(SystemEvent::Error {
                    context: "run_benchmarks".into(),
                    message: e.to_string(),
                });
                Err(e)
            }
        }
    }

    fn bench(&self, options: &BenchOptions) -> Result<BenchReport> {
        let started = Instant::now();
        let started_at_ms = unix_millis();
        let plan = options.plan();
        let tracker = Tracker::new(options.progress.clone(), plan.total(options.namespaces));
        let mut notes = Vec::new();
        let out = options.output_dir.as_deref().or(self.benchmark_output_dir());
        if let Some(out) = out {
            // Before the run, so an unusable directory does not cost a run's figures.
            std::fs::create_dir_all(out).map_err(|e| {
                Error::Bench(format!("cannot create the report directory {}: {e}", out.display()))
            })?;
        }
        let (dir, scratch) = self.scratch_dir(options, &mut notes)?;

        // The scratch system: this system's settings, a key of its own.
        let config = self.store().config();
        let durability = config.durability();
        let threshold = options.compression.then(|| config.codec().compression_threshold());
        let levels = if options.encryption { self.encrypted_levels() } else { None };
        if options.encryption && levels.is_none() {
            notes.push(
                "this system encrypts no level (it has no key): the scratch records are plain"
                    .into(),
            );
        }
        let key = match levels {
            Some(_) => {
                let key = CodecKey::generate().map_err(codec_err)?;
                KeySource::Keyring(Arc::new(Keyring::new(KeyId::new(1), key)))
            }
            None => KeySource::None,
        };
        let db = dir.path().join("bench.db");
        let system = crate::Builder::new()
            .path(&db)
            .key(key)
            .compression_threshold(threshold.unwrap_or(usize::MAX))
            .encrypt_up_to(levels)
            .durability(durability)
            // The TTL run sweeps by hand, so the sweep it reports is all its own.
            .sweep_interval(None)
            // No metrics snapshots written into the scratch database mid-run.
            .performance_monitoring(false)
            .swarm(SwarmId::new(SWARM)?)
            .in_process_coordination()
            .open()?;
        let outcome = Scratch::new(&system, &db, dir.path(), plan, options, &tracker)
            .and_then(|s| s.run(&mut notes));
        let closed = system.graceful_shutdown();
        drop(system);
        let outcome = outcome?;
        closed?;
        if let Err(e) = dir.close() {
            notes.push(format!("the scratch directory could not be removed completely: {e}"));
        }
        tracker.finish();

        let mut report = BenchReport {
            format: REPORT_FORMAT,
            units: UNITS,
            started_at_ms,
            duration_ms: millis(started.elapsed()),
            settings: BenchSettings {
                iterations: plan.n,
                concurrency: options.concurrency,
                threads: plan.threads,
                value_bytes: options.value_bytes,
                large_value_bytes: options.large_value_bytes,
                large_iterations: plan.large,
                namespaces: options.namespaces,
                keys_per_namespace: plan.keys_per_namespace,
                listings: plan.listings,
                ttl_ms: u64::try_from(options.ttl.as_millis()).unwrap_or(u64::MAX),
                encryption: options.encryption,
                compression: options.compression,
                record_level: AclLevel::Private.name().to_owned(),
                records_encrypted: outcome.records_encrypted,
                encrypted_levels: levels.map(|l| l.name().to_owned()),
                compression_threshold: threshold,
                cipher: outcome.cipher,
                durability: match durability {
                    Durability::Normal => "normal",
                    Durability::Full => "full",
                }
                .to_owned(),
                database: self
                    .database()
                    .map_or_else(|| ":memory:".to_owned(), |p| p.display().to_string()),
                scratch: scratch.0.to_owned(),
                scratch_parent: scratch.1,
                pragmas: outcome.pragmas,
                baseline_pragmas_match: outcome.baseline_pragmas_match,
                cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
                os: std::env::consts::OS,
                arch: std::env::consts::ARCH,
            },
            results: outcome.results,
            notes,
            report_path: None,
        };
        if let Some(out) = out {
            report.report_path = Some(write_report(&mut report, out)?);
        }
        Ok(report)
    }

    /// A new scratch directory, and where it is: beside the database unless given.
    fn scratch_dir(
        &self,
        options: &BenchOptions,
        notes: &mut Vec<String>,
    ) -> Result<(tempfile::TempDir, (&'static str, PathBuf))> {
        let create = |parent: &Path| {
            tempfile::Builder::new().prefix(SCRATCH_PREFIX).tempdir_in(parent).map_err(|e| {
                Error::Bench(format!(
                    "cannot create a scratch directory in {}: {e}",
                    parent.display()
                ))
            })
        };
        if let Some(parent) = &options.scratch_dir {
            return Ok((create(parent)?, ("given directory", parent.clone())));
        }
        let temp = std::env::temp_dir();
        let Some(db) = self.database() else {
            return Ok((create(&temp)?, ("system temporary directory", temp)));
        };
        let parent = match db.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        match create(&parent) {
            Ok(dir) => Ok((dir, ("beside the database", parent))),
            Err(e) => {
                notes.push(format!(
                    "{e}; the scratch system ran in the system temporary directory, whose file system may differ from the database's"
                ));
                Ok((create(&temp)?, ("system temporary directory", temp)))
            }
        }
    }
}

/// The scratch system, its baseline and its agents, for the length of one run.
struct Scratch<'a> {
    system: &'a SwarmMemory,
    store: &'a Store,
    db: &'a Path,
    dir: &'a Path,
    baseline: Baseline,
    swarm: SwarmId,
    agents: Vec<AgentId>,
    plan: Plan,
    options: &'a BenchOptions,
    tracker: &'a Tracker,
}

/// What a scratch run found, beside the figures.
struct Outcome {
    results: BenchResults,
    pragmas: PragmaReport,
    baseline_pragmas_match: bool,
    records_encrypted: bool,
    cipher: String,
}

impl<'a> Scratch<'a> {
    fn new(
        system: &'a SwarmMemory,
        db: &'a Path,
        dir: &'a Path,
        plan: Plan,
        options: &'a BenchOptions,
        tracker: &'a Tracker,
    ) -> Result<Self> {
        tracker.phase("setup");
        let store = system.store();
        let swarm = system.swarm().clone();
        system.registry().create_team(&Identity::System, Some(TEAM), "bench team", None, None)?;
        tracker.add("setup", 1);
        let mut agents = Vec::with_capacity(plan.threads);
        for t in 0..plan.threads {
            let spec = AgentSpec::new(format!("bench agent {t}"), "bench")?
                .id(&format!("bench-agent-{t:03}"))?
                .team(TEAM)?;
            agents.push(system.register_agent(spec)?.agent.id);
            tracker.add("setup", 1);
        }
        let baseline = Baseline::open(&dir.join("baseline.db"), store.config())?;
        Ok(Self { system, store, db, dir, baseline, swarm, agents, plan, options, tracker })
    }

    fn run(self, notes: &mut Vec<String>) -> Result<Outcome> {
        let value = Value::Text(memory_json(self.options.value_bytes));
        let (basic_operations, encrypted) = self.basic(&value)?;
        let concurrent_operations = self.concurrent(&value)?;
        let acl_performance = self.acl()?;
        let encryption = self.encryption(notes)?;
        let compression = self.compression()?;
        let large_values = self.large()?;
        let ttl = self.ttl(&value)?;
        if ttl.expired_returned > 0 {
            notes.push(format!(
                "{} of {} records were returned after their TTL had passed: TTL enforcement is broken",
                ttl.expired_returned, ttl.records
            ));
        }
        let namespaces = self.namespaces(&value)?;
        let backup = self.backup()?;
        let pragmas = self.store.pragmas().clone();
        let matches = self.baseline.pragmas() == &pragmas;
        if !matches {
            notes.push("the baseline's pragmas differ from the store's (see settings.pragmas): its figures are not a like-for-like floor".into());
        }
        let results = BenchResults {
            basic_operations,
            concurrent_operations,
            acl_performance,
            encryption,
            compression,
            large_values,
            ttl,
            namespaces,
            backup,
        };
        Ok(Outcome {
            results,
            pragmas,
            baseline_pragmas_match: matches,
            records_encrypted: encrypted,
            cipher: self.store.config().codec().cipher().to_string(),
        })
    }

    fn who(&self) -> Identity {
        Identity::Agent(self.agents[0].clone())
    }

    fn key(&self, namespace: &str, name: String) -> Result<RecordKey> {
        Ok(RecordKey::new(self.swarm.clone(), Namespace::new(namespace)?, Key::new(name)?))
    }

    /// Runs `ours` and `base` for calls `0..n`, alternating blocks of [`BLOCK`] calls, each
    /// closure timing its own call with the timer it is given (so preparing the call stays
    /// outside the measurement), after `warmup` unmeasured calls of each.
    fn paired(
        &self,
        phase: &'static str,
        n: u64,
        warmup: u64,
        mut ours: impl FnMut(u64, &mut Timer) -> Result<()>,
        mut base: impl FnMut(u64, &mut Timer) -> Result<()>,
    ) -> Result<(Timing, Timing)> {
        self.tracker.phase(phase);
        let mut scrap = Timer::new()?;
        for i in 0..warmup.min(n) {
            ours(i, &mut scrap)?;
            base(i, &mut scrap)?;
        }
        let (mut a, mut b) = (Timer::new()?, Timer::new()?);
        let mut i = 0;
        while i < n {
            let end = (i + BLOCK).min(n);
            for j in i..end {
                ours(j, &mut a)?;
                self.tracker.add(phase, 1);
            }
            for j in i..end {
                base(j, &mut b)?;
                self.tracker.add(phase, 1);
            }
            i = end;
        }
        Ok((a.single(), b.single()))
    }

    fn basic(&self, value: &Value) -> Result<(BasicOperations, bool)> {
        let (n, who, opts) = (self.plan.n, self.who(), SetOptions::new());
        let bytes = value_bytes(value);
        let name = |i: u64| format!("b-{i:08}");
        let raw = |i: u64| format!("basic/b-{i:08}");
        let (ours, base) = self.paired(
            "basic_operations",
            n,
            0,
            |i, t| {
                let (k, v) = (self.key("basic", name(i))?, value.clone());
                t.time(|| self.store.set(&who, &k, v, &opts))?;
                Ok(())
            },
            |i, t| {
                let k = raw(i);
                t.time(|| self.baseline.put(&k, &bytes))?;
                Ok(())
            },
        )?;
        let set =
            Compared::new(ours, base, "INSERT ... ON CONFLICT DO UPDATE of one row, autocommit");
        self.baseline.checkpoint()?;
        let first = self.store.get(&who, &self.key("basic", name(0))?)?;
        let encrypted = first.as_ref().is_some_and(|r| r.meta.encrypted);
        let (mut r1, mut r2) = (Rng::new(1), Rng::new(1));
        let (ours, base) = self.paired(
            "basic_operations",
            n,
            WARMUP,
            |_, t| {
                let k = self.key("basic", name(r1.below(n)))?;
                let got = t.time(|| self.store.get(&who, &k))?;
                present(got.is_some(), "GET", &k)
            },
            |_, t| {
                let k = raw(r2.below(n));
                let got = t.time(|| self.baseline.get(&k))?;
                present(got.is_some(), "raw GET", &k)
            },
        )?;
        let get = Compared::new(ours, base, "SELECT value of one row by primary key");
        let (mut r1, mut r2) = (Rng::new(2), Rng::new(2));
        let (ours, base) = self.paired(
            "basic_operations",
            n,
            WARMUP,
            |_, t| {
                let k = self.key("basic", name(r1.below(n)))?;
                let got = t.time(|| self.store.has(&who, &k))?;
                present(got, "HAS", &k)
            },
            |_, t| {
                let k = raw(r2.below(n));
                let got = t.time(|| self.baseline.has(&k))?;
                present(got, "raw HAS", &k)
            },
        )?;
        let has = Compared::new(ours, base, "SELECT 1 of one row by primary key");
        let (ours, base) = self.paired(
            "basic_operations",
            n,
            0,
            |i, t| {
                let k = self.key("basic", name(i))?;
                let gone = t.time(|| self.store.delete(&who, &k, None))?;
                present(gone, "DELETE", &k)
            },
            |i, t| {
                let k = raw(i);
                let gone = t.time(|| self.baseline.delete(&k))?;
                present(gone, "raw DELETE", &k)
            },
        )?;
        let delete = Compared::new(ours, base, "DELETE of one row by primary key, autocommit");
        self.baseline.checkpoint()?;
        Ok((BasicOperations { set, get, has, delete }, encrypted))
    }

    /// Operations of thread `t` when `n` are shared between `threads`.
    fn share(n: u64, threads: usize, t: usize) -> u64 {
        let threads = threads as u64;
        n / threads + u64::from((t as u64) < n % threads)
    }

    fn concurrent(&self, value: &Value) -> Result<ConcurrentOperations> {
        let (n, threads, opts) = (self.plan.n, self.plan.threads, SetOptions::new());
        let bytes = value_bytes(value);
        let name = |t: usize, i: u64| format!("c-{t:03}-{i:08}");
        let raw = |t: usize, i: u64| format!("concurrent/c-{t:03}-{i:08}");
        let phase = "concurrent_operations";
        self.tracker.phase(phase);
        let ours = self.threads(
            phase,
            |_| Ok(()),
            |t, i, _, timer| {
                let who = Identity::Agent(self.agents[t].clone());
                let (k, v) = (self.key("concurrent", name(t, i))?, value.clone());
                timer.time(|| self.store.set(&who, &k, v, &opts))?;
                Ok(())
            },
        )?;
        let base = self.threads(
            phase,
            |_| Ok(()),
            |t, i, _, timer| {
                let k = raw(t, i);
                timer.time(|| self.baseline.put(&k, &bytes))?;
                Ok(())
            },
        )?;
        let concurrent_sets = Compared::new(
            ours,
            base,
            "the raw upsert from every thread through the one write connection, autocommit",
        );
        self.baseline.checkpoint()?;
        let ours = self.threads(
            phase,
            |t| Ok(Rng::new(100 + t as u64)),
            |t, _, rng, timer| {
                let who = Identity::Agent(self.agents[t].clone());
                let i = rng.below(Self::share(n, threads, t));
                let k = self.key("concurrent", name(t, i))?;
                let got = timer.time(|| self.store.get(&who, &k))?;
                present(got.is_some(), "concurrent GET", &k)
            },
        )?;
        let base = self.threads(
            phase,
            |t| Ok((Rng::new(100 + t as u64), self.baseline.reader()?)),
            |t, _, (rng, reader), timer| {
                let k = raw(t, rng.below(Self::share(n, threads, t)));
                let got = timer.time(|| reader.get(&k))?;
                present(got.is_some(), "concurrent raw GET", &k)
            },
        )?;
        let concurrent_gets =
            Compared::new(ours, base, "the raw point read, one read-only connection per thread");
        Ok(ConcurrentOperations { threads, concurrent_sets, concurrent_gets })
    }

    /// Runs `op` on every thread at once, thread `t` making its share of the iterations
    /// with the state `init(t)` made on that thread, and reports their latencies together
    /// and the wall time from the first start to the last end. Any failed call fails the
    /// run: counting errors as work would flatter us.
    fn threads<S>(
        &self,
        phase: &'static str,
        init: impl Fn(usize) -> Result<S> + Sync,
        op: impl Fn(usize, u64, &mut S, &mut Timer) -> Result<()> + Sync,
    ) -> Result<Timing> {
        let threads = self.plan.threads;
        let barrier = Barrier::new(threads);
        let results: Vec<Result<(Timer, Instant, Instant)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (barrier, init, op) = (&barrier, &init, &op);
                    let tracker = self.tracker;
                    let calls = Self::share(self.plan.n, threads, t);
                    scope.spawn(move || -> Result<(Timer, Instant, Instant)> {
                        let state = init(t).and_then(|s| Ok((s, Timer::new()?)));
                        // Every thread waits, even one whose set-up failed, so none hangs.
                        barrier.wait();
                        let (mut state, mut timer) = state?;
                        let start = Instant::now();
                        for i in 0..calls {
                            op(t, i, &mut state, &mut timer)?;
                            tracker.add(phase, 1);
                        }
                        Ok((timer, start, Instant::now()))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Bench(format!("a {phase} thread panicked"))))
                })
                .collect()
        });
        let mut all = Timer::new()?;
        let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
        for r in results {
            let (timer, start, end) = r?;
            all.merge(&timer)?;
            first = Some(first.map_or(start, |f| f.min(start)));
            last = Some(last.map_or(end, |l| l.max(end)));
        }
        let wall = match (first, last) {
            (Some(f), Some(l)) => l.duration_since(f),
            _ => Duration::ZERO,
        };
        Ok(all.timing(threads, wall))
    }

    fn acl(&self) -> Result<AclPerformance> {
        let agent = &self.agents[0];
        // Two allowed by the default grants, two refused.
        let checks = [
            (ResourceType::Memory, Action::Read, AclLevel::Swarm, true),
            (ResourceType::Memory, Action::Write, AclLevel::Public, true),
            (ResourceType::Memory, Action::Read, AclLevel::System, false),
            (ResourceType::Audit, Action::Read, AclLevel::System, false),
        ];
        let existing = "concurrent/c-000-00000000";
        let (ours, base) = self.paired(
            "acl_performance",
            self.plan.n,
            WARMUP,
            |i, t| {
                let (r, a, l, want) = checks[(i % checks.len() as u64) as usize];
                let got = t.time(|| self.system.has_permission(agent, r, a, l))?;
                if got != want {
                    return Err(Error::Bench(format!(
                        "has_permission({agent}, {r}, {a}, {l}) answered {got}, expected {want}"
                    )));
                }
                Ok(())
            },
            |_, t| {
                let got = t.time(|| self.baseline.get(existing))?;
                present(got.is_some(), "raw GET", &existing)
            },
        )?;
        let stats = self.store.metrics();
        Ok(AclPerformance {
            acl_checks: Compared::new(
                ours,
                base,
                "the raw point read: what answering a check from SQLite costs at least",
            ),
            cache_hit_rate: stats.acl_cache_hit_rate,
            cache_hits: stats.acl_cache_hits,
            cache_misses: stats.acl_cache_misses,
        })
    }

    fn encryption(&self, notes: &mut Vec<String>) -> Result<Encryption> {
        let config = self.store.config().codec().clone().with_compression_threshold(usize::MAX);
        let cipher = config.cipher();
        let keyring =
            Arc::new(Keyring::new(KeyId::new(1), CodecKey::generate().map_err(codec_err)?));
        let codec = Codec::new(config, Some(keyring));
        let value = memory_json(SEAL_BYTES).into_bytes();
        let envelope = codec.encode(&value, Seal::Encrypt { aad: AAD }).map_err(codec_err)?;
        if codec.decode(&envelope, AAD).map_err(codec_err)? != value {
            return Err(Error::Bench("a sealed value did not open to itself".into()));
        }
        let phase = "encryption";
        let n = self.plan.n;
        let seal = |t: &mut Timer| -> Result<()> {
            let e = t.time(|| codec.encode(&value, Seal::Encrypt { aad: AAD }));
            black_box(e.map_err(codec_err)?);
            Ok(())
        };
        let open = |t: &mut Timer| -> Result<()> {
            let v = t.time(|| codec.decode(&envelope, AAD));
            black_box(v.map_err(codec_err)?);
            Ok(())
        };
        let (seal, open) = if cipher == Cipher::Aes256Gcm {
            let key = aes_gcm::Key::<Aes256Gcm>::try_generate().map_err(random_err)?;
            let aead = Aes256Gcm::new(&key);
            let nonce = aes_gcm::Nonce::try_generate().map_err(random_err)?;
            let sealed = aead
                .encrypt(&nonce, Payload { msg: &value, aad: AAD })
                .map_err(|_| Error::Bench("raw AES-256-GCM refused to seal".into()))?;
            let (s_ours, s_base) = self.paired(
                phase,
                n,
                WARMUP,
                |_, t| seal(t),
                |_, t| {
                    // A fresh nonce per value, as the codec draws.
                    let nonce = aes_gcm::Nonce::try_generate().map_err(random_err)?;
                    let out = t.time(|| aead.encrypt(&nonce, Payload { msg: &value, aad: AAD }));
                    black_box(out.map_err(|_| Error::Bench("raw seal failed".into()))?);
                    Ok(())
                },
            )?;
            let (o_ours, o_base) = self.paired(
                phase,
                n,
                WARMUP,
                |_, t| open(t),
                |_, t| {
                    let out = t.time(|| aead.decrypt(&nonce, Payload { msg: &sealed, aad: AAD }));
                    black_box(out.map_err(|_| Error::Bench("raw open failed".into()))?);
                    Ok(())
                },
            )?;
            let what = "the aes-gcm crate called directly: a 96-bit nonce from the OS, same associated data";
            (Compared::new(s_ours, s_base, what), Compared::new(o_ours, o_base, what))
        } else {
            notes.push(format!(
                "encryption: no raw baseline for {cipher} (the umbrella measures only aes-gcm directly)"
            ));
            // Keep the progress count: the baseline's turns are counted as skipped.
            let (s, _) = self.paired(phase, n, WARMUP, |_, t| seal(t), |_, _| Ok(()))?;
            let (o, _) = self.paired(phase, n, WARMUP, |_, t| open(t), |_, _| Ok(()))?;
            (Compared::alone(s), Compared::alone(o))
        };
        Ok(Encryption {
            cipher: cipher.to_string(),
            value_bytes: value.len(),
            envelope_bytes: envelope.len(),
            seal,
            open,
        })
    }

    fn compression(&self) -> Result<Compression> {
        let codec = Codec::new(CodecConfig::default().with_compression_threshold(0), None);
        let input = memory_json(COMPRESS_BYTES).into_bytes();
        let envelope = codec.encode(&input, Seal::Plain).map_err(codec_err)?;
        let header = swarm_codec::inspect(&envelope).map_err(codec_err)?;
        if !header.is_compressed() || codec.decode(&envelope, &[]).map_err(codec_err)? != input {
            return Err(Error::Bench("10 KiB of JSON did not compress and round-trip".into()));
        }
        let raw = lz4_flex::block::compress_prepend_size(&input);
        let phase = "compression";
        let n = self.plan.n;
        let (c_ours, c_base) = self.paired(
            phase,
            n,
            WARMUP,
            |_, t| {
                let e = t.time(|| codec.encode(&input, Seal::Plain));
                black_box(e.map_err(codec_err)?);
                Ok(())
            },
            |_, t| {
                black_box(t.time(|| lz4_flex::block::compress_prepend_size(&input)));
                Ok(())
            },
        )?;
        let (d_ours, d_base) = self.paired(
            phase,
            n,
            WARMUP,
            |_, t| {
                let v = t.time(|| codec.decode(&envelope, &[]));
                black_box(v.map_err(codec_err)?);
                Ok(())
            },
            |_, t| {
                let v = t.time(|| lz4_flex::block::decompress_size_prepended(&raw));
                black_box(v.map_err(|e| Error::Bench(format!("raw LZ4: {e}")))?);
                Ok(())
            },
        )?;
        Ok(Compression {
            input_bytes: input.len(),
            compressed_bytes: envelope.len(),
            compression_ratio: input.len() as f64 / envelope.len() as f64,
            baseline_compressed_bytes: raw.len(),
            baseline_compression_ratio: input.len() as f64 / raw.len() as f64,
            compress: Compared::new(
                c_ours,
                c_base,
                "lz4_flex::block::compress_prepend_size called directly",
            ),
            decompress: Compared::new(
                d_ours,
                d_base,
                "lz4_flex::block::decompress_size_prepended called directly",
            ),
        })
    }

    fn large(&self) -> Result<LargeValues> {
        let (n, who, opts) = (self.plan.large, self.who(), SetOptions::new());
        let value = Value::Text(memory_json(self.options.large_value_bytes));
        let bytes = value_bytes(&value);
        let name = |i: u64| format!("l-{i:04}");
        let raw = |i: u64| format!("large/l-{i:04}");
        let phase = "large_values";
        let (ours, base) = self.paired(
            phase,
            n,
            0,
            |i, t| {
                let (k, v) = (self.key("large", name(i))?, value.clone());
                t.time(|| self.store.set(&who, &k, v, &opts))?;
                Ok(())
            },
            |i, t| {
                let k = raw(i);
                t.time(|| self.baseline.put(&k, &bytes))?;
                Ok(())
            },
        )?;
        let set = Compared::new(ours, base, "the raw upsert of the same bytes, autocommit");
        self.baseline.checkpoint()?;
        let first = self.store.get(&who, &self.key("large", name(0))?)?;
        let encrypted = first.as_ref().is_some_and(|r| r.meta.encrypted);
        let (ours, base) = self.paired(
            phase,
            n,
            0,
            |i, t| {
                let k = self.key("large", name(i))?;
                let got = t.time(|| self.store.get(&who, &k))?;
                present(got.is_some(), "large GET", &k)
            },
            |i, t| {
                let k = raw(i);
                let got = t.time(|| self.baseline.get(&k))?;
                present(got.is_some(), "large raw GET", &k)
            },
        )?;
        let get = Compared::new(ours, base, "the raw point read of the same bytes");
        // Both tables are WITHOUT ROWID B-trees, where SQLite compares keys on a row's
        // whole payload: a lookup whose search lands on a leaf holding a row that
        // overflows reads that row's overflow chain. The large rows go (unmeasured), so
        // the runs after this one measure small records only, on both sides.
        for i in 0..n {
            self.store.delete(&who, &self.key("large", name(i))?, None)?;
            self.baseline.delete(&raw(i))?;
        }
        self.baseline.checkpoint()?;
        Ok(LargeValues { value_bytes: self.options.large_value_bytes, encrypted, set, get })
    }

    fn ttl(&self, value: &Value) -> Result<TtlFigures> {
        let (n, who, ttl) = (self.plan.n, self.who(), self.options.ttl);
        let opts = SetOptions::new().ttl(ttl);
        let bytes = value_bytes(value);
        let name = |i: u64| format!("t-{i:08}");
        let phase = "ttl";
        let mut last_write = Instant::now();
        let (ours, base) = self.paired(
            phase,
            n,
            0,
            |i, t| {
                let (k, v) = (self.key("ttl", name(i))?, value.clone());
                t.time(|| self.store.set(&who, &k, v, &opts))?;
                last_write = Instant::now();
                Ok(())
            },
            |i, t| {
                let k = format!("ttl/t-{i:08}");
                t.time(|| self.baseline.put(&k, &bytes))?;
                Ok(())
            },
        )?;
        let set_with_ttl =
            Compared::new(ours, base, "the raw upsert without expiry (SQLite has none)");
        self.baseline.checkpoint()?;
        // Past the newest record's expiry (the store keeps millisecond timestamps).
        let deadline = last_write + ttl + Duration::from_millis(5);
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        let mut returned = 0;
        let (ours, base) = self.paired(
            phase,
            n,
            0,
            |i, t| {
                let k = self.key("ttl", name(i))?;
                if t.time(|| self.store.get(&who, &k))?.is_some() {
                    returned += 1;
                }
                Ok(())
            },
            |i, t| {
                let k = format!("ttl/absent-{i:08}");
                let got = t.time(|| self.baseline.get(&k))?;
                present(got.is_none(), "raw GET of an absent key (found)", &k)
            },
        )?;
        let get_after_expiry = Compared::new(ours, base, "the raw point read of an absent key");
        let batch = 1000;
        let start = Instant::now();
        let mut swept = 0;
        loop {
            let k = self.store.sweep_expired(batch)?;
            swept += k;
            if k < u64::from(batch) {
                break;
            }
        }
        let sweep_ms = millis(start.elapsed());
        self.tracker.add(phase, 1);
        Ok(TtlFigures {
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            records: n,
            set_with_ttl,
            get_after_expiry,
            expired_returned: returned,
            swept,
            sweep_ms,
        })
    }

    fn namespaces(&self, value: &Value) -> Result<Namespaces> {
        let (who, opts) = (self.who(), SetOptions::new());
        let (count, per) = (self.options.namespaces, self.plan.keys_per_namespace);
        let bytes = value_bytes(value);
        let batch = self.store.config().limits().max_batch.max(1);
        let ns_name = |n: usize| format!("ns-{n:04}");
        let phase = "namespaces";
        self.tracker.phase(phase);
        let (mut load, mut raw_load) = (Duration::ZERO, Duration::ZERO);
        for ns in 0..count {
            let mut from = 0;
            while from < per {
                let to = (from + batch).min(per);
                let items = (from..to)
                    .map(|i| Ok((self.key(&ns_name(ns), format!("n-{i:06}"))?, value.clone())))
                    .collect::<Result<Vec<_>>>()?;
                let raw: Vec<(String, &[u8])> = (from..to)
                    .map(|i| (format!("{}/n-{i:06}", ns_name(ns)), bytes.as_slice()))
                    .collect();
                let start = Instant::now();
                self.store.mset(&who, items, &opts)?;
                load += start.elapsed();
                self.tracker.add(phase, (to - from) as u64);
                let start = Instant::now();
                self.baseline.put_many(&raw)?;
                raw_load += start.elapsed();
                self.tracker.add(phase, (to - from) as u64);
                from = to;
            }
        }
        self.baseline.checkpoint()?;
        let reader = self.baseline.reader()?;
        let all = KeyPattern::parse("*")?;
        let namespaces = (0..count)
            .map(|ns| Namespace::new(ns_name(ns)).map_err(Error::from))
            .collect::<Result<Vec<_>>>()?;
        let (ours, base) = self.paired(
            phase,
            self.plan.listings,
            0,
            |i, t| {
                let ns = &namespaces[(i % count as u64) as usize];
                let keys = t.time(|| self.store.keys(&who, &self.swarm, ns, &all, per))?;
                listed(keys.len(), per, ns.as_str())
            },
            |i, t| {
                let prefix = format!("{}/", ns_name((i % count as u64) as usize));
                let keys = t.time(|| reader.scan_prefix(&prefix, per))?;
                listed(keys.len(), per, &prefix)
            },
        )?;
        Ok(Namespaces {
            namespaces: count,
            keys_per_namespace: per,
            load_ms: millis(load),
            baseline_load_ms: millis(raw_load),
            list_one: Compared::new(
                ours,
                base,
                "a range scan of the primary key over the namespace's prefix",
            ),
            listed: per,
        })
    }

    fn backup(&self) -> Result<BackupFigures> {
        let phase = "backup";
        self.tracker.phase(phase);
        let start = Instant::now();
        let report = self.store.backup(
            &Identity::System,
            &self.dir.join("backup.db"),
            BackupMethod::Online,
            |_| {},
        )?;
        let time = start.elapsed();
        self.tracker.add(phase, 1);
        let start = Instant::now();
        let raw_bytes =
            Baseline::backup_file(self.db, &self.dir.join("raw-backup.db"), self.store.config())?;
        let raw_time = start.elapsed();
        self.tracker.add(phase, 1);
        Ok(BackupFigures {
            bytes: report.bytes,
            pages: report.pages,
            time_ms: millis(time),
            integrity: report.integrity,
            baseline_bytes: raw_bytes,
            baseline_time_ms: millis(raw_time),
            baseline_op:
                "SQLite's backup API on the same file through rusqlite, no integrity check".into(),
            ratio: time.as_secs_f64() / raw_time.as_secs_f64().max(1e-9),
        })
    }
}

/// An operation that must find something (or must succeed) did not.
fn present(ok: bool, what: &str, key: &dyn fmt::Display) -> Result<()> {
    if ok { Ok(()) } else { Err(Error::Bench(format!("{what} {key}: nothing there"))) }
}

fn listed(got: usize, want: usize, ns: &str) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::Bench(format!("listing {ns} returned {got} keys, expected {want}")))
    }
}

fn codec_err(e: swarm_codec::CodecError) -> Error {
    Error::Bench(format!("codec: {e}"))
}

fn random_err(e: impl fmt::Display) -> Error {
    Error::Bench(format!("the OS random number generator failed: {e}"))
}

/// The bytes the baseline stores for a value: what the store hands its codec.
fn value_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Text(s) => s.as_bytes().to_vec(),
        Value::Bytes(b) => b.clone(),
        Value::Json(j) => serde_json::to_vec(j).unwrap_or_default(),
        Value::Integer(n) => n.to_string().into_bytes(),
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Latencies of one side of a measurement: an HDR histogram (1 ns to 100 s, three
/// significant digits) and the exact sum.
struct Timer {
    hist: Histogram<u64>,
    sum: Duration,
    calls: u64,
}

impl Timer {
    fn new() -> Result<Self> {
        let hist = Histogram::new_with_bounds(1, 100_000_000_000, 3)
            .map_err(|e| Error::Bench(format!("histogram: {e}")))?;
        Ok(Self { hist, sum: Duration::ZERO, calls: 0 })
    }

    /// Times one call.
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        let d = start.elapsed();
        self.hist.saturating_record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1));
        self.sum += d;
        self.calls += 1;
        out
    }

    fn merge(&mut self, other: &Timer) -> Result<()> {
        self.hist.add(&other.hist).map_err(|e| Error::Bench(format!("histogram: {e}")))?;
        self.sum += other.sum;
        self.calls += other.calls;
        Ok(())
    }

    /// One thread's figures: the wall time is the sum of the calls.
    fn single(&self) -> Timing {
        self.timing(1, self.sum)
    }

    fn timing(&self, threads: usize, wall: Duration) -> Timing {
        let us = |ns: u64| ns as f64 / 1e3;
        let calls = self.calls.max(1) as f64;
        let secs = wall.as_secs_f64();
        Timing {
            operations: self.calls,
            threads,
            avg_us: self.sum.as_secs_f64() * 1e6 / calls,
            p50_us: us(self.hist.value_at_quantile(0.50)),
            p95_us: us(self.hist.value_at_quantile(0.95)),
            p99_us: us(self.hist.value_at_quantile(0.99)),
            max_us: us(self.hist.max()),
            wall_ms: secs * 1e3,
            ops_per_second: if secs > 0.0 { self.calls as f64 / secs } else { 0.0 },
        }
    }
}

/// Counts operations and tells the progress callback, at most about 500 times a run.
/// Calls are serialised and never go backwards, though several threads count.
struct Tracker {
    f: Option<ProgressFn>,
    total: u64,
    every: u64,
    done: AtomicU64,
    told: parking_lot::Mutex<u64>,
}

impl Tracker {
    fn new(f: Option<ProgressFn>, total: u64) -> Self {
        Self {
            f,
            total: total.max(1),
            every: (total / 500).max(1),
            done: AtomicU64::new(0),
            told: parking_lot::Mutex::new(0),
        }
    }

    fn tell(&self, phase: &'static str, done: u64) {
        if let Some(f) = &self.f {
            let mut told = self.told.lock();
            *told = (*told).max(done.min(self.total));
            f(BenchProgress { phase, done: *told, total: self.total });
        }
    }

    /// A new phase starts.
    fn phase(&self, phase: &'static str) {
        self.tell(phase, self.done.load(Ordering::Relaxed));
    }

    fn add(&self, phase: &'static str, n: u64) {
        if self.f.is_none() {
            return;
        }
        let before = self.done.fetch_add(n, Ordering::Relaxed);
        if before / self.every != (before + n) / self.every {
            self.tell(phase, before + n);
        }
    }

    fn finish(&self) {
        self.tell("done", self.total);
    }
}

/// Writes the report as `swarm-memory-bench-<UTC time>.json` in `dir` (never replacing a
/// file), with its own path in it.
fn write_report(report: &mut BenchReport, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::Bench(format!("cannot create the report directory {}: {e}", dir.display()))
    })?;
    let stamp = utc_stamp(report.started_at_ms);
    for n in 0..1000 {
        let name = match n {
            0 => format!("swarm-memory-bench-{stamp}.json"),
            n => format!("swarm-memory-bench-{stamp}-{n}.json"),
        };
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path);
        let mut file = match file {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(Error::Bench(format!("cannot write {}: {e}", path.display())));
            }
        };
        report.report_path = Some(path.clone());
        let written = serde_json::to_vec_pretty(report)
            .map_err(|e| Error::Bench(format!("cannot render the report: {e}")))
            .and_then(|mut bytes| {
                bytes.push(b'\n');
                std::io::Write::write_all(&mut file, &bytes)
                    .map_err(|e| Error::Bench(format!("cannot write {}: {e}", path.display())))
            });
        if let Err(e) = written {
            report.report_path = None;
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        return Ok(path);
    }
    Err(Error::Bench(format!("too many reports named {stamp} in {}", dir.display())))
}

/// `YYYYMMDDTHHMMSSZ` for Unix milliseconds.
fn utc_stamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", sod / 3600, sod % 3600 / 60, sod % 60)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Deterministic JSON-like agent memory of exactly `len` bytes (ASCII): observation
/// records with ids, timestamps, scores, tags and short sentences, varied by a small
/// generator so it compresses like real text rather than like zeros. The sample value of
/// every benchmark that needs realistic text (this report and `cargo xtask bench`).
pub fn memory_json(len: usize) -> String {
    const KINDS: [&str; 6] = ["observation", "plan", "decision", "error", "summary", "handoff"];
    const TAGS: [&str; 8] = ["build", "ci", "deploy", "review", "db", "api", "docs", "perf"];
    const VERBS: [&str; 8] =
        ["compiled", "retried", "merged", "rolled back", "queried", "cached", "flagged", "wrote"];
    const NOUNS: [&str; 8] = [
        "swarm-store",
        "the migration",
        "task 4711",
        "PR #318",
        "the index",
        "agent-12",
        "the lease",
        "the report",
    ];
    use std::fmt::Write as _;
    let mut rng = Rng::new(0x5eed_cafe_f00d_d00d);
    let mut out = String::with_capacity(len + 256);
    out.push('[');
    let mut i = 0u64;
    while out.len() < len {
        let r = rng.next();
        let pick = |shift: u32, n: usize| ((r >> shift) as usize) % n;
        let _ = write!(
            out,
            r#"{{"id":"mem-{:06}","agent":"agent-{:02}","kind":"{}","ts":{},"confidence":0.{:02},"tags":["{}","{}"],"text":"{} {} in {}.{} s; {} warnings"}},"#,
            1000 + i,
            pick(0, 24),
            KINDS[pick(8, KINDS.len())],
            1_735_689_600_000u64 + i * 1_377 + (r % 1000),
            pick(16, 100),
            TAGS[pick(24, TAGS.len())],
            TAGS[pick(28, TAGS.len())],
            VERBS[pick(32, VERBS.len())],
            NOUNS[pick(36, NOUNS.len())],
            pick(40, 60),
            pick(46, 10),
            pick(50, 5),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

/// xorshift64*: deterministic key orders and data, so ours and the baseline read the same
/// keys in the same order. Not for anything secret.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

impl BenchReport {
    /// The readable table: every section, our figures beside the baseline's and the ratio.
    pub fn render_table(&self) -> String {
        use std::fmt::Write as _;
        let s = &self.settings;
        let r = &self.results;
        let mut out = String::new();
        let enc = match (&s.encrypted_levels, s.records_encrypted) {
            (Some(l), true) => format!("encrypted ({}, levels up to {l})", s.cipher),
            (Some(l), false) => format!("not encrypted (levels up to {l} are)"),
            (None, _) => "not encrypted".to_owned(),
        };
        let comp = s
            .compression_threshold
            .map_or_else(|| "compression off".to_owned(), |t| format!("LZ4 from {t} B"));
        let _ = writeln!(
            out,
            "swarm-memory bench: {} iterations, {} threads, {} B values, {} records {enc}, {comp}, synchronous={}, SQLite {}",
            s.iterations,
            s.threads,
            s.value_bytes,
            s.record_level,
            s.pragmas.synchronous,
            s.pragmas.sqlite_version,
        );
        let _ = writeln!(
            out,
            "scratch database {} ({}), removed afterwards; {} CPUs, {}/{}",
            s.scratch,
            s.scratch_parent.display(),
            s.cpus,
            s.os,
            s.arch
        );
        let _ = writeln!(
            out,
            "times in microseconds; baseline: raw rusqlite with the same pragmas, same run; ratio: our time per operation / the baseline's\n"
        );
        let _ = writeln!(
            out,
            "{:<24}{:>10}{:>10}{:>10}{:>10}{:>11} |{:>10}{:>10}{:>11} |{:>8}",
            "operation",
            "avg",
            "p50",
            "p95",
            "p99",
            "ops/s",
            "base avg",
            "base p50",
            "base ops/s",
            "ratio"
        );
        let row = |out: &mut String, name: &str, c: &Compared| {
            let o = &c.ours;
            let _ = write!(
                out,
                "  {:<22}{:>10}{:>10}{:>10}{:>10}{:>11.0} |",
                name,
                us(o.avg_us),
                us(o.p50_us),
                us(o.p95_us),
                us(o.p99_us),
                o.ops_per_second
            );
            match &c.baseline {
                Some(b) => {
                    let _ = write!(
                        out,
                        "{:>10}{:>10}{:>11.0} |",
                        us(b.avg_us),
                        us(b.p50_us),
                        b.ops_per_second
                    );
                }
                None => {
                    let _ = write!(out, "{:>10}{:>10}{:>11} |", "-", "-", "-");
                }
            }
            let _ = match c.ratio {
                Some(x) => writeln!(out, "{:>7.2}x", x),
                None => writeln!(out, "{:>8}", "-"),
            };
        };
        let b = &r.basic_operations;
        let _ = writeln!(out, "basic_operations");
        row(&mut out, "set", &b.set);
        row(&mut out, "get", &b.get);
        row(&mut out, "has", &b.has);
        row(&mut out, "delete", &b.delete);
        let c = &r.concurrent_operations;
        let _ = writeln!(out, "concurrent_operations ({} threads)", c.threads);
        row(&mut out, "concurrent_sets", &c.concurrent_sets);
        row(&mut out, "concurrent_gets", &c.concurrent_gets);
        let a = &r.acl_performance;
        let _ = writeln!(out, "acl_performance");
        row(&mut out, "acl_checks", &a.acl_checks);
        let _ = writeln!(
            out,
            "  cache_hit_rate: {:.1} % ({} hits, {} misses)",
            a.cache_hit_rate * 100.0,
            a.cache_hits,
            a.cache_misses
        );
        let e = &r.encryption;
        let _ = writeln!(
            out,
            "encryption ({}, {} B value, {} B envelope)",
            e.cipher, e.value_bytes, e.envelope_bytes
        );
        row(&mut out, "seal", &e.seal);
        row(&mut out, "open", &e.open);
        let z = &r.compression;
        let _ = writeln!(out, "compression (LZ4, {} B of JSON)", z.input_bytes);
        row(&mut out, "compress", &z.compress);
        row(&mut out, "decompress", &z.decompress);
        let _ = writeln!(
            out,
            "  compression_ratio: {:.2}x ({} B; raw lz4_flex {:.2}x, {} B)",
            z.compression_ratio,
            z.compressed_bytes,
            z.baseline_compression_ratio,
            z.baseline_compressed_bytes
        );
        let l = &r.large_values;
        let _ = writeln!(
            out,
            "large_values ({} B, {}, {} each)",
            l.value_bytes,
            if l.encrypted { "encrypted" } else { "not encrypted" },
            l.set.ours.operations
        );
        row(&mut out, "set", &l.set);
        row(&mut out, "get", &l.get);
        let t = &r.ttl;
        let _ = writeln!(out, "ttl ({} ms)", t.ttl_ms);
        row(&mut out, "set_with_ttl", &t.set_with_ttl);
        row(&mut out, "get_after_expiry", &t.get_after_expiry);
        let _ = writeln!(
            out,
            "  expired records returned: {} of {}; swept {} in {:.1} ms",
            t.expired_returned, t.records, t.swept, t.sweep_ms
        );
        let n = &r.namespaces;
        let _ = writeln!(
            out,
            "namespaces ({} x {} keys; loaded in {:.1} ms, raw {:.1} ms)",
            n.namespaces, n.keys_per_namespace, n.load_ms, n.baseline_load_ms
        );
        row(&mut out, "list_one", &n.list_one);
        let k = &r.backup;
        let _ = writeln!(out, "backup");
        let _ = writeln!(
            out,
            "  online backup: {:.1} ms, {} B, {} pages, integrity {} (raw backup API: {:.1} ms, {} B) {:.2}x",
            k.time_ms, k.bytes, k.pages, k.integrity, k.baseline_time_ms, k.baseline_bytes, k.ratio
        );
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}

/// Microseconds for the table: two decimals below 100, one below 10 000, none above.
fn us(v: f64) -> String {
    if v < 100.0 {
        format!("{v:.2}")
    } else if v < 10_000.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render_table())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400_000), "20000229T000000Z");
        assert_eq!(utc_stamp(1_735_689_600_000 + 3_723_000), "20250101T010203Z");
        assert_eq!(utc_stamp(-1000), "19691231T235959Z");
    }

    #[test]
    fn json_of_exact_length() {
        for len in [1, 255, 1024, 10 * 1024] {
            let s = memory_json(len);
            assert_eq!(s.len(), len);
            assert!(s.is_ascii());
        }
        assert_eq!(memory_json(300), memory_json(300), "deterministic");
    }

    #[test]
    fn shares_add_up() {
        for (n, threads) in [(50, 2), (7, 3), (5000, 20), (3, 3)] {
            let sum: u64 = (0..threads).map(|t| Scratch::share(n, threads, t)).sum();
            assert_eq!(sum, n);
        }
    }

    #[test]
    fn timings_are_consistent() {
        let mut t = Timer::new().unwrap();
        for ns in [1_000u64, 2_000, 3_000, 50_000] {
            t.hist.record(ns).unwrap();
            t.sum += Duration::from_nanos(ns);
            t.calls += 1;
        }
        let s = t.single();
        assert_eq!(s.operations, 4);
        assert!((s.avg_us - 14.0).abs() < 1e-9);
        assert!(s.p50_us <= s.p95_us && s.p95_us <= s.p99_us && s.p99_us <= s.max_us);
        assert!((s.ops_per_second - 4.0 / 56e-6).abs() < 1.0);
        let mut base = s.clone();
        base.ops_per_second *= 2.0;
        assert!((ratio(&s, &base).unwrap() - 2.0).abs() < 1e-9);
    }

    #[test]
    fn options_out_of_bounds_are_refused_by_name() {
        let limits = Limits::default();
        assert!(BenchOptions::new().validate(&limits).is_ok());
        let cases = [
            (BenchOptions::new().iterations(0), "iterations"),
            (BenchOptions::new().iterations(MAX_ITERATIONS + 1), "iterations"),
            (BenchOptions::new().concurrency(0), "concurrency"),
            (BenchOptions::new().concurrency(MAX_CONCURRENCY + 1), "concurrency"),
            (BenchOptions::new().value_bytes(0), "value size"),
            (BenchOptions::new().large_value_bytes(limits.max_value_len + 1), "large value size"),
            (BenchOptions::new().namespaces(0), "namespaces"),
            (BenchOptions::new().ttl(Duration::ZERO), "TTL"),
            (BenchOptions::new().ttl(MAX_TTL + Duration::from_millis(1)), "TTL"),
        ];
        for (o, word) in cases {
            let e = o.validate(&limits).unwrap_err().to_string();
            assert!(e.contains(word), "{o:?}: {e}");
        }
    }
}
