//! The sealed columns as a whole: online key rotation and the key report.
//!
//! Three columns hold envelopes sealed with the keyring: `memory.value`,
//! `artifacts.content` and `events.payload`. Each row records the key id of its envelope
//! (`key_id`, NULL when plain), so rotation finds what is left through an index, and the
//! report tells, per key, how many rows of each kind still need it: a key can be retired
//! once nothing references it.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use swarm_acl::{AclLevel, Identity, SwarmId};
use swarm_codec::{CodecError, KeyId, Seal};

use crate::audit::{AuditEntry, Outcome};
use crate::domain::{Scope, payload_aad};
use crate::error::{Result, StoreError};
use crate::ops::Progress;
use crate::sql::u64_of;
use crate::store::{Shared, Store};
use crate::txn::WriteCtx;

/// What a sealed row belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SealedKind {
    /// Memory records (`memory.value`).
    Memory,
    /// Artifact versions (`artifacts.content`).
    Artifact,
    /// Event payloads (`events.payload`).
    Event,
}

crate::names::string_forms!(SealedKind, "sealed kind", {
    Memory => "memory",
    Artifact => "artifact",
    Event => "event",
});

impl SealedKind {
    /// Every kind, in the order rotation works through them.
    pub const ALL: [SealedKind; 3] = [SealedKind::Memory, SealedKind::Artifact, SealedKind::Event];

    fn table(self) -> &'static str {
        match self {
            SealedKind::Memory => "memory",
            SealedKind::Artifact => "artifacts",
            SealedKind::Event => "events",
        }
    }
}

/// A count per kind of sealed row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SealedCounts {
    /// Memory records.
    pub memory: u64,
    /// Artifact versions.
    pub artifacts: u64,
    /// Events.
    pub events: u64,
}

impl SealedCounts {
    /// The count of one kind.
    pub fn get(&self, kind: SealedKind) -> u64 {
        match kind {
            SealedKind::Memory => self.memory,
            SealedKind::Artifact => self.artifacts,
            SealedKind::Event => self.events,
        }
    }

    /// All kinds together.
    pub fn total(&self) -> u64 {
        self.memory + self.artifacts + self.events
    }

    fn slot(&mut self, kind: SealedKind) -> &mut u64 {
        match kind {
            SealedKind::Memory => &mut self.memory,
            SealedKind::Artifact => &mut self.artifacts,
            SealedKind::Event => &mut self.events,
        }
    }
}

/// Progress and result of key rotation for one kind of row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KindRotation {
    /// Rows re-sealed under the active key in this run.
    pub reencrypted: u64,
    /// Rows at encrypted levels that were in plaintext and are now encrypted.
    pub encrypted: u64,
    /// Rows still to do (0 when this kind is complete).
    pub remaining: u64,
}

/// Progress and result of key rotation: totals, and the same per kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    /// Rows re-sealed under the active key in this run, all kinds.
    pub reencrypted: u64,
    /// Rows at encrypted levels that were in plaintext and are now encrypted, all kinds.
    pub encrypted: u64,
    /// Rows still to do, all kinds (0 when complete: no row references another key).
    pub remaining: u64,
    /// Memory records.
    pub memory: KindRotation,
    /// Artifact versions.
    pub artifacts: KindRotation,
    /// Event payloads.
    pub events: KindRotation,
}

impl RotationReport {
    /// This run followed by `later`, as one: rows done add up, what remains is `later`'s.
    #[must_use]
    pub fn then(self, later: RotationReport) -> RotationReport {
        let kind = |a: KindRotation, b: KindRotation| KindRotation {
            reencrypted: a.reencrypted + b.reencrypted,
            encrypted: a.encrypted + b.encrypted,
            remaining: b.remaining,
        };
        RotationReport {
            reencrypted: self.reencrypted + later.reencrypted,
            encrypted: self.encrypted + later.encrypted,
            remaining: later.remaining,
            memory: kind(self.memory, later.memory),
            artifacts: kind(self.artifacts, later.artifacts),
            events: kind(self.events, later.events),
        }
    }

