//! The background thread: folds and flushes read counts, flushes queued audit rows,
//! checkpoints the WAL off the commit path, sweeps expired records, persists metrics and
//! trims old metrics and change-feed rows. It holds only a weak reference, so dropping the
//! store stops it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use rusqlite::Connection;

use crate::keys::Refresh;
use crate::store::Shared;

/// How often the thread wakes: flushes queued audit rows and read counts, checks the WAL.
const TICK: Duration = Duration::from_millis(250);
/// How often read counts are written back: each flush is one UPDATE per record read, so
/// it runs far less often than the audit flush.
const ACCESS_FLUSH: Duration = Duration::from_secs(5);
/// Most rows one trim transaction deletes.
const TRIM_BATCH: i64 = 5000;

struct Schedule {
    last_access: Instant,
    last_sweep: Instant,
    last_metrics: Instant,
    last_trim: Instant,
    checkpointer: Option<Connection>,
    /// Reads the database's active key (see [`check_active_key`]).
    keys_conn: Option<Connection>,
    /// An active key the keyring source was asked for and could not supply, and when:
    /// asked again a minute later.
    handled_active: Option<(u32, Instant)>,
}

pub(crate) fn start(shared: &Arc<Shared>) {
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let weak: Weak<Shared> = Arc::downgrade(shared);
    let spawned =
        std::thread::Builder::new().name("swarm-store-maintenance".into()).spawn(move || {
            let now = Instant::now();
            let mut schedule = Schedule {
                last_access: now,
                last_sweep: now,
                last_metrics: now,
                last_trim: now,
                checkpointer: None,
                keys_conn: None,
                handled_active: None,
            };
            loop {
                match stopped.recv_timeout(TICK) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let Some(shared) = weak.upgrade() else { return };
                tick(&shared, &mut schedule);
            }
        });
    match spawned {
        Ok(handle) => shared.set_background(stop, handle),
        Err(e) => tracing::error!(error = %e, "could not start the maintenance thread"),
    }
}

fn tick(shared: &Arc<Shared>, s: &mut Schedule) {
    // Reads append to logs; folding them here keeps the lookups off the reads.
    shared.access.fold();
    if let Err(e) = shared.flush_audit() {
        tracing::warn!(error = %e, "flushing queued audit rows failed; will retry");
    }
    if s.last_access.elapsed() >= ACCESS_FLUSH {
        s.last_access = Instant::now();
        if let Err(e) = shared.flush_access() {
            tracing::warn!(error = %e, "writing read counts failed; will retry");
        }
    }
    checkpoint_if_large(shared, s);
    check_active_key(shared, s);
    if let Some(every) = shared.config.sweep_interval
        && s.last_sweep.elapsed() >= every
    {
        s.last_sweep = Instant::now();
        sweep(shared);
    }
    if let Some(every) = shared.config.metrics_interval
        && s.last_metrics.elapsed() >= every
    {
        s.last_metrics = Instant::now();
        if let Err(e) = persist_metrics(shared) {
            tracing::warn!(error = %e, "writing metrics failed");
        }
    }
    if s.last_trim.elapsed() >= Duration::from_secs(60) {
        s.last_trim = Instant::now();
        if let Err(e) = trim(shared) {
            tracing::warn!(error = %e, "trimming old metrics and changes failed");
        }
    }
}

/// One sweeping step: returns how many rows it handled.
type SweepStep<'a> = Box<dyn Fn() -> crate::Result<u64> + 'a>;

/// Expired records and events, rounds past their deadline, conflicts left open too long.
fn sweep(shared: &Arc<Shared>) {
    let batch = shared.config.sweep_batch.max(1);
    let keep_events = i64::try_from(shared.config.event_retention.as_millis()).unwrap_or(i64::MAX);
    let store = crate::Store { shared: Arc::clone(shared) };
    let escalate_ms =
        shared.config.conflict_escalation.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut steps: Vec<(&str, SweepStep<'_>)> = vec![
        (
            "expired records",
            Box::new(|| {
                shared
                    .metrics
                    .time(crate::metrics::Op::Sweep, || crate::memory::sweep_once(shared, batch))
            }),
        ),
        (
            "expired events",
            Box::new(|| crate::domain::events::sweep_events(shared, batch, keep_events)),
        ),
    ];
    steps.push((
        "expired consensus rounds",
        Box::new(|| store.expire_rounds(&swarm_acl::Identity::System)),
    ));
    if let Some(ms) = escalate_ms {
        let store = &store;
        steps.push((
            "stale conflicts",
            Box::new(move || store.escalate_stale_conflicts(&swarm_acl::Identity::System, ms)),
        ));
    }
    for (what, step) in &steps {
        // Each step deletes or changes at most a batch per transaction; repeat while
        // batches come back full so a backlog drains without holding the lock long.
        for _ in 0..1000 {
            match step() {
                Ok(n) if n >= u64::from(batch).min(100) => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "sweeping {what} failed; will retry");
                    break;
                }
            }
        }
    }
}

