//! The memory API's behaviour: values and types, versions and compare-and-set, TTL,
//! atomic counters, batches, key patterns, encryption at rest.

use std::sync::Arc;
use std::time::Duration;

use swarm_acl::{AclLevel, AgentId, Identity};
use swarm_store::{
    ChangeFilter, Expect, KeyPattern, ListQuery, Namespace, OpenError, SetOptions, Store,
    StoreConfig, StoreError, Value,
};

use crate::fixtures::{Env, T0, config, key, raw, swarm};

fn swarm_level() -> SetOptions {
    SetOptions::new().level(AclLevel::Swarm)
}

#[test]
fn values_keep_their_type() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    let values = [
        Value::Bytes(vec![0, 255, 1]),
        Value::Text("héllo".into()),
        Value::Json(serde_json::json!({ "name": "John", "tags": [1, 2] })),
        Value::Integer(-42),
        Value::Text(String::new()),
    ];
    for (i, v) in values.iter().enumerate() {
        let k = key("s1", "types", &format!("k{i}"));
        env.store.set(&a, &k, v.clone(), &SetOptions::new()).unwrap();
        let r = env.store.get(&a, &k).unwrap().unwrap();
        assert_eq!(&r.value, v);
        assert_eq!(r.meta.value_type, v.value_type());
    }
}

#[test]
fn versions_rise_on_every_write_and_are_never_reused() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    let k = key("s1", "n", "k");
    let v1 = env.store.set(&a, &k, "a".into(), &SetOptions::new()).unwrap();
    assert!(v1.created);
    let v2 = env.store.set(&a, &k, "b".into(), &SetOptions::new()).unwrap();
    assert!(!v2.created && v2.version > v1.version);
    assert!(env.store.delete(&a, &k, None).unwrap());
    let v3 = env.store.set(&a, &k, "c".into(), &SetOptions::new()).unwrap();
    assert!(
        v3.created && v3.version > v2.version,
        "a re-created record must not reuse a version (ABA)"
    );
    assert_eq!(env.store.get(&a, &k).unwrap().unwrap().meta.version, v3.version);
}

