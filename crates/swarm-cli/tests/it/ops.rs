//! `backup`, `restore`, `optimize`, `rotate-key`, `metrics`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::support::Env;

#[test]
fn backup_while_another_process_writes_then_restore_and_read_back() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    for i in 0..5 {
        env.run_as(&ann, &["set", &format!("secret:{i}"), &format!("private value {i}")]).ok();
    }
    env.run_as(&ann, &["set", "plan", "shared", "--level", "swarm"]).ok();
    let stop = AtomicBool::new(false);
    let written = AtomicUsize::new(0);
    let (backup, writes) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) && n < 200 {
                env.run_as(&ann, &["set", &format!("live:{n}"), "during the backup"]).ok();
                n += 1;
                written.store(n, Ordering::SeqCst);
            }
            n
        });
        // Let the writer get going (however late it is scheduled), then back up twice
        // while it writes.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while written.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let online = env.run(&["backup", "b1.db", "--json"]).ok();
        let vacuum = env.run(&["backup", "b2.db", "--vacuum", "--json"]).ok();
        stop.store(true, Ordering::SeqCst);
        let n = writer.join().unwrap();
        (vec![online, vacuum], n)
    });
    assert!(writes > 0);
    let doc = backup[0].json();
    assert_eq!(doc["backup"]["integrity"], "ok");
    assert_eq!(doc["method"], "online");
    assert_eq!(doc["key_source"], "file");
    assert!(doc["backup"]["pages"].as_u64().unwrap() > 0);
    assert!(backup[0].stderr.contains("keep a copy of the key file"), "{}", backup[0].stderr);
    assert_eq!(backup[1].json()["method"], "vacuum_into");
    env.run(&["backup", "b1.db"]).fails(2, "exists");

    // Restore: the key file and the swarm secret are copied beside the restored database,
    // mode 0600, so it opens and signs coordination messages as the swarm's other hosts
    // expect.
    let r = env.run(&["restore", "b1.db", "restored.db", "--json"]).ok();
    let doc = r.json();
    assert_eq!(doc["key"]["action"], "copied");
    assert_eq!(doc["key"]["path"], "restored.db.key");
    assert_eq!(doc["secret"]["action"], "copied");
    assert_eq!(doc["secret"]["path"], "restored.db.swarm-secret");
    assert_eq!(doc["secret"]["from"], "./swarm-memory.db.swarm-secret");
    assert_eq!(doc["verified"], true);
    assert_eq!(doc["restore"]["integrity"], "ok");
    assert!(r.stderr.contains("copied the key file"), "{}", r.stderr);
    assert!(r.stderr.contains("copied the swarm secret file"), "{}", r.stderr);
    for (original, copy) in [
        ("swarm-memory.db.key", "restored.db.key"),
        ("swarm-memory.db.swarm-secret", "restored.db.swarm-secret"),
    ] {
        assert_eq!(
            std::fs::read(env.path(original)).unwrap(),
            std::fs::read(env.path(copy)).unwrap()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(env.path(copy)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{copy}");
        }
    }
    for i in 0..5 {
        let got = env.run_as(&ann, &["get", &format!("secret:{i}"), "--db", "restored.db"]).ok();
        assert_eq!(got.out(), format!("private value {i}"));
    }
    let doc = env.run(&["doctor", "--db", "restored.db", "--json"]).ok().json();
    assert_eq!(doc["healthy"], true);
    assert_eq!(doc["audit"]["intact"], true);
    let restored = doc["tables"]["memory"].as_u64().unwrap();
    assert!((6..=6 + u64::try_from(writes).unwrap()).contains(&restored), "{restored}");
    // The vacuumed copy restores too.
    let doc = env.run(&["restore", "b2.db", "r2.db", "--json"]).ok().json();
    assert_eq!(doc["verified"], true);
    assert_eq!(env.run_as(&ann, &["get", "plan", "--db", "r2.db"]).ok().out(), "shared");

    env.run(&["restore", "b1.db", "restored.db"]).fails(2, "restored.db exists");
    env.run(&["restore", "missing.db", "r3.db"]).fails(3, "backup missing.db not found");
    let text = env.run(&["restore", "b1.db", "r3.db"]).ok();
    assert!(text.stdout.starts_with("restored b1.db into r3.db"), "{}", text.stdout);
}

