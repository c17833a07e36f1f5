//! Integration tests of swarm-registry.

// Test helpers outside #[test] functions unwrap too: a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use swarm_acl::{AclLevel, Action, AgentId, Identity, ResourceType, SwarmId};
use swarm_registry::{AgentSpec, DefaultGrants, Registry, RegistryError};
use swarm_store::{
    AgentStatus, AgentUpdate, ManualClock, RecordKey, SetOptions, Store, StoreConfig, Value,
};

fn registry() -> (Registry, ManualClock) {
    let clock = ManualClock::new(swarm_acl::Timestamp::from_millis(1_000_000));
    let store = Store::open(
        StoreConfig::memory()
            .with_encrypt_up_to(None)
            .with_clock(Arc::new(clock.clone()))
            .with_sweep_interval(None),
    )
    .unwrap();
    let r = Registry::new(store);
    r.ensure_swarm(&SwarmId::new("default").unwrap()).unwrap();
    (r, clock)
}

fn register(r: &Registry, name: &str) -> (AgentId, String) {
    let reg = r.register_agent(&Identity::System, AgentSpec::new(name, "worker").unwrap()).unwrap();
    (reg.agent.id, reg.token.expose().to_owned())
}

#[test]
fn registration_returns_a_token_once_and_stores_only_its_hash() {
    let (r, _) = registry();
    let reg = r
        .register_agent(
            &Identity::System,
            AgentSpec::new("Backend Developer", "backend-dev")
                .unwrap()
                .capabilities(["api", "database", "security"])
                .unwrap(),
        )
        .unwrap();
    assert!(reg.agent.id.as_str().starts_with("agt_"));
    assert_eq!(reg.agent.capabilities, vec!["api", "database", "security"]);
    let token = reg.token.expose().to_owned();
    assert!(token.starts_with("smt_") && token.len() == 47);
    // The record never exposes the token, and a second lookup cannot recover it.
    let rec = r.get_agent(&Identity::System, &reg.agent.id).unwrap().unwrap();
    assert!(!serde_json::to_string(&rec).unwrap().contains(&token[4..]));
    let (hash, _) = r.store().credentials(&reg.agent.id).unwrap().unwrap();
    assert_ne!(&hash[..], token.as_bytes());
}

#[test]
fn authenticate_does_not_say_which_half_was_wrong() {
    let (r, _) = registry();
    let (id, token) = register(&r, "ann");
    assert_eq!(r.authenticate(id.as_str(), &token).unwrap(), Identity::Agent(id.clone()));
    let (other_id, other_token) = register(&r, "ben");
    let cases = [
        (id.as_str(), other_token.as_str()),
        ("agt_unknown", token.as_str()),
        (id.as_str(), ""),
        (id.as_str(), "smt_"),
        ("", token.as_str()),
        ("system", token.as_str()),
        ("not an id!", token.as_str()),
        (id.as_str(), &token[..token.len() - 1]),
    ];
    for (i, t) in cases {
        let e = r.authenticate(i, t).unwrap_err();
        assert!(matches!(e, RegistryError::Authentication), "{i:?}/{t:?}: {e}");
        assert_eq!(e.to_string(), "authentication failed: unknown agent or wrong token");
    }
    assert!(r.authenticate(other_id.as_str(), &other_token).is_ok());
}

#[test]
fn suspended_and_unregistered_agents_are_refused() {
    let (r, _) = registry();
    let (id, token) = register(&r, "ann");
    r.update_agent(
        &Identity::System,
        &id,
        AgentUpdate { status: Some(AgentStatus::Suspended), ..Default::default() },
    )
    .unwrap();
    assert!(matches!(r.authenticate(id.as_str(), &token), Err(RegistryError::Inactive { .. })));
    r.update_agent(
        &Identity::System,
        &id,
        AgentUpdate { status: Some(AgentStatus::Active), ..Default::default() },
    )
    .unwrap();
    assert!(r.authenticate(id.as_str(), &token).is_ok());
    r.unregister_agent(&Identity::System, &id).unwrap();
    // The old token no longer matches anything.
    assert!(r.authenticate(id.as_str(), &token).is_err());
}

#[test]
fn rotating_a_token_invalidates_the_old_one_at_once() {
    let (r, _) = registry();
    let (id, old) = register(&r, "ann");
    let new = r.rotate_token(&Identity::System, &id).unwrap();
    assert!(matches!(r.authenticate(id.as_str(), &old), Err(RegistryError::Authentication)));
    assert!(r.authenticate(id.as_str(), new.expose()).is_ok());
}

