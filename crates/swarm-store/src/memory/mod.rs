//! Agent memory: the seed's SwarmMemoryManager / MemoryStoreAdapter operations.
//!
//! Every read runs the visibility predicate of swarm-acl inside its SQL, so a record the
//! principal cannot see is never fetched, and behaves exactly as an absent one. Every
//! write runs in the group-commit writer and decides against the existing record first:
//! nobody overwrites, downgrades or re-scopes what they could not write.

mod aad;
mod access;
mod cursor;
mod glob;
mod search;
mod types;

use std::sync::Arc;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row, params_from_iter};
use swarm_acl::{
    AclLevel, Action, AgentId, Identity, Principal, ResourceType, SqlColumns, SqlPredicate,
    SwarmId, TeamId, Timestamp, decide, sql_predicate, sql_predicate_in_swarm,
};
use swarm_codec::Seal;
use zeroize::Zeroizing;

pub(crate) use access::{AccessTracker, apply_access_counts};
pub(crate) use cursor::CursorSeal;
pub use glob::KeyPattern;
pub use search::{SearchHit, SearchPage, SearchQuery};
pub use types::{
    Expect, Key, Namespace, Record, RecordKey, RecordMeta, SetOptions, Value, ValueType, Written,
};

use crate::audit::{AuditEntry, Feed, Outcome};
use crate::error::{Result, StoreError};
use crate::metrics::Op;
use crate::sql::{Bind, i64_of, pred_binds, push_pred, u64_of};
use crate::store::{Shared, Store};
use crate::txn::WriteCtx;
use aad::memory_aad;
use types::{check_tags, ttl_millis};

/// Validates a duration used as a TTL or timeout and returns its milliseconds.
pub(crate) fn ttl_ms(d: Duration) -> Result<i64> {
    ttl_millis(d)
}

/// Columns of `memory AS m` for the ACL predicate.
const COLS: SqlColumns<'static> = SqlColumns {
    level: "m.acl_level",
    swarm: "m.swarm_id",
    owner: "m.owner_id",
    team: "m.team_id",
};
/// Columns of `memory` without an alias: for DELETE statements, which cannot alias their
/// table, and the point reads, where no other table has these columns.
const BARE_COLS: SqlColumns<'static> =
    SqlColumns { level: "acl_level", swarm: "swarm_id", owner: "owner_id", team: "team_id" };
/// Columns of `audit_log AS c` (the change feed) for the ACL predicate.
const CHANGE_COLS: SqlColumns<'static> = SqlColumns {
    level: "c.acl_level",
    swarm: "c.swarm_id",
    owner: "c.owner_id",
    team: "c.team_id",
};

/// The record columns every read selects, in [`RawRow`] order. The size and whether the
/// value is encrypted are not read: the opened value tells both (each column costs every
/// read a step in SQLite and a conversion in rusqlite). Only `value` needs its table named
/// beside `meta`: the statement's text is hashed, compared and copied by rusqlite's
/// statement cache on every read, so the point reads keep it short.
const RECORD_COLUMNS: &str = "owner_id, team_id, acl_level, value_type, m.value, tags, version, \
    created_at, updated_at, expires_at, access_count";

/// A memoised statement: predicate address, statement kind, the predicate (kept alive),
/// the statement.
type Memoised = (usize, &'static str, Arc<str>, Arc<str>);

thread_local! {
    /// Statement texts built around a predicate, by the predicate text's address (held
    /// alive here, so the address cannot be reused) and the kind of statement.
    static STATEMENTS: std::cell::RefCell<Vec<Memoised>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on the statement of `kind` around `pred`, built once per predicate shape and
/// thread: formatting it on every read showed in profiles.
fn with_statement<R>(
    kind: &'static str,
    pred: &SqlPredicate<'_>,
    build: fn(&str) -> String,
    f: impl FnOnce(&str) -> R,
) -> R {
    let key = Arc::as_ptr(pred.sql_shared()).cast::<u8>() as usize;
    STATEMENTS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((.., sql)) = cache.iter().find(|(k, t, ..)| *k == key && *t == kind) {
            return f(sql);
        }
        let sql: Arc<str> = Arc::from(build(pred.sql()));
        if cache.len() < 512 {
            cache.push((key, kind, Arc::clone(pred.sql_shared()), Arc::clone(&sql)));
        }
        f(&sql)
    })
}

/// A point read joined to the ACL generation: always one row, whose record columns are
/// NULL when the record is absent, expired or invisible to the principal.
fn get_sql(pred: &str) -> String {
    format!(
        "SELECT g.value, {RECORD_COLUMNS} FROM meta g LEFT JOIN memory m ON swarm_id = ?1 \
         AND namespace = ?2 AND m.key = ?3 AND (expires_at IS NULL OR expires_at > ?4) \
         AND {pred} WHERE g.key = 'acl_generation'"
    )
}

fn has_sql(pred: &str) -> String {
    format!(
        "SELECT g.value, version FROM meta g LEFT JOIN memory m ON swarm_id = ?1 \
         AND namespace = ?2 AND m.key = ?3 AND (expires_at IS NULL OR expires_at > ?4) \
         AND {pred} WHERE g.key = 'acl_generation'"
    )
}

const EXISTS_LIVE: &str = "SELECT EXISTS (SELECT 1 FROM memory WHERE swarm_id = ?1 AND namespace = ?2 AND key = ?3 \
    AND (expires_at IS NULL OR expires_at > ?4))";

const EXISTING: &str = "SELECT owner_id, team_id, acl_level, value_type, value, version, created_at, expires_at, \
    access_count, tags, key_id FROM memory WHERE swarm_id = ?1 AND namespace = ?2 AND key = ?3";

const UPSERT: &str = "INSERT INTO memory (swarm_id, namespace, key, owner_id, team_id, acl_level, value_type, \
    value, size, key_id, tags, version, created_at, updated_at, expires_at, access_count) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
    ON CONFLICT (swarm_id, namespace, key) DO UPDATE SET owner_id = excluded.owner_id, \
    team_id = excluded.team_id, acl_level = excluded.acl_level, value_type = excluded.value_type, \
    value = excluded.value, size = excluded.size, key_id = excluded.key_id, tags = excluded.tags, \
    version = excluded.version, created_at = excluded.created_at, updated_at = excluded.updated_at, \
    expires_at = excluded.expires_at, access_count = excluded.access_count, \
    last_accessed_at = CASE WHEN excluded.access_count = 0 THEN NULL ELSE last_accessed_at END";

/// The in-place update of a live record, with [`UPSERT`]'s parameters, for each choice of
/// which of the team, key id and expiry it rewrites (bit 0, 1 and 2 of the index). The
/// owner is never rewritten (a write keeps the record's owner) and neither is the creation
/// time. SQLite maintains an index, and checks a foreign key, for every column named in
/// `SET` whether or not its value changes: naming only what changed keeps an overwrite to
/// the record's own page (the upsert also rewrote `memory_by_owner`, a second WAL frame per
/// commit) and skips the parent-key lookups.
fn update_sql(rewrites: usize) -> &'static str {
    static TEXTS: std::sync::OnceLock<[String; 8]> = std::sync::OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        std::array::from_fn(|mask| {
            let mut sql = String::from(
                "UPDATE memory SET acl_level = ?6, value_type = ?7, value = ?8, size = ?9, \
                 tags = ?11, version = ?12, updated_at = ?14, access_count = ?16, \
                 last_accessed_at = CASE WHEN ?16 = 0 THEN NULL ELSE last_accessed_at END",
            );
            for (bit, column) in [(1, "team_id = ?5"), (2, "key_id = ?10"), (4, "expires_at = ?15")]
            {
                if mask & bit != 0 {
                    sql.push_str(", ");
                    sql.push_str(column);
                }
            }
            sql.push_str(" WHERE swarm_id = ?1 AND namespace = ?2 AND key = ?3");
            sql
        })
    });
    &texts[rewrites & 7]
}

const DELETE: &str = "DELETE FROM memory WHERE swarm_id = ?1 AND namespace = ?2 AND key = ?3";

/// The visibility predicate of a point read of `key` by `p`, numbered after
/// [`key_binds`]; it refers to `?1` for the principal's own swarm rather than binding it
/// again.
fn point_predicate<'p>(p: &'p Principal, key: &RecordKey, now: Timestamp) -> SqlPredicate<'p> {
    let swarm = (1, key.swarm().as_str());
    sql_predicate_in_swarm(p, Action::Read, ResourceType::Memory, BARE_COLS, now, 5, swarm)
}

/// The parameters of a point read: the key and the time (`?1`-`?4`).
fn key_binds(key: &RecordKey, now: Timestamp) -> [Bind<'_>; 4] {
    [
        Bind::Text(key.swarm().as_str()),
        Bind::Text(key.namespace().as_str()),
        Bind::Text(key.key().as_str()),
        Bind::Int(now.as_millis()),
    ]
}

