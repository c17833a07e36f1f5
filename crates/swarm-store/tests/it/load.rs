//! Several OS processes on one database file, and processes killed mid-write.
//!
//! The test binary re-invokes itself: `child_process` below is an entry point that does
//! nothing unless `SWARM_STORE_CHILD` names a role, in which case it is a child of one of
//! the tests here.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use swarm_acl::{AgentId, Identity};
use swarm_store::{SetOptions, Store, Value};

use crate::fixtures::{Env, key, keyring, raw};

fn child(role: &str, db: &std::path::Path, vars: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "load::child_process", "--nocapture", "--test-threads", "1"])
        .env("SWARM_STORE_CHILD", role)
        .env("SWARM_CHILD_DB", db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Child entry point (see the module docs).
#[test]
fn child_process() {
    let Ok(role) = std::env::var("SWARM_STORE_CHILD") else { return };
    let db = std::env::var("SWARM_CHILD_DB").unwrap();
    // The rotating child holds the new key beside the old one (key 2 active).
    let ring = if role == "rotate" { crate::rotation::keyring_1_2() } else { keyring() };
    let store = Store::open(
        swarm_store::StoreConfig::file(&db).with_keyring(ring).with_sweep_interval(None),
    )
    .unwrap_or_else(|e| fail(&e.to_string()));
    let ann = Identity::Agent(AgentId::new("ann").unwrap());
    let id: u64 = std::env::var("SWARM_CHILD_ID").unwrap_or_default().parse().unwrap_or(0);
    match role.as_str() {
        "writer" => {
            let n: u64 = std::env::var("SWARM_CHILD_N").unwrap().parse().unwrap();
            for i in 0..n {
                let k = key("s1", "mp", &format!("p{id}-{i}"));
                if let Err(e) = store.set(&ann, &k, Value::Integer(i as i64), &SetOptions::new()) {
                    fail(&format!("set: {e}"));
                }
                if let Err(e) = store.incr(&ann, &key("s1", "mp", "counter"), 1, &SetOptions::new())
                {
                    fail(&format!("incr: {e}"));
                }
            }
            store.shutdown().unwrap_or_else(|e| fail(&e.to_string()));
        }
        "crash" => {
            let start: u64 = std::env::var("SWARM_CHILD_START").unwrap().parse().unwrap();
            let mut out = std::io::stdout().lock();
            for i in start.. {
                let k = key("s1", "crash", &format!("c{i}"));
                if let Err(e) =
                    store.set(&ann, &k, Value::Text(format!("value {i}")), &SetOptions::new())
                {
                    fail(&format!("set: {e}"));
                }
                // Acknowledged: the commit returned. Only now may the parent count on it.
                use std::io::Write as _;
                let _ = writeln!(out, "ack {i}");
                let _ = out.flush();
            }
        }
        "rotate" => {
            // Small batches, each announced once committed, slowly enough that the parent
            // kills the process in the middle of the rotation. Well past the point where
            // the parent kills it (10 done), the child waits for the kill instead of going
            // on: a parent held up by a busy machine still finds the rotation unfinished.
            let mut out = std::io::stdout().lock();
            let r = store.rotate_keys(&Identity::System, 2, |p| {
                use std::io::Write as _;
                let _ = writeln!(out, "progress {}", p.done);
                let _ = out.flush();
                let pause = if p.done >= 40 { 60_000 } else { 5 };
                std::thread::sleep(Duration::from_millis(pause));
            });
            if let Err(e) = r {
                fail(&format!("rotate: {e}"));
            }
        }
        other => fail(&format!("unknown role {other}")),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("child failed: {msg}");
    std::process::exit(3)
}

#[test]
fn four_processes_writing_and_incrementing_one_file_lose_nothing() {
    let env = Env::new();
    env.agent("ann", "s1", &[]);
    let n = 150u64;
    let children: Vec<Child> = (0..4)
        .map(|id| {
            child(
                "writer",
                env.path(),
                &[("SWARM_CHILD_ID", id.to_string()), ("SWARM_CHILD_N", n.to_string())],
            )
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed: {stderr}");
        assert!(
            !stderr.to_lowercase().contains("locked"),
            "a lock error reached a caller: {stderr}"
        );
    }
    let ann = Identity::Agent(AgentId::new("ann").unwrap());
    for id in 0..4 {
        for i in 0..n {
            let r = env.store.get(&ann, &key("s1", "mp", &format!("p{id}-{i}"))).unwrap();
            assert_eq!(r.map(|r| r.value), Some(Value::Integer(i as i64)), "p{id}-{i} lost");
        }
    }
    let counter = env.store.get(&ann, &key("s1", "mp", "counter")).unwrap().unwrap();
    assert_eq!(counter.value, Value::Integer(4 * n as i64), "increments lost");
    assert!(env.store.verify_audit().unwrap().is_intact());
}

#[test]
fn a_process_killed_mid_write_loses_no_acknowledged_write_and_corrupts_nothing() {
    let env = Env::new();
    env.agent("ann", "s1", &[]);
    let ann = Identity::Agent(AgentId::new("ann").unwrap());
    let mut next = 0u64;
    let mut acked_total = 0usize;
    for round in 0..5u64 {
        let mut c = child("crash", env.path(), &[("SWARM_CHILD_START", next.to_string())]);
        let stdout = c.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(n) = line.strip_prefix("ack ").and_then(|n| n.parse::<u64>().ok()) {
                    let _ = tx.send(n);
                }
            }
        });
        // Let it write for a while after its first acknowledgement, then SIGKILL it.
        let first =
            rx.recv_timeout(Duration::from_secs(30)).expect("child never acknowledged a write");
        std::thread::sleep(Duration::from_millis(30 + (round * 47) % 200));
        c.kill().unwrap();
        let _ = c.wait();
        reader.join().unwrap();
        let mut acked = vec![first];
        acked.extend(rx.try_iter());
        acked_total += acked.len();
        // The database opens, passes an integrity check, its audit chain verifies, and
        // every acknowledged write is there.
        assert_eq!(
            raw(env.path())
                .query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
                .unwrap(),
            "ok"
        );
        let reopened = Store::open(crate::fixtures::config(env.path(), &env.clock)).unwrap();
        assert!(reopened.verify_audit().unwrap().is_intact(), "round {round}");
        for i in &acked {
            let r = reopened.get(&ann, &key("s1", "crash", &format!("c{i}"))).unwrap();
            assert_eq!(
                r.map(|r| r.value),
                Some(Value::Text(format!("value {i}"))),
                "round {round}: acknowledged c{i} lost"
            );
        }
        reopened.shutdown().unwrap();
        next = acked.iter().max().unwrap() + 1_000;
    }
    assert!(acked_total > 5);
}