    /// The figures of one kind.
    pub fn kind(&self, kind: SealedKind) -> &KindRotation {
        match kind {
            SealedKind::Memory => &self.memory,
            SealedKind::Artifact => &self.artifacts,
            SealedKind::Event => &self.events,
        }
    }

    fn kind_mut(&mut self, kind: SealedKind) -> &mut KindRotation {
        match kind {
            SealedKind::Memory => &mut self.memory,
            SealedKind::Artifact => &mut self.artifacts,
            SealedKind::Event => &mut self.events,
        }
    }
}

/// Which keys seal what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyReport {
    /// The key new values are sealed with (`None` without a keyring).
    pub active: Option<u32>,
    /// Encrypted rows per key id.
    pub keys: Vec<KeyUse>,
    /// Rows at a level the policy encrypts that are stored in plaintext (written before
    /// encryption was configured), all kinds; `rotate-key` encrypts them.
    pub plaintext_at_encrypted_levels: u64,
    /// The same, per kind.
    pub plaintext: SealedCounts,
}

/// One key id's use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyUse {
    /// The key id.
    pub key_id: u32,
    /// Rows sealed with it, all kinds.
    pub records: u64,
    /// Rows sealed with it, per kind.
    pub sealed: SealedCounts,
    /// Whether the keyring holds it.
    pub available: bool,
    /// Whether one sample row of each kind sealed with it opened (`None` when not tried:
    /// the keyring does not hold the key).
    pub sample_opens: Option<bool>,
    /// The kinds whose sample did not open (wrong key or tampered data).
    pub unopened: Vec<SealedKind>,
}

/// Rows that rotation still has to do: sealed under another key than the active one, or
/// plain at a level the policy encrypts.
const PENDING: &str =
    "((key_id IS NOT NULL AND key_id <> ?1) OR (key_id IS NULL AND acl_level <= ?2))";

/// At most this many envelope bytes are re-sealed in one transaction (and at least one row,
/// whatever its size), so a batch of large artifacts does not hold the write lock long.
const BATCH_BYTES: i64 = 8 * 1024 * 1024;

/// Where a run got to in one kind: the last primary key handled.
#[derive(Clone, Debug)]
enum Cursor {
    Memory(String, String, String),
    Row(i64),
}

impl Cursor {
    fn start(kind: SealedKind) -> Self {
        match kind {
            // Ids are never empty, so ('', '', '') sorts before every key.
            SealedKind::Memory => Cursor::Memory(String::new(), String::new(), String::new()),
            SealedKind::Artifact | SealedKind::Event => Cursor::Row(i64::MIN),
        }
    }
}

/// What one batch did.
struct Batch {
    kind: SealedKind,
    reencrypted: u64,
    encrypted: u64,
    cursor: Cursor,
    /// Nothing of this kind is left after the cursor.
    exhausted: bool,
}

/// One sealed row, with what is needed to rebuild its associated data.
struct SealedRow {
    level: i64,
    envelope: Vec<u8>,
    aad: Vec<u8>,
    name: String,
}

/// What re-sealing a row came to.
enum Resealed {
    /// A new envelope under the active key; `was_plain` when the row was in plaintext.
    New { envelope: Vec<u8>, key_id: i64, was_plain: bool },
    /// The envelope already is under the active key and only `key_id` was wrong.
    FixColumn(Option<i64>),
}