#[test]
fn compare_and_set_conflicts_are_distinct_and_recorded() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    let k = key("s1", "n", "cas");
    let w = env.store.set(&a, &k, "1".into(), &SetOptions::new().expect(Expect::Absent)).unwrap();
    let err =
        env.store.set(&a, &k, "x".into(), &SetOptions::new().expect(Expect::Absent)).unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    let err = env
        .store
        .set(&a, &k, "x".into(), &SetOptions::new().if_version(w.version + 1))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    // Nothing was written by the refused attempts.
    assert_eq!(env.store.get(&a, &k).unwrap().unwrap().value, Value::from("1"));
    let w2 = env.store.set(&a, &k, "2".into(), &SetOptions::new().if_version(w.version)).unwrap();
    // Compare-and-delete.
    assert!(matches!(
        env.store.delete(&a, &k, Some(Expect::Version(w.version))),
        Err(StoreError::Conflict { .. })
    ));
    assert!(env.store.delete(&a, &k, Some(Expect::Version(w2.version))).unwrap());
    // Each conflict is in the conflicts table and the audit trail.
    let conn = raw(env.path());
    let n: i64 = conn
        .query_row("SELECT count(*) FROM conflicts WHERE type = 'version_mismatch' AND entity_a_id = 's1/n/cas'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
    let n: i64 = conn
        .query_row("SELECT count(*) FROM audit_log WHERE outcome = 'conflict'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
}

#[test]
fn ttl_boundary_is_exact_and_holds_before_the_sweep() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    let k = key("s1", "n", "ttl");
    env.store
        .setex(&a, &k, Duration::from_millis(1000), "soon gone".into(), &swarm_level())
        .unwrap();
    let t_expiry = crate::fixtures::T0 + 1000;
    env.clock.set(swarm_acl::Timestamp::from_millis(t_expiry - 1));
    assert!(env.store.get(&a, &k).unwrap().is_some());
    assert!(env.store.has(&a, &k).unwrap());
    // A record expiring at T is gone at T, on every read path, although nothing swept it.
    env.clock.set(swarm_acl::Timestamp::from_millis(t_expiry));
    assert!(env.store.get(&a, &k).unwrap().is_none());
    assert!(!env.store.has(&a, &k).unwrap());
    assert_eq!(env.store.mget(&a, std::slice::from_ref(&k)).unwrap(), vec![None]);
    let ns = Namespace::new("n").unwrap();
    assert!(
        env.store
            .keys(&a, &swarm("s1"), &ns, &KeyPattern::parse("*").unwrap(), 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(env.store.stats(&a, None).unwrap().records, 0);
    assert_eq!(env.store.stats(&Identity::System, None).unwrap().expired_unswept, 1);
    let conn = raw(env.path());
    let physically: i64 = conn.query_row("SELECT count(*) FROM memory", [], |r| r.get(0)).unwrap();
    assert_eq!(physically, 1, "not yet swept");
    // An expired record is absent for writes too: CAS "absent" succeeds.
    env.store.set(&a, &k, "new".into(), &swarm_level().expect(Expect::Absent)).unwrap();
    env.store.setex(&a, &k, Duration::from_millis(10), "again".into(), &swarm_level()).unwrap();
    env.clock.advance(10);
    assert_eq!(env.store.sweep_expired(100).unwrap(), 1);
    let physically: i64 = conn.query_row("SELECT count(*) FROM memory", [], |r| r.get(0)).unwrap();
    assert_eq!(physically, 0);
    // The sweep left an `expire` change for watchers.
    let page = env.store.changes_since(&a, 0, &ChangeFilter::swarm(swarm("s1")), 100).unwrap();
    assert_eq!(page.changes.last().map(|c| c.op.as_str()), Some("expire"));
}

#[test]
fn no_ttl_means_no_expiry_and_set_clears_a_ttl() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    let k = key("s1", "n", "forever");
    env.store.set(&a, &k, "x".into(), &SetOptions::new()).unwrap();
    assert_eq!(env.store.get(&a, &k).unwrap().unwrap().meta.expires_at, None);
    env.store.setex(&a, &k, Duration::from_secs(5), "x".into(), &SetOptions::new()).unwrap();
    env.store.set(&a, &k, "y".into(), &SetOptions::new()).unwrap();
    env.clock.advance(10_000);
    assert!(env.store.get(&a, &k).unwrap().is_some());
    assert!(matches!(
        env.store.setex(&a, &k, Duration::ZERO, "z".into(), &SetOptions::new()),
        Err(StoreError::Invalid(_))
    ));
}

/// The stored columns of one record, as SQL sees them.
type Columns = (Option<String>, Option<String>, i64, Option<i64>, Option<i64>, i64, i64);

fn columns(path: &std::path::Path, k: &str) -> Columns {
    raw(path)
        .query_row(
            "SELECT owner_id, team_id, acl_level, key_id, expires_at, created_at, version \
             FROM memory WHERE key = ?1",
            [k],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
        )
        .unwrap()
}

#[test]
fn an_overwrite_rewrites_what_changes_and_keeps_the_rest() {
    // An overwrite of a live record names in its UPDATE only the indexed columns that
    // change; every combination of team, key id and expiry changing must land.
    let env = Env::new();
    let crew = env.team("crew", "s1");
    let a = env.agent("ann", "s1", &[&crew]);
    let k = key("s1", "n", "k");
    let owner = Some("ann".to_owned());
    let v1 = env.store.set(&a, &k, "one".into(), &swarm_level()).unwrap().version;
    assert_eq!(columns(env.path(), "k"), (owner.clone(), None, 3, None, None, T0, v1 as i64));

    // Team, key id and expiry all change: a team record is encrypted, with a TTL.
    env.clock.advance(1_000);
    let team = SetOptions::new().level(AclLevel::Team).team(crew.clone());
    let v2 = env.store.setex(&a, &k, Duration::from_secs(5), "two".into(), &team).unwrap().version;
    let expiry = Some(T0 + 6_000);
    let crew_id = Some("crew".to_owned());
    assert_eq!(
        columns(env.path(), "k"),
        (owner.clone(), crew_id.clone(), 2, Some(1), expiry, T0, v2 as i64)
    );

    // Nothing indexed changes: a new TTL ending at the same instant, same scope.
    let v3 =
        env.store.setex(&a, &k, Duration::from_secs(5), "three".into(), &team).unwrap().version;
    assert_eq!(
        columns(env.path(), "k"),
        (owner.clone(), crew_id.clone(), 2, Some(1), expiry, T0, v3 as i64)
    );

    // Only the expiry changes: a set without a TTL clears it.
    let v4 = env.store.set(&a, &k, "four".into(), &SetOptions::new()).unwrap().version;
    assert_eq!(
        columns(env.path(), "k"),
        (owner.clone(), crew_id.clone(), 2, Some(1), None, T0, v4 as i64)
    );

    // Team and key id change back; the owner and the creation time stay.
    let v5 = env.store.set(&a, &k, "five".into(), &swarm_level()).unwrap().version;
    assert_eq!(columns(env.path(), "k"), (owner.clone(), None, 3, None, None, T0, v5 as i64));
    let r = env.store.get(&a, &k).unwrap().unwrap();
    assert_eq!((r.value, r.meta.version), (Value::Text("five".into()), v5));

    // A record that has expired but is not swept yet is replaced as a new one.
    env.store.setex(&a, &k, Duration::from_secs(1), "six".into(), &swarm_level()).unwrap();
    env.clock.advance(2_000);
    let w = env.store.set(&a, &k, "seven".into(), &swarm_level()).unwrap();
    assert!(w.created);
    assert_eq!(
        columns(env.path(), "k"),
        (owner, None, 3, None, None, T0 + 3_000, w.version as i64)
    );

    // The indexes agree with the table.
    let conn = raw(env.path());
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let by_owner: i64 = conn
        .query_row(
            "SELECT count(*) FROM memory INDEXED BY memory_by_owner WHERE owner_id = 'ann'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(by_owner, 1);
}

#[test]
fn incr_is_atomic_under_eight_threads() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    let k = key("s1", "n", "counter");
    let threads = 8;
    let per = 200;
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (store, a, k) = (env.store.clone(), a.clone(), k.clone());
            s.spawn(move || {
                for _ in 0..per {
                    store.incr(&a, &k, 1, &SetOptions::new()).unwrap();
                }
            });
        }
    });
    let r = env.store.get(&a, &k).unwrap().unwrap();
    assert_eq!(r.value, Value::Integer(threads * per));
    assert!(r.meta.encrypted, "private counters are encrypted and still atomic");
}

