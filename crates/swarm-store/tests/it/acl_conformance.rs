//! For agents of every relation to a record and records at every level, every read path
//! and write path agrees with the swarm-acl decision, and leaks nothing.

use std::collections::BTreeMap;

use swarm_acl::{AclLevel, Action, Grant, Identity, ResourceType, decide};
use swarm_store::{
    AgentStatus, AgentUpdate, ChangeFilter, KeyPattern, ListQuery, Namespace, SetOptions,
    StoreError, Value,
};

use crate::fixtures::{READS_BY_LEVEL, World, key, swarm, world};

/// Writes one record per level into `ns`: levels 1-4 by `own`, level 5 by the system.
fn write_records(w: &World, ns: &str) -> Vec<(AclLevel, swarm_store::RecordKey)> {
    let own = &w.agents["own"];
    let mut out = Vec::new();
    for level in AclLevel::ALL {
        let k = key("s1", ns, &format!("{}-record", level.name()));
        let mut opts = SetOptions::new().level(level);
        if level == AclLevel::Team {
            opts = opts.team(w.red.clone());
        }
        let who = if level == AclLevel::System { &Identity::System } else { own };
        w.env.store.set(who, &k, Value::Text(format!("{} secret", level.name())), &opts).unwrap();
        out.push((level, k));
    }
    out
}

fn expected(w: &World, who: &Identity, action: Action, k: &swarm_store::RecordKey) -> bool {
    // The model: the record's stored scope, judged by swarm-acl for the resolved principal.
    let Ok(p) = w.env.store.principal(who) else { return false };
    let r = w.env.store.get(&Identity::System, k).unwrap().unwrap();
    let access = swarm_acl::Access::new(r.meta.level, k.swarm())
        .with_owner(r.meta.owner.as_ref())
        .with_team(r.meta.team.as_ref());
    decide(&p, action, ResourceType::Memory, &access, w.env.store.now()).is_allowed()
}

fn read_paths(w: &World, who: &Identity, k: &swarm_store::RecordKey) -> [bool; 6] {
    let s = &w.env.store;
    let ok_or_none = |r: Result<bool, StoreError>| match r {
        Ok(v) => v,
        Err(StoreError::InactiveAgent(_)) => false,
        Err(e) => panic!("{e}"),
    };
    let get = ok_or_none(s.get(who, k).map(|r| r.is_some()));
    let has = ok_or_none(s.has(who, k));
    let mget = ok_or_none(s.mget(who, std::slice::from_ref(k)).map(|v| v[0].is_some()));
    let keys = ok_or_none(
        s.keys(who, k.swarm(), k.namespace(), &KeyPattern::literal(k.key().as_str()), 10)
            .map(|v| v.len() == 1),
    );
    let list = ok_or_none(
        s.list(
            who,
            &ListQuery::new(k.swarm().clone()).namespace(k.namespace().clone()).limit(1000),
        )
        .map(|p| p.items.iter().any(|i| &i.key == k.key())),
    );
    let feed = ok_or_none(
        s.changes_since(
            who,
            0,
            &ChangeFilter::swarm(k.swarm().clone()).namespace(k.namespace().clone()),
            1000,
        )
        .map(|p| p.changes.iter().any(|c| &c.key == k)),
    );
    [get, has, mget, keys, list, feed]
}

