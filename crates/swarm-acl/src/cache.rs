use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use crate::Timestamp;

/// The seed's ACL cache: resolved values (principals) by key, each valid for a time to
/// live and only while the ACL generation it was built at is current.
///
/// Every grant, revoke, team membership or status change bumps the generation, so a
/// revoke takes effect on the next lookup even when the entry is young; the TTL (five
/// minutes by default, as in the seed) only bounds how long an unused entry lingers.
/// Denials are never cached: only resolved values are.
#[derive(Debug)]
pub struct AclCache<K, V> {
    entries: RwLock<HashMap<K, Entry<V>>>,
    ttl_ms: i64,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    generation: u64,
    expires_at: Timestamp,
}

/// Counters of an [`AclCache`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that found nothing current.
    pub misses: u64,
    /// Entries held now.
    pub entries: usize,
}

impl CacheStats {
    /// `hits / (hits + misses)`, or 0 before the first lookup.
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 { 0.0 } else { self.hits as f64 / total as f64 }
    }
}

impl<K: Eq + Hash, V: Clone> AclCache<K, V> {
    /// The seed's default time to live: five minutes.
    pub const DEFAULT_TTL_MS: i64 = 5 * 60 * 1000;

    /// A cache whose entries live `ttl_ms` and which holds at most `capacity` entries.
    pub fn new(ttl_ms: i64, capacity: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            ttl_ms: ttl_ms.max(0),
            capacity: capacity.max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The value for `key` if it was built at `generation` and has not outlived its TTL.
    pub fn get<Q>(&self, key: &Q, generation: u64, now: Timestamp) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lookup(key, now, |e| e.generation == generation).map(|(v, _)| v)
    }

    /// The value for `key` and the generation it was built at, if it has not outlived its
    /// TTL. For callers that learn the current generation from the same query that uses
    /// the value, and retry with a fresh value when the two differ.
    pub fn get_with_generation<Q>(&self, key: &Q, now: Timestamp) -> Option<(V, u64)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lookup(key, now, |_| true)
    }

    fn lookup<Q>(&self, key: &Q, now: Timestamp, ok: impl Fn(&Entry<V>) -> bool) -> Option<(V, u64)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let found = {
            let map = self.entries.read();
            map.get(key)
                .filter(|e| now < e.expires_at && ok(e))
                .map(|e| (e.value.clone(), e.generation))
        };
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Stores `value`, built at `generation`, for `key`.
    pub fn insert(&self, key: K, value: V, generation: u64, now: Timestamp) {
        let mut map = self.entries.write();
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, e| now < e.expires_at && e.generation >= generation);
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(key, Entry { value, generation, expires_at: now.plus_millis(self.ttl_ms) });
    }

    /// Forgets `key`.
    pub fn invalidate<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.write().remove(key);
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.entries.write().clear();
    }

    /// Hit and miss counters since creation.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.entries.read().len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_generation_misses_even_when_young() {
        let c: AclCache<String, u32> = AclCache::new(60_000, 10);
        let t = Timestamp::from_millis(0);
        c.insert("a".into(), 1, 5, t);
        assert_eq!(c.get("a", 5, t), Some(1));
        assert_eq!(c.get("a", 6, t), None);
        assert_eq!(c.get_with_generation("a", t), Some((1, 5)));
        let s = c.stats();
        assert_eq!((s.hits, s.misses), (2, 1));
        assert!((s.hit_rate() - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn entries_expire_after_ttl() {
        let c: AclCache<String, u32> = AclCache::new(1_000, 10);
        c.insert("a".into(), 1, 1, Timestamp::from_millis(0));
        assert_eq!(c.get("a", 1, Timestamp::from_millis(999)), Some(1));
        assert_eq!(c.get("a", 1, Timestamp::from_millis(1_000)), None);
    }

    #[test]
    fn capacity_is_bounded() {
        let c: AclCache<u32, u32> = AclCache::new(1_000, 3);
        let t = Timestamp::from_millis(0);
        for k in 0..10 {
            c.insert(k, k, 1, t);
            assert!(c.stats().entries <= 3);
        }
        assert_eq!(c.get(&9, 1, t), Some(9));
    }
}
