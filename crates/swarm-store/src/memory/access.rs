//! Read counts of records, gathered in memory and flushed by the background thread, so
//! that counting a read never turns the read into a write.
//!
//! A read appends its time and its record's key to one of [`SHARDS`] logs, the one its
//! thread was dealt (threads of every store in the process are dealt logs in turn, so
//! beyond that many they share): a copy of some forty bytes to the end of a buffer, with
//! no lookup. The background thread folds the logs into one table of counts every tick (a
//! quarter second), and a flush takes the table. Counting into the table on the read
//! itself cost a GET about 0.18 us, a sixth of what it adds to the raw read: the table
//! holds every record read since the last flush, so each probe missed the processor's
//! caches. Appending costs about 0.04 us; folding does the probes, off the read's path.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use parking_lot::Mutex;
use rusqlite::Connection;

use super::RecordKey;

/// Logs reads append to; a thread keeps to one.
const SHARDS: usize = 16;

/// Bytes a log holds at most: a read that would take it past this folds it itself instead of
/// leaving it to the background thread, a bound on memory when reads outrun the ticks or
/// the thread is not running. At about 40 bytes a read that is some 200,000 reads, about
/// two ticks of one thread reading as fast as it can; a process whose threads all read
/// flat out holds at most this (and [`KEPT_LOG`] of spare room) per log.
const LOG_LIMIT: usize = 8 << 20;

/// Room a log's spare buffer keeps across folds, so a thread that reads steadily appends
/// into memory it already has, and a burst does not hold its memory for ever.
const KEPT_LOG: usize = 1 << 20;

/// Entries the table keeps room for across flushes, as above.
const KEPT_TABLE: usize = 16 * 4096;

/// The parts of a record key as a log and the table hold them: three little-endian `u16`
/// lengths (swarm, namespace, key), then the three texts. Built from valid `&str`s only.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct AccessKey(Box<[u8]>);

/// Bytes before the texts of an encoded key.
const LENGTHS: usize = 6;

impl AccessKey {
    /// The swarm, namespace and key; `None` if the bytes are not an encoded key (they
    /// always are: the tracker builds them).
    pub(crate) fn parts(&self) -> Option<(&str, &str, &str)> {
        split_key(&self.0)
    }
}

/// Lets a fold look an entry up by the bytes in its log; the derived `Hash` and `Eq` are
/// those of the bytes, as `Borrow` requires.
impl std::borrow::Borrow<[u8]> for AccessKey {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl Ord for AccessKey {
    /// The order of the `memory` table's primary key: swarm, namespace, key, each by its
    /// bytes (SQLite's BINARY collation, and the order of `str`).
    fn cmp(&self, other: &Self) -> Ordering {
        split_bytes(&self.0).cmp(&split_bytes(&other.0))
    }
}

impl PartialOrd for AccessKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.parts() {
            Some((s, n, k)) => write!(f, "{s}/{n}/{k}"),
            None => write!(f, "<malformed access key>"),
        }
    }
}

/// The three lengths an encoded key starts with.
fn part_lengths(bytes: &[u8]) -> Option<[usize; 3]> {
    let len = |i: usize| bytes.get(i..i + 2).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])));
    Some([len(0)?, len(2)?, len(4)?])
}

/// Splits an encoded key into the bytes of its three texts.
fn split_bytes(bytes: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let [s, n, k] = part_lengths(bytes)?;
    let text = bytes.get(LENGTHS..)?;
    if text.len() != s + n + k {
        return None;
    }
    let (swarm, rest) = text.split_at(s);
    let (namespace, key) = rest.split_at(n);
    Some((swarm, namespace, key))
}

/// Splits an encoded key into its texts.
fn split_key(bytes: &[u8]) -> Option<(&str, &str, &str)> {
    let (s, n, k) = split_bytes(bytes)?;
    let text = |b| std::str::from_utf8(b).ok();
    Some((text(s)?, text(n)?, text(k)?))
}

/// The encoded form of `key`'s parts, or `None` when a part is longer than a `u16`
/// (possible only with limits raised far above the defaults).
fn lengths(key: &RecordKey) -> Option<[u16; 3]> {
    let l = |s: &str| u16::try_from(s.len()).ok();
    Some([l(key.swarm().as_str())?, l(key.namespace().as_str())?, l(key.key().as_str())?])
}

