//! Reading the metrics the maintenance thread persists (the `metrics` table): one row per
//! figure per snapshot, kept for the configured retention.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Row, params_from_iter};
use serde::Serialize;
use swarm_acl::{Identity, Timestamp};

use crate::error::{Result, StoreError};
use crate::sql::u64_of;
use crate::store::Store;

/// Most samples one query returns.
pub const MAX_METRICS_LIMIT: usize = 10_000;

/// What kind of figure a sample is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    /// A count that only grows while a process runs (operations, errors).
    Counter,
    /// A value at the time of the snapshot (sizes, rates).
    Gauge,
    /// A latency distribution: `value` is the mean, with count and quantiles.
    Histogram,
}

crate::names::string_forms!(MetricKind, "metric kind", {
    Counter => "counter",
    Gauge => "gauge",
    Histogram => "histogram",
});

/// One persisted figure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricSample {
    /// When the snapshot was taken.
    pub at: Timestamp,
    /// The figure (`operations`, `operation_latency_ns`, `database_bytes`, ...).
    pub name: String,
    /// Its kind.
    pub kind: MetricKind,
    /// Labels (`{"op": "set"}`), a JSON object.
    pub labels: serde_json::Map<String, serde_json::Value>,
    /// The value (the mean, for histograms).
    pub value: f64,
    /// Observations (histograms).
    pub count: Option<u64>,
    /// Median (histograms).
    pub p50: Option<f64>,
    /// 95th percentile (histograms).
    pub p95: Option<f64>,
    /// 99th percentile (histograms).
    pub p99: Option<f64>,
}

/// Which persisted samples to read: the newest `limit` (default 1000, at most
/// [`MAX_METRICS_LIMIT`]) matching the filters, returned oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsQuery {
    name: Option<String>,
    since: Option<Timestamp>,
    limit: usize,
}

impl Default for MetricsQuery {
    fn default() -> Self {
        Self { name: None, since: None, limit: 1000 }
    }
}

impl MetricsQuery {
    /// Every figure, the newest 1000 samples.
    pub fn new() -> Self {
        Self::default()
    }
    /// Only the figure `name`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Only samples taken at or after `at`.
    pub fn since(mut self, at: Timestamp) -> Self {
        self.since = Some(at);
        self
    }
    /// At most `n` samples (1 to [`MAX_METRICS_LIMIT`]).
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = n;
        self
    }

    fn check(&self) -> Result<()> {
        if !(1..=MAX_METRICS_LIMIT).contains(&self.limit) {
            return Err(StoreError::invalid(format!(
                "a metrics query returns 1 to {MAX_METRICS_LIMIT} samples, not {}",
                self.limit
            )));
        }
        if let Some(n) = &self.name
            && (n.is_empty() || n.len() > 256 || n.chars().any(char::is_control))
        {
            return Err(StoreError::invalid(
                "a metric name is 1-256 bytes without control characters",
            ));
        }
        Ok(())
    }
}

fn sample(r: &Row<'_>) -> rusqlite::Result<Result<MetricSample>> {
    let at: i64 = r.get(0)?;
    let name: String = r.get(1)?;
    let kind: String = r.get(2)?;
    let labels: String = r.get(3)?;
    let value: f64 = r.get(4)?;
    let count: Option<i64> = r.get(5)?;
    let (p50, p95, p99): (Option<f64>, Option<f64>, Option<f64>) =
        (r.get(6)?, r.get(7)?, r.get(8)?);
    Ok((|| {
        let labels = match serde_json::from_str(&labels) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => return Err(StoreError::Corrupt(format!("labels of metric {name}: {labels}"))),
        };
        Ok(MetricSample {
            at: Timestamp::from_millis(at),
            kind: MetricKind::from_stored(&kind)?,
            labels,
            value,
            count: count.map(u64_of),
            p50,
            p95,
            p99,
            name,
        })
    })())
}

impl Store {
    /// The persisted metrics (snapshots the maintenance thread writes every
    /// `metrics_interval`, and at shutdown), newest `limit` matching samples, oldest first.
    /// System principal only.
    pub fn metrics_history(
        &self,
        who: &Identity,
        query: &MetricsQuery,
    ) -> Result<Vec<MetricSample>> {
        query.check()?;
        self.shared.read_snapshot_as(who, |conn, p| {
            if !p.is_system() {
                return Err(StoreError::PermissionDenied(
                    "the metrics history is for the system principal".into(),
                ));
            }
            let mut clauses = Vec::new();
            let mut binds: Vec<SqlValue> = Vec::new();
            if let Some(n) = &query.name {
                binds.push(SqlValue::Text(n.clone()));
                clauses.push(format!("name = ?{}", binds.len()));
            }
            if let Some(t) = query.since {
                binds.push(SqlValue::Integer(t.as_millis()));
                clauses.push(format!("at >= ?{}", binds.len()));
            }
            binds.push(SqlValue::Integer(i64::try_from(query.limit).unwrap_or(1000)));
            let filter = if clauses.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", clauses.join(" AND "))
            };
            let sql = format!(
                "SELECT at, name, kind, labels, value, count, p50, p95, p99 FROM metrics {filter} \
                 ORDER BY at DESC, id DESC LIMIT ?{}",
                binds.len()
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(binds), sample)?;
            let mut out = rows.map(|r| r?).collect::<Result<Vec<_>>>()?;
            out.reverse();
            Ok(out)
        })
    }
}
