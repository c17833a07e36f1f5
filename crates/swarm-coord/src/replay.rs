//! Remembers message ids seen within the replay window.

use std::collections::{BTreeSet, HashSet};

/// Ids seen per topic, bounded in time and in size.
///
/// Messages older than the replay window are refused as expired before they get here, so an
/// id needs remembering only until its timestamp leaves the window. When the cache is full
/// the entries with the oldest timestamps are forgotten and `floor` rises to the newest
/// forgotten timestamp; messages at or below the floor are then refused as expired too, so a
/// flood can make old messages unacceptable early but can never get a replay accepted.
#[derive(Debug)]
pub(crate) struct ReplayCache {
    seen: HashSet<(String, String)>,
    by_time: BTreeSet<(u64, String, String)>,
    capacity: usize,
    floor: Option<u64>,
}

/// The outcome of [`ReplayCache::check_and_insert`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// New: remembered now.
    Fresh,
    /// Seen before within the window.
    Replayed,
    /// At or below the floor raised by evictions: cannot be checked, so refused.
    TooOld,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            seen: HashSet::new(),
            by_time: BTreeSet::new(),
            capacity: capacity.max(1),
            floor: None,
        }
    }

    /// Forgets ids whose timestamps are older than `oldest_kept_ms`.
    pub(crate) fn sweep(&mut self, oldest_kept_ms: u64) {
        while let Some(first) = self.by_time.first() {
            if first.0 >= oldest_kept_ms {
                break;
            }
            if let Some((_, topic, id)) = self.by_time.pop_first() {
                self.seen.remove(&(topic, id));
            }
        }
    }

    pub(crate) fn check_and_insert(&mut self, topic: &str, id: &str, timestamp_ms: u64) -> Seen {
        if self.floor.is_some_and(|f| timestamp_ms <= f) {
            return Seen::TooOld;
        }
        let key = (topic.to_owned(), id.to_owned());
        if self.seen.contains(&key) {
            return Seen::Replayed;
        }
        while self.seen.len() >= self.capacity {
            let Some((ts, topic, id)) = self.by_time.pop_first() else { break };
            self.seen.remove(&(topic, id));
            self.floor = Some(self.floor.map_or(ts, |f| f.max(ts)));
        }
        if self.floor.is_some_and(|f| timestamp_ms <= f) {
            return Seen::TooOld;
        }
        self.by_time.insert((timestamp_ms, key.0.clone(), key.1.clone()));
        self.seen.insert(key);
        Seen::Fresh
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_copy_on_the_same_topic_is_a_replay() {
        let mut c = ReplayCache::new(10);
        assert_eq!(c.check_and_insert("t", "a", 5), Seen::Fresh);
        assert_eq!(c.check_and_insert("t", "a", 5), Seen::Replayed);
        assert_eq!(c.check_and_insert("u", "a", 5), Seen::Fresh, "another topic is another path");
    }

    #[test]
    fn sweeping_forgets_only_old_ids() {
        let mut c = ReplayCache::new(10);
        c.check_and_insert("t", "old", 1);
        c.check_and_insert("t", "new", 100);
        c.sweep(50);
        assert_eq!(c.len(), 1);
        assert_eq!(c.check_and_insert("t", "new", 100), Seen::Replayed);
    }

    #[test]
    fn a_full_cache_raises_the_floor_instead_of_forgetting_silently() {
        let mut c = ReplayCache::new(3);
        for (i, ts) in [(0, 10), (1, 30), (2, 20)] {
            assert_eq!(c.check_and_insert("t", &i.to_string(), ts), Seen::Fresh);
        }
        // Full: the oldest (ts 10) is evicted and the floor becomes 10.
        assert_eq!(c.check_and_insert("t", "3", 40), Seen::Fresh);
        assert_eq!(
            c.check_and_insert("t", "0", 10),
            Seen::TooOld,
            "an evicted id cannot be replayed"
        );
        assert_eq!(c.check_and_insert("t", "1", 30), Seen::Replayed);
        assert_eq!(c.len(), 3);
    }
}