#[test]
fn restore_says_when_it_has_no_fitting_key() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    env.run_as(&ann, &["set", "k", "v"]).ok();
    env.run(&["backup", "b.db"]).ok();
    // No key file beside the backup nor at --db: the restore is done, the key is missing.
    let r = env.run(&["restore", "b.db", "r.db", "--db", "elsewhere.db", "--json"]).ok();
    let doc = r.json();
    assert_eq!(doc["key"]["action"], "missing");
    assert_eq!(doc["secret"]["action"], "missing");
    assert_eq!(doc["verified"], false);
    assert!(r.stderr.contains("no key file found to copy"), "{}", r.stderr);
    assert!(r.stderr.contains("no swarm secret file found to copy"), "{}", r.stderr);
    assert!(r.stderr.contains("other hosts of the swarm reject"), "{}", r.stderr);
    env.run(&["doctor", "--db", "r.db"]).fails(1, "key file");
    // The key file of another database does not open it: refused, and not left behind.
    env.run(&["init", "--db", "other.db"]).ok();
    env.run(&["restore", "b.db", "r2.db", "--db", "other.db"])
        .fails(1, "does not open the restored database");
    // Nothing of that restore is left behind.
    for f in ["r2.db", "r2.db.key", "r2.db.swarm-secret", "r2.db-wal"] {
        assert!(!env.path(f).exists(), "{f} left behind");
    }
    // A secret (or key) file others may read is refused before anything is written.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let secret = env.path("swarm-memory.db.swarm-secret");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        env.run(&["restore", "b.db", "r3.db"]).fails(1, "chmod 600");
        assert!(!env.path("r3.db").exists() && !env.path("r3.db.key").exists());
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // With the key in the environment, nothing is copied.
    let key = "22".repeat(32);
    let envkey = [("SQLITE_ENCRYPTION_KEY", key.as_str())];
    env.run_with(&["init", "--db", "e.db"], &envkey).ok();
    env.run_with(&["backup", "eb.db", "--db", "e.db", "--json"], &envkey).ok();
    let doc = env.run_with(&["restore", "eb.db", "er.db", "--json"], &envkey).ok().json();
    assert_eq!(doc["key"]["source"], "environment");
    assert_eq!(doc["verified"], true);
    assert!(!env.path("er.db.key").exists());
}

