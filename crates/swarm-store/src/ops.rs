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

/// The files SQLite keeps beside a database: a new database must not find any of them, or
/// SQLite would take a planted one for its own (replaying a planted WAL into the copy).
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Refuses a destination that exists in any form, a dangling symbolic link included (the
/// reason for `symlink_metadata`: `exists()` follows links), or whose WAL, shared-memory or
/// journal file does. This only fails early; what makes the destination ours is the
/// no-replace move in [`Staged::publish`].
fn refuse_existing(path: &Path) -> Result<()> {
    if std::fs::symlink_metadata(path).is_ok() {
        return Err(StoreError::invalid(format!("{} exists; choose a new path", path.display())));
    }
    for suffix in COMPANIONS {
        let companion = with_suffix(path, suffix);
        if std::fs::symlink_metadata(&companion).is_ok() {
            return Err(StoreError::invalid(format!(
                "{} exists beside the new database {}: remove it or choose a new path",
                companion.display(),
                path.display()
            )));
        }
    }
    Ok(())
}

fn io_error(what: &str, path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("cannot {what} {}: {e}", path.display()))
}

/// A new database file written in a private directory (mode 0700) beside its destination,
/// then moved into place without replacing anything.
///
/// SQLite opens its files by name and follows symbolic links, so writing straight to the
/// destination lets anyone who may create files in its directory redirect the copy (a link
/// planted after the existence check makes a backup or restore overwrite another database).
/// Nobody else can create files in the private directory, SQLite's WAL and shared-memory
/// files included, and the final move fails when the destination exists in any form. The
/// directory and everything in it are removed when this is dropped.
struct Staged {
    dir: tempfile::TempDir,
    file: PathBuf,
    to: PathBuf,
}

impl Staged {
    fn new(to: &Path) -> Result<Self> {
        refuse_existing(to)?;
        let name = to
            .file_name()
            .ok_or_else(|| StoreError::invalid(format!("{} names no file", to.display())))?;
        let parent = match to.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(name);
        prefix.push(".");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".staging");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o700));
        }
        let dir = builder
            .tempdir_in(parent)
            .map_err(|e| io_error("create a staging directory in", parent, e))?;
        let file = dir.path().join("db");
        Ok(Self { dir, file, to: to.to_path_buf() })
    }

    /// The staged file as a string for SQLite.
    fn file_str(&self) -> Result<&str> {
        self.file.to_str().ok_or_else(|| StoreError::invalid("database path is not valid UTF-8"))
    }

    /// Moves the staged file to its destination: atomically, and only if nothing is there
    /// (not even a dangling link). Returns the file's size.
    fn publish(self) -> Result<u64> {
        refuse_existing(&self.to)?;
        // Everything must be in the database file itself: a WAL left beside the staged copy
        // would stay behind in the staging directory.
        let wal = with_suffix(&self.file, "-wal");
        if std::fs::symlink_metadata(&wal).is_ok_and(|m| m.len() > 0) {
            return Err(StoreError::Database(format!(
                "the copy for {} still has a write-ahead log: it was not closed cleanly",
                self.to.display()
            )));
        }
        let bytes =
            std::fs::metadata(&self.file).map_err(|e| io_error("read", &self.file, e))?.len();
        let staged = tempfile::TempPath::try_from_path(&self.file)
            .map_err(|e| io_error("read", &self.file, e))?;
        staged.persist_noclobber(&self.to).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                StoreError::invalid(format!("{} exists; choose a new path", self.to.display()))
            } else {
                io_error("move the new database to", &self.to, e.error)
            }
        })?;
        // The new name is durable only once its directory is synced (best effort: not every
        // platform can open a directory).
        if let Some(d) = self.dir.path().parent().and_then(|p| std::fs::File::open(p).ok()) {
            let _ = d.sync_all();
        }
        Ok(bytes)
    }
}

/// Opens a new file in a staging directory (created, never followed through a link).
fn open_new(path: &Path) -> Result<Connection> {
    Ok(Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NOFOLLOW
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?)
}