/// [`key_binds`] followed by the predicate's parameters, not collected into a vector
/// (allocating one on every read showed in profiles of GET).
fn point_binds<'a, 'p: 'a>(
    key: &'a RecordKey,
    now: Timestamp,
    pred: &'a SqlPredicate<'p>,
) -> impl Iterator<Item = Bind<'a>> + 'a {
    key_binds(key, now).into_iter().chain(pred_binds(pred))
}

/// The owner column as read.
enum StoredOwner {
    Nobody,
    /// The reading agent itself, whose id is shared rather than copied and checked again:
    /// an agent reading its own records is the common case.
    Reader(AgentId),
    /// Anyone else, checked when the row is decoded.
    Other(String),
}

/// The agent reading, if an agent is.
fn reader(who: &Identity) -> Option<&AgentId> {
    match who {
        Identity::Agent(id) => Some(id),
        Identity::System => None,
    }
}

/// A record row as read, before its value is opened.
struct RawRow {
    owner: StoredOwner,
    team: Option<String>,
    level: i64,
    /// The value type, or the stored text that names none (reported as corruption by
    /// [`Shared::decode_row`]).
    value_type: std::result::Result<ValueType, String>,
    value: Vec<u8>,
    /// The stored tags column; `None` for the common `[]`, which is not copied.
    tags: Option<String>,
    version: i64,
    created_at: i64,
    updated_at: i64,
    expires_at: Option<i64>,
    access_count: i64,
}

impl RawRow {
    /// Reads the record columns starting at `at`; `None` when they are NULL (no record).
    /// `reader` is the agent reading, if any. Runs on every read: the value type, empty
    /// tags and the reader's own id are read in place, not copied.
    fn from_row(
        r: &Row<'_>,
        at: usize,
        reader: Option<&AgentId>,
    ) -> rusqlite::Result<Option<Self>> {
        let Some(level) = r.get::<_, Option<i64>>(at + 2)? else { return Ok(None) };
        // The common values are recognised by their bytes; only the others are checked as
        // UTF-8 and copied.
        let owner = match (r.get_ref(at)?, reader) {
            (ValueRef::Null, _) => StoredOwner::Nobody,
            (ValueRef::Text(owner), Some(id)) if owner == id.as_str().as_bytes() => {
                StoredOwner::Reader(id.clone())
            }
            _ => StoredOwner::Other(text_ref(r, at)?.to_owned()),
        };
        let value_type = match r.get_ref(at + 3)? {
            ValueRef::Text(stored) => ValueType::from_stored(stored),
            _ => None,
        };
        let value_type = match value_type {
            Some(vt) => Ok(vt),
            None => Err(text_ref(r, at + 3)?.to_owned()),
        };
        let tags = match r.get_ref(at + 5)? {
            ValueRef::Text(b"[]") => None,
            _ => Some(text_ref(r, at + 5)?.to_owned()),
        };
        Ok(Some(RawRow {
            owner,
            team: r.get(at + 1)?,
            level,
            value_type,
            value: r.get(at + 4)?,
            tags,
            version: r.get(at + 6)?,
            created_at: r.get(at + 7)?,
            updated_at: r.get(at + 8)?,
            expires_at: r.get(at + 9)?,
            access_count: r.get(at + 10)?,
        }))
    }
}

/// An opened value with what the record row would say about it.
struct Opened {
    value: Value,
    /// The plaintext's length in bytes.
    size: u64,
    encrypted: bool,
}

/// A text column read in place; a value of another type is reported with its column and
/// type, as `Row::get` would.
fn text_ref<'r>(r: &'r Row<'_>, idx: usize) -> rusqlite::Result<&'r str> {
    let v = r.get_ref(idx)?;
    v.as_str()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, v.data_type(), Box::new(e)))
}

/// Parses a stored tags column (a JSON array of strings); anything else is corruption,
/// not "no tags".
pub(crate) fn parse_tags(stored: &str) -> Result<Vec<String>> {
    if stored == "[]" {
        return Ok(Vec::new());
    }
    serde_json::from_str(stored)
        .map_err(|e| StoreError::Corrupt(format!("stored tags {stored:?}: {e}")))
}

pub(crate) use crate::domain::Scope;

/// Parses the stored key, scope and value type of a row.
pub(crate) fn parse_stored(
    swarm: &str,
    namespace: &str,
    key: &str,
    owner: Option<&str>,
    team: Option<&str>,
    level: i64,
    value_type: &str,
) -> Result<(RecordKey, Scope, ValueType)> {
    let key = RecordKey::parse(swarm, namespace, key)
        .map_err(|e| StoreError::Corrupt(format!("stored key: {e}")))?;
    Ok((key, parse_scope(owner, team, level)?, ValueType::parse(value_type)?))
}

/// The associated data sealing a record's value.
pub(crate) fn aad_for(key: &RecordKey, scope: &Scope, vt: ValueType) -> Vec<u8> {
    memory_aad(
        key.swarm().as_str(),
        key.namespace().as_str(),
        key.key().as_str(),
        scope.level,
        scope.owner.as_ref().map(AgentId::as_str),
        scope.team.as_ref().map(TeamId::as_str),
        vt,
    )
}

fn parse_scope(owner: Option<&str>, team: Option<&str>, level: i64) -> Result<Scope> {
    Scope::parse(owner, team, level)
}

impl Shared {
    /// Whether records of `level` are encrypted under the configured policy.
    pub(crate) fn encrypts_level(&self, level: AclLevel) -> bool {
        self.encrypts(level)
    }

    fn encrypts(&self, level: AclLevel) -> bool {
        self.config.encrypt_up_to.is_some_and(|max| level <= max)
    }

    /// Seals `plaintext` for the record `key` with scope `scope`.
    fn seal(
        &self,
        key: &RecordKey,
        scope: &Scope,
        vt: ValueType,
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, Option<u32>)> {
        let codec_err = |source| StoreError::Codec { key: key.to_string(), source };
        if self.encrypts(scope.level) {
            let aad = aad_for(key, scope, vt);
            let env =
                self.codec().encode(plaintext, Seal::Encrypt { aad: &aad }).map_err(codec_err)?;
            let key_id = swarm_codec::inspect(&env).map_err(codec_err)?.key_id().map(|k| k.get());
            Ok((env, key_id))
        } else {
            Ok((self.codec().encode(plaintext, Seal::Plain).map_err(codec_err)?, None))
        }
    }

    /// Opens a stored envelope back into the value.
    fn open(
        &self,
        key: &RecordKey,
        scope: &Scope,
        vt: ValueType,
        envelope: &[u8],
    ) -> Result<Value> {
        // A level the policy encrypts must hold an encrypted envelope: a plain one there was
        // put by someone other than the store (or predates the policy, and `rotate-key`
        // encrypts it), and is refused rather than trusted.
        let plain = self
            .codec_for(envelope)
            .decode_with(envelope, self.encrypts(scope.level), || aad_for(key, scope, vt))
            .map_err(|source| StoreError::Codec { key: key.to_string(), source })?;
        Value::from_bytes(vt, plain)
            .map_err(|e| StoreError::Corrupt(format!("value of {key}: {e}")))
    }

    /// [`Shared::open`] of an envelope the caller owns (opened in its buffer), also telling
    /// the value's size in bytes (what the `size` column holds) and whether the envelope
    /// was encrypted (whether `key_id` is set).
    fn open_owned(
        &self,
        key: &RecordKey,
        scope: &Scope,
        vt: ValueType,
        envelope: Vec<u8>,
    ) -> Result<Opened> {
        // Encrypted envelopes required where the policy encrypts, as in `open`.
        let mut encrypted = false;
        let plain = self
            .codec_for(&envelope)
            .decode_owned(envelope, self.encrypts(scope.level), || {
                encrypted = true;
                aad_for(key, scope, vt)
            })
            .map_err(|source| StoreError::Codec { key: key.to_string(), source })?;
        let size = plain.len() as u64;
        let value = Value::from_bytes(vt, plain)
            .map_err(|e| StoreError::Corrupt(format!("value of {key}: {e}")))?;
        Ok(Opened { value, size, encrypted })
    }

    fn decode_row(&self, key: RecordKey, raw: RawRow) -> Result<Record> {
        let owner = match raw.owner {
            StoredOwner::Nobody => None,
            StoredOwner::Reader(id) => Some(id),
            StoredOwner::Other(text) => Some(
                AgentId::new(&text)
                    .map_err(|e| StoreError::Corrupt(format!("stored owner: {e}")))?,
            ),
        };
        let scope = Scope::with_owner(owner, raw.team.as_deref(), raw.level)?;
        let vt = raw.value_type.or_else(|stored| ValueType::parse(&stored))?;
        let Opened { value, size, encrypted } = self.open_owned(&key, &scope, vt, raw.value)?;
        let tags = raw.tags.as_deref().map_or_else(|| Ok(Vec::new()), parse_tags)?;
        Ok(Record {
            meta: RecordMeta {
                owner: scope.owner,
                team: scope.team,
                level: scope.level,
                value_type: vt,
                version: u64_of(raw.version),
                size,
                encrypted,
                tags,
                created_at: Timestamp::from_millis(raw.created_at),
                updated_at: Timestamp::from_millis(raw.updated_at),
                expires_at: raw.expires_at.map(Timestamp::from_millis),
                access_count: u64_of(raw.access_count),
            },
            value,
            key,
        })
    }

