//! Operation metrics: counters and latency histograms per operation, kept lock-free in
//! memory, persisted to the `metrics` table on an interval, exported as a snapshot or in
//! the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

/// The operations measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// `get`.
    Get,
    /// `has`.
    Has,
    /// `mget`.
    Mget,
    /// `set`, `setex`.
    Set,
    /// `mset`.
    Mset,
    /// `incr`, `decr`.
    Incr,
    /// `delete`.
    Delete,
    /// `clear`, `clear_all`.
    Clear,
    /// `keys`, `list`.
    List,
    /// `changes_since` (and watchers).
    Changes,
    /// One sweep of expired records.
    Sweep,
}

impl Op {
    /// Every operation, in report order.
    pub const ALL: [Op; 11] = [
        Op::Get,
        Op::Has,
        Op::Mget,
        Op::Set,
        Op::Mset,
        Op::Incr,
        Op::Delete,
        Op::Clear,
        Op::List,
        Op::Changes,
        Op::Sweep,
    ];

    /// The name used in reports and labels.
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Has => "has",
            Op::Mget => "mget",
            Op::Set => "set",
            Op::Mset => "mset",
            Op::Incr => "incr",
            Op::Delete => "delete",
            Op::Clear => "clear",
            Op::List => "list",
            Op::Changes => "changes",
            Op::Sweep => "sweep",
        }
    }
}

/// Sub-buckets per power of two: 8 gives at most 12.5% relative error.
const SUB_BITS: u32 = 3;
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) << SUB_BITS;

/// A histogram of nanosecond latencies with log-linear buckets, updated with one atomic
/// add per sample.
struct Histogram {
    buckets: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    fn index(ns: u64) -> usize {
        let sub = 1u64 << SUB_BITS;
        if ns < sub {
            return ns as usize;
        }
        let msb = 63 - ns.leading_zeros();
        let shift = msb - SUB_BITS;
        let group = (msb - SUB_BITS + 1) as usize;
        (group << SUB_BITS) | ((ns >> shift) & (sub - 1)) as usize
    }

    /// The midpoint of bucket `i`.
    fn value(i: usize) -> u64 {
        let sub = 1usize << SUB_BITS;
        if i < sub {
            return i as u64;
        }
        let group = (i >> SUB_BITS) as u32;
        let low = (i & (sub - 1)) as u64;
        let shift = group + SUB_BITS - 1 - SUB_BITS;
        let base = ((1u64 << SUB_BITS) | low) << shift;
        base + (1u64 << shift) / 2
    }

    fn record(&self, ns: u64) {
        self.buckets[Self::index(ns).min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn quantiles(&self, qs: &[f64]) -> (u64, Vec<u64>) {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let mut out = Vec::with_capacity(qs.len());
        for &q in qs {
            if total == 0 {
                out.push(0);
                continue;
            }
            let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
            let mut seen = 0;
            let mut v = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    v = Self::value(i);
                    break;
                }
            }
            out.push(v);
        }
        (total, out)
    }
}

/// An operation's figures. Its count is its histogram's: one atomic add fewer per call.
struct OpStats {
    errors: AtomicU64,
    latency: Histogram,
}

/// Live metrics of one store.
pub(crate) struct Metrics {
    ops: Vec<OpStats>,
    started: Instant,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Self {
            ops: Op::ALL
                .iter()
                .map(|_| OpStats { errors: AtomicU64::new(0), latency: Histogram::new() })
                .collect(),
            started: Instant::now(),
        }
    }

    /// Runs `f`, counting it and its latency under `op`.
    pub(crate) fn time<T, E>(&self, op: Op, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let t = Instant::now();
        let r = f();
        let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let s = &self.ops[op as usize];
        if r.is_err() {
            s.errors.fetch_add(1, Ordering::Relaxed);
        }
        s.latency.record(ns);
        r
    }

    pub(crate) fn ops(&self) -> Vec<OpMetrics> {
        Op::ALL
            .iter()
            .map(|&op| {
                let s = &self.ops[op as usize];
                let (n, q) = s.latency.quantiles(&[0.5, 0.95, 0.99]);
                let sum = s.latency.sum_ns.load(Ordering::Relaxed);
                OpMetrics {
                    op,
                    count: n,
                    errors: s.errors.load(Ordering::Relaxed),
                    mean_ns: sum.checked_div(n).unwrap_or(0),
                    p50_ns: q[0],
                    p95_ns: q[1],
                    p99_ns: q[2],
                }
            })
            .collect()
    }

    pub(crate) fn uptime_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Figures of one operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OpMetrics {
    /// The operation.
    pub op: Op,
    /// Calls.
    pub count: u64,
    /// Calls that returned an error (refusals and conflicts included).
    pub errors: u64,
    /// Mean latency.
    pub mean_ns: u64,
    /// Median latency (within 12.5%).
    pub p50_ns: u64,
    /// 95th percentile.
    pub p95_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
}

