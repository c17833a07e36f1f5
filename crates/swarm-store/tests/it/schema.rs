//! The schema and its migrations: applied to a file and to memory, every table and index
//! present, constraints enforced, idempotent, refusing what it does not understand.

use rusqlite::params;
use swarm_acl::Identity;
use swarm_store::{OpenError, Store, StoreConfig};

use crate::fixtures::{Env, raw};

fn open_plain(path: &std::path::Path) -> Result<Store, OpenError> {
    Store::open(StoreConfig::file(path).with_encrypt_up_to(None).with_sweep_interval(None))
}

#[test]
fn applies_to_a_new_file_with_every_table_and_index() {
    let env = Env::new();
    let conn = raw(env.path());
    for t in swarm_schema::TABLES {
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [t],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "table {t} missing");
    }
    for index in [
        "memory_by_expiry",
        "memory_by_owner",
        "agents_by_swarm_status",
        "team_members_by_agent",
        "tasks_by_swarm_status",
        "events_claimable",
        "metrics_by_name_time",
        "consensus_by_swarm_status",
    ] {
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?1",
                [index],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "index {index} missing");
    }
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, swarm_schema::latest_version());
}

#[test]
fn meta_shares_no_column_name_with_memory_but_key_and_value() {
    // The point reads join `meta` to `memory` and name memory's other columns without the
    // table (a shorter statement for rusqlite's cache to hash): a column added to `meta`
    // under one of those names would make every GET fail as ambiguous.
    let env = Env::new();
    let db = raw(env.path());
    let columns = |table: &str| -> Vec<String> {
        let mut stmt =
            db.prepare(&format!("SELECT name FROM pragma_table_info('{table}')")).unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let memory = columns("memory");
    let shared: Vec<String> = columns("meta").into_iter().filter(|c| memory.contains(c)).collect();
    assert_eq!(shared, ["key", "value"]);
}

#[test]
fn applies_to_memory_and_the_pool_shares_it() {
    let store = Store::open(StoreConfig::memory().with_encrypt_up_to(None)).unwrap();
    assert_eq!(store.migration().to, swarm_schema::latest_version());
    assert_eq!(store.pragmas().journal_mode, "memory");
    // A write through the writer is seen by the pooled readers: one database, not one per
    // connection.
    store.ensure_swarm(&Identity::System, &crate::fixtures::swarm("m")).unwrap();
    let swarms = store.list_swarms(&Identity::System).unwrap();
    assert!(swarms.iter().any(|s| s.id.as_str() == "m"));
    // Two in-memory stores are separate.
    let other = Store::open(StoreConfig::memory().with_encrypt_up_to(None)).unwrap();
    assert!(other.list_swarms(&Identity::System).unwrap().is_empty());
}

#[test]
fn pragmas_are_applied_and_read_back() {
    let env = Env::new();
    let p = env.store.pragmas();
    assert_eq!(p.journal_mode, "wal");
    assert_eq!(p.synchronous, "NORMAL");
    assert!(p.foreign_keys);
    assert_eq!(p.busy_timeout_ms, 5000);
    assert_eq!(p.cache_size, -65536);
    // The default asks for exactly SQLite's maximum, so nothing is clamped.
    assert_eq!(p.mmap_size_requested, swarm_store::DEFAULT_MMAP_SIZE);
    assert_eq!(p.mmap_size_effective, swarm_store::DEFAULT_MMAP_SIZE);
    // The request is honoured only up to SQLite's compile-time maximum; what we report
    // is what SQLite says, not what we asked.
    let dir = tempfile::tempdir().unwrap();
    let huge = Store::open(
        StoreConfig::file(dir.path().join("m.db"))
            .with_encrypt_up_to(None)
            .with_mmap_size(256 * 1024 * 1024 * 1024)
            .with_sweep_interval(None),
    )
    .unwrap();
    let r = huge.pragmas();
    assert_eq!(r.mmap_size_requested, 256 * 1024 * 1024 * 1024);
    assert!(r.mmap_size_effective < r.mmap_size_requested, "{r:?}");
}

#[test]
fn full_durability_is_selectable() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(
        StoreConfig::file(dir.path().join("f.db"))
            .with_encrypt_up_to(None)
            .with_durability(swarm_store::Durability::Full)
            .with_sweep_interval(None),
    )
    .unwrap();
    assert_eq!(s.pragmas().synchronous, "FULL");
}

