//! State shared by the jobs of one commit group, and the context each job works in.

use rusqlite::Connection;
use swarm_acl::{AgentId, Principal};

use crate::audit::{self, AuditEntry, GENESIS};
use crate::error::{Result, StoreError};

const READ_META: &str = "SELECT \
    (SELECT value FROM meta WHERE key = 'acl_generation'), \
    (SELECT coalesce((SELECT value FROM meta WHERE key = 'version_offset'), 0)), \
    (SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1), \
    (SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1), \
    (SELECT at FROM audit_log ORDER BY seq DESC LIMIT 1)";
const WRITE_META: &str = "UPDATE meta SET value = ?2 WHERE key = ?1";
const UPSERT_META: &str = "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// Counters read at the start of a group and written back at its end.
pub(crate) struct GroupState {
    generation: u64,
    generation_start: u64,
    pub(crate) audit_seq: u64,
    pub(crate) audit_hash: [u8; 32],
    /// The newest audit row's time: a new row's time is never earlier, so times never
    /// decrease along the chain and a time range is found by searching the sequence.
    pub(crate) audit_at: i64,
    /// Added to an audit sequence number to make a version (see [`WriteCtx::next_version`]).
    version_offset: u64,
    /// Whether the group appended audit rows that no record's version witnesses (so the
    /// head must be recorded in meta for truncation to show).
    pub(crate) head_unwitnessed: bool,
    after_commit: Vec<Box<dyn FnOnce() + Send>>,
    principals: Vec<(AgentId, Principal)>,
}

/// Where a job started, so its effects on the group state can be undone.
pub(crate) struct Mark {
    generation: u64,
    audit_seq: u64,
    audit_at: i64,
    head_unwitnessed: bool,
    audit_hash: [u8; 32],
    after_commit: usize,
    principals: usize,
}

impl GroupState {
    /// Reads the counters at the start of a group. A value no store writes (a negative
    /// counter, a head hash that is not 32 bytes) is corruption, reported rather than
    /// replaced: chaining from a made-up head would hide where the chain broke.
    pub(crate) fn begin(conn: &Connection) -> Result<Self> {
        let (generation, offset, seq, hash, at): (
            i64,
            i64,
            Option<i64>,
            Option<Vec<u8>>,
            Option<i64>,
        ) = conn
            .prepare_cached(READ_META)?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
        let counter = |what: &str, v: i64| {
            u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} is {v}, below zero")))
        };
        let audit_hash = match hash {
            Some(h) => <[u8; 32]>::try_from(h.as_slice()).map_err(|_| {
                StoreError::Corrupt(format!(
                    "the newest audit row's hash is {} bytes, not 32: run `verify` on the audit log",
                    h.len()
                ))
            })?,
            None => GENESIS,
        };
        let generation = counter("the ACL generation", generation)?;
        let audit_seq = seq.map(|s| counter("the newest audit sequence number", s)).transpose()?;
        let version_offset = counter("the version offset", offset)?;
        Ok(Self {
            version_offset,
            audit_at: at.unwrap_or(i64::MIN),
            generation,
            generation_start: generation,
            audit_seq: audit_seq.unwrap_or(0),
            audit_hash,
            head_unwitnessed: false,
            after_commit: Vec::new(),
            principals: Vec::new(),
        })
    }

    pub(crate) fn mark(&self) -> Mark {
        Mark {
            generation: self.generation,
            audit_seq: self.audit_seq,
            audit_at: self.audit_at,
            head_unwitnessed: self.head_unwitnessed,
            audit_hash: self.audit_hash,
            after_commit: self.after_commit.len(),
            principals: self.principals.len(),
        }
    }

    /// Undoes a failed job's effects on the counters.
    pub(crate) fn rewind(&mut self, m: Mark) {
        self.generation = m.generation;
        self.head_unwitnessed = m.head_unwitnessed;
        self.audit_seq = m.audit_seq;
        self.audit_at = m.audit_at;
        self.audit_hash = m.audit_hash;
        self.after_commit.truncate(m.after_commit);
        self.principals.truncate(m.principals);
        if self.generation != m.generation {
            self.principals.clear();
        }
    }

    /// Writes the counters back; runs inside the transaction, before `COMMIT`.
    pub(crate) fn finish(&self, conn: &Connection) -> rusqlite::Result<()> {
        if self.generation != self.generation_start {
            conn.prepare_cached(WRITE_META)?.execute(rusqlite::params![
                "acl_generation",
                i64::try_from(self.generation).unwrap_or(i64::MAX)
            ])?;
        }
        if self.head_unwitnessed {
            // The head is kept apart from the chain so that removing its last rows shows.
            // Groups that only wrote records skip it: each record's version is the sequence
            // number of its audit row and witnesses it (one page less per commit).
            conn.prepare_cached(UPSERT_META)?.execute(rusqlite::params![
                "audit_head",
                i64::try_from(self.audit_seq).unwrap_or(i64::MAX)
            ])?;
        }
        Ok(())
    }

    /// Runs the hooks of the committed jobs (notifications, cache updates).
    pub(crate) fn run_after_commit(&mut self) {
        for f in self.after_commit.drain(..) {
            f();
        }
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }
}