fn reseal(shared: &Shared, row: &SealedRow) -> Result<Resealed> {
    let codec_err = |source| StoreError::Codec { key: row.name.clone(), source };
    // One codec for the row, and the key id read from the envelope it made: if the keyring
    // is replaced meanwhile (read again after a rotation elsewhere), the column still
    // names the key that sealed the row.
    let codec = shared.codec_for(&row.envelope);
    let sealed_with = |envelope: &[u8]| -> Result<i64> {
        let key_id = swarm_codec::inspect(envelope).map_err(codec_err)?.key_id();
        key_id.map(|k| i64::from(k.get())).ok_or_else(|| {
            StoreError::Corrupt(format!("re-sealing {} made a plain envelope", row.name))
        })
    };
    let header = swarm_codec::inspect(&row.envelope).map_err(codec_err)?;
    if !header.is_encrypted() {
        let plain =
            zeroize::Zeroizing::new(codec.decode(&row.envelope, &row.aad).map_err(codec_err)?);
        let envelope = codec.encode(&plain, Seal::Encrypt { aad: &row.aad }).map_err(codec_err)?;
        let key_id = sealed_with(&envelope)?;
        return Ok(Resealed::New { envelope, key_id, was_plain: true });
    }
    match codec.reencrypt(&row.envelope, &row.aad).map_err(codec_err)? {
        Some(envelope) => {
            let key_id = sealed_with(&envelope)?;
            Ok(Resealed::New { envelope, key_id, was_plain: false })
        }
        None => Ok(Resealed::FixColumn(header.key_id().map(|k| i64::from(k.get())))),
    }
}

/// The candidates of one kind after `cursor`, at most `limit`, with their envelope sizes.
fn candidates(
    conn: &Connection,
    kind: SealedKind,
    cursor: &Cursor,
    active: i64,
    max_level: i64,
    limit: i64,
) -> Result<Vec<(Cursor, i64)>> {
    let rows = match (kind, cursor) {
        (SealedKind::Memory, Cursor::Memory(s, n, k)) => {
            let sql = format!(
                "SELECT swarm_id, namespace, key, length(value) FROM memory WHERE {PENDING} \
                 AND (swarm_id, namespace, key) > (?3, ?4, ?5) ORDER BY swarm_id, namespace, key LIMIT ?6"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![active, max_level, s, n, k, limit], |r| {
                Ok((Cursor::Memory(r.get(0)?, r.get(1)?, r.get(2)?), r.get(3)?))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        }
        (SealedKind::Artifact | SealedKind::Event, Cursor::Row(after)) => {
            let (pk, table, column) = match kind {
                SealedKind::Artifact => ("rowid", "artifacts", "content"),
                _ => ("seq", "events", "payload"),
            };
            let sql = format!(
                "SELECT {pk}, length({column}) FROM {table} WHERE {PENDING} AND {pk} > ?3 ORDER BY {pk} LIMIT ?4"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![active, max_level, after, limit], |r| {
                Ok((Cursor::Row(r.get(0)?), r.get(1)?))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        }
        _ => return Err(StoreError::Corrupt("rotation cursor of another kind".into())),
    };
    Ok(rows)
}

/// Loads one sealed row and rebuilds its associated data.
fn load(conn: &Connection, kind: SealedKind, at: &Cursor) -> Result<Option<SealedRow>> {
    match (kind, at) {
        (SealedKind::Memory, Cursor::Memory(s, n, k)) => {
            let row = conn
                .prepare_cached(
                    "SELECT owner_id, team_id, acl_level, value_type, value FROM memory \
                     WHERE swarm_id = ?1 AND namespace = ?2 AND key = ?3",
                )?
                .query_row(params![s, n, k], |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Vec<u8>>(4)?,
                    ))
                })
                .optional()?;
            let Some((owner, team, level, vt, envelope)) = row else { return Ok(None) };
            let (key, scope, vt) = crate::memory::parse_stored(
                s,
                n,
                k,
                owner.as_deref(),
                team.as_deref(),
                level,
                &vt,
            )?;
            let aad = crate::memory::aad_for(&key, &scope, vt);
            Ok(Some(SealedRow { level, envelope, aad, name: key.to_string() }))
        }
        (SealedKind::Artifact | SealedKind::Event, Cursor::Row(pk)) => {
            let sql = match kind {
                SealedKind::Artifact => {
                    "SELECT id, swarm_id, owner_id, team_id, acl_level, content FROM artifacts WHERE rowid = ?1"
                }
                _ => {
                    "SELECT id, swarm_id, source_id, team_id, acl_level, payload FROM events WHERE seq = ?1"
                }
            };
            let row = conn
                .prepare_cached(sql)?
                .query_row([pk], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Vec<u8>>(5)?,
                    ))
                })
                .optional()?;
            let Some((id, swarm, owner, team, level, envelope)) = row else {
                return Ok(None);
            };
            let (aad, name) =
                domain_aad(kind, &id, &swarm, owner.as_deref(), team.as_deref(), level)?;
            Ok(Some(SealedRow { level, envelope, aad, name }))
        }
        _ => Err(StoreError::Corrupt("rotation cursor of another kind".into())),
    }
}