#[test]
fn migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i.db");
    let first = open_plain(&path).unwrap();
    assert_eq!(first.migration().from, 0);
    first.shutdown().unwrap();
    let second = open_plain(&path).unwrap();
    assert_eq!(second.migration().from, swarm_schema::latest_version());
    assert_eq!(second.migration().to, swarm_schema::latest_version());
    let n: i64 =
        raw(&path).query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0)).unwrap();
    assert_eq!(n as usize, swarm_schema::MIGRATIONS.len());
}

#[test]
fn refuses_a_database_newer_than_the_code() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.db");
    open_plain(&path).unwrap().shutdown().unwrap();
    raw(&path).pragma_update(None, "user_version", 999).unwrap();
    match open_plain(&path) {
        Err(OpenError::SchemaTooNew { found: 999, supported }) => {
            assert_eq!(supported, swarm_schema::latest_version())
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[test]
fn refuses_an_edited_migration_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.db");
    open_plain(&path).unwrap().shutdown().unwrap();
    raw(&path)
        .execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1", [])
        .unwrap();
    assert!(matches!(open_plain(&path), Err(OpenError::MigrationMismatch { version: 1, .. })));
}

#[test]
fn refuses_a_file_that_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.db");
    std::fs::write(&path, vec![0x42; 8192]).unwrap();
    let err = open_plain(&path).unwrap_err();
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err:?}");
    // And nothing was written into it.
    assert_eq!(std::fs::read(&path).unwrap(), vec![0x42; 8192]);
}

#[test]
fn a_missing_file_is_refused_when_it_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let r = Store::open(
        StoreConfig::file(dir.path().join("absent.db")).with_encrypt_up_to(None).must_exist(),
    );
    assert!(matches!(r, Err(OpenError::Sqlite { .. })), "{r:?}");
}

#[test]
fn committed_schema_sql_matches_the_migrations() {
    let expected = swarm_store::expected_schema().unwrap();
    assert!(
        swarm_schema::SCHEMA_SQL == expected,
        "crates/swarm-schema/schema.sql is stale: run `cargo xtask schema`"
    );
}