fn push_key(out: &mut Vec<u8>, key: &RecordKey, lens: [u16; 3]) {
    for l in lens {
        out.extend_from_slice(&l.to_le_bytes());
    }
    out.extend_from_slice(key.swarm().as_str().as_bytes());
    out.extend_from_slice(key.namespace().as_str().as_bytes());
    out.extend_from_slice(key.key().as_str().as_bytes());
}

/// Pending read counts: record -> (reads, last read at).
pub(crate) type Counts = HashMap<AccessKey, (u64, i64), Hasher>;

/// foldhash, seeded at random per process, so agent-chosen keys cannot be aimed at one
/// bucket; SipHash over the keys showed in profiles when counting ran on the read.
type Hasher = foldhash::fast::RandomState;

/// Reads appended by threads: each entry is the read's time (`i64`, little-endian) and
/// its encoded key.
#[derive(Default)]
struct Log {
    bytes: Vec<u8>,
    /// An emptied buffer from the last fold, put in place of `bytes` at the next.
    spare: Vec<u8>,
}

#[derive(Default)]
pub(crate) struct AccessTracker {
    logs: [Mutex<Log>; SHARDS],
    table: Mutex<Counts>,
}

fn bump(e: &mut (u64, i64), n: u64, at: i64) {
    e.0 = e.0.saturating_add(n);
    e.1 = e.1.max(at);
}

/// The log the calling thread appends to: threads are dealt logs in turn as they first
/// count a read.
fn my_log() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: usize = NEXT.fetch_add(1, AtomicOrdering::Relaxed) % SHARDS;
    }
    MINE.with(|m| *m)
}

impl AccessTracker {
    /// Counts one read of `key` at `at`.
    pub(crate) fn record(&self, key: &RecordKey, at: i64) {
        // Only records found are counted, and the schema bounds a stored namespace to 256
        // characters and a key to 1024 (at most 4 KiB), swarm ids to 128 bytes: a part
        // never exceeds a `u16`.
        let Some(lens) = lengths(key) else { return };
        let entry = 8 + LENGTHS + lens.iter().map(|&l| usize::from(l)).sum::<usize>();
        let log = &self.logs[my_log()];
        let mut held = log.lock();
        if held.bytes.len() + entry > LOG_LIMIT {
            self.fold_held(log, held);
            held = log.lock();
        }
        held.bytes.extend_from_slice(&at.to_le_bytes());
        push_key(&mut held.bytes, key, lens);
    }

    /// Folds every log into the table (the background thread does this every tick).
    pub(crate) fn fold(&self) {
        for log in &self.logs {
            let held = log.lock();
            if !held.bytes.is_empty() {
                self.fold_held(log, held);
            }
        }
    }

    /// Folds the log `held` (the lock of `log`) into the table. The table is locked before
    /// the log is let go: a take that finds the log emptied then waits for its entries to
    /// reach the table, so it sees every read that returned before it (shutdown's flush
    /// relies on that). Readers appending to the log wait only for the buffers to be
    /// swapped, not for the fold.
    fn fold_held(&self, log: &Mutex<Log>, mut held: parking_lot::MutexGuard<'_, Log>) {
        let spare = std::mem::take(&mut held.spare);
        let mut full = std::mem::replace(&mut held.bytes, spare);
        let mut table = self.table.lock();
        drop(held);
        let mut bytes = &full[..];
        while let Some((at, key, rest)) = next_entry(bytes) {
            bytes = rest;
            match table.get_mut(key) {
                Some(e) => bump(e, 1, at),
                None => {
                    table.insert(AccessKey(key.into()), (1, at));
                }
            }
        }
        debug_assert!(bytes.is_empty(), "a log held a malformed entry");
        drop(table);
        full.clear();
        full.shrink_to(KEPT_LOG);
        let mut held = log.lock();
        if held.spare.capacity() < full.capacity() {
            held.spare = full;
        }
    }

