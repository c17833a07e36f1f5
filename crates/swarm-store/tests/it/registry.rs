//! The registry's persistence in the store: agents, teams, grants, swarms.

use swarm_acl::{AclLevel, Action, AgentId, Grant, Identity, ResourceType, SwarmId, TeamId};
use swarm_store::{AgentFilter, AgentStatus, AgentUpdate, NewAgent, StoreError};

use crate::fixtures::{Env, swarm};

fn new_agent(id: &str, swarm_id: &str) -> NewAgent {
    NewAgent {
        id: AgentId::new(id).unwrap(),
        swarm: SwarmId::new(swarm_id).unwrap(),
        name: format!("{id} name"),
        agent_type: "backend-dev".into(),
        capabilities: vec!["api".into(), "database".into()],
        metadata: serde_json::json!({ "model": "x" }),
        token_hash: [1; 32],
        teams: vec![],
        grants: Grant::defaults(),
    }
}

#[test]
fn register_get_list_and_filter_agents() {
    let env = Env::new();
    let red = env.team("red", "s1");
    let blue = env.team("blue", "s1");
    let mut a = new_agent("ann", "s1");
    a.teams = vec![red.clone(), blue.clone()];
    let rec = env.store.insert_agent(&Identity::System, a).unwrap();
    assert_eq!(rec.teams, vec![blue.clone(), red.clone()], "an agent can be in several teams");
    assert_eq!(rec.status, AgentStatus::Active);
    let mut b = new_agent("ben", "s1");
    b.agent_type = "frontend-dev".into();
    b.capabilities = vec!["ui".into()];
    env.store.insert_agent(&Identity::System, b).unwrap();
    env.store.insert_agent(&Identity::System, new_agent("far", "s2")).unwrap();

    let all = env.store.list_agents(&Identity::System, &AgentFilter::default()).unwrap();
    assert_eq!(all.len(), 3);
    let by_type = env
        .store
        .list_agents(
            &Identity::System,
            &AgentFilter { agent_type: Some("frontend-dev".into()), ..Default::default() },
        )
        .unwrap();
    assert_eq!(by_type.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), vec!["ben"]);
    let by_cap = env
        .store
        .list_agents(
            &Identity::System,
            &AgentFilter { capability: Some("database".into()), ..Default::default() },
        )
        .unwrap();
    assert_eq!(by_cap.len(), 2);
    let by_team = env
        .store
        .list_agents(
            &Identity::System,
            &AgentFilter { team: Some(red.clone()), ..Default::default() },
        )
        .unwrap();
    assert_eq!(by_team.len(), 1);
    let by_swarm = env
        .store
        .list_agents(
            &Identity::System,
            &AgentFilter { swarm: Some(swarm("s2")), ..Default::default() },
        )
        .unwrap();
    assert_eq!(by_swarm.len(), 1);
    // Agents see the directory of their own swarm only.
    let ann = Identity::Agent(AgentId::new("ann").unwrap());
    assert_eq!(env.store.list_agents(&ann, &AgentFilter::default()).unwrap().len(), 2);
    assert!(env.store.get_agent(&ann, &AgentId::new("far").unwrap()).unwrap().is_none());
}

#[test]
fn only_administrators_change_the_registry_and_refusals_are_audited() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let e = env.store.insert_agent(&ann, new_agent("sneaky", "s1")).unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied(_)), "{e}");
    let e = env
        .store
        .grant(
            &ann,
            &AgentId::new("ann").unwrap(),
            Grant::new(ResourceType::Memory, Action::Read, AclLevel::System),
        )
        .unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied(_)), "an agent cannot grant itself: {e}");
    let conn = crate::fixtures::raw(env.path());
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit_log WHERE actor = 'ann' AND outcome = 'denied'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 2);
    // An agent holding system admin may.
    let admin = env.agent_with(
        "root",
        "s1",
        &[],
        vec![Grant::new(ResourceType::System, Action::Admin, AclLevel::System)],
    );
    env.store.insert_agent(&admin, new_agent("hired", "s1")).unwrap();
}