#[test]
fn foreign_keys_and_checks_reject_bad_rows() {
    let env = Env::new();
    let conn = raw(env.path());
    conn.pragma_update(None, "foreign_keys", true).unwrap();
    let now = 1i64;
    let bad: &[(&str, &str)] = &[
        (
            "level 0",
            "INSERT INTO memory (swarm_id, namespace, key, acl_level, value_type, value, size, version, created_at, updated_at) VALUES ('s1','n','k',0,'text',x'0100',0,1,1,1)",
        ),
        (
            "level 6",
            "INSERT INTO memory (swarm_id, namespace, key, acl_level, value_type, value, size, version, created_at, updated_at) VALUES ('s1','n','k',6,'text',x'0100',0,1,1,1)",
        ),
        (
            "private without owner",
            "INSERT INTO memory (swarm_id, namespace, key, acl_level, value_type, value, size, version, created_at, updated_at) VALUES ('s1','n','k',1,'text',x'0100',0,1,1,1)",
        ),
        (
            "team without team",
            "INSERT INTO memory (swarm_id, namespace, key, acl_level, value_type, value, size, version, created_at, updated_at) VALUES ('s1','n','k',2,'text',x'0100',0,1,1,1)",
        ),
        (
            "unknown swarm",
            "INSERT INTO memory (swarm_id, namespace, key, acl_level, value_type, value, size, version, created_at, updated_at) VALUES ('nope','n','k',3,'text',x'0100',0,1,1,1)",
        ),
        (
            "unknown value type",
            "INSERT INTO memory (swarm_id, namespace, key, acl_level, value_type, value, size, version, created_at, updated_at) VALUES ('s1','n','k',3,'float',x'0100',0,1,1,1)",
        ),
        (
            "unknown owner",
            "INSERT INTO memory (swarm_id, namespace, key, owner_id, acl_level, value_type, value, size, version, created_at, updated_at) VALUES ('s1','n','k','ghost',1,'text',x'0100',0,1,1,1)",
        ),
        (
            "task priority 11",
            "INSERT INTO tasks (id, swarm_id, title, priority, acl_level, created_at, updated_at) VALUES ('t','s1','x',11,3,1,1)",
        ),
        (
            "task status",
            "INSERT INTO tasks (id, swarm_id, title, status, acl_level, created_at, updated_at) VALUES ('t','s1','x','done',3,1,1)",
        ),
        (
            "task progress",
            "INSERT INTO tasks (id, swarm_id, title, progress, acl_level, created_at, updated_at) VALUES ('t','s1','x',101,3,1,1)",
        ),
        (
            "event priority",
            "INSERT INTO events (id, swarm_id, type, payload, priority, acl_level, visible_at, created_at) VALUES ('e','s1','x',x'00',11,3,1,1)",
        ),
        (
            "permission action",
            "INSERT INTO permissions (agent_id, resource_type, action, level, granted_by, granted_at) VALUES ('a','memory','fly',1,'system',1)",
        ),
        (
            "agent status",
            "INSERT INTO agents (id, swarm_id, name, type, status, token_hash, token_issued_at, created_at, updated_at) VALUES ('a','s1','a','t','sleeping',zeroblob(32),1,1,1)",
        ),
        (
            "agent metadata not json",
            "INSERT INTO agents (id, swarm_id, name, type, metadata, token_hash, token_issued_at, created_at, updated_at) VALUES ('a','s1','a','t','{oops',zeroblob(32),1,1,1)",
        ),
        (
            "token hash length",
            "INSERT INTO agents (id, swarm_id, name, type, token_hash, token_issued_at, created_at, updated_at) VALUES ('a','s1','a','t',zeroblob(31),1,1,1)",
        ),
        (
            "consensus threshold",
            "INSERT INTO consensus (id, swarm_id, target_id, target_type, strategy, threshold, acl_level, created_at, updated_at) VALUES ('c','s1','t','task','majority',1.5,3,1,1)",
        ),
        (
            "vote confidence",
            "INSERT INTO consensus_votes (consensus_id, agent_id, approve, confidence, cast_at) VALUES ('c','a',1,2.0,1)",
        ),
        (
            "self dependency",
            "INSERT INTO dependencies (swarm_id, dependent_type, dependent_id, dependency_type, dependency_id, created_by, created_at) VALUES ('s1','agent','a','agent','a','system',1)",
        ),
        (
            "dependency on a missing task",
            "INSERT INTO dependencies (swarm_id, dependent_type, dependent_id, dependency_type, dependency_id, created_by, created_at) VALUES ('s1','task','x','task','y','system',1)",
        ),
    ];
    for (what, sql) in bad {
        assert!(conn.execute(sql, []).is_err(), "{what} was accepted: {sql}");
    }
    // A good row goes in, proving the statements above failed for their one defect.
    conn.execute(
        "INSERT INTO memory (swarm_id, namespace, key, acl_level, value_type, value, size, version, created_at, updated_at) VALUES ('s1','n','k',3,'text',x'0100',0,1,?1,?1)",
        params![now],
    )
    .unwrap();
}

#[test]
fn consensus_outcome_cannot_be_flipped_even_by_sql() {
    let env = Env::new();
    let conn = raw(env.path());
    conn.execute(
        "INSERT INTO consensus (id, swarm_id, target_id, target_type, strategy, threshold, acl_level, created_at, updated_at) VALUES ('c','s1','t','task','majority',0.5,3,1,1)",
        [],
    )
    .unwrap();
    conn.execute("UPDATE consensus SET status = 'achieved', decided_at = 2 WHERE id = 'c'", [])
        .unwrap();
    assert!(conn.execute("UPDATE consensus SET status = 'failed' WHERE id = 'c'", []).is_err());
}