    /// When a read found nothing for an agent, finds out whether a live record was there
    /// but hidden, and if so audits the denial. The caller still answers "absent".
    fn audit_if_hidden(
        &self,
        who: &Identity,
        key: &RecordKey,
        now: Timestamp,
        action: &'static str,
    ) -> Result<()> {
        let Identity::Agent(id) = who else { return Ok(()) };
        let conn = self.pool.get()?;
        let hidden: bool = conn
            .prepare_cached(EXISTS_LIVE)?
            .query_row(params_from_iter(key_binds(key, now)), |r| r.get(0))?;
        if hidden {
            self.audit_later(AuditEntry {
                at: now.as_millis(),
                actor: id.to_string(),
                action,
                resource_type: "memory",
                resource: key.to_string(),
                swarm: Some(key.swarm().to_string()),
                outcome: Outcome::Denied,
                detail: r#"{"reason":"not visible to the principal"}"#.to_owned(),
                feed: None,
            });
        }
        Ok(())
    }

    fn after_read(&self, who: &Identity, key: &RecordKey, now: Timestamp, action: &'static str) {
        self.access.record(key, now.as_millis());
        self.counters.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.config.audit_reads {
            self.audit_later(AuditEntry {
                at: now.as_millis(),
                actor: who.audit_name().to_owned(),
                action,
                resource_type: "memory",
                resource: key.to_string(),
                swarm: Some(key.swarm().to_string()),
                outcome: Outcome::Ok,
                detail: "{}".to_owned(),
                feed: None,
            });
        }
    }

    fn check_value(&self, plaintext_len: usize) -> Result<()> {
        let max = self.config.limits.max_value_len;
        if plaintext_len > max {
            return Err(StoreError::invalid(format!(
                "value is {plaintext_len} bytes, the limit is {max}"
            )));
        }
        Ok(())
    }

    fn check_options(&self, opts: &SetOptions) -> Result<()> {
        if let Some(ttl) = opts.ttl {
            ttl_millis(ttl)?;
        }
        if let Some(tags) = &opts.tags {
            check_tags(tags, &self.config.limits)?;
        }
        if opts.team.is_some() && opts.level.is_some_and(|l| l != AclLevel::Team) {
            return Err(StoreError::invalid("a team can only be given for team-level records"));
        }
        Ok(())
    }
}

/// A value ready to be written: its plaintext, and an envelope sealed on the caller's
/// thread for the scope the caller expects (re-sealed in the writer if that guess was
/// wrong, so encryption rarely runs under the write lock).
struct Prepared {
    value_type: ValueType,
    plaintext: Zeroizing<Vec<u8>>,
    sealed: Option<(Scope, Vec<u8>, Option<u32>)>,
}

/// What a write job is asked to do to one record.
enum Change {
    Put(Prepared),
    Add(i64),
}

/// Why a write was refused. Refusals are audited in the same transaction, so the job
/// commits them rather than rolling back.
#[derive(Debug)]
enum Refusal {
    Denied(&'static str),
    Conflict { expected: Expect, found: Option<u64>, scope: Scope },
}

impl Refusal {
    fn into_error(self, key: &RecordKey) -> StoreError {
        match self {
            Refusal::Denied(why) => StoreError::PermissionDenied(format!("{why} ({key})")),
            Refusal::Conflict { expected, found, .. } => StoreError::Conflict {
                key: key.to_string(),
                expected: expected.to_string(),
                found: found.map_or_else(|| "absent".to_owned(), |v| format!("version {v}")),
            },
        }
    }
}

/// The existing row, as the writer reads it.
struct Existing {
    scope: Scope,
    value_type: ValueType,
    value: Vec<u8>,
    version: u64,
    created_at: i64,
    expires_at: Option<i64>,
    access_count: i64,
    tags: String,
    key_id: Option<i64>,
}

fn load_existing(conn: &Connection, key: &RecordKey, now: Timestamp) -> Result<Option<Existing>> {
    let row = conn
        .prepare_cached(EXISTING)?
        .query_row(
            rusqlite::params![key.swarm().as_str(), key.namespace().as_str(), key.key().as_str()],
            |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                    r.get::<_, i64>(8)?,
                    r.get::<_, String>(9)?,
                    r.get::<_, Option<i64>>(10)?,
                ))
            },
        )
        .optional()?;
    let Some((
        owner,
        team,
        level,
        vt,
        value,
        version,
        created_at,
        expires_at,
        access_count,
        tags,
        key_id,
    )) = row
    else {
        return Ok(None);
    };
    // An expired record is absent, whether or not the sweeper has removed it yet.
    if expires_at.is_some_and(|at| at <= now.as_millis()) {
        return Ok(None);
    }
    Ok(Some(Existing {
        scope: parse_scope(owner.as_deref(), team.as_deref(), level)?,
        value_type: ValueType::parse(&vt)?,
        value,
        version: u64_of(version),
        created_at,
        expires_at,
        access_count,
        tags,
        key_id,
    }))
}

fn is_owner(p: &Principal, scope: &Scope) -> bool {
    match p {
        Principal::System => true,
        Principal::Agent(a) => scope.owner.as_ref() == Some(a.id()),
    }
}

/// The scope a write gives a record: kept from the existing record unless the options
/// change it, or chosen for a new one.
fn plan_scope(p: &Principal, existing: Option<&Scope>, opts: &SetOptions) -> Result<Scope> {
    let level = opts.level.or(existing.map(|e| e.level)).unwrap_or(AclLevel::Private);
    let team = if level == AclLevel::Team {
        match (&opts.team, existing) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(e)) if e.team.is_some() => e.team.clone(),
            (None, _) => match p.as_agent().map(|a| a.teams()) {
                Some([only]) => Some(only.clone()),
                Some([]) => {
                    return Err(StoreError::invalid(
                        "a team-level record needs a team, and the agent is in none",
                    ));
                }
                Some(_) => {
                    return Err(StoreError::invalid(
                        "the agent is in several teams: name the record's team",
                    ));
                }
                None => {
                    return Err(StoreError::invalid(
                        "a team-level record written by the system needs a team",
                    ));
                }
            },
        }
    } else {
        None
    };
    let owner = match existing {
        Some(e) => e.owner.clone(),
        None => p.as_agent().map(|a| a.id().clone()),
    };
    if level == AclLevel::Private && owner.is_none() {
        return Err(StoreError::invalid("the system principal cannot own a private record"));
    }
    Ok(Scope { owner, team, level })
}

