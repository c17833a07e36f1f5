//! Key rotation covers every sealed column (memory values, artifact contents, event
//! payloads), resumes after an interruption, and leaves no row under the old key, so the
//! old key can be dropped; the key report counts every kind.

use std::sync::Arc;

use serde_json::json;
use swarm_acl::{AclLevel, Identity};
use swarm_codec::{Key, KeyId, Keyring};
use swarm_store::{
    ArtifactSpec, EventSpec, SealedCounts, SealedKind, SetOptions, Store, StoreConfig, StoreError,
    Value,
};

use crate::fixtures::{Env, KEY_HEX, contains, key, raw};

/// Key 1 (the test key) and key 2, key 2 active.
pub(crate) fn keyring_1_2() -> Arc<Keyring> {
    let mut ring = Keyring::new(KeyId::new(1), Key::from_hex(KEY_HEX).unwrap());
    ring.insert(KeyId::new(2), Key::from_bytes(&[42; 32]).unwrap()).unwrap();
    ring.set_active(KeyId::new(2)).unwrap();
    Arc::new(ring)
}

/// Key 2 alone: what is left once key 1 is retired.
pub(crate) fn keyring_2() -> Arc<Keyring> {
    Arc::new(Keyring::new(KeyId::new(2), Key::from_bytes(&[42; 32]).unwrap()))
}

pub(crate) fn open(path: &std::path::Path, ring: Arc<Keyring>) -> Store {
    Store::open(StoreConfig::file(path).with_keyring(ring).with_sweep_interval(None)).unwrap()
}

/// What [`populate`] wrote: records, artifact ids and event seqs with their contents.
pub(crate) struct Written {
    pub(crate) records: Vec<(String, String)>,
    pub(crate) artifacts: Vec<(String, Vec<u8>)>,
    pub(crate) events: Vec<(u64, serde_json::Value)>,
}

/// Sealed and plain rows of every kind, as ann (team red) in s1.
pub(crate) fn populate(env: &Env, n: usize) -> Written {
    let red = env.team("red", "s1");
    let ann = env.agent("ann", "s1", &[&red]);
    let s = &env.store;
    let mut w = Written { records: vec![], artifacts: vec![], events: vec![] };
    for i in 0..n {
        let (k, v) = (format!("m{i}"), format!("memory value {i}"));
        let opts = match i % 3 {
            0 => SetOptions::new(),
            1 => SetOptions::new().level(AclLevel::Team).team(red.clone()),
            _ => SetOptions::new().level(AclLevel::Swarm),
        };
        s.set(&ann, &key("s1", "rot", &k), v.clone().into(), &opts).unwrap();
        w.records.push((k, v));
        // Every fourth artifact is large enough to be compressed before sealing.
        let content = if i % 4 == 0 {
            format!("artifact {i} ").repeat(400).into_bytes()
        } else {
            format!("artifact {i}").into_bytes()
        };
        let level = if i % 3 == 2 { AclLevel::Swarm } else { AclLevel::Private };
        let info = s
            .store_artifact(&ann, ArtifactSpec::new(format!("a{i}"), content.clone()).level(level))
            .unwrap();
        w.artifacts.push((info.id, content));
        let payload = json!({ "i": i, "secret": format!("event {i}") });
        let spec = match i % 3 {
            0 => EventSpec::new("rot.private", payload.clone()).level(AclLevel::Private),
            1 => {
                EventSpec::new("rot.team", payload.clone()).level(AclLevel::Team).team(red.clone())
            }
            _ => EventSpec::new("rot.swarm", payload.clone()),
        };
        w.events.push((s.publish_event(&ann, spec).unwrap().seq, payload));
    }
    w
}