#[test]
fn updated_at_follows_hand_written_updates() {
    let env = Env::new();
    let conn = raw(env.path());
    let before: i64 =
        conn.query_row("SELECT updated_at FROM swarms WHERE id = 's1'", [], |r| r.get(0)).unwrap();
    conn.execute("UPDATE swarms SET description = 'edited' WHERE id = 's1'", []).unwrap();
    let after: i64 =
        conn.query_row("SELECT updated_at FROM swarms WHERE id = 's1'", [], |r| r.get(0)).unwrap();
    // The store's clock is frozen in 2023; the trigger uses the wall clock.
    assert!(after > before, "{before} -> {after}");
}

#[test]
fn team_members_must_share_the_teams_swarm() {
    let env = Env::new();
    let t = env.team("red", "s1");
    env.agent("outsider", "s2", &[]);
    let conn = raw(env.path());
    conn.pragma_update(None, "foreign_keys", true).unwrap();
    let err = conn
        .execute(
            "INSERT INTO team_members (team_id, agent_id, joined_at) VALUES (?1, 'outsider', 1)",
            [t.as_str()],
        )
        .unwrap_err();
    assert!(err.to_string().contains("different swarms"), "{err}");
}

/// Fixture databases written by earlier schema versions, committed under
/// `tests/fixtures/`: each must open, upgrade in place, and read back what it holds.
/// `SWARM_UPDATE_FIXTURES=1` regenerates the fixture of the *current* version (do this only
/// when adding a migration, before the migration exists, and commit the file).
mod fixtures_compat {
    use super::*;
    use crate::fixtures::{key, keyring};
    use swarm_acl::{AclLevel, AgentId, Grant};
    use swarm_store::{NewAgent, SetOptions, Value};

