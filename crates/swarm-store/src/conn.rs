//! Opening connections and applying the pragmas every connection needs.

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::config::{Location, StoreConfig};
use crate::error::OpenError;

/// Prepared statements kept per connection. The ACL predicate's text varies with the
/// principal's team count and highest level, so this is larger than rusqlite's default.
const STATEMENT_CACHE: usize = 128;

/// How a database is reached: the path or URI and the flags for the writer and readers.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// Path or `file:` URI.
    pub(crate) uri: String,
    /// Whether this is an in-memory (memdb) database.
    pub(crate) memory: bool,
    /// Whether a missing file may be created.
    pub(crate) create: bool,
}

impl Target {
    pub(crate) fn from_config(config: &StoreConfig) -> Result<Self, OpenError> {
        match &config.location {
            Location::File(path) => {
                let uri = path
                    .to_str()
                    .ok_or_else(|| {
                        OpenError::Config(format!("path {} is not valid UTF-8", path.display()))
                    })?
                    .to_owned();
                if uri.is_empty() {
                    return Err(OpenError::Config("database path is empty".into()));
                }
                Ok(Self { uri, memory: false, create: config.create })
            }
            Location::Memory => {
                // A name unique to this store: memdb databases whose name starts with '/'
                // are shared by every connection of the process that opens that name.
                let id: u64 = rand::random();
                Ok(Self {
                    uri: format!("file:/swarm-memory-{id:016x}?vfs=memdb"),
                    memory: true,
                    create: true,
                })
            }
        }
    }

    fn flags(&self, read_only: bool) -> OpenFlags {
        let mut flags = OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        if read_only {
            flags |= OpenFlags::SQLITE_OPEN_READ_ONLY;
        } else {
            flags |= OpenFlags::SQLITE_OPEN_READ_WRITE;
            if self.create {
                flags |= OpenFlags::SQLITE_OPEN_CREATE;
            }
        }
        flags
    }

    fn open_error(&self, e: impl std::fmt::Display) -> OpenError {
        OpenError::Sqlite { path: self.uri.clone(), message: e.to_string() }
    }

    /// Opens the read-write connection and sets the database-wide modes (WAL).
    pub(crate) fn open_writer(
        &self,
        config: &StoreConfig,
    ) -> Result<(Connection, PragmaReport), OpenError> {
        let conn = Connection::open_with_flags(&self.uri, self.flags(false))
            .map_err(|e| self.open_error(e))?;
        // Reading the header proves this is a SQLite database before anything is changed.
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
            .map_err(|e| OpenError::Corrupt { path: self.uri.clone(), message: e.to_string() })?;
        if !self.memory {
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .map_err(|e| self.open_error(e))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(
                    self.open_error(format!("could not enable WAL (journal_mode is {mode})"))
                );
            }
        }
        let report = apply_pragmas(&conn, config, false).map_err(|e| self.open_error(e))?;
        // Checkpoints run on the maintenance thread's own connection, never on the commit
        // path (an automatic checkpoint stalls the committing writer for milliseconds).
        conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(|e| self.open_error(e))?;
        // After a checkpoint lets the WAL restart, shrink the file back: its size is then
        // a fair measure of what is waiting to be checkpointed.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
            .map_err(|e| self.open_error(e))?;
        Ok((conn, report))
    }

    /// Opens a read-write connection for checkpoints and maintenance.
    pub(crate) fn open_maintenance(&self, config: &StoreConfig) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.uri,
            self.flags(false) - OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        conn.busy_timeout(config.busy_timeout)?;
        Ok(conn)
    }

    /// Opens one read-only connection.
    pub(crate) fn open_reader(&self, config: &StoreConfig) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(&self.uri, self.flags(true))?;
        apply_pragmas(&conn, config, true)?;
        Ok(conn)
    }

    pub(crate) fn reader_manager(
        &self,
        config: &StoreConfig,
    ) -> r2d2_sqlite::SqliteConnectionManager {
        let config = config.clone();
        r2d2_sqlite::SqliteConnectionManager::file(&self.uri)
            .with_flags(self.flags(true))
            .with_init(move |conn| apply_pragmas(conn, &config, true).map(|_| ()))
    }
}

/// The pool of read-only connections: r2d2 opens them (up to the configured number) and
/// owns them; a connection a read has finished with waits in the idle list and is handed to
/// the next read from there. r2d2's own checkout and check-in cost every read two more
/// locks, three clock readings and two event-handler calls, which showed in profiles of
/// GET. A connection in the idle list stays open for the store's life: r2d2 counts it as
/// checked out, so its idle timeout and maximum lifetime never apply (an open read-only
/// connection costs only its page cache).
pub(crate) struct ReadPool {
    pool: r2d2::Pool<r2d2_sqlite::SqliteConnectionManager>,
    idle: parking_lot::Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    conns: Vec<PooledReader>,
    /// Reads waiting inside r2d2 for a connection: while there are any, a connection given
    /// back goes to r2d2, which wakes one of them. Checked and changed under the same lock
    /// as `conns`, so a connection is never left idle here while a read waits there.
    waiting: usize,
}

