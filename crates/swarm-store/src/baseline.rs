//! A measuring tool: raw SQLite with the store's own pragmas, as the floor benchmarks
//! compare the store against.
//!
//! [`Baseline`] opens a scratch file exactly as the store opens its writer (WAL, the
//! configured `synchronous`, busy timeout, page cache, mmap size, no automatic checkpoint:
//! the same code in `conn.rs`, not a copy of it) and keeps one plain table,
//! `baseline_kv (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID`, with point put, get, has
//! and delete. No ACL, no codec, no audit row, no transaction around a write: what a
//! program calling rusqlite directly would do. [`BaselineReader`]s are read-only
//! connections opened like the store's pooled readers, one per thread, for concurrent reads.
//!
//! It is not a storage API: it refuses any file that holds other tables, so it can never
//! be pointed at a real database by mistake.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

use crate::config::{Location, StoreConfig};
use crate::conn::{PragmaReport, Target};
use crate::error::{OpenError, Result, StoreError};

/// The one table of a baseline file.
const TABLE: &str = "baseline_kv";
const CREATE: &str = "CREATE TABLE IF NOT EXISTS baseline_kv \
    (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID";
const OTHER_TABLES: &str =
    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name <> 'baseline_kv'";
const PUT: &str = "INSERT INTO baseline_kv (key, value) VALUES (?1, ?2) \
    ON CONFLICT (key) DO UPDATE SET value = excluded.value";
const GET: &str = "SELECT value FROM baseline_kv WHERE key = ?1";
const HAS: &str = "SELECT 1 FROM baseline_kv WHERE key = ?1";
const DELETE: &str = "DELETE FROM baseline_kv WHERE key = ?1";
const SCAN_RANGE: &str =
    "SELECT key FROM baseline_kv WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3";
const SCAN_FROM: &str = "SELECT key FROM baseline_kv WHERE key >= ?1 ORDER BY key LIMIT ?2";

/// Raw SQLite on a scratch file, opened with the pragmas a store with the same
/// [`StoreConfig`] uses. Writes go through one connection (SQLite has one writer); a
/// `Baseline` may be shared by threads, which then take turns, each write in its own
/// autocommit transaction.
#[derive(Debug)]
pub struct Baseline {
    writer: Mutex<Connection>,
    target: Target,
    config: StoreConfig,
    pragmas: PragmaReport,
    path: PathBuf,
}

/// A read-only connection to a [`Baseline`]'s file, for one thread.
#[derive(Debug)]
pub struct BaselineReader {
    conn: Connection,
}