    fn fixture(version: u32) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/v{version}.db"))
    }

    /// What every fixture holds.
    fn populate(store: &Store) {
        let s = crate::fixtures::swarm("s1");
        store.ensure_swarm(&Identity::System, &s).unwrap();
        store
            .insert_agent(
                &Identity::System,
                NewAgent {
                    id: AgentId::new("ann").unwrap(),
                    swarm: s,
                    name: "ann".into(),
                    agent_type: "fixture".into(),
                    capabilities: vec!["api".into()],
                    metadata: serde_json::json!({}),
                    token_hash: [3; 32],
                    teams: vec![],
                    grants: Grant::defaults(),
                },
            )
            .unwrap();
        let ann = Identity::Agent(AgentId::new("ann").unwrap());
        store
            .set(
                &ann,
                &key("s1", "fx", "private"),
                "sealed in an old version".into(),
                &SetOptions::new(),
            )
            .unwrap();
        store
            .set(
                &ann,
                &key("s1", "fx", "public"),
                Value::Json(serde_json::json!({"n": 1})),
                &SetOptions::new().level(AclLevel::Public),
            )
            .unwrap();
        store.incr(&ann, &key("s1", "fx", "counter"), 41, &SetOptions::new()).unwrap();
        // Sealed payloads outside memory (from schema 3 on; earlier fixtures have none).
        store
            .store_artifact(
                &ann,
                swarm_store::ArtifactSpec::new(
                    "fx-doc",
                    b"artifact sealed in an old version".to_vec(),
                ),
            )
            .unwrap();
        store
            .store_artifact(
                &ann,
                swarm_store::ArtifactSpec::new("fx-open", b"plain artifact".to_vec())
                    .level(AclLevel::Swarm),
            )
            .unwrap();
        store
            .publish_event(
                &ann,
                swarm_store::EventSpec::new("fx.private", serde_json::json!({"sealed": "event"}))
                    .level(AclLevel::Private),
            )
            .unwrap();
    }

    #[test]
    fn write_current_fixture_when_asked() {
        if std::env::var("SWARM_UPDATE_FIXTURES").as_deref() != Ok("1") {
            return;
        }
        let path = fixture(swarm_schema::latest_version());
        let _ = std::fs::remove_file(&path);
        let store =
            Store::open(StoreConfig::file(&path).with_keyring(keyring()).with_sweep_interval(None))
                .unwrap();
        populate(&store);
        store.shutdown().unwrap();
        drop(store);
        let conn = raw(&path);
        conn.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(())).unwrap();
    }

    #[test]
    fn every_committed_fixture_upgrades_in_place_and_reads_back() {
        let mut found = 0;
        for version in 1..=swarm_schema::latest_version() {
            let src = fixture(version);
            if !src.exists() {
                continue;
            }
            found += 1;
            let dir = tempfile::tempdir().unwrap();
            let copy = dir.path().join("old.db");
            std::fs::copy(&src, &copy).unwrap();
            // Before schema 3 versions came from a counter that could run ahead of the
            // audit log (one audit row per mset, one version per record): make it so.
            let ahead = if version < 3 { 1_000_000_i64 } else { 0 };
            if version < 3 {
                raw(&copy)
                    .execute_batch(&format!(
                        "UPDATE meta SET value = {ahead} WHERE key = 'revision'; \
                         UPDATE memory SET version = {ahead} WHERE key = 'counter';"
                    ))
                    .unwrap();
            }
            let store = Store::open(
                StoreConfig::file(&copy).with_keyring(keyring()).with_sweep_interval(None),
            )
            .unwrap();
            assert_eq!(store.migration().from, version);
            assert_eq!(store.migration().to, swarm_schema::latest_version());
            let ann = Identity::Agent(AgentId::new("ann").unwrap());
            let r = store.get(&ann, &key("s1", "fx", "private")).unwrap().unwrap();
            assert_eq!(r.value, Value::from("sealed in an old version"), "fixture v{version}");
            assert!(r.meta.encrypted);
            assert_eq!(
                store.get(&ann, &key("s1", "fx", "counter")).unwrap().unwrap().value,
                Value::Integer(41)
            );
            assert!(store.verify_audit().unwrap().is_intact(), "fixture v{version}");
            if version >= 3 {
                // Artifacts and events of the fixture read back, and schema 4 found the key
                // of every sealed one in its envelope.
                let doc = store.latest_artifact(&ann, "fx-doc").unwrap().unwrap();
                assert_eq!(doc.content, b"artifact sealed in an old version");
                let open = store.latest_artifact(&ann, "fx-open").unwrap().unwrap();
                assert_eq!(open.content, b"plain artifact");
                let page = store.events_since(&ann, 0, Some("fx.private"), 10).unwrap();
                assert_eq!(page.events.len(), 1, "fixture v{version}");
                assert_eq!(page.events[0].payload, serde_json::json!({"sealed": "event"}));
                let conn = raw(&copy);
                let key_ids: Vec<(String, Option<i64>)> = conn
                    .prepare("SELECT name, key_id FROM artifacts ORDER BY name")
                    .unwrap()
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .unwrap()
                    .collect::<rusqlite::Result<_>>()
                    .unwrap();
                assert_eq!(key_ids, [("fx-doc".to_owned(), Some(1)), ("fx-open".to_owned(), None)]);
                let event_key: Option<i64> =
                    conn.query_row("SELECT key_id FROM events", [], |r| r.get(0)).unwrap();
                assert_eq!(event_key, Some(1));
                let report = store.key_report(&Identity::System).unwrap();
                assert_eq!(report.keys[0].sealed.artifacts, 1);
                assert_eq!(report.keys[0].sealed.events, 1);
            }
            // And it keeps working after the upgrade: versions keep rising, the feed
            // reports the change with the record's version, the chain still verifies.
            let head = store.change_head().unwrap();
            store.incr(&ann, &key("s1", "fx", "counter"), 1, &SetOptions::new()).unwrap();
            let w = store.get(&ann, &key("s1", "fx", "counter")).unwrap().unwrap().meta;
            assert!(
                w.version > ahead as u64,
                "fixture v{version}: version {} went back",
                w.version
            );
            let page = store
                .changes_since(
                    &ann,
                    head,
                    &swarm_store::ChangeFilter::swarm(crate::fixtures::swarm("s1")),
                    10,
                )
                .unwrap();
            assert_eq!(page.changes.len(), 1, "fixture v{version}: {page:?}");
            assert_eq!(page.changes[0].version, w.version);
            assert_eq!(page.changes[0].op, "set");
            let r = store.verify_audit().unwrap();
            assert!(r.is_intact(), "fixture v{version}: {r:?}");
            assert_eq!(
                raw(&copy)
                    .query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
                    .unwrap(),
                "ok"
            );
        }
        assert!(found >= 1, "no fixture database committed under tests/fixtures");
    }
}