/// Reads everything back as ann and as the system.
pub(crate) fn assert_readable(store: &Store, w: &Written) {
    let ann = Identity::Agent(swarm_acl::AgentId::new("ann").unwrap());
    for (k, v) in &w.records {
        let r = store.get(&ann, &key("s1", "rot", k)).unwrap().unwrap_or_else(|| panic!("{k}"));
        assert_eq!(r.value, Value::from(v.as_str()), "{k}");
    }
    for (id, content) in &w.artifacts {
        let a = store.get_artifact(&ann, id).unwrap().unwrap_or_else(|| panic!("{id}"));
        assert_eq!(&a.content, content, "{id}");
        assert_eq!(a.content_hash, blake3::hash(content).to_hex().to_string());
    }
    for (seq, payload) in &w.events {
        let e = store.get_event(&ann, *seq).unwrap().unwrap_or_else(|| panic!("event {seq}"));
        assert_eq!(&e.payload, payload, "event {seq}");
    }
}

/// Rows whose envelope header names `key_id`, per table, read from the envelopes
/// themselves (not from the key_id columns the store keeps).
pub(crate) fn sealed_under(path: &std::path::Path, key_id: u32) -> [usize; 3] {
    let conn = raw(path);
    let mut out = [0; 3];
    for (i, sql) in
        ["SELECT value FROM memory", "SELECT content FROM artifacts", "SELECT payload FROM events"]
            .into_iter()
            .enumerate()
    {
        let mut stmt = conn.prepare(sql).unwrap();
        let blobs = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).unwrap();
        for b in blobs {
            let h = swarm_codec::inspect(&b.unwrap()).unwrap();
            if h.key_id() == Some(KeyId::new(key_id)) {
                out[i] += 1;
            }
        }
    }
    out
}

fn column_count(path: &std::path::Path, table: &str, key_id: u32) -> i64 {
    raw(path)
        .query_row(&format!("SELECT count(*) FROM {table} WHERE key_id = ?1"), [key_id], |r| {
            r.get(0)
        })
        .unwrap()
}