/// The context a write job runs in: the transaction and the group's counters.
pub(crate) struct WriteCtx<'c> {
    conn: &'c Connection,
    state: &'c mut GroupState,
}

impl<'c> WriteCtx<'c> {
    pub(crate) fn new(conn: &'c Connection, state: &'c mut GroupState) -> Self {
        Self { conn, state }
    }

    /// The connection, inside the group's transaction.
    pub(crate) fn conn(&self) -> &'c Connection {
        self.conn
    }

    /// The version the next change gets: the sequence number of the audit row the job
    /// appends for it next, plus the database's fixed `version_offset` (non-zero only in
    /// databases upgraded from schema 2 or older, whose versions came from a counter that
    /// could run ahead of the audit log). Unique, rising, never reused.
    pub(crate) fn next_version(&self) -> u64 {
        self.state.audit_seq + 1 + self.state.version_offset
    }

    /// The ACL generation as of this point of the transaction.
    pub(crate) fn generation(&self) -> u64 {
        self.state.generation()
    }

    /// Whether no job of the group has changed grants, teams or agent status so far: the
    /// ACL tables the transaction sees are then the committed ones.
    pub(crate) fn acl_unchanged(&self) -> bool {
        self.state.generation == self.state.generation_start
    }

    /// Records that this job changed grants, teams or agent status: every cached
    /// principal, here and in other processes, is stale once the group commits.
    pub(crate) fn bump_generation(&mut self) {
        self.state.generation += 1;
        self.state.principals.clear();
    }

    /// Appends an audit row to the chain, in this transaction.
    pub(crate) fn audit(&mut self, entry: &AuditEntry) -> Result<()> {
        audit::append(self.conn, self.state, entry)?;
        Ok(())
    }

    /// Runs `f` after the group has committed (never if it rolls back).
    pub(crate) fn after_commit(&mut self, f: impl FnOnce() + Send + 'static) {
        self.state.after_commit.push(Box::new(f));
    }

    /// A principal loaded inside this transaction, memoized for the group.
    pub(crate) fn cached_principal(&self, id: &AgentId) -> Option<Principal> {
        self.state.principals.iter().find(|(k, _)| k == id).map(|(_, p)| p.clone())
    }

    pub(crate) fn remember_principal(&mut self, id: AgentId, p: Principal) {
        self.state.principals.push((id, p));
    }

    /// Runs `f` inside a savepoint of its own: if it fails, its changes (and its effects
    /// on the counters) are undone and the error returned, while the job goes on.
    pub(crate) fn atomically<T>(
        &mut self,
        f: impl FnOnce(&mut WriteCtx<'_>) -> Result<T>,
    ) -> Result<T> {
        self.conn.prepare_cached("SAVEPOINT inner")?.execute([])?;
        let mark = self.state.mark();
        let out = {
            let mut inner = WriteCtx { conn: self.conn, state: &mut *self.state };
            f(&mut inner)
        };
        match out {
            Ok(v) => {
                self.conn.prepare_cached("RELEASE inner")?.execute([])?;
                Ok(v)
            }
            Err(e) => {
                self.state.rewind(mark);
                self.conn.prepare_cached("ROLLBACK TO inner")?.execute([])?;
                self.conn.prepare_cached("RELEASE inner")?.execute([])?;
                Err(e)
            }
        }
    }
}
