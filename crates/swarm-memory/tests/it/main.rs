//! Integration tests of the umbrella crate: opening, keys, sessions, adapter, events.

// Test helpers outside #[test] functions unwrap too: a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use swarm_memory::*;

mod bench;
mod coordination;
mod restore;

fn open(dir: &tempfile::TempDir) -> SwarmMemory {
    SwarmMemory::builder().path(dir.path().join("s.db")).sweep_interval(None).open().unwrap()
}

#[test]
fn a_new_database_gets_a_private_key_file_and_reopens_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let system = open(&dir);
    let key_file = system.key_file().unwrap().to_path_buf();
    assert_eq!(key_file, dir.path().join("s.db.key"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let reg = system.register_agent(AgentSpec::new("ann", "worker").unwrap()).unwrap();
    let s = system.act_as(&reg.agent.id).unwrap();
    let mem = system.create_memory_adapter(&s, "n").unwrap();
    mem.set("k", "private value", &SetOptions::new()).unwrap();
    system.graceful_shutdown().unwrap();
    let again = open(&dir);
    let s = again.act_as(&reg.agent.id).unwrap();
    assert_eq!(
        again.create_memory_adapter(&s, "n").unwrap().get("k").unwrap(),
        Some(Value::from("private value"))
    );
    again.graceful_shutdown().unwrap();
    // Without its key file, the database refuses to open instead of making a new key.
    std::fs::rename(&key_file, dir.path().join("elsewhere.key")).unwrap();
    let e = SwarmMemory::builder().path(dir.path().join("s.db")).open().unwrap_err();
    assert!(e.to_string().contains("key file"), "{e}");
    // The key can also come from the environment variable's text.
    let text = std::fs::read_to_string(dir.path().join("elsewhere.key")).unwrap();
    let hex = text
        .lines()
        .find(|l| !l.starts_with('#'))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    let by_env = SwarmMemory::builder()
        .path(dir.path().join("s.db"))
        .key(KeySource::Text(hex))
        .open()
        .unwrap();
    let s = by_env.act_as(&reg.agent.id).unwrap();
    assert!(by_env.create_memory_adapter(&s, "n").unwrap().get("k").unwrap().is_some());
}

#[test]
fn a_running_system_goes_on_after_another_rotates_its_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let running = open(&dir);
    let reg = running.register_agent(AgentSpec::new("ann", "worker").unwrap()).unwrap();
    let s = running.act_as(&reg.agent.id).unwrap();
    let mem = running.create_memory_adapter(&s, "n").unwrap();
    mem.set("before", "sealed with key 1", &SetOptions::new()).unwrap();
    // What `swarm-memory rotate-key` does, from another handle: a key appended to the
    // key file, the database opened with it, every sealed row re-sealed.
    let key_file = running.key_file().unwrap().to_path_buf();
    assert_eq!(swarm_memory::keyfile::append_new_key(&key_file).unwrap().get(), 2);
    let rotating = open(&dir);
    let report = rotating.store().rotate_keys(&Identity::System, 100, |_| {}).unwrap();
    assert!(report.reencrypted >= 1 && report.remaining == 0, "{report:?}");
    // The running system reads the re-sealed record and seals new ones with key 2.
    assert_eq!(mem.get("before").unwrap(), Some(Value::from("sealed with key 1")));
    mem.set("after", "sealed with key 2", &SetOptions::new()).unwrap();
    let keys = rotating.store().key_report(&Identity::System).unwrap();
    assert_eq!(keys.active, Some(2));
    assert_eq!(
        keys.keys.iter().map(|k| k.key_id).collect::<Vec<_>>(),
        [2],
        "a row is still sealed with key 1: {keys:?}"
    );
    rotating.graceful_shutdown().unwrap();
    running.graceful_shutdown().unwrap();
}

