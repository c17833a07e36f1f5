//! Backup, restore, optimize, key rotation and metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use swarm_acl::{AclLevel, Identity};
use swarm_codec::{Key, KeyId, Keyring};
use swarm_store::{BackupMethod, Op, SetOptions, Store, StoreConfig, Value, restore};

use crate::fixtures::{Env, KEY_HEX, config, key, raw};

#[test]
fn a_backup_taken_under_write_load_restores_to_a_consistent_verifiable_database() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    for i in 0..500 {
        env.store
            .set(&a, &key("s1", "n", &format!("seed{i}")), Value::Integer(i), &SetOptions::new())
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let writer = {
        let (store, a, stop) = (env.store.clone(), a.clone(), Arc::clone(&stop));
        let progress = Arc::clone(&progress);
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                store
                    .set(
                        &a,
                        &key("s1", "load", &format!("w{n}")),
                        Value::from("x".repeat(200)),
                        &SetOptions::new(),
                    )
                    .unwrap();
                store.incr(&a, &key("s1", "load", "counter"), 1, &SetOptions::new()).unwrap();
                n += 1;
                progress.store(n, Ordering::Relaxed);
            }
            n
        })
    };
    // The writer is under way before the backup starts, however late it was scheduled.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while progress.load(Ordering::Relaxed) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let dest = env.path().with_file_name("backup.db");
    let mut seen = Vec::new();
    let report =
        env.store.backup(&Identity::System, &dest, BackupMethod::Online, |p| seen.push(p)).unwrap();
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(written > 0, "writes went on during the backup");
    assert_eq!(report.integrity, "ok");
    assert!(
        !seen.is_empty() && seen.last().unwrap().done == seen.last().unwrap().total,
        "progress reported"
    );
    // Backups keep encrypted values encrypted and contain no key.
    let bytes = std::fs::read(&dest).unwrap();
    assert!(!bytes.windows(KEY_HEX.len()).any(|w| w == KEY_HEX.as_bytes()));
    // Restore into a new path and open it with the same key: a consistent snapshot, with
    // every seeded record, a counter matching the number of writes it saw, and an intact
    // audit chain.
    let restored_path = env.path().with_file_name("restored.db");
    restore(&dest, &restored_path, |_| {}).unwrap();
    let restored = Store::open(config(&restored_path, &env.clock)).unwrap();
    for i in [0, 250, 499] {
        let r = restored.get(&a, &key("s1", "n", &format!("seed{i}"))).unwrap().unwrap();
        assert_eq!(r.value, Value::Integer(i));
    }
    let counter =
        restored.get(&a, &key("s1", "load", "counter")).unwrap().map_or(0, |r| match r.value {
            Value::Integer(n) => n,
            _ => panic!(),
        });
    let copies = restored
        .keys(
            &a,
            &crate::fixtures::swarm("s1"),
            &swarm_store::Namespace::new("load").unwrap(),
            &swarm_store::KeyPattern::parse("w*").unwrap(),
            100_000,
        )
        .unwrap();
    // The writer sets w{n} and then increments the counter, in two transactions: a
    // consistent snapshot has every write up to some point and at most one set ahead of
    // its increment.
    let gap = copies.len() as i64 - counter;
    assert!(gap == 0 || gap == 1, "torn snapshot: {} writes but counter {counter}", copies.len());
    for n in 0..copies.len() {
        assert!(
            copies.iter().any(|k| k.as_str() == format!("w{n}")),
            "w{n} missing: the snapshot has a hole"
        );
    }
    assert!(restored.verify_audit().unwrap().is_intact());
    assert!(restore(&dest, &restored_path, |_| {}).is_err(), "restore never overwrites");
    // VACUUM INTO works too.
    let compact = env.path().with_file_name("compact.db");
    let r =
        env.store.backup(&Identity::System, &compact, BackupMethod::VacuumInto, |_| {}).unwrap();
    assert_eq!(r.integrity, "ok");
    // Agents cannot back up.
    assert!(
        env.store
            .backup(&a, &env.path().with_file_name("x.db"), BackupMethod::Online, |_| {})
            .is_err()
    );
}

/// Entries of `dir` whose name mentions staging: what a backup or restore left behind.
fn staging_left(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("staging"))
        .collect()
}

