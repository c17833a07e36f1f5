//! The single write path: group commit by leader election.
//!
//! Callers queue jobs. The first caller to find no leader becomes the leader: it takes
//! every queued job (up to `max_group`), runs them in one `BEGIN IMMEDIATE` transaction,
//! each inside its own savepoint so one failing job does not undo the others, commits
//! once, and hands every caller its own result. Jobs queued meanwhile form the next group,
//! led by one of their callers. With no contention a write runs on its caller's thread
//! with no hand-off at all; under contention the commit cost is shared by the group.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};
use rusqlite::Connection;

use crate::audit::PendingAudit;
use crate::error::{Result, StoreError};
use crate::retry::{RetryPolicy, with_busy_retry};
use crate::txn::{GroupState, WriteCtx};

/// What a job tells the leader when it has run: whether its changes stay, and how to hand
/// its caller the result once the commit outcome is known.
pub(crate) struct Finish {
    ok: bool,
    deliver: Deliver,
}

/// Hands a job's caller its result, given the group's commit error if any.
type Deliver = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// What a job is given: a transaction to work in, or the reason it cannot run.
pub(crate) enum JobInput<'a, 'c> {
    Run(&'a mut WriteCtx<'c>),
    Abort(StoreError),
}

pub(crate) type Job = Box<dyn for<'a, 'c> FnOnce(JobInput<'a, 'c>) -> Finish + Send>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Signal {
    Waiting,
    Done,
    Lead,
}

struct Pending {
    job: Mutex<Option<Job>>,
    signal: Mutex<Signal>,
    cv: Condvar,
}

impl Pending {
    fn set(&self, s: Signal) {
        *self.signal.lock() = s;
        self.cv.notify_one();
    }
}

struct Queue {
    jobs: VecDeque<Arc<Pending>>,
    leader: bool,
    closed: bool,
}

/// Counters of the write path.
#[derive(Debug, Default)]
pub(crate) struct WriterStats {
    pub(crate) groups: AtomicU64,
    pub(crate) jobs: AtomicU64,
    pub(crate) busy_retries: AtomicU64,
    pub(crate) failed_commits: AtomicU64,
}