/// The associated data of an artifact's content or an event's payload, and the row's name
/// for error messages.
fn domain_aad(
    kind: SealedKind,
    id: &str,
    swarm: &str,
    owner: Option<&str>,
    team: Option<&str>,
    level: i64,
) -> Result<(Vec<u8>, String)> {
    let swarm = SwarmId::new(swarm)
        .map_err(|e| StoreError::Corrupt(format!("{} {id}: {e}", kind.as_str())))?;
    let scope = Scope::parse(owner, team, level)?;
    Ok((payload_aad(kind.as_str(), &swarm, id, &scope), format!("{} {id}", kind.as_str())))
}

/// Writes a re-sealed envelope (and, for artifacts, the hash of what is stored: the sealed
/// envelope's, since the content is now encrypted).
fn write_back(
    conn: &Connection,
    kind: SealedKind,
    at: &Cursor,
    envelope: Option<&[u8]>,
    key_id: Option<i64>,
) -> Result<()> {
    match (kind, at, envelope) {
        (SealedKind::Memory, Cursor::Memory(s, n, k), Some(env)) => conn
            .prepare_cached(
                "UPDATE memory SET value = ?4, key_id = ?5 WHERE swarm_id = ?1 AND namespace = ?2 AND key = ?3",
            )?
            .execute(params![s, n, k, env, key_id])?,
        (SealedKind::Memory, Cursor::Memory(s, n, k), None) => conn
            .prepare_cached(
                "UPDATE memory SET key_id = ?4 WHERE swarm_id = ?1 AND namespace = ?2 AND key = ?3",
            )?
            .execute(params![s, n, k, key_id])?,
        (SealedKind::Artifact, Cursor::Row(pk), Some(env)) => conn
            .prepare_cached(
                "UPDATE artifacts SET content = ?2, key_id = ?3, content_hash = ?4 WHERE rowid = ?1",
            )?
            .execute(params![pk, env, key_id, &blake3::hash(env).as_bytes()[..]])?,
        (SealedKind::Artifact, Cursor::Row(pk), None) => conn
            .prepare_cached("UPDATE artifacts SET key_id = ?2 WHERE rowid = ?1")?
            .execute(params![pk, key_id])?,
        (SealedKind::Event, Cursor::Row(pk), Some(env)) => conn
            .prepare_cached("UPDATE events SET payload = ?2, key_id = ?3 WHERE seq = ?1")?
            .execute(params![pk, env, key_id])?,
        (SealedKind::Event, Cursor::Row(pk), None) => conn
            .prepare_cached("UPDATE events SET key_id = ?2 WHERE seq = ?1")?
            .execute(params![pk, key_id])?,
        _ => return Err(StoreError::Corrupt("rotation cursor of another kind".into())),
    };
    Ok(())
}

