//! The tamper-evident audit trail: an append-only hash chain and its verification.
//!
//! Row `n` stores `prev_hash` (the hash of row `n-1`, or 32 zero bytes for row 1) and
//! `hash = BLAKE3(prev_hash || canonical(row n))`; see docs/FORMAT.md. Editing a row breaks
//! its hash; removing one leaves a gap in `seq` or breaks the next row's `prev_hash`;
//! inserting one breaks `prev_hash`; removing the newest rows disagrees with the head
//! recorded in `meta`. The chain is unkeyed: someone able to run arbitrary SQL *and*
//! recompute every later hash is caught only by comparing the head with a copy kept
//! elsewhere, which is why [`VerifyReport`] prints the head.

use parking_lot::Mutex;
use rusqlite::{Connection, params};
use serde::Serialize;

use crate::txn::GroupState;

/// The `prev_hash` of the first row.
pub(crate) const GENESIS: [u8; 32] = [0; 32];

const INSERT: &str = "INSERT INTO audit_log \
    (seq, at, actor, action, resource_type, resource, swarm_id, outcome, detail, prev_hash, hash, fmt, \
    namespace, key, acl_level, owner_id, team_id) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 2, ?12, ?13, ?14, ?15, ?16)";

/// Memory actions whose audit row is witnessed by the record they leave behind: the
/// record's version is the row's sequence number, so removing the row shows.
const WITNESSED: &[&str] = &["memory.set", "memory.mset", "memory.incr"];

/// The outcome column of an audit row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Refused by access control.
    Denied,
    /// Refused by a failed compare-and-set or a concurrent claim.
    Conflict,
    /// Failed otherwise.
    Error,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Conflict => "conflict",
            Outcome::Error => "error",
        }
    }
}

/// One audit row before it is chained.
#[derive(Clone, Debug)]
pub(crate) struct AuditEntry {
    pub(crate) at: i64,
    pub(crate) actor: String,
    pub(crate) action: &'static str,
    pub(crate) resource_type: &'static str,
    pub(crate) resource: String,
    pub(crate) swarm: Option<String>,
    pub(crate) outcome: Outcome,
    /// A JSON object, never carrying a value or a secret.
    pub(crate) detail: String,
    /// For memory changes: the record, which makes the row an entry of the change feed.
    pub(crate) feed: Option<Feed>,
}

/// The record a memory change concerns, as the change feed needs it (never the value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Feed {
    pub(crate) namespace: String,
    pub(crate) key: String,
    pub(crate) level: u8,
    pub(crate) owner: Option<String>,
    pub(crate) team: Option<String>,
}

/// The chained hash of a row, in the row's format (1: before migration 3; 2: also the
/// change-feed columns).
fn row_hash(prev: &[u8; 32], seq: u64, e: &AuditEntryRef<'_>) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(if e.fmt == 2 { b"swarm-memory audit v2\0" } else { b"swarm-memory audit v1\0" });
    h.update(prev);
    h.update(&seq.to_be_bytes());
    h.update(&e.at.to_be_bytes());
    for field in [e.actor, e.action, e.resource_type, e.resource] {
        put(&mut h, field);
    }
    match e.swarm {
        Some(s) => {
            h.update(&[1]);
            put(&mut h, s);
        }
        None => {
            h.update(&[0]);
        }
    }
    put(&mut h, e.outcome);
    put(&mut h, e.detail);
    if e.fmt == 2 {
        match &e.feed {
            Some(f) => {
                h.update(&[1]);
                put(&mut h, f.namespace);
                put(&mut h, f.key);
                h.update(&[f.level]);
                optional(&mut h, f.owner);
                optional(&mut h, f.team);
            }
            None => {
                h.update(&[0]);
            }
        }
    }
    *h.finalize().as_bytes()
}

fn optional(h: &mut blake3::Hasher, s: Option<&str>) {
    match s {
        Some(s) => {
            h.update(&[1]);
            put(h, s);
        }
        None => {
            h.update(&[0]);
        }
    }
}