type PooledReader = r2d2::PooledConnection<r2d2_sqlite::SqliteConnectionManager>;

/// A read connection in use; it goes back to the [`ReadPool`] when dropped.
pub(crate) struct Reader<'p> {
    conn: Option<PooledReader>,
    pool: &'p ReadPool,
}

impl ReadPool {
    pub(crate) fn new(pool: r2d2::Pool<r2d2_sqlite::SqliteConnectionManager>) -> Self {
        Self { pool, idle: parking_lot::Mutex::new(Idle::default()) }
    }

    /// A connection: an idle one if there is one, else one from r2d2, which opens one
    /// while the pool is below its size and otherwise waits, up to the pool's timeout, for
    /// one to be given back.
    pub(crate) fn get(&self) -> Result<Reader<'_>, r2d2::Error> {
        {
            let mut idle = self.idle.lock();
            if let Some(conn) = idle.conns.pop() {
                return Ok(Reader { conn: Some(conn), pool: self });
            }
            idle.waiting += 1;
        }
        let got = self.pool.get();
        self.idle.lock().waiting -= 1;
        Ok(Reader { conn: Some(got?), pool: self })
    }
}

impl std::ops::Deref for Reader<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        // Set at construction and taken only by drop.
        self.conn.as_deref().unwrap_or_else(|| unreachable!("a reader without a connection"))
    }
}

impl std::ops::DerefMut for Reader<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_deref_mut().unwrap_or_else(|| unreachable!("a reader without a connection"))
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        let mut idle = self.pool.idle.lock();
        if idle.waiting == 0 {
            idle.conns.push(conn);
        } else {
            // Back to r2d2 (after the lock: its check-in takes its own), which hands it
            // to a waiting read.
            drop(idle);
            drop(conn);
        }
    }
}

/// The settings a connection really runs with, read back after setting them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PragmaReport {
    /// `wal` for files; `memory` for in-memory databases.
    pub journal_mode: String,
    /// `NORMAL` or `FULL`.
    pub synchronous: String,
    /// Foreign key enforcement.
    pub foreign_keys: bool,
    /// Busy timeout in milliseconds.
    pub busy_timeout_ms: u64,
    /// Page cache size as SQLite reports it (negative: KiB).
    pub cache_size: i64,
    /// mmap size asked for.
    pub mmap_size_requested: u64,
    /// mmap size SQLite actually uses (it clamps the request to its compile-time maximum).
    pub mmap_size_effective: u64,
    /// Page size in bytes.
    pub page_size: u64,
    /// The SQLite library version.
    pub sqlite_version: String,
}

fn apply_pragmas(
    conn: &Connection,
    config: &StoreConfig,
    read_only: bool,
) -> rusqlite::Result<PragmaReport> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.busy_timeout(config.busy_timeout)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "synchronous", config.durability.pragma())?;
    conn.pragma_update(None, "cache_size", -i64::from(config.cache_size_kib))?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Triggers must not re-fire themselves (the updated_at triggers rely on it).
    conn.pragma_update(None, "recursive_triggers", false)?;
    let requested = i64::try_from(config.mmap_size).unwrap_or(i64::MAX);
    // PRAGMA mmap_size answers with the effective value. A VFS without memory mapping
    // (memdb) answers nothing at all: its effective size is 0.
    let effective: i64 =
        match conn.query_row(&format!("PRAGMA mmap_size = {requested}"), [], |r| r.get(0)) {
            Ok(v) => v,
            Err(rusqlite::Error::QueryReturnedNoRows) => 0,
            Err(e) => return Err(e),
        };
    if read_only {
        conn.pragma_update(None, "query_only", true)?;
    }
    let journal_mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    let foreign_keys: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    let cache_size: i64 = conn.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let busy: i64 = conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0))?;
    Ok(PragmaReport {
        journal_mode: journal_mode.to_ascii_lowercase(),
        synchronous: match synchronous {
            0 => "OFF",
            1 => "NORMAL",
            2 => "FULL",
            _ => "EXTRA",
        }
        .to_owned(),
        foreign_keys,
        busy_timeout_ms: u64::try_from(busy).unwrap_or(0),
        cache_size,
        mmap_size_requested: config.mmap_size,
        mmap_size_effective: u64::try_from(effective).unwrap_or(0),
        page_size: u64::try_from(page_size).unwrap_or(0),
        sqlite_version: rusqlite::version().to_owned(),
    })
}