#[cfg(unix)]
#[test]
fn a_backup_never_writes_through_a_link_at_its_destination() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    env.store.set(&a, &key("s1", "n", "k"), Value::from("v"), &SetOptions::new()).unwrap();
    let dir = env.path().parent().unwrap().to_path_buf();
    for (i, method) in [BackupMethod::Online, BackupMethod::VacuumInto].into_iter().enumerate() {
        // `exists()` is false for a dangling link, and SQLite would follow it and create
        // the file it points to.
        let victim = dir.join(format!("victim{i}.db"));
        let link = dir.join(format!("link{i}.db"));
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = env.store.backup(&Identity::System, &link, method, |_| {}).unwrap_err();
        assert!(e.to_string().contains("exists"), "{method:?}: {e}");
        assert!(!victim.exists(), "{method:?} wrote through the link");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    }
    // A WAL or journal file already beside the destination is refused as well: SQLite
    // would take it for the new database's own.
    for suffix in ["-wal", "-shm", "-journal"] {
        let dest = dir.join(format!("planted{suffix}.db"));
        let mut companion = dest.as_os_str().to_owned();
        companion.push(suffix);
        std::fs::write(&companion, b"planted").unwrap();
        let e = env.store.backup(&Identity::System, &dest, BackupMethod::Online, |_| {});
        let e = e.unwrap_err().to_string();
        assert!(e.contains(suffix), "{suffix}: {e}");
        assert!(!dest.exists());
        assert_eq!(std::fs::read(&companion).unwrap(), b"planted");
    }
    assert_eq!(staging_left(&dir), Vec::<String>::new());
}

#[cfg(unix)]
#[test]
fn a_link_planted_while_a_restore_runs_never_redirects_it() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    for i in 0..200 {
        let k = key("s1", "n", &format!("k{i}"));
        env.store.set(&a, &k, Value::from("x".repeat(100)), &SetOptions::new()).unwrap();
    }
    let dir = env.path().parent().unwrap().to_path_buf();
    let backup = dir.join("backup.db");
    env.store.backup(&Identity::System, &backup, BackupMethod::Online, |_| {}).unwrap();
    // Another database, which the restore must not touch.
    let victim = dir.join("victim.db");
    env.store.backup(&Identity::System, &victim, BackupMethod::Online, |_| {}).unwrap();
    let before = std::fs::read(&victim).unwrap();

    // While pages are copied (after every check of the destination), someone replaces
    // whatever is at the destination by a link to the victim.
    let target = dir.join("restored.db");
    let mut planted = false;
    let result = restore(&backup, &target, |_| {
        if !planted {
            planted = true;
            let _ = std::fs::remove_file(&target);
            std::os::unix::fs::symlink(&victim, &target).unwrap();
        }
    });
    assert!(planted);
    let e = result.unwrap_err().to_string();
    assert!(e.contains("exists"), "{e}");
    assert_eq!(std::fs::read(&victim).unwrap(), before, "the victim was written");
    assert!(std::fs::symlink_metadata(&target).unwrap().file_type().is_symlink(), "left as is");
    for suffix in ["-wal", "-shm"] {
        let mut p = victim.as_os_str().to_owned();
        p.push(suffix);
        assert!(!std::path::Path::new(&p).exists(), "victim{suffix} appeared");
    }
    // A WAL planted beside the destination would be replayed into the restored copy.
    let fresh = dir.join("fresh.db");
    std::fs::write(dir.join("fresh.db-wal"), b"planted").unwrap();
    let e = restore(&backup, &fresh, |_| {}).unwrap_err().to_string();
    assert!(e.contains("fresh.db-wal"), "{e}");
    assert!(!fresh.exists());
    std::fs::remove_file(dir.join("fresh.db-wal")).unwrap();
    // Without interference the restore goes through, and leaves no staging directory.
    let r = restore(&backup, &fresh, |_| {}).unwrap();
    assert_eq!(r.integrity, "ok");
    assert_eq!(r.bytes, std::fs::metadata(&fresh).unwrap().len());
    assert_eq!(staging_left(&dir), Vec::<String>::new());
    let restored = Store::open(config(&fresh, &env.clock)).unwrap();
    assert!(restored.get(&a, &key("s1", "n", "k7")).unwrap().is_some());
}

#[test]
fn optimize_checkpoints_analyzes_and_purges() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    for i in 0..50 {
        env.store
            .setex(
                &a,
                &key("s1", "n", &format!("t{i}")),
                std::time::Duration::from_secs(1),
                "v".into(),
                &SetOptions::new(),
            )
            .unwrap();
    }
    env.clock.advance(1_000);
    let r = env.store.optimize(&Identity::System).unwrap();
    assert_eq!(r.expired_purged, 50);
    assert!(r.analyzed);
    assert!(r.wal_bytes_before > 0 && r.wal_bytes_after == 0, "{r:?}");
}

