//! The audit chain verifies, and editing, deleting or inserting a row with plain SQL is
//! reported.

use swarm_acl::Identity;
use swarm_store::{ChainProblem, SetOptions, StoreError, Value};

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

#[test]
fn queries_by_time_actor_and_outcome_page_through_the_log() {
    use swarm_store::AuditQuery;
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    let b = env.agent("ben", "s1", &[]);
    let t0 = swarm_store::Clock::now(&env.clock).as_millis();
    for i in 0..30 {
        env.clock.advance(1000);
        let who = if i % 3 == 0 { &b } else { &a };
        env.store
            .set(who, &key("s1", "n", &format!("k{i}")), Value::Integer(i), &SetOptions::new())
            .unwrap();
    }
    // Ben cannot read Ann's private record: a denial, audited.
    assert!(env.store.get(&b, &key("s1", "n", "k1")).unwrap().is_none());
    // Queued denials reach the chain with the next write.
    env.store.set(&a, &key("s1", "n", "flush"), Value::Integer(0), &SetOptions::new()).unwrap();
    let all = env.store.audit_query(&Identity::System, &AuditQuery::new().limit(1000)).unwrap();
    assert!(all.next.is_none());
    assert!(all.rows.windows(2).all(|w| w[0].seq < w[1].seq && w[0].at <= w[1].at));

    // A time range: the 10th to the 19th write (times t0 + 10 s .. t0 + 20 s).
    let q = AuditQuery::new().since(t0 + 10_000).until(t0 + 20_000).action("memory.set");
    let page = env.store.audit_query(&Identity::System, &q).unwrap();
    assert_eq!(page.rows.len(), 10, "{:?}", page.rows);
    assert!(page.rows.iter().all(|r| r.at >= t0 + 10_000 && r.at < t0 + 20_000));
    // The same range found by scanning everything agrees with the binary search.
    let scanned: Vec<u64> = all
        .rows
        .iter()
        .filter(|r| r.at >= t0 + 10_000 && r.at < t0 + 20_000 && r.action == "memory.set")
        .map(|r| r.seq)
        .collect();
    assert_eq!(page.rows.iter().map(|r| r.seq).collect::<Vec<_>>(), scanned);

    // An actor, in pages of 4.
    let mut seen = Vec::new();
    let mut q = AuditQuery::new().actor("ben").action("memory.set").limit(4);
    loop {
        let page = env.store.audit_query(&Identity::System, &q).unwrap();
        assert!(page.rows.iter().all(|r| r.actor == "ben"));
        seen.extend(page.rows.iter().map(|r| r.seq));
        match page.next {
            Some(n) => q = q.after(n),
            None => break,
        }
    }
    assert_eq!(seen.len(), 10);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "pages overlap: {seen:?}");
    let denied =
        env.store.audit_query(&Identity::System, &AuditQuery::new().outcome("denied")).unwrap();
    assert_eq!(denied.rows.len(), 1);
    assert_eq!(denied.rows[0].actor, "ben");

    // Agents without an audit grant cannot read it; a backwards range is invalid.
    assert!(matches!(
        env.store.audit_query(&a, &AuditQuery::new()),
        Err(swarm_store::StoreError::PermissionDenied(_))
    ));
    assert!(matches!(
        env.store.audit_query(&Identity::System, &AuditQuery::new().since(10).until(5)),
        Err(swarm_store::StoreError::Invalid(_))
    ));
}

#[test]
fn audit_times_never_decrease_even_when_the_clock_steps_back() {
    use swarm_store::AuditQuery;
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    env.clock.advance(60_000);
    env.store.set(&a, &key("s1", "n", "late"), Value::Integer(1), &SetOptions::new()).unwrap();
    let before = swarm_store::Clock::now(&env.clock).as_millis();
    env.clock.advance(-30_000);
    env.store.set(&a, &key("s1", "n", "early"), Value::Integer(2), &SetOptions::new()).unwrap();
    let rows =
        env.store.audit_query(&Identity::System, &AuditQuery::new().limit(1000)).unwrap().rows;
    let last = rows.last().unwrap();
    assert_eq!(last.at, before, "the row is clamped to the previous row's time");
    assert!(rows.windows(2).all(|w| w[0].at <= w[1].at));
    assert!(env.store.verify_audit().unwrap().is_intact());
}