/// One transaction of rotation: up to `limit` rows (and [`BATCH_BYTES`]) of the first kind
/// from `start` that has any left after its cursor.
fn run_batch(
    ctx: &mut WriteCtx<'_>,
    shared: &Arc<Shared>,
    start: (SealedKind, Cursor),
    active: i64,
    max_level: i64,
    limit: i64,
) -> Result<Option<Batch>> {
    let (mut kind, mut cursor) = start;
    loop {
        let found = candidates(ctx.conn(), kind, &cursor, active, max_level, limit)?;
        if found.is_empty() {
            let next = SealedKind::ALL.iter().position(|k| *k == kind).map(|i| i + 1);
            match next.and_then(|i| SealedKind::ALL.get(i)) {
                Some(&k) => {
                    kind = k;
                    cursor = Cursor::start(k);
                    continue;
                }
                None => return Ok(None),
            }
        }
        let mut bytes = 0i64;
        let mut taken = 0usize;
        let (mut reencrypted, mut encrypted) = (0u64, 0u64);
        for (at, len) in &found {
            if taken > 0 && bytes.saturating_add(*len) > BATCH_BYTES {
                break;
            }
            bytes = bytes.saturating_add(*len);
            taken += 1;
            cursor = at.clone();
            // Gone since it was listed (deleted or swept in this transaction): nothing to do.
            let Some(row) = load(ctx.conn(), kind, at)? else { continue };
            match reseal(shared, &row)? {
                Resealed::New { envelope, key_id, was_plain } => {
                    write_back(ctx.conn(), kind, at, Some(&envelope), Some(key_id))?;
                    if was_plain {
                        encrypted += 1;
                    } else {
                        reencrypted += 1;
                    }
                }
                // Already under the active key although the column said otherwise: correct
                // the column so the row is not picked again.
                Resealed::FixColumn(actual) => write_back(ctx.conn(), kind, at, None, actual)?,
            }
        }
        if reencrypted + encrypted > 0 {
            ctx.audit(&AuditEntry {
                at: shared.now().as_millis(),
                actor: Identity::System.audit_name().to_owned(),
                action: "store.rotate_keys",
                resource_type: kind.as_str(),
                resource: "*".to_owned(),
                swarm: None,
                outcome: Outcome::Ok,
                detail: serde_json::json!({ "reencrypted": reencrypted, "encrypted": encrypted, "key_id": active })
                    .to_string(),
                feed: None,
            })?;
        }
        let exhausted = taken == found.len() && i64::try_from(found.len()).unwrap_or(0) < limit;
        return Ok(Some(Batch { kind, reencrypted, encrypted, cursor, exhausted }));
    }
}

/// Rows of each kind rotation still has to do.
fn pending(conn: &Connection, active: i64, max_level: i64) -> Result<SealedCounts> {
    let mut out = SealedCounts::default();
    for kind in SealedKind::ALL {
        let n: i64 = conn.query_row(
            &format!("SELECT count(*) FROM {} WHERE {PENDING}", kind.table()),
            [active, max_level],
            |r| r.get(0),
        )?;
        *out.slot(kind) = u64_of(n);
    }
    Ok(out)
}

fn open_sealed(shared: &Shared, level: i64, envelope: &[u8], aad: &[u8]) -> bool {
    let encrypted_level = AclLevel::from_i64(level).is_ok_and(|l| shared.encrypts_level(l));
    let opened: std::result::Result<Vec<u8>, CodecError> = if encrypted_level {
        shared.codec().decode_encrypted(envelope, aad)
    } else {
        shared.codec().decode(envelope, aad)
    };
    opened.is_ok()
}

impl Store {
    /// Re-seals every sealed row (memory records, artifact versions, event payloads) under
    /// the keyring's active key, and encrypts rows at levels the policy encrypts that were
    /// stored in plaintext. `batch` rows (at most 8 MiB of envelopes) per transaction, so
    /// readers and writers are never held up for long; each transaction is complete on its
    /// own, so an interrupted rotation (even a killed process) loses nothing, and running
    /// it again continues with what is left. `progress` sees rows done and total. Rows
    /// written meanwhile by processes that still seal with an older key are reported in
    /// `remaining`: run it again once they reopened with the new key file. A row that does
    /// not open (tampered, or sealed with a key the keyring lacks) stops the rotation with
    /// [`StoreError::Codec`] naming it; the batches before it stay done. System only.
    pub fn rotate_keys(
        &self,
        who: &Identity,
        batch: u32,
        progress: impl FnMut(Progress),
    ) -> Result<RotationReport> {
        self.rotate_keys_bounded(who, batch, u64::MAX, progress)
    }

