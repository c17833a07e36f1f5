//! Read counts of records, gathered in memory and flushed by the background thread, so
//! that counting a read never turns the read into a write.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::Connection;

use super::RecordKey;

const SHARDS: usize = 16;

/// Entries a shard's table keeps room for across flushes: a burst over many keys does not
/// hold its memory for ever.
const KEPT_CAPACITY: usize = 4096;

/// foldhash, seeded at random per process: counting runs on every read, and SipHash over
/// the three parts of a key showed in profiles of GET; a random seed keeps agent-chosen
/// keys from being aimed at one bucket.
type Hasher = foldhash::fast::RandomState;

/// Pending read counts: record -> (reads, last read at).
pub(crate) type Counts = HashMap<RecordKey, (u64, i64), Hasher>;

/// A 128-bit fingerprint of a record key under two random seeds. The pending tables are
/// keyed by it, so a lookup compares two words held in the table instead of following
/// three shared strings per probe (cache misses that showed in profiles of GET). Two keys
/// of one process sharing a fingerprint, which would merge their read counts (statistics,
/// never data or access), has probability about 2^-128 per pair.
type Fingerprint = u128;

/// One record's pending reads.
struct Pending {
    key: RecordKey,
    reads: u64,
    last: i64,
}

type Shard = HashMap<Fingerprint, Pending, Hasher>;

pub(crate) struct AccessTracker {
    shards: Arc<[Mutex<Shard>; SHARDS]>,
    /// The two seeds of the fingerprint; shared by every handle.
    seeds: Arc<(Hasher, Hasher)>,
}

impl Default for AccessTracker {
    fn default() -> Self {
        AccessTracker {
            shards: Arc::default(),
            seeds: Arc::new((Hasher::default(), Hasher::default())),
        }
    }
}

impl AccessTracker {
    fn fingerprint(&self, key: &RecordKey) -> Fingerprint {
        (u128::from(self.seeds.0.hash_one(key)) << 64) | u128::from(self.seeds.1.hash_one(key))
    }

    fn shard(&self, fp: Fingerprint) -> &Mutex<Shard> {
        // The top bits: the table inside the shard hashes the whole fingerprint again.
        &self.shards[(fp >> 124) as usize % SHARDS]
    }

    fn add(&self, key: &RecordKey, reads: u64, last: i64) {
        let fp = self.fingerprint(key);
        let mut m = self.shard(fp).lock();
        match m.get_mut(&fp) {
            Some(p) => {
                p.reads = p.reads.saturating_add(reads);
                p.last = p.last.max(last);
            }
            None => {
                m.insert(fp, Pending { key: key.clone(), reads, last });
            }
        }
    }

    /// Counts one read of `key` at `at`.
    pub(crate) fn record(&self, key: &RecordKey, at: i64) {
        self.add(key, 1, at);
    }

    /// Takes every pending count. Each shard keeps its table's capacity, up to
    /// [`KEPT_CAPACITY`], so reads after a flush do not grow it again from nothing
    /// (rehashing showed in profiles of GET).
    pub(crate) fn take(&self) -> Counts {
        let mut out = Counts::default();
        for s in self.shards.iter() {
            let mut m = s.lock();
            out.extend(m.drain().map(|(_, p)| (p.key, (p.reads, p.last))));
            m.shrink_to(KEPT_CAPACITY);
        }
        out
    }

    /// Puts counts back after a failed flush, adding to anything counted since.
    pub(crate) fn restore(&self, counts: Counts) {
        for (k, (n, at)) in counts {
            self.add(&k, n, at);
        }
    }

    pub(crate) fn clone_handle(&self) -> AccessTracker {
        AccessTracker { shards: Arc::clone(&self.shards), seeds: Arc::clone(&self.seeds) }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> RecordKey {
        RecordKey::parse("s", "ns", k).expect("valid key")
    }

    #[test]
    fn counts_every_read_once_and_keeps_the_latest_time() {
        let t = AccessTracker::default();
        for i in 0..100 {
            t.record(&key("a"), 10 + i);
        }
        t.record(&key("b"), 5);
        t.record(&key("b"), 3);
        let counts = t.take();
        assert_eq!(counts.len(), 2);
        assert_eq!(counts[&key("a")], (100, 109));
        assert_eq!(counts[&key("b")], (2, 5));
        assert!(t.take().is_empty(), "take leaves nothing behind");
    }

    #[test]
    fn restore_adds_to_what_was_counted_since() {
        let t = AccessTracker::default();
        t.record(&key("a"), 1);
        let counts = t.take();
        t.record(&key("a"), 7);
        t.restore(counts);
        assert_eq!(t.take()[&key("a")], (2, 7));
    }

    #[test]
    fn a_flush_keeps_bounded_room() {
        let t = AccessTracker::default();
        for i in 0..(SHARDS * KEPT_CAPACITY * 2) {
            t.record(&key(&format!("k{i}")), 1);
        }
        assert_eq!(t.take().len(), SHARDS * KEPT_CAPACITY * 2);
        for s in t.shards.iter() {
            let m = s.lock();
            assert!(m.is_empty());
            assert!(m.capacity() <= KEPT_CAPACITY * 2, "capacity {}", m.capacity());
        }
    }
}