#[test]
fn rotate_key_reencrypts_everything_under_a_new_key() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    env.run(&["team", "create", "--name", "Core", "--id", "core"]).ok();
    env.run(&["team", "add", "core", "ann"]).ok();
    for i in 0..7 {
        env.run_as(&ann, &["set", &format!("p{i}"), &format!("private {i}")]).ok();
    }
    env.run_as(&ann, &["set", "t", "team value", "--level", "team"]).ok();
    env.run_as(&ann, &["set", "s", "swarm value", "--level", "swarm"]).ok();
    std::fs::write(env.path("a.txt"), "artifact body").unwrap();
    env.run_as(&ann, &["artifact", "put", "a", "a.txt"]).ok();
    let ev =
        env.run_as(&ann, &["event", "publish", "e", r#"{"x": 1}"#, "--level", "private", "--json"]);
    let ev = ev.ok().json()["event"]["seq"].as_u64().unwrap().to_string();

    let r = env.run(&["rotate-key", "--batch", "3", "--json"]).ok();
    let doc = r.json();
    assert_eq!(doc["added_key_id"], 2);
    assert_eq!(doc["active_key_id"], 2);
    // 7 private and 1 team record, the private artifact and the private event's payload.
    assert_eq!(doc["rotation"]["reencrypted"], 10);
    assert_eq!(doc["rotation"]["memory"]["reencrypted"], 8);
    assert_eq!(doc["rotation"]["artifacts"]["reencrypted"], 1);
    assert_eq!(doc["rotation"]["events"]["reencrypted"], 1);
    assert_eq!(doc["rotation"]["remaining"], 0);
    assert_eq!(
        doc["keys"]["keys"],
        serde_json::json!([{
            "key_id": 2,
            "records": 10,
            "sealed": { "memory": 8, "artifacts": 1, "events": 1 },
            "available": true,
            "sample_opens": true,
            "unopened": [],
        }])
    );
    // Key 1 seals nothing any more, and the operator is told so.
    assert_eq!(doc["unused_key_ids"], serde_json::json!([1]));
    // The operator learns what running processes do: those with the key file go on with
    // the new key, others must be restarted.
    let others = doc["other_processes"]["message"].as_str().unwrap();
    assert!(others.contains("read it again") && others.contains("key 2"), "{others}");
    assert!(others.contains("restart any that were given the key another way"), "{others}");
    assert!(doc["other_processes"]["restart_required"].as_str().unwrap().contains("as text"));
    assert!(r.stderr.contains("no record is sealed with key 1 any more"), "{}", r.stderr);
    let key_lines = std::fs::read_to_string(env.path("swarm-memory.db.key")).unwrap();
    let ids: Vec<&str> = key_lines
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(ids, ["1", "2"]);

    // Every record still reads, and doctor is healthy with the records under key 2.
    for i in 0..7 {
        assert_eq!(env.run_as(&ann, &["get", &format!("p{i}")]).ok().out(), format!("private {i}"));
    }
    assert_eq!(env.run_as(&ann, &["get", "t"]).ok().out(), "team value");
    assert_eq!(env.run_as(&ann, &["get", "s"]).ok().out(), "swarm value");
    assert_eq!(env.run_as(&ann, &["artifact", "get", "a"]).ok().stdout, "artifact body");
    let e = env.run_as(&ann, &["event", "show", &ev, "--json"]).ok().json();
    assert_eq!(e["event"]["payload"]["x"], 1);
    let doctor = env.run(&["doctor", "--json"]).ok().json();
    assert_eq!(doctor["healthy"], true);
    assert_eq!(doctor["key"]["active"], 2);
    assert_eq!(doctor["key"]["keys"][0]["key_id"], 2);
    assert_eq!(doctor["key"]["keys"][0]["records"], 10);
    assert_eq!(doctor["key"]["keys"][0]["sealed"]["artifacts"], 1);
    assert_eq!(doctor["key"]["unused_key_ids"], serde_json::json!([1]));
    let text = env.run(&["doctor"]).ok().stdout;
    assert!(text.contains("unused keys 1"), "{text}");
    assert!(text.contains("KEY  MEMORY  ARTIFACTS  EVENTS  STATE"), "{text}");
    // New writes use key 2; --resume adds no key and finds nothing left.
    env.run_as(&ann, &["set", "p9", "after"]).ok();
    let doc = env.run(&["rotate-key", "--resume", "--json"]).ok().json();
    assert_eq!(doc["added_key_id"], serde_json::Value::Null);
    assert_eq!(doc["rotation"]["reencrypted"], 0);
    assert_eq!(doc["keys"]["keys"][0]["records"], 11);
    let text = env.run(&["rotate-key"]).ok();
    assert!(text.stdout.starts_with("added key 3 to ./swarm-memory.db.key"), "{}", text.stdout);
    assert!(
        text.stdout.contains("key 3: 11 records (memory 9, artifacts 1, events 1)"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("artifact  1"), "{}", text.stdout);
    assert!(
        text.stdout.contains("(MCP servers, applications embedding swarm-memory) read it again within about a second and go on with key 3"),
        "{}",
        text.stdout
    );
}

#[test]
fn rotate_key_refuses_a_key_from_the_environment() {
    let env = Env::new();
    let key = "33".repeat(32);
    let envkey = [("SQLITE_ENCRYPTION_KEY", key.as_str())];
    env.run_with(&["init"], &envkey).ok();
    let doc = env.run_with(&["rotate-key", "--json"], &envkey).code(2).json();
    assert!(doc["error"]["message"].as_str().unwrap().contains("SQLITE_ENCRYPTION_KEY"));
    env.run_with(&["rotate-key"], &envkey).fails(2, "the key comes from SQLITE_ENCRYPTION_KEY");
    env.run_with(&["doctor"], &envkey).ok();
    Env::new().run(&["rotate-key"]).fails(3, "run `swarm-memory init` first");
}

#[test]
fn optimize_and_metrics() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    env.run_as(&ann, &["set", "k", "v"]).ok();
    env.run_as(&ann, &["set", "gone", "v", "--ttl", "1"]).ok();
    let r = env.run(&["optimize"]).ok();
    assert!(r.stdout.starts_with("optimized\n"), "{}", r.stdout);
    let doc = env.run(&["optimize", "--json"]).ok().json();
    assert_eq!(doc["optimize"]["analyzed"], true);
    assert!(doc["optimize"]["wal_bytes_after"].as_u64().is_some());

    let doc = env.run(&["metrics", "--json"]).ok().json();
    assert_eq!(doc["tables"]["agents"], 1);
    assert!(doc["tables"]["memory"].as_u64().unwrap() >= 1);
    assert!(doc["process"]["ops"].is_array());
    assert!(doc["schema_version"].as_u64().unwrap() >= 1);
    let text = env.run(&["metrics"]).ok();
    assert!(text.stdout.contains("tables:") && text.stdout.contains("agents"), "{}", text.stdout);

    let prom = env.run(&["metrics", "--prometheus"]).ok();
    assert_prometheus(&prom.stdout);
    assert!(prom.stdout.contains("swarm_memory_table_rows{table=\"agents\"} 1"), "{}", prom.stdout);
    assert!(prom.stdout.contains("swarm_memory_operations_total{op=\"get\"}"), "{}", prom.stdout);
    assert_eq!(prom.stderr, "", "nothing but the exposition");
    env.run(&["metrics", "--prometheus", "--json"]).fails(2, "exclude each other");
}

#[test]
fn metrics_history_prints_what_earlier_processes_persisted() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    // Each process writes a snapshot of its counters when it closes the database.
    env.run_as(&ann, &["set", "k", "v"]).ok();
    env.run_as(&ann, &["get", "k"]).ok();
    let doc = env.run(&["metrics", "--history", "--name", "operations", "--json"]).ok().json();
    let hist = doc["history"].as_array().unwrap();
    assert!(hist.iter().all(|m| m["name"] == "operations" && m["kind"] == "counter"), "{doc}");
    for op in ["set", "get"] {
        assert!(
            hist.iter().any(|m| m["labels"]["op"] == op && m["value"] == 1.0),
            "no snapshot of the {op} process: {doc}"
        );
    }
    assert!(hist.windows(2).all(|w| w[0]["at"].as_i64() <= w[1]["at"].as_i64()), "oldest first");
    assert_eq!(doc["filter"]["name"], "operations");
    let latency =
        env.run(&["metrics", "--history", "--name", "operation_latency_ns", "--json"]).ok().json();
    let get = latency["history"].as_array().unwrap().iter().find(|m| m["labels"]["op"] == "get");
    let get = get.unwrap();
    assert_eq!((get["kind"].as_str(), get["count"].as_u64()), (Some("histogram"), Some(1)));
    assert!(get["p99"].as_f64().unwrap() >= get["p50"].as_f64().unwrap());

    // --since the last hour has them all; --limit keeps the newest.
    let all = env.run(&["metrics", "--history", "--json"]).ok().json()["history"].clone();
    let recent = env.run(&["metrics", "--history", "--since", "3600", "--json"]).ok().json();
    assert!(recent["filter"]["since"].as_i64().unwrap() > 0);
    assert!(recent["history"].as_array().unwrap().len() >= hist.len());
    let two = env.run(&["metrics", "--history", "--limit", "2", "--json"]).ok();
    let two_doc = two.json();
    let two_rows = two_doc["history"].as_array().unwrap();
    // (Every invocation, `metrics` included, persists its own snapshot when it exits, so
    // the newest two are at least as new as anything the previous listing showed.)
    let newest_before = all.as_array().unwrap().last().unwrap()["at"].as_i64().unwrap();
    assert_eq!(two_rows.len(), 2);
    assert!(two_rows.iter().all(|m| m["at"].as_i64().unwrap() >= newest_before), "{two_doc}");
    assert!(two.stderr.contains("showing the newest 2 samples"), "{}", two.stderr);

    let text = env.run(&["metrics", "--history", "--name", "operations"]).ok().stdout;
    assert!(text.starts_with("AT "), "{text}");
    assert!(text.contains("operations") && text.contains("op=set"), "{text}");
    let none = env.run(&["metrics", "--history", "--name", "no_such_figure"]).ok();
    assert_eq!(none.out(), "no persisted metrics match");

    // The filters need --history, and the figures' sources exclude each other.
    env.run(&["metrics", "--since", "10"]).code(2);
    env.run(&["metrics", "--name", "operations"]).code(2);
    env.run(&["metrics", "--history", "--prometheus"]).code(2);
    env.run(&["metrics", "--history", "--limit", "0"]).code(2);
    env.run(&["metrics", "--history", "--name", ""]).fails(2, "metric name");
}

