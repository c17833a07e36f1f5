//! Operations on the database as a whole: backup, restore, optimize, key rotation.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use swarm_acl::{AclLevel, Identity};
use swarm_codec::Seal;

use crate::audit::{AuditEntry, Outcome};
use crate::error::{Result, StoreError};
use crate::store::Store;

/// How a backup is taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackupMethod {
    /// SQLite's online backup API, page by page with progress, from one read snapshot:
    /// writes go on meanwhile and the copy is consistent as of its start.
    #[default]
    Online,
    /// `VACUUM INTO`: a compacted copy, in one statement (no progress).
    VacuumInto,
}

/// Progress of a long operation: `done` of `total` units (pages or records).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all (may grow while the operation runs).
    pub total: u64,
}

/// What a backup produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackupReport {
    /// The backup file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Pages copied.
    pub pages: u64,
    /// How long it took.
    pub millis: u64,
    /// `PRAGMA integrity_check` of the copy (always `ok`: anything else is an error).
    pub integrity: String,
    /// The schema version of the copy.
    pub schema_version: u32,
}

/// What `optimize` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OptimizeReport {
    /// Expired records deleted.
    pub expired_purged: u64,
    /// WAL size before the checkpoint, in bytes.
    pub wal_bytes_before: u64,
    /// WAL size after it (0 when the checkpoint completed and truncated the WAL).
    pub wal_bytes_after: u64,
    /// Whether `PRAGMA optimize` and `ANALYZE` ran.
    pub analyzed: bool,
    /// Pages freed by `incremental_vacuum` (0 unless auto_vacuum is incremental).
    pub vacuumed_pages: u64,
    /// Free pages left in the file.
    pub freelist_pages: u64,
}

/// Progress and result of key rotation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    /// Records re-sealed under the active key in this run.
    pub reencrypted: u64,
    /// Records at encrypted levels that were in plaintext and are now encrypted.
    pub encrypted: u64,
    /// Records still to do (0 when complete).
    pub remaining: u64,
}

fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
    )
    .unwrap_or(0)
}

/// Verifies a database file: integrity check and schema version.
fn check_copy(path: &Path) -> Result<(String, u32)> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if integrity != "ok" {
        return Err(StoreError::Corrupt(format!(
            "{} failed its integrity check: {integrity}",
            path.display()
        )));
    }
    let version = crate::migrate::current_version(&conn)?;
    Ok((integrity, version))
}

fn refuse_existing(path: &Path) -> Result<()> {
    if path.exists() {
        return Err(StoreError::invalid(format!("{} exists; choose a new path", path.display())));
    }
    Ok(())
}

/// Copies `from` into a new file at `to` with the backup API, page by page.
fn copy_pages(from: &Connection, to: &Path, mut progress: impl FnMut(Progress)) -> Result<u64> {
    let mut dst = Connection::open(to)?;
    let pages = {
        let backup = Backup::new(from, &mut dst)?;
        loop {
            match backup.step(256)? {
                StepResult::Done => break,
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
            let p = backup.progress();
            let total = u64::try_from(p.pagecount).unwrap_or(0);
            let remaining = u64::try_from(p.remaining).unwrap_or(0);
            progress(Progress { done: total.saturating_sub(remaining), total });
        }
        let p = backup.progress();
        let total = u64::try_from(p.pagecount).unwrap_or(0);
        progress(Progress { done: total, total });
        total
    };
    // A backup is one self-contained file.
    dst.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))?;
    dst.close().map_err(|(_, e)| StoreError::from(e))?;
    Ok(pages)
}

impl Store {
    /// Writes a consistent copy of the database to a new file at `to`, while writes go
    /// on, and verifies it with an integrity check. Encrypted values stay encrypted; the
    /// key is not in the database, so back up the key file separately. System
    /// administrators only.
    pub fn backup(
        &self,
        who: &Identity,
        to: &Path,
        method: BackupMethod,
        progress: impl FnMut(Progress),
    ) -> Result<BackupReport> {
        self.require_system(who, "backup")?;
        refuse_existing(to)?;
        let start = Instant::now();
        let shared = &self.shared;
        let mut conn = shared.target.open_reader(&shared.config)?;
        let pages = match method {
            BackupMethod::Online => {
                // Hold one read transaction for the whole copy: every step then reads the
                // same snapshot, so concurrent commits neither restart nor tear it.
                let tx = conn.transaction()?;
                tx.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
                let pages = copy_pages(&tx, to, progress);
                tx.commit()?;
                pages?
            }
            BackupMethod::VacuumInto => {
                let target = to
                    .to_str()
                    .ok_or_else(|| StoreError::invalid("backup path is not valid UTF-8"))?;
                // VACUUM INTO needs a connection that may write its target file.
                drop(conn);
                let rw = Connection::open_with_flags(
                    &shared.target.uri,
                    OpenFlags::SQLITE_OPEN_READ_WRITE
                        | OpenFlags::SQLITE_OPEN_URI
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                rw.busy_timeout(shared.config.busy_timeout)?;
                rw.execute("VACUUM INTO ?1", [target])?;
                let pages: i64 =
                    Connection::open(to)?.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                let pages = u64::try_from(pages).unwrap_or(0);
                let mut progress = progress;
                progress(Progress { done: pages, total: pages });
                pages
            }
        };
        let (integrity, schema_version) = match check_copy(to) {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_file(to);
                return Err(e);
            }
        };
        let bytes = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
        let report = BackupReport {
            path: to.to_path_buf(),
            bytes,
            pages,
            millis: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
            integrity,
            schema_version,
        };
        let detail = serde_json::json!({ "path": to.display().to_string(), "bytes": bytes });
        self.audit_admin(who, "store.backup", detail)?;
        Ok(report)
    }

