//! The store handle: opening, the connections, principal resolution and shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use rusqlite::{Connection, OptionalExtension};
use swarm_acl::{
    AclCache, AclLevel, Action, AgentId, Identity, Principal, ResourceType, Timestamp,
};
use swarm_codec::{Cipher, Codec};

use crate::audit::{self, AuditEntry, Outcome, PendingAudit, VerifyReport};
use crate::clock::Clock;
use crate::config::StoreConfig;
use crate::conn::{PragmaReport, Target};
use crate::error::{OpenError, Result, StoreError};
use crate::migrate::{self, MigrationReport};
use crate::principal;
use crate::retry::RetryPolicy;
use crate::txn::WriteCtx;
use crate::writer::Writer;

/// Most records one write of read counts updates. A flush after many distinct reads runs
/// as several short transactions, so a write queued behind it waits for one of them, not
/// for all: one transaction for 20,000 records held every writer for 300 ms.
const ACCESS_CHUNK: usize = 256;

/// A swarm-memory database: one writer path with group commit, a pool of read
/// connections, and the background sweeper. Cheap to clone; every clone is the same
/// store. Dropping the last clone stops the background work; [`Store::shutdown`] does so
/// explicitly and also flushes and checkpoints.
#[derive(Clone)]
pub struct Store {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("location", &self.shared.target.uri).finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    pub(crate) config: StoreConfig,
    pub(crate) target: Target,
    pub(crate) clock: Arc<dyn Clock>,
    /// Replaced when the keyring is read again from its source (another process rotated
    /// the key); read through [`Shared::codec`].
    codec: arc_swap::ArcSwap<Codec>,
    /// When the keyring was last read again (at most once a second).
    pub(crate) keyring_read_at: Mutex<Option<std::time::Instant>>,
    pub(crate) pool: crate::conn::ReadPool,
    pub(crate) writer: Writer,
    pub(crate) principals: AclCache<AgentId, Principal>,
    pub(crate) pragmas: PragmaReport,
    pub(crate) migration: MigrationReport,
    pub(crate) pending_audit: Arc<PendingAudit>,
    pub(crate) changed: ChangeSignal,
    pub(crate) events_changed: ChangeSignal,
    pub(crate) access: crate::memory::AccessTracker,
    /// Seals search cursors under a key that exists only in this process's memory.
    pub(crate) search_cursors: crate::memory::CursorSeal,
    pub(crate) counters: Counters,
    pub(crate) metrics: crate::metrics::Metrics,
    pub(crate) closed: AtomicBool,
    pub(crate) background: Mutex<Option<Background>>,
}

/// Operation counters kept in memory (issue 6 adds histograms).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) reads: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) denials: AtomicU64,
    pub(crate) conflicts: AtomicU64,
    pub(crate) expired_swept: AtomicU64,
    pub(crate) stale_principal_retries: AtomicU64,
    pub(crate) checkpoints: AtomicU64,
}

/// Wakes watchers after a commit that changed memory.
#[derive(Debug, Default)]
pub(crate) struct ChangeSignal {
    epoch: Mutex<u64>,
    cv: Condvar,
}

impl ChangeSignal {
    pub(crate) fn notify(&self) {
        *self.epoch.lock() += 1;
        self.cv.notify_all();
    }

    pub(crate) fn epoch(&self) -> u64 {
        *self.epoch.lock()
    }

    /// Waits until the epoch moves past `seen` or `timeout` passes.
    pub(crate) fn wait_past(&self, seen: u64, timeout: Duration) {
        let mut e = self.epoch.lock();
        if *e == seen {
            let _ = self.cv.wait_for(&mut e, timeout);
        }
    }
}

pub(crate) struct Background {
    stop: crossbeam_channel::Sender<()>,
    handle: JoinHandle<()>,
}

