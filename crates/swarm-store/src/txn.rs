//! State shared by the jobs of one commit group, and the context each job works in.

use rusqlite::Connection;
use swarm_acl::{AgentId, Principal};

use crate::audit::{self, AuditEntry, GENESIS};
use crate::error::Result;

const READ_META: &str = "SELECT \
    (SELECT value FROM meta WHERE key = 'acl_generation'), \
    (SELECT value FROM meta WHERE key = 'revision'), \
    (SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1), \
    (SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1)";
const WRITE_META: &str = "UPDATE meta SET value = ?2 WHERE key = ?1";
const UPSERT_META: &str = "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// Counters read at the start of a group and written back at its end.
pub(crate) struct GroupState {
    generation: u64,
    generation_start: u64,
    revision: u64,
    revision_start: u64,
    pub(crate) audit_seq: u64,
    pub(crate) audit_hash: [u8; 32],
    audit_seq_start: u64,
    after_commit: Vec<Box<dyn FnOnce() + Send>>,
    principals: Vec<(AgentId, Principal)>,
}

/// Where a job started, so its effects on the group state can be undone.
pub(crate) struct Mark {
    generation: u64,
    revision: u64,
    audit_seq: u64,
    audit_hash: [u8; 32],
    after_commit: usize,
    principals: usize,
}

impl GroupState {
    pub(crate) fn begin(conn: &Connection) -> rusqlite::Result<Self> {
        let (generation, revision, seq, hash): (i64, i64, Option<i64>, Option<Vec<u8>>) = conn
            .prepare_cached(READ_META)?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        let audit_hash = match hash {
            Some(h) => <[u8; 32]>::try_from(h.as_slice()).unwrap_or(GENESIS),
            None => GENESIS,
        };
        let generation = u64::try_from(generation).unwrap_or(0);
        let revision = u64::try_from(revision).unwrap_or(0);
        let audit_seq = seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
        Ok(Self {
            generation,
            generation_start: generation,
            revision,
            revision_start: revision,
            audit_seq,
            audit_hash,
            audit_seq_start: audit_seq,
            after_commit: Vec::new(),
            principals: Vec::new(),
        })
    }

    pub(crate) fn mark(&self) -> Mark {
        Mark {
            generation: self.generation,
            revision: self.revision,
            audit_seq: self.audit_seq,
            audit_hash: self.audit_hash,
            after_commit: self.after_commit.len(),
            principals: self.principals.len(),
        }
    }

    /// Undoes a failed job's effects on the counters. The revision is not rewound:
    /// skipped revisions are harmless and keep versions unique.
    pub(crate) fn rewind(&mut self, m: Mark) {
        self.generation = m.generation;
        self.revision = self.revision.max(m.revision);
        self.audit_seq = m.audit_seq;
        self.audit_hash = m.audit_hash;
        self.after_commit.truncate(m.after_commit);
        self.principals.truncate(m.principals);
        if self.generation != m.generation {
            self.principals.clear();
        }
    }

    /// Writes the counters back; runs inside the transaction, before `COMMIT`.
    pub(crate) fn finish(&self, conn: &Connection) -> rusqlite::Result<()> {
        let mut stmt = conn.prepare_cached(WRITE_META)?;
        if self.revision != self.revision_start {
            stmt.execute(rusqlite::params![
                "revision",
                i64::try_from(self.revision).unwrap_or(i64::MAX)
            ])?;
        }
        if self.generation != self.generation_start {
            stmt.execute(rusqlite::params![
                "acl_generation",
                i64::try_from(self.generation).unwrap_or(i64::MAX)
            ])?;
        }
        if self.audit_seq != self.audit_seq_start {
            // The head is kept apart from the chain so that removing its last rows shows.
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

    /// A fresh revision for this job's mutations; strictly greater than any before it.
    pub(crate) fn next_revision(&mut self) -> u64 {
        self.state.revision += 1;
        self.state.revision
    }

    /// The ACL generation as of this point of the transaction.
    pub(crate) fn generation(&self) -> u64 {
        self.state.generation()
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