#[test]
fn incr_works_on_text_and_json_numbers_and_refuses_the_rest() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    let t = key("s1", "n", "text");
    env.store.set(&a, &t, "41".into(), &SetOptions::new()).unwrap();
    assert_eq!(env.store.incr(&a, &t, 1, &SetOptions::new()).unwrap(), 42);
    assert_eq!(env.store.get(&a, &t).unwrap().unwrap().value, Value::from("42"));
    let j = key("s1", "n", "json");
    env.store.set(&a, &j, Value::Json(serde_json::json!(10)), &SetOptions::new()).unwrap();
    assert_eq!(env.store.decr(&a, &j, 3, &SetOptions::new()).unwrap(), 7);
    let bad = key("s1", "n", "word");
    env.store.set(&a, &bad, "seven".into(), &SetOptions::new()).unwrap();
    assert!(matches!(
        env.store.incr(&a, &bad, 1, &SetOptions::new()),
        Err(StoreError::NotAnInteger(_))
    ));
    let max = key("s1", "n", "max");
    env.store.set(&a, &max, Value::Integer(i64::MAX), &SetOptions::new()).unwrap();
    assert!(matches!(
        env.store.incr(&a, &max, 1, &SetOptions::new()),
        Err(StoreError::Overflow(_))
    ));
    assert_eq!(env.store.get(&a, &max).unwrap().unwrap().value, Value::Integer(i64::MAX));
    // incr keeps an existing expiry.
    let ttl = key("s1", "n", "ttl");
    env.store
        .setex(&a, &ttl, Duration::from_secs(1), Value::Integer(1), &SetOptions::new())
        .unwrap();
    env.store.incr(&a, &ttl, 1, &SetOptions::new()).unwrap();
    assert!(env.store.get(&a, &ttl).unwrap().unwrap().meta.expires_at.is_some());
}

