//! Conflicts: listed only to those who can see what they are about, resolved by
//! administrators, and escalated to a consensus round when left open too long (deciding
//! the round resolves them).

use std::time::Duration;

use swarm_acl::{AclLevel, Action, Grant, Identity, ResourceType};
use swarm_store::{
    Ballot, Conflict, ConflictFilter, RoundSpec, RoundStatus, SetOptions, StoreError, TaskSpec,
    Value,
};

use crate::fixtures::{Env, key, raw};

fn count(env: &Env, sql: &str) -> i64 {
    raw(env.path()).query_row(sql, [], |r| r.get(0)).unwrap()
}

fn listed(env: &Env, who: &Identity, kind: &str) -> Vec<Conflict> {
    let filter = ConflictFilter { kind: Some(kind.into()), ..ConflictFilter::default() };
    env.store.list_conflicts(who, &filter).unwrap()
}

/// A failed, split round at swarm level: an open `consensus_split` conflict. Returns the
/// round's id.
fn split_round(env: &Env, id: &str, a: &Identity, b: &Identity) -> String {
    env.store
        .request_consensus(a, RoundSpec::new("memory", "s1/cfg/mode").id(id).quorum(2))
        .unwrap();
    env.store.vote(a, id, Ballot::approve()).unwrap();
    assert_eq!(env.store.vote(b, id, Ballot::reject()).unwrap().round.status, RoundStatus::Failed);
    id.to_owned()
}

#[test]
fn a_conflict_is_listed_only_to_those_who_can_see_what_it_is_about() {
    let env = Env::new();
    let red = env.team("red", "s1");
    let ann = env.agent("ann", "s1", &[&red]);
    let mate = env.agent("mate", "s1", &[&red]);
    let bob = env.agent("bob", "s1", &[]);
    let far = env.agent("far", "s2", &[]);
    let s = &env.store;
    // A compare-and-set mismatch on ann's private record.
    let k = key("s1", "notes", "diary");
    s.set(&ann, &k, Value::from("v1"), &SetOptions::new().level(AclLevel::Private)).unwrap();
    let e = s.set(&ann, &k, Value::from("v2"), &SetOptions::new().if_version(7)).unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    let all = listed(&env, &Identity::System, "version_mismatch");
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].entity_a.0.as_str(), all[0].level), ("memory", AclLevel::Private));
    for who in [&mate, &bob, &far] {
        assert!(
            listed(&env, who, "version_mismatch").is_empty(),
            "{who:?} sees a conflict about a private record"
        );
        assert_eq!(s.get_conflict(who, &all[0].id).unwrap(), None);
    }
    // Concurrent claims of a team task: teammates see them, the rest of the swarm does not.
    s.create_task(&ann, TaskSpec::new("team job").id("tj").level(AclLevel::Team)).unwrap();
    s.claim_task(&ann, "tj", Duration::from_secs(60)).unwrap();
    let e = s.claim_task(&mate, "tj", Duration::from_secs(60)).unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    for (who, sees) in [(&ann, true), (&mate, true), (&bob, false), (&far, false)] {
        assert_eq!(listed(&env, who, "concurrent_claim").len(), usize::from(sees), "{who:?}");
    }
    let c = &listed(&env, &mate, "concurrent_claim")[0];
    assert_eq!(
        (c.status.as_str(), c.strategy.as_str(), c.level),
        ("resolved", "first_write_wins", AclLevel::Team)
    );
    assert_eq!(c.entity_b, Some(("agent".to_owned(), "mate".to_owned())));
    // A split round at swarm level: the swarm sees it, another swarm does not.
    split_round(&env, "r", &ann, &bob);
    assert_eq!(listed(&env, &bob, "consensus_split").len(), 1);
    assert!(listed(&env, &far, "consensus_split").is_empty());
    // Filters: status and swarm.
    let open = s
        .list_conflicts(
            &Identity::System,
            &ConflictFilter { status: Some("open".into()), ..ConflictFilter::default() },
        )
        .unwrap();
    assert_eq!(open.iter().map(|c| c.kind.as_str()).collect::<Vec<_>>(), ["consensus_split"]);
    let s2 = s
        .list_conflicts(
            &Identity::System,
            &ConflictFilter {
                swarm: Some(swarm_acl::SwarmId::new("s2").unwrap()),
                ..ConflictFilter::default()
            },
        )
        .unwrap();
    assert!(s2.is_empty());
}

