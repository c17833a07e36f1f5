//! Remembers message ids seen within the replay window.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use crate::channel::Topic;

/// Ids seen per topic, bounded in time and in size.
///
/// Messages older than the replay window are refused as expired before they get here, so an
/// id needs remembering only until its timestamp leaves the window. When the cache is full
/// the entries with the oldest timestamps are forgotten and `floor` rises to the newest
/// forgotten timestamp; messages at or below the floor are then refused as expired too, so a
/// flood can make old messages unacceptable early but can never get a replay accepted.
///
/// An entry is one shared text: the id's length in decimal, `:`, the id and the topic's key
/// ([`Topic::write_key`]). The length makes the text name one (topic, id) pair whatever the
/// two hold, without relying on the caller's id checks. It is built in `scratch` for the
/// lookup and allocated only for a fresh id (four copies of both texts per message showed in
/// profiles of delivery).
#[derive(Debug)]
pub(crate) struct ReplayCache {
    seen: HashSet<Arc<str>, Hasher>,
    by_time: BTreeSet<(u64, Arc<str>)>,
    capacity: usize,
    floor: Option<u64>,
    scratch: String,
}

/// foldhash, seeded at random per process, rather than SipHash (hashing each entry twice
/// showed in profiles of delivery): only messages whose MAC verified get here, so only holders
/// of the swarm's secret choose the texts hashed.
type Hasher = foldhash::fast::RandomState;

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
            seen: HashSet::default(),
            by_time: BTreeSet::new(),
            capacity: capacity.max(1),
            floor: None,
            scratch: String::new(),
        }
    }

    /// Forgets ids whose timestamps are older than `oldest_kept_ms`.
    pub(crate) fn sweep(&mut self, oldest_kept_ms: u64) {
        while let Some(first) = self.by_time.first() {
            if first.0 >= oldest_kept_ms {
                break;
            }
            if let Some((_, entry)) = self.by_time.pop_first() {
                self.seen.remove(&entry);
            }
        }
    }

    /// Checks message `id` of `topic`, and remembers it when it is fresh.
    pub(crate) fn check_and_insert(&mut self, topic: &Topic, id: &str, timestamp_ms: u64) -> Seen {
        if self.floor.is_some_and(|f| timestamp_ms <= f) {
            return Seen::TooOld;
        }
        self.scratch.clear();
        // Writing into a String cannot fail.
        let _ = write!(self.scratch, "{}:", id.len());
        self.scratch.push_str(id);
        topic.write_key(&mut self.scratch);
        if self.seen.contains(self.scratch.as_str()) {
            return Seen::Replayed;
        }
        while self.seen.len() >= self.capacity {
            let Some((ts, entry)) = self.by_time.pop_first() else { break };
            self.seen.remove(&entry);
            self.floor = Some(self.floor.map_or(ts, |f| f.max(ts)));
        }
        if self.floor.is_some_and(|f| timestamp_ms <= f) {
            return Seen::TooOld;
        }
        let entry: Arc<str> = Arc::from(self.scratch.as_str());
        self.by_time.insert((timestamp_ms, Arc::clone(&entry)));
        self.seen.insert(entry);
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

    fn t(name: &str) -> Topic {
        Topic::Channel(name.to_owned())
    }

    #[test]
    fn a_second_copy_on_the_same_topic_is_a_replay() {
        let mut c = ReplayCache::new(10);
        assert_eq!(c.check_and_insert(&t("t"), "a", 5), Seen::Fresh);
        assert_eq!(c.check_and_insert(&t("t"), "a", 5), Seen::Replayed);
        assert_eq!(
            c.check_and_insert(&t("u"), "a", 5),
            Seen::Fresh,
            "another topic is another path"
        );
    }

    #[test]
    fn a_channel_and_a_pattern_of_one_text_are_two_paths() {
        let mut c = ReplayCache::new(10);
        let pattern = Topic::Pattern("t".to_owned());
        assert_eq!(c.check_and_insert(&t("t"), "a", 5), Seen::Fresh);
        assert_eq!(c.check_and_insert(&pattern, "a", 5), Seen::Fresh);
        assert_eq!(c.check_and_insert(&pattern, "a", 5), Seen::Replayed);
        assert_eq!(c.len(), 2);
    }

    /// Pairs whose texts run together when joined plainly ("a" on channel "p b" and "ac " on
    /// pattern "b"), or joined with a newline when an id holds one ("a" on channel "x\nc y" and
    /// "a\nc x" on channel "y"): the cache does not rely on the caller's id checks.
    #[test]
    fn no_two_pairs_share_an_entry_whatever_their_texts() {
        let mut c = ReplayCache::new(10);
        assert_eq!(c.check_and_insert(&t("p b"), "a", 5), Seen::Fresh);
        assert_eq!(c.check_and_insert(&Topic::Pattern("b".to_owned()), "ac ", 5), Seen::Fresh);
        assert_eq!(c.check_and_insert(&t("x\nc y"), "a", 5), Seen::Fresh);
        assert_eq!(c.check_and_insert(&t("y"), "a\nc x", 5), Seen::Fresh);
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn sweeping_forgets_only_old_ids() {
        let mut c = ReplayCache::new(10);
        c.check_and_insert(&t("t"), "old", 1);
        c.check_and_insert(&t("t"), "new", 100);
        c.sweep(50);
        assert_eq!(c.len(), 1);
        assert_eq!(c.check_and_insert(&t("t"), "new", 100), Seen::Replayed);
    }

    #[test]
    fn a_full_cache_raises_the_floor_instead_of_forgetting_silently() {
        let mut c = ReplayCache::new(3);
        for (i, ts) in [(0, 10), (1, 30), (2, 20)] {
            assert_eq!(c.check_and_insert(&t("t"), &i.to_string(), ts), Seen::Fresh);
        }
        // Full: the oldest (ts 10) is evicted and the floor becomes 10.
        assert_eq!(c.check_and_insert(&t("t"), "3", 40), Seen::Fresh);
        assert_eq!(
            c.check_and_insert(&t("t"), "0", 10),
            Seen::TooOld,
            "an evicted id cannot be replayed"
        );
        assert_eq!(c.check_and_insert(&t("t"), "1", 30), Seen::Replayed);
        assert_eq!(c.len(), 3);
    }
}