/// Applies one write inside a job. `Err` aborts the job; `Ok(Err(refusal))` is a refusal
/// to be audited and committed.
#[allow(clippy::too_many_arguments)]
fn write_one(
    ctx: &mut WriteCtx<'_>,
    shared: &Arc<Shared>,
    p: &Principal,
    key: &RecordKey,
    change: Change,
    opts: &SetOptions,
    now: Timestamp,
    action: &'static str,
) -> Result<std::result::Result<(Written, Value), Refusal>> {
    let memory = ResourceType::Memory;
    if let Some(a) = p.as_agent()
        && a.swarm() != key.swarm()
    {
        return Ok(Err(Refusal::Denied("agents write only in their own swarm")));
    }
    let existing = load_existing(ctx.conn(), key, now)?;
    if let Some(e) = &existing {
        let access = e.scope.access(key.swarm());
        if !decide(p, Action::Read, memory, &access, now).is_allowed() {
            return Ok(Err(Refusal::Denied("the key is held by a record you cannot access")));
        }
        if !decide(p, Action::Write, memory, &access, now).is_allowed() {
            return Ok(Err(Refusal::Denied("no write permission on this record")));
        }
    }
    let scope = plan_scope(p, existing.as_ref().map(|e| &e.scope), opts)?;
    if let Some(e) = &existing {
        let rescoped = scope.level != e.scope.level || scope.team != e.scope.team;
        let admin =
            decide(p, Action::Admin, memory, &e.scope.access(key.swarm()), now).is_allowed();
        if rescoped && !is_owner(p, &e.scope) && !admin {
            return Ok(Err(Refusal::Denied(
                "only the record's owner can change its level or team",
            )));
        }
    }
    if !decide(p, Action::Write, memory, &scope.access(key.swarm()), now).is_allowed() {
        return Ok(Err(Refusal::Denied("no write permission at this level")));
    }
    let found = existing.as_ref().map(|e| e.version);
    match opts.expect {
        Some(Expect::Absent) if found.is_some() => {
            let scope = existing.as_ref().map_or_else(|| scope.clone(), |e| e.scope.clone());
            return Ok(Err(Refusal::Conflict { expected: Expect::Absent, found, scope }));
        }
        Some(Expect::Version(v)) if found != Some(v) => {
            let scope = existing.as_ref().map_or_else(|| scope.clone(), |e| e.scope.clone());
            return Ok(Err(Refusal::Conflict { expected: Expect::Version(v), found, scope }));
        }
        _ => {}
    }
    let (value_type, value, envelope, key_id, size) = match change {
        Change::Put(prep) => {
            let size = prep.plaintext.len();
            let value = Value::from_bytes(prep.value_type, prep.plaintext.to_vec())
                .map_err(StoreError::invalid)?;
            let (env, key_id) = match prep.sealed {
                Some((sealed_scope, env, key_id)) if sealed_scope == scope => (env, key_id),
                _ => shared.seal(key, &scope, prep.value_type, &prep.plaintext)?,
            };
            (prep.value_type, value, env, key_id, size)
        }
        Change::Add(by) => {
            let current = match &existing {
                Some(e) => shared.open(key, &e.scope, e.value_type, &e.value)?,
                None => Value::Integer(0),
            };
            let n =
                current.as_integer().ok_or_else(|| StoreError::NotAnInteger(key.to_string()))?;
            let sum = n.checked_add(by).ok_or_else(|| StoreError::Overflow(key.to_string()))?;
            let next = current.with_integer(sum);
            let vt = next.value_type();
            let bytes = Zeroizing::new(next.to_bytes()?);
            let (env, key_id) = shared.seal(key, &scope, vt, &bytes)?;
            (vt, next, env, key_id, bytes.len())
        }
    };
    let expires_at = match (opts.ttl, &existing) {
        (Some(ttl), _) => Some(now.as_millis().saturating_add(ttl_millis(ttl)?)),
        // incr keeps the record's expiry; set without a TTL clears it, like Redis SET.
        (None, Some(e)) if opts.keep_expiry => e.expires_at,
        _ => None,
    };
    let tags = match (&opts.tags, &existing) {
        (Some(t), _) => serde_json::to_string(t).map_err(|e| StoreError::invalid(e.to_string()))?,
        (None, Some(e)) => e.tags.clone(),
        (None, None) => "[]".to_owned(),
    };
    let version = ctx.next_version();
    let (created_at, access_count) = match &existing {
        Some(e) => (e.created_at, e.access_count),
        None => (now.as_millis(), 0),
    };
    let owner = scope.owner.as_ref().map(AgentId::as_str);
    let team = scope.team.as_ref().map(TeamId::as_str);
    let key_id = key_id.map(i64::from);
    // A live record keeps its owner, so it is updated in place; a new key, or one whose
    // record has expired but is not swept yet, is upserted.
    let sql = match &existing {
        Some(e) if e.scope.owner == scope.owner => update_sql(
            usize::from(e.scope.team != scope.team)
                | usize::from(e.key_id != key_id) << 1
                | usize::from(e.expires_at != expires_at) << 2,
        ),
        _ => UPSERT,
    };
    let upserted = ctx.conn().prepare_cached(sql)?.execute(params_from_iter([
        Bind::Text(key.swarm().as_str()),
        Bind::Text(key.namespace().as_str()),
        Bind::Text(key.key().as_str()),
        Bind::OptText(owner),
        Bind::OptText(team),
        Bind::Int(i64::from(scope.level.as_u8())),
        Bind::Text(value_type.as_str()),
        Bind::Blob(&envelope),
        Bind::Int(i64::try_from(size).unwrap_or(i64::MAX)),
        Bind::OptInt(key_id),
        Bind::Text(&tags),
        Bind::Int(i64_of(version)),
        Bind::Int(created_at),
        Bind::Int(now.as_millis()),
        Bind::OptInt(expires_at),
        Bind::Int(access_count),
    ]));
    match upserted {
        Ok(1) => {}
        Ok(n) => {
            return Err(StoreError::Corrupt(format!("a write of {key} changed {n} rows, not one")));
        }
        Err(e) => return Err(missing_parent(e, key, team)),
    }
    let created = existing.is_none();
    let detail = serde_json::json!({ "created": created, "size": size });
    record_change(ctx, p, key, action, &scope, detail, now)?;
    Ok(Ok((Written { version, created }, value)))
}

/// Appends the audit row of a memory change, which is also its change-feed entry: it
/// carries the record's namespace, key and scope (never the value), and its sequence
/// number is the version the change gave the record.
fn record_change(
    ctx: &mut WriteCtx<'_>,
    p: &Principal,
    key: &RecordKey,
    action: &'static str,
    scope: &Scope,
    detail: serde_json::Value,
    now: Timestamp,
) -> Result<()> {
    ctx.audit(&AuditEntry {
        at: now.as_millis(),
        actor: p.audit_name().to_owned(),
        action,
        resource_type: "memory",
        resource: key.to_string(),
        swarm: Some(key.swarm().to_string()),
        outcome: Outcome::Ok,
        detail: detail.to_string(),
        feed: Some(Feed {
            namespace: key.namespace().to_string(),
            key: key.key().to_string(),
            level: scope.level.as_u8(),
            owner: scope.owner.as_ref().map(ToString::to_string),
            team: scope.team.as_ref().map(ToString::to_string),
        }),
    })
}

/// The change-feed operation an audited memory action stands for.
fn change_op(action: &str) -> Result<&'static str> {
    match action {
        "memory.set" | "memory.mset" | "memory.incr" => Ok("set"),
        "memory.delete" => Ok("delete"),
        "memory.expire" => Ok("expire"),
        other => {
            Err(StoreError::Corrupt(format!("audit row with a record key has action {other:?}")))
        }
    }
}

/// Audits a refusal in the job's transaction (and records a version conflict in the
/// conflicts table), and turns it into the caller's error.
fn refuse(
    ctx: &mut WriteCtx<'_>,
    p: &Principal,
    key: &RecordKey,
    action: &'static str,
    refusal: Refusal,
    now: Timestamp,
) -> Result<StoreError> {
    let (outcome, detail) = match &refusal {
        Refusal::Denied(why) => (Outcome::Denied, serde_json::json!({ "reason": why })),
        Refusal::Conflict { expected, found, scope } => {
            let detail = serde_json::json!({ "expected": expected.to_string(), "found": found });
            // Recorded with the record's scope: whoever can see the record can see that
            // writes to it collided, nobody else.
            crate::domain::conflicts::record(
                ctx,
                &crate::domain::conflicts::NewConflict {
                    swarm: key.swarm().clone(),
                    kind: "version_mismatch",
                    severity: "low",
                    a: ("memory".into(), key.to_string()),
                    b: Some(("agent".into(), p.audit_name().to_owned())),
                    description: format!("write to {key} expected {expected}"),
                    detail: detail.clone(),
                    strategy: "first_write_wins",
                    status: "resolved",
                    scope: scope.clone(),
                },
                now,
            )?;
            (Outcome::Conflict, detail)
        }
    };
    ctx.audit(&AuditEntry {
        at: now.as_millis(),
        actor: p.audit_name().to_owned(),
        action,
        resource_type: "memory",
        resource: key.to_string(),
        swarm: Some(key.swarm().to_string()),
        outcome,
        detail: detail.to_string(),
        feed: None,
    })?;
    Ok(refusal.into_error(key))
}

/// A random id with a prefix, such as `cf_3f2a...`.
pub(crate) fn random_id(prefix: &str) -> String {
    let bytes: [u8; 12] = rand::random();
    format!("{prefix}_{}", hex::encode(bytes))
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Page<T> {
    /// The items, in order.
    pub items: Vec<T>,
    /// Pass this as `after` to get the next page; `None` when this was the last.
    pub next: Option<String>,
}

/// What `list` returns per record: metadata only, never the value.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RecordSummary {
    /// Namespace.
    pub namespace: Namespace,
    /// Key.
    pub key: Key,
    /// Level.
    pub level: AclLevel,
    /// Owner.
    pub owner: Option<AgentId>,
    /// Team.
    pub team: Option<TeamId>,
    /// Value type.
    pub value_type: ValueType,
    /// Version.
    pub version: u64,
    /// Plaintext size.
    pub size: u64,
    /// Whether the value is encrypted.
    pub encrypted: bool,
    /// Tags.
    pub tags: Vec<String>,
    /// Last write.
    pub updated_at: Timestamp,
    /// Expiry.
    pub expires_at: Option<Timestamp>,
}

/// A listing request: records of a swarm, optionally one namespace, whose keys match a
/// pattern and that carry a tag.
#[derive(Clone, Debug)]
pub struct ListQuery {
    swarm: SwarmId,
    namespace: Option<Namespace>,
    pattern: KeyPattern,
    tag: Option<String>,
    after: Option<(Namespace, Key)>,
    limit: usize,
}

impl ListQuery {
    /// Most records one page returns.
    pub const MAX_LIMIT: usize = 1000;