impl Store {
    /// Opens (creating if allowed) the database, applies pending migrations, checks the
    /// key, and starts the sweeper.
    pub fn open(config: StoreConfig) -> Result<Store, OpenError> {
        if config.readers == 0 {
            return Err(OpenError::Config("at least one reader connection is needed".into()));
        }
        let needs_key = config.encrypt_up_to.is_some();
        if needs_key && config.keyring.is_none() {
            return Err(OpenError::KeyRequired);
        }
        let target = Target::from_config(&config)?;
        let (mut conn, pragmas) = target.open_writer(&config)?;
        let now = config.clock.now().as_millis();
        let migration = with_open_retry(|| migrate::migrate(&mut conn, now))?;
        if let Some(keyring) = &config.keyring {
            check_keys(&conn, keyring, config.codec.cipher(), now, &target.uri)?;
        }
        let pool = r2d2::Pool::builder()
            .max_size(config.readers)
            .min_idle(Some(0))
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(30))
            .build_unchecked(target.reader_manager(&config));
        let pool = crate::conn::ReadPool::new(pool);
        // Open one reader now so a misconfiguration fails here rather than on first read.
        drop(
            target.open_reader(&config).map_err(|e| OpenError::Sqlite {
                path: target.uri.clone(),
                message: e.to_string(),
            })?,
        );
        let pending_audit = Arc::new(PendingAudit::default());
        let writer =
            Writer::new(conn, config.max_group, RetryPolicy::default(), Arc::clone(&pending_audit));
        let codec = Codec::new(config.codec.clone(), config.keyring.clone());
        let search_cursors =
            crate::memory::CursorSeal::generate().map_err(|_| OpenError::Random)?;
        let shared = Arc::new(Shared {
            principals: AclCache::new(config.acl_cache_ttl_ms, 100_000),
            clock: Arc::clone(&config.clock),
            codec: arc_swap::ArcSwap::from_pointee(codec),
            keyring_read_at: Mutex::new(None),
            pool,
            writer,
            pragmas,
            migration,
            pending_audit,
            changed: ChangeSignal::default(),
            events_changed: ChangeSignal::default(),
            access: crate::memory::AccessTracker::default(),
            search_cursors,
            counters: Counters::default(),
            metrics: crate::metrics::Metrics::new(),
            closed: AtomicBool::new(false),
            background: Mutex::new(None),
            target,
            config,
        });
        crate::maintenance::start(&shared);
        Ok(Store { shared })
    }

    /// The pragmas the write connection runs with, read back from SQLite.
    pub fn pragmas(&self) -> &PragmaReport {
        &self.shared.pragmas
    }

    /// The schema versions before and after opening.
    pub fn migration(&self) -> MigrationReport {
        self.shared.migration
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    /// The current time according to the store's clock.
    pub fn now(&self) -> Timestamp {
        self.shared.clock.now()
    }

    /// Resolves `who` into a principal as of now: from the ACL cache when it is current,
    /// reloaded when a grant, revoke or membership change made it stale.
    pub fn principal(&self, who: &Identity) -> Result<Principal> {
        self.shared.read_snapshot_as(who, |_, p| Ok(p.clone()))
    }

    /// Everything the store measures, now.
    pub fn metrics(&self) -> crate::metrics::MetricsSnapshot {
        let s = &self.shared;
        let cache = s.principals.stats();
        let c = &s.counters;
        let w = &s.writer.stats;
        let (db_bytes, wal_bytes) = s.file_sizes();
        crate::metrics::MetricsSnapshot {
            uptime_ms: s.metrics.uptime_ms(),
            ops: s.metrics.ops(),
            acl_cache_hits: cache.hits,
            acl_cache_misses: cache.misses,
            acl_cache_hit_rate: cache.hit_rate(),
            stale_principal_retries: c.stale_principal_retries.load(Ordering::Relaxed),
            commit_groups: w.groups.load(Ordering::Relaxed),
            write_jobs: w.jobs.load(Ordering::Relaxed),
            failed_commits: w.failed_commits.load(Ordering::Relaxed),
            busy_retries: w.busy_retries.load(Ordering::Relaxed),
            denials: c.denials.load(Ordering::Relaxed),
            conflicts: c.conflicts.load(Ordering::Relaxed),
            expired_swept: c.expired_swept.load(Ordering::Relaxed),
            checkpoints: c.checkpoints.load(Ordering::Relaxed),
            db_bytes,
            wal_bytes,
        }
    }

    /// Hit rate and size of the principal cache.
    pub fn acl_cache_stats(&self) -> swarm_acl::CacheStats {
        self.shared.principals.stats()
    }

    /// Walks the audit chain and reports the first break.
    pub fn verify_audit(&self) -> Result<VerifyReport> {
        self.shared.check_open()?;
        let conn = self.shared.pool.get()?;
        Ok(audit::verify(&conn)?)
    }

    /// The newest `n` audit rows, oldest first. Reading the audit trail needs the system
    /// principal or a live `read` grant on `audit` at level 5.
    pub fn audit_tail(&self, who: &Identity, n: u64) -> Result<Vec<audit::AuditRow>> {
        let now = self.now();
        self.shared.read_snapshot_as(who, |conn, p| {
            if !p.holds(ResourceType::Audit, Action::Read, AclLevel::System, now) {
                return Err(StoreError::PermissionDenied(
                    "reading the audit trail needs an audit read grant".into(),
                ));
            }
            Ok(audit::tail(conn, n)?)
        })
    }

    /// Stops background work, flushes queued audit rows and access counts, checkpoints the
    /// WAL and closes the connections. Later calls on any clone fail with
    /// [`StoreError::Closed`]. Calling it twice is harmless.
    pub fn shutdown(&self) -> Result<()> {
        if self.shared.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.shared.stop_background();
        let mut flushed = self.shared.flush();
        if self.shared.config.metrics_interval.is_some() {
            flushed = flushed.and(crate::maintenance::persist_metrics(&self.shared));
        }
        let conn = self.shared.writer.close();
        if let Some(conn) = conn {
            if !self.shared.target.memory {
                let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            }
            let _ = conn.close();
        }
        flushed
    }
}

