//! Read counts of records, gathered in memory and flushed by the background thread, so
//! that counting a read never turns the read into a write.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::Connection;

use super::RecordKey;

const SHARDS: usize = 16;

/// Pending read counts: record -> (reads, last read at).
pub(crate) type Counts = HashMap<RecordKey, (u64, i64)>;

#[derive(Default)]
pub(crate) struct AccessTracker {
    shards: Arc<[Mutex<Counts>; SHARDS]>,
}

impl AccessTracker {
    fn shard(&self, key: &RecordKey) -> &Mutex<Counts> {
        use std::hash::Hasher;
        // A fixed hasher, so one key always lands in the same shard.
        let mut fixed = std::hash::DefaultHasher::new();
        fixed.write(key.key().as_str().as_bytes());
        &self.shards[(fixed.finish() as usize) % SHARDS]
    }

    /// Counts one read of `key` at `at`.
    pub(crate) fn record(&self, key: &RecordKey, at: i64) {
        let mut m = self.shard(key).lock();
        let e = m.entry(key.clone()).or_insert((0, at));
        e.0 += 1;
        e.1 = e.1.max(at);
    }

    /// Takes every pending count.
    pub(crate) fn take(&self) -> Counts {
        let mut out = Counts::new();
        for s in self.shards.iter() {
            out.extend(std::mem::take(&mut *s.lock()));
        }
        out
    }

    /// Puts counts back after a failed flush, adding to anything counted since.
    pub(crate) fn restore(&self, counts: Counts) {
        for (k, (n, at)) in counts {
            let mut m = self.shard(&k).lock();
            let e = m.entry(k).or_insert((0, at));
            e.0 += n;
            e.1 = e.1.max(at);
        }
    }

    pub(crate) fn clone_handle(&self) -> AccessTracker {
        AccessTracker { shards: Arc::clone(&self.shards) }
    }
}

const APPLY: &str = "UPDATE memory SET access_count = access_count + ?4, \
    last_accessed_at = max(coalesce(last_accessed_at, 0), ?5) \
    WHERE swarm_id = ?1 AND namespace = ?2 AND key = ?3";

/// Adds the counts to their records (records deleted meanwhile are skipped).
pub(crate) fn apply_access_counts(conn: &Connection, counts: &Counts) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(APPLY)?;
    for (k, (n, at)) in counts {
        stmt.execute(rusqlite::params![
            k.swarm().as_str(),
            k.namespace().as_str(),
            k.key().as_str(),
            i64::try_from(*n).unwrap_or(i64::MAX),
            at
        ])?;
    }
    Ok(())
}