#[test]
fn mset_is_all_or_nothing() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    let b = env.agent("ben", "s1", &[]);
    // ben owns a private record; ann's batch that would overwrite it must fail whole.
    let taken = key("s1", "n", "taken");
    env.store.set(&b, &taken, "ben's".into(), &SetOptions::new()).unwrap();
    let items = vec![
        (key("s1", "n", "m1"), Value::from("1")),
        (key("s1", "n", "m2"), Value::from("2")),
        (taken.clone(), Value::from("ann's")),
    ];
    let err = env.store.mset(&a, items, &SetOptions::new()).unwrap_err();
    assert!(matches!(err, StoreError::PermissionDenied(_)), "{err}");
    assert!(env.store.get(&a, &key("s1", "n", "m1")).unwrap().is_none());
    assert!(env.store.get(&a, &key("s1", "n", "m2")).unwrap().is_none());
    assert_eq!(env.store.get(&b, &taken).unwrap().unwrap().value, Value::from("ben's"));
    // An invalid item fails the batch before anything is written.
    let long = "x".repeat(5 * 1024 * 1024);
    let items =
        vec![(key("s1", "n", "m1"), Value::from("1")), (key("s1", "n", "m3"), Value::Text(long))];
    assert!(matches!(env.store.mset(&a, items, &SetOptions::new()), Err(StoreError::Invalid(_))));
    assert!(env.store.get(&a, &key("s1", "n", "m1")).unwrap().is_none());
    // A valid batch lands whole.
    let items =
        vec![(key("s1", "n", "m1"), Value::from("1")), (key("s1", "n", "m2"), Value::from("2"))];
    let written = env.store.mset(&a, items, &SetOptions::new()).unwrap();
    assert_eq!(written.len(), 2);
    let got = env
        .store
        .mget(&a, &[key("s1", "n", "m1"), key("s1", "n", "m2"), key("s1", "n", "none")])
        .unwrap();
    assert_eq!(got.iter().filter(|r| r.is_some()).count(), 2);
    assert!(got[2].is_none());
}

#[test]
fn keys_match_globs_and_treat_sql_specials_literally() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    let names =
        ["user:1", "user:2", "user:10", "50%_off", "50xyoff", "a[1]", "it's", "a*b", "ab", "a\\b"];
    for n in names {
        env.store.set(&a, &key("s1", "g", n), "v".into(), &SetOptions::new()).unwrap();
    }
    let ns = Namespace::new("g").unwrap();
    let keys = |p: &str| -> Vec<String> {
        let mut v: Vec<String> = env
            .store
            .keys(&a, &swarm("s1"), &ns, &KeyPattern::parse(p).unwrap(), 100)
            .unwrap()
            .into_iter()
            .map(|k| k.to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(keys("user:?"), vec!["user:1", "user:2"]);
    assert_eq!(keys("user:*"), vec!["user:1", "user:10", "user:2"]);
    assert_eq!(keys("50%_off"), vec!["50%_off"]);
    assert_eq!(keys("a[1]"), vec!["a[1]"]);
    assert_eq!(keys("it's"), vec!["it's"]);
    assert_eq!(keys(r"a\*b"), vec!["a*b"]);
    assert_eq!(keys("a*b"), vec!["a*b", "a\\b", "ab"]);
    assert_eq!(keys(r"a\\b"), vec!["a\\b"]);
    assert_eq!(keys("").len(), names.len());
    assert!(
        env.store
            .keys(&a, &swarm("s1"), &ns, &KeyPattern::parse("zzz*").unwrap(), 100)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn list_pages_through_everything_once() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    for ns in ["a", "b"] {
        for i in 0..25 {
            env.store
                .set(
                    &a,
                    &key("s1", ns, &format!("k{i:02}")),
                    "v".into(),
                    &SetOptions::new().tags(["t"]),
                )
                .unwrap();
        }
    }
    let mut seen = Vec::new();
    let mut q = ListQuery::new(swarm("s1")).limit(7);
    loop {
        let page = env.store.list(&a, &q).unwrap();
        seen.extend(page.items.iter().map(|s| format!("{}/{}", s.namespace, s.key)));
        match page.next {
            Some(c) => q = ListQuery::new(swarm("s1")).limit(7).after(&c).unwrap(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 50);
    let mut dedup = seen.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), 50);
    let tagged = env.store.list(&a, &ListQuery::new(swarm("s1")).tag("t").limit(1000)).unwrap();
    assert_eq!(tagged.items.len(), 50);
    assert!(
        env.store.list(&a, &ListQuery::new(swarm("s1")).tag("other")).unwrap().items.is_empty()
    );
}

#[test]
fn limits_are_enforced_with_clear_errors() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    assert!(matches!(swarm_store::Key::new(""), Err(StoreError::Invalid(_))));
    assert!(matches!(swarm_store::Key::new("a\nb"), Err(StoreError::Invalid(_))));
    assert!(matches!(swarm_store::Key::new("x".repeat(1025)), Err(StoreError::Invalid(_))));
    assert!(matches!(Namespace::new("has space"), Err(StoreError::Invalid(_))));
    let big = Value::Bytes(vec![0; 4 * 1024 * 1024 + 1]);
    assert!(matches!(
        env.store.set(&a, &key("s1", "n", "big"), big, &SetOptions::new()),
        Err(StoreError::Invalid(_))
    ));
    let tags: Vec<String> = (0..33).map(|i| i.to_string()).collect();
    assert!(matches!(
        env.store.set(&a, &key("s1", "n", "t"), "v".into(), &SetOptions::new().tags(tags)),
        Err(StoreError::Invalid(_))
    ));
    let many: Vec<_> =
        (0..1001).map(|i| (key("s1", "n", &i.to_string()), Value::from("v"))).collect();
    assert!(matches!(env.store.mset(&a, many, &SetOptions::new()), Err(StoreError::Invalid(_))));
}

#[test]
fn encrypted_values_are_not_in_the_file_in_plaintext() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    let canary_private = "CANARY-private-4f1e9b";
    let canary_public = "CANARY-public-77aa01";
    env.store
        .set(&a, &key("s1", "n", "secret"), canary_private.into(), &SetOptions::new())
        .unwrap();
    env.store
        .set(
            &a,
            &key("s1", "n", "open"),
            canary_public.into(),
            &SetOptions::new().level(AclLevel::Public),
        )
        .unwrap();
    let path = env.path.clone();
    let mut env = env;
    env.reopen();
    env.store.shutdown().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    if let Ok(wal) = std::fs::read(path.with_extension("db-wal")) {
        bytes.extend(wal);
    }
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!contains(canary_private), "private plaintext found in the database file");
    assert!(
        contains(canary_public),
        "public values are stored in plaintext (the test reads the right file)"
    );
}

