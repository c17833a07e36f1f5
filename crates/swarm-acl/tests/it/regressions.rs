//! The ACL failures of the published JavaScript version (SPEC.md section 9), each as a
//! case that must not happen here.

use swarm_acl::*;

fn id(s: &str) -> AgentId {
    AgentId::new(s).unwrap()
}

fn agent(name: &str, swarm: &str, teams: &[&str], grants: Vec<Grant>) -> Principal {
    Principal::agent(
        id(name),
        SwarmId::new(swarm).unwrap(),
        teams.iter().map(|t| TeamId::new(t).unwrap()).collect(),
        grants,
        1,
    )
}

const NOW: Timestamp = Timestamp::from_millis(1_000);

fn read(p: &Principal, r: &Access<'_>) -> bool {
    decide(p, Action::Read, ResourceType::Memory, r, NOW).is_allowed()
}

#[test]
fn owners_can_read_their_private_records() {
    let ann = agent("ann", "s", &[], Grant::defaults());
    let r = Access::new(AclLevel::Private, "s").with_owner(Some("ann"));
    assert!(read(&ann, &r));
    let ben = agent("ben", "s", &[], Grant::defaults());
    assert!(!read(&ben, &r));
}

#[test]
fn team_rule_compares_the_records_team_not_merely_having_one() {
    let ann = agent("ann", "s", &["red"], Grant::defaults());
    let blue = Access::new(AclLevel::Team, "s").with_team(Some("blue"));
    assert!(!read(&ann, &blue), "a member of red must not read blue's team records");
    let red = Access::new(AclLevel::Team, "s").with_team(Some("red"));
    assert!(read(&ann, &red));
    // A team record with no team is visible to nobody but the system.
    let none = Access::new(AclLevel::Team, "s");
    assert!(!read(&ann, &none));
    assert!(read(&Principal::System, &none));
}

#[test]
fn team_rule_also_requires_the_records_swarm() {
    let ann = agent("ann", "s1", &["red"], Grant::defaults());
    let other_swarm = Access::new(AclLevel::Team, "s2").with_team(Some("red"));
    assert!(!read(&ann, &other_swarm));
}

#[test]
fn swarm_rule_compares_the_records_swarm() {
    let ann = agent("ann", "s1", &[], Grant::defaults());
    assert!(read(&ann, &Access::new(AclLevel::Swarm, "s1")));
    assert!(!read(&ann, &Access::new(AclLevel::Swarm, "s2")));
    assert!(read(&ann, &Access::new(AclLevel::Public, "s2")), "public crosses swarms");
}

#[test]
fn system_records_need_an_explicit_level_five_grant() {
    let r = Access::new(AclLevel::System, "s");
    let plain = agent("ann", "s", &[], Grant::defaults());
    assert!(!read(&plain, &r));
    let mut grants = Grant::defaults();
    grants.push(Grant::new(ResourceType::Memory, Action::Read, AclLevel::System));
    let admin = agent("ann", "s", &[], grants.clone());
    assert!(read(&admin, &r));
    // The grant is for memory reads only.
    assert!(!decide(&admin, Action::Write, ResourceType::Memory, &r, NOW).is_allowed());
    assert!(!decide(&admin, Action::Read, ResourceType::Task, &r, NOW).is_allowed());
    // And only in the agent's own swarm.
    let elsewhere = agent("ann", "s2", &[], grants);
    assert!(!read(&elsewhere, &r));
}

#[test]
fn grants_are_checked_per_resource_type() {
    // The JS version took the highest permission row regardless of resource type.
    let only_tasks = agent(
        "ann",
        "s",
        &[],
        vec![Grant::new(ResourceType::Task, Action::Read, AclLevel::System)],
    );
    assert!(!read(&only_tasks, &Access::new(AclLevel::Public, "s")));
}

#[test]
fn an_agent_without_grants_sees_nothing_not_even_public() {
    let bare = agent("ann", "s", &[], vec![]);
    for level in AclLevel::ALL {
        let r = Access::new(level, "s").with_owner(Some("ann")).with_team(Some("t"));
        assert!(!read(&bare, &r), "{level}");
    }
}

#[test]
fn there_is_no_default_identity() {
    // "system" cannot be claimed as an agent id, so no caller-supplied id can become the
    // system principal.
    assert!(AgentId::new("system").is_err());
    assert!(AgentId::new("").is_err());
}

#[test]
fn sql_predicate_mentions_no_level_above_the_grant() {
    let p = agent(
        "ann",
        "s",
        &["t"],
        vec![Grant::new(ResourceType::Memory, Action::Read, AclLevel::Swarm)],
    );
    let cols = SqlColumns { level: "lvl", swarm: "sw", owner: "own", team: "tm" };
    let pred = sql_predicate(&p, Action::Read, ResourceType::Memory, cols, NOW, 1);
    assert!(!pred.sql().contains("lvl = 4") && !pred.sql().contains("lvl = 5"), "{}", pred.sql());
    assert!(pred.sql().contains("lvl = 3"));
}