    /// Every record of `swarm` the principal can see, 100 per page.
    pub fn new(swarm: SwarmId) -> Self {
        Self {
            swarm,
            namespace: None,
            pattern: KeyPattern::literal_any(),
            tag: None,
            after: None,
            limit: 100,
        }
    }

    /// Only this namespace.
    pub fn namespace(mut self, ns: Namespace) -> Self {
        self.namespace = Some(ns);
        self
    }

    /// Only keys matching `pattern`.
    pub fn pattern(mut self, pattern: KeyPattern) -> Self {
        self.pattern = pattern;
        self
    }

    /// Only records carrying `tag`.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// Continue after the cursor a previous page returned.
    pub fn after(mut self, cursor: &str) -> Result<Self> {
        let (ns, key) = cursor
            .split_once('\u{1f}')
            .ok_or_else(|| StoreError::invalid("malformed page cursor"))?;
        self.after = Some((Namespace::new(ns)?, Key::new(key)?));
        Ok(self)
    }

    /// Page size, 1 to [`ListQuery::MAX_LIMIT`].
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = n.clamp(1, Self::MAX_LIMIT);
        self
    }
}

/// Counts of the records a principal can see.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MemoryStats {
    /// Live records.
    pub records: u64,
    /// Sum of their plaintext sizes.
    pub bytes: u64,
    /// Records per level, index 0 = private ... 4 = system.
    pub by_level: [u64; 5],
    /// Distinct namespaces.
    pub namespaces: u64,
    /// Encrypted records.
    pub encrypted: u64,
    /// Expired records not yet swept (system principal only; 0 otherwise).
    pub expired_unswept: u64,
}

/// One change of the memory change feed: never the value.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChangeEvent {
    /// Position in the feed; resume after it.
    pub seq: u64,
    /// The record.
    pub key: RecordKey,
    /// `set`, `delete` or `expire`.
    pub op: String,
    /// After a set, the record's new version; after a delete or expiry, the
    /// position of the removal (newer than any version the record had).
    pub version: u64,
    /// The record's level.
    pub level: AclLevel,
    /// The record's owner.
    pub owner: Option<AgentId>,
    /// The record's team.
    pub team: Option<TeamId>,
    /// When it happened.
    pub at: Timestamp,
}

/// Which changes a watcher wants.
#[derive(Clone, Debug)]
pub struct ChangeFilter {
    swarm: Option<SwarmId>,
    namespace: Option<Namespace>,
    prefix: String,
}

impl ChangeFilter {
    /// Every change in `swarm`.
    pub fn swarm(swarm: SwarmId) -> Self {
        Self { swarm: Some(swarm), namespace: None, prefix: String::new() }
    }

    /// Every change of every swarm (what the ACL lets the reader see of them: all of it
    /// for the system principal, public records of other swarms for agents).
    pub fn all_swarms() -> Self {
        Self { swarm: None, namespace: None, prefix: String::new() }
    }

    /// Only this namespace.
    pub fn namespace(mut self, ns: Namespace) -> Self {
        self.namespace = Some(ns);
        self
    }

    /// Only keys starting with `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

/// A page of the change feed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChangePage {
    /// Changes after the requested position, oldest first.
    pub changes: Vec<ChangeEvent>,
    /// Where to resume (the last seq looked at, visible or not).
    pub cursor: u64,
    /// True when the requested position is past the feed's head: the database went
    /// backwards (restored from an older backup, or replaced), so what the caller saw
    /// may no longer exist and it should re-read the records it cares about. The
    /// cursor is then the head.
    pub gap: bool,
}

impl KeyPattern {
    fn literal_any() -> Self {
        // An empty pattern matches everything; parse cannot fail on it.
        KeyPattern::parse("").unwrap_or_else(|_| KeyPattern::literal(""))
    }
}

impl Store {
    /// Reads a record. `Ok(None)` when it is absent, expired, or not visible to `who`
    /// (the three are indistinguishable to the caller; a hidden record's denial is
    /// audited).
    pub fn get(&self, who: &Identity, key: &RecordKey) -> Result<Option<Record>> {
        self.shared.metrics.time(Op::Get, || {
            let shared = &self.shared;
            let now = shared.now();
            let raw = shared.read_as(who, now, |conn, p| {
                let pred = point_predicate(p, key, now);
                let binds = point_binds(key, now, &pred);
                let mut stmt =
                    with_statement("get", &pred, get_sql, |sql| conn.prepare_cached(sql))?;
                let (generation, raw) = stmt.query_row(params_from_iter(binds), |r| {
                    Ok((r.get::<_, i64>(0)?, RawRow::from_row(r, 1, reader(who))?))
                })?;
                Ok((raw, u64_of(generation)))
            })?;
            match raw {
                Some(raw) => {
                    let record = shared.decode_row(key.clone(), raw)?;
                    shared.after_read(who, key, now, "memory.get");
                    Ok(Some(record))
                }
                None => {
                    shared.audit_if_hidden(who, key, now, "memory.get")?;
                    Ok(None)
                }
            }
        })
    }