#[test]
fn doctor_names_the_kind_of_record_that_does_not_open() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    env.run_as(&ann, &["set", "k", "private"]).ok();
    std::fs::write(env.path("a.txt"), "artifact body").unwrap();
    env.run_as(&ann, &["artifact", "put", "a", "a.txt"]).ok();
    let doc = env.run(&["doctor", "--json"]).ok().json();
    assert_eq!(
        doc["key"]["keys"][0]["sealed"],
        serde_json::json!({ "memory": 1, "artifacts": 1, "events": 0 })
    );
    // Flip a bit of the artifact's authentication tag, as someone with file access could.
    let conn = rusqlite::Connection::open(env.db()).unwrap();
    let mut blob: Vec<u8> =
        conn.query_row("SELECT content FROM artifacts", [], |r| r.get(0)).unwrap();
    let last = blob.len() - 1;
    blob[last] ^= 1;
    conn.execute("UPDATE artifacts SET content = ?1", [blob]).unwrap();
    drop(conn);
    let r = env.run(&["doctor"]).fails(1, "an artifact sealed with key 1 does not open");
    assert!(r.stdout.contains("DOES NOT OPEN"), "{}", r.stdout);
    let doc = env.run(&["doctor", "--json"]).code(1).json();
    assert_eq!(doc["key"]["keys"][0]["unopened"], serde_json::json!(["artifact"]));
}

/// Asserts the Prometheus text format: `# HELP` and `# TYPE` before each family's samples,
/// every sample `name{labels} value` with a known family and a number.
fn assert_prometheus(text: &str) {
    assert!(text.ends_with('\n'));
    let mut typed = std::collections::HashMap::new();
    let mut helped = std::collections::HashSet::new();
    let mut samples = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split_whitespace().next().unwrap();
            assert!(helped.insert(name.to_owned()), "HELP twice for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(typed.insert(name.to_owned(), kind.to_owned()).is_none(), "TYPE twice: {line}");
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap();
            value.parse::<f64>().unwrap_or_else(|_| panic!("not a number: {line}"));
            let name = series.split('{').next().unwrap();
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "{line}"
            );
            assert!(typed.contains_key(name), "sample before its TYPE: {line}");
            if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split(',') {
                    let (k, v) = pair.split_once('=').unwrap();
                    assert!(!k.is_empty() && v.starts_with('"') && v.ends_with('"'), "{line}");
                }
            }
            samples += 1;
        }
    }
    assert!(samples > 10, "{text}");
}
