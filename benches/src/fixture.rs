//! What the store suites share: a store on a fresh temporary file with a fixed key,
//! registered agents, bulk-loaded records, a raw rusqlite connection to the same file with
//! the store's pragmas, and a deterministic random number generator.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rusqlite::{Connection, OpenFlags};
use swarm_acl::{AclLevel, AgentId, Grant, Identity, SwarmId, TeamId};
use swarm_codec::{Key, KeyId, Keyring};
use swarm_store::{Namespace, NewAgent, RecordKey, SetOptions, Store, StoreConfig, Value};

/// The swarm every suite works in.
pub(crate) const SWARM: &str = "bench";
/// The team every registered agent joins.
pub(crate) const TEAM: &str = "crew";
/// Plaintext size of the values written.
pub(crate) const VALUE_LEN: usize = 256;
/// Items per `mset` when loading (the store's default batch limit).
pub(crate) const LOAD_BATCH: usize = 1000;

/// The raw point read the store's GET is compared with: same table, same primary key.
pub(crate) const RAW_GET: &str =
    "SELECT value, version FROM memory WHERE swarm_id = ?1 AND namespace = ?2 AND key = ?3";

/// [`RAW_GET`] joined to the ACL generation the way the store's point read is (one
/// statement returns the current generation and the row): not a goal's baseline, but it
/// shows how much of GET's cost is the exact cross-process revoke check.
pub(crate) const RAW_GET_JOINED: &str = "SELECT m.value, m.version FROM meta AS g LEFT JOIN memory AS m \
    ON m.swarm_id = ?1 AND m.namespace = ?2 AND m.key = ?3 WHERE g.key = 'acl_generation'";

/// The raw autocommit upsert the store's SET is compared with: an insert of every column
/// that updates them all on conflict, as a store without the ACL checks, the
/// existing-record read, the change-feed row, the audit row and the transaction around
/// them would write a record (the store runs this statement for a new key).
pub(crate) const RAW_UPSERT: &str = "INSERT INTO memory (swarm_id, namespace, key, owner_id, team_id, \
    acl_level, value_type, value, size, key_id, tags, version, created_at, updated_at, expires_at, \
    access_count) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
    ON CONFLICT (swarm_id, namespace, key) DO UPDATE SET owner_id = excluded.owner_id, \
    team_id = excluded.team_id, acl_level = excluded.acl_level, value_type = excluded.value_type, \
    value = excluded.value, size = excluded.size, key_id = excluded.key_id, tags = excluded.tags, \
    version = excluded.version, created_at = excluded.created_at, updated_at = excluded.updated_at, \
    expires_at = excluded.expires_at, access_count = excluded.access_count, \
    last_accessed_at = CASE WHEN excluded.access_count = 0 THEN NULL ELSE last_accessed_at END";

/// The statement the store itself runs to overwrite a live record whose team, key id and
/// expiry stay the same (crates/swarm-store/src/memory/mod.rs, `update_sql`), with
/// [`RAW_UPSERT`]'s parameters: it names no indexed column, so SQLite rewrites only the
/// record's page, where the upsert also rewrites the owner index. Not a goal's baseline:
/// it shows how close SET comes to the cheapest raw overwrite.
pub(crate) const RAW_UPDATE: &str = "UPDATE memory SET acl_level = ?6, value_type = ?7, value = ?8, \
    size = ?9, tags = ?11, version = ?12, updated_at = ?14, access_count = ?16, \
    last_accessed_at = CASE WHEN ?16 = 0 THEN NULL ELSE last_accessed_at END \
    WHERE swarm_id = ?1 AND namespace = ?2 AND key = ?3";

/// Runs `sql` ([`RAW_UPSERT`] or [`RAW_UPDATE`]) for a public text record owned by
/// `owner` holding `envelope`.
#[allow(clippy::too_many_arguments)] // the record's columns, as the store binds them
pub(crate) fn raw_write(
    conn: &Connection,
    sql: &str,
    namespace: &str,
    key: &str,
    owner: &str,
    envelope: &[u8],
    version: i64,
    now: i64,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(rusqlite::params![
        SWARM,
        namespace,
        key,
        owner,
        Option::<&str>::None,
        4_i64,
        "text",
        envelope,
        VALUE_LEN as i64,
        Option::<i64>::None,
        "[]",
        version,
        now,
        now,
        Option::<i64>::None,
        0_i64,
    ])
}