    /// Whether a record exists and is visible to `who`.
    pub fn has(&self, who: &Identity, key: &RecordKey) -> Result<bool> {
        self.shared.metrics.time(Op::Has, || {
            let shared = &self.shared;
            let now = shared.now();
            let found = shared.read_as(who, now, |conn, p| {
                let pred = point_predicate(p, key, now);
                let binds = point_binds(key, now, &pred);
                let mut stmt =
                    with_statement("has", &pred, has_sql, |sql| conn.prepare_cached(sql))?;
                let (generation, version) = stmt.query_row(params_from_iter(binds), |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
                })?;
                Ok((version.is_some(), u64_of(generation)))
            })?;
            if !found {
                shared.audit_if_hidden(who, key, now, "memory.has")?;
            }
            Ok(found)
        })
    }

    /// Reads several records in one snapshot; each is `None` when absent or not visible.
    pub fn mget(&self, who: &Identity, keys: &[RecordKey]) -> Result<Vec<Option<Record>>> {
        self.shared.metrics.time(Op::Mget, || {
            let shared = &self.shared;
            if keys.len() > shared.config.limits.max_batch {
                return Err(StoreError::invalid(format!(
                    "{} keys in one mget, the limit is {}",
                    keys.len(),
                    shared.config.limits.max_batch
                )));
            }
            let now = shared.now();
            let raws = shared.read_snapshot_as(who, |conn, p| {
                let pred = sql_predicate(p, Action::Read, ResourceType::Memory, BARE_COLS, now, 5);
                let mut stmt =
                    with_statement("get", &pred, get_sql, |sql| conn.prepare_cached(sql))?;
                let mut out = Vec::with_capacity(keys.len());
                for key in keys {
                    let binds = point_binds(key, now, &pred);
                    out.push(stmt.query_row(params_from_iter(binds), |r| {
                        RawRow::from_row(r, 1, reader(who))
                    })?);
                }
                Ok(out)
            })?;
            let mut out = Vec::with_capacity(keys.len());
            for (key, raw) in keys.iter().zip(raws) {
                match raw {
                    Some(raw) => {
                        out.push(Some(shared.decode_row(key.clone(), raw)?));
                        shared.after_read(who, key, now, "memory.mget");
                    }
                    None => {
                        shared.audit_if_hidden(who, key, now, "memory.mget")?;
                        out.push(None);
                    }
                }
            }
            Ok(out)
        })
    }

    fn prepare(
        &self,
        who: &Identity,
        key: &RecordKey,
        value: &Value,
        opts: &SetOptions,
    ) -> Result<Prepared> {
        let shared = &self.shared;
        shared.check_options(opts)?;
        let plaintext = Zeroizing::new(value.to_bytes()?);
        shared.check_value(plaintext.len())?;
        // Seal now, on the caller's thread, for the scope a new record would get; the
        // writer re-seals only if the record turns out to have another scope.
        let guess = shared.principal(who).ok().and_then(|p| plan_scope(&p, None, opts).ok());
        let sealed = match guess {
            Some(scope) => {
                let (env, key_id) = shared.seal(key, &scope, value.value_type(), &plaintext)?;
                Some((scope, env, key_id))
            }
            None => None,
        };
        Ok(Prepared { value_type: value.value_type(), plaintext, sealed })
    }

    /// Writes a record. Level and team default to the existing record's (or private for a
    /// new one); the TTL is the options' (none: no expiry). With an expectation in the
    /// options, a mismatch is [`StoreError::Conflict`] and is recorded in the conflicts
    /// table.
    pub fn set(
        &self,
        who: &Identity,
        key: &RecordKey,
        value: Value,
        opts: &SetOptions,
    ) -> Result<Written> {
        self.shared.metrics.time(Op::Set, || {
            let prepared = self.prepare(who, key, &value, opts)?;
            let key = key.clone();
            let opts = opts.clone();
            self.shared
                .write_as(who, move |ctx, shared, p| {
                    let now = shared.now();
                    let change = Change::Put(prepared);
                    match write_one(ctx, shared, p, &key, change, &opts, now, "memory.set")? {
                        Ok((w, _)) => {
                            notify(ctx, shared);
                            Ok(Ok(w))
                        }
                        Err(r) => Ok(Err(refuse(ctx, p, &key, "memory.set", r, now)?)),
                    }
                })
                .and_then(|r| r)
                .map_err(|e| self.count_error(e))
                .inspect(|_| {
                    self.shared.counters.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                })
        })
    }

    fn count_error(&self, e: StoreError) -> StoreError {
        let c = &self.shared.counters;
        match &e {
            StoreError::Conflict { .. } => {
                c.conflicts.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            }
            StoreError::PermissionDenied(_) => {
                c.denials.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            }
            _ => 0,
        };
        e
    }

    /// `set` with a TTL: the seed's `setex(key, ttl, value)`.
    pub fn setex(
        &self,
        who: &Identity,
        key: &RecordKey,
        ttl: Duration,
        value: Value,
        opts: &SetOptions,
    ) -> Result<Written> {
        self.set(who, key, value, &opts.clone().ttl(ttl))
    }

    /// Writes several records in one transaction: all are written, or none (the first
    /// refusal or invalid item fails the whole batch).
    pub fn mset(
        &self,
        who: &Identity,
        items: Vec<(RecordKey, Value)>,
        opts: &SetOptions,
    ) -> Result<Vec<Written>> {
        self.shared.metrics.time(Op::Mset, || {
            let limits = self.shared.config.limits;
            if items.len() > limits.max_batch {
                return Err(StoreError::invalid(format!(
                    "{} items in one mset, the limit is {}",
                    items.len(),
                    limits.max_batch
                )));
            }
            if opts.expect.is_some() {
                return Err(StoreError::invalid(
                    "mset takes no version expectation: use set with if_version per record",
                ));
            }
            let mut prepared = Vec::with_capacity(items.len());
            for (key, value) in items {
                let p = self.prepare(who, &key, &value, opts)?;
                prepared.push((key, p));
            }
            let opts = opts.clone();
            self.shared
                .write_as(who, move |ctx, shared, p| {
                    let now = shared.now();
                    let mut refused: Option<(RecordKey, Refusal)> = None;
                    let result = ctx.atomically(|ctx| {
                        let mut out = Vec::with_capacity(prepared.len());
                        for (key, prep) in prepared {
                            let change = Change::Put(prep);
                            match write_one(
                                ctx,
                                shared,
                                p,
                                &key,
                                change,
                                &opts,
                                now,
                                "memory.mset",
                            )? {
                                Ok((w, _)) => out.push(w),
                                Err(r) => {
                                    refused = Some((key, r));
                                    return Err(StoreError::invalid("refused"));
                                }
                            }
                        }
                        Ok(out)
                    });
                    match (result, refused) {
                        (Ok(out), _) => {
                            notify(ctx, shared);
                            Ok(Ok(out))
                        }
                        (Err(_), Some((key, r))) => {
                            Ok(Err(refuse(ctx, p, &key, "memory.mset", r, now)?))
                        }
                        (Err(e), None) => Err(e),
                    }
                })
                .and_then(|r| r)
                .map_err(|e| self.count_error(e))
        })
    }

    /// Adds `by` to an integer record atomically and returns the new value. An absent
    /// record is created holding `by` (with the options' level, team and TTL); an existing
    /// one keeps its expiry. Text and JSON values that hold a whole number work too and
    /// keep their type; anything else is [`StoreError::NotAnInteger`].
    pub fn incr(&self, who: &Identity, key: &RecordKey, by: i64, opts: &SetOptions) -> Result<i64> {
        self.shared.metrics.time(Op::Incr, || {
            self.shared.check_options(opts)?;
            let key = key.clone();
            let mut opts = opts.clone();
            opts.keep_expiry = true;
            self.shared
                .write_as(who, move |ctx, shared, p| {
                    let now = shared.now();
                    match write_one(
                        ctx,
                        shared,
                        p,
                        &key,
                        Change::Add(by),
                        &opts,
                        now,
                        "memory.incr",
                    )? {
                        Ok((_, value)) => {
                            notify(ctx, shared);
                            Ok(Ok(value.as_integer().unwrap_or_default()))
                        }
                        Err(r) => Ok(Err(refuse(ctx, p, &key, "memory.incr", r, now)?)),
                    }
                })
                .and_then(|r| r)
                .map_err(|e| self.count_error(e))
        })
    }

    /// Subtracts `by`: `incr` with `-by`.
    pub fn decr(&self, who: &Identity, key: &RecordKey, by: i64, opts: &SetOptions) -> Result<i64> {
        let neg = by.checked_neg().ok_or_else(|| StoreError::Overflow(key.to_string()))?;
        self.incr(who, key, neg, opts)
    }

    /// Deletes a record; `Ok(false)` when it is absent or not visible. With `expect`, a
    /// mismatch is [`StoreError::Conflict`] (compare-and-delete).
    pub fn delete(&self, who: &Identity, key: &RecordKey, expect: Option<Expect>) -> Result<bool> {
        self.shared.metrics.time(Op::Delete, || {
            let key = key.clone();
            let deleted = self
                .shared
                .write_as(who, move |ctx, shared, p| {
                    let now = shared.now();
                    let memory = ResourceType::Memory;
                    let existing = load_existing(ctx.conn(), &key, now)?;
                    let visible = existing.as_ref().filter(|e| {
                        decide(p, Action::Read, memory, &e.scope.access(key.swarm()), now)
                            .is_allowed()
                    });
                    let Some(e) = visible else {
                        if existing.is_some() {
                            refuse(
                                ctx,
                                p,
                                &key,
                                "memory.delete",
                                Refusal::Denied("not visible to the principal"),
                                now,
                            )?;
                        }
                        return match expect {
                            Some(Expect::Version(v)) => {
                                // No record the caller can see: the conflict is the
                                // caller's own (a hidden record's existence stays hidden).
                                let scope = Scope {
                                    owner: p.as_agent().map(|a| a.id().clone()),
                                    team: None,
                                    level: AclLevel::Private,
                                };
                                let r = Refusal::Conflict {
                                    expected: Expect::Version(v),
                                    found: None,
                                    scope,
                                };
                                Ok(Err(refuse(ctx, p, &key, "memory.delete", r, now)?))
                            }
                            _ => Ok(Ok(false)),
                        };
                    };
                    if !decide(p, Action::Delete, memory, &e.scope.access(key.swarm()), now)
                        .is_allowed()
                    {
                        return Ok(Err(refuse(
                            ctx,
                            p,
                            &key,
                            "memory.delete",
                            Refusal::Denied("no delete permission on this record"),
                            now,
                        )?));
                    }
                    if let Some(Expect::Version(v)) = expect
                        && v != e.version
                    {
                        let r = Refusal::Conflict {
                            expected: Expect::Version(v),
                            found: Some(e.version),
                            scope: e.scope.clone(),
                        };
                        return Ok(Err(refuse(ctx, p, &key, "memory.delete", r, now)?));
                    }
                    if let Some(Expect::Absent) = expect {
                        let r = Refusal::Conflict {
                            expected: Expect::Absent,
                            found: Some(e.version),
                            scope: e.scope.clone(),
                        };
                        return Ok(Err(refuse(ctx, p, &key, "memory.delete", r, now)?));
                    }
                    ctx.conn().prepare_cached(DELETE)?.execute(rusqlite::params![
                        key.swarm().as_str(),
                        key.namespace().as_str(),
                        key.key().as_str()
                    ])?;
                    let detail = serde_json::json!({ "previous_version": e.version });
                    record_change(ctx, p, &key, "memory.delete", &e.scope, detail, now)?;
                    notify(ctx, shared);
                    Ok(Ok(true))
                })
                .and_then(|r| r)
                .map_err(|e| self.count_error(e))?;
            Ok(deleted)
        })
    }

    /// Deletes every record of `namespace` in `swarm` that `who` may delete, and returns how
    /// many went. Records `who` cannot delete stay.
    pub fn clear(&self, who: &Identity, swarm: &SwarmId, namespace: &Namespace) -> Result<u64> {
        self.clear_where(who, Some((swarm.clone(), namespace.clone())))
    }

    /// Deletes every memory record of the database. System principal only.
    pub fn clear_all(&self, who: &Identity) -> Result<u64> {
        if *who != Identity::System {
            return Err(StoreError::PermissionDenied(
                "only the system principal can clear the whole store".into(),
            ));
        }
        self.clear_where(who, None)
    }

    fn clear_where(&self, who: &Identity, scope: Option<(SwarmId, Namespace)>) -> Result<u64> {
        self.shared.metrics.time(Op::Clear, || {
            self.shared.write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                let pred =
                    sql_predicate(p, Action::Delete, ResourceType::Memory, BARE_COLS, now, 3);
                let (filter, resource) = match &scope {
                    Some((s, n)) => ("swarm_id = ?1 AND namespace = ?2", format!("{s}/{n}")),
                    None => ("?1 IS NOT NULL AND ?2 IS NOT NULL", "*".to_owned()),
                };
                let sql = format!(
                    "DELETE FROM memory WHERE {filter} AND {} \
                     RETURNING swarm_id, namespace, key, acl_level, owner_id, team_id, version",
                    pred.sql()
                );
                let (s, n) = scope.as_ref().map_or(("", ""), |(s, n)| (s.as_str(), n.as_str()));
                let mut binds = vec![Bind::Text(s), Bind::Text(n)];
                push_pred(&mut binds, &pred);
                let deleted: Vec<RemovedRow> = {
                    let mut stmt = ctx.conn().prepare(&sql)?;
                    let rows = stmt.query_map(params_from_iter(binds), RemovedRow::from_row)?;
                    rows.collect::<rusqlite::Result<_>>()?
                };
                // One audit row per record: each deletion is audited and is an entry of
                // the change feed.
                let detail = serde_json::json!({ "by": "clear", "scope": resource });
                for row in &deleted {
                    let (key, scope) = row.parse()?;
                    record_change(ctx, p, &key, "memory.delete", &scope, detail.clone(), now)?;
                }
                if !deleted.is_empty() {
                    notify(ctx, shared);
                }
                Ok(deleted.len() as u64)
            })
        })
    }

    /// Keys of `namespace` in `swarm` matching `pattern` that `who` can see, in key order.
    pub fn keys(
        &self,
        who: &Identity,
        swarm: &SwarmId,
        namespace: &Namespace,
        pattern: &KeyPattern,
        limit: usize,
    ) -> Result<Vec<Key>> {
        let q = ListQuery::new(swarm.clone())
            .namespace(namespace.clone())
            .pattern(pattern.clone())
            .limit(limit);
        Ok(self.list(who, &q)?.items.into_iter().map(|s| s.key).collect())
    }

    /// Lists the records `who` can see (metadata only), a page at a time, ordered by
    /// namespace then key.
    pub fn list(&self, who: &Identity, q: &ListQuery) -> Result<Page<RecordSummary>> {
        self.shared.metrics.time(Op::List, || {
        let now = self.shared.now();
        self.shared.read_snapshot_as(who, |conn, p| {
            let glob = q.pattern.to_sqlite_glob();
            let prefix = q.pattern.literal_prefix();
            let upper = glob::prefix_successor(&prefix);
            let mut sql = String::from(
                "SELECT m.namespace, m.key, m.acl_level, m.owner_id, m.team_id, m.value_type, m.version, m.size, \
                 m.key_id, m.tags, m.updated_at, m.expires_at FROM memory AS m \
                 WHERE m.swarm_id = ?1 AND m.key GLOB ?2 AND (m.expires_at IS NULL OR m.expires_at > ?3)",
            );
            let mut binds = vec![Bind::Text(q.swarm.as_str()), Bind::Text(&glob), Bind::Int(now.as_millis())];
            let mut n = 4;
            let mut next = |sql: &mut String, clause: &str| {
                sql.push_str(&clause.replace("?N", &format!("?{n}")));
                n += 1;
            };
            if let Some(ns) = &q.namespace {
                next(&mut sql, " AND m.namespace = ?N");
                binds.push(Bind::Text(ns.as_str()));
            }
            if !prefix.is_empty() {
                next(&mut sql, " AND m.key >= ?N");
                binds.push(Bind::Text(&prefix));
                if let Some(u) = &upper {
                    next(&mut sql, " AND m.key < ?N");
                    binds.push(Bind::Text(u));
                }
            }
            if let Some(tag) = &q.tag {
                next(&mut sql, " AND EXISTS (SELECT 1 FROM json_each(m.tags) WHERE json_each.value = ?N)");
                binds.push(Bind::Text(tag));
            }
            if let Some((ans, akey)) = &q.after {
                next(&mut sql, " AND (m.namespace, m.key) > (?N");
                binds.push(Bind::Text(ans.as_str()));
                next(&mut sql, ", ?N)");
                binds.push(Bind::Text(akey.as_str()));
            }
            let pred = sql_predicate(p, Action::Read, ResourceType::Memory, COLS, now, n);
            n += pred.params().len();
            push_pred(&mut binds, &pred);
            sql.push_str(&format!(" AND {} ORDER BY m.namespace, m.key LIMIT ?{n}", pred.sql()));
            let fetch = q.limit + 1;
            binds.push(Bind::Int(i64::try_from(fetch).unwrap_or(i64::MAX)));
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(binds), |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, Option<i64>>(8)?,
                    r.get::<_, String>(9)?,
                    r.get::<_, i64>(10)?,
                    r.get::<_, Option<i64>>(11)?,
                ))
            })?;
            let mut items = Vec::new();
            for row in rows {
                let (ns, key, level, owner, team, vt, version, size, key_id, tags, updated, expires) = row?;
                let scope = parse_scope(owner.as_deref(), team.as_deref(), level)?;
                items.push(RecordSummary {
                    namespace: Namespace::new(&ns).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    key: Key::new(&key).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    level: scope.level,
                    owner: scope.owner,
                    team: scope.team,
                    value_type: ValueType::parse(&vt)?,
                    version: u64_of(version),
                    size: u64_of(size),
                    encrypted: key_id.is_some(),
                    tags: parse_tags(&tags)?,
                    updated_at: Timestamp::from_millis(updated),
                    expires_at: expires.map(Timestamp::from_millis),
                });
            }
            let next = if items.len() > q.limit {
                items.truncate(q.limit);
                items.last().map(|s| format!("{}\u{1f}{}", s.namespace, s.key))
            } else {
                None
            };
            Ok(Page { items, next })
        })
            })
    }

    /// Counts of the records `who` can see in `swarm` (all swarms for the system
    /// principal when `swarm` is `None`).
    pub fn stats(&self, who: &Identity, swarm: Option<&SwarmId>) -> Result<MemoryStats> {
        let now = self.shared.now();
        self.shared.read_snapshot_as(who, |conn, p| {
            let swarm = match (swarm, p.as_agent()) {
                (Some(s), _) => Some(s.clone()),
                (None, Some(a)) => Some(a.swarm().clone()),
                (None, None) => None,
            };
            let pred = sql_predicate(p, Action::Read, ResourceType::Memory, COLS, now, 3);
            let swarm_text = swarm.as_ref().map(SwarmId::as_str);
            let sql = format!(
                "SELECT m.acl_level, count(*), coalesce(sum(m.size), 0), count(m.key_id) FROM memory AS m \
                 WHERE (?1 IS NULL OR m.swarm_id = ?1) AND (m.expires_at IS NULL OR m.expires_at > ?2) AND {} \
                 GROUP BY m.acl_level",
                pred.sql()
            );
            let mut binds = vec![Bind::OptText(swarm_text), Bind::Int(now.as_millis())];
            push_pred(&mut binds, &pred);
            let mut stats = MemoryStats::default();
            {
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map(params_from_iter(binds), |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
                })?;
                for row in rows {
                    let (level, count, bytes, encrypted) = row?;
                    let idx = usize::try_from(level - 1).ok().filter(|i| *i < 5).ok_or_else(|| {
                        StoreError::Corrupt(format!("stored level {level}"))
                    })?;
                    stats.by_level[idx] = u64_of(count);
                    stats.records += u64_of(count);
                    stats.bytes += u64_of(bytes);
                    stats.encrypted += u64_of(encrypted);
                }
            }
            let sql = format!(
                "SELECT count(DISTINCT m.namespace) FROM memory AS m \
                 WHERE (?1 IS NULL OR m.swarm_id = ?1) AND (m.expires_at IS NULL OR m.expires_at > ?2) AND {}",
                pred.sql()
            );
            let mut binds = vec![Bind::OptText(swarm_text), Bind::Int(now.as_millis())];
            push_pred(&mut binds, &pred);
            stats.namespaces = u64_of(conn.prepare_cached(&sql)?.query_row(params_from_iter(binds), |r| r.get(0))?);
            if p.is_system() {
                stats.expired_unswept = u64_of(conn.query_row(
                    "SELECT count(*) FROM memory WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                    [now.as_millis()],
                    |r| r.get(0),
                )?);
            }
            Ok(stats)
        })
    }

    /// The memory changes after `after` that `who` can see, oldest first, at most
    /// `limit` (1-1000). Changes carry keys and versions, never values.
    pub fn changes_since(
        &self,
        who: &Identity,
        after: u64,
        filter: &ChangeFilter,
        limit: usize,
    ) -> Result<ChangePage> {
        self.shared.metrics.time(Op::Changes, || {
        let now = self.shared.now();
        let limit = limit.clamp(1, 1000);
        self.shared.read_snapshot_as(who, |conn, p| {
            let upper = glob::prefix_successor(&filter.prefix);
            let mut sql = String::from(
                "SELECT c.seq, c.swarm_id, c.namespace, c.key, c.action, c.acl_level, c.owner_id, c.team_id, c.seq, c.at \
                 FROM audit_log AS c WHERE c.seq > ?1 AND c.seq <= ?2 AND c.key IS NOT NULL \
                 AND c.resource_type = 'memory' AND c.outcome = 'ok' AND (?3 IS NULL OR c.swarm_id = ?3)",
            );
            // Look at a bounded window of the feed so an invisible flood cannot make one
            // call scan without end; the cursor still moves past it.
            let window_end: i64 = conn.query_row(
                "SELECT coalesce(max(seq), 0) FROM (SELECT seq FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT 10000)",
                [i64_of(after)],
                |r| r.get(0),
            )?;
            let mut binds = vec![
                Bind::Int(i64_of(after)),
                Bind::Int(window_end),
                Bind::OptText(filter.swarm.as_ref().map(SwarmId::as_str)),
            ];
            let mut n = 4;
            if let Some(ns) = &filter.namespace {
                sql.push_str(&format!(" AND c.namespace = ?{n}"));
                binds.push(Bind::Text(ns.as_str()));
                n += 1;
            }
            if !filter.prefix.is_empty() {
                sql.push_str(&format!(" AND c.key >= ?{n}"));
                binds.push(Bind::Text(&filter.prefix));
                n += 1;
                if let Some(u) = &upper {
                    sql.push_str(&format!(" AND c.key < ?{n}"));
                    binds.push(Bind::Text(u));
                    n += 1;
                }
            }
            let pred = sql_predicate(p, Action::Read, ResourceType::Memory, CHANGE_COLS, now, n);
            n += pred.params().len();
            push_pred(&mut binds, &pred);
            sql.push_str(&format!(" AND {} ORDER BY c.seq LIMIT ?{n}", pred.sql()));
            binds.push(Bind::Int(i64::try_from(limit).unwrap_or(1000)));
            let offset: i64 = conn
                .prepare_cached("SELECT coalesce((SELECT value FROM meta WHERE key = 'version_offset'), 0)")?
                .query_row([], |r| r.get(0))?;
            let mut changes = Vec::new();
            {
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map(params_from_iter(binds), |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<String>>(7)?,
                        r.get::<_, i64>(8)?,
                        r.get::<_, i64>(9)?,
                    ))
                })?;
                for row in rows {
                    let (seq, swarm, ns, key, op, level, owner, team, version, at) = row?;
                    let scope = parse_scope(owner.as_deref(), team.as_deref(), level)?;
                    changes.push(ChangeEvent {
                        seq: u64_of(seq),
                        key: RecordKey::parse(&swarm, &ns, &key).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                        op: change_op(&op)?.to_owned(),
                        version: u64_of(version.saturating_add(offset)),
                        level: scope.level,
                        owner: scope.owner,
                        team: scope.team,
                        at: Timestamp::from_millis(at),
                    });
                }
            }
            let cursor = if changes.len() == limit {
                changes.last().map_or(after, |c| c.seq)
            } else {
                u64_of(window_end).max(after)
            };
            // The feed is the audit log, which is never trimmed, so nothing in it is ever
            // missed. A position past its head means the database went backwards (restored
            // from an older backup or replaced): what the caller saw may no longer exist.
            let head: i64 = conn
                .prepare_cached("SELECT coalesce(max(seq), 0) FROM audit_log")?
                .query_row([], |r| r.get(0))?;
            let gap = after > u64_of(head);
            let cursor = if gap { u64_of(head) } else { cursor };
            Ok(ChangePage { changes, cursor, gap })
        })
            })
    }

    /// The newest position of the change feed (watch from here for new changes only).
    pub fn change_head(&self) -> Result<u64> {
        self.shared.check_open()?;
        let conn = self.shared.pool.get()?;
        let head: i64 =
            conn.query_row("SELECT coalesce(max(seq), 0) FROM audit_log", [], |r| r.get(0))?;
        Ok(u64_of(head))
    }

    /// Watches memory changes visible to `who`, starting after `from` (use
    /// [`Store::change_head`] for new changes only).
    pub fn watch(&self, who: &Identity, filter: ChangeFilter, from: u64) -> Watch {
        Watch {
            store: self.clone(),
            who: who.clone(),
            filter,
            cursor: from,
            buffer: Default::default(),
            missed: false,
        }
    }

    /// Deletes up to `batch` expired records now (the sweeper does this in the
    /// background) and returns how many went.
    pub fn sweep_expired(&self, batch: u32) -> Result<u64> {
        self.shared.metrics.time(Op::Sweep, || sweep_once(&self.shared, batch))
    }
}