#[test]
fn rotation_reseals_every_kind_resumes_and_frees_the_old_key() {
    let env = Env::new();
    let w = populate(&env, 30);
    // 30 rows of each kind; a third of the records and events (swarm level) and a third
    // of the artifacts are plain; the rest are sealed with key 1.
    let before = env.store.key_report(&Identity::System).unwrap();
    assert_eq!(before.keys.len(), 1);
    assert_eq!(before.keys[0].key_id, 1);
    assert_eq!(before.keys[0].sealed, SealedCounts { memory: 20, artifacts: 20, events: 20 });
    assert_eq!((before.keys[0].records, before.keys[0].sample_opens), (60, Some(true)));
    assert_eq!(sealed_under(env.path(), 1), [20, 20, 20]);
    env.store.shutdown().unwrap();

    // Key 2 becomes active. Rotate part of the way, 4 transactions of at most 7 rows:
    // memory first (7, 7, then the last 6), then artifacts (7).
    let s2 = open(env.path(), keyring_1_2());
    let partial = s2.rotate_keys_bounded(&Identity::System, 7, 4, |_| {}).unwrap();
    assert_eq!(partial.reencrypted, 27);
    assert_eq!((partial.memory.reencrypted, partial.memory.remaining), (20, 0));
    assert_eq!((partial.artifacts.reencrypted, partial.artifacts.remaining), (7, 13));
    assert_eq!((partial.events.reencrypted, partial.events.remaining), (0, 20));
    assert_eq!(partial.remaining, 33);
    assert_eq!(partial.kind(SealedKind::Artifact), &partial.artifacts);
    // Interrupted, everything still reads, whichever key seals it.
    assert_readable(&s2, &w);
    let mid = s2.key_report(&Identity::System).unwrap();
    let per_key: Vec<(u32, SealedCounts)> = mid.keys.iter().map(|k| (k.key_id, k.sealed)).collect();
    assert_eq!(
        per_key,
        [
            (1, SealedCounts { memory: 0, artifacts: 13, events: 20 }),
            (2, SealedCounts { memory: 20, artifacts: 7, events: 0 }),
        ]
    );
    s2.shutdown().unwrap();

    // A new run (another process, say) finishes what is left.
    let s3 = open(env.path(), keyring_1_2());
    let mut progress = Vec::new();
    let rest = s3.rotate_keys(&Identity::System, 7, |p| progress.push(p)).unwrap();
    assert_eq!((rest.reencrypted, rest.encrypted, rest.remaining), (33, 0, 0));
    assert_eq!((rest.artifacts.reencrypted, rest.events.reencrypted), (13, 20));
    assert_eq!(progress.first().map(|p| (p.done, p.total)), Some((0, 33)));
    assert_eq!(progress.last().map(|p| (p.done, p.total)), Some((33, 33)));
    let after = s3.key_report(&Identity::System).unwrap();
    assert_eq!(after.active, Some(2));
    assert_eq!(after.keys.len(), 1, "{after:?}");
    assert_eq!(
        (after.keys[0].key_id, after.keys[0].sealed, after.keys[0].sample_opens),
        (2, SealedCounts { memory: 20, artifacts: 20, events: 20 }, Some(true))
    );
    // Nothing to do: a third run changes nothing.
    let again = s3.rotate_keys(&Identity::System, 7, |_| {}).unwrap();
    assert_eq!((again.reencrypted, again.encrypted, again.remaining), (0, 0, 0));
    assert!(s3.verify_audit().unwrap().is_intact());
    s3.shutdown().unwrap();

    // No row references key 1, by column or by envelope, and the encrypted artifacts'
    // stored hash is the sealed envelope's (never the content's).
    for table in ["memory", "artifacts", "events"] {
        assert_eq!(column_count(env.path(), table, 1), 0, "{table}");
    }
    assert_eq!(sealed_under(env.path(), 1), [0, 0, 0]);
    assert_eq!(sealed_under(env.path(), 2), [20, 20, 20]);
    let conn = raw(env.path());
    let mut stmt =
        conn.prepare("SELECT content, content_hash FROM artifacts WHERE key_id = 2").unwrap();
    let rows =
        stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))).unwrap();
    for row in rows {
        let (content, hash) = row.unwrap();
        assert_eq!(hash, blake3::hash(&content).as_bytes());
    }
    let audited: i64 = conn
        .query_row(
            "SELECT count(DISTINCT resource_type) FROM audit_log WHERE action = 'store.rotate_keys'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(audited, 3, "each kind's batches are audited");

    // Key 1 can be retired: with key 2 alone, everything reads back.
    let only2 = open(env.path(), keyring_2());
    assert_readable(&only2, &w);
    only2.shutdown().unwrap();
}

#[test]
fn rotation_encrypts_artifacts_and_events_stored_before_encryption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.db");
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
                metadata: json!({}),
                token_hash: [0; 32],
                teams: vec![],
                grants: swarm_acl::Grant::defaults(),
            },
        )
        .unwrap();
    let ann = Identity::Agent(swarm_acl::AgentId::new("ann").unwrap());
    let canary = b"CANARY-plain-artifact-7c1e".to_vec();
    let art = plain.store_artifact(&ann, ArtifactSpec::new("doc", canary.clone())).unwrap();
    let ev = plain
        .publish_event(
            &ann,
            EventSpec::new("note", json!({ "c": "CANARY-plain-event-93ad" }))
                .level(AclLevel::Private),
        )
        .unwrap();
    plain.shutdown().unwrap();

    let s = open(&path, crate::fixtures::keyring());
    // Plaintext at a level the policy encrypts is refused, not trusted, until encrypted.
    assert!(s.get_artifact(&ann, &art.id).is_err());
    assert!(s.get_event(&ann, ev.seq).is_err());
    let report = s.key_report(&Identity::System).unwrap();
    assert_eq!(report.plaintext, SealedCounts { memory: 0, artifacts: 1, events: 1 });
    assert_eq!(report.plaintext_at_encrypted_levels, 2);
    let r = s.rotate_keys(&Identity::System, 10, |_| {}).unwrap();
    assert_eq!((r.encrypted, r.reencrypted, r.remaining), (2, 0, 0));
    assert_eq!((r.artifacts.encrypted, r.events.encrypted), (1, 1));
    assert_eq!(s.get_artifact(&ann, &art.id).unwrap().unwrap().content, canary);
    assert_eq!(s.get_event(&ann, ev.seq).unwrap().unwrap().payload["c"], "CANARY-plain-event-93ad");
    assert_eq!(s.key_report(&Identity::System).unwrap().plaintext.total(), 0);
    // The plaintext hash of the content went with the plaintext.
    let hash: Vec<u8> = raw(&path)
        .query_row("SELECT content_hash FROM artifacts WHERE id = ?1", [&art.id], |r| r.get(0))
        .unwrap();
    assert_ne!(hash, blake3::hash(&canary).as_bytes());
    s.shutdown().unwrap();
    // Freed pages may keep the old bytes until they are reused; VACUUM rewrites the file.
    raw(&path).execute_batch("VACUUM").unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(!contains(&bytes, "CANARY-plain-artifact-7c1e"));
    assert!(!contains(&bytes, "CANARY-plain-event-93ad"));
}