/// The change-feed columns of a row, borrowed.
struct FeedRef<'a> {
    namespace: &'a str,
    key: &'a str,
    level: u8,
    owner: Option<&'a str>,
    team: Option<&'a str>,
}

fn put(h: &mut blake3::Hasher, s: &str) {
    h.update(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
    h.update(s.as_bytes());
}

/// The fields of a row as hashed, borrowed either from an entry or from a stored row.
struct AuditEntryRef<'a> {
    fmt: u8,
    at: i64,
    actor: &'a str,
    action: &'a str,
    resource_type: &'a str,
    resource: &'a str,
    swarm: Option<&'a str>,
    outcome: &'a str,
    detail: &'a str,
    feed: Option<FeedRef<'a>>,
}

pub(crate) fn append(
    conn: &Connection,
    state: &mut GroupState,
    e: &AuditEntry,
) -> rusqlite::Result<()> {
    let seq = state.audit_seq + 1;
    // Never earlier than the row before (a clock stepped back, or a denial queued before
    // a later write was committed): times along the chain never decrease.
    let at = e.at.max(state.audit_at);
    let r = AuditEntryRef {
        fmt: 2,
        at,
        actor: &e.actor,
        action: e.action,
        resource_type: e.resource_type,
        resource: &e.resource,
        swarm: e.swarm.as_deref(),
        outcome: e.outcome.as_str(),
        detail: &e.detail,
        feed: e.feed.as_ref().map(|f| FeedRef {
            namespace: &f.namespace,
            key: &f.key,
            level: f.level,
            owner: f.owner.as_deref(),
            team: f.team.as_deref(),
        }),
    };
    let hash = row_hash(&state.audit_hash, seq, &r);
    conn.prepare_cached(INSERT)?.execute(params![
        i64::try_from(seq).unwrap_or(i64::MAX),
        at,
        e.actor,
        e.action,
        e.resource_type,
        e.resource,
        e.swarm,
        r.outcome,
        e.detail,
        &state.audit_hash[..],
        &hash[..],
        e.feed.as_ref().map(|f| f.namespace.as_str()),
        e.feed.as_ref().map(|f| f.key.as_str()),
        e.feed.as_ref().map(|f| f.level),
        e.feed.as_ref().and_then(|f| f.owner.as_deref()),
        e.feed.as_ref().and_then(|f| f.team.as_deref()),
    ])?;
    state.audit_seq = seq;
    state.audit_at = at;
    state.audit_hash = hash;
    if !(e.outcome == Outcome::Ok && WITNESSED.contains(&e.action)) {
        state.head_unwitnessed = true;
    }
    Ok(())
}

/// Audit rows produced outside a write transaction (denied reads), waiting for the next
/// commit group so that reads never wait for the write lock.
#[derive(Debug, Default)]
pub(crate) struct PendingAudit {
    entries: Mutex<Vec<AuditEntry>>,
}

impl PendingAudit {
    /// Most rows held; beyond it the oldest are counted as lost rather than growing
    /// memory without bound under a flood of denied reads.
    const MAX: usize = 100_000;

    pub(crate) fn push(&self, e: AuditEntry) {
        let mut v = self.entries.lock();
        if v.len() < Self::MAX {
            v.push(e);
        } else {
            tracing::warn!("audit queue full; a denied read was not audited");
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.lock().is_empty()
    }

    /// Appends every queued row to the chain inside the current transaction. On error the
    /// rows go back to the queue.
    pub(crate) fn drain_into(
        &self,
        conn: &Connection,
        state: &mut GroupState,
    ) -> rusqlite::Result<()> {
        let taken = std::mem::take(&mut *self.entries.lock());
        for (i, e) in taken.iter().enumerate() {
            if let Err(err) = append(conn, state, e) {
                let mut v = self.entries.lock();
                let rest: Vec<AuditEntry> = taken[i..].to_vec();
                v.splice(0..0, rest);
                return Err(err);
            }
        }
        Ok(())
    }
}

/// One audit row as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditRow {
    /// Position in the chain.
    pub seq: u64,
    /// When, Unix ms.
    pub at: i64,
    /// Agent id or `system`.
    pub actor: String,
    /// What was done, such as `memory.set`.
    pub action: String,
    /// The resource type.
    pub resource_type: String,
    /// The resource, such as `swarm/namespace/key`.
    pub resource: String,
    /// The swarm, when there is one.
    pub swarm: Option<String>,
    /// `ok`, `denied`, `conflict` or `error`.
    pub outcome: String,
    /// Details (a JSON object; never a value or a secret).
    pub detail: serde_json::Value,
}