    /// Like [`Store::rotate_keys`], stopping after `max_batches` transactions (to spread
    /// the work out, or to test resumption).
    pub fn rotate_keys_bounded(
        &self,
        who: &Identity,
        batch: u32,
        max_batches: u64,
        mut progress: impl FnMut(Progress),
    ) -> Result<RotationReport> {
        self.require_system(who, "key rotation")?;
        let shared = &self.shared;
        let codec = shared.codec();
        let Some(keyring) = codec.keyring() else {
            return Err(StoreError::invalid("no keyring configured: nothing to rotate to"));
        };
        let active = i64::from(keyring.active_id().get());
        let max_level = shared.config.encrypt_up_to.map_or(0, |l| i64::from(l.as_u8()));
        let limit = i64::from(batch.clamp(1, 10_000));
        let total = pending(&*shared.pool.get()?, active, max_level)?.total();
        let mut report = RotationReport::default();
        progress(Progress { done: 0, total });
        let mut at = (SealedKind::Memory, Cursor::start(SealedKind::Memory));
        for _ in 0..max_batches {
            let inner = Arc::clone(&self.shared);
            let start = at.clone();
            let done = shared
                .writer
                .run(move |ctx| run_batch(ctx, &inner, start, active, max_level, limit))?;
            let Some(b) = done else { break };
            let k = report.kind_mut(b.kind);
            k.reencrypted += b.reencrypted;
            k.encrypted += b.encrypted;
            report.reencrypted += b.reencrypted;
            report.encrypted += b.encrypted;
            progress(Progress { done: report.reencrypted + report.encrypted, total });
            at = if b.exhausted {
                match SealedKind::ALL
                    .iter()
                    .position(|k| *k == b.kind)
                    .and_then(|i| SealedKind::ALL.get(i + 1))
                {
                    Some(&next) => (next, Cursor::start(next)),
                    None => break,
                }
            } else {
                (b.kind, b.cursor)
            };
        }
        let left = pending(&*shared.pool.get()?, active, max_level)?;
        for kind in SealedKind::ALL {
            report.kind_mut(kind).remaining = left.get(kind);
        }
        report.remaining = left.total();
        Ok(report)
    }

    /// For health checks: per key id, how many rows of each kind it seals, whether the
    /// keyring holds it, and whether a sample row of each kind really opens; and how many
    /// rows sit in plaintext at levels the policy encrypts. System only.
    pub fn key_report(&self, who: &Identity) -> Result<KeyReport> {
        let shared = &self.shared;
        let max_level = shared.config.encrypt_up_to.map_or(0, |l| i64::from(l.as_u8()));
        let keyring = shared.codec().keyring().cloned();
        let (keys, plaintext) = shared.read_snapshot_as(who, |conn, p| {
            if !p.is_system() {
                return Err(StoreError::PermissionDenied(
                    "the key report is for the system principal".into(),
                ));
            }
            let mut keys: Vec<KeyUse> = Vec::new();
            let mut plaintext = SealedCounts::default();
            for kind in SealedKind::ALL {
                let counts: Vec<(i64, i64)> = conn
                    .prepare_cached(&format!(
                        "SELECT key_id, count(*) FROM {} WHERE key_id IS NOT NULL GROUP BY key_id ORDER BY key_id",
                        kind.table()
                    ))?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                for (id, n) in counts {
                    let key_id = u32::try_from(id)
                        .map_err(|_| StoreError::Corrupt(format!("key id {id}")))?;
                    let available = keyring.as_ref().is_some_and(|k| k.contains(KeyId::new(key_id)));
                    let pos = match keys.iter().position(|k| k.key_id == key_id) {
                        Some(pos) => pos,
                        None => {
                            keys.push(KeyUse {
                                key_id,
                                records: 0,
                                sealed: SealedCounts::default(),
                                available,
                                sample_opens: available.then_some(true),
                                unopened: Vec::new(),
                            });
                            keys.len() - 1
                        }
                    };
                    let entry = &mut keys[pos];
                    *entry.sealed.slot(kind) += u64_of(n);
                    entry.records += u64_of(n);
                    if available && !sample_opens(conn, shared, kind, id)? {
                        entry.sample_opens = Some(false);
                        entry.unopened.push(kind);
                    }
                }
                if max_level > 0 {
                    let n: i64 = conn.query_row(
                        &format!(
                            "SELECT count(*) FROM {} WHERE key_id IS NULL AND acl_level <= ?1",
                            kind.table()
                        ),
                        [max_level],
                        |r| r.get(0),
                    )?;
                    *plaintext.slot(kind) = u64_of(n);
                }
            }
            keys.sort_by_key(|k| k.key_id);
            Ok((keys, plaintext))
        })?;
        Ok(KeyReport {
            active: keyring.map(|k| k.active_id().get()),
            keys,
            plaintext_at_encrypted_levels: plaintext.total(),
            plaintext,
        })
    }
}

