//! What a coordination relay needs from the store: the outbox written by the event bus,
//! named cursors over the durable feeds, and wake-ups for local watchers when another
//! process announces a change. The relay itself lives above (it talks to Redis through
//! swarm-coord, which the store never sees).

use serde::Serialize;
use swarm_acl::Identity;

use crate::error::{Result, StoreError};
use crate::sql::{i64_of, u64_of};
use crate::store::Store;

/// One outbox message waiting to be relayed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OutboxMessage {
    /// Position in the outbox.
    pub seq: u64,
    /// The swarm it belongs to.
    pub swarm: String,
    /// The channel to publish on, such as `swarm:s1:events`.
    pub channel: String,
    /// The message (JSON).
    pub message: serde_json::Value,
    /// When it was written.
    pub created_at: i64,
    /// Relay attempts so far.
    pub attempts: u32,
}

impl Store {
    fn require_system_identity(&self, who: &Identity) -> Result<()> {
        if *who == Identity::System {
            Ok(())
        } else {
            Err(StoreError::PermissionDenied("relaying is done by the system principal".into()))
        }
    }

    /// Outbox messages of `swarm` not yet relayed, oldest first.
    pub fn outbox_pending(
        &self,
        who: &Identity,
        swarm: &swarm_acl::SwarmId,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>> {
        self.require_system_identity(who)?;
        self.shared.check_open()?;
        let conn = self.shared.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT seq, swarm_id, channel, message, created_at, attempts FROM outbox \
             WHERE relayed_at IS NULL AND swarm_id = ?1 ORDER BY seq LIMIT ?2",
        )?;
        let limit = i64::try_from(limit.clamp(1, 10_000)).unwrap_or(10_000);
        let rows = stmt.query_map(rusqlite::params![swarm.as_str(), limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, swarm, channel, message, created_at, attempts) = row?;
            let message = serde_json::from_str(&message)
                .map_err(|e| StoreError::Corrupt(format!("outbox {seq}: {e}")))?;
            out.push(OutboxMessage {
                seq: u64_of(seq),
                swarm,
                channel,
                message,
                created_at,
                attempts: u32::try_from(attempts).unwrap_or(0),
            });
        }
        Ok(out)
    }

    /// Marks outbox messages relayed (`ok`) or counts a failed attempt. Relayed messages
    /// older than a day are deleted on the way.
    pub fn outbox_settle(&self, who: &Identity, seqs: &[u64], ok: bool) -> Result<()> {
        self.require_system_identity(who)?;
        if seqs.is_empty() {
            return Ok(());
        }
        let seqs = seqs.to_vec();
        self.shared.writer.run(move |ctx| {
            let now = crate::store::now_ms();
            // A failed attempt only counts; a relayed message gets its time.
            let relayed_at = ok.then_some(now);
            let mut stmt = ctx.conn().prepare_cached(
                "UPDATE outbox SET relayed_at = ?2, attempts = attempts + 1 WHERE seq = ?1 AND relayed_at IS NULL",
            )?;
            for s in &seqs {
                stmt.execute(rusqlite::params![i64_of(*s), relayed_at])?;
            }
            drop(stmt);
            if ok {
                ctx.conn()
                    .prepare_cached("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE relayed_at IS NOT NULL AND relayed_at < ?1 LIMIT 1000)")?
                    .execute([now - 24 * 3600 * 1000])?;
            }
            Ok(())
        })
    }

    /// The value of a named cursor (`None` if never set).
    pub fn cursor(&self, who: &Identity, name: &str) -> Result<Option<u64>> {
        self.require_system_identity(who)?;
        crate::domain::check_id("cursor", name)?;
        let conn = self.shared.pool.get()?;
        let v: Option<i64> = rusqlite::OptionalExtension::optional(
            conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
                .query_row([format!("cursor:{name}")], |r| r.get(0)),
        )?;
        Ok(v.map(u64_of))
    }

    /// Moves a named cursor from `expected` (`None`: never set) to `to`; `false` (and no
    /// change) if another process moved it first. Cursors only move forward.
    pub fn advance_cursor(
        &self,
        who: &Identity,
        name: &str,
        expected: Option<u64>,
        to: u64,
    ) -> Result<bool> {
        self.require_system_identity(who)?;
        crate::domain::check_id("cursor", name)?;
        if expected.is_some_and(|e| to < e) {
            return Err(StoreError::invalid("cursors only move forward"));
        }
        let key = format!("cursor:{name}");
        self.shared.writer.run(move |ctx| {
            let current: Option<i64> = rusqlite::OptionalExtension::optional(
                ctx.conn().prepare_cached("SELECT value FROM meta WHERE key = ?1")?.query_row([&key], |r| r.get(0)),
            )?;
            if current.map(u64_of) != expected {
                return Ok(false);
            }
            ctx.conn()
                .prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")?
                .execute(rusqlite::params![key, i64_of(to)])?;
            Ok(true)
        })
    }

    /// Outbox messages waiting, for health reports.
    pub fn outbox_backlog(&self) -> Result<u64> {
        self.shared.check_open()?;
        let conn = self.shared.pool.get()?;
        Ok(u64_of(conn.query_row(
            "SELECT count(*) FROM outbox WHERE relayed_at IS NULL",
            [],
            |r| r.get(0),
        )?))
    }

    /// Wakes this process's memory watchers (another process announced a change).
    pub fn notify_memory_changed(&self) {
        self.shared.changed.notify();
    }

    /// Wakes this process's event watchers (another process announced an event).
    pub fn notify_events_changed(&self) {
        self.shared.events_changed.notify();
    }

    /// Drops every cached principal (another process announced a grant change; the
    /// generation check would catch it on the next read anyway, this only saves the
    /// retry).
    pub fn invalidate_principals(&self) {
        self.shared.principals.clear();
    }
}
