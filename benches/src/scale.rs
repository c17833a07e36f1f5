//! The `scale` suite (issue 6): GET latency as the table grows.
//!
//! For 10k, 100k and 1M records (`--quick` stops at 100k), a fresh database is loaded with
//! public 256 B records through `mset` in batches of 1000, then random GETs are measured
//! beside the raw point read on the same file, the two alternating in blocks of calls. A B-tree lookup grows with log(n), so the
//! p50 at the largest size over the p50 at 10k should stay under log(n)/log(10k): any
//! latency of the form a + b*log(n) with a, b >= 0 does.

use swarm_store::RecordKey;

use crate::fixture::{self, Env, Rng};
use crate::harness::{Comparison, Goal, Measurement, Section, Settings, faster, measure_pair};

const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];
const QUICK_MAX: usize = 100_000;
/// Rounds; the best of each side is reported.
const ROUNDS: usize = 5;
/// Calls of one side before the other side's turn, within a round.
const BLOCK: u64 = 500;

pub(crate) fn run(settings: &Settings) -> anyhow::Result<Section> {
    let mut section = Section::new("scale");
    let reads = settings.capped(2_000, 20_000);
    let sizes: Vec<usize> =
        SIZES.iter().copied().filter(|&n| !settings.quick || n <= QUICK_MAX).collect();
    let mut medians: Vec<(usize, u64, u64)> = Vec::new();
    for &n in &sizes {
        eprintln!("scale: loading {n} records into a fresh database");
        let env = Env::open()?;
        let agent = env.agent("agent-0001")?;
        let (keys, took) = env.load(&agent, "scale", n, &fixture::public())?;
        section.figures.push((format!("load {n} records with mset, seconds"), took.as_secs_f64()));
        section
            .figures
            .push((format!("load {n} records, records per second"), n as f64 / took.as_secs_f64()));
        section.figures.push((
            format!("WAL after loading {n} records, MiB (checkpointed before reading)"),
            fixture::wal_bytes(&env.path) as f64 / (1024.0 * 1024.0),
        ));
        fixture::checkpoint(&env.store, &env.path)?;
        section.figures.push((
            format!("database file with {n} records (memory, change feed, audit), MiB"),
            std::fs::metadata(&env.path).map_or(0, |m| m.len()) as f64 / (1024.0 * 1024.0),
        ));
        let raw = fixture::raw_connection(&env.store, &env.path, true)?;
        anyhow::ensure!(fixture::raw_get(&raw, "scale", keys[n - 1].key().as_str()).is_ok());
        eprintln!("scale: GETs at {n} records, {ROUNDS} rounds");
        let (mut ours, mut base): (Option<Measurement>, Option<Measurement>) = (None, None);
        for round in 0..ROUNDS {
            let seed = 0x5ca1e + round as u64;
            let (mut r1, mut r2) = (Rng::new(seed), Rng::new(seed));
            let (a, b) = measure_pair(
                (
                    &format!("GET public 256 B, {n} records"),
                    &format!("raw point read, {n} records"),
                ),
                &reads,
                BLOCK,
                || get(&env, &agent, &keys, &mut r1),
                || fixture::raw_get(&raw, "scale", keys[r2.below(keys.len())].key().as_str()).ok(),
            );
            ours = Some(match ours {
                None => a,
                Some(o) => faster(o, a),
            });
            base = Some(match base {
                None => b,
                Some(o) => faster(o, b),
            });
        }
        let (Some(ours), Some(base)) = (ours, base) else { anyhow::bail!("no rounds measured") };
        medians.push((n, ours.p50_ns, base.p50_ns));
        section.comparisons.push(Comparison::latency(
            &format!("GET at {n} records vs raw point read"),
            ours,
            base,
            None,
        ));
        drop(raw);
        env.store.shutdown()?;
    }
    let Some(&(small, ours_small, raw_small)) = medians.first() else {
        anyhow::bail!("no sizes measured");
    };
    for &(n, ours_p50, raw_p50) in &medians[1..] {
        let log_ratio = (n as f64).ln() / (small as f64).ln();
        let growth = ours_p50 as f64 / ours_small.max(1) as f64;
        section.figures.push((format!("GET p50 at {n} / at {small}"), growth));
        section.figures.push((format!("log({n}) / log({small})"), log_ratio));
        section.figures.push((
            format!("raw point read p50 at {n} / at {small}"),
            raw_p50 as f64 / raw_small.max(1) as f64,
        ));
        if Some(&(n, ours_p50, raw_p50)) == medians.last() {
            section.goals.push(Goal::at_most(
                &format!("GET p50 growth {small} -> {n} records (at most logarithmic)"),
                growth,
                log_ratio,
                "x",
            ));
        }
    }
    Ok(section)
}

fn get(env: &Env, agent: &swarm_acl::Identity, keys: &[RecordKey], rng: &mut Rng) -> Option<u64> {
    let k = &keys[rng.below(keys.len())];
    env.store.get(agent, k).ok().flatten().map(|r| r.meta.version)
}