/// Whether one row of `kind` sealed with `key_id` opens (false also when it cannot even be
/// parsed: the report is about whether the data is readable).
fn sample_opens(conn: &Connection, shared: &Shared, kind: SealedKind, key_id: i64) -> Result<bool> {
    let pk = match kind {
        SealedKind::Memory => "swarm_id, namespace, key",
        SealedKind::Artifact => "rowid",
        SealedKind::Event => "seq",
    };
    let sql = format!("SELECT {pk} FROM {} WHERE key_id = ?1 ORDER BY {pk} LIMIT 1", kind.table());
    let at = match kind {
        SealedKind::Memory => conn
            .prepare_cached(&sql)?
            .query_row([key_id], |r| Ok(Cursor::Memory(r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?,
        _ => conn
            .prepare_cached(&sql)?
            .query_row([key_id], |r| Ok(Cursor::Row(r.get(0)?)))
            .optional()?,
    };
    let Some(at) = at else { return Ok(true) };
    Ok(match load(conn, kind, &at) {
        Ok(Some(row)) => open_sealed(shared, row.level, &row.envelope, &row.aad),
        Ok(None) => true,
        Err(StoreError::Corrupt(_)) => false,
        Err(e) => return Err(e),
    })
}

/// The key the database records as active (`None` before a keyring was first used).
pub(crate) fn recorded_active_key(conn: &Connection) -> rusqlite::Result<Option<u32>> {
    conn.prepare_cached("SELECT key_id FROM encryption_keys WHERE status = 'active'")?
        .query_row([], |r| r.get(0))
        .optional()
}

/// What reading the keyring again came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// A keyring with new keys or a new active key is in use.
    Installed,
    /// The source gave the keys already held, with the same active key.
    NothingNew,
    /// The source's keyring failed a check (logged) and was not used.
    Refused,
    /// The source or the database could not be read (logged): worth another try soon.
    Failed,
    /// Read less than a second ago: not read.
    TooSoon,
    /// The store has no keyring source.
    NoSource,
}

/// How often a store reads its keyring again, at most.
const KEYRING_READ_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Store {
    /// How long after the database records a new active key a running store that reads
    /// its keyring from a source (a key file) seals with it: its maintenance thread looks
    /// every 250 ms and reads the source at most once a second, so within about 1.25 s;
    /// this leaves room for a retry. A rotation that waits this long and runs once more
    /// also re-seals what such stores sealed with the old key before they switched.
    pub const KEYRING_SWITCH: std::time::Duration = std::time::Duration::from_millis(2_500);
}

impl Shared {
    /// The key the database records as active, if the store reads its keyring again from
    /// a source and that key is not the one its codec seals with (another process rotated
    /// the key). Read on `conn`, the maintenance thread's own connection.
    pub(crate) fn key_rotated_elsewhere(&self, conn: &Connection) -> Result<Option<u32>> {
        if self.config.keyring_source.is_none() {
            return Ok(None);
        }
        let Some(active) = self.codec().keyring().map(|k| k.active_id().get()) else {
            return Ok(None);
        };
        Ok(recorded_active_key(conn)?.filter(|id| *id != active))
    }

    /// Reads the keyring again from the configured source and installs it if it keeps
    /// every key the codec holds, unchanged, and agrees with the database's check values.
    /// The key the database records as active becomes the one new values are sealed with
    /// if the new keyring holds it and its id is above the one sealed with now (ids grow
    /// with every key appended); otherwise the store goes on with the active key it had, so
    /// neither an edited `encryption_keys` table nor a process opened with an older key
    /// file can move it back to an older key. At most once a second, one call at a time. A
    /// keyring that fails a check is logged and ignored.
    pub(crate) fn refresh_keyring(&self) -> Refresh {
        let Some(source) = &self.config.keyring_source else { return Refresh::NoSource };
        // Held throughout: a slow read cannot install an older keyring over a newer one.
        let mut last = self.keyring_read_at.lock();
        if last.is_some_and(|at| at.elapsed() < KEYRING_READ_EVERY) {
            return Refresh::TooSoon;
        }
        *last = Some(std::time::Instant::now());
        let fresh = match source.load() {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the keyring again; will retry");
                return Refresh::Failed;
            }
        };
        match self.check_fresh_keyring(fresh) {
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the keyring read again; will retry");
                Refresh::Failed
            }
            Ok(Err(refusal)) => {
                tracing::warn!(reason = %refusal, "the keyring read again was not used; keeping the keys held");
                Refresh::Refused
            }
            Ok(Ok(Some(fresh))) => {
                tracing::info!(
                    keys = ?fresh.ids().map(KeyId::get).collect::<Vec<_>>(),
                    active = fresh.active_id().get(),
                    "read the keyring again after a key rotation"
                );
                self.install_keyring(fresh);
                Refresh::Installed
            }
            Ok(Ok(None)) => Refresh::NothingNew,
        }
    }

    /// `fresh` with the active key chosen, if it passes the checks and differs from what
    /// the codec holds; `None` when it holds nothing new; the reason when a check fails.
    /// `Err` only when the database cannot be read.
    fn check_fresh_keyring(
        &self,
        mut fresh: swarm_codec::Keyring,
    ) -> Result<std::result::Result<Option<swarm_codec::Keyring>, String>> {
        let codec = self.codec();
        let Some(held) = codec.keyring() else {
            return Ok(Err("the store was opened without a keyring".into()));
        };
        for id in held.ids() {
            if fresh.key_check(id).is_none() || fresh.key_check(id) != held.key_check(id) {
                return Ok(Err(format!(
                    "key {} is missing or different in the keyring read again",
                    id.get()
                )));
            }
        }
        // A connection of its own: the read that asked may hold a pooled one, maybe the
        // pool's last.
        let conn = self.target.open_reader(&self.config)?;
        let mut stmt = conn.prepare("SELECT check_value FROM encryption_keys WHERE key_id = ?1")?;
        for id in fresh.ids() {
            let recorded: Option<Vec<u8>> = stmt.query_row([id.get()], |r| r.get(0)).optional()?;
            if let (Some(recorded), Some(check)) = (recorded, fresh.key_check(id))
                && recorded.as_slice() != check.as_slice()
            {
                return Ok(Err(format!(
                    "key {} of the keyring read again is not the key the database recorded",
                    id.get()
                )));
            }
        }
        let recorded_active = recorded_active_key(&conn)?;
        // Forward only: key ids grow with every key appended, so a recorded key older than
        // the one sealed with now is never taken up.
        let active = match recorded_active.map(KeyId::new) {
            Some(id) if fresh.contains(id) && id.get() > held.active_id().get() => id,
            _ => held.active_id(),
        };
        if let Err(e) = fresh.set_active(active) {
            return Ok(Err(e.to_string()));
        }
        let same_keys = fresh.ids().eq(held.ids());
        if same_keys && active == held.active_id() {
            return Ok(Ok(None));
        }
        Ok(Ok(Some(fresh)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_per_kind() {
        let mut c = SealedCounts::default();
        *c.slot(SealedKind::Artifact) += 2;
        *c.slot(SealedKind::Event) += 3;
        assert_eq!((c.get(SealedKind::Memory), c.get(SealedKind::Artifact), c.total()), (0, 2, 5));
        assert_eq!(SealedKind::ALL.map(|k| k.table()), ["memory", "artifacts", "events"]);
    }
}
