//! `run_benchmarks`: the seed's report, on a scratch system, never on the user's database.
//! Tiny iteration counts and no assertion on how fast anything is (shared, noisy machines):
//! the tests check that every figure exists, is measured and is consistent.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value as Json;
use swarm_memory::*;

/// The seed's names (Performance Testing example) and ours, as JSON paths.
const SEED_PATHS: &[&str] = &[
    "results.basic_operations.set.avg_us",
    "results.basic_operations.get.avg_us",
    "results.concurrent_operations.concurrent_sets.opsPerSecond",
    "results.concurrent_operations.concurrent_gets.opsPerSecond",
    "results.acl_performance.acl_checks.avg_us",
    "results.acl_performance.cache_hit_rate",
];

const SECTIONS: &[&str] = &[
    "basic_operations",
    "concurrent_operations",
    "acl_performance",
    "encryption",
    "compression",
    "large_values",
    "ttl",
    "namespaces",
    "backup",
];

fn at<'a>(doc: &'a Json, path: &str) -> &'a Json {
    path.split('.').fold(doc, |v, k| &v[k])
}

fn num(doc: &Json, path: &str) -> f64 {
    at(doc, path).as_f64().unwrap_or_else(|| panic!("{path} is not a number: {}", at(doc, path)))
}

/// Checks one timing object (ours or a baseline).
fn check_timing(t: &Json, what: &str) {
    let f = |k: &str| t[k].as_f64().unwrap_or_else(|| panic!("{what}.{k} missing: {t}"));
    assert!(f("operations") >= 1.0, "{what}: {t}");
    assert!(f("threads") >= 1.0, "{what}: {t}");
    for k in ["avg_us", "p50_us", "p95_us", "p99_us", "max_us", "wall_ms", "opsPerSecond"] {
        assert!(f(k) > 0.0, "{what}.{k} is not positive: {t}");
    }
    assert!(f("p50_us") <= f("p95_us"), "{what}: {t}");
    assert!(f("p95_us") <= f("p99_us"), "{what}: {t}");
    assert!(f("p99_us") <= f("max_us"), "{what}: {t}");
    if f("threads") == 1.0 {
        // One thread: the wall time is the sum of the calls.
        let per_op = f("wall_ms") * 1e3 / f("operations");
        assert!((per_op - f("avg_us")).abs() <= 1e-6 * per_op.max(1.0), "{what}: {t}");
    }
}

/// Every object with our figures flattened in, found anywhere under `results`.
fn comparisons<'a>(v: &'a Json, path: String, out: &mut Vec<(String, &'a Json)>) {
    if let Json::Object(m) = v {
        if m.contains_key("avg_us") && m.contains_key("baseline") {
            out.push((path.clone(), v));
        }
        for (k, child) in m {
            if k != "baseline" {
                comparisons(child, format!("{path}.{k}"), out);
            }
        }
    }
}

fn check_comparisons(doc: &Json) -> usize {
    let mut found = Vec::new();
    comparisons(&doc["results"], "results".into(), &mut found);
    for (path, c) in &found {
        check_timing(c, path);
        let base = &c["baseline"];
        if base.is_null() {
            assert!(c["ratio"].is_null(), "{path}: a ratio without a baseline");
            continue;
        }
        check_timing(base, &format!("{path}.baseline"));
        assert!(c["baseline_op"].as_str().is_some_and(|s| !s.is_empty()), "{path}");
        let ratio = c["ratio"].as_f64().unwrap();
        let expect = base["opsPerSecond"].as_f64().unwrap() / c["opsPerSecond"].as_f64().unwrap();
        assert!((ratio - expect).abs() <= 1e-9 * expect, "{path}: ratio {ratio} vs {expect}");
        if c["threads"] == 1 {
            let by_avg = c["avg_us"].as_f64().unwrap() / base["avg_us"].as_f64().unwrap();
            assert!((ratio - by_avg).abs() <= 1e-6 * by_avg, "{path}: {ratio} vs {by_avg}");
        }
    }
    found.len()
}

fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn small() -> BenchOptions {
    BenchOptions::new()
        .iterations(40)
        .concurrency(3)
        .large_value_bytes(64 * 1024)
        .namespaces(4)
        .ttl(Duration::from_millis(20))
}

