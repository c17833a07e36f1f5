//! The `store` suite: single-thread latency of the memory API (issue 5), each goal beside
//! raw rusqlite on the same database file, the same `memory` table and the same envelope
//! bytes, measured in the same run: the two sides alternate in blocks of calls within each
//! measurement, over several rounds, and the best round of each side is reported.
//!
//! - GET of a public 256 B value (stored plain in its envelope) and of a private one
//!   (encrypted with AES-256-GCM) against `SELECT value, version FROM memory WHERE <pk>`.
//! - SET of a public 256 B value (ACL checks, the existing record, the change feed and the
//!   audit row, in one transaction) against a raw upsert of every column run alone in
//!   autocommit.
//! - Without a goal: the raw point read joined to the ACL generation (as the store's point
//!   read is) against the plain raw read, both raw, so the GET ratios can be read; and SET
//!   against the raw in-place update the store itself runs for an overwrite, the cheapest
//!   raw overwrite there is.
//! - HAS, DELETE, INCR and MGET(10), without baselines.

use anyhow::Context as _;
use swarm_acl::Identity;
use swarm_store::{RecordKey, SetOptions};

use crate::fixture::{self, Env, RAW_UPDATE, RAW_UPSERT, Rng, key_name};
use crate::harness::{Comparison, Measurement, Section, Settings, faster, measure, measure_pair};

/// Records per namespace loaded before measuring.
const RECORDS: usize = 10_000;
/// Alternating rounds of each comparison; the best of each side is reported.
const ROUNDS: usize = 5;
/// Issue 5: full-API GET of a public value against the raw point read.
const GET_PUBLIC_GOAL: f64 = 1.5;
/// Issue 5: encrypted private GET against the raw point read.
const GET_PRIVATE_GOAL: f64 = 2.0;
/// Issue 5: SET (audit row included) against the raw autocommit upsert.
const SET_GOAL: f64 = 1.5;
/// Calls of one side before the other side's turn, within a measurement.
const BLOCK: u64 = 500;
/// Counters INCR spreads over.
const COUNTERS: usize = 64;