const ROW_COLUMNS: &str =
    "seq, at, actor, action, resource_type, resource, swarm_id, outcome, detail";

fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRow> {
    let detail: String = r.get(8)?;
    Ok(AuditRow {
        seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
        at: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        resource_type: r.get(4)?,
        resource: r.get(5)?,
        swarm: r.get(6)?,
        outcome: r.get(7)?,
        // Details are written as JSON; one edited by hand is shown as the text it is.
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
    })
}

/// The newest `n` rows, newest last.
pub(crate) fn tail(conn: &Connection, n: u64) -> rusqlite::Result<Vec<AuditRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM (SELECT * FROM audit_log ORDER BY seq DESC LIMIT ?1) ORDER BY seq"
    ))?;
    let rows = stmt.query_map([i64::try_from(n).unwrap_or(i64::MAX)], row_of)?;
    rows.collect()
}

/// Most rows one [`query`] call looks at: a filter that matches little cannot make one
/// call scan the whole log; the page's `next` resumes after the window.
const QUERY_WINDOW: u64 = 100_000;

/// Which audit rows to read, oldest first (see [`crate::Store::audit_query`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    since: Option<i64>,
    until: Option<i64>,
    actor: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    after: u64,
    limit: Option<usize>,
}

impl AuditQuery {
    /// Every row, oldest first, 100 per page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rows at or after this time (Unix ms).
    pub fn since(mut self, at_ms: i64) -> Self {
        self.since = Some(at_ms);
        self
    }

    /// Rows before this time (Unix ms).
    pub fn until(mut self, at_ms: i64) -> Self {
        self.until = Some(at_ms);
        self
    }

    /// Rows of this actor (an agent id or `system`).
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Rows of this action, such as `memory.set`.
    pub fn action(mut self, action: impl Into<String>) -> Self {
        self.action = Some(action.into());
        self
    }

    /// Rows with this outcome: `ok`, `denied`, `conflict` or `error`.
    pub fn outcome(mut self, outcome: impl Into<String>) -> Self {
        self.outcome = Some(outcome.into());
        self
    }

    /// Rows after this sequence number (a page's `next`).
    pub fn after(mut self, seq: u64) -> Self {
        self.after = seq;
        self
    }

    /// At most this many rows (1-1000, default 100).
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }
}

/// One page of [`crate::Store::audit_query`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditPage {
    /// Matching rows, oldest first.
    pub rows: Vec<AuditRow>,
    /// When more rows may match: pass it to [`AuditQuery::after`] for the next page.
    pub next: Option<u64>,
}

