//! `doctor` and `audit`: healthy, and what happens when the key or the trail is wrong.

use crate::support::Env;

#[test]
fn doctor_reports_a_healthy_database() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    env.run_as(&ann, &["set", "k", "private value"]).ok();
    let r = env.run(&["doctor"]).ok();
    for needle in [
        "healthy:",
        "yes",
        "journal mode:",
        "wal",
        "synchronous:",
        "busy timeout:",
        "mmap size:",
        "redis:",
        "not configured",
        "audit chain:",
        "memory",
    ] {
        assert!(r.stdout.contains(needle), "{needle} missing:\n{}", r.stdout);
    }
    let doc = env.run(&["doctor", "--json"]).ok().json();
    assert_eq!(doc["healthy"], true);
    assert_eq!(doc["settings"]["journal_mode"], "wal");
    assert!(doc["settings"]["mmap_size_effective"].as_u64().is_some());
    assert!(doc["settings"]["sqlite_version"].as_str().unwrap().starts_with('3'));
    assert_eq!(doc["key"]["ok"], true);
    assert_eq!(doc["key"]["source"], "file");
    assert_eq!(doc["key"]["keys"][0]["records"], 1);
    assert_eq!(doc["key"]["keys"][0]["sample_opens"], true);
    assert_eq!(doc["audit"]["intact"], true);
    assert_eq!(doc["redis"]["status"], "not configured");
    assert_eq!(doc["tables"]["memory"], 1);
    assert_eq!(doc["tables"]["agents"], 1);
    assert_eq!(doc["problems"], serde_json::json!([]));
}

#[test]
fn a_missing_or_wrong_key_is_a_clear_error() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    env.run_as(&ann, &["set", "k", "private value"]).ok();
    let key = env.path("swarm-memory.db.key");
    let saved = std::fs::read_to_string(&key).unwrap();

    std::fs::remove_file(&key).unwrap();
    env.run(&["doctor"]).fails(1, "key file ./swarm-memory.db.key does not");
    env.run(&["init"]).fails(1, "restore the key file");
    let doc = env.run(&["doctor", "--json"]).code(1).json();
    assert_eq!(doc["error"]["kind"], "key");

    // Another valid key: refused, never garbage.
    let other = format!("1 {}\n", "ab".repeat(32));
    write_private(&key, &other);
    env.run(&["doctor"]).fails(1, "does not match the key this database was written with");
    env.run_as(&ann, &["get", "k"]).fails(1, "does not match");

    // A key file that lost the key the records were sealed with: the database opens (the
    // new key becomes active) but doctor finds records no key opens, and reading one is a
    // clear error.
    write_private(&key, &format!("2 {}\n", "cd".repeat(32)));
    let r = env.run(&["doctor"]).fails(1, "unhealthy");
    assert!(r.stdout.contains("which the keyring does not hold"), "{}", r.stdout);
    let doc = env.run(&["doctor", "--json"]).code(1).json();
    assert_eq!(doc["key"]["ok"], false);
    assert_eq!(doc["key"]["keys"][0]["available"], false);
    env.run_as(&ann, &["get", "k"]).fails(1, "cannot read value");

    // A key file others can read is refused too.
    write_private(&key, &saved);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        env.run(&["doctor"]).fails(1, "chmod 600");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    env.run(&["doctor"]).ok();
    assert_eq!(env.run_as(&ann, &["get", "k"]).ok().out(), "private value");
}

fn write_private(path: &std::path::Path, text: &str) {
    let _ = std::fs::remove_file(path);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    std::io::Write::write_all(&mut opts.open(path).unwrap(), text.as_bytes()).unwrap();
}

#[test]
fn audit_verify_and_tail() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let ben = env.register("ben", &[]);
    env.run_as(&ann, &["set", "k", "v"]).ok();
    env.run_as(&ben, &["get", "k"]).code(3); // a denial, audited
    let r = env.run(&["audit", "verify"]).ok();
    assert!(r.stdout.starts_with("audit chain intact:"), "{}", r.stdout);
    assert!(r.stdout.contains("head: seq"), "{}", r.stdout);
    let doc = env.run(&["audit", "verify", "--json"]).ok().json();
    assert_eq!(doc["intact"], true);
    assert!(doc["head"]["hash"].as_str().unwrap().len() == 64);

    let tail = env.run(&["audit", "tail", "--json"]).ok().json();
    let rows = tail["rows"].as_array().unwrap();
    let actions: Vec<&str> = rows.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"agent.register") && actions.contains(&"memory.set"), "{actions:?}");
    assert!(rows.iter().any(|r| r["actor"] == "ben" && r["outcome"] == "denied"), "{rows:?}");
    let last_two = env.run(&["audit", "tail", "-n", "2", "--json"]).ok().json();
    assert_eq!(last_two["rows"].as_array().unwrap().len(), 2);
    assert_eq!(last_two["rows"][1]["seq"], rows.last().unwrap()["seq"]);
    let text = env.run(&["audit", "tail", "-n", "3"]).ok();
    assert!(text.stdout.starts_with("SEQ"), "{}", text.stdout);
    assert_eq!(text.stdout.lines().count(), 4);
}