pub(crate) struct Writer {
    queue: Mutex<Queue>,
    conn: Mutex<Option<Connection>>,
    max_group: usize,
    retry: RetryPolicy,
    pub(crate) stats: WriterStats,
    /// Audit rows produced outside a write (denied reads), appended by the next group.
    pending_audit: Arc<PendingAudit>,
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        max_group: usize,
        retry: RetryPolicy,
        pending_audit: Arc<PendingAudit>,
    ) -> Self {
        Self {
            queue: Mutex::new(Queue { jobs: VecDeque::new(), leader: false, closed: false }),
            conn: Mutex::new(Some(conn)),
            max_group: max_group.max(1),
            retry,
            stats: WriterStats::default(),
            pending_audit,
        }
    }

    /// Runs `f` in a write transaction shared with whatever else is queued, and returns
    /// its result once the transaction has committed. An `Err` from `f` rolls back `f`'s
    /// changes only; a failed commit turns every result of the group into that error.
    pub(crate) fn run<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: for<'c> FnOnce(&mut WriteCtx<'c>) -> Result<R> + Send + 'static,
    {
        let slot: Arc<Mutex<Option<Result<R>>>> = Arc::new(Mutex::new(None));
        let out = Arc::clone(&slot);
        let job: Job = Box::new(move |input| {
            let result = match input {
                JobInput::Run(ctx) => f(ctx),
                JobInput::Abort(e) => Err(e),
            };
            let ok = result.is_ok();
            Finish {
                ok,
                deliver: Box::new(move |commit_error| {
                    let result = match (result, commit_error) {
                        (Ok(_), Some(e)) => Err(duplicate(e)),
                        (r, _) => r,
                    };
                    *out.lock() = Some(result);
                }),
            }
        });
        self.submit(job)?;
        let result = slot.lock().take();
        // An empty slot means the job panicked before producing a result.
        result.unwrap_or_else(|| {
            Err(StoreError::Corrupt("internal error: a write job panicked".into()))
        })
    }

    fn submit(&self, job: Job) -> Result<()> {
        let pending = Arc::new(Pending {
            job: Mutex::new(Some(job)),
            signal: Mutex::new(Signal::Waiting),
            cv: Condvar::new(),
        });
        let lead = {
            let mut q = self.queue.lock();
            if q.closed {
                return Err(StoreError::Closed);
            }
            q.jobs.push_back(Arc::clone(&pending));
            if q.leader {
                false
            } else {
                q.leader = true;
                true
            }
        };
        if !lead {
            let mut s = pending.signal.lock();
            while *s == Signal::Waiting {
                pending.cv.wait(&mut s);
            }
            if *s == Signal::Done {
                return Ok(());
            }
            // Signal::Lead: the previous leader handed over; our job is still queued.
        }
        self.lead(&pending);
        Ok(())
    }

    /// Runs groups until our own job is done, then hands leadership to a waiting caller
    /// (or gives it up when nobody waits).
    fn lead(&self, mine: &Arc<Pending>) {
        loop {
            let group: Vec<Arc<Pending>> = {
                let mut q = self.queue.lock();
                let n = q.jobs.len().min(self.max_group);
                q.jobs.drain(..n).collect()
            };
            if !group.is_empty() {
                self.execute(&group);
            }
            let mut q = self.queue.lock();
            let mine_done = *mine.signal.lock() == Signal::Done;
            if mine_done || group.is_empty() {
                match q.jobs.front() {
                    Some(next) => next.set(Signal::Lead),
                    None => q.leader = false,
                }
                return;
            }
        }
    }

    fn execute(&self, group: &[Arc<Pending>]) {
        let mut conn_guard = self.conn.lock();
        let Some(conn) = conn_guard.as_mut() else {
            let finishes = group
                .iter()
                .filter_map(|p| p.job.lock().take())
                .map(|j| j(JobInput::Abort(StoreError::Closed)));
            let finishes: Vec<Finish> = finishes.collect();
            drop(conn_guard);
            self.deliver(group, finishes, None);
            return;
        };
        self.stats.groups.fetch_add(1, Ordering::Relaxed);
        self.stats.jobs.fetch_add(group.len() as u64, Ordering::Relaxed);
        let begun = with_busy_retry(&self.retry, &self.stats.busy_retries, || {
            exec(conn, "BEGIN IMMEDIATE")
        })
        .map_err(StoreError::from)
        .and_then(|()| GroupState::begin(conn));
        let mut state = match begun {
            Ok(state) => state,
            Err(e) => {
                if !conn.is_autocommit() {
                    let _ = exec(conn, "ROLLBACK");
                }
                drop(conn_guard);
                let err = e;
                let finishes: Vec<Finish> = group
                    .iter()
                    .filter_map(|p| p.job.lock().take())
                    .map(|j| j(JobInput::Abort(duplicate(&err))))
                    .collect();
                self.deliver(group, finishes, None);
                return;
            }
        };
        let single = group.len() == 1;
        let mut finishes: Vec<Finish> = Vec::with_capacity(group.len());
        for (i, p) in group.iter().enumerate() {
            let Some(job) = p.job.lock().take() else { continue };
            if !single && let Err(e) = exec(conn, "SAVEPOINT job") {
                finishes.push(job(JobInput::Abort(StoreError::from(e))));
                continue;
            }
            let mark = state.mark();
            let mut ctx = WriteCtx::new(conn, &mut state);
            let finish = catch_unwind(AssertUnwindSafe(|| job(JobInput::Run(&mut ctx))))
                .unwrap_or_else(|_| {
                    tracing::error!("a write job panicked; its changes are rolled back");
                    Finish { ok: false, deliver: Box::new(|_| {}) }
                });
            let ended = if finish.ok {
                if single { Ok(()) } else { exec(conn, "RELEASE job") }
            } else {
                state.rewind(mark);
                if single {
                    exec(conn, "ROLLBACK")
                } else {
                    exec(conn, "ROLLBACK TO job").and_then(|()| exec(conn, "RELEASE job"))
                }
            };
            finishes.push(finish);
            if let Err(e) = ended {
                // Only a broken connection gets here. A failed job's changes may still be
                // in the transaction, so nothing of the group may commit: every caller gets
                // the error, those whose jobs have not run included.
                let _ = exec(conn, "ROLLBACK");
                drop(conn_guard);
                let err = StoreError::from(e);
                let rest: Vec<Finish> = group[i + 1..]
                    .iter()
                    .filter_map(|p| p.job.lock().take())
                    .map(|j| j(JobInput::Abort(duplicate(&err))))
                    .collect();
                finishes.extend(rest);
                self.stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                self.deliver(group, finishes, Some(&err));
                return;
            }
        }
        let commit = if conn.is_autocommit() {
            // A single failed job already rolled back; queued audit rows wait for the next group.
            Ok(())
        } else {
            // Audit rows of denied reads join here, after the jobs, so that no job's
            // rollback can take them along.
            self.pending_audit
                .drain_into(conn, &mut state)
                .and_then(|()| state.finish(conn))
                .and_then(|()| exec(conn, "COMMIT"))
                .map_err(StoreError::from)
        };
        match commit {
            Ok(()) => {
                drop(conn_guard);
                state.run_after_commit();
                self.deliver(group, finishes, None);
            }
            Err(e) => {
                self.stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                if let Some(conn) = conn_guard.as_mut()
                    && !conn.is_autocommit()
                {
                    let _ = exec(conn, "ROLLBACK");
                }
                drop(conn_guard);
                self.deliver(group, finishes, Some(&e));
            }
        }
    }

    fn deliver(
        &self,
        group: &[Arc<Pending>],
        finishes: Vec<Finish>,
        commit_error: Option<&StoreError>,
    ) {
        for f in finishes {
            (f.deliver)(commit_error);
        }
        for p in group {
            p.set(Signal::Done);
        }
    }

    /// Runs `f` on the write connection outside any transaction (checkpoints, `ANALYZE`),
    /// after the current group.
    pub(crate) fn with_connection<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T>,
    ) -> Result<T> {
        let mut guard = self.conn.lock();
        let conn = guard.as_mut().ok_or(StoreError::Closed)?;
        f(conn)
    }

    /// Refuses new jobs, lets the current group finish, and returns the connection.
    pub(crate) fn close(&self) -> Option<Connection> {
        self.queue.lock().closed = true;
        // Jobs already queued still run: wait until no leader is active.
        loop {
            {
                let q = self.queue.lock();
                if !q.leader && q.jobs.is_empty() {
                    break;
                }
            }
            std::thread::yield_now();
        }
        self.conn.lock().take()
    }
}