/// Copies `from` into a new file at `to` with the backup API, page by page.
fn copy_pages(from: &Connection, to: &Path, mut progress: impl FnMut(Progress)) -> Result<u64> {
    let mut dst = open_new(to)?;
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
    ///
    /// `to` must not exist in any form (a dangling symbolic link, or a WAL or journal file
    /// beside it, is refused too): the copy is written in a private directory beside `to`
    /// and moved into place only when complete, without replacing anything.
    pub fn backup(
        &self,
        who: &Identity,
        to: &Path,
        method: BackupMethod,
        progress: impl FnMut(Progress),
    ) -> Result<BackupReport> {
        self.require_system(who, "backup")?;
        let start = Instant::now();
        let staged = Staged::new(to)?;
        let shared = &self.shared;
        let mut conn = shared.target.open_reader(&shared.config)?;
        let pages = match method {
            BackupMethod::Online => {
                // Hold one read transaction for the whole copy: every step then reads the
                // same snapshot, so concurrent commits neither restart nor tear it.
                let tx = conn.transaction()?;
                tx.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
                let pages = copy_pages(&tx, &staged.file, progress);
                tx.commit()?;
                pages?
            }
            BackupMethod::VacuumInto => {
                let target = staged.file_str()?;
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
                drop(rw);
                let pages: i64 =
                    open_new(&staged.file)?.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                let pages = u64::try_from(pages).unwrap_or(0);
                let mut progress = progress;
                progress(Progress { done: pages, total: pages });
                pages
            }
        };
        let (integrity, schema_version) = check_copy(&staged.file)?;
        let bytes = staged.publish()?;
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
///
/// `to` must not exist in any form (a dangling symbolic link, or a WAL or journal file
/// beside it, is refused too). This is [`stage_restore`] followed at once by
/// [`StagedRestore::publish`].
pub fn restore(from: &Path, to: &Path, progress: impl FnMut(Progress)) -> Result<BackupReport> {
    stage_restore(from, to, progress)?.publish()
}

/// A restored database that is complete and checked but not yet at its destination: it
/// lies in a private directory beside it, where it can be opened and verified (with
/// [`path`](StagedRestore::path)) before [`publish`](StagedRestore::publish) moves it into
/// place. Dropping it removes the copy and leaves the destination untouched.
#[derive(Debug)]
pub struct StagedRestore {
    staged: Staged,
    report: BackupReport,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged").field("file", &self.file).field("to", &self.to).finish()
    }
}

impl StagedRestore {
    /// The restored copy, in WAL mode, inside the private staging directory. Close every
    /// connection to it before publishing.
    pub fn path(&self) -> &Path {
        &self.staged.file
    }

    /// Where [`publish`](StagedRestore::publish) puts it.
    pub fn destination(&self) -> &Path {
        &self.staged.to
    }

    /// Moves the copy to its destination, atomically and only if nothing is there in any
    /// form: a file, directory or link that appeared there meanwhile makes this fail and
    /// is left as it is. After success the destination is this call's file.
    pub fn publish(self) -> Result<BackupReport> {
        let Self { staged, mut report } = self;
        report.bytes = staged.publish()?;
        Ok(report)
    }
}

/// Restores a backup as [`restore`] does, but stops before the copy is moved to `to`: the
/// caller may open and check it first, then [`publish`](StagedRestore::publish) it. `to`
/// is checked to be free now and again when publishing.
pub fn stage_restore(
    from: &Path,
    to: &Path,
    progress: impl FnMut(Progress),
) -> Result<StagedRestore> {
    let start = Instant::now();
    if std::fs::symlink_metadata(from).is_err() {
        return Err(StoreError::NotFound(format!("backup {}", from.display())));
    }
    let staged = Staged::new(to)?;
    check_copy(from)?;
    let src = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let pages = copy_pages(&src, &staged.file, progress)?;
    drop(src);
    let (integrity, schema_version) = check_copy(&staged.file)?;
    {
        // Restored databases run in WAL mode like every other. Closing the only connection
        // removes the WAL and shared-memory files again.
        let c = open_new(&staged.file)?;
        c.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        let _: Option<i64> = c.query_row("SELECT 1", [], |r| r.get(0)).optional()?;
        c.close().map_err(|(_, e)| StoreError::from(e))?;
    }
    let report = BackupReport {
        path: to.to_path_buf(),
        bytes: std::fs::metadata(&staged.file).map(|m| m.len()).unwrap_or(0),
        pages,
        millis: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        integrity,
        schema_version,
    };
    Ok(StagedRestore { staged, report })
}