#[test]
fn a_ciphertext_moved_to_another_row_fails_to_open() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    let b = env.agent("ben", "s1", &[]);
    env.store.set(&a, &key("s1", "n", "mine"), "ann's secret".into(), &SetOptions::new()).unwrap();
    env.store.set(&b, &key("s1", "n", "bens"), "ben's secret".into(), &SetOptions::new()).unwrap();
    // An attacker with file access copies ann's ciphertext into ben's row, hoping ben's
    // reads will show it.
    let conn = raw(env.path());
    conn.execute(
        "UPDATE memory SET value = (SELECT value FROM memory WHERE key = 'mine') WHERE key = 'bens'",
        [],
    )
    .unwrap();
    let err = env.store.get(&b, &key("s1", "n", "bens")).unwrap_err();
    assert!(matches!(err, StoreError::Codec { .. }), "{err}");
    // Re-scoping by SQL (making ann's private record public) fails the same way.
    conn.execute("UPDATE memory SET acl_level = 4 WHERE key = 'mine'", []).unwrap();
    assert!(matches!(env.store.get(&b, &key("s1", "n", "mine")), Err(StoreError::Codec { .. })));
}

#[test]
fn tags_edited_into_something_else_than_strings_are_corruption_not_no_tags() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    let opts = SetOptions::new().level(AclLevel::Public).tags(["plan"]);
    env.store.set(&a, &key("s1", "n", "t"), "tagged".into(), &opts).unwrap();
    assert_eq!(env.store.get(&a, &key("s1", "n", "t")).unwrap().unwrap().meta.tags, ["plan"]);
    // A JSON array (the column's CHECK) that does not hold strings.
    raw(env.path()).execute("UPDATE memory SET tags = '[1, 2]' WHERE key = 't'", []).unwrap();
    let err = env.store.get(&a, &key("s1", "n", "t")).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("tags"), "{err}");
}

#[test]
fn a_plain_envelope_swapped_into_an_encrypted_level_is_refused() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    env.store
        .set(&a, &key("s1", "n", "p"), "public".into(), &SetOptions::new().level(AclLevel::Public))
        .unwrap();
    env.store.set(&a, &key("s1", "n", "s"), "secret".into(), &SetOptions::new()).unwrap();
    let conn = raw(env.path());
    conn.execute("UPDATE memory SET value = (SELECT value FROM memory WHERE key = 'p'), key_id = NULL WHERE key = 's'", [])
        .unwrap();
    assert!(matches!(env.store.get(&a, &key("s1", "n", "s")), Err(StoreError::Codec { .. })));
}