/// Runs a transaction-control statement through the statement cache: these run several
/// times per commit group, and parsing them each time showed in profiles.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Copies an error for each caller of a failed group (errors are not `Clone`).
fn duplicate(e: &StoreError) -> StoreError {
    match e {
        StoreError::Busy => StoreError::Busy,
        StoreError::Closed => StoreError::Closed,
        StoreError::Corrupt(what) => StoreError::Corrupt(what.clone()),
        other => StoreError::Database(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer on an in-memory database with the tables a group reads at its start and
    /// a table `t` for the jobs.
    fn writer() -> Arc<Writer> {
        let conn = Connection::open_in_memory().expect("in-memory database");
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value);
             INSERT INTO meta VALUES ('acl_generation', 0);
             CREATE TABLE audit_log (seq INTEGER PRIMARY KEY, hash BLOB, at INTEGER);
             CREATE TABLE t (x INTEGER);",
        )
        .expect("schema");
        Arc::new(Writer::new(conn, 64, RetryPolicy::default(), Arc::new(PendingAudit::default())))
    }

    fn rows(w: &Writer) -> Vec<i64> {
        w.with_connection(|c| {
            let mut stmt = c.prepare("SELECT x FROM t ORDER BY x")?;
            let rows = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<i64>>>()?;
            Ok(rows)
        })
        .expect("rows")
    }

    /// A job whose savepoint cannot be rolled back (here it released the savepoint itself,
    /// as a broken connection would fail the rollback) leaves its changes in the
    /// transaction: nothing of its group may commit, and every caller of the group, those
    /// whose jobs had not run yet included, gets an error.
    #[test]
    fn a_job_whose_rollback_fails_fails_its_whole_group_and_nothing_of_it_commits() {
        let w = writer();
        let (started, wait_started) = crossbeam_channel::bounded::<()>(1);
        let leader = {
            let w2 = Arc::clone(&w);
            std::thread::spawn(move || {
                w2.run({
                    let w3 = Arc::clone(&w2);
                    move |ctx| {
                        let _ = started.send(());
                        // Hold the connection until the other three jobs are queued: they
                        // form the next group together.
                        while w3.queue.lock().jobs.len() < 3 {
                            std::thread::yield_now();
                        }
                        ctx.conn().execute("INSERT INTO t VALUES (0)", [])?;
                        Ok(())
                    }
                })
            })
        };
        wait_started.recv().expect("the first job runs");
        let others: Vec<_> = (1..=3_i64)
            .map(|i| {
                let w2 = Arc::clone(&w);
                std::thread::spawn(move || {
                    w2.run(move |ctx| {
                        ctx.conn().execute("INSERT INTO t VALUES (?1)", [i])?;
                        if i == 2 {
                            ctx.conn().execute_batch("RELEASE job")?;
                            return Err(StoreError::invalid("job 2 fails"));
                        }
                        Ok(())
                    })
                })
            })
            .collect();
        leader.join().expect("leader thread").expect("the first group commits");
        let results: Vec<Result<()>> =
            others.into_iter().map(|h| h.join().expect("writer thread")).collect();
        assert!(results.iter().all(Result::is_err), "a job of the failed group succeeded");
        assert_eq!(rows(&w), [0], "the failed group's writes were committed");
        // The writer goes on.
        w.run(|ctx| Ok(ctx.conn().execute("INSERT INTO t VALUES (9)", []).map(|_| ())?))
            .expect("a later write");
        assert_eq!(rows(&w), [0, 9]);
    }
}