#[test]
fn the_key_report_finds_an_artifact_or_event_that_does_not_open() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let s = &env.store;
    s.set(&ann, &key("s1", "n", "k"), "fine".into(), &SetOptions::new()).unwrap();
    let art = s.store_artifact(&ann, ArtifactSpec::new("doc", b"sealed".to_vec())).unwrap();
    let ev = s
        .publish_event(&ann, EventSpec::new("e", json!({ "x": 1 })).level(AclLevel::Private))
        .unwrap();
    let r = s.key_report(&Identity::System).unwrap();
    assert_eq!((r.keys[0].sample_opens, r.keys[0].unopened.clone()), (Some(true), vec![]));
    // Flip bits of the last byte (inside the tag) of the artifact and of the event, as
    // someone with file access could.
    let conn = raw(env.path());
    for (table, col, pk, id) in [
        ("artifacts", "content", "id", rusqlite::types::Value::Text(art.id.clone())),
        ("events", "payload", "seq", rusqlite::types::Value::Integer(ev.seq as i64)),
    ] {
        let mut blob: Vec<u8> = conn
            .query_row(&format!("SELECT {col} FROM {table} WHERE {pk} = ?1"), [&id], |r| r.get(0))
            .unwrap();
        let last = blob.len() - 1;
        blob[last] ^= 0x55;
        conn.execute(
            &format!("UPDATE {table} SET {col} = ?1 WHERE {pk} = ?2"),
            rusqlite::params![blob, id],
        )
        .unwrap();
    }
    let r = s.key_report(&Identity::System).unwrap();
    assert_eq!(r.keys[0].sample_opens, Some(false));
    assert_eq!(r.keys[0].unopened, [SealedKind::Artifact, SealedKind::Event]);
    assert!(s.get_artifact(&ann, &art.id).is_err(), "a tampered artifact is an error, not garbage");
    // Rotation to a new key stops at the damaged row with an error naming it, instead of
    // sealing something it could not authenticate; what it did before stays done.
    let s2 = open(env.path(), keyring_1_2());
    let e = s2.rotate_keys(&Identity::System, 10, |_| {}).unwrap_err();
    assert!(matches!(e, StoreError::Codec { .. }), "{e}");
    assert!(e.to_string().contains(&format!("artifact {}", art.id)), "{e}");
    let r = s2.key_report(&Identity::System).unwrap();
    assert_eq!(
        r.keys.iter().map(|k| (k.key_id, k.sealed)).collect::<Vec<_>>(),
        [
            (1, SealedCounts { memory: 0, artifacts: 1, events: 1 }),
            (2, SealedCounts { memory: 1, artifacts: 0, events: 0 }),
        ]
    );
    s2.shutdown().unwrap();
}

