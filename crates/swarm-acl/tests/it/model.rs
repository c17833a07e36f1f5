//! A reference model of the ACL rule, written from SPEC.md section 3 without looking at
//! the implementation: it enumerates, for one principal, the set of (level, record) pairs
//! it may touch, and `decide` must agree with it on random principals, records and grants.

use proptest::prelude::*;
use swarm_acl::*;

const AGENTS: [&str; 3] = ["ann", "ben", "cat"];
const SWARMS: [&str; 2] = ["s1", "s2"];
const TEAMS: [&str; 3] = ["t1", "t2", "t3"];
const NOW: i64 = 10_000;

#[derive(Clone, Debug)]
struct ModelGrant {
    resource: usize,
    action: usize,
    level: u8,
    /// Offset of the expiry from NOW; `None` never expires.
    expires_in: Option<i64>,
}

#[derive(Clone, Debug)]
struct ModelPrincipal {
    system: bool,
    agent: usize,
    swarm: usize,
    teams: Vec<usize>,
    grants: Vec<ModelGrant>,
}

#[derive(Clone, Debug)]
struct ModelRecord {
    level: u8,
    swarm: usize,
    owner: Option<usize>,
    team: Option<usize>,
}

/// The model: the list of levels whose audience includes the principal, given how the
/// principal relates to the record, then the grant table looked up level by level.
fn model_allows(p: &ModelPrincipal, r: &ModelRecord, resource: usize, action: usize) -> bool {
    if p.system {
        return true;
    }
    let owner = r.owner == Some(p.agent);
    let colleague = r.swarm == p.swarm;
    let teammate = colleague && r.team.is_some_and(|t| p.teams.contains(&t));
    let audience: Vec<u8> = [(1, owner), (2, teammate), (3, colleague), (4, true), (5, colleague)]
        .into_iter()
        .filter(|&(_, admitted)| admitted)
        .map(|(level, _)| level)
        .collect();
    if !audience.contains(&r.level) {
        return false;
    }
    // Some live grant for exactly this resource and action reaches the record's level.
    p.grants.iter().any(|g| {
        g.resource == resource
            && g.action == action
            && g.level >= r.level
            && g.expires_in.is_none_or(|d| d > 0)
    })
}

fn to_principal(p: &ModelPrincipal) -> Principal {
    if p.system {
        return Principal::System;
    }
    let grants = p
        .grants
        .iter()
        .map(|g| {
            let grant = Grant::new(
                ResourceType::ALL[g.resource],
                Action::ALL[g.action],
                AclLevel::from_i64(i64::from(g.level)).unwrap(),
            );
            match g.expires_in {
                Some(d) => grant.expiring_at(Timestamp::from_millis(NOW + d)),
                None => grant,
            }
        })
        .collect();
    Principal::agent(
        AgentId::new(AGENTS[p.agent]).unwrap(),
        SwarmId::new(SWARMS[p.swarm]).unwrap(),
        p.teams.iter().map(|&t| TeamId::new(TEAMS[t]).unwrap()).collect(),
        grants,
        1,
    )
}

fn grant() -> impl Strategy<Value = ModelGrant> {
    (
        0..ResourceType::ALL.len(),
        0..Action::ALL.len(),
        1u8..=5,
        prop_oneof![Just(None), (-5i64..5).prop_map(Some)],
    )
        .prop_map(|(resource, action, level, expires_in)| ModelGrant {
            resource,
            action,
            level,
            expires_in,
        })
}

fn principal() -> impl Strategy<Value = ModelPrincipal> {
    (
        prop::bool::weighted(0.1),
        0..AGENTS.len(),
        0..SWARMS.len(),
        prop::collection::vec(0..TEAMS.len(), 0..3),
        prop::collection::vec(grant(), 0..12),
    )
        .prop_map(|(system, agent, swarm, teams, grants)| ModelPrincipal {
            system,
            agent,
            swarm,
            teams,
            grants,
        })
}

fn record() -> impl Strategy<Value = ModelRecord> {
    (1u8..=5, 0..SWARMS.len(), prop::option::of(0..AGENTS.len()), prop::option::of(0..TEAMS.len()))
        .prop_map(|(level, swarm, owner, team)| ModelRecord { level, swarm, owner, team })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn decide_agrees_with_the_model(
        p in principal(),
        r in record(),
        resource in 0..ResourceType::ALL.len(),
        action in 0..Action::ALL.len(),
    ) {
        let principal = to_principal(&p);
        let swarm = SWARMS[r.swarm];
        let access = Access::new(AclLevel::from_i64(i64::from(r.level)).unwrap(), swarm)
            .with_owner(r.owner.map(|o| AGENTS[o]))
            .with_team(r.team.map(|t| TEAMS[t]));
        let got = decide(
            &principal,
            Action::ALL[action],
            ResourceType::ALL[resource],
            &access,
            Timestamp::from_millis(NOW),
        );
        prop_assert_eq!(got.is_allowed(), model_allows(&p, &r, resource, action));
        // has_permission is the grant half alone.
        let holds = principal.holds(
            ResourceType::ALL[resource],
            Action::ALL[action],
            access.level(),
            Timestamp::from_millis(NOW),
        );
        if got.is_allowed() {
            prop_assert!(holds);
        }
    }
}