pub(crate) fn run(settings: &Settings) -> anyhow::Result<Section> {
    let mut section = Section::new("store");
    // Reads run the full count; writes commit once per call, so they run fewer.
    let reads = settings.capped(2_000, 20_000);
    let writes = settings.capped(1_000, 10_000);

    let env = Env::open()?;
    let agent = env.agent("agent-0001")?;
    let Identity::Agent(agent_id) = &agent else { anyhow::bail!("an agent identity") };
    eprintln!("store: loading {RECORDS} public and {RECORDS} private records");
    let (public, _) = env.load(&agent, "public", RECORDS, &fixture::public())?;
    let (private, _) = env.load(&agent, "private", RECORDS, &SetOptions::new())?;
    let doomed = (writes.warmup + writes.iterations) as usize;
    let (doomed, _) = env.load(&agent, "doomed", doomed, &fixture::public())?;
    let counters: Vec<RecordKey> =
        (0..COUNTERS).map(|i| env.key("counters", i)).collect::<anyhow::Result<_>>()?;

    let raw = fixture::raw_connection(&env.store, &env.path, false)?;
    let names: Vec<String> = (0..RECORDS).map(key_name).collect();
    // The envelope the store wrote for a public record: what the raw upsert writes, so the
    // CHECK and foreign-key constraints pass and the rows stay readable.
    let envelope: Vec<u8> = raw.query_row(
        "SELECT value FROM memory WHERE swarm_id = ?1 AND namespace = 'public' AND key = ?2",
        rusqlite::params![fixture::SWARM, names[0]],
        |r| r.get(0),
    )?;
    let sealed: Vec<u8> = raw.query_row(
        "SELECT value FROM memory WHERE swarm_id = ?1 AND namespace = 'private' AND key = ?2",
        rusqlite::params![fixture::SWARM, names[0]],
        |r| r.get(0),
    )?;
    let plain = fixture::value_bytes();
    anyhow::ensure!(envelope.windows(64).any(|w| w == &plain[..64]), "public value stored plain");
    anyhow::ensure!(!sealed.windows(64).any(|w| w == &plain[..64]), "private value not encrypted");
    // The raw upsert writes its own namespace of the same table, loaded the same way.
    let now = fixture::now_millis();
    {
        let tx = raw.unchecked_transaction()?;
        for name in &names {
            let owner = agent_id.as_str();
            fixture::raw_write(&raw, fixture::RAW_UPSERT, "raw", name, owner, &envelope, 1, now)?;
        }
        tx.commit()?;
    }
    fixture::checkpoint(&env.store, &env.path)?;
    section.figures.push(("public 256 B envelope bytes".into(), envelope.len() as f64));
    section.figures.push(("private 256 B envelope bytes (encrypted)".into(), sealed.len() as f64));

    // Sanity: both sides find what they are asked for.
    let got = env.store.get(&agent, &public[1])?.context("public record readable")?;
    anyhow::ensure!(got.value == fixture::value(), "public value round trip");
    let got = env.store.get(&agent, &private[1])?.context("private record readable")?;
    anyhow::ensure!(got.meta.encrypted && got.value == fixture::value(), "private round trip");
    anyhow::ensure!(fixture::raw_get(&raw, "public", &names[1])?.0 == envelope.len());

    eprintln!("store: GET and SET against raw rusqlite, {ROUNDS} rounds");
    let mut best: [Option<Measurement>; 10] = Default::default();
    let keep = |slot: &mut Option<Measurement>, m: Measurement| {
        *slot = Some(match slot.take() {
            None => m,
            Some(old) => faster(old, m),
        });
    };
    let public_opts = fixture::public();
    let value = fixture::value();
    let mut version = 1_i64;
    for round in 0..ROUNDS {
        // The previous round's writes left a WAL behind, which every read would search:
        // each round's reads start from the records in the B-tree, as the first round's do.
        fixture::checkpoint(&env.store, &env.path)?;
        let seed = 0x5157_0000 + round as u64;
        let (mut r1, mut r2) = (Rng::new(seed), Rng::new(seed));
        let (ours, raw_m) = measure_pair(
            ("GET public 256 B", "raw point read (public row)"),
            &reads,
            BLOCK,
            || {
                let k = &public[r1.below(RECORDS)];
                env.store.get(&agent, k).map(|r| r.map(|r| r.meta.version)).ok().flatten()
            },
            || fixture::raw_get(&raw, "public", &names[r2.below(RECORDS)]).ok(),
        );
        keep(&mut best[0], ours);
        keep(&mut best[1], raw_m);
        let (mut r1, mut r2) = (Rng::new(seed), Rng::new(seed));
        let (joined, plain) = measure_pair(
            ("raw point read joined to the ACL generation", "raw point read (public row)"),
            &reads,
            BLOCK,
            || fixture::raw_get_joined(&raw, "public", &names[r1.below(RECORDS)]).ok(),
            || fixture::raw_get(&raw, "public", &names[r2.below(RECORDS)]).ok(),
        );
        keep(&mut best[6], joined);
        keep(&mut best[7], plain);
        let (mut r1, mut r2) = (Rng::new(seed), Rng::new(seed));
        let (ours, raw_m) = measure_pair(
            ("GET private 256 B (AES-256-GCM)", "raw point read (private row)"),
            &reads,
            BLOCK,
            || {
                let k = &private[r1.below(RECORDS)];
                env.store.get(&agent, k).map(|r| r.map(|r| r.meta.version)).ok().flatten()
            },
            || fixture::raw_get(&raw, "private", &names[r2.below(RECORDS)]).ok(),
        );
        keep(&mut best[2], ours);
        keep(&mut best[3], raw_m);
        let now = fixture::now_millis();
        // SET against the goal's baseline, then against the cheapest raw overwrite.
        for (sql, baseline, slot) in [
            (RAW_UPSERT, "raw autocommit upsert", 4),
            (RAW_UPDATE, "raw autocommit in-place update", 8),
        ] {
            let (mut r1, mut r2) = (Rng::new(seed), Rng::new(seed));
            let (ours, raw_m) = measure_pair(
                ("SET public 256 B", baseline),
                &writes,
                BLOCK,
                || {
                    let k = &public[r1.below(RECORDS)];
                    env.store.set(&agent, k, value.clone(), &public_opts).map(|w| w.version).ok()
                },
                || {
                    version += 1;
                    let name = &names[r2.below(RECORDS)];
                    let owner = agent_id.as_str();
                    fixture::raw_write(&raw, sql, "raw", name, owner, &envelope, version, now).ok()
                },
            );
            keep(&mut best[slot], ours);
            keep(&mut best[slot + 1], raw_m);
        }
    }
    let [
        Some(get_pub),
        Some(raw_pub),
        Some(get_priv),
        Some(raw_priv),
        Some(set),
        Some(upsert),
        Some(joined),
        Some(plain),
        Some(set_again),
        Some(update),
    ] = best
    else {
        anyhow::bail!("no rounds measured");
    };
    section.comparisons.push(Comparison::latency(
        "GET public 256 B vs raw point read",
        get_pub,
        raw_pub,
        Some(GET_PUBLIC_GOAL),
    ));
    section.comparisons.push(Comparison::latency(
        "GET private 256 B (encrypted) vs raw point read",
        get_priv,
        raw_priv,
        Some(GET_PRIVATE_GOAL),
    ));
    section.comparisons.push(Comparison::latency(
        "SET public 256 B (audit row included) vs raw autocommit upsert",
        set,
        upsert,
        Some(SET_GOAL),
    ));
    // No goal: what the generation join alone costs, so the GET ratios above can be read.
    section.comparisons.push(Comparison::latency(
        "raw point read joined to the ACL generation vs raw point read",
        joined,
        plain,
        None,
    ));
    // No goal: SET against the cheapest raw overwrite, the store's own statement for it.
    section.comparisons.push(Comparison::latency(
        "SET public 256 B (audit row included) vs raw autocommit in-place update",
        set_again,
        update,
        None,
    ));

    eprintln!("store: HAS, DELETE, INCR, MGET(10)");
    // The SET rounds left a long WAL behind; start the next reads where the GETs started.
    fixture::checkpoint(&env.store, &env.path)?;
    let mut rng = Rng::new(0x4a5);
    section.measurements.push(measure("HAS public", &reads, || {
        env.store.has(&agent, &public[rng.below(RECORDS)]).unwrap_or(false)
    }));
    let mut next = 0;
    section.measurements.push(measure("DELETE public (existing record)", &writes, || {
        let k = &doomed[next % doomed.len()];
        next += 1;
        env.store.delete(&agent, k, None).unwrap_or(false)
    }));
    let mut rng = Rng::new(0x1c4);
    section.measurements.push(measure("INCR public counter", &writes, || {
        env.store.incr(&agent, &counters[rng.below(COUNTERS)], 1, &public_opts).unwrap_or(0)
    }));
    let mut rng = Rng::new(0x36e7);
    let mut batch: Vec<RecordKey> = Vec::with_capacity(10);
    section.measurements.push(measure("MGET 10 public", &reads.capped(1_000, 10_000), || {
        batch.clear();
        batch.extend((0..10).map(|_| public[rng.below(RECORDS)].clone()));
        env.store.mget(&agent, &batch).map(|v| v.len()).unwrap_or(0)
    }));
    anyhow::ensure!(next <= doomed.len(), "DELETE ran out of records");
    env.store.shutdown()?;
    Ok(section)
}
