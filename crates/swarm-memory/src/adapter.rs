//! The seed's MemoryStoreAdapter: a namespace-bound handle acting as one session.

use std::time::Duration;

use swarm_store::{
    Expect, Key, KeyPattern, MemoryStats, Namespace, Record, RecordKey, SetOptions, Value, Written,
};

use crate::error::Result;
use crate::events::SystemEvent;
use crate::system::{Session, SwarmMemory};

/// Memory operations in one namespace of the session's swarm, as the session's identity.
/// Every call goes through the store's ACL checks; the adapter adds no privilege.
#[derive(Clone, Debug)]
pub struct MemoryAdapter {
    system: SwarmMemory,
    session: Session,
    namespace: Namespace,
}

impl MemoryAdapter {
    pub(crate) fn new(system: SwarmMemory, session: Session, namespace: &str) -> Result<Self> {
        let namespace = Namespace::with_limits(namespace, system.store().config().limits())?;
        Ok(Self { system, session, namespace })
    }

    /// The namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The session the adapter acts as.
    pub fn session(&self) -> &Session {
        &self.session
    }

    fn key(&self, key: &str) -> Result<RecordKey> {
        let k = Key::with_limits(key, self.system.store().config().limits())?;
        Ok(RecordKey::new(self.session.swarm().clone(), self.namespace.clone(), k))
    }

    fn report<T>(&self, op: &'static str, key: Option<&str>, r: &Result<T>) {
        self.system.emit(SystemEvent::MemoryOperation {
            op,
            actor: self.session.identity().audit_name().to_owned(),
            namespace: self.namespace.to_string(),
            key: key.map(str::to_owned),
            ok: r.is_ok(),
        });
    }

    fn run<T>(
        &self,
        op: &'static str,
        key: Option<&str>,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let r = f();
        self.report(op, key, &r);
        r
    }

    /// The value, or `None` when absent, expired or not visible.
    pub fn get(&self, key: &str) -> Result<Option<Value>> {
        Ok(self.get_record(key)?.map(|r| r.value))
    }

    /// The record with its metadata (version, level, owner, expiry...).
    pub fn get_record(&self, key: &str) -> Result<Option<Record>> {
        self.run("get", Some(key), || {
            Ok(self.system.store().get(self.session.identity(), &self.key(key)?)?)
        })
    }

    /// Writes a value (options: level, team, TTL, tags, expected version).
    pub fn set(&self, key: &str, value: impl Into<Value>, opts: &SetOptions) -> Result<Written> {
        let value = value.into();
        self.run("set", Some(key), || {
            Ok(self.system.store().set(self.session.identity(), &self.key(key)?, value, opts)?)
        })
    }

    /// Writes a value that expires after `ttl`.
    pub fn setex(
        &self,
        key: &str,
        ttl: Duration,
        value: impl Into<Value>,
        opts: &SetOptions,
    ) -> Result<Written> {
        let value = value.into();
        self.run("setex", Some(key), || {
            Ok(self.system.store().setex(
                self.session.identity(),
                &self.key(key)?,
                ttl,
                value,
                opts,
            )?)
        })
    }

    /// Deletes; `false` when absent or not visible.
    pub fn delete(&self, key: &str) -> Result<bool> {
        self.run("delete", Some(key), || {
            Ok(self.system.store().delete(self.session.identity(), &self.key(key)?, None)?)
        })
    }

    /// Deletes only if the record is at `version`.
    pub fn delete_if_version(&self, key: &str, version: u64) -> Result<bool> {
        self.run("delete", Some(key), || {
            Ok(self.system.store().delete(
                self.session.identity(),
                &self.key(key)?,
                Some(Expect::Version(version)),
            )?)
        })
    }

    /// Whether a visible record exists.
    pub fn has(&self, key: &str) -> Result<bool> {
        self.run("has", Some(key), || {
            Ok(self.system.store().has(self.session.identity(), &self.key(key)?)?)
        })
    }

    /// Deletes every record of the namespace the session may delete; returns how many.
    pub fn clear(&self) -> Result<u64> {
        self.run("clear", None, || {
            Ok(self.system.store().clear(
                self.session.identity(),
                self.session.swarm(),
                &self.namespace,
            )?)
        })
    }

    /// Several values in one snapshot, in order.
    pub fn mget(&self, keys: &[&str]) -> Result<Vec<Option<Value>>> {
        self.run("mget", None, || {
            let keys: Vec<RecordKey> = keys.iter().map(|k| self.key(k)).collect::<Result<_>>()?;
            Ok(self
                .system
                .store()
                .mget(self.session.identity(), &keys)?
                .into_iter()
                .map(|r| r.map(|r| r.value))
                .collect())
        })
    }

    /// Several values in one transaction: all or none.
    pub fn mset<K: AsRef<str>>(
        &self,
        pairs: Vec<(K, Value)>,
        opts: &SetOptions,
    ) -> Result<Vec<Written>> {
        self.run("mset", None, || {
            let items: Vec<(RecordKey, Value)> = pairs
                .into_iter()
                .map(|(k, v)| Ok((self.key(k.as_ref())?, v)))
                .collect::<Result<_>>()?;
            Ok(self.system.store().mset(self.session.identity(), items, opts)?)
        })
    }

    /// Keys matching a glob (`*`, `?`, `\` escapes), up to `limit`, in order.
    pub fn keys(&self, pattern: &str, limit: usize) -> Result<Vec<String>> {
        self.run("keys", Some(pattern), || {
            let p = KeyPattern::parse(pattern)?;
            let keys = self.system.store().keys(
                self.session.identity(),
                self.session.swarm(),
                &self.namespace,
                &p,
                limit,
            )?;
            Ok(keys.into_iter().map(|k| k.to_string()).collect())
        })
    }

    /// Adds 1 atomically; returns the new value.
    pub fn incr(&self, key: &str) -> Result<i64> {
        self.incr_by(key, 1)
    }

    /// Adds `by` atomically; returns the new value.
    pub fn incr_by(&self, key: &str, by: i64) -> Result<i64> {
        self.run("incr", Some(key), || {
            Ok(self.system.store().incr(
                self.session.identity(),
                &self.key(key)?,
                by,
                &SetOptions::new(),
            )?)
        })
    }

    /// Subtracts 1 atomically; returns the new value.
    pub fn decr(&self, key: &str) -> Result<i64> {
        self.decr_by(key, 1)
    }

    /// Subtracts `by` atomically; returns the new value.
    pub fn decr_by(&self, key: &str, by: i64) -> Result<i64> {
        self.run("decr", Some(key), || {
            Ok(self.system.store().decr(
                self.session.identity(),
                &self.key(key)?,
                by,
                &SetOptions::new(),
            )?)
        })
    }

    /// Counts of what the session can see in its swarm.
    pub fn stats(&self) -> Result<MemoryStats> {
        self.run("stats", None, || {
            Ok(self.system.store().stats(self.session.identity(), Some(self.session.swarm()))?)
        })
    }
}