#[test]
fn grants_are_honoured_by_the_check_that_decides() {
    // The JS version stored grants where the checks never looked. Here a grant changes
    // what the store lets the agent do, immediately.
    let (r, _) = registry();
    let reg = r
        .register_agent(
            &Identity::System,
            AgentSpec::new("ann", "worker").unwrap().grants(DefaultGrants::None),
        )
        .unwrap();
    let who = r.authenticate(reg.agent.id.as_str(), reg.token.expose()).unwrap();
    let k = RecordKey::parse("default", "n", "k").unwrap();
    let opts = SetOptions::new().level(AclLevel::Swarm);
    assert!(r.store().set(&who, &k, Value::from("x"), &opts).is_err());
    assert!(
        !r.has_permission(&reg.agent.id, ResourceType::Memory, Action::Write, AclLevel::Swarm)
            .unwrap()
    );
    r.grant_permission(
        &Identity::System,
        &reg.agent.id,
        ResourceType::Memory,
        AclLevel::Swarm,
        &[Action::Read, Action::Write],
        None,
    )
    .unwrap();
    assert!(
        r.has_permission(&reg.agent.id, ResourceType::Memory, Action::Write, AclLevel::Swarm)
            .unwrap()
    );
    assert!(
        r.has_permission(&reg.agent.id, ResourceType::Memory, Action::Write, AclLevel::Team)
            .unwrap()
    );
    assert!(
        !r.has_permission(&reg.agent.id, ResourceType::Memory, Action::Write, AclLevel::Public)
            .unwrap()
    );
    r.store().set(&who, &k, Value::from("x"), &opts).unwrap();
    assert!(r.store().get(&who, &k).unwrap().is_some());
    assert_eq!(
        r.revoke_permission(
            &Identity::System,
            &reg.agent.id,
            ResourceType::Memory,
            AclLevel::Swarm,
            Some(&[Action::Read])
        )
        .unwrap(),
        1
    );
    assert!(r.store().get(&who, &k).unwrap().is_none());
    assert!(
        !r.has_permission(&reg.agent.id, ResourceType::Memory, Action::Read, AclLevel::Swarm)
            .unwrap()
    );
}

#[test]
fn expiring_grants_lapse_on_time() {
    let (r, clock) = registry();
    let (id, _) = register(&r, "ann");
    let until = r.store().now().plus_millis(5_000);
    r.grant_permission(
        &Identity::System,
        &id,
        ResourceType::Audit,
        AclLevel::System,
        &[Action::Read],
        Some(until),
    )
    .unwrap();
    assert!(r.has_permission(&id, ResourceType::Audit, Action::Read, AclLevel::System).unwrap());
    clock.advance(5_000);
    assert!(!r.has_permission(&id, ResourceType::Audit, Action::Read, AclLevel::System).unwrap());
}

#[test]
fn teams_from_the_seed_example() {
    let (r, _) = registry();
    let (backend, _) = register(&r, "Backend Developer");
    let (frontend, _) = register(&r, "Frontend Developer");
    let team = r
        .create_team(&Identity::System, None, "Web Development Team", None, Some(&backend))
        .unwrap();
    assert!(
        !r.add_agent_to_team(&Identity::System, &backend, &team.id).unwrap(),
        "the leader is already a member"
    );
    assert!(r.add_agent_to_team(&Identity::System, &frontend, &team.id).unwrap());
    let team = r.get_team(&Identity::System, &team.id).unwrap().unwrap();
    assert_eq!(team.members.len(), 2);
    assert_eq!(team.leader.as_ref(), Some(&backend));
    let rec = r.get_agent(&Identity::System, &frontend).unwrap().unwrap();
    assert_eq!(rec.teams, vec![team.id.clone()]);
    assert!(r.remove_agent_from_team(&Identity::System, &frontend, &team.id).unwrap());
}

#[test]
fn invalid_specs_are_refused_with_clear_errors() {
    assert!(AgentSpec::new("", "t").is_err());
    assert!(AgentSpec::new("a\0b", "t").is_err());
    assert!(AgentSpec::new("ok", "t").unwrap().id("system").is_err());
    assert!(AgentSpec::new("ok", "t").unwrap().metadata(serde_json::json!([1])).is_err());
    let many: Vec<String> = (0..65).map(|i| format!("c{i}")).collect();
    assert!(AgentSpec::new("ok", "t").unwrap().capabilities(many).is_err());
    let (r, _) = registry();
    let e = r
        .register_agent(
            &Identity::System,
            AgentSpec::new("ok", "t").unwrap().swarm("nowhere").unwrap(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("swarm nowhere not found"), "{e}");
}