#[test]
fn an_unknown_format_cannot_hide_forged_feed_columns() {
    let env = busy_env();
    let conn = raw(env.path());
    conn.execute_batch(
        "PRAGMA ignore_check_constraints = ON;
         UPDATE audit_log SET fmt = 3, namespace = 'hr', key = 'forged', acl_level = 4
         WHERE seq = (SELECT max(seq) FROM audit_log WHERE key IS NOT NULL);",
    )
    .unwrap();
    let p = env.store.verify_audit().unwrap().problem;
    assert!(matches!(p, Some(ChainProblem::Edited { .. })), "{p:?}");
}

#[test]
fn a_truncation_hidden_by_editing_the_version_offset_is_reported() {
    let env = busy_env();
    let conn = raw(env.path());
    let last: i64 = conn.query_row("SELECT max(seq) FROM audit_log", [], |r| r.get(0)).unwrap();
    // The newest rows are record writes, so meta.audit_head lags behind them; raising the
    // offset by the number of rows removed makes the newest version point at the new end.
    conn.execute_batch(&format!(
        "DELETE FROM audit_log WHERE seq > {};
         UPDATE meta SET value = value + 3 WHERE key = 'version_offset';",
        last - 3
    ))
    .unwrap();
    let p = env.store.verify_audit().unwrap().problem;
    assert!(matches!(p, Some(ChainProblem::WitnessMismatch { .. })), "{p:?}");
}

#[test]
fn editing_a_records_version_is_reported() {
    // Every version points at the audit row that wrote its record: lowering one (to hide
    // the row that wrote it, say) or raising one shows.
    for edit in [
        "UPDATE memory SET version = version - 1 WHERE key = 'k19'",
        "UPDATE memory SET version = version - 3 WHERE key = 'k10'",
        "UPDATE memory SET version = version + 1 WHERE key = 'k4'",
    ] {
        let env = busy_env();
        raw(env.path()).execute(edit, []).unwrap();
        let p = env.store.verify_audit().unwrap().problem;
        assert!(matches!(p, Some(ChainProblem::WitnessMismatch { .. })), "{edit}: {p:?}");
    }
}

/// A head the store could not have written (CHECK constraints switched off, then the file
/// edited) stops every write with a corruption error instead of chaining from a made-up
/// head, and nothing is written meanwhile.
#[test]
fn a_malformed_chain_head_or_counter_stops_writes_instead_of_being_replaced() {
    let env = busy_env();
    let a = env.agent("bob", "s1", &[]);
    let conn = raw(env.path());
    conn.pragma_update(None, "ignore_check_constraints", true).unwrap();
    let rows = |conn: &rusqlite::Connection| -> i64 {
        conn.query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0)).unwrap()
    };
    let write =
        || env.store.set(&a, &key("s1", "n", "after"), Value::Integer(1), &SetOptions::new());
    let head = "(SELECT max(seq) FROM audit_log)";
    let hash: Vec<u8> = conn
        .query_row(&format!("SELECT hash FROM audit_log WHERE seq = {head}"), [], |r| r.get(0))
        .unwrap();
    let generation: i64 = conn
        .query_row("SELECT value FROM meta WHERE key = 'acl_generation'", [], |r| r.get(0))
        .unwrap();
    let set_hash = format!("UPDATE audit_log SET hash = ?1 WHERE seq = {head}");
    let set_generation = "UPDATE meta SET value = ?1 WHERE key = 'acl_generation'";
    type Edit<'e> = (&'e str, rusqlite::types::Value);
    let cases: [(Edit<'_>, Edit<'_>, &str); 2] = [
        ((&set_hash, hash[..31].to_vec().into()), (&set_hash, hash.clone().into()), "31 bytes"),
        ((set_generation, (-3_i64).into()), (set_generation, generation.into()), "below zero"),
    ];
    for ((tamper, bad), (undo, good), what) in cases {
        let before = rows(&conn);
        conn.execute(tamper, [bad]).unwrap();
        let e = write().unwrap_err();
        assert!(matches!(&e, StoreError::Corrupt(m) if m.contains(what)), "{e}");
        assert_eq!(rows(&conn), before, "a write went through on a corrupt head");
        conn.execute(undo, [good]).unwrap();
    }
    write().unwrap();
    assert!(env.store.verify_audit().unwrap().is_intact());
}