    /// Takes every pending count. The table is replaced by one with room for as many
    /// records, up to [`KEPT_TABLE`], so folds after a flush do not grow it again from
    /// nothing.
    pub(crate) fn take(&self) -> Counts {
        self.fold();
        let mut table = self.table.lock();
        let room = table.len().min(KEPT_TABLE);
        std::mem::replace(&mut *table, Counts::with_capacity_and_hasher(room, Hasher::default()))
    }

    /// Puts counts back after a failed flush, adding to anything counted since.
    pub(crate) fn restore(&self, counts: impl IntoIterator<Item = (AccessKey, (u64, i64))>) {
        let mut table = self.table.lock();
        for (k, (n, at)) in counts {
            bump(table.entry(k).or_insert((0, at)), n, at);
        }
    }
}

/// The first entry of a log and what follows it; `None` at the end (or at bytes that are
/// not an entry, which a log never holds).
fn next_entry(bytes: &[u8]) -> Option<(i64, &[u8], &[u8])> {
    let at = i64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let rest = &bytes[8..];
    let total = LENGTHS + part_lengths(rest)?.iter().sum::<usize>();
    let key = rest.get(..total)?;
    Some((at, key, &rest[total..]))
}

const APPLY: &str = "UPDATE memory SET access_count = access_count + ?4, \
    last_accessed_at = max(coalesce(last_accessed_at, 0), ?5) \
    WHERE swarm_id = ?1 AND namespace = ?2 AND key = ?3";