#[test]
fn a_wrong_key_is_a_clear_error_and_the_right_key_reads_everything_back() {
    let mut env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    for i in 0..20 {
        env.store
            .set(
                &a,
                &key("s1", "n", &format!("k{i}")),
                Value::Text(format!("value {i}")),
                &SetOptions::new(),
            )
            .unwrap();
    }
    env.store.shutdown().unwrap();
    let wrong = Arc::new(swarm_codec::Keyring::new(
        swarm_codec::KeyId::new(1),
        swarm_codec::Key::from_bytes(&[9; 32]).unwrap(),
    ));
    let err =
        Store::open(StoreConfig::file(&env.path).with_keyring(wrong).with_sweep_interval(None))
            .unwrap_err();
    assert!(matches!(err, OpenError::WrongKey { key_id: 1 }), "{err}");
    assert!(matches!(
        Store::open(StoreConfig::file(&env.path).with_sweep_interval(None)),
        Err(OpenError::KeyRequired)
    ));
    env.store = Store::open(config(&env.path, &env.clock)).unwrap();
    for i in 0..20 {
        let r = env.store.get(&a, &key("s1", "n", &format!("k{i}"))).unwrap().unwrap();
        assert_eq!(r.value, Value::Text(format!("value {i}")));
    }
}

#[test]
fn read_counts_are_written_back_once_each_in_short_transactions() {
    let mut env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    // More records than one write of read counts takes (256), so the flush needs several.
    let keys: Vec<_> = (0..600).map(|i| key("s1", "n", &format!("k{i:04}"))).collect();
    let items = keys.iter().map(|k| (k.clone(), Value::Integer(1))).collect();
    env.store.mset(&a, items, &SetOptions::new()).unwrap();
    for k in &keys {
        assert_eq!(env.store.get(&a, k).unwrap().unwrap().meta.access_count, 0);
    }
    env.store.get(&a, &keys[7]).unwrap().unwrap();
    env.store.get(&a, &keys[7]).unwrap().unwrap();
    let jobs = env.store.metrics().write_jobs;
    env.store.shutdown().unwrap();
    let flushed = env.store.metrics().write_jobs - jobs;
    assert!(flushed >= 3, "600 records' counts written in {flushed} write jobs");
    env.store = Store::open(config(&env.path, &env.clock)).unwrap();
    for (i, k) in keys.iter().enumerate() {
        let want = if i == 7 { 3 } else { 1 };
        assert_eq!(env.store.get(&a, k).unwrap().unwrap().meta.access_count, want, "{k}");
    }
    // Those reads are counted too, once each, and nothing is counted twice.
    env.store.shutdown().unwrap();
    env.store = Store::open(config(&env.path, &env.clock)).unwrap();
    for (i, k) in keys.iter().enumerate() {
        let want = if i == 7 { 4 } else { 2 };
        assert_eq!(env.store.get(&a, k).unwrap().unwrap().meta.access_count, want, "{k}");
    }
}

#[test]
fn large_values_are_compressed_and_round_trip() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    let text: String = (0..2000).map(|i| format!("{{\"step\":{i},\"status\":\"ok\"}},")).collect();
    let k = key("s1", "n", "log");
    env.store
        .set(&a, &k, Value::Text(text.clone()), &SetOptions::new().level(AclLevel::Swarm))
        .unwrap();
    let stored: i64 = raw(env.path())
        .query_row("SELECT length(value) FROM memory WHERE key = 'log'", [], |r| r.get(0))
        .unwrap();
    assert!((stored as usize) < text.len() / 2, "stored {stored} of {}", text.len());
    assert_eq!(env.store.get(&a, &k).unwrap().unwrap().value, Value::Text(text));
}

