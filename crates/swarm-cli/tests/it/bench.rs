//! `bench`: the seed's report as JSON or a table, a report file, refused values, no
//! progress noise off a terminal, and the opened database left alone. Tiny iteration
//! counts and no timed assertions.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::Env;

fn listing(env: &Env) -> BTreeSet<String> {
    std::fs::read_dir(env.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn positive(doc: &Value, path: &str) -> f64 {
    let v = path.split('.').fold(doc, |v, k| &v[k]);
    let n = v.as_f64().unwrap_or_else(|| panic!("{path} is not a number: {v}"));
    assert!(n > 0.0, "{path} = {n}");
    n
}

const SMALL: &[&str] = &["bench", "--iterations", "50", "--concurrency", "2"];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = SMALL.to_vec();
    a.extend_from_slice(extra);
    a
}

#[test]
fn json_has_the_seeds_sections_and_names_and_stderr_stays_quiet() {
    let env = Env::init();
    let verify = env.run(&["audit", "verify", "--json"]).ok().json();
    let files = listing(&env);
    let run = env.run(&args(&["--json"])).ok();
    // Off a terminal, no progress bar: nothing at all on stderr.
    assert_eq!(run.stderr, "", "stderr: {:?}", run.stderr);
    let doc = run.json();
    for path in [
        "results.basic_operations.set.avg_us",
        "results.basic_operations.get.avg_us",
        "results.basic_operations.has.p99_us",
        "results.basic_operations.delete.baseline.avg_us",
        "results.basic_operations.set.ratio",
        "results.concurrent_operations.concurrent_sets.opsPerSecond",
        "results.concurrent_operations.concurrent_gets.opsPerSecond",
        "results.acl_performance.acl_checks.avg_us",
        "results.acl_performance.cache_hit_rate",
        "results.encryption.seal.avg_us",
        "results.compression.compression_ratio",
        "results.large_values.set.avg_us",
        "results.ttl.get_after_expiry.avg_us",
        "results.namespaces.list_one.avg_us",
        "results.backup.time_ms",
    ] {
        positive(&doc, path);
    }
    let set = &doc["results"]["basic_operations"]["set"];
    let ratio = set["ratio"].as_f64().unwrap();
    let expect = set["baseline"]["avg_us"].as_f64().unwrap() / set["avg_us"].as_f64().unwrap();
    assert!((ratio * expect - 1.0).abs() < 1e-6, "ratio {ratio} is not ours / baseline");
    assert_eq!(doc["settings"]["iterations"], 50);
    assert_eq!(doc["settings"]["threads"], 2);
    assert_eq!(doc["settings"]["durability"], "normal");
    assert_eq!(doc["results"]["ttl"]["expired_returned"], 0);
    assert!(doc["units"]["latency"].as_str().unwrap().starts_with("microseconds"));
    assert!(doc["report_path"].is_null(), "no file without --output or BENCHMARK_OUTPUT_DIR");
    // The opened database was not written, and the scratch directory is gone.
    assert_eq!(env.run(&["audit", "verify", "--json"]).ok().json(), verify);
    assert_eq!(listing(&env), files);

    // Without --json: the readable table.
    let run = env.run(SMALL).ok();
    assert_eq!(run.stderr, "");
    assert!(serde_json::from_str::<Value>(&run.stdout).is_err());
    for word in ["basic_operations", "concurrent_sets", "acl_checks", "cache_hit_rate", "ratio"] {
        assert!(run.stdout.contains(word), "{word} missing:\n{}", run.stdout);
    }
}

#[test]
fn output_writes_a_timestamped_report_file() {
    let env = Env::init();
    let run = env.run(&args(&["--output", "reports", "--json"])).ok();
    let doc = run.json();
    let path = doc["report_path"].as_str().unwrap().to_owned();
    assert!(path.contains("reports"), "{path}");
    assert!(run.stderr.contains(&format!("note: report written to {path}")), "{}", run.stderr);
    let files: Vec<_> = std::fs::read_dir(env.path("reports")).unwrap().collect();
    assert_eq!(files.len(), 1);
    let written: Value =
        serde_json::from_slice(&std::fs::read(env.dir().join(&path)).unwrap()).unwrap();
    assert_eq!(written, doc);

    // BENCHMARK_OUTPUT_DIR, the seed's variable, does the same.
    let run = env.run_with(&args(&[]), &[("BENCHMARK_OUTPUT_DIR", "from-env")]).ok();
    assert!(run.stderr.contains("report written to from-env"), "{}", run.stderr);
    assert_eq!(std::fs::read_dir(env.path("from-env")).unwrap().count(), 1);
}

#[test]
fn bad_values_exit_2_with_a_clear_message() {
    let env = Env::init();
    for (extra, needle) in [
        (&["--iterations", "0"][..], "benchmark iterations must be 1 to 1000000, not 0"),
        (&["--iterations", "2000000"][..], "iterations must be 1 to 1000000"),
        (&["--concurrency", "0"][..], "concurrency must be 1 to 256 threads, not 0"),
        (&["--concurrency", "257"][..], "concurrency must be 1 to 256 threads, not 257"),
        (&["--value-bytes", "0"][..], "value size must be 1 to"),
    ] {
        let mut a = vec!["bench"];
        a.extend_from_slice(extra);
        env.run(&a).fails(2, needle);
        a.push("--json");
        let doc = env.run(&a).code(2).json();
        assert_eq!(doc["error"]["code"], 2, "{doc}");
    }
    let run = env.run(&["bench", "--iterations", "many"]).code(2);
    assert!(run.stderr.contains("--iterations"), "{}", run.stderr);
    // No database: nothing to take the settings from (exit 3), and none is created.
    let empty = Env::new();
    empty.run(&["bench", "--iterations", "5"]).fails(3, "swarm-memory init");
    assert!(!empty.db().exists());
}