#[test]
fn a_wrong_key_from_the_environment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let system = open(&dir);
    let reg = system.register_agent(AgentSpec::new("ann", "worker").unwrap()).unwrap();
    let s = system.act_as(&reg.agent.id).unwrap();
    system.create_memory_adapter(&s, "n").unwrap().set("k", "v", &SetOptions::new()).unwrap();
    system.graceful_shutdown().unwrap();
    let e = SwarmMemory::builder()
        .path(dir.path().join("s.db"))
        .key(KeySource::Text("11".repeat(32)))
        .open()
        .unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
    let e = SwarmMemory::builder()
        .path(dir.path().join("s.db"))
        .key(KeySource::Text("12345".into()))
        .open()
        .unwrap_err();
    assert!(e.to_string().contains("SQLITE_ENCRYPTION_KEY"), "{e}");
}

#[test]
fn the_seed_readme_flow_works_end_to_end() {
    let (tx, rx) = crossbeam_channel::unbounded();
    let system = SwarmMemory::builder()
        .in_memory()
        .swarm(SwarmId::new("my-swarm").unwrap())
        .listener(tx)
        .open()
        .unwrap();
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(1)).unwrap(),
        SystemEvent::Initialized { .. }
    ));
    let agent = system
        .register_agent(
            AgentSpec::new("Backend Developer", "backend-dev")
                .unwrap()
                .id("agent-1")
                .unwrap()
                .capabilities(["api", "database", "security"])
                .unwrap(),
        )
        .unwrap();
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(1)).unwrap(),
        SystemEvent::AgentRegistered { .. }
    ));
    let id = agent.agent.id.clone();
    system
        .grant_permission(
            &id,
            ResourceType::Memory,
            AclLevel::Swarm,
            &[Action::Read, Action::Write],
        )
        .unwrap();
    assert!(
        system.has_permission(&id, ResourceType::Memory, Action::Read, AclLevel::Swarm).unwrap()
    );
    assert!(
        !system.has_permission(&id, ResourceType::Memory, Action::Read, AclLevel::System).unwrap()
    );
    let session = system.authenticate("agent-1", agent.token.expose()).unwrap();
    assert_eq!(session.swarm().as_str(), "my-swarm");
    let mem = system.create_memory_adapter(&session, "my-app").unwrap();
    mem.set("secret-key", "secret-value", &SetOptions::new().level(AclLevel::Private)).unwrap();
    assert_eq!(mem.get("secret-key").unwrap(), Some(Value::from("secret-value")));
    let user = serde_json::json!({ "name": "John Doe", "email": "john@example.com" });
    mem.set("user:123", Value::Json(user.clone()), &SetOptions::new().level(AclLevel::Swarm))
        .unwrap();
    assert_eq!(mem.get("user:123").unwrap(), Some(Value::Json(user)));
    assert_eq!(mem.keys("user:*", 10).unwrap(), vec!["user:123"]);
    mem.setex("soon", Duration::from_secs(60), "x", &SetOptions::new()).unwrap();
    assert_eq!(mem.incr("n").unwrap(), 1);
    assert_eq!(mem.decr_by("n", 5).unwrap(), -4);
    assert_eq!(
        mem.mget(&["secret-key", "missing"]).unwrap(),
        vec![Some(Value::from("secret-value")), None]
    );
    mem.mset(vec![("a", Value::from("1")), ("b", Value::from("2"))], &SetOptions::new()).unwrap();
    assert!(mem.has("a").unwrap());
    assert!(mem.delete("a").unwrap());
    assert!(mem.stats().unwrap().records >= 5);
    assert!(mem.clear().unwrap() >= 5);
    // Memory operations were reported, without values.
    let events: Vec<SystemEvent> = rx.try_iter().collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SystemEvent::MemoryOperation { op: "set", ok: true, .. }))
    );
    assert!(!format!("{events:?}").contains("secret-value"));
    let m = system.get_system_metrics().unwrap();
    assert_eq!(m.schema_version, swarm_schema::latest_version());
    system.graceful_shutdown().unwrap();
    assert!(matches!(system.act_as(&id), Err(Error::Closed)));
}

#[test]
fn a_bad_token_gets_no_session() {
    let system = SwarmMemory::builder().in_memory().open().unwrap();
    let reg = system.register_agent(AgentSpec::new("ann", "worker").unwrap()).unwrap();
    assert!(matches!(
        system.authenticate(reg.agent.id.as_str(), "smt_nope"),
        Err(Error::Registry(RegistryError::Authentication))
    ));
    assert!(system.act_as(&AgentId::new("ghost").unwrap()).is_err());
}