#[test]
fn key_rotation_is_online_resumable_and_encrypts_old_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rot.db");
    let clock =
        swarm_store::ManualClock::new(swarm_acl::Timestamp::from_millis(crate::fixtures::T0));
    // Start without encryption, as an operator might have.
    let plain =
        Store::open(StoreConfig::file(&path).with_encrypt_up_to(None).with_sweep_interval(None))
            .unwrap();
    plain.ensure_swarm(&Identity::System, &crate::fixtures::swarm("s1")).unwrap();
    plain
        .insert_agent(
            &Identity::System,
            swarm_store::NewAgent {
                id: swarm_acl::AgentId::new("ann").unwrap(),
                swarm: crate::fixtures::swarm("s1"),
                name: "ann".into(),
                agent_type: "t".into(),
                capabilities: vec![],
                metadata: serde_json::json!({}),
                token_hash: [0; 32],
                teams: vec![],
                grants: swarm_acl::Grant::defaults(),
            },
        )
        .unwrap();
    let a = Identity::Agent(swarm_acl::AgentId::new("ann").unwrap());
    for i in 0..30 {
        plain
            .set(
                &a,
                &key("s1", "n", &format!("old{i}")),
                "written in plaintext".into(),
                &SetOptions::new(),
            )
            .unwrap();
    }
    plain.shutdown().unwrap();
    // Key 1: encrypt what was plaintext; new writes are sealed with key 1.
    let ring1 = Arc::new(Keyring::new(KeyId::new(1), Key::from_hex(KEY_HEX).unwrap()));
    let s1 = Store::open(
        StoreConfig::file(&path)
            .with_keyring(ring1)
            .with_clock(Arc::new(clock.clone()))
            .with_sweep_interval(None),
    )
    .unwrap();
    assert!(
        s1.get(&a, &key("s1", "n", "old0")).is_err(),
        "plaintext at an encrypted level is refused until encrypted"
    );
    assert_eq!(s1.key_report(&Identity::System).unwrap().plaintext_at_encrypted_levels, 30);
    let r = s1.rotate_keys(&Identity::System, 7, |_| {}).unwrap();
    assert_eq!((r.encrypted, r.remaining), (30, 0));
    for i in 0..20 {
        s1.set(
            &a,
            &key("s1", "n", &format!("k1-{i}")),
            "sealed with key 1".into(),
            &SetOptions::new(),
        )
        .unwrap();
    }
    s1.shutdown().unwrap();
    // Key 2 becomes active; rotate part of the way, "crash", reopen, finish.
    let mut ring2 = Keyring::new(KeyId::new(1), Key::from_hex(KEY_HEX).unwrap());
    ring2.insert(KeyId::new(2), Key::from_bytes(&[42; 32]).unwrap()).unwrap();
    ring2.set_active(KeyId::new(2)).unwrap();
    let ring2 = Arc::new(ring2);
    let s2 = Store::open(
        StoreConfig::file(&path).with_keyring(Arc::clone(&ring2)).with_sweep_interval(None),
    )
    .unwrap();
    let partial = s2.rotate_keys_bounded(&Identity::System, 10, 2, |_| {}).unwrap();
    assert_eq!((partial.reencrypted, partial.remaining), (20, 30));
    // Readers are not blocked meanwhile and see every value, whichever key seals it.
    for i in 0..30 {
        assert!(s2.get(&a, &key("s1", "n", &format!("old{i}"))).unwrap().is_some());
    }
    s2.shutdown().unwrap();
    let s3 = Store::open(
        StoreConfig::file(&path).with_keyring(Arc::clone(&ring2)).with_sweep_interval(None),
    )
    .unwrap();
    let mut progress = Vec::new();
    let rest = s3.rotate_keys(&Identity::System, 10, |p| progress.push(p)).unwrap();
    assert_eq!((rest.reencrypted, rest.remaining), (30, 0));
    assert_eq!(progress.last().unwrap().done, 30);
    let report = s3.key_report(&Identity::System).unwrap();
    assert_eq!(
        report.keys.iter().map(|k| (k.key_id, k.records)).collect::<Vec<_>>(),
        vec![(2, 50)]
    );
    s3.shutdown().unwrap();
    // Key 1 can now be dropped from the keyring.
    let only2 = Arc::new(Keyring::new(KeyId::new(2), Key::from_bytes(&[42; 32]).unwrap()));
    let s4 = Store::open(StoreConfig::file(&path).with_keyring(only2).with_sweep_interval(None))
        .unwrap();
    for i in 0..20 {
        let r = s4.get(&a, &key("s1", "n", &format!("k1-{i}"))).unwrap().unwrap();
        assert_eq!(r.value, Value::from("sealed with key 1"));
    }
    let _ = AclLevel::Private;
}