#[test]
fn reads_report_the_stored_size_and_encryption_of_every_kind_of_value() {
    let env = Env::new();
    let red = env.team("red", "s1");
    let a = env.agent("ann", "s1", &[&red]);
    let long: String = (0..2000).map(|i| format!("{{\"step\":{i}}},")).collect();
    let cases = [
        ("private-text", Value::Text("secret".into()), SetOptions::new()),
        ("private-long", Value::Text(long.clone()), SetOptions::new()),
        (
            "public-bytes",
            Value::Bytes(vec![0, 1, 2, 255]),
            SetOptions::new().level(AclLevel::Public),
        ),
        ("public-long", Value::Text(long), SetOptions::new().level(AclLevel::Public)),
        ("swarm-json", Value::Json(serde_json::json!({"a": [1, 2]})), swarm_level()),
        ("team-int", Value::Integer(-42), SetOptions::new().level(AclLevel::Team).team(red)),
    ];
    for (name, value, opts) in &cases {
        env.store.set(&a, &key("s1", "n", name), value.clone(), opts).unwrap();
    }
    let db = raw(env.path());
    for (name, value, _) in &cases {
        let (size, key_id): (i64, Option<i64>) = db
            .query_row("SELECT size, key_id FROM memory WHERE key = ?1", [name], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        let k = key("s1", "n", name);
        let got = env.store.get(&a, &k).unwrap().unwrap();
        assert_eq!(&got.value, value, "{name}");
        assert_eq!(got.meta.size, size as u64, "{name}: size");
        assert_eq!(got.meta.encrypted, key_id.is_some(), "{name}: encrypted");
        let listed = env.store.mget(&a, std::slice::from_ref(&k)).unwrap().remove(0).unwrap();
        assert_eq!(listed.meta, got.meta, "{name}: mget agrees with get");
    }
    assert!(env.store.get(&a, &key("s1", "n", "private-text")).unwrap().unwrap().meta.encrypted);
    assert!(!env.store.get(&a, &key("s1", "n", "public-long")).unwrap().unwrap().meta.encrypted);
    // The owner reads the same whoever reads it (the owner's own reads share its id).
    let ann = AgentId::new("ann").unwrap();
    let b = env.agent("ben", "s1", &[]);
    for who in [&a, &b, &Identity::System] {
        let got = env.store.get(who, &key("s1", "n", "public-long")).unwrap().unwrap();
        assert_eq!(got.meta.owner.as_ref(), Some(&ann), "{who:?}");
    }
}

#[test]
fn clear_removes_only_what_the_principal_may_delete() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    let b = env.agent("ben", "s1", &[]);
    env.store.set(&a, &key("s1", "c", "a1"), "x".into(), &SetOptions::new()).unwrap();
    env.store.set(&a, &key("s1", "c", "a2"), "x".into(), &swarm_level()).unwrap();
    env.store.set(&b, &key("s1", "c", "b1"), "x".into(), &SetOptions::new()).unwrap();
    let n = env.store.clear(&a, &swarm("s1"), &Namespace::new("c").unwrap()).unwrap();
    assert_eq!(n, 2, "ann's private record and the shared swarm record");
    assert!(
        env.store.get(&b, &key("s1", "c", "b1")).unwrap().is_some(),
        "ben's private record survives"
    );
    assert!(matches!(env.store.clear_all(&a), Err(StoreError::PermissionDenied(_))));
    assert_eq!(env.store.clear_all(&Identity::System).unwrap(), 1);
}

#[test]
fn watchers_see_changes_in_order_and_never_values() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    let head = env.store.change_head().unwrap();
    let mut w = env.store.watch(
        &a,
        ChangeFilter::swarm(swarm("s1")).namespace(Namespace::new("w").unwrap()),
        head,
    );
    env.store.set(&a, &key("s1", "w", "k1"), "secret value".into(), &SetOptions::new()).unwrap();
    env.store.set(&a, &key("s1", "other", "k2"), "v".into(), &SetOptions::new()).unwrap();
    env.store.delete(&a, &key("s1", "w", "k1"), None).unwrap();
    let c1 = w.next_timeout(Duration::from_secs(2)).unwrap().unwrap();
    let c2 = w.next_timeout(Duration::from_secs(2)).unwrap().unwrap();
    assert_eq!((c1.op.as_str(), c2.op.as_str()), ("set", "delete"));
    assert!(c2.seq > c1.seq);
    assert!(!serde_json::to_string(&c1).unwrap().contains("secret value"));
    assert!(w.next_timeout(Duration::from_millis(50)).unwrap().is_none());
    // A new watcher resumes from a cursor.
    let mut again = env.store.watch(&a, ChangeFilter::swarm(swarm("s1")), c1.seq);
    assert_eq!(
        again.next_timeout(Duration::from_secs(1)).unwrap().unwrap().key.key().as_str(),
        "k2"
    );
}

#[test]
fn feed_versions_match_records_and_a_position_past_the_head_is_a_gap() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    let head = env.store.change_head().unwrap();
    let w = env.store.set(&a, &key("s1", "f", "k"), "v".into(), &SetOptions::new()).unwrap();
    let page = env.store.changes_since(&a, head, &ChangeFilter::swarm(swarm("s1")), 10).unwrap();
    assert_eq!(page.changes.len(), 1);
    assert_eq!(page.changes[0].version, w.version);
    assert!(!page.gap);
    // A cursor from a database that went backwards (say, restored from an older backup)
    // is reported, and the caller is moved back to the real head.
    let now = env.store.change_head().unwrap();
    let page =
        env.store.changes_since(&a, now + 1000, &ChangeFilter::swarm(swarm("s1")), 10).unwrap();
    assert!(page.gap);
    assert_eq!(page.cursor, now);
    let mut watch = env.store.watch(&a, ChangeFilter::swarm(swarm("s1")), now + 1000);
    assert!(watch.next_timeout(Duration::from_millis(50)).unwrap().is_none());
    assert!(watch.missed_changes());
    env.store.set(&a, &key("s1", "f", "k2"), "v".into(), &SetOptions::new()).unwrap();
    let c = watch.next_timeout(Duration::from_secs(2)).unwrap().unwrap();
    assert_eq!(c.key.key().as_str(), "k2");
}