#[test]
fn ids_are_never_reused_after_unregistering() {
    let env = Env::new();
    env.store.insert_agent(&Identity::System, new_agent("ann", "s1")).unwrap();
    let id = AgentId::new("ann").unwrap();
    env.store.terminate_agent(&Identity::System, &id, [0; 32]).unwrap();
    let rec = env.store.get_agent(&Identity::System, &id).unwrap().unwrap();
    assert_eq!(rec.status, AgentStatus::Terminated);
    assert!(env.store.grants_of(&Identity::System, &id).unwrap().is_empty());
    let e = env.store.insert_agent(&Identity::System, new_agent("ann", "s1")).unwrap_err();
    assert!(e.to_string().contains("never reused"), "{e}");
    assert!(matches!(env.store.principal(&Identity::Agent(id)), Err(StoreError::InactiveAgent(_))));
}

#[test]
fn teams_members_and_leaders() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    env.agent("ben", "s1", &[]);
    env.agent("far", "s2", &[]);
    let t = TeamId::new("web").unwrap();
    let rec = env
        .store
        .create_team(
            &Identity::System,
            &t,
            &swarm("s1"),
            "Web Development Team",
            "",
            Some(&AgentId::new("ann").unwrap()),
        )
        .unwrap();
    assert_eq!(rec.members, vec![AgentId::new("ann").unwrap()], "the leader joins its team");
    // The leader may add members; others may not.
    assert!(env.store.add_team_member(&ann, &t, &AgentId::new("ben").unwrap()).unwrap());
    let ben = Identity::Agent(AgentId::new("ben").unwrap());
    assert!(matches!(
        env.store.remove_team_member(&ben, &t, &AgentId::new("ann").unwrap()),
        Err(StoreError::PermissionDenied(_))
    ));
    let e = env
        .store
        .add_team_member(&Identity::System, &t, &AgentId::new("far").unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("different swarms"), "{e}");
    assert!(
        env.store.remove_team_member(&Identity::System, &t, &AgentId::new("ben").unwrap()).unwrap()
    );
    assert!(
        !env.store
            .remove_team_member(&Identity::System, &t, &AgentId::new("ben").unwrap())
            .unwrap()
    );
    let e = env.store.create_team(
        &Identity::System,
        &TeamId::new("web2").unwrap(),
        &swarm("s1"),
        "Web Development Team",
        "",
        None,
    );
    assert!(e.is_err(), "team names are unique in a swarm");
    assert_eq!(env.store.list_teams(&Identity::System, Some(&swarm("s1"))).unwrap().len(), 1);
}

#[test]
fn status_changes_and_swarm_configuration() {
    let env = Env::new();
    env.agent("ann", "s1", &[]);
    let id = AgentId::new("ann").unwrap();
    let rec = env
        .store
        .update_agent(
            &Identity::System,
            &id,
            AgentUpdate {
                name: Some("Ann".into()),
                status: Some(AgentStatus::Inactive),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((rec.name.as_str(), rec.status), ("Ann", AgentStatus::Inactive));
    assert!(matches!(
        env.store.principal(&Identity::Agent(id.clone())),
        Err(StoreError::InactiveAgent(_))
    ));
    env.store
        .update_agent(
            &Identity::System,
            &id,
            AgentUpdate { status: Some(AgentStatus::Active), ..Default::default() },
        )
        .unwrap();
    assert!(env.store.principal(&Identity::Agent(id)).is_ok());
    let s = env
        .store
        .update_swarm(
            &Identity::System,
            &swarm("s1"),
            Some(serde_json::json!({ "max_agents": 8 })),
            None,
        )
        .unwrap();
    assert_eq!(s.config["max_agents"], 8);
    assert!(
        env.store
            .update_swarm(&Identity::System, &swarm("s1"), Some(serde_json::json!([1])), None)
            .is_err()
    );
    assert!(matches!(
        env.store.update_swarm(&Identity::System, &swarm("zz"), None, Some("paused")),
        Err(StoreError::NotFound(_))
    ));
}