#[test]
fn every_read_path_agrees_with_the_model_for_every_relation_and_level() {
    let w = world();
    let records = write_records(&w, "read");
    // After writing: suspend one agent, revoke another's memory reads at every level.
    w.env
        .store
        .update_agent(
            &Identity::System,
            &swarm_acl::AgentId::new("sus").unwrap(),
            AgentUpdate { status: Some(AgentStatus::Suspended), ..AgentUpdate::default() },
        )
        .unwrap();
    let rev = swarm_acl::AgentId::new("rev").unwrap();
    // Warm rev's cache entry first, so the revoke must beat a cached principal.
    assert!(w.env.store.get(&w.agents["rev"], &records[3].1).unwrap().is_some());
    for level in AclLevel::ALL {
        w.env
            .store
            .revoke(&Identity::System, &rev, ResourceType::Memory, level, Some(vec![Action::Read]))
            .unwrap();
    }

    // Literal expectations, so agreement with the model cannot be vacuous.
    let literal: BTreeMap<&str, [bool; 5]> = BTreeMap::from(READS_BY_LEVEL);
    for (name, who) in &w.agents {
        for (i, (level, k)) in records.iter().enumerate() {
            let want = literal[name][i];
            assert_eq!(expected(&w, who, Action::Read, k), want, "model: {name} reading {level}");
            let paths = read_paths(&w, who, k);
            assert_eq!(
                paths, [want; 6],
                "{name} reading the {level} record: [get, has, mget, keys, list, feed]"
            );
        }
        // Stats count exactly the visible records.
        match w.env.store.stats(who, Some(&swarm("s1"))) {
            Ok(stats) => {
                let visible = literal[name].iter().filter(|v| **v).count() as u64;
                assert_eq!(stats.records, visible, "{name} stats");
            }
            Err(StoreError::InactiveAgent(_)) => assert!(literal[name].iter().all(|v| !v)),
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn hidden_records_behave_exactly_as_absent_ones_and_the_denial_is_audited() {
    let w = world();
    let records = write_records(&w, "hidden");
    let far = &w.agents["far"];
    let private = &records[0].1;
    let absent = key("s1", "hidden", "never-written");
    assert_eq!(w.env.store.get(far, private).unwrap(), w.env.store.get(far, &absent).unwrap());
    assert_eq!(w.env.store.has(far, private).unwrap(), w.env.store.has(far, &absent).unwrap());
    assert!(!w.env.store.delete(far, private, None).unwrap());
    // The denied reads reach the audit trail once the background flush (or the next
    // write) runs.
    w.env.store.set(far, &key("s2", "x", "y"), "v".into(), &SetOptions::new()).unwrap();
    let conn = crate::fixtures::raw(w.env.path());
    let denied: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit_log WHERE actor = 'far' AND outcome = 'denied' AND resource = ?1",
            [private.to_string()],
            |r| r.get(0),
        )
        .unwrap();
    assert!(denied >= 3, "get, has and delete of a hidden record are audited, found {denied}");
}

#[test]
fn every_write_path_agrees_with_the_model() {
    let w = world();
    for (name, who) in &w.agents {
        let ns = format!("write-{name}");
        let records = write_records(&w, &ns);
        for (level, k) in &records {
            let may_write = expected(&w, who, Action::Write, k);
            let may_delete = expected(&w, who, Action::Delete, k);
            let same_swarm = name != &"far";
            let set = w.env.store.set(who, k, Value::from("overwritten"), &SetOptions::new());
            assert_eq!(set.is_ok(), may_write && same_swarm, "{name} overwriting {level}: {set:?}");
            if set.is_err() {
                // The record is untouched.
                let r = w.env.store.get(&Identity::System, k).unwrap().unwrap();
                assert_eq!(
                    r.value,
                    Value::Text(format!("{} secret", level.name())),
                    "{name} changed {level}"
                );
            }
            let incr = w.env.store.incr(who, k, 1, &SetOptions::new());
            assert!(
                !(incr.is_ok() && !(may_write && same_swarm)),
                "{name} incremented {level} without write permission"
            );
            let del = w.env.store.delete(who, k, None);
            assert_eq!(matches!(del, Ok(true)), may_delete, "{name} deleting {level}: {del:?}");
        }
    }
}

#[test]
fn nobody_downgrades_or_rescopes_a_record_they_do_not_own() {
    let w = world();
    let own = &w.agents["own"];
    let mate = &w.agents["mate"];
    let peer = &w.agents["peer"];
    let k = key("s1", "scope", "team-doc");
    w.env
        .store
        .set(own, &k, "v1".into(), &SetOptions::new().level(AclLevel::Team).team(w.red.clone()))
        .unwrap();
    // A teammate may update the content, keeping the scope...
    w.env.store.set(mate, &k, "v2".into(), &SetOptions::new()).unwrap();
    let r = w.env.store.get(own, &k).unwrap().unwrap();
    assert_eq!(
        (r.meta.level, r.meta.owner.as_ref().map(|o| o.as_str())),
        (AclLevel::Team, Some("own"))
    );
    // ...but not make it private to itself, nor publish it.
    for level in [AclLevel::Private, AclLevel::Public, AclLevel::Swarm] {
        let e =
            w.env.store.set(mate, &k, "grab".into(), &SetOptions::new().level(level)).unwrap_err();
        assert!(matches!(e, StoreError::PermissionDenied(_)), "{level}: {e}");
    }
    // Someone outside the team cannot overwrite it by naming a wider level.
    let e = w
        .env
        .store
        .set(peer, &k, "mine now".into(), &SetOptions::new().level(AclLevel::Swarm))
        .unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied(_)), "{e}");
    // The owner may re-scope.
    w.env.store.set(own, &k, "v3".into(), &SetOptions::new().level(AclLevel::Swarm)).unwrap();
    assert!(w.env.store.get(peer, &k).unwrap().is_some());
    // Writing a team record for a team one is not in is refused.
    let other = w.env.team("blue", "s1");
    let e = w
        .env
        .store
        .set(
            own,
            &key("s1", "scope", "blue-doc"),
            "x".into(),
            &SetOptions::new().level(AclLevel::Team).team(other),
        )
        .unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied(_)), "{e}");
    // And level 5 needs an explicit grant.
    let e = w
        .env
        .store
        .set(
            own,
            &key("s1", "scope", "sys"),
            "x".into(),
            &SetOptions::new().level(AclLevel::System),
        )
        .unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied(_)), "{e}");
}