#[test]
fn a_tampered_audit_trail_is_found() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    env.run_as(&ann, &["set", "k", "v"]).ok();
    let edited = rusqlite::Connection::open(env.db())
        .unwrap()
        .execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2", [])
        .unwrap();
    assert_eq!(edited, 1);
    let r = env.run(&["audit", "verify"]).fails(1, "audit chain is broken: row 2 was edited");
    assert!(r.stdout.contains("BROKEN"), "{}", r.stdout);
    let doc = env.run(&["audit", "verify", "--json"]).code(1).json();
    assert_eq!(doc["intact"], false);
    assert_eq!(doc["problem"]["kind"], "edited");
    assert_eq!(doc["problem"]["seq"], 2);
    env.run(&["doctor"]).fails(1, "unhealthy");
    let doc = env.run(&["doctor", "--json"]).code(1).json();
    assert_eq!(doc["healthy"], false);
    assert!(doc["problems"][0].as_str().unwrap().contains("row 2 was edited"));
}

#[test]
fn doctor_probes_a_configured_redis_and_fails_when_it_is_unreachable() {
    let redis = swarm_testkit::TestRedis::start();
    let scope = redis.scope();
    let env = Env::new();
    env.run(&["init", "--swarm", scope.id()]).ok();
    let url = redis.url();
    let doc = env.run(&["--redis", &url, "--swarm", scope.id(), "doctor", "--json"]).ok().json();
    assert_eq!(doc["redis"]["status"], "connected", "{doc}");
    assert_eq!(doc["healthy"], true);
    let text = env.run_with(&["--swarm", scope.id(), "doctor"], &[("REDIS_URL", &url)]).ok();
    assert!(text.stdout.contains("connected"), "{}", text.stdout);

    // Nothing listens on port 1: unhealthy, with the reason, exit 1.
    let doc = env
        .run(&["--redis", "redis://127.0.0.1:1", "--swarm", scope.id(), "doctor", "--json"])
        .code(1)
        .json();
    assert_eq!(doc["redis"]["status"], "unreachable", "{doc}");
    assert!(doc["problems"][0].as_str().unwrap().contains("redis is configured but unreachable"));
    // A malformed URL is bad usage.
    env.run(&["--redis", "http://nope", "doctor"]).fails(2, "redis");
}

#[test]
fn audit_query_filters_and_pages() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let ben = env.register("ben", &[]);
    for i in 0..5 {
        env.run_as(&ann, &["set", &format!("k{i}"), "v"]).ok();
    }
    env.run_as(&ben, &["get", "k1"]).code(3);
    env.run_as(&ben, &["set", "mine", "v"]).ok();
    let doc = env
        .run(&["audit", "query", "--actor", "ann", "--action", "memory.set", "--json"])
        .ok()
        .json();
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r["actor"] == "ann"));
    assert_eq!(doc["next"], serde_json::Value::Null);
    let denied = env.run(&["audit", "query", "--outcome", "denied", "--json"]).ok().json();
    assert_eq!(denied["rows"][0]["actor"], "ben");
    assert_eq!(denied["rows"][0]["action"], "memory.get");
    // Pages: two rows at a time, resumed with --after.
    let first = env.run(&["audit", "query", "--actor", "ann", "-n", "2", "--json"]).ok().json();
    let next = first["next"].as_u64().unwrap();
    let second = env
        .run(&[
            "audit",
            "query",
            "--actor",
            "ann",
            "-n",
            "2",
            "--after",
            &next.to_string(),
            "--json",
        ])
        .ok()
        .json();
    assert!(second["rows"][0]["seq"].as_u64().unwrap() > next);
    let text = env.run(&["audit", "query", "--actor", "ann", "-n", "2"]).ok();
    assert!(text.stdout.contains("--after"), "{}", text.stdout);
    // Everything happened in the last hour, nothing before it.
    let recent = env.run(&["audit", "query", "--since", "3600", "--json"]).ok().json();
    assert!(recent["rows"].as_array().unwrap().len() >= 7);
    let old = env.run(&["audit", "query", "--until", "3600", "--json"]).ok().json();
    assert_eq!(old["rows"], serde_json::json!([]));
    env.run(&["audit", "query", "-n", "0"]).code(2);
    env.run(&["audit", "query", "--outcome", "maybe"]).code(2);
    env.run(&["audit", "query", "--since", "18446744073709551615"]).fails(2, "too far back");
}
