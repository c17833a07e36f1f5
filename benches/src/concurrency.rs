//! The `concurrency` suite (issue 6): throughput with several threads on one store.
//!
//! - Writes: one thread doing SETs (each its own transaction) against eight threads doing
//!   SETs on distinct keys through the same `Store`, whose writer groups concurrent writes
//!   into shared transactions (goal: eight writers at least 5x one).
//! - Reads: one thread doing random public GETs against two threads doing the same (goal:
//!   two readers at least 1.7x one), and the same pair with raw rusqlite connections, one
//!   per thread, as the ceiling this machine allows.
//!
//! Each configuration runs for a fixed time; configurations alternate over rounds and the
//! best round of each is reported.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use swarm_acl::Identity;
use swarm_store::{Durability, RecordKey, SetOptions, Value};

use crate::fixture::{self, Env, Rng};
use crate::harness::{
    Goal, Measurement, Section, Settings, busier, new_histogram, record, summarize,
};

/// Writer threads of the group-commit run.
const WRITERS: usize = 8;
/// Keys each writer thread updates (loaded first, so every SET replaces a record).
const KEYS_PER_WRITER: usize = 1_000;
/// Public records the readers read.
const READ_RECORDS: usize = 10_000;
/// Issue 6 goals.
const WRITE_GOAL: f64 = 5.0;
const READ_GOAL: f64 = 1.7;
/// Alternating rounds; the best of each configuration is reported.
const ROUNDS: usize = 3;

/// A store with one agent per writer thread, each with its own keys, already loaded.
struct Writers {
    env: Env,
    agents: Vec<Identity>,
    keys: Vec<Vec<RecordKey>>,
}

impl Writers {
    fn new(env: Env) -> anyhow::Result<Self> {
        let agents: Vec<Identity> = (0..WRITERS)
            .map(|t| env.agent(&format!("writer-{t}")))
            .collect::<anyhow::Result<_>>()?;
        let mut keys = Vec::with_capacity(WRITERS);
        for (t, who) in agents.iter().enumerate() {
            let ns = format!("writer-{t}");
            keys.push(env.load(who, &ns, KEYS_PER_WRITER, &fixture::public())?.0);
        }
        fixture::checkpoint(&env.store, &env.path)?;
        Ok(Self { env, agents, keys })
    }

    /// One SET by thread `t` on one of its own keys.
    fn set(&self, t: usize, rng: &mut Rng, value: &Value, opts: &SetOptions) -> bool {
        let keys = &self.keys[t];
        let key = &keys[rng.below(keys.len())];
        self.env.store.set(&self.agents[t], key, value.clone(), opts).is_ok()
    }

    /// One thread, then [`WRITERS`] threads, each doing SETs for `span`.
    fn run(&self, span: Duration, label: &str) -> anyhow::Result<(Measurement, Measurement)> {
        let (value, opts) = (fixture::value(), fixture::public());
        let set = |t: usize, rng: &mut Rng, _: &mut ()| self.set(t, rng, &value, &opts);
        let one = timed(&format!("SET{label}, 1 writer thread"), 1, span, |_| Ok(()), set)?;
        let many = timed(
            &format!("SET{label}, {WRITERS} writer threads (group commit)"),
            WRITERS,
            span,
            |_| Ok(()),
            set,
        )?;
        Ok((one, many))
    }
}

/// Writes per transaction in the raw grouping ceiling: what a full group of
/// [`WRITERS`] shares.
const RAW_GROUP: usize = WRITERS;

/// The audit row the raw ceiling appends for each write, with the columns a SET's row
/// fills (the hashes are constants: this file is thrown away and never verified).
const RAW_AUDIT: &str = "INSERT INTO audit_log (seq, at, actor, action, resource_type, resource, \
    swarm_id, outcome, detail, prev_hash, hash, fmt, namespace, key, acl_level, owner_id) \
    VALUES ((SELECT coalesce(max(seq), 0) + 1 FROM audit_log), ?1, ?2, 'memory.set', 'memory', \
    ?3, 'bench', 'ok', '{\"created\":false,\"size\":256}', zeroblob(32), zeroblob(32), 2, ?4, ?5, \
    4, ?2)";

/// One thread's raw connection and the version it writes next.
struct RawWriter {
    conn: rusqlite::Connection,
    version: i64,
}

impl RawWriter {
    /// The statements of one SET on a live public record of writer `t`, run raw: the read
    /// of the existing row, the in-place update and the audit row.
    fn write(&mut self, writers: &Writers, t: usize, rng: &mut Rng) -> anyhow::Result<()> {
        let keys = &writers.keys[t];
        let key = &keys[rng.below(keys.len())];
        let (ns, name) = (key.namespace().as_str(), key.key().as_str());
        let owner = format!("writer-{t}");
        let conn = &self.conn;
        fixture::raw_get(conn, ns, name)?;
        self.version += 1;
        let now = fixture::now_millis();
        let envelope = fixture::value_bytes();
        let n = fixture::raw_write(
            conn,
            fixture::RAW_UPDATE,
            ns,
            name,
            &owner,
            &envelope,
            self.version,
            now,
        )?;
        anyhow::ensure!(n == 1, "raw update of {key} changed {n} rows");
        conn.prepare_cached(RAW_AUDIT)?.execute(rusqlite::params![
            now,
            owner,
            key.to_string(),
            ns,
            name
        ])?;
        Ok(())
    }