#[test]
fn a_watcher_is_woken_by_a_write_from_another_thread() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    let mut w =
        env.store.watch(&a, ChangeFilter::swarm(swarm("s1")), env.store.change_head().unwrap());
    let store = env.store.clone();
    let a2 = a.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        store.set(&a2, &key("s1", "n", "late"), "x".into(), &SetOptions::new()).unwrap();
    });
    let c = w.next_timeout(Duration::from_secs(5)).unwrap();
    t.join().unwrap();
    assert_eq!(c.unwrap().key.key().as_str(), "late");
}

#[test]
fn writing_into_a_missing_swarm_or_team_is_a_clear_error() {
    let env = Env::new();
    let e = env
        .store
        .set(&Identity::System, &key("nowhere", "n", "k"), "v".into(), &swarm_level())
        .unwrap_err();
    assert_eq!(e.to_string(), "swarm nowhere not found");
    let opts =
        SetOptions::new().level(AclLevel::Team).team(swarm_acl::TeamId::new("ghosts").unwrap());
    let e = env.store.set(&Identity::System, &key("s1", "n", "k"), "v".into(), &opts).unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
}

#[test]
fn operations_after_shutdown_fail_cleanly() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    env.store.shutdown().unwrap();
    env.store.shutdown().unwrap();
    assert!(matches!(env.store.get(&a, &key("s1", "n", "k")), Err(StoreError::Closed)));
    assert!(matches!(
        env.store.set(&a, &key("s1", "n", "k"), "v".into(), &SetOptions::new()),
        Err(StoreError::Closed)
    ));
}

#[test]
fn more_reading_threads_than_read_connections_all_get_their_answers() {
    // Two connections for eight threads: a thread that finds none free must be handed the
    // next one given back, not wait out the pool's 30 s timeout (and fail the unwrap).
    let env = Env::with_config(|c| c.with_readers(2));
    let a = env.agent("ann", "s1", &[]);
    let k = key("s1", "n", "shared");
    env.store.set(&a, &k, Value::Integer(7), &swarm_level()).unwrap();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..500 {
                    let got = env.store.get(&a, &k).unwrap().unwrap();
                    assert_eq!(got.value, Value::Integer(7));
                }
            });
        }
    });
}

#[test]
fn concurrent_writers_from_many_threads_each_get_their_own_result() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    let b = env.agent("ben", "s1", &[]);
    let contested = key("s1", "n", "bens");
    env.store.set(&b, &contested, "ben's".into(), &SetOptions::new()).unwrap();
    let results: Vec<(bool, Result<(), String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let (store, a, contested) = (env.store.clone(), a.clone(), contested.clone());
                s.spawn(move || {
                    // Odd threads try to overwrite ben's private record and must fail alone.
                    let bad = i % 2 == 1;
                    let k = if bad { contested } else { key("s1", "n", &format!("t{i}")) };
                    let r = store
                        .set(&a, &k, "x".into(), &SetOptions::new())
                        .map(|_| ())
                        .map_err(|e| e.to_string());
                    (bad, r)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (bad, r) in results {
        assert_eq!(r.is_err(), bad, "{r:?}");
    }
    let stats = env.store.stats(&a, None).unwrap();
    assert_eq!(stats.records, 8);
}

#[test]
fn the_key_report_counts_and_opens_sealed_records() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    for i in 0..3 {
        env.store
            .set(&a, &key("s1", "n", &format!("p{i}")), "secret".into(), &SetOptions::new())
            .unwrap();
    }
    env.store.set(&a, &key("s1", "n", "pub"), "open".into(), &swarm_level()).unwrap();
    let r = env.store.key_report(&Identity::System).unwrap();
    assert_eq!(r.active, Some(1));
    assert_eq!(r.keys.len(), 1);
    assert_eq!(
        (r.keys[0].key_id, r.keys[0].records, r.keys[0].available, r.keys[0].sample_opens),
        (1, 3, true, Some(true))
    );
    assert_eq!(r.plaintext_at_encrypted_levels, 0);
    assert!(env.store.key_report(&a).is_err());
}