#[test]
fn metrics_count_operations_and_export_prometheus() {
    let env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    for i in 0..10 {
        env.store
            .set(&a, &key("s1", "n", &format!("k{i}")), "v".into(), &SetOptions::new())
            .unwrap();
        env.store.get(&a, &key("s1", "n", &format!("k{i}"))).unwrap();
    }
    let _ = env.store.set(
        &a,
        &key("s1", "n", "k0"),
        "v".into(),
        &SetOptions::new().if_version(999_999),
    );
    let m = env.store.metrics();
    let op = |o: Op| m.ops.iter().find(|x| x.op == o).unwrap().clone();
    assert_eq!(op(Op::Set).count, 11);
    assert_eq!(op(Op::Set).errors, 1);
    assert_eq!(op(Op::Get).count, 10);
    assert!(op(Op::Get).p50_ns > 0 && op(Op::Get).p99_ns >= op(Op::Get).p50_ns);
    assert_eq!(m.conflicts, 1);
    assert!(m.commit_groups >= 11 && m.db_bytes > 0);
    let text = m.to_prometheus();
    assert!(text.contains("swarm_memory_operations_total{op=\"set\"} 11"), "{text}");
}

#[test]
fn metrics_are_persisted_with_retention() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let store = Store::open(
        StoreConfig::file(&path)
            .with_encrypt_up_to(None)
            .with_metrics_interval(Some(std::time::Duration::from_millis(300))),
    )
    .unwrap();
    store.ensure_swarm(&Identity::System, &crate::fixtures::swarm("s1")).unwrap();
    store
        .set(
            &Identity::System,
            &key("s1", "n", "k"),
            "v".into(),
            &SetOptions::new().level(AclLevel::Swarm),
        )
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    store.shutdown().unwrap();
    let n: i64 = raw(&path)
        .query_row("SELECT count(*) FROM metrics WHERE name = 'operation_latency_ns' AND labels = '{\"op\":\"set\"}'", [], |r| r.get(0))
        .unwrap();
    assert!(n >= 1, "{n}");
}

#[test]
fn persisted_metrics_are_read_back_filtered_and_bounded() {
    use swarm_store::{MetricKind, MetricsQuery, StoreError};
    let mut env = Env::new();
    let a = env.agent("ann", "s1", &[]);
    let history = |env: &Env, q: &MetricsQuery| env.store.metrics_history(&Identity::System, q);
    assert_eq!(history(&env, &MetricsQuery::new()).unwrap(), [], "nothing persisted yet");
    // Shutting down persists a snapshot; two sessions make two.
    env.store.set(&a, &key("s1", "n", "k"), "v".into(), &SetOptions::new()).unwrap();
    env.reopen();
    env.clock.advance(60_000);
    for i in 0..3 {
        env.store
            .set(&a, &key("s1", "n", &format!("k{i}")), "v".into(), &SetOptions::new())
            .unwrap();
    }
    env.store.get(&a, &key("s1", "n", "k")).unwrap();
    env.reopen();
    let t0 = swarm_acl::Timestamp::from_millis(crate::fixtures::T0);
    let t1 = t0.plus_millis(60_000);

    let ops = history(&env, &MetricsQuery::new().name("operations")).unwrap();
    let sets: Vec<(i64, f64)> = ops
        .iter()
        .filter(|s| s.labels.get("op").and_then(|v| v.as_str()) == Some("set"))
        .map(|s| (s.at.as_millis(), s.value))
        .collect();
    // Counters are per process: one set in the first session, three in the second.
    assert_eq!(sets, [(t0.as_millis(), 1.0), (t1.as_millis(), 3.0)]);
    assert!(ops.iter().all(|s| s.kind == MetricKind::Counter && s.name == "operations"));
    assert!(ops.windows(2).all(|w| w[0].at <= w[1].at), "oldest first");
    let latency = history(&env, &MetricsQuery::new().name("operation_latency_ns")).unwrap();
    let get = latency.iter().find(|s| s.labels["op"] == "get").unwrap();
    assert_eq!((get.kind, get.count), (MetricKind::Histogram, Some(1)));
    assert!(get.p50.is_some() && get.p99 >= get.p50);
    // Since: only the second snapshot.
    let recent = history(&env, &MetricsQuery::new().since(t1)).unwrap();
    assert!(!recent.is_empty() && recent.iter().all(|s| s.at == t1));
    assert!(recent.iter().any(|s| s.name == "database_bytes" && s.kind == MetricKind::Gauge));
    // Limit: the newest samples, still oldest first.
    let all = history(&env, &MetricsQuery::new()).unwrap();
    let last2 = history(&env, &MetricsQuery::new().limit(2)).unwrap();
    assert_eq!(last2, all[all.len() - 2..]);
    // Bounded and checked; the system principal only.
    for bad in [
        MetricsQuery::new().limit(0),
        MetricsQuery::new().limit(10_001),
        MetricsQuery::new().name(""),
    ] {
        let e = history(&env, &bad).unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    }
    let e = env.store.metrics_history(&a, &MetricsQuery::new()).unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied(_)), "{e}");
}