impl Shared {
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) { Err(StoreError::Closed) } else { Ok(()) }
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The codec as of now (its keyring may be replaced by [`Shared::refresh_keyring`]).
    pub(crate) fn codec(&self) -> arc_swap::Guard<Arc<Codec>> {
        self.codec.load()
    }

    /// The codec to open `envelope` with: if the envelope names a key the keyring lacks,
    /// the keyring is read again from its source first (another process may have
    /// rotated the key and re-sealed the row).
    pub(crate) fn codec_for(&self, envelope: &[u8]) -> arc_swap::Guard<Arc<Codec>> {
        let codec = self.codec.load();
        if self.config.keyring_source.is_none() {
            return codec;
        }
        let missing = swarm_codec::inspect(envelope)
            .ok()
            .and_then(|h| h.key_id())
            .is_some_and(|id| !codec.keyring().is_some_and(|k| k.contains(id)));
        if !missing {
            return codec;
        }
        drop(codec);
        // Whether this call installed a keyring or another one just did (or is doing),
        // the codec to use is the one there now.
        self.refresh_keyring();
        self.codec.load()
    }

    /// Replaces the codec's keyring with `fresh`.
    pub(crate) fn install_keyring(&self, fresh: swarm_codec::Keyring) {
        self.codec.store(Arc::new(Codec::new(self.config.codec.clone(), Some(Arc::new(fresh)))));
    }

    /// Sizes of the database file and its WAL (0 for in-memory databases).
    pub(crate) fn file_sizes(&self) -> (u64, u64) {
        if self.target.memory {
            return (0, 0);
        }
        let size = |p: &str| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        (size(&self.target.uri), size(&format!("{}-wal", self.target.uri)))
    }

    /// A principal from the cache (any generation) or freshly loaded. Callers whose query
    /// reports the current generation retry through [`Shared::read_as`].
    pub(crate) fn principal(&self, who: &Identity) -> Result<Principal> {
        self.check_open()?;
        match who {
            Identity::System => Ok(Principal::System),
            Identity::Agent(id) => {
                if let Some((p, _)) = self.principals.get_with_generation(id, self.now()) {
                    return Ok(p);
                }
                let mut conn = self.pool.get()?;
                self.load_principal(&mut conn, id)
            }
        }
    }

    fn load_principal(&self, conn: &mut Connection, id: &AgentId) -> Result<Principal> {
        let p = principal::load_snapshot(conn, id)?;
        if let Some(g) = principal::generation_of(&p) {
            self.principals.insert(id.clone(), p.clone(), g, self.now());
        }
        Ok(p)
    }

    /// Runs a read as `who` on a pooled connection. `f` gets the principal and returns its
    /// result with the ACL generation its query saw; if that differs from the principal's
    /// (a grant or revoke committed since it was cached), the principal is reloaded and `f`
    /// runs again inside one read transaction together with the reload, so the answer is
    /// exact.
    /// `now` is the caller's time of the read (one clock reading per read).
    pub(crate) fn read_as<T>(
        &self,
        who: &Identity,
        now: Timestamp,
        mut f: impl FnMut(&Connection, &Principal) -> Result<(T, u64)>,
    ) -> Result<T> {
        self.check_open()?;
        let mut conn = self.pool.get()?;
        let principal = match who {
            Identity::System => Principal::System,
            Identity::Agent(id) => match self.principals.get_with_generation(id, now) {
                Some((p, _)) => p,
                None => self.load_principal(&mut conn, id)?,
            },
        };
        let (out, generation) = f(&conn, &principal)?;
        let Identity::Agent(id) = who else { return Ok(out) };
        if principal::generation_of(&principal) == Some(generation) {
            return Ok(out);
        }
        self.counters.stale_principal_retries.fetch_add(1, Ordering::Relaxed);
        self.principals.invalidate(id);
        let tx = conn.transaction()?;
        let fresh = principal::load(&tx, id)?;
        let (out, _) = f(&tx, &fresh)?;
        tx.commit()?;
        if let Some(g) = principal::generation_of(&fresh) {
            self.principals.insert(id.clone(), fresh, g, self.now());
        }
        Ok(out)
    }

    /// Runs a read that needs several statements in one snapshot (lists, stats, mget):
    /// one read transaction, in which the principal is checked against the current ACL
    /// generation and reloaded if stale.
    pub(crate) fn read_snapshot_as<T>(
        &self,
        who: &Identity,
        f: impl FnOnce(&Connection, &Principal) -> Result<T>,
    ) -> Result<T> {
        self.check_open()?;
        let mut conn = self.pool.get()?;
        let tx = conn.transaction()?;
        let principal = match who {
            Identity::System => Principal::System,
            Identity::Agent(id) => {
                let cached = self.principals.get_with_generation(id, self.now());
                let current = principal::current_generation(&tx)?;
                match cached {
                    Some((p, g)) if g == current => p,
                    cached => {
                        if cached.is_some() {
                            self.counters.stale_principal_retries.fetch_add(1, Ordering::Relaxed);
                        }
                        let fresh = principal::load(&tx, id)?;
                        self.principals.insert(id.clone(), fresh.clone(), current, self.now());
                        fresh
                    }
                }
            }
        };
        let out = f(&tx, &principal)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` inside a write transaction, as `who`, resolving the principal within the
    /// transaction so every write decision is made against committed, current grants.
    pub(crate) fn write_as<R, F>(self: &Arc<Self>, who: &Identity, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: for<'c> FnOnce(&mut WriteCtx<'c>, &Arc<Shared>, &Principal) -> Result<R>
            + Send
            + 'static,
    {
        self.check_open()?;
        let shared = Arc::clone(self);
        let who = who.clone();
        self.writer.run(move |ctx| {
            let p = shared.principal_in_tx(ctx, &who)?;
            f(ctx, &shared, &p)
        })
    }

    pub(crate) fn principal_in_tx(
        &self,
        ctx: &mut WriteCtx<'_>,
        who: &Identity,
    ) -> Result<Principal> {
        let Identity::Agent(id) = who else { return Ok(Principal::System) };
        if let Some(p) = ctx.cached_principal(id) {
            return Ok(p);
        }
        let now = self.now();
        let p = match self.principals.get(id, ctx.generation(), now) {
            Some(p) => p,
            None => {
                let p = principal::load_at(ctx.conn(), id, ctx.generation())?;
                // Before any job of the group changed grants, teams or statuses (each such
                // change moves the generation), the transaction sees the committed ACL
                // tables, so the principal is what a read would load: cache it, or an
                // agent that only writes reloads itself on every write.
                if ctx.acl_unchanged() {
                    self.principals.insert(id.clone(), p.clone(), ctx.generation(), now);
                }
                p
            }
        };
        ctx.remember_principal(id.clone(), p.clone());
        Ok(p)
    }

    /// Queues an audit row for the next commit group (for reads, which never write).
    pub(crate) fn audit_later(&self, entry: AuditEntry) {
        if entry.outcome == Outcome::Denied {
            self.counters.denials.fetch_add(1, Ordering::Relaxed);
        }
        self.pending_audit.push(entry);
    }

    /// Writes queued audit rows and access counts now.
    pub(crate) fn flush(&self) -> Result<()> {
        self.flush_audit().and(self.flush_access())
    }

    /// Appends audit rows queued by denied reads (by running an empty write job: every
    /// commit group drains the queue).
    pub(crate) fn flush_audit(&self) -> Result<()> {
        if self.pending_audit.is_empty() {
            return Ok(());
        }
        self.writer.run(|_| Ok(()))
    }

    /// Adds the read counts gathered since the last flush to their records, in
    /// transactions of at most [`ACCESS_CHUNK`] records each.
    pub(crate) fn flush_access(&self) -> Result<()> {
        let mut rest: Vec<_> = self.access.take().into_iter().collect();
        // In key order, which is the table's: each chunk is then a run of neighbouring
        // records, a few pages, rather than one page per record scattered over the table.
        rest.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        while !rest.is_empty() {
            let chunk = Arc::new(rest.split_off(rest.len().saturating_sub(ACCESS_CHUNK)));
            let job = Arc::clone(&chunk);
            let written = self.writer.run(move |ctx| {
                crate::memory::apply_access_counts(ctx.conn(), &job).map_err(StoreError::from)
            });
            // Put back only once the write's outcome is known, here and not inside the job:
            // the job's statements can succeed while its group's COMMIT fails and rolls them
            // back, and only the result says which.
            if let Err(e) = written {
                self.access.restore(Arc::unwrap_or_clone(chunk).into_iter().chain(rest));
                return Err(e);
            }
        }
        Ok(())
    }

    pub(crate) fn stop_background(&self) {
        let bg = self.background.lock().take();
        if let Some(bg) = bg {
            drop(bg.stop);
            if bg.handle.thread().id() != std::thread::current().id() {
                let _ = bg.handle.join();
            }
        }
    }

    pub(crate) fn set_background(
        &self,
        stop: crossbeam_channel::Sender<()>,
        handle: JoinHandle<()>,
    ) {
        *self.background.lock() = Some(Background { stop, handle });
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop_background();
        // Dropped without `shutdown`: still write what is queued (denied reads, counts).
        if !self.closed.load(Ordering::SeqCst)
            && let Err(e) = self.flush()
        {
            tracing::warn!(error = %e, "flushing queued audit rows at drop failed");
        }
    }
}

/// The wall clock in Unix ms, for bookkeeping that is not part of any record's
/// semantics (relay timestamps).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Opening races with another process's migration: retry while the database is busy.
fn with_open_retry<T>(mut f: impl FnMut() -> Result<T, OpenError>) -> Result<T, OpenError> {
    let start = std::time::Instant::now();
    loop {
        match f() {
            Err(OpenError::MigrationFailed { message, .. })
                if message.contains("locked") && start.elapsed() < Duration::from_secs(30) =>
            {
                std::thread::sleep(Duration::from_millis(rand::random_range(1..20)));
            }
            other => return other,
        }
    }
}

/// Compares the keyring with the check values recorded in the database, and records the
/// active key if it is new. A key whose check value differs is refused: the values it
/// would open were written under another key.
fn check_keys(
    conn: &Connection,
    keyring: &swarm_codec::Keyring,
    cipher: Cipher,
    now: i64,
    path: &str,
) -> Result<(), OpenError> {
    let err =
        |e: rusqlite::Error| OpenError::Sqlite { path: path.to_owned(), message: e.to_string() };
    for id in keyring.ids() {
        let recorded: Option<Vec<u8>> = conn
            .query_row(
                "SELECT check_value FROM encryption_keys WHERE key_id = ?1",
                [id.get()],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        if let (Some(recorded), Some(check)) = (recorded, keyring.key_check(id))
            && recorded.as_slice() != check.as_slice()
        {
            return Err(OpenError::WrongKey { key_id: id.get() });
        }
    }
    let active = keyring.active_id();
    let known: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM encryption_keys WHERE key_id = ?1)",
            [active.get()],
            |r| r.get(0),
        )
        .map_err(err)?;
    let current = crate::keys::recorded_active_key(conn).map_err(err)?;
    if !known || current != Some(active.get()) {
        let check = keyring.key_check(active).ok_or(OpenError::KeyRequired)?;
        let tx = conn.unchecked_transaction().map_err(err)?;
        tx.execute(
            "UPDATE encryption_keys SET status = 'retired', retired_at = ?1 WHERE status = 'active'",
            [now],
        )
        .map_err(err)?;
        tx.execute(
            "INSERT INTO encryption_keys (key_id, cipher, check_value, status, created_at) VALUES (?1, ?2, ?3, 'active', ?4)
             ON CONFLICT (key_id) DO UPDATE SET status = 'active', retired_at = NULL",
            rusqlite::params![active.get(), cipher_name(cipher), &check[..], now],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(())
}

pub(crate) fn cipher_name(c: Cipher) -> &'static str {
    match c {
        Cipher::ChaCha20Poly1305 => "chacha20-poly1305",
        Cipher::XChaCha20Poly1305 => "xchacha20-poly1305",
        _ => "aes-256-gcm",
    }
}