    /// One transaction of `per_tx` writes, spread over the writers' keys as a group of
    /// [`WRITERS`] callers would bring them. With more than one write per transaction
    /// this is the most group commit could do on this machine: no threads, no hand-off,
    /// no checks.
    fn transaction(
        &mut self,
        writers: &Writers,
        rng: &mut Rng,
        per_tx: usize,
    ) -> anyhow::Result<()> {
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        for i in 0..per_tx {
            self.write(writers, i % WRITERS, rng)?;
        }
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }
}

/// The raw grouping ceiling: one thread running [`RawWriter`] transactions on a store file
/// of its own, loaded as [`Writers`] loads its own.
struct RawCeiling {
    writers: Writers,
    label: &'static str,
}

impl RawCeiling {
    fn new(durability: Durability) -> anyhow::Result<Self> {
        let writers = Writers::new(Env::open_with(|c| c.with_durability(durability))?)?;
        let label = match durability {
            Durability::Normal => "",
            Durability::Full => " (synchronous=FULL)",
        };
        Ok(Self { writers, label })
    }

    /// Transactions of `per_tx` writes for `span`; each call is one transaction.
    fn run(&self, span: Duration, per_tx: usize) -> anyhow::Result<Measurement> {
        let env = &self.writers.env;
        let open = |_| {
            let conn = fixture::raw_connection(&env.store, &env.path, false)?;
            Ok(RawWriter { conn, version: 1_000_000 })
        };
        let name = format!(
            "raw SET statements{}, {per_tx} per transaction (a call is a transaction)",
            self.label
        );
        timed(&name, 1, span, open, |_, rng, w: &mut RawWriter| {
            w.transaction(&self.writers, rng, per_tx)
                .map_err(|e| eprintln!("raw grouping ceiling: {e:#}"))
                .is_ok()
        })
    }
}