#[test]
fn a_run_reports_every_seed_figure_and_leaves_the_database_alone() {
    let dir = tempfile::tempdir().unwrap();
    let reports = tempfile::tempdir().unwrap();
    let system =
        SwarmMemory::builder().path(dir.path().join("s.db")).sweep_interval(None).open().unwrap();
    let reg = system.register_agent(AgentSpec::new("ann", "worker").unwrap()).unwrap();
    let session = system.act_as(&reg.agent.id).unwrap();
    let mem = system.create_memory_adapter(&session, "notes").unwrap();
    for i in 0..5 {
        mem.set(&format!("k{i}"), "kept", &SetOptions::new()).unwrap();
    }
    // `meta` is left out: the relay thread records its cursor there whenever it first
    // runs, bench or no bench.
    let user_tables = |s: &SwarmMemory| -> Vec<(String, u64)> {
        let mut c: Vec<(String, u64)> = s
            .store()
            .table_counts(&Identity::System)
            .unwrap()
            .into_iter()
            .filter(|(t, _)| t != "meta")
            .collect();
        c.sort();
        c
    };
    let counts = user_tables(&system);
    let head = system.store().verify_audit().unwrap().head;
    let files = listing(dir.path());
    let events = system.subscribe();

    let seen = Arc::new(Mutex::new(Vec::<BenchProgress>::new()));
    let log = Arc::clone(&seen);
    let options =
        small().output_dir(reports.path()).on_progress(move |p| log.lock().unwrap().push(p));
    let report = system.run_benchmarks(&options).unwrap();
    let doc = serde_json::to_value(&report).unwrap();

    // The seed's names, every section, the units.
    for path in SEED_PATHS {
        assert!(num(&doc, path) > 0.0, "{path}");
    }
    for s in SECTIONS {
        assert!(doc["results"][s].is_object(), "section {s} missing");
    }
    assert_eq!(doc["format"], REPORT_FORMAT);
    assert!(doc["units"]["latency"].as_str().unwrap().starts_with("microseconds"));
    let compared = check_comparisons(&doc);
    assert_eq!(compared, 16, "comparisons found");
    for op in ["set", "get", "has", "delete"] {
        assert_eq!(num(&doc, &format!("results.basic_operations.{op}.operations")), 40.0);
        assert!(!doc["results"]["basic_operations"][op]["baseline"].is_null(), "{op}");
    }
    let c = &report.results.concurrent_operations;
    assert_eq!(c.threads, 3);
    assert_eq!(c.concurrent_sets.ours.operations, 40);
    assert_eq!(c.concurrent_gets.baseline.as_ref().unwrap().threads, 3);
    let a = &report.results.acl_performance;
    assert!(a.cache_hit_rate > 0.0 && a.cache_hit_rate <= 1.0, "{}", a.cache_hit_rate);
    assert!(a.cache_hits >= 40, "{a:?}");
    let z = &report.results.compression;
    assert!(z.compression_ratio > 1.0 && z.baseline_compression_ratio > 1.0, "{z:?}");
    assert!(report.results.encryption.envelope_bytes > 1024);
    assert!(report.results.large_values.encrypted);
    let t = &report.results.ttl;
    assert_eq!((t.records, t.expired_returned, t.swept), (40, 0, 40));
    let n = &report.results.namespaces;
    assert_eq!((n.namespaces, n.keys_per_namespace, n.listed), (4, 10, 10));
    let b = &report.results.backup;
    assert_eq!(b.integrity, "ok");
    assert!(b.bytes > 0 && b.baseline_bytes > 0 && b.ratio > 0.0, "{b:?}");

    // The settings are this system's, and say so.
    let s = &report.settings;
    assert!(s.records_encrypted);
    assert_eq!(s.encrypted_levels.as_deref(), Some("team"));
    assert_eq!(s.record_level, "private");
    assert_eq!(s.durability, "normal");
    assert_eq!(s.compression_threshold, Some(1024));
    assert_eq!(s.scratch, "beside the database");
    assert!(s.baseline_pragmas_match);
    assert_eq!(s.pragmas.journal_mode, "wal");

    // The user's database is untouched, and the scratch directory is gone.
    assert_eq!(user_tables(&system), counts);
    assert_eq!(system.store().verify_audit().unwrap().head, head);
    assert_eq!(listing(dir.path()), files);

    // The report file, the event, the progress.
    let path = report.report_path.clone().unwrap();
    assert_eq!(path.parent(), Some(reports.path()));
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("swarm-memory-bench-") && name.ends_with("Z.json"), "{name}");
    let written: Json = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(written, doc);
    let completed: Vec<SystemEvent> = events
        .try_iter()
        .filter(|e| matches!(e, SystemEvent::BenchmarksCompleted { .. }))
        .collect();
    assert_eq!(
        completed,
        vec![SystemEvent::BenchmarksCompleted { report: Some(path.display().to_string()) }]
    );
    let seen = seen.lock().unwrap();
    let last = seen.last().unwrap();
    assert_eq!((last.phase, last.done), ("done", last.total));
    assert!(seen.windows(2).all(|w| w[0].done <= w[1].done && w[0].total == w[1].total));
    let phases: BTreeSet<&str> = seen.iter().map(|p| p.phase).collect();
    for s in SECTIONS {
        assert!(phases.contains(s), "no progress for {s}: {phases:?}");
    }

    // The readable table names every section and operation.
    let table = report.render_table();
    for word in SECTIONS.iter().chain(&["set", "concurrent_gets", "acl_checks", "cache_hit_rate"]) {
        assert!(table.contains(word), "{word} missing from\n{table}");
    }
    assert_eq!(report.to_string(), table);
    system.graceful_shutdown().unwrap();
}