/// Turns a foreign-key failure of a memory write into the error a caller can act on: the
/// swarm (or, for the system principal, the named team) does not exist.
fn missing_parent(e: rusqlite::Error, key: &RecordKey, team: Option<&str>) -> StoreError {
    let fk = matches!(
        &e,
        rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY
    );
    if !fk {
        return e.into();
    }
    match team {
        Some(t) => StoreError::NotFound(format!("swarm {} or team {t}", key.swarm())),
        None => StoreError::NotFound(format!("swarm {}", key.swarm())),
    }
}

/// Wakes watchers once the job's group has committed.
fn notify(ctx: &mut WriteCtx<'_>, shared: &Arc<Shared>) {
    let signal = Arc::clone(shared);
    ctx.after_commit(move || signal.changed.notify());
}

/// A row returned by a `DELETE ... RETURNING swarm_id, namespace, key, acl_level,
/// owner_id, team_id, version`: what the change feed needs to know about it.
struct RemovedRow {
    swarm: String,
    namespace: String,
    key: String,
    level: i64,
    owner: Option<String>,
    team: Option<String>,
    version: i64,
}

impl RemovedRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            swarm: r.get(0)?,
            namespace: r.get(1)?,
            key: r.get(2)?,
            level: r.get(3)?,
            owner: r.get(4)?,
            team: r.get(5)?,
            version: r.get(6)?,
        })
    }

    fn parse(&self) -> Result<(RecordKey, Scope)> {
        let scope = parse_scope(self.owner.as_deref(), self.team.as_deref(), self.level)?;
        let key = RecordKey::parse(&self.swarm, &self.namespace, &self.key)
            .map_err(|e| StoreError::Corrupt(format!("stored key: {e}")))?;
        Ok((key, scope))
    }
}