#[test]
fn a_revoke_takes_effect_on_the_next_call_even_with_a_warm_cache() {
    let w = world();
    let peer = &w.agents["peer"];
    let k = key("s1", "rv", "doc");
    w.env
        .store
        .set(&Identity::System, &k, "shared".into(), &SetOptions::new().level(AclLevel::Swarm))
        .unwrap();
    for _ in 0..3 {
        assert!(w.env.store.get(peer, &k).unwrap().is_some());
    }
    let hits_before = w.env.store.acl_cache_stats().hits;
    assert!(hits_before > 0, "the principal is served from the cache");
    let id = swarm_acl::AgentId::new("peer").unwrap();
    for level in [AclLevel::Swarm, AclLevel::Public] {
        w.env.store.revoke(&Identity::System, &id, ResourceType::Memory, level, None).unwrap();
    }
    assert!(w.env.store.get(peer, &k).unwrap().is_none(), "revoked read still allowed");
    assert!(!w.env.store.has(peer, &k).unwrap());
    assert!(matches!(
        w.env.store.set(peer, &k, "x".into(), &SetOptions::new()),
        Err(StoreError::PermissionDenied(_))
    ));
    // And a grant is honoured at once.
    w.env
        .store
        .grant(
            &Identity::System,
            &id,
            Grant::new(ResourceType::Memory, Action::Read, AclLevel::Swarm),
        )
        .unwrap();
    assert!(w.env.store.get(peer, &k).unwrap().is_some());
}

#[test]
fn an_agent_that_only_writes_is_loaded_once_and_still_sees_a_revoke() {
    let w = world();
    let peer = &w.agents["peer"];
    let write = |name: &str| {
        w.env.store.set(
            peer,
            &key("s1", "writes", name),
            "x".into(),
            &SetOptions::new().level(AclLevel::Swarm),
        )
    };
    write("first").unwrap();
    // An unrelated ACL change makes the cached principal stale: the next write reloads
    // it, and the ones after that must not.
    w.env.agent("newcomer", "s1", &[]);
    write("reload").unwrap();
    let before = w.env.store.acl_cache_stats();
    for i in 0..5 {
        write(&format!("again-{i}")).unwrap();
    }
    let after = w.env.store.acl_cache_stats();
    assert_eq!(after.misses, before.misses, "a write reloaded a principal it had loaded");
    assert!(after.hits >= before.hits + 5, "writes are not served from the cache");
    let id = swarm_acl::AgentId::new("peer").unwrap();
    for level in [AclLevel::Swarm, AclLevel::Public] {
        w.env.store.revoke(&Identity::System, &id, ResourceType::Memory, level, None).unwrap();
    }
    assert!(
        matches!(write("after-revoke"), Err(StoreError::PermissionDenied(_))),
        "a write used the principal cached before the revoke"
    );
}

#[test]
fn expired_grants_stop_working_without_a_sweep() {
    let w = world();
    let k = key("s1", "exp", "sys");
    w.env
        .store
        .set(&Identity::System, &k, "top".into(), &SetOptions::new().level(AclLevel::System))
        .unwrap();
    let id = swarm_acl::AgentId::new("peer").unwrap();
    let until = w.env.store.now().plus_millis(1000);
    w.env
        .store
        .grant(
            &Identity::System,
            &id,
            Grant::new(ResourceType::Memory, Action::Read, AclLevel::System).expiring_at(until),
        )
        .unwrap();
    assert!(w.env.store.get(&w.agents["peer"], &k).unwrap().is_some());
    w.env.clock.advance(1000);
    assert!(w.env.store.get(&w.agents["peer"], &k).unwrap().is_none());
}

#[test]
fn unknown_and_suspended_agents_cannot_act() {
    let w = world();
    let ghost = Identity::Agent(swarm_acl::AgentId::new("ghost").unwrap());
    let k = key("s1", "n", "k");
    assert!(matches!(w.env.store.get(&ghost, &k), Err(StoreError::InactiveAgent(_))));
    assert!(matches!(
        w.env.store.set(&ghost, &k, "x".into(), &SetOptions::new()),
        Err(StoreError::InactiveAgent(_))
    ));
    let sus = swarm_acl::AgentId::new("sus").unwrap();
    // Warm the cache, then suspend: the next call is refused.
    w.env.store.set(&w.agents["sus"], &k, "x".into(), &SetOptions::new()).unwrap();
    w.env
        .store
        .update_agent(
            &Identity::System,
            &sus,
            AgentUpdate { status: Some(AgentStatus::Suspended), ..AgentUpdate::default() },
        )
        .unwrap();
    assert!(matches!(w.env.store.get(&w.agents["sus"], &k), Err(StoreError::InactiveAgent(_))));
    assert!(matches!(
        w.env.store.set(&w.agents["sus"], &k, "y".into(), &SetOptions::new()),
        Err(StoreError::InactiveAgent(_))
    ));
    let _ = Namespace::new("n");
}
