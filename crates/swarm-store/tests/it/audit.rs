//! The audit chain verifies, and editing, deleting or inserting a row with plain SQL is
//! reported.

use swarm_acl::Identity;
use swarm_store::{ChainProblem, SetOptions, Value};

use crate::fixtures::{Env, key, raw};

fn busy_env() -> Env {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    for i in 0..20 {
        env.store
            .set(&a, &key("s1", "n", &format!("k{i}")), Value::Integer(i), &SetOptions::new())
            .unwrap();
    }
    env
}

#[test]
fn a_fresh_chain_verifies_and_reports_its_head() {
    let env = busy_env();
    let r = env.store.verify_audit().unwrap();
    assert!(r.is_intact(), "{r:?}");
    assert!(r.rows >= 20);
    let (seq, hash) = r.head.unwrap();
    assert_eq!(seq, r.rows);
    assert_eq!(hash.len(), 64);
}

#[test]
fn writes_denials_and_registry_changes_are_all_audited() {
    let env = busy_env();
    let conn = raw(env.path());
    let count = |action: &str| -> i64 {
        conn.query_row("SELECT count(*) FROM audit_log WHERE action = ?1", [action], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(count("memory.set"), 20);
    assert_eq!(count("agent.register"), 1);
    assert!(count("swarm.create") >= 2);
    // Audit rows never carry values.
    let details: Vec<String> = conn
        .prepare("SELECT detail FROM audit_log")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert!(details.iter().all(|d| serde_json::from_str::<serde_json::Value>(d).is_ok()));
}

#[test]
fn an_edited_row_is_reported() {
    let env = busy_env();
    raw(env.path()).execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 5", []).unwrap();
    assert_eq!(env.store.verify_audit().unwrap().problem, Some(ChainProblem::Edited { seq: 5 }));
}

#[test]
fn editing_a_change_feed_column_is_reported() {
    // The audit row of a memory write is also its change-feed entry: redirecting it to
    // another key, level or owner, or downgrading its format so the hash skips those
    // columns, must show.
    for edit in [
        "UPDATE audit_log SET key = 'k99' WHERE seq = (SELECT max(seq) FROM audit_log WHERE key IS NOT NULL)",
        "UPDATE audit_log SET acl_level = 4 WHERE seq = (SELECT max(seq) FROM audit_log WHERE key IS NOT NULL)",
        "UPDATE audit_log SET owner_id = 'mallory' WHERE seq = (SELECT max(seq) FROM audit_log WHERE key IS NOT NULL)",
        "UPDATE audit_log SET fmt = 1 WHERE seq = (SELECT max(seq) FROM audit_log WHERE key IS NOT NULL)",
        "UPDATE audit_log SET namespace = 'n', key = 'forged', acl_level = 4 WHERE seq = 1",
    ] {
        let env = busy_env();
        assert!(env.store.verify_audit().unwrap().is_intact());
        raw(env.path()).execute(edit, []).unwrap();
        let p = env.store.verify_audit().unwrap().problem;
        assert!(matches!(p, Some(ChainProblem::Edited { .. })), "{edit}: {p:?}");
    }
}

#[test]
fn a_deleted_row_is_reported() {
    let env = busy_env();
    raw(env.path()).execute("DELETE FROM audit_log WHERE seq = 7", []).unwrap();
    assert_eq!(env.store.verify_audit().unwrap().problem, Some(ChainProblem::Removed { seq: 7 }));
}

#[test]
fn deleting_the_newest_rows_is_reported() {
    let env = busy_env();
    let last: i64 =
        raw(env.path()).query_row("SELECT max(seq) FROM audit_log", [], |r| r.get(0)).unwrap();
    raw(env.path()).execute("DELETE FROM audit_log WHERE seq > ?1", [last - 2]).unwrap();
    let p = env.store.verify_audit().unwrap().problem;
    assert!(matches!(p, Some(ChainProblem::Truncated { .. })), "{p:?}");
}

#[test]
fn an_inserted_row_is_reported() {
    let env = busy_env();
    let conn = raw(env.path());
    // Renumber to make room, as an attacker would, then insert a forged row.
    conn.execute_batch(
        "UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 10;
         UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1010;
         INSERT INTO audit_log (seq, at, actor, action, resource_type, resource, outcome, detail, prev_hash, hash)
         VALUES (10, 0, 'mallory', 'memory.set', 'memory', 'x', 'ok', '{}', zeroblob(32), zeroblob(32));",
    )
    .unwrap();
    let p = env.store.verify_audit().unwrap().problem;
    assert!(
        matches!(p, Some(ChainProblem::Inserted { seq: 10 }) | Some(ChainProblem::Edited { .. })),
        "{p:?}"
    );
}

#[test]
fn a_row_appended_at_the_end_is_reported() {
    let env = busy_env();
    let conn = raw(env.path());
    conn.execute(
        "INSERT INTO audit_log (seq, at, actor, action, resource_type, resource, outcome, detail, prev_hash, hash)
         SELECT max(seq) + 1, 0, 'mallory', 'x', 'memory', 'x', 'ok', '{}', zeroblob(32), zeroblob(32) FROM audit_log",
        [],
    )
    .unwrap();
    let p = env.store.verify_audit().unwrap().problem;
    assert!(matches!(p, Some(ChainProblem::Inserted { .. })), "{p:?}");
    let _ = Identity::System;
}

#[test]
fn the_tail_is_for_auditors_only() {
    let env = busy_env();
    let rows = env.store.audit_tail(&Identity::System, 5).unwrap();
    assert_eq!(rows.len(), 5);
    assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq), "oldest first");
    let ann = Identity::Agent(swarm_acl::AgentId::new("ann").unwrap());
    assert!(matches!(
        env.store.audit_tail(&ann, 5),
        Err(swarm_store::StoreError::PermissionDenied(_))
    ));
    let auditor = env.agent_with(
        "auditor",
        "s1",
        &[],
        vec![swarm_acl::Grant::new(
            swarm_acl::ResourceType::Audit,
            swarm_acl::Action::Read,
            swarm_acl::AclLevel::System,
        )],
    );
    assert_eq!(env.store.audit_tail(&auditor, 3).unwrap().len(), 3);
}