/// The smallest sequence number in `lo..=hi` whose time is at or after `t` (`hi + 1` when
/// none). Times never decrease along the chain (see `append`), so this is a binary search
/// over the primary key: no time index, no page written per commit for one. Rows written
/// before schema 3 were not clamped; if the clock stepped back then, the boundary found
/// there may be off by the rows of the step (the row filter still checks every time).
fn first_at_or_after(conn: &Connection, t: i64, mut lo: u64, hi: u64) -> rusqlite::Result<u64> {
    let mut stmt =
        conn.prepare_cached("SELECT seq, at FROM audit_log WHERE seq >= ?1 ORDER BY seq LIMIT 1")?;
    let mut hi = hi.saturating_add(1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let found: Option<(i64, i64)> = rusqlite::OptionalExtension::optional(
            stmt.query_row([i64::try_from(mid).unwrap_or(i64::MAX)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            }),
        )?;
        match found {
            Some((seq, at)) if at < t => {
                lo = u64::try_from(seq).unwrap_or(u64::MAX).saturating_add(1)
            }
            // At or after `t`, or nothing from `mid` on (rows between `mid` and the one
            // found do not exist).
            _ => hi = mid,
        }
    }
    Ok(lo)
}

pub(crate) fn query(conn: &Connection, q: &AuditQuery) -> rusqlite::Result<AuditPage> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let head: i64 = conn
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM audit_log")?
        .query_row([], |r| r.get(0))?;
    let head = u64::try_from(head).unwrap_or(0);
    // Rows in start < seq <= end can match.
    let mut start = q.after;
    let mut end = head;
    if let Some(t) = q.since {
        start =
            start.max(first_at_or_after(conn, t, start.saturating_add(1), head)?.saturating_sub(1));
    }
    if let Some(t) = q.until {
        end = end.min(first_at_or_after(conn, t, start.saturating_add(1), head)?.saturating_sub(1));
    }
    if start >= end {
        return Ok(AuditPage { rows: Vec::new(), next: None });
    }
    let window_end = end.min(start.saturating_add(QUERY_WINDOW));
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM audit_log WHERE seq > ?1 AND seq <= ?2 \
         AND (?3 IS NULL OR actor = ?3) AND (?4 IS NULL OR action = ?4) AND (?5 IS NULL OR outcome = ?5) \
         AND (?6 IS NULL OR at >= ?6) AND (?7 IS NULL OR at < ?7) ORDER BY seq LIMIT ?8"
    ))?;
    let rows = stmt
        .query_map(
            params![
                i64::try_from(start).unwrap_or(i64::MAX),
                i64::try_from(window_end).unwrap_or(i64::MAX),
                q.actor,
                q.action,
                q.outcome,
                q.since,
                q.until,
                i64::try_from(limit).unwrap_or(1000),
            ],
            row_of,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let next = match rows.last() {
        Some(last) if rows.len() == limit && last.seq < end => Some(last.seq),
        _ if window_end < end => Some(window_end),
        _ => None,
    };
    Ok(AuditPage { rows, next })
}

/// What [`crate::Store::verify_audit`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Rows checked.
    pub rows: u64,
    /// The newest row's sequence number and hash (hex): keep a copy elsewhere to detect a
    /// wholesale rewrite of the chain. When the chain is broken, the last row that still
    /// verified.
    pub head: Option<(u64, String)>,
    /// The first problem, if any.
    pub problem: Option<ChainProblem>,
}

impl VerifyReport {
    /// Whether the chain is intact.
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

/// The first break found in the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChainProblem {
    /// The row's content no longer matches its hash.
    Edited {
        /// The row.
        seq: u64,
    },
    /// Rows are missing before this one.
    Removed {
        /// The first missing sequence number.
        seq: u64,
    },
    /// The row does not follow its predecessor: inserted, reordered, or its predecessor
    /// was replaced.
    Inserted {
        /// The row.
        seq: u64,
    },
    /// The newest rows were removed: the recorded head is beyond the last row.
    Truncated {
        /// The last row present.
        last: u64,
        /// The head recorded in meta.
        recorded: u64,
    },
    /// The newest record's version does not point at the audit row that wrote it: the
    /// end of the log, a record's version or `meta.version_offset` was edited.
    WitnessMismatch {
        /// The newest record version.
        version: u64,
        /// The row it points at (`version - version_offset`).
        seq: u64,
    },
}