pub(crate) fn run(settings: &Settings) -> anyhow::Result<Section> {
    let mut section = Section::new("concurrency");
    let span =
        if settings.quick { Duration::from_millis(400) } else { Duration::from_millis(1500) };
    eprintln!("concurrency: loading {} records", WRITERS * KEYS_PER_WRITER + READ_RECORDS);
    let normal = Writers::new(Env::open()?)?;
    let env = &normal.env;
    let reader = &normal.agents[0];
    let (read_keys, _) = env.load(reader, "shared", READ_RECORDS, &fixture::public())?;
    fixture::checkpoint(&env.store, &env.path)?;
    // The same write runs with synchronous=FULL, where every commit waits for an fsync:
    // the case group commit exists for. Not a goal of its own, but it shows where the
    // grouping pays and where it cannot.
    eprintln!("concurrency: loading {} records (synchronous=FULL)", WRITERS * KEYS_PER_WRITER);
    let full = Writers::new(Env::open_with(|c| c.with_durability(Durability::Full))?)?;
    // The most grouping could give, measured in the same rounds.
    eprintln!("concurrency: loading the raw grouping ceiling's files");
    let raw_normal = RawCeiling::new(Durability::Normal)?;
    let raw_full = RawCeiling::new(Durability::Full)?;
    let mut raw_best: [Option<Measurement>; 4] = Default::default();

    let mut best: [Option<Measurement>; 8] = Default::default();
    let keep = |slot: &mut Option<Measurement>, m: Measurement| {
        *slot = Some(match slot.take() {
            None => m,
            Some(old) => busier(old, m),
        });
    };
    for round in 0..ROUNDS {
        eprintln!("concurrency: round {}/{ROUNDS}", round + 1);
        let (one, many) = normal.run(span, "")?;
        keep(&mut best[0], one);
        keep(&mut best[1], many);
        // Every round's readers start from the same place: the writes just before them
        // left a WAL of their own length behind.
        fixture::checkpoint(&env.store, &env.path)?;
        let get = |_: usize, rng: &mut Rng, _: &mut ()| {
            matches!(env.store.get(reader, &read_keys[rng.below(READ_RECORDS)]), Ok(Some(_)))
        };
        keep(&mut best[2], timed("GET public, 1 reader thread", 1, span, |_| Ok(()), get)?);
        keep(&mut best[3], timed("GET public, 2 reader threads", 2, span, |_| Ok(()), get)?);
        let open = |_| fixture::raw_connection(&env.store, &env.path, true);
        let raw_get = |_: usize, rng: &mut Rng, conn: &mut rusqlite::Connection| {
            let key = read_keys[rng.below(READ_RECORDS)].key().as_str();
            fixture::raw_get(conn, "shared", key).is_ok()
        };
        keep(&mut best[4], timed("raw point read, 1 thread", 1, span, open, raw_get)?);
        keep(&mut best[5], timed("raw point read, 2 threads", 2, span, open, raw_get)?);
        let (one, many) = full.run(span, " (synchronous=FULL)")?;
        keep(&mut best[6], one);
        keep(&mut best[7], many);
        for (i, ceiling) in [&raw_normal, &raw_full].into_iter().enumerate() {
            keep(&mut raw_best[2 * i], ceiling.run(span, 1)?);
            keep(&mut raw_best[2 * i + 1], ceiling.run(span, RAW_GROUP)?);
        }
    }
    let [Some(raw_w1), Some(raw_w8), Some(raw_f1), Some(raw_f8)] = raw_best else {
        anyhow::bail!("no raw ceiling rounds measured");
    };
    let per_write = |grouped: &Measurement, single: &Measurement| {
        grouped.ops_per_sec * RAW_GROUP as f64 / single.ops_per_sec
    };
    let (raw_ratio, raw_full_ratio) = (per_write(&raw_w8, &raw_w1), per_write(&raw_f8, &raw_f1));
    let [Some(w1), Some(w8), Some(r1), Some(r2), Some(raw1), Some(raw2), Some(f1), Some(f8)] = best
    else {
        anyhow::bail!("no rounds measured");
    };
    section.goals.push(Goal::at_least(
        &format!("SET throughput, {WRITERS} writers / 1 writer"),
        w8.ops_per_sec / w1.ops_per_sec,
        WRITE_GOAL,
        "x",
    ));
    section.goals.push(Goal::at_least(
        "GET throughput, 2 readers / 1 reader",
        r2.ops_per_sec / r1.ops_per_sec,
        READ_GOAL,
        "x",
    ));
    section.figures.push((
        format!("SET throughput with synchronous=FULL, {WRITERS} writers / 1 writer"),
        f8.ops_per_sec / f1.ops_per_sec,
    ));
    section.figures.push((
        "raw point read throughput, 2 threads / 1 thread (this machine's ceiling)".into(),
        raw2.ops_per_sec / raw1.ops_per_sec,
    ));
    section.figures.push((
        "GET 1 reader ops/s / raw point read 1 thread ops/s".into(),
        r1.ops_per_sec / raw1.ops_per_sec,
    ));
    for (durability, ratio) in [("", raw_ratio), (" with synchronous=FULL", raw_full_ratio)] {
        section.figures.push((
            format!(
                "raw SET statements on one thread{durability}, {RAW_GROUP} per transaction / 1 \
                 per transaction (the most grouping can give on this machine)"
            ),
            ratio,
        ));
    }
    section.figures.push(("seconds per timed run".into(), span.as_secs_f64()));
    section
        .measurements
        .extend([w1, w8, f1, f8, raw_w1, raw_w8, raw_f1, raw_f8, r1, r2, raw1, raw2]);
    for store in [
        &normal.env.store,
        &full.env.store,
        &raw_normal.writers.env.store,
        &raw_full.writers.env.store,
    ] {
        store.shutdown()?;
    }
    Ok(section)
}

/// Runs `op` on `threads` threads at once for `span`, each thread with its own random
/// sequence and the state `init` makes for it (on that thread), and reports the latency
/// of every call and the calls per second of all threads together. A call that fails
/// fails the run: a benchmark that counts errors as work would flatter us.
fn timed<S, I, F>(
    name: &str,
    threads: usize,
    span: Duration,
    init: I,
    op: F,
) -> anyhow::Result<Measurement>
where
    I: Fn(usize) -> anyhow::Result<S> + Sync,
    F: Fn(usize, &mut Rng, &mut S) -> bool + Sync,
{
    let barrier = Barrier::new(threads);
    let results: Vec<anyhow::Result<_>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, init, op) = (&barrier, &init, &op);
                scope.spawn(move || -> anyhow::Result<_> {
                    let state = init(t);
                    barrier.wait();
                    let mut state = state?;
                    let mut rng = Rng::new(0xc0c0_0000 + t as u64);
                    let mut hist = new_histogram();
                    let mut calls = 0_u64;
                    let start = Instant::now();
                    while start.elapsed() < span {
                        let t0 = Instant::now();
                        let ok = op(t, &mut rng, &mut state);
                        record(&mut hist, t0.elapsed());
                        anyhow::ensure!(ok, "{name}: a call failed");
                        calls += 1;
                    }
                    Ok((hist, calls, start.elapsed()))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("{name}: a thread panicked"))))
            .collect()
    });
    let mut hist = new_histogram();
    let mut calls = 0;
    let mut wall = Duration::ZERO;
    for r in results {
        let (h, n, elapsed) = r?;
        hist.add(&h).map_err(|e| anyhow::anyhow!("merging histograms: {e}"))?;
        calls += n;
        wall = wall.max(elapsed);
    }
    Ok(summarize(name, calls, wall, &hist))
}