/// What a key file read again gives: the test changes it as a rotation would, and can
/// make the next read fail.
#[derive(Debug)]
struct KeyFile {
    ring: std::sync::Mutex<Arc<Keyring>>,
    fail_next: std::sync::atomic::AtomicBool,
}

impl KeyFile {
    fn new(ring: Arc<Keyring>) -> Arc<Self> {
        Arc::new(Self {
            ring: std::sync::Mutex::new(ring),
            fail_next: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn replace(&self, ring: Arc<Keyring>) {
        *self.ring.lock().unwrap() = ring;
    }
}

impl swarm_store::KeyringSource for KeyFile {
    fn load(&self) -> Result<Keyring, String> {
        if self.fail_next.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err("the key file could not be read".into());
        }
        Ok(Keyring::clone(&self.ring.lock().unwrap()))
    }
}

/// A store that reads its keyring again from a key file holding key 1, with `configure`
/// applied to its configuration.
fn with_key_file(configure: impl FnOnce(StoreConfig) -> StoreConfig) -> (Arc<KeyFile>, Env) {
    let file = KeyFile::new(crate::fixtures::keyring());
    let source = Arc::clone(&file);
    (file, Env::with_config(|c| configure(c.with_keyring_source(source))))
}

/// The key id a record's stored envelope names, read from the envelope itself.
fn record_key_id(path: &std::path::Path, name: &str) -> Option<u32> {
    let blob: Vec<u8> = raw(path)
        .query_row("SELECT value FROM memory WHERE key = ?1", [name], |r| r.get(0))
        .unwrap();
    swarm_codec::inspect(&blob).unwrap().key_id().map(KeyId::get)
}

/// Writes a private record as `who` every 50 ms until one is sealed with key `want`; one
/// sealed with a key other than `old` or `want`, or 20 s without `want`, fails the test.
fn write_until_sealed_with(env: &Env, who: &Identity, old: u32, want: u32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    for i in 0.. {
        let name = format!("w{i}");
        env.store.set(who, &key("s1", "rot", &name), "x".into(), &SetOptions::new()).unwrap();
        match record_key_id(env.path(), &name) {
            Some(id) if id == want => return,
            Some(id) if id == old => {}
            other => panic!("{name} sealed with {other:?}, not key {old} or {want}"),
        }
        assert!(std::time::Instant::now() < deadline, "still sealing with key {old} after 20 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_running_store_reads_re_sealed_rows_and_seals_with_the_new_key_after_a_rotation_elsewhere() {
    // One read connection: reading the keyring again must not need a second one.
    let (file, env) = with_key_file(|c| c.with_readers(1));
    let w = populate(&env, 9);
    let ann = Identity::Agent(swarm_acl::AgentId::new("ann").unwrap());
    // Another process adds key 2 to the key file and rotates: every sealed row is now
    // under key 2, which this store has never held.
    file.replace(keyring_1_2());
    let other = open(env.path(), keyring_1_2());
    let report = other.rotate_keys(&Identity::System, 100, |_| {}).unwrap();
    assert_eq!(report.remaining, 0);
    assert_eq!(sealed_under(env.path(), 1), [0, 0, 0]);
    assert_readable(&env.store, &w);
    // And what it writes now is sealed with key 2, the active key.
    env.store.set(&ann, &key("s1", "rot", "after"), "new".into(), &SetOptions::new()).unwrap();
    assert_eq!(record_key_id(env.path(), "after"), Some(2));
    other.shutdown().unwrap();
}

#[test]
fn a_running_store_starts_sealing_with_the_new_active_key_without_reading_a_re_sealed_row() {
    let (file, env) = with_key_file(|c| c);
    let ann = env.agent("ann", "s1", &[]);
    file.replace(keyring_1_2());
    // Opening with key 2 active records it as the database's active key; the running
    // store notices on its maintenance thread (every 250 ms, key file read at most once
    // a second).
    let other = open(env.path(), keyring_1_2());
    write_until_sealed_with(&env, &ann, 1, 2);
    other.shutdown().unwrap();
}

#[test]
fn a_failed_read_of_the_key_file_is_tried_again_soon() {
    let (file, env) = with_key_file(|c| c);
    let ann = env.agent("ann", "s1", &[]);
    file.fail_next.store(true, std::sync::atomic::Ordering::SeqCst);
    file.replace(keyring_1_2());
    let other = open(env.path(), keyring_1_2());
    // The first read fails; the next, a second or so later, succeeds (not a minute later,
    // as for a key file that does not hold the recorded key).
    write_until_sealed_with(&env, &ann, 1, 2);
    assert!(
        !file.fail_next.load(std::sync::atomic::Ordering::SeqCst),
        "the failing read never ran"
    );
    other.shutdown().unwrap();
}

#[test]
fn a_keyring_read_again_that_changes_a_held_key_is_not_used() {
    let (file, env) = with_key_file(|c| c);
    let w = populate(&env, 3);
    // Key 2 sealed the rows, but the key file now holds another key 1.
    let mut forged = Keyring::new(KeyId::new(1), Key::from_bytes(&[9; 32]).unwrap());
    forged.insert(KeyId::new(2), Key::from_bytes(&[42; 32]).unwrap()).unwrap();
    forged.set_active(KeyId::new(2)).unwrap();
    let other = open(env.path(), keyring_1_2());
    other.rotate_keys(&Identity::System, 100, |_| {}).unwrap();
    file.replace(Arc::new(forged));
    let ann = Identity::Agent(swarm_acl::AgentId::new("ann").unwrap());
    let (k, _) = &w.records[0];
    let e = env.store.get(&ann, &key("s1", "rot", k)).unwrap_err();
    assert!(
        matches!(&e, StoreError::Codec { source: swarm_codec::CodecError::UnknownKeyId(id), .. } if id.get() == 2),
        "{e}"
    );
    // Still sealing with the key it holds.
    env.store.set(&ann, &key("s1", "rot", "after"), "new".into(), &SetOptions::new()).unwrap();
    assert_eq!(record_key_id(env.path(), "after"), Some(1));
    other.shutdown().unwrap();
}

#[test]
fn an_older_key_recorded_as_active_does_not_move_a_running_store_back() {
    let file = KeyFile::new(keyring_1_2());
    let env = Env::with_config(|c| c.with_keyring(keyring_1_2()).with_keyring_source(file.clone()));
    let ann = env.agent("ann", "s1", &[]);
    // A process opened with only the old key records key 1 as the database's active key
    // (so would an edit of encryption_keys). The running store, whose key file's newest
    // key is 2, goes on sealing with key 2 while its maintenance thread looks (every
    // 250 ms, for 1.5 s here).
    let old = open(env.path(), crate::fixtures::keyring());
    for i in 0..30 {
        let name = format!("w{i}");
        env.store.set(&ann, &key("s1", "rot", &name), "x".into(), &SetOptions::new()).unwrap();
        assert_eq!(record_key_id(env.path(), &name), Some(2), "{name} sealed with an older key");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    old.shutdown().unwrap();
}

#[test]
fn a_second_pass_after_a_running_store_switched_leaves_nothing_under_the_old_key() {
    let (file, env) = with_key_file(|c| c);
    let ann = env.agent("ann", "s1", &[]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        // A running store writes private records all along, as an MCP server might.
        let writing = scope.spawn(|| {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let k = key("s1", "rot", &format!("w{i}"));
                env.store.set(&ann, &k, "x".into(), &SetOptions::new()).unwrap();
                i += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            i
        });
        // rotate-key in another process: key 2 appended and made active, a first pass,
        // then (once the running store has switched) a second pass.
        file.replace(keyring_1_2());
        let other = open(env.path(), keyring_1_2());
        other.rotate_keys(&Identity::System, 50, |_| {}).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while env.store.key_report(&Identity::System).unwrap().active != Some(2) {
            assert!(std::time::Instant::now() < deadline, "the running store never switched");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // A write sealed just before the switch lands within microseconds; leave room.
        std::thread::sleep(std::time::Duration::from_millis(250));
        let last = other.rotate_keys(&Identity::System, 50, |_| {}).unwrap();
        assert_eq!(last.remaining, 0);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let written = writing.join().unwrap();
        assert!(written > 0);
        other.shutdown().unwrap();
    });
    assert_eq!(sealed_under(env.path(), 1), [0, 0, 0], "rows left under key 1");
}

#[test]
fn a_running_store_moves_forward_to_the_recorded_key_even_when_the_file_holds_a_newer_one() {
    let (file, env) = with_key_file(|c| c);
    let ann = env.agent("ann", "s1", &[]);
    // The key file already holds key 3 (a rotation interrupted after appending it), while
    // the database records key 2 as active.
    let mut ring = Keyring::clone(&keyring_1_2());
    ring.insert(KeyId::new(3), Key::from_bytes(&[43; 32]).unwrap()).unwrap();
    ring.set_active(KeyId::new(3)).unwrap();
    file.replace(Arc::new(ring));
    let other = open(env.path(), keyring_1_2());
    write_until_sealed_with(&env, &ann, 1, 2);
    other.shutdown().unwrap();
}

/// Keys 1, 2 and 3, key 3 active.
fn keyring_1_2_3() -> Arc<Keyring> {
    let mut ring = Keyring::clone(&keyring_1_2());
    ring.insert(KeyId::new(3), Key::from_bytes(&[43; 32]).unwrap()).unwrap();
    ring.set_active(KeyId::new(3)).unwrap();
    Arc::new(ring)
}

#[test]
fn a_keyring_replaced_mid_rotation_leaves_every_key_id_column_true() {
    let env = Env::new();
    populate(&env, 30);
    env.store.shutdown().unwrap();
    // The rotating store reads its keyring from a source, as rotate-key's does.
    let file = KeyFile::new(keyring_1_2());
    let rotating = Store::open(
        StoreConfig::file(env.path())
            .with_keyring(keyring_1_2())
            .with_keyring_source(file.clone())
            .with_sweep_interval(None),
    )
    .unwrap();
    let mut third = None;
    rotating
        .rotate_keys(&Identity::System, 5, |p| {
            if third.is_some() || p.done == 0 {
                return;
            }
            // After the first batch another rotation, to key 3, begins elsewhere; this one
            // goes on after its store has taken key 3 up.
            file.replace(keyring_1_2_3());
            third = Some(open(env.path(), keyring_1_2_3()));
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while rotating.key_report(&Identity::System).unwrap().active != Some(3) {
                assert!(std::time::Instant::now() < deadline, "key 3 never taken up");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
        .unwrap();
    assert!(third.is_some(), "the rotation ran in one batch");
    let conn = raw(env.path());
    let mut sealed_with_3 = 0;
    for (table, column) in [("memory", "value"), ("artifacts", "content"), ("events", "payload")] {
        let mut stmt = conn.prepare(&format!("SELECT key_id, {column} FROM {table}")).unwrap();
        let rows =
            stmt.query_map([], |r| Ok((r.get::<_, Option<u32>>(0)?, r.get::<_, Vec<u8>>(1)?)));
        for row in rows.unwrap() {
            let (column_id, envelope) = row.unwrap();
            let header_id = swarm_codec::inspect(&envelope).unwrap().key_id().map(KeyId::get);
            assert_eq!(column_id, header_id, "{table}: the key_id column names another key");
            sealed_with_3 += usize::from(header_id == Some(3));
        }
    }
    assert!(sealed_with_3 > 0, "no row was re-sealed after the switch");
    if let Some(t) = third {
        t.shutdown().unwrap();
    }
    rotating.shutdown().unwrap();
}