/// Everything the store measures, at one instant.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricsSnapshot {
    /// Since the store opened.
    pub uptime_ms: u64,
    /// Per operation.
    pub ops: Vec<OpMetrics>,
    /// Principal cache lookups answered from the cache.
    pub acl_cache_hits: u64,
    /// Principal cache lookups that missed.
    pub acl_cache_misses: u64,
    /// `hits / (hits + misses)`.
    pub acl_cache_hit_rate: f64,
    /// Reads that found their cached principal stale and retried.
    pub stale_principal_retries: u64,
    /// Commit groups.
    pub commit_groups: u64,
    /// Write jobs (an average group holds `jobs / commit_groups`).
    pub write_jobs: u64,
    /// Commits that failed.
    pub failed_commits: u64,
    /// Retries after another process held the write lock.
    pub busy_retries: u64,
    /// Denied accesses (reads and writes).
    pub denials: u64,
    /// Compare-and-set conflicts.
    pub conflicts: u64,
    /// Expired records swept.
    pub expired_swept: u64,
    /// WAL checkpoints run in the background.
    pub checkpoints: u64,
    /// Database file size in bytes.
    pub db_bytes: u64,
    /// WAL file size in bytes.
    pub wal_bytes: u64,
}

impl MetricsSnapshot {
    /// The Prometheus text exposition format (version 0.0.4).
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: Vec<String>| {
            let _ = writeln!(out, "# HELP swarm_memory_{name} {help}");
            let _ = writeln!(out, "# TYPE swarm_memory_{name} {kind}");
            for l in lines {
                let _ = writeln!(out, "swarm_memory_{name}{l}");
            }
        };
        let per_op = |f: &dyn Fn(&OpMetrics) -> String| -> Vec<String> {
            self.ops.iter().map(|o| format!("{{op=\"{}\"}} {}", o.op.name(), f(o))).collect()
        };
        metric(
            "operations_total",
            "counter",
            "Memory operations.",
            per_op(&|o| o.count.to_string()),
        );
        metric(
            "operation_errors_total",
            "counter",
            "Memory operations that failed.",
            per_op(&|o| o.errors.to_string()),
        );
        let mut q = Vec::new();
        for o in &self.ops {
            for (quantile, v) in [("0.5", o.p50_ns), ("0.95", o.p95_ns), ("0.99", o.p99_ns)] {
                q.push(format!(
                    "{{op=\"{}\",quantile=\"{quantile}\"}} {}",
                    o.op.name(),
                    v as f64 / 1e9
                ));
            }
        }
        metric("operation_latency_seconds", "gauge", "Latency quantiles since start.", q);
        let scalar = |v: String| vec![format!(" {v}")];
        metric(
            "acl_cache_hits_total",
            "counter",
            "Principal cache hits.",
            scalar(self.acl_cache_hits.to_string()),
        );
        metric(
            "acl_cache_misses_total",
            "counter",
            "Principal cache misses.",
            scalar(self.acl_cache_misses.to_string()),
        );
        metric(
            "commit_groups_total",
            "counter",
            "Write transactions.",
            scalar(self.commit_groups.to_string()),
        );
        metric("write_jobs_total", "counter", "Write jobs.", scalar(self.write_jobs.to_string()));
        metric(
            "busy_retries_total",
            "counter",
            "Retries on another process's lock.",
            scalar(self.busy_retries.to_string()),
        );
        metric("denials_total", "counter", "Denied accesses.", scalar(self.denials.to_string()));
        metric(
            "conflicts_total",
            "counter",
            "Version conflicts.",
            scalar(self.conflicts.to_string()),
        );
        metric(
            "expired_swept_total",
            "counter",
            "Expired records swept.",
            scalar(self.expired_swept.to_string()),
        );
        metric(
            "checkpoints_total",
            "counter",
            "Background WAL checkpoints.",
            scalar(self.checkpoints.to_string()),
        );
        metric("database_bytes", "gauge", "Database file size.", scalar(self.db_bytes.to_string()));
        metric("wal_bytes", "gauge", "WAL file size.", scalar(self.wal_bytes.to_string()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_close() {
        let mut last = 0;
        for ns in [1u64, 7, 8, 9, 15, 16, 100, 1_000, 12_345, 1_000_000, 123_456_789, u64::MAX / 2]
        {
            let i = Histogram::index(ns);
            assert!(i >= last, "{ns}");
            last = i;
            let v = Histogram::value(i) as f64;
            assert!((v - ns as f64).abs() <= ns as f64 * 0.125 + 1.0, "{ns} -> {v}");
        }
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let h = Histogram::new();
        for ns in 1..=1000u64 {
            h.record(ns * 1000);
        }
        let (n, q) = h.quantiles(&[0.5, 0.99]);
        assert_eq!(n, 1000);
        assert!((q[0] as f64 - 500_000.0).abs() < 500_000.0 * 0.13, "{q:?}");
        assert!((q[1] as f64 - 990_000.0).abs() < 990_000.0 * 0.13, "{q:?}");
    }

    #[test]
    fn prometheus_text_is_well_formed() {
        let m = Metrics::new();
        let _ = m.time(Op::Get, || Ok::<_, ()>(()));
        let _ = m.time(Op::Set, || Err::<(), _>(()));
        let s = MetricsSnapshot {
            uptime_ms: 1,
            ops: m.ops(),
            acl_cache_hits: 3,
            acl_cache_misses: 1,
            acl_cache_hit_rate: 0.75,
            stale_principal_retries: 0,
            commit_groups: 1,
            write_jobs: 1,
            failed_commits: 0,
            busy_retries: 0,
            denials: 0,
            conflicts: 0,
            expired_swept: 0,
            checkpoints: 0,
            db_bytes: 4096,
            wal_bytes: 0,
        };
        let text = s.to_prometheus();
        assert!(text.contains("swarm_memory_operations_total{op=\"get\"} 1"));
        assert!(text.contains("swarm_memory_operation_errors_total{op=\"set\"} 1"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("swarm_memory_"), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