    /// Checkpoints the WAL, runs `PRAGMA optimize` and `ANALYZE`, purges expired records and
    /// runs `incremental_vacuum` when the database uses incremental auto-vacuum.
    pub fn optimize(&self, who: &Identity) -> Result<OptimizeReport> {
        self.require_system(who, "optimize")?;
        let mut expired_purged = 0;
        loop {
            let n = self.sweep_expired(self.shared.config.sweep_batch.max(1))?;
            expired_purged += n;
            if n < u64::from(self.shared.config.sweep_batch.max(1)) {
                break;
            }
        }
        let shared = &self.shared;
        let (wal_bytes_before, wal_bytes_after, vacuumed_pages, freelist_pages) =
            shared.writer.with_connection(|conn| {
                // ANALYZE writes statistics tables, so it runs before the checkpoint.
                conn.execute_batch("PRAGMA optimize; ANALYZE;")?;
                let before = shared.file_sizes().1;
                if !shared.target.memory {
                    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
                }
                let after = shared.file_sizes().1;
                let auto_vacuum: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
                let free_before: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
                if auto_vacuum == 2 {
                    conn.execute_batch("PRAGMA incremental_vacuum")?;
                }
                let free_after: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
                Ok((
                    before,
                    after,
                    u64::try_from(free_before - free_after).unwrap_or(0),
                    u64::try_from(free_after).unwrap_or(0),
                ))
            })?;
        let report = OptimizeReport {
            expired_purged,
            wal_bytes_before,
            wal_bytes_after,
            analyzed: true,
            vacuumed_pages,
            freelist_pages,
        };
        self.audit_admin(who, "store.optimize", serde_json::json!(report))?;
        Ok(report)
    }

    /// Re-seals memory records under the keyring's active key, `batch` records per
    /// transaction, so readers are never blocked for long; also encrypts records at levels
    /// the policy encrypts that were stored in plaintext. Safe to interrupt: run it again
    /// and it continues with what is left. `progress` sees records done and total.
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
        let Some(keyring) = shared.codec.keyring() else {
            return Err(StoreError::invalid("no keyring configured: nothing to rotate to"));
        };
        let active = i64::from(keyring.active_id().get());
        let max_level = shared.config.encrypt_up_to.map_or(0, |l| i64::from(l.as_u8()));
        let batch = batch.clamp(1, 10_000);
        let pending = || -> Result<u64> {
            let conn = shared.pool.get()?;
            let n: i64 = conn.query_row(
                "SELECT count(*) FROM memory WHERE (key_id IS NOT NULL AND key_id <> ?1) OR (key_id IS NULL AND acl_level <= ?2)",
                [active, max_level],
                |r| r.get(0),
            )?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        let total = pending()?;
        let mut report = RotationReport::default();
        progress(Progress { done: 0, total });
        for _ in 0..max_batches {
            let inner = self.shared.clone();
            let (reencrypted, encrypted) = self.shared.writer.run(move |ctx| {
                let rows: Vec<RotateRow> = {
                    let mut stmt = ctx.conn().prepare_cached(
                        "SELECT swarm_id, namespace, key, owner_id, team_id, acl_level, value_type, value, key_id FROM memory \
                         WHERE (key_id IS NOT NULL AND key_id <> ?1) OR (key_id IS NULL AND acl_level <= ?2) LIMIT ?3",
                    )?;
                    let rows = stmt.query_map(rusqlite::params![active, max_level, batch], RotateRow::from_row)?;
                    rows.collect::<rusqlite::Result<_>>()?
                };
                let mut re = 0u64;
                let mut enc = 0u64;
                for row in rows {
                    let (key, scope, vt) = row.parse()?;
                    let aad = crate::memory::aad_for(&key, &scope, vt);
                    let codec_err = |source| StoreError::Codec { key: key.to_string(), source };
                    let sealed = match row.key_id {
                        Some(_) => inner.codec.reencrypt(&row.value, &aad).map_err(codec_err)?,
                        None => {
                            let plain = inner.codec.decode(&row.value, &aad).map_err(codec_err)?;
                            Some(inner.codec.encode(&plain, Seal::Encrypt { aad: &aad }).map_err(codec_err)?)
                        }
                    };
                    let Some(sealed) = sealed else {
                        // Already sealed under the active key although the column said
                        // otherwise: correct the column so the row is not picked again.
                        let actual = swarm_codec::inspect(&row.value).map_err(codec_err)?.key_id().map(|k| i64::from(k.get()));
                        ctx.conn()
                            .prepare_cached(
                                "UPDATE memory SET key_id = ?4 WHERE swarm_id = ?1 AND namespace = ?2 AND key = ?3",
                            )?
                            .execute(rusqlite::params![row.swarm, row.namespace, row.key, actual])?;
                        continue;
                    };
                    ctx.conn()
                        .prepare_cached(
                            "UPDATE memory SET value = ?4, key_id = ?5 WHERE swarm_id = ?1 AND namespace = ?2 AND key = ?3",
                        )?
                        .execute(rusqlite::params![row.swarm, row.namespace, row.key, sealed, active])?;
                    if row.key_id.is_some() {
                        re += 1;
                    } else {
                        enc += 1;
                    }
                }
                if re + enc > 0 {
                    ctx.audit(&AuditEntry {
                        at: inner.now().as_millis(),
                        actor: Identity::System.audit_name().to_owned(),
                        action: "store.rotate_keys",
                        resource_type: "memory",
                        resource: "*".to_owned(),
                        swarm: None,
                        outcome: Outcome::Ok,
                        detail: serde_json::json!({ "reencrypted": re, "encrypted": enc, "key_id": active }).to_string(),
                        feed: None,
                    })?;
                }
                Ok((re, enc))
            })?;
            report.reencrypted += reencrypted;
            report.encrypted += encrypted;
            progress(Progress { done: report.reencrypted + report.encrypted, total });
            if reencrypted + encrypted == 0 {
                break;
            }
        }
        report.remaining = pending()?;
        Ok(report)
    }

