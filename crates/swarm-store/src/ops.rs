//! Operations on the database as a whole: backup, restore, optimize (key rotation is in
//! `keys.rs`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use swarm_acl::{AclLevel, Identity};

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

    /// Refuses anyone but the system principal and agents holding a system admin grant.
    pub(crate) fn require_system(&self, who: &Identity, what: &str) -> Result<()> {
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
