//! Read counts of records, gathered in memory and flushed by the background thread, so
//! that counting a read never turns the read into a write.

use std::collections::HashMap;
use std::hash::BuildHasher;

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

/// A 64-bit fingerprint of a record key under a random seed. The pending tables are keyed
/// by it, so a probe compares one word held in the table instead of following three shared
/// strings (cache misses that showed in profiles of GET). foldhash is fast, not a keyed
/// pseudo-random function, so keys chosen to collide cannot be ruled out, and 64 bits can
/// collide by chance: the key is compared on every hit, and a different key under the same
/// fingerprint is counted in a small side table instead. One hash per read (a second seed
/// for 128 bits also showed in profiles of GET) is therefore enough.
type Fingerprint = u64;

/// One record's pending reads.
struct Pending {
    key: RecordKey,
    reads: u64,
    last: i64,
}

#[derive(Default)]
struct Shard {
    by_fingerprint: HashMap<Fingerprint, Pending, Hasher>,
    /// Keys whose fingerprint another pending key already holds.
    collided: Counts,
}

#[derive(Default)]
pub(crate) struct AccessTracker {
    shards: [Mutex<Shard>; SHARDS],
    /// The seed of the fingerprint.
    seed: Hasher,
}

fn bump(reads: &mut u64, last: &mut i64, n: u64, at: i64) {
    *reads = reads.saturating_add(n);
    *last = (*last).max(at);
}

impl AccessTracker {
    fn fingerprint(&self, key: &RecordKey) -> Fingerprint {
        self.seed.hash_one(key)
    }

    fn add(&self, key: &RecordKey, reads: u64, last: i64) {
        self.add_at(self.fingerprint(key), key, reads, last);
    }

    fn add_at(&self, fp: Fingerprint, key: &RecordKey, reads: u64, last: i64) {
        // The top bits pick the shard: the table inside hashes the whole fingerprint again.
        let mut shard = self.shards[(fp >> 60) as usize % SHARDS].lock();
        let Shard { by_fingerprint, collided } = &mut *shard;
        match by_fingerprint.get_mut(&fp) {
            Some(p) if p.key == *key => bump(&mut p.reads, &mut p.last, reads, last),
            Some(_) => {
                let e = collided.entry(key.clone()).or_insert((0, last));
                bump(&mut e.0, &mut e.1, reads, last);
            }
            None => {
                by_fingerprint.insert(fp, Pending { key: key.clone(), reads, last });
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
            let mut shard = s.lock();
            out.extend(shard.by_fingerprint.drain().map(|(_, p)| (p.key, (p.reads, p.last))));
            shard.by_fingerprint.shrink_to(KEPT_CAPACITY);
            for (key, (n, at)) in std::mem::take(&mut shard.collided) {
                let e = out.entry(key).or_insert((0, at));
                bump(&mut e.0, &mut e.1, n, at);
            }
        }
        out
    }

    /// Puts counts back after a failed flush, adding to anything counted since.
    pub(crate) fn restore(&self, counts: impl IntoIterator<Item = (RecordKey, (u64, i64))>) {
        for (k, (n, at)) in counts {
            self.add(&k, n, at);
        }
    }
}

const APPLY: &str = "UPDATE memory SET access_count = access_count + ?4, \
    last_accessed_at = max(coalesce(last_accessed_at, 0), ?5) \
    WHERE swarm_id = ?1 AND namespace = ?2 AND key = ?3";

/// Adds the counts to their records (records deleted meanwhile are skipped).
pub(crate) fn apply_access_counts(
    conn: &Connection,
    counts: &[(RecordKey, (u64, i64))],
) -> rusqlite::Result<()> {
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
    fn keys_sharing_a_fingerprint_keep_their_own_counts() {
        let t = AccessTracker::default();
        let fp = 0xfeed_u64 << 32;
        t.add_at(fp, &key("a"), 1, 10);
        t.add_at(fp, &key("b"), 1, 20);
        t.add_at(fp, &key("b"), 2, 15);
        t.add_at(fp, &key("a"), 1, 11);
        let counts = t.take();
        assert_eq!(counts.len(), 2);
        assert_eq!(counts[&key("a")], (2, 11));
        assert_eq!(counts[&key("b")], (3, 20));
        assert!(t.take().is_empty());
    }

    #[test]
    fn a_flush_keeps_bounded_room() {
        let t = AccessTracker::default();
        for i in 0..(SHARDS * KEPT_CAPACITY * 2) {
            t.record(&key(&format!("k{i}")), 1);
        }
        assert_eq!(t.take().len(), SHARDS * KEPT_CAPACITY * 2);
        for s in t.shards.iter() {
            let m = &s.lock().by_fingerprint;
            assert!(m.is_empty());
            assert!(m.capacity() <= KEPT_CAPACITY * 2, "capacity {}", m.capacity());
        }
    }
}