    fn require_system(&self, who: &Identity, what: &str) -> Result<()> {
        let p = self.principal(who)?;
        if p.holds(
            swarm_acl::ResourceType::System,
            swarm_acl::Action::Admin,
            AclLevel::System,
            self.now(),
        ) {
            Ok(())
        } else {
            Err(StoreError::PermissionDenied(format!(
                "{what} needs the system principal or a system admin grant"
            )))
        }
    }

    fn audit_admin(
        &self,
        who: &Identity,
        action: &'static str,
        detail: serde_json::Value,
    ) -> Result<()> {
        let actor = who.audit_name().to_owned();
        self.shared.writer.run(move |ctx| {
            ctx.audit(&AuditEntry {
                at: i64::try_from(now_ms()).unwrap_or(i64::MAX),
                actor,
                action,
                resource_type: "system",
                resource: "database".to_owned(),
                swarm: None,
                outcome: Outcome::Ok,
                detail: detail.to_string(),
                feed: None,
            })
        })
    }
}

/// Restores a backup into a new database file at `to`: checks the backup's integrity,
/// copies it page by page, and checks the copy. Open the result with the same key (file)
/// as the original. The backup itself is not modified.
pub fn restore(from: &Path, to: &Path, progress: impl FnMut(Progress)) -> Result<BackupReport> {
    let start = Instant::now();
    refuse_existing(to)?;
    if !from.exists() {
        return Err(StoreError::NotFound(format!("backup {}", from.display())));
    }
    check_copy(from)?;
    let src = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let pages = copy_pages(&src, to, progress)?;
    let (integrity, schema_version) = check_copy(to)?;
    {
        // Restored databases run in WAL mode like every other.
        let c = Connection::open(to)?;
        c.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        let _: Option<i64> = c.query_row("SELECT 1", [], |r| r.get(0)).optional()?;
    }
    Ok(BackupReport {
        path: to.to_path_buf(),
        bytes: std::fs::metadata(to).map(|m| m.len()).unwrap_or(0),
        pages,
        millis: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        integrity,
        schema_version,
    })
}

struct RotateRow {
    swarm: String,
    namespace: String,
    key: String,
    owner: Option<String>,
    team: Option<String>,
    level: i64,
    value_type: String,
    value: Vec<u8>,
    key_id: Option<i64>,
}

impl RotateRow {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            swarm: r.get(0)?,
            namespace: r.get(1)?,
            key: r.get(2)?,
            owner: r.get(3)?,
            team: r.get(4)?,
            level: r.get(5)?,
            value_type: r.get(6)?,
            value: r.get(7)?,
            key_id: r.get(8)?,
        })
    }

    fn parse(&self) -> Result<(crate::RecordKey, crate::memory::Scope, crate::ValueType)> {
        crate::memory::parse_stored(
            &self.swarm,
            &self.namespace,
            &self.key,
            self.owner.as_deref(),
            self.team.as_deref(),
            self.level,
            &self.value_type,
        )
    }
}