#[test]
fn resolving_a_conflict_needs_an_admin_grant() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let far = env.agent("far", "s2", &[]);
    let mut grants = Grant::defaults();
    grants.push(Grant::new(ResourceType::Consensus, Action::Admin, AclLevel::Swarm));
    let boss = env.agent_with("boss", "s1", &[], grants);
    let s = &env.store;
    split_round(&env, "r1", &ann, &bob);
    split_round(&env, "r2", &ann, &bob);
    let ids: Vec<String> =
        listed(&env, &ann, "consensus_split").into_iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), 2);
    let e = s.resolve_conflict(&ann, &ids[0], "ann decides", false).unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied(_)), "{e}");
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE action = 'conflict.resolve' AND outcome = 'denied'"
        ),
        1
    );
    let e = s.resolve_conflict(&far, &ids[0], "from afar", false).unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "what far cannot see is absent: {e}");
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE action = 'conflict.resolve' AND actor = 'far' AND outcome = 'denied'"
        ),
        1,
        "and the attempt is audited"
    );
    env.clock.advance(5);
    let c = s.resolve_conflict(&boss, &ids[0], "keep mode=fast", false).unwrap();
    assert_eq!(
        (c.status.as_str(), c.resolution.as_deref(), c.resolved_by.as_deref()),
        ("resolved", Some("keep mode=fast"), Some("boss"))
    );
    assert_eq!(c.resolved_at, Some(env.store.now()));
    let c = s.resolve_conflict(&boss, &ids[1], "not worth it", true).unwrap();
    assert_eq!(c.status, "dismissed");
    for id in &ids {
        let e = s.resolve_conflict(&boss, id, "again", false).unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "a settled conflict stays settled: {e}");
    }
    let e = s.resolve_conflict(&boss, &ids[0], "", false).unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    let e = s.resolve_conflict(&boss, "cf-nothing", "x", false).unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE action = 'conflict.resolve' AND outcome = 'ok'"
        ),
        2
    );
}

#[test]
fn a_stale_open_conflict_is_escalated_and_deciding_the_round_resolves_it() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let carl = env.agent("carl", "s1", &[]);
    let s = &env.store;
    split_round(&env, "split", &ann, &bob);
    let conflict = listed(&env, &ann, "consensus_split").remove(0);
    assert_eq!(conflict.status, "open");
    // Not yet stale.
    env.clock.advance(59_999);
    assert_eq!(s.escalate_stale_conflicts(&Identity::System, 60_000).unwrap(), 0);
    let e = s.escalate_stale_conflicts(&ann, 60_000).unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied(_)), "{e}");
    env.clock.advance(1);
    assert_eq!(s.escalate_stale_conflicts(&Identity::System, 60_000).unwrap(), 1);
    assert_eq!(s.escalate_stale_conflicts(&Identity::System, 60_000).unwrap(), 0, "escalated once");
    let c = s.get_conflict(&ann, &conflict.id).unwrap().unwrap();
    assert_eq!((c.status.as_str(), c.strategy.as_str()), ("escalated", "consensus"));
    let round_id = c.consensus_id.clone().expect("the round it was escalated to");
    let round = s.get_round(&carl, &round_id).unwrap().expect("the swarm sees the round");
    assert_eq!(
        (round.target_type.as_str(), round.target_id.as_str()),
        ("conflict", conflict.id.as_str())
    );
    assert_eq!((round.status, round.level, round.quorum), (RoundStatus::Open, conflict.level, 1));
    // The swarm decides; the conflict is resolved by that decision.
    let v = s.vote(&carl, &round_id, Ballot::approve()).unwrap();
    assert_eq!((v.round.status, v.decided_now), (RoundStatus::Achieved, true));
    let c = s.get_conflict(&ann, &conflict.id).unwrap().unwrap();
    assert_eq!((c.status.as_str(), c.resolved_by.as_deref()), ("resolved", Some("consensus")));
    let resolution = c.resolution.unwrap();
    assert!(resolution.contains(&round_id) && resolution.contains("achieved"), "{resolution}");
    assert_eq!(count(&env, "SELECT count(*) FROM audit_log WHERE action = 'conflict.escalate'"), 1);
    let report = s.verify_audit().unwrap();
    assert!(report.is_intact(), "{report:?}");
}

#[test]
fn an_old_conflict_is_found_and_resolved_behind_a_thousand_newer_ones() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let mut grants = Grant::defaults();
    grants.push(Grant::new(ResourceType::Consensus, Action::Admin, AclLevel::Swarm));
    let boss = env.agent_with("boss", "s1", &[], grants);
    split_round(&env, "old", &ann, &bob);
    let old = listed(&env, &ann, "consensus_split").remove(0);
    env.clock.advance(1);
    // A thousand refused self-dependencies later (8 writers, so they share commits)...
    env.store.create_task(&ann, TaskSpec::new("loop").id("loop")).unwrap();
    std::thread::scope(|sc| {
        for _ in 0..8 {
            let store = env.store.clone();
            let ann = ann.clone();
            sc.spawn(move || {
                for _ in 0..125 {
                    let e = store
                        .add_dependency(&ann, "loop", "loop", swarm_store::DependencyKind::Hard)
                        .unwrap_err();
                    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
                }
            });
        }
    });
    assert_eq!(count(&env, "SELECT count(*) FROM conflicts WHERE type = 'dependency_clash'"), 1000);
    // ...the old conflict is still there to get, and resolving it says so.
    assert_eq!(
        env.store.get_conflict(&boss, &old.id).unwrap().map(|c| c.status),
        Some("open".to_owned())
    );
    let c = env.store.resolve_conflict(&boss, &old.id, "settled by hand", false).unwrap();
    assert_eq!((c.id, c.status.as_str()), (old.id, "resolved"));
}
