//! `init`, the missing-database rule, `grant` and `revoke`.

use crate::support::Env;

#[test]
fn init_creates_the_database_and_key_file_and_is_idempotent() {
    let env = Env::new();
    let first = env.run(&["init"]).ok();
    assert!(first.stdout.contains("created database ./swarm-memory.db"), "{}", first.stdout);
    assert!(first.stdout.contains("swarm-memory.db.key (created"), "{}", first.stdout);
    assert!(first.stdout.contains("default (created)"), "{}", first.stdout);
    assert!(env.db().exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.path("swarm-memory.db.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let second = env.run(&["init"]).ok();
    assert!(second.stdout.contains("already exists"), "{}", second.stdout);
    assert!(second.stdout.contains("default (already exists)"), "{}", second.stdout);

    // A new swarm in the same database, reported as created once.
    let doc = env.run(&["init", "--swarm", "phase-1", "--json"]).ok().json();
    assert_eq!(doc["created"], false);
    assert_eq!(doc["swarm"], "phase-1");
    assert_eq!(doc["swarm_created"], true);
    assert_eq!(doc["key_source"], "file");
    assert!(doc["schema_version"].as_u64().unwrap() >= 1);
    // SWARM_ID works like --swarm.
    let doc = env.run_with(&["init", "--json"], &[("SWARM_ID", "phase-1")]).ok().json();
    assert_eq!(doc["swarm"], "phase-1");
    assert_eq!(doc["swarm_created"], false);
}

#[test]
fn init_with_a_key_in_the_environment_writes_no_key_file() {
    let env = Env::new();
    let key = "11".repeat(32);
    let doc = env.run_with(&["init", "--json"], &[("SQLITE_ENCRYPTION_KEY", &key)]).ok().json();
    assert_eq!(doc["key_source"], "environment");
    assert_eq!(doc["key_file"], serde_json::Value::Null);
    assert!(!env.path("swarm-memory.db.key").exists());
    env.run_with(&["doctor"], &[("SQLITE_ENCRYPTION_KEY", &key)]).ok();
    // Without the key, the database is refused rather than opened with a new one.
    env.run(&["doctor"]).fails(1, "key file");
}

#[test]
fn commands_other_than_init_never_create_a_database() {
    let env = Env::new();
    for args in [&["doctor"][..], &["agent", "list"], &["audit", "verify"], &["team", "list"]] {
        env.run(args).fails(3, "no database at ./swarm-memory.db: run `swarm-memory init` first");
    }
    let agent = crate::support::Agent { id: "ann".into(), token: "smt_x".into() };
    env.run_as(&agent, &["get", "k"]).fails(3, "run `swarm-memory init` first");
    assert!(!env.db().exists());
    assert!(!env.path("swarm-memory.db.key").exists());
    // --db and SQLITE_DB_PATH name the file.
    env.run(&["init", "--db", "data/s.db"]).ok();
    env.run(&["agent", "list", "--db", "data/s.db"]).ok();
    env.run_with(&["agent", "list"], &[("SQLITE_DB_PATH", "data/s.db")]).ok();
}

#[test]
fn memory_databases_are_refused_where_they_keep_nothing() {
    let env = Env::new();
    env.run(&["init", "--db", ":memory:"]).fails(2, ":memory:");
    env.run(&["agent", "list", "--db", ":memory:"]).fails(2, ":memory:");
    // doctor does everything in one process: it checks this build's settings.
    let doc = env.run(&["doctor", "--db", ":memory:", "--json"]).ok().json();
    assert_eq!(doc["database"], ":memory:");
    assert_eq!(doc["healthy"], true);
}

#[test]
fn grant_and_revoke_change_what_memory_commands_may_do() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    env.run_as(&ann, &["set", "plan", "v1"]).ok();
    env.run_as(&ann, &["get", "plan"]).ok();

    // The default memory grants are at level 4 (public); revoking read hides every record.
    let r = env.run(&["revoke", "ann", "memory", "public", "--action", "read"]).ok();
    assert!(r.stdout.contains("revoked 1 grant"), "{}", r.stdout);
    env.run_as(&ann, &["get", "plan"]).fails(3, "not found");
    assert_eq!(env.run_as(&ann, &["has", "plan"]).ok().out(), "false");
    // Nothing left to revoke: exit 3.
    env.run(&["revoke", "ann", "memory", "4", "--action", "read"]).fails(3, "no such grant");

    let doc = env.run(&["grant", "ann", "memory", "4", "read", "--json"]).ok().json();
    assert_eq!(doc["actions"], serde_json::json!(["read"]));
    assert_eq!(doc["level"], 4);
    assert_eq!(env.run_as(&ann, &["get", "plan"]).ok().out(), "v1");

    // Writing needs write: revoke all actions at level 4.
    env.run(&["revoke", "ann", "memory", "4"]).ok();
    env.run_as(&ann, &["set", "plan", "v2"]).fails(4, "permission denied");
    env.run(&["grant", "ann", "memory", "public", "read,write,delete", "--expires", "3600"]).ok();
    env.run_as(&ann, &["set", "plan", "v2"]).ok();
    let show = env.run(&["agent", "show", "ann", "--json"]).ok().json();
    let expiring = show["grants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["grant"]["resource"] == "memory" && !g["grant"]["expires_at"].is_null())
        .count();
    assert_eq!(expiring, 3);
}

#[test]
fn bad_grant_arguments_exit_2_naming_the_accepted_values() {
    let env = Env::init();
    env.register("ann", &[]);
    let r = env.run(&["grant", "ann", "memroy", "3", "read"]).code(2);
    assert!(r.stderr.contains("expected memory, task, event"), "{}", r.stderr);
    let r = env.run(&["grant", "ann", "memory", "6", "read"]).code(2);
    assert!(
        r.stderr.contains("expected 1-5 or private, team, swarm, public, system"),
        "{}",
        r.stderr
    );
    let r = env.run(&["grant", "ann", "memory", "3", "read,fly"]).code(2);
    assert!(r.stderr.contains("expected read, write, delete, vote or admin"), "{}", r.stderr);
    let r = env.run(&["revoke", "ann", "memory", "3", "--action", "fly"]).code(2);
    assert!(r.stderr.contains("expected read, write"), "{}", r.stderr);
    // An unknown agent is not found.
    env.run(&["grant", "nobody", "memory", "3", "read"]).fails(3, "agent nobody");
}