/// Runs [`RAW_GET`] and returns the envelope's length and the version.
pub(crate) fn raw_get(
    conn: &Connection,
    namespace: &str,
    key: &str,
) -> rusqlite::Result<(usize, i64)> {
    conn.prepare_cached(RAW_GET)?.query_row(rusqlite::params![SWARM, namespace, key], |r| {
        let value: Vec<u8> = r.get(0)?;
        Ok((value.len(), r.get(1)?))
    })
}

/// Runs [`RAW_GET_JOINED`] and returns the envelope's length and the version.
pub(crate) fn raw_get_joined(
    conn: &Connection,
    namespace: &str,
    key: &str,
) -> rusqlite::Result<(usize, i64)> {
    conn.prepare_cached(RAW_GET_JOINED)?.query_row(rusqlite::params![SWARM, namespace, key], |r| {
        let value: Option<Vec<u8>> = r.get(0)?;
        Ok((value.map_or(0, |v| v.len()), r.get::<_, Option<i64>>(1)?.unwrap_or(0)))
    })
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A store on a fresh temporary file, with one swarm and one team.
pub(crate) struct Env {
    /// Removed (with the database) when the environment is dropped.
    _dir: tempfile::TempDir,
    pub(crate) path: PathBuf,
    pub(crate) store: Store,
    pub(crate) swarm: SwarmId,
    pub(crate) team: TeamId,
}

impl Env {
    /// Opens a store with the fixed key and no sweeper, and creates the swarm and team.
    pub(crate) fn open() -> anyhow::Result<Self> {
        Self::open_with(|c| c)
    }

    /// [`Env::open`] with a change to the configuration (such as the durability).
    pub(crate) fn open_with(
        configure: impl FnOnce(StoreConfig) -> StoreConfig,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        let path = dir.path().join("bench.db");
        let key = Key::from_bytes(&[7; 32]).context("bench key")?;
        let config = configure(
            StoreConfig::file(&path)
                .with_keyring(Arc::new(Keyring::new(KeyId::new(1), key)))
                .with_sweep_interval(None),
        );
        let store = Store::open(config).context("opening the store")?;
        let swarm = SwarmId::new(SWARM)?;
        let team = TeamId::new(TEAM)?;
        store.ensure_swarm(&Identity::System, &swarm)?;
        store.create_team(&Identity::System, &team, &swarm, TEAM, "", None)?;
        Ok(Self { _dir: dir, path, store, swarm, team })
    }

    /// Registers an agent of the swarm, member of the team, with the default grants.
    pub(crate) fn agent(&self, id: &str) -> anyhow::Result<Identity> {
        let aid = AgentId::new(id)?;
        self.store.insert_agent(
            &Identity::System,
            NewAgent {
                id: aid.clone(),
                swarm: self.swarm.clone(),
                name: id.to_owned(),
                agent_type: "bench".to_owned(),
                capabilities: vec![],
                metadata: serde_json::json!({}),
                token_hash: [9; 32],
                teams: vec![self.team.clone()],
                grants: Grant::defaults(),
            },
        )?;
        Ok(Identity::Agent(aid))
    }

    /// The key `i` of `namespace`.
    pub(crate) fn key(&self, namespace: &str, i: usize) -> anyhow::Result<RecordKey> {
        self.key_in(&Namespace::new(namespace)?, i)
    }

    /// The key `i` of `namespace`, sharing the environment's swarm id and `namespace`, as a
    /// caller holding them once names its records (and as the raw baseline binds one swarm
    /// and namespace text for every row): keys parsed apart would each carry copies of
    /// both, and a read of 10,000 of them in turn would find those copies out of cache.
    pub(crate) fn key_in(&self, namespace: &Namespace, i: usize) -> anyhow::Result<RecordKey> {
        Ok(RecordKey::new(
            self.swarm.clone(),
            namespace.clone(),
            swarm_store::Key::new(key_name(i))?,
        ))
    }

    /// Writes `n` records of `namespace` as `who` with `mset` in batches of
    /// [`LOAD_BATCH`], printing progress, and returns their keys and the time it took.
    pub(crate) fn load(
        &self,
        who: &Identity,
        namespace: &str,
        n: usize,
        opts: &SetOptions,
    ) -> anyhow::Result<(Vec<RecordKey>, Duration)> {
        let value = value();
        let namespace = Namespace::new(namespace)?;
        let mut keys = Vec::with_capacity(n);
        let start = Instant::now();
        let mut next_report = n / 10;
        while keys.len() < n {
            let from = keys.len();
            let batch: Vec<(RecordKey, Value)> = (from..n.min(from + LOAD_BATCH))
                .map(|i| Ok((self.key_in(&namespace, i)?, value.clone())))
                .collect::<anyhow::Result<_>>()?;
            keys.extend(batch.iter().map(|(k, _)| k.clone()));
            self.store.mset(who, batch, opts).with_context(|| format!("loading {namespace}"))?;
            if n >= 100_000 && keys.len() >= next_report {
                eprintln!(
                    "  loaded {}/{n} records of {namespace} ({:.1} s)",
                    keys.len(),
                    start.elapsed().as_secs_f64()
                );
                next_report += n / 10;
            }
        }
        Ok((keys, start.elapsed()))
    }
}

/// Size of the write-ahead log next to `path`, in bytes (0 when there is none).
pub(crate) fn wal_bytes(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map_or(0, |m| m.len())
}

/// Copies the write-ahead log into the database and empties it, from a raw connection, so
/// that every measurement starts from the records being in the B-tree rather than in a
/// log whose length depends on how the data was loaded. Nothing is writing when this runs.
pub(crate) fn checkpoint(store: &Store, path: &Path) -> anyhow::Result<()> {
    let conn = raw_connection(store, path, false)?;
    for _ in 0..50 {
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy == 0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("the WAL of {} stayed busy", path.display())
}

/// Public record options.
pub(crate) fn public() -> SetOptions {
    SetOptions::new().level(AclLevel::Public)
}

/// Key names sort in insertion order, as ids with a counter usually do.
pub(crate) fn key_name(i: usize) -> String {
    format!("note-{i:08}")
}

/// A 256-byte text value that reads like agent memory.
pub(crate) fn value() -> Value {
    Value::Text(value_text())
}

/// The bytes of [`value`].
pub(crate) fn value_bytes() -> Vec<u8> {
    value_text().into_bytes()
}

fn value_text() -> String {
    let mut text = String::with_capacity(VALUE_LEN + 64);
    let mut i = 0;
    while text.len() < VALUE_LEN {
        text.push_str(&format!("step {i}: compiled swarm-store, 0 warnings; "));
        i += 1;
    }
    text.truncate(VALUE_LEN);
    text
}

/// A raw connection to the store's file with the pragmas the store applies to its own
/// connections (crates/swarm-store/src/conn.rs), taken from what the store reports: the
/// same statement cache, busy timeout, foreign keys, synchronous mode, page cache, temp
/// store and mmap size; read-only and `query_only` like the store's readers when
/// `read_only`. WAL is a property of the file, which the store has already set.
pub(crate) fn raw_connection(
    store: &Store,
    path: &Path,
    read_only: bool,
) -> anyhow::Result<Connection> {
    let p = store.pragmas();
    let mode = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    };
    let conn = Connection::open_with_flags(
        path,
        mode | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.set_prepared_statement_cache_capacity(128);
    conn.busy_timeout(Duration::from_millis(p.busy_timeout_ms))?;
    conn.pragma_update(None, "foreign_keys", p.foreign_keys)?;
    conn.pragma_update(None, "synchronous", &p.synchronous)?;
    conn.pragma_update(None, "cache_size", p.cache_size)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "recursive_triggers", false)?;
    let mmap: i64 =
        conn.query_row(&format!("PRAGMA mmap_size = {}", p.mmap_size_requested), [], |r| r.get(0))?;
    if read_only {
        conn.pragma_update(None, "query_only", true)?;
    } else {
        // The store's writer never checkpoints on its commit path (conn.rs): its
        // maintenance thread checkpoints the file, for the raw writes too.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    }
    let journal: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    anyhow::ensure!(journal.eq_ignore_ascii_case(&p.journal_mode), "raw journal mode {journal}");
    let wanted = match p.synchronous.as_str() {
        "OFF" => 0,
        "NORMAL" => 1,
        "FULL" => 2,
        _ => 3,
    };
    anyhow::ensure!(sync == wanted, "raw synchronous {sync}, the store's {}", p.synchronous);
    anyhow::ensure!(
        u64::try_from(mmap).unwrap_or(0) == p.mmap_size_effective,
        "raw mmap_size {mmap} differs from the store's {}",
        p.mmap_size_effective
    );
    Ok(conn)
}

/// xorshift64*: a deterministic sequence of key indexes, so ours and the baseline read the
/// same keys in the same order. Not for anything secret.
#[derive(Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}