/// The thread's connection in `slot`, opened on first use; `None` (logged) if it cannot be.
fn opened<'c>(
    slot: &'c mut Option<Connection>,
    what: &str,
    open: impl FnOnce() -> rusqlite::Result<Connection>,
) -> Option<&'c Connection> {
    if slot.is_none() {
        match open() {
            Ok(c) => *slot = Some(c),
            Err(e) => tracing::warn!(error = %e, "cannot open a connection {what}"),
        }
    }
    slot.as_ref()
}

/// Reads the keyring again when the database records an active key the codec does not
/// seal with. A key the source could not supply is asked for again only a minute later,
/// not every tick. On a connection of the thread's own, not a pooled one.
fn check_active_key(shared: &Shared, s: &mut Schedule) {
    if shared.config.keyring_source.is_none() {
        return;
    }
    let opened = opened(&mut s.keys_conn, "to check the active key", || {
        shared.target.open_reader(&shared.config)
    });
    let Some(conn) = opened else { return };
    match shared.key_rotated_elsewhere(conn) {
        Ok(Some(recorded))
            if !s.handled_active.is_some_and(|(id, at)| {
                id == recorded && at.elapsed() < Duration::from_secs(60)
            }) =>
        {
            // Only an answer that holds nothing usable is not asked for again every tick; a
            // read that failed is tried again (at most once a second).
            match shared.refresh_keyring() {
                Refresh::NothingNew | Refresh::Refused => {
                    s.handled_active = Some((recorded, Instant::now()));
                }
                Refresh::Installed | Refresh::Failed | Refresh::TooSoon | Refresh::NoSource => {}
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "checking the database's active key failed"),
    }
}

/// A passive checkpoint on the thread's own connection once the WAL is larger than the
/// configured size: it copies what it can without blocking writers or readers.
fn checkpoint_if_large(shared: &Shared, s: &mut Schedule) {
    if shared.target.memory {
        return;
    }
    let (_, wal) = shared.file_sizes();
    if wal < shared.config.checkpoint_bytes {
        return;
    }
    let opened = opened(&mut s.checkpointer, "for checkpoints", || {
        shared.target.open_maintenance(&shared.config)
    });
    if let Some(conn) = opened {
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            Ok(()) => {
                shared.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "checkpoint failed; will retry"),
        }
    }
}

const INSERT_METRIC: &str = "INSERT INTO metrics (at, name, kind, labels, value, count, p50, p95, p99) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// Writes the current counters and latency quantiles to the `metrics` table.
pub(crate) fn persist_metrics(shared: &Arc<Shared>) -> crate::Result<()> {
    let snapshot = crate::Store { shared: Arc::clone(shared) }.metrics();
    let at = shared.now().as_millis();
    shared.writer.run(move |ctx| {
        let mut stmt = ctx.conn().prepare_cached(INSERT_METRIC)?;
        for o in snapshot.ops.iter().filter(|o| o.count > 0) {
            let labels = serde_json::json!({ "op": o.op.name() }).to_string();
            stmt.execute(rusqlite::params![
                at,
                "operations",
                "counter",
                labels,
                o.count as f64,
                None::<i64>,
                None::<f64>,
                None::<f64>,
                None::<f64>
            ])?;
            stmt.execute(rusqlite::params![
                at,
                "operation_errors",
                "counter",
                labels,
                o.errors as f64,
                None::<i64>,
                None::<f64>,
                None::<f64>,
                None::<f64>
            ])?;
            stmt.execute(rusqlite::params![
                at,
                "operation_latency_ns",
                "histogram",
                labels,
                o.mean_ns as f64,
                i64::try_from(o.count).unwrap_or(i64::MAX),
                o.p50_ns as f64,
                o.p95_ns as f64,
                o.p99_ns as f64
            ])?;
        }
        let gauges: [(&str, f64); 7] = [
            ("acl_cache_hit_rate", snapshot.acl_cache_hit_rate),
            ("busy_retries", snapshot.busy_retries as f64),
            ("commit_groups", snapshot.commit_groups as f64),
            ("denials", snapshot.denials as f64),
            ("conflicts", snapshot.conflicts as f64),
            ("database_bytes", snapshot.db_bytes as f64),
            ("wal_bytes", snapshot.wal_bytes as f64),
        ];
        for (name, value) in gauges {
            stmt.execute(rusqlite::params![
                at,
                name,
                "gauge",
                "{}",
                value,
                None::<i64>,
                None::<f64>,
                None::<f64>,
                None::<f64>
            ])?;
        }
        Ok(())
    })
}

/// Deletes metrics past their retention, in bounded batches. (The change feed is
/// the audit log, which is never trimmed.)
fn trim(shared: &Arc<Shared>) -> crate::Result<()> {
    let now = shared.now().as_millis();
    let metrics_before =
        now - i64::try_from(shared.config.metrics_retention.as_millis()).unwrap_or(i64::MAX);
    loop {
        let n = shared.writer.run(move |ctx| {
            Ok(ctx
                .conn()
                .prepare_cached(
                    "DELETE FROM metrics WHERE id IN (SELECT id FROM metrics WHERE at < ?1 ORDER BY id LIMIT ?2)",
                )?
                .execute(rusqlite::params![metrics_before, TRIM_BATCH])?)
        })?;
        if (n as i64) < TRIM_BATCH {
            return Ok(());
        }
    }
}