/// Walks the whole chain from row 1 and reports the first break.
pub(crate) fn verify(conn: &Connection) -> rusqlite::Result<VerifyReport> {
    // Every record's version points at the audit row that wrote it (version - offset).
    // Records are read in version order beside the chain, so each pointer is checked when
    // the walk reaches its row: a version edited to hide a row, or an offset edited to
    // make a truncated log look whole, shows.
    let offset: i64 = conn.query_row(
        "SELECT coalesce((SELECT value FROM meta WHERE key = 'version_offset'), 0)",
        [],
        |r| r.get(0),
    )?;
    let offset = u64::try_from(offset).unwrap_or(0);
    let mut records_stmt =
        conn.prepare("SELECT swarm_id, namespace, key, version FROM memory ORDER BY version")?;
    let mut records = records_stmt.query([])?;
    // A record whose pointer is still to be checked: (points at, swarm, namespace, key,
    // version).
    type Pointer = (u64, String, String, String, u64);
    let next_record = |records: &mut rusqlite::Rows<'_>| -> rusqlite::Result<Option<Pointer>> {
        while let Some(r) = records.next()? {
            let version = u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0);
            // Below the offset: a version of the old counter (schema 1-2), which points at
            // nothing.
            if let Some(points_at) = version.checked_sub(offset) {
                return Ok(Some((points_at, r.get(0)?, r.get(1)?, r.get(2)?, version)));
            }
        }
        Ok(None)
    };
    let mut pending = next_record(&mut records)?;
    let mut first_fmt2: Option<u64> = None;
    let mut witnessed_last: Option<u64> = None;
    let mut stmt = conn.prepare(
        "SELECT seq, at, actor, action, resource_type, resource, swarm_id, outcome, detail, prev_hash, hash, \
         fmt, namespace, key, acl_level, owner_id, team_id FROM audit_log ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    let mut expected_seq: u64 = 1;
    let mut prev = GENESIS;
    let mut count = 0u64;
    let mut head = None;
    while let Some(row) = rows.next()? {
        let seq = u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0);
        let actor: String = row.get(2)?;
        let action: String = row.get(3)?;
        let resource_type: String = row.get(4)?;
        let resource: String = row.get(5)?;
        let swarm: Option<String> = row.get(6)?;
        let outcome: String = row.get(7)?;
        let detail: String = row.get(8)?;
        let stored_prev: Vec<u8> = row.get(9)?;
        let stored_hash: Vec<u8> = row.get(10)?;
        let fmt: i64 = row.get(11)?;
        let (f_ns, f_key): (Option<String>, Option<String>) = (row.get(12)?, row.get(13)?);
        let f_level: Option<i64> = row.get(14)?;
        let (f_owner, f_team): (Option<String>, Option<String>) = (row.get(15)?, row.get(16)?);
        count += 1;
        let last_good = head.clone();
        let report =
            |problem| VerifyReport { rows: count, head: last_good.clone(), problem: Some(problem) };
        if seq > expected_seq {
            return Ok(report(ChainProblem::Removed { seq: expected_seq }));
        }
        if seq < expected_seq || stored_prev.as_slice() != prev {
            return Ok(report(ChainProblem::Inserted { seq }));
        }
        let feed = match (&f_ns, &f_key, f_level) {
            (Some(namespace), Some(key), Some(level)) => Some(FeedRef {
                namespace,
                key,
                level: u8::try_from(level).unwrap_or(0),
                owner: f_owner.as_deref(),
                team: f_team.as_deref(),
            }),
            (None, None, None) if f_owner.is_none() && f_team.is_none() => None,
            // Feed columns the hash does not cover (a partial set, or any on a format 1
            // row) were written with SQL: they could fake a change-feed entry.
            _ => return Ok(report(ChainProblem::Edited { seq })),
        };
        // Only formats 1 and 2 exist; any other value would make the hash skip columns.
        if !(fmt == 1 || fmt == 2) || (fmt == 1 && feed.is_some()) {
            return Ok(report(ChainProblem::Edited { seq }));
        }
        if fmt == 2 {
            first_fmt2.get_or_insert(seq);
        }
        let r = AuditEntryRef {
            fmt: u8::try_from(fmt).unwrap_or(0),
            at: row.get(1)?,
            actor: &actor,
            action: &action,
            resource_type: &resource_type,
            resource: &resource,
            swarm: swarm.as_deref(),
            outcome: &outcome,
            detail: &detail,
            feed,
        };
        let hash = row_hash(&prev, seq, &r);
        if stored_hash.as_slice() != hash {
            return Ok(report(ChainProblem::Edited { seq }));
        }
        // Records pointing before this row: into the schema 1-2 part of the log (their
        // versions came from the old counter), or at a row already passed, which means a
        // version was edited (two records cannot come from one row).
        while let Some((points_at, _, _, _, version)) = &pending
            && *points_at < seq
        {
            if first_fmt2.is_some_and(|first| *points_at >= first) {
                return Ok(report(ChainProblem::WitnessMismatch {
                    version: *version,
                    seq: *points_at,
                }));
            }
            pending = next_record(&mut records)?;
        }
        if let Some((points_at, r_swarm, r_ns, r_key, version)) = &pending
            && *points_at == seq
            && fmt == 2
        {
            let wrote_it = f_ns.as_deref() == Some(r_ns.as_str())
                && f_key.as_deref() == Some(r_key.as_str())
                && swarm.as_deref() == Some(r_swarm.as_str())
                && outcome == Outcome::Ok.as_str()
                && WITNESSED.contains(&action.as_str());
            if !wrote_it {
                return Ok(report(ChainProblem::WitnessMismatch { version: *version, seq }));
            }
            witnessed_last = Some(seq);
            pending = next_record(&mut records)?;
        }
        prev = hash;
        expected_seq = seq + 1;
        head = Some((seq, hex::encode(hash)));
    }
    // The head is witnessed twice: by meta.audit_head, written by groups whose last row
    // no record witnesses, and by the record versions checked above. A record left over
    // points beyond the last row: the newest rows were removed.
    let recorded: Option<i64> = rusqlite::OptionalExtension::optional(conn.query_row(
        "SELECT value FROM meta WHERE key = 'audit_head'",
        [],
        |r| r.get(0),
    ))?;
    let last = expected_seq - 1;
    let mut beyond = pending.map(|(points_at, ..)| points_at);
    while let Some(p) = next_record(&mut records)? {
        beyond = Some(p.0);
    }
    let recorded = recorded.and_then(|r| u64::try_from(r).ok()).max(beyond).max(witnessed_last);
    let problem = match recorded {
        Some(recorded) if recorded > last => Some(ChainProblem::Truncated { last, recorded }),
        _ => None,
    };
    Ok(VerifyReport { rows: count, head, problem })
}

impl crate::Store {
    /// Audit rows matching `q`, oldest first, a page at a time. Reading the audit trail
    /// needs the system principal or a live `read` grant on `audit` at level 5. Time
    /// bounds are found by a binary search of the sequence (times never decrease along
    /// the chain); actor, action and outcome filters scan at most 100,000 rows per call,
    /// and `next` resumes where the call stopped.
    pub fn audit_query(
        &self,
        who: &swarm_acl::Identity,
        q: &AuditQuery,
    ) -> crate::Result<AuditPage> {
        let now = self.now();
        self.shared.read_snapshot_as(who, |conn, p| {
            if !p.holds(
                swarm_acl::ResourceType::Audit,
                swarm_acl::Action::Read,
                swarm_acl::AclLevel::System,
                now,
            ) {
                return Err(crate::StoreError::PermissionDenied(
                    "reading the audit trail needs an audit read grant".into(),
                ));
            }
            if let (Some(a), Some(b)) = (q.since, q.until)
                && b < a
            {
                return Err(crate::StoreError::invalid(
                    "the end of the time range is before its start",
                ));
            }
            Ok(query(conn, q)?)
        })
    }
}