impl Baseline {
    /// Opens (creating if missing) the scratch file at `path` with the pragmas of `like`
    /// (its location is ignored) and creates the table. Refuses a file holding any other
    /// table.
    pub fn open(path: &Path, like: &StoreConfig) -> Result<Self, OpenError> {
        let mut config = like.clone();
        config.location = Location::File(path.to_path_buf());
        config.create = true;
        let target = Target::from_config(&config)?;
        let (conn, pragmas) = target.open_writer(&config)?;
        let fail = |e: rusqlite::Error| OpenError::Sqlite {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let others: i64 = conn.query_row(OTHER_TABLES, [], |r| r.get(0)).map_err(fail)?;
        if others > 0 {
            return Err(OpenError::Config(format!(
                "{} holds other tables than {TABLE}: a baseline only runs on a scratch file",
                path.display()
            )));
        }
        conn.execute(CREATE, []).map_err(fail)?;
        Ok(Self { writer: Mutex::new(conn), target, config, pragmas, path: path.to_path_buf() })
    }

    /// The pragmas the write connection runs with, read back from SQLite (compare with
    /// [`crate::Store::pragmas`]).
    pub fn pragmas(&self) -> &PragmaReport {
        &self.pragmas
    }

    /// The scratch file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `value` under `key` (insert or replace), in its own autocommit transaction.
    pub fn put(&self, key: &str, value: &[u8]) -> Result<()> {
        self.writer.lock().prepare_cached(PUT)?.execute(params![key, value])?;
        Ok(())
    }

    /// Writes every item in one transaction (for loading data before measuring).
    pub fn put_many<K: AsRef<str>, V: AsRef<[u8]>>(&self, items: &[(K, V)]) -> Result<()> {
        let conn = self.writer.lock();
        let tx = conn.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached(PUT)?;
            for (k, v) in items {
                stmt.execute(params![k.as_ref(), v.as_ref()])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The value under `key`, read on the write connection.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        get(&self.writer.lock(), key)
    }

    /// Whether `key` exists, read on the write connection.
    pub fn has(&self, key: &str) -> Result<bool> {
        has(&self.writer.lock(), key)
    }

    /// Deletes `key`; whether it existed.
    pub fn delete(&self, key: &str) -> Result<bool> {
        Ok(self.writer.lock().prepare_cached(DELETE)?.execute([key])? > 0)
    }

    /// A new read-only connection to the file, opened like the store's pooled readers.
    pub fn reader(&self) -> Result<BaselineReader> {
        Ok(BaselineReader { conn: self.target.open_reader(&self.config)? })
    }

    /// Copies the write-ahead log into the file (a passive checkpoint, as the store's
    /// background thread runs; neither runs one on the commit path).
    pub fn checkpoint(&self) -> Result<()> {
        self.writer.lock().query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Copies the database file `from` (any SQLite file, a store's included) to the new
    /// file `to` with SQLite's online backup API, from a read-only connection opened with
    /// the pragmas of `like`: no integrity check and no audit row, unlike
    /// [`crate::Store::backup`]. Returns the size of the copy in bytes.
    pub fn backup_file(from: &Path, to: &Path, like: &StoreConfig) -> Result<u64> {
        if to.exists() {
            return Err(StoreError::invalid(format!("{} exists; choose a new path", to.display())));
        }
        let mut config = like.clone();
        config.location = Location::File(from.to_path_buf());
        config.create = false;
        let target =
            Target::from_config(&config).map_err(|e| StoreError::invalid(e.to_string()))?;
        let conn = target.open_reader(&config)?;
        conn.backup(rusqlite::MAIN_DB, to, None)?;
        Ok(std::fs::metadata(to).map(|m| m.len()).unwrap_or(0))
    }
}

impl BaselineReader {
    /// The value under `key`.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        get(&self.conn, key)
    }

    /// Whether `key` exists.
    pub fn has(&self, key: &str) -> Result<bool> {
        has(&self.conn, key)
    }

    /// Up to `limit` keys starting with `prefix`, in order: a range scan of the primary
    /// key, as listing one namespace is.
    pub fn scan_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<String>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut out = Vec::new();
        match prefix_successor(prefix) {
            Some(upper) => {
                let mut stmt = self.conn.prepare_cached(SCAN_RANGE)?;
                for k in stmt.query_map(params![prefix, upper, limit], |r| r.get(0))? {
                    out.push(k?);
                }
            }
            None => {
                let mut stmt = self.conn.prepare_cached(SCAN_FROM)?;
                for k in stmt.query_map(params![prefix, limit], |r| r.get(0))? {
                    out.push(k?);
                }
            }
        }
        Ok(out)
    }
}

fn get(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>> {
    Ok(conn.prepare_cached(GET)?.query_row([key], |r| r.get(0)).optional()?)
}

fn has(conn: &Connection, key: &str) -> Result<bool> {
    Ok(conn.prepare_cached(HAS)?.query_row([key], |_| Ok(())).optional()?.is_some())
}

/// The smallest string greater than every string starting with `prefix` (`None` when
/// there is none, or for the empty prefix).
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(u32::from(last) + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    #[test]
    fn point_operations_and_readers() {
        let dir = tempfile::tempdir().unwrap();
        let b = Baseline::open(&dir.path().join("b.db"), &StoreConfig::memory()).unwrap();
        b.put("a/1", b"one").unwrap();
        b.put("a/1", b"uno").unwrap();
        b.put_many(&[("a/2", b"two".as_slice()), ("b/1", b"three".as_slice())]).unwrap();
        assert_eq!(b.get("a/1").unwrap().as_deref(), Some(b"uno".as_slice()));
        assert!(b.has("a/2").unwrap());
        assert!(!b.has("zz").unwrap());
        assert_eq!(b.get("zz").unwrap(), None);
        let r = b.reader().unwrap();
        assert_eq!(r.get("b/1").unwrap().as_deref(), Some(b"three".as_slice()));
        assert_eq!(r.scan_prefix("a/", 10).unwrap(), vec!["a/1", "a/2"]);
        assert_eq!(r.scan_prefix("a/", 1).unwrap(), vec!["a/1"]);
        assert_eq!(r.scan_prefix("", 10).unwrap().len(), 3);
        assert!(b.delete("a/1").unwrap());
        assert!(!b.delete("a/1").unwrap());
        assert!(!r.has("a/1").unwrap());
        b.checkpoint().unwrap();
        // Readers are read-only, like the store's.
        assert!(r.conn.execute("DELETE FROM baseline_kv", []).is_err());
    }

    #[test]
    fn runs_with_the_pragmas_of_a_store_with_the_same_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::file(dir.path().join("s.db"))
            .with_encrypt_up_to(None)
            .with_durability(crate::Durability::Full)
            .with_cache_size_kib(2048)
            .with_sweep_interval(None);
        let store = Store::open(config.clone()).unwrap();
        let b = Baseline::open(&dir.path().join("b.db"), &config).unwrap();
        assert_eq!(b.pragmas(), store.pragmas());
        assert_eq!(b.pragmas().synchronous, "FULL");
        assert_eq!(b.pragmas().journal_mode, "wal");
        store.shutdown().unwrap();
    }

    #[test]
    fn refuses_a_file_that_is_not_a_scratch_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let config = StoreConfig::file(&path).with_encrypt_up_to(None).with_sweep_interval(None);
        let store = Store::open(config.clone()).unwrap();
        store.shutdown().unwrap();
        let e = Baseline::open(&path, &config).unwrap_err();
        assert!(e.to_string().contains("scratch file"), "{e}");
    }

    #[test]
    fn backs_up_a_file_with_the_raw_api() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::memory();
        let b = Baseline::open(&dir.path().join("b.db"), &config).unwrap();
        b.put("k", &[7; 5000]).unwrap();
        let to = dir.path().join("copy.db");
        let bytes = Baseline::backup_file(b.path(), &to, &config).unwrap();
        assert!(bytes >= 5000, "{bytes}");
        let copy = Baseline::open(&to, &config).unwrap();
        assert_eq!(copy.get("k").unwrap().map(|v| v.len()), Some(5000));
        assert!(Baseline::backup_file(b.path(), &to, &config).is_err(), "never overwrites");
    }

    #[test]
    fn prefix_successors() {
        assert_eq!(prefix_successor("ns-1/").as_deref(), Some("ns-10"));
        assert_eq!(prefix_successor(""), None);
    }
}