#[test]
fn a_rotation_killed_midway_resumes_and_retires_the_old_key() {
    use crate::rotation::{assert_readable, keyring_1_2, keyring_2, open, populate, sealed_under};
    let env = Env::new();
    let w = populate(&env, 60);
    assert_eq!(sealed_under(env.path(), 1), [40, 40, 40]);
    let mut c = child("rotate", env.path(), &[]);
    let stdout = c.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("progress ").and_then(|n| n.parse::<u64>().ok()) {
                let _ = tx.send(n);
            }
        }
    });
    // Kill it once a few batches are committed: SIGKILL, mid-transaction or between two.
    loop {
        let done = rx.recv_timeout(Duration::from_secs(30)).expect("the rotation never progressed");
        if done >= 10 {
            break;
        }
    }
    c.kill().unwrap();
    let status = c.wait().unwrap();
    reader.join().unwrap();
    assert!(!status.success(), "the child was killed before it finished");
    assert_eq!(
        raw(env.path()).query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0)).unwrap(),
        "ok"
    );
    let left = sealed_under(env.path(), 1);
    assert!(left.iter().sum::<usize>() > 0 && left.iter().sum::<usize>() < 120, "{left:?}");
    // A new run picks up where the killed one stopped; then the old key can go.
    let resumed = open(env.path(), keyring_1_2());
    assert_readable(&resumed, &w);
    let r = resumed.rotate_keys(&Identity::System, 50, |_| {}).unwrap();
    assert_eq!(r.remaining, 0);
    assert_eq!(r.reencrypted as usize, left.iter().sum::<usize>());
    assert!(resumed.verify_audit().unwrap().is_intact());
    resumed.shutdown().unwrap();
    assert_eq!(sealed_under(env.path(), 1), [0, 0, 0]);
    let only2 = open(env.path(), keyring_2());
    assert_readable(&only2, &w);
}
