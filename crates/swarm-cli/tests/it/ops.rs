//! `backup`, `restore`, `optimize`, `rotate-key`, `metrics`.

use std::sync::atomic::{AtomicBool, Ordering};

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
    let (backup, writes) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) && n < 200 {
                env.run_as(&ann, &["set", &format!("live:{n}"), "during the backup"]).ok();
                n += 1;
            }
            n
        });
        // Let the writer get going, then back up twice while it writes.
        std::thread::sleep(std::time::Duration::from_millis(150));
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

    // Restore: the key file is copied beside the restored database, mode 0600.
    let r = env.run(&["restore", "b1.db", "restored.db", "--json"]).ok();
    let doc = r.json();
    assert_eq!(doc["key"]["action"], "copied");
    assert_eq!(doc["key"]["path"], "restored.db.key");
    assert_eq!(doc["verified"], true);
    assert_eq!(doc["restore"]["integrity"], "ok");
    assert!(r.stderr.contains("copied the key file"), "{}", r.stderr);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.path("restored.db.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
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
    assert_eq!(doc["verified"], false);
    assert!(r.stderr.contains("no key file found to copy"), "{}", r.stderr);
    env.run(&["doctor", "--db", "r.db"]).fails(1, "key file");
    // The key file of another database does not open it: refused, and not left behind.
    env.run(&["init", "--db", "other.db"]).ok();
    env.run(&["restore", "b.db", "r2.db", "--db", "other.db"]).fails(1, "does not open it");
    assert!(!env.path("r2.db.key").exists());
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
    assert_eq!(doc["rotation"]["reencrypted"], 8, "7 private and 1 team record");
    assert_eq!(doc["rotation"]["remaining"], 0);
    assert_eq!(
        doc["keys"]["keys"],
        serde_json::json!([{ "key_id": 2, "records": 8, "available": true, "sample_opens": true }])
    );
    assert!(r.stderr.contains("older keys stay"), "{}", r.stderr);
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
    assert_eq!(doctor["key"]["keys"][0]["records"], 8);
    // New writes use key 2; --resume adds no key and finds nothing left.
    env.run_as(&ann, &["set", "p9", "after"]).ok();
    let doc = env.run(&["rotate-key", "--resume", "--json"]).ok().json();
    assert_eq!(doc["added_key_id"], serde_json::Value::Null);
    assert_eq!(doc["rotation"]["reencrypted"], 0);
    assert_eq!(doc["keys"]["keys"][0]["records"], 9);
    let text = env.run(&["rotate-key"]).ok();
    assert!(text.stdout.starts_with("added key 3 to ./swarm-memory.db.key"), "{}", text.stdout);
    assert!(text.stdout.contains("key 3: 9 records"), "{}", text.stdout);
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