#[test]
fn the_scratch_system_takes_this_systems_settings() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("reports");
    let system = SwarmMemory::builder()
        .path(dir.path().join("s.db"))
        .durability(Durability::Full)
        .compression_threshold(512)
        .encrypt_up_to(Some(AclLevel::Swarm))
        .benchmark_output_dir(&out)
        .sweep_interval(None)
        .open()
        .unwrap();
    let tiny = BenchOptions::new()
        .iterations(4)
        .concurrency(2)
        .large_value_bytes(4096)
        .ttl(Duration::from_millis(5));
    let report = system.run_benchmarks(&tiny).unwrap();
    let s = &report.settings;
    assert_eq!(s.durability, "full");
    assert_eq!(s.pragmas.synchronous, "FULL");
    assert_eq!(s.compression_threshold, Some(512));
    assert_eq!(s.encrypted_levels.as_deref(), Some("swarm"));
    assert!(s.records_encrypted);
    // BENCHMARK_OUTPUT_DIR (here: the builder's setting) receives the report.
    let path = report.report_path.clone().unwrap();
    assert_eq!(path.parent(), Some(out.as_path()));
    assert!(path.exists());

    // Without encryption or compression, the scratch records are plain.
    let plain = system.run_benchmarks(&tiny.clone().encryption(false).compression(false)).unwrap();
    let s = &plain.settings;
    assert!(
        !s.records_encrypted && s.encrypted_levels.is_none() && s.compression_threshold.is_none()
    );
    assert!(!plain.results.large_values.encrypted);
    assert_ne!(plain.report_path, report.report_path, "a second report never replaces the first");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 2);
    system.graceful_shutdown().unwrap();

    // An in-memory system measures in the system temporary directory, and writes no file
    // without an output directory.
    let memory = SwarmMemory::builder().in_memory().open().unwrap();
    let r = memory.run_benchmarks(&tiny).unwrap();
    assert_eq!(r.settings.scratch, "system temporary directory");
    assert_eq!(r.settings.database, ":memory:");
    assert!(r.report_path.is_none());
}

#[test]
fn bad_options_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let system =
        SwarmMemory::builder().path(dir.path().join("s.db")).sweep_interval(None).open().unwrap();
    let files = listing(dir.path());
    let events = system.subscribe();
    for (options, word) in [
        (BenchOptions::new().iterations(0), "iterations must be 1 to"),
        (BenchOptions::new().iterations(MAX_ITERATIONS + 1), "iterations must be 1 to"),
        (BenchOptions::new().concurrency(0), "concurrency must be 1 to 256"),
        (BenchOptions::new().concurrency(257), "concurrency must be 1 to 256"),
        (BenchOptions::new().value_bytes(0), "value size"),
        (BenchOptions::new().value_bytes(5 * 1024 * 1024), "value limit"),
    ] {
        let e = system.run_benchmarks(&options).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e:?}");
        assert!(e.to_string().contains(word), "{e}");
    }
    assert_eq!(events.try_iter().count(), 0, "nothing ran, nothing was announced");
    assert_eq!(listing(dir.path()), files);
    // A scratch directory that cannot be created is a clear error, announced as one.
    let missing = dir.path().join("no").join("such");
    let e = system
        .run_benchmarks(&BenchOptions::new().iterations(2).scratch_dir(&missing))
        .unwrap_err();
    assert!(matches!(e, Error::Bench(_)) && e.to_string().contains("scratch directory"), "{e}");
    assert!(events.try_iter().any(|ev| matches!(ev, SystemEvent::Error { .. })));
    system.graceful_shutdown().unwrap();
    assert!(matches!(system.run_benchmarks(&BenchOptions::new()), Err(Error::Closed)));
}