/// One sweep transaction: up to `batch` expired records deleted, each leaving an
/// `expire` change, and one audit row.
pub(crate) fn sweep_once(shared: &Arc<Shared>, batch: u32) -> Result<u64> {
    const SWEEP: &str = "DELETE FROM memory WHERE (swarm_id, namespace, key) IN \
        (SELECT swarm_id, namespace, key FROM memory WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2) \
        RETURNING swarm_id, namespace, key, acl_level, owner_id, team_id, version";
    let inner = Arc::clone(shared);
    let n = shared.write_as(&Identity::System, move |ctx, _, p| {
        let now = inner.now();
        let rows: Vec<RemovedRow> = {
            let mut stmt = ctx.conn().prepare_cached(SWEEP)?;
            let rows =
                stmt.query_map(rusqlite::params![now.as_millis(), batch], RemovedRow::from_row)?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        if rows.is_empty() {
            return Ok(0);
        }
        for row in &rows {
            let (key, scope) = row.parse()?;
            let detail = serde_json::json!({ "previous_version": row.version });
            record_change(ctx, p, &key, "memory.expire", &scope, detail, now)?;
        }
        let signal = Arc::clone(&inner);
        ctx.after_commit(move || signal.changed.notify());
        Ok(rows.len() as u64)
    })?;
    shared.counters.expired_swept.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    Ok(n)
}

/// A live view of the change feed for one principal. Changes are read through the same
/// ACL predicate as every other read, so a watcher never learns of a record it cannot
/// see; it resumes from its cursor after a restart, and notices changes made by other
/// processes by polling.
pub struct Watch {
    store: Store,
    who: Identity,
    filter: ChangeFilter,
    cursor: u64,
    buffer: std::collections::VecDeque<ChangeEvent>,
    missed: bool,
}

impl Watch {
    /// How often a waiting watcher looks for changes made by other processes.
    const POLL: Duration = Duration::from_millis(100);

    /// The position to resume from.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Whether the watcher found its position past the feed's head (the database went
    /// backwards, see [`ChangePage::gap`]): the caller should re-read what it cares
    /// about.
    pub fn missed_changes(&self) -> bool {
        self.missed
    }

    /// The next visible change, waiting at most `timeout`; `Ok(None)` on timeout.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<ChangeEvent>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(c) = self.buffer.pop_front() {
                return Ok(Some(c));
            }
            let epoch = self.store.shared.changed.epoch();
            let page = self.store.changes_since(&self.who, self.cursor, &self.filter, 256)?;
            self.missed |= page.gap;
            self.cursor = page.cursor;
            if !page.changes.is_empty() {
                self.buffer.extend(page.changes);
                continue;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.store.shared.changed.wait_past(epoch, (deadline - now).min(Self::POLL));
        }
    }
}