/// Adds the counts to their records (records deleted meanwhile are skipped).
pub(crate) fn apply_access_counts(
    conn: &Connection,
    counts: &[(AccessKey, (u64, i64))],
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(APPLY)?;
    for (k, (n, at)) in counts {
        let Some((swarm, namespace, key)) = k.parts() else { continue };
        stmt.execute(rusqlite::params![
            swarm,
            namespace,
            key,
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

    /// The tracker's form of `key`.
    fn enc(k: &str) -> AccessKey {
        let key = key(k);
        let mut out = Vec::new();
        push_key(&mut out, &key, lengths(&key).expect("short parts"));
        AccessKey(out.into())
    }

    #[test]
    fn counts_every_read_once_and_keeps_the_latest_time() {
        let t = AccessTracker::default();
        for i in 0..100 {
            t.record(&key("a"), 10 + i);
        }
        t.record(&key("b"), 5);
        t.fold();
        t.record(&key("b"), 3);
        let counts = t.take();
        assert_eq!(counts.len(), 2);
        assert_eq!(counts[&enc("a")], (100, 109));
        assert_eq!(counts[&enc("b")], (2, 5));
        assert!(t.take().is_empty(), "take leaves nothing behind");
    }

    #[test]
    fn restore_adds_to_what_was_counted_since() {
        let t = AccessTracker::default();
        t.record(&key("a"), 1);
        let counts = t.take();
        t.record(&key("a"), 7);
        t.restore(counts);
        assert_eq!(t.take()[&enc("a")], (2, 7));
    }

    #[test]
    fn reads_on_many_threads_while_folding_are_each_counted_once() {
        let t = std::sync::Arc::new(AccessTracker::default());
        let readers: Vec<_> = (0..8)
            .map(|n| {
                let t = std::sync::Arc::clone(&t);
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        t.record(&key(&format!("k{}", i % 50)), n * 10_000 + i);
                    }
                })
            })
            .collect();
        let mut total = Counts::default();
        let mut add = |c: Counts| {
            for (k, (n, at)) in c {
                bump(total.entry(k).or_insert((0, at)), n, at);
            }
        };
        while !readers.iter().all(std::thread::JoinHandle::is_finished) {
            t.fold();
            add(t.take());
        }
        for r in readers {
            r.join().expect("reader");
        }
        add(t.take());
        assert_eq!(total.len(), 50);
        assert_eq!(total.values().map(|(n, _)| n).sum::<u64>(), 8 * 5000);
        for i in 0..50 {
            assert_eq!(total[&enc(&format!("k{i}"))], (800, 7 * 10_000 + 4950 + i));
        }
    }

    #[test]
    fn a_log_past_its_limit_is_folded_by_the_reader() {
        let t = AccessTracker::default();
        let long = "x".repeat(1000);
        let per_read = 8 + LENGTHS + "s".len() + "ns".len() + long.len();
        let reads = LOG_LIMIT / per_read + 10;
        for i in 0..reads {
            t.record(&key(&long), i as i64);
        }
        let held: usize = t.logs.iter().map(|l| l.lock().bytes.len()).sum();
        assert!(held <= LOG_LIMIT, "the log holds {held} bytes");
        let room: usize = t.logs.iter().map(|l| l.lock().bytes.capacity()).sum();
        assert!(room <= LOG_LIMIT, "the log grew to {room} bytes of room");
        assert_eq!(t.take()[&enc(&long)], (reads as u64, reads as i64 - 1));
    }

    /// A take (what shutdown's flush does) sees every read whose `record` returned before
    /// it began, also while readers fold their full logs (a helper's review found that a
    /// fold let go of the log before it held the table, and a take in between saw neither).
    #[test]
    fn a_take_sees_every_read_that_returned_before_it() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as O};
        let t = Arc::new(AccessTracker::default());
        let done: Arc<Vec<AtomicU64>> = Arc::new((0..4).map(|_| AtomicU64::new(0)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..4)
            .map(|i| {
                let (t, done, stop) = (Arc::clone(&t), Arc::clone(&done), Arc::clone(&stop));
                std::thread::spawn(move || {
                    // About 1 KiB an entry: a log fills every 8,000 reads or so.
                    let k = key(&format!("{i}{}", "x".repeat(1000)));
                    while !stop.load(O::Relaxed) {
                        t.record(&k, 1);
                        done[i].fetch_add(1, O::Release);
                    }
                })
            })
            .collect();
        let mut total = 0u64;
        let mut short = None;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(2) && short.is_none() {
            let returned: u64 = done.iter().map(|d| d.load(O::Acquire)).sum();
            total += t.take().values().map(|(n, _)| n).sum::<u64>();
            if total < returned {
                short = Some(returned - total);
            }
        }
        stop.store(true, O::Relaxed);
        for r in readers {
            r.join().expect("reader");
        }
        assert_eq!(short, None, "reads that had returned were in none of the takes");
        let returned: u64 = done.iter().map(|d| d.load(O::Acquire)).sum();
        assert_eq!(total + t.take().values().map(|(n, _)| n).sum::<u64>(), returned);
    }

    #[test]
    fn a_flush_keeps_bounded_room() {
        let t = AccessTracker::default();
        for i in 0..(KEPT_TABLE * 2) {
            t.record(&key(&format!("k{i}")), 1);
        }
        assert_eq!(t.take().len(), KEPT_TABLE * 2);
        let table = t.table.lock();
        assert!(table.is_empty());
        assert!(table.capacity() <= KEPT_TABLE * 2, "capacity {}", table.capacity());
    }

    #[test]
    fn encoded_keys_read_back_and_sort_as_the_table_does() {
        let keys =
            [("s", "ns", "b"), ("s", "n", "zz"), ("s", "ns", "a\u{e9}\u{1f600}"), ("r", "ns", "a")];
        let mut ours: Vec<AccessKey> = Vec::new();
        let mut theirs: Vec<RecordKey> = Vec::new();
        for (s, n, k) in keys {
            let rk = RecordKey::parse(s, n, k).expect("valid key");
            let mut out = Vec::new();
            push_key(&mut out, &rk, lengths(&rk).expect("short parts"));
            let ak = AccessKey(out.into());
            assert_eq!(ak.parts(), Some((s, n, k)));
            ours.push(ak);
            theirs.push(rk);
        }
        ours.sort();
        theirs.sort();
        let ours: Vec<_> = ours.iter().map(|k| k.parts().expect("parts")).collect();
        let theirs: Vec<_> = theirs
            .iter()
            .map(|k| (k.swarm().as_str(), k.namespace().as_str(), k.key().as_str()))
            .collect();
        assert_eq!(ours, theirs);
        assert_eq!(AccessKey(vec![1, 0, 0, 0, 0, 0].into()).parts(), None, "truncated");
    }
}
