//! Artifacts: versions chained to the previous one, lists by task, owner and name, content
//! that round-trips (compressed when large, encrypted at narrow levels) with a BLAKE3
//! hash, and the ACL on reads and on new versions.

use serde_json::json;
use swarm_acl::{AclLevel, Action, AgentId, Grant, Identity, ResourceType};
use swarm_store::{ArtifactFilter, ArtifactInfo, ArtifactSpec, StoreError, TaskSpec};

use crate::fixtures::{Env, READS_BY_LEVEL, World, contains, file_bytes, raw, swarm, world};

fn count(env: &Env, sql: &str) -> i64 {
    raw(env.path()).query_row(sql, [], |r| r.get(0)).unwrap()
}

fn versions(infos: &[ArtifactInfo]) -> Vec<(&str, u64)> {
    infos.iter().map(|i| (i.name.as_str(), i.version)).collect()
}

#[test]
fn versions_of_a_name_chain_to_the_previous_one() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let s = &env.store;
    s.create_task(&ann, TaskSpec::new("write the report").id("t1")).unwrap();
    let store = |who: &Identity, name: &str, body: &str| {
        let spec = ArtifactSpec::new(name, body.as_bytes().to_vec())
            .format("markdown")
            .task("t1")
            .level(AclLevel::Swarm)
            .metadata(json!({ "words": body.split(' ').count() }));
        s.store_artifact(who, spec).unwrap()
    };
    let v1 = store(&ann, "report", "first draft");
    let v2 = store(&ann, "report", "second draft");
    // A swarm-level artifact may be continued by another writer of the swarm.
    let v3 = store(&bob, "report", "final version by bob");
    assert_eq!([v1.version, v2.version, v3.version], [1, 2, 3]);
    assert_eq!(
        [v1.previous.as_deref(), v2.previous.as_deref(), v3.previous.as_deref()],
        [None, Some(v1.id.as_str()), Some(v2.id.as_str())]
    );
    assert_eq!((v3.format.as_str(), v3.size, v3.task.as_deref()), ("markdown", 20, Some("t1")));
    assert_eq!((v3.owner.as_ref().map(AgentId::as_str), v3.level), (Some("bob"), AclLevel::Swarm));
    assert_eq!(v3.metadata, json!({ "words": 4 }));
    let latest = s.latest_artifact(&ann, "report").unwrap().unwrap();
    assert_eq!((latest.info, latest.content), (v3.clone(), b"final version by bob".to_vec()));
    assert_eq!(s.get_artifact(&ann, &v1.id).unwrap().unwrap().content, b"first draft");
    assert_eq!(s.latest_artifact(&ann, "no such name").unwrap(), None);

    // Another name, by another owner, outside the task.
    s.store_artifact(&bob, ArtifactSpec::new("notes", b"n1".to_vec()).level(AclLevel::Swarm))
        .unwrap();
    let list = |f: ArtifactFilter| {
        let infos = s.list_artifacts(&ann, &f).unwrap();
        versions(&infos).into_iter().map(|(n, v)| format!("{n}@{v}")).collect::<Vec<_>>().join(" ")
    };
    assert_eq!(list(ArtifactFilter::default()), "notes@1 report@3 report@2 report@1");
    assert_eq!(
        list(ArtifactFilter { name: Some("report".into()), ..ArtifactFilter::default() }),
        "report@3 report@2 report@1"
    );
    assert_eq!(
        list(ArtifactFilter { task: Some("t1".into()), ..ArtifactFilter::default() }),
        "report@3 report@2 report@1"
    );
    assert_eq!(
        list(ArtifactFilter {
            owner: Some(AgentId::new("bob").unwrap()),
            ..ArtifactFilter::default()
        }),
        "notes@1 report@3"
    );
    assert_eq!(
        list(ArtifactFilter { latest_only: true, ..ArtifactFilter::default() }),
        "notes@1 report@3"
    );
    assert_eq!(
        list(ArtifactFilter {
            owner: Some(AgentId::new("ann").unwrap()),
            latest_only: true,
            ..ArtifactFilter::default()
        }),
        "",
        "ann's versions are not the latest of any name"
    );
    assert_eq!(
        list(ArtifactFilter { limit: Some(2), ..ArtifactFilter::default() }),
        "notes@1 report@3"
    );
    // Names are per swarm: the same name elsewhere starts at version 1.
    let far = env.agent("far", "s2", &[]);
    let other = s
        .store_artifact(&far, ArtifactSpec::new("report", b"s2".to_vec()).level(AclLevel::Swarm))
        .unwrap();
    assert_eq!((other.version, other.previous), (1, None));
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE action = 'artifact.store' AND outcome = 'ok'"
        ),
        5
    );

    let refused = |spec: ArtifactSpec| s.store_artifact(&ann, spec).unwrap_err();
    for spec in [
        ArtifactSpec::new("", vec![1]),
        ArtifactSpec::new("x", vec![1]).format(""),
        ArtifactSpec::new("x", vec![1]).metadata(json!([])),
        ArtifactSpec::new("x", vec![0; s.config().limits().max_value_len + 1]),
    ] {
        let e = refused(spec);
        assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    }
    let e = refused(ArtifactSpec::new("x", vec![1]).task("no-such-task"));
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    let e = s.store_artifact(&Identity::System, ArtifactSpec::new("x", vec![1])).unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "artifacts are stored by agents: {e}");
    let report = s.verify_audit().unwrap();
    assert!(report.is_intact(), "{report:?}");
}

#[test]
fn content_round_trips_compressed_when_large_with_a_blake3_hash() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let s = &env.store;
    let large: Vec<u8> = b"the same log line, again and again\n".repeat(6000);
    let small = b"tiny".to_vec();
    for (name, content, level) in [
        ("large-swarm", &large, AclLevel::Swarm),
        ("large-private", &large, AclLevel::Private),
        ("small-swarm", &small, AclLevel::Swarm),
        ("empty", &Vec::new(), AclLevel::Swarm),
    ] {
        let info =
            s.store_artifact(&ann, ArtifactSpec::new(name, content.clone()).level(level)).unwrap();
        assert_eq!(info.size, content.len() as u64);
        let a = s.get_artifact(&ann, &info.id).unwrap().unwrap();
        assert_eq!(&a.content, content, "{name} round-trips");
        assert_eq!(a.content_hash, blake3::hash(content).to_hex().to_string(), "{name}");
        let (stored_len, stored_hash): (i64, Vec<u8>) = raw(env.path())
            .query_row(
                "SELECT length(content), content_hash FROM artifacts WHERE id = ?1",
                [&info.id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        if content.len() > 1024 {
            assert!(
                (stored_len as usize) < content.len() / 10,
                "{name}: {stored_len} bytes stored for {}",
                content.len()
            );
        }
        // The column holds the content's hash only where the content is not encrypted
        // (otherwise it would confirm guesses about a secret).
        assert_eq!(
            stored_hash == blake3::hash(content).as_bytes(),
            level != AclLevel::Private,
            "{name}"
        );
    }
}

#[test]
fn private_and_team_artifacts_are_sealed_in_the_file() {
    let env = Env::new();
    let red = env.team("red", "s1");
    let ann = env.agent("ann", "s1", &[&red]);
    let canaries = [
        (AclLevel::Private, "CANARY-artifact-private-6d2a"),
        (AclLevel::Team, "CANARY-artifact-team-1f9b"),
        (AclLevel::Swarm, "CANARY-artifact-swarm-c4e0"),
    ];
    for (level, canary) in canaries {
        let mut spec =
            ArtifactSpec::new(format!("doc-{}", level.name()), canary.as_bytes().to_vec())
                .level(level);
        if level == AclLevel::Team {
            spec = spec.team(red.clone());
        }
        let info = env.store.store_artifact(&ann, spec).unwrap();
        assert_eq!(
            env.store.get_artifact(&ann, &info.id).unwrap().unwrap().content,
            canary.as_bytes()
        );
    }
    let bytes = file_bytes(env);
    for (level, canary) in canaries {
        let encrypted = level != AclLevel::Swarm;
        assert_eq!(contains(&bytes, canary), !encrypted, "{level} content in the file");
    }
}

#[test]
fn another_agent_can_neither_read_nor_continue_a_private_artifact() {
    let env = Env::new();
    let red = env.team("red", "s1");
    let ann = env.agent("ann", "s1", &[&red]);
    let bob = env.agent("bob", "s1", &[]);
    let mate = env.agent("mate", "s1", &[&red]);
    let s = &env.store;
    let mine = s.store_artifact(&ann, ArtifactSpec::new("diary", b"dear diary".to_vec())).unwrap();
    assert_eq!(mine.level, AclLevel::Private, "the default level");
    assert_eq!(
        s.store_artifact(&ann, ArtifactSpec::new("diary", b"day two".to_vec())).unwrap().version,
        2,
        "ann herself continues it"
    );
    assert_eq!(s.get_artifact(&bob, &mine.id).unwrap(), None);
    assert_eq!(s.latest_artifact(&bob, "diary").unwrap(), None);
    assert!(s.list_artifacts(&bob, &ArtifactFilter::default()).unwrap().is_empty());
    // bob writing under the name is refused, whatever level he asks for, with the words a
    // memory key held by a record he cannot access gives: the name is taken, nothing of
    // what holds it. (A second chain would let him pass his version off as the newest.)
    let taken = "the name is held by an artifact you cannot access (diary)";
    for level in [AclLevel::Private, AclLevel::Swarm, AclLevel::Public] {
        let spec = ArtifactSpec::new("diary", b"bob's".to_vec()).level(level);
        match s.store_artifact(&bob, spec).unwrap_err() {
            StoreError::PermissionDenied(m) => assert_eq!(m, taken, "{level}"),
            e => panic!("{level}: {e}"),
        }
    }
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE action = 'artifact.store' AND actor = 'bob' AND outcome = 'denied'"
        ),
        3,
        "every refusal is audited"
    );
    assert_eq!(
        s.store_artifact(&bob, ArtifactSpec::new("never-used", b"mine".to_vec())).unwrap().version,
        1
    );
    assert_eq!(s.latest_artifact(&ann, "diary").unwrap().unwrap().info.version, 2);

    // A team artifact is continued by a teammate; an outsider is refused the same way.
    s.store_artifact(&ann, ArtifactSpec::new("plan", b"v1".to_vec()).level(AclLevel::Team))
        .unwrap();
    let v2 = s
        .store_artifact(&mate, ArtifactSpec::new("plan", b"v2".to_vec()).level(AclLevel::Team))
        .unwrap();
    assert_eq!((v2.version, v2.team.as_ref()), (2, Some(&red)));
    let e = s
        .store_artifact(&bob, ArtifactSpec::new("plan", b"v3".to_vec()).level(AclLevel::Swarm))
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::PermissionDenied(m) if m.starts_with("the name is held by")),
        "{e}"
    );
    assert_eq!(s.latest_artifact(&mate, "plan").unwrap().unwrap().info.id, v2.id);
    // A task bob cannot see cannot be named as the artifact's task.
    s.create_task(&ann, TaskSpec::new("secret").id("secret").level(AclLevel::Private)).unwrap();
    let e = s.store_artifact(&bob, ArtifactSpec::new("x", vec![1]).task("secret")).unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
}

#[test]
fn a_visible_artifact_the_writer_may_not_write_is_refused() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    // May read artifacts up to public but write only private ones.
    let reader = env.agent_with(
        "reader",
        "s1",
        &[],
        vec![
            Grant::new(ResourceType::Artifact, Action::Read, AclLevel::Public),
            Grant::new(ResourceType::Artifact, Action::Write, AclLevel::Private),
        ],
    );
    let s = &env.store;
    s.store_artifact(&ann, ArtifactSpec::new("report", b"v1".to_vec()).level(AclLevel::Swarm))
        .unwrap();
    // The reader sees version 1, so a write under the name continues it, and that needs
    // write permission on it: refused (and audited), nothing hidden is revealed.
    let e = s.store_artifact(&reader, ArtifactSpec::new("report", b"mine".to_vec())).unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied(_)), "{e}");
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE action = 'artifact.store' AND actor = 'reader' AND outcome = 'denied'"
        ),
        1
    );
    assert_eq!(count(&env, "SELECT count(*) FROM artifacts"), 1);
    // A name it does not see is its own to start.
    let own = s.store_artifact(&reader, ArtifactSpec::new("notes", b"n".to_vec())).unwrap();
    assert_eq!(own.version, 1);
}

#[test]
fn only_the_owner_of_the_newest_version_changes_its_scope() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let s = &env.store;
    let v1 = s
        .store_artifact(&ann, ArtifactSpec::new("doc", b"shared".to_vec()).level(AclLevel::Swarm))
        .unwrap();
    // bob may continue the swarm-level name, but not narrow it: a private version would
    // lock everyone else out of the name.
    let e = s.store_artifact(&bob, ArtifactSpec::new("doc", b"bob's".to_vec())).unwrap_err();
    assert!(
        matches!(&e, StoreError::PermissionDenied(m) if m.starts_with("only the owner")),
        "{e}"
    );
    let v2 = s
        .store_artifact(&bob, ArtifactSpec::new("doc", b"bob's".to_vec()).level(AclLevel::Swarm))
        .unwrap();
    assert_eq!((v2.version, v2.previous.as_deref()), (2, Some(v1.id.as_str())));
    let latest_only = ArtifactFilter { latest_only: true, ..ArtifactFilter::default() };
    for who in [&ann, &bob, &Identity::System] {
        assert_eq!(s.latest_artifact(who, "doc").unwrap().map(|a| a.info).as_ref(), Some(&v2));
        assert_eq!(s.list_artifacts(who, &latest_only).unwrap(), std::slice::from_ref(&v2));
    }
    // The owner of the newest version may change its scope: bob takes his version 3 private.
    let v3 = s
        .store_artifact(&bob, ArtifactSpec::new("doc", b"draft".to_vec()).level(AclLevel::Private))
        .unwrap();
    assert_eq!((v3.version, v3.level), (3, AclLevel::Private));
    // ann sees version 2 as the newest she can read, and cannot write past bob's private
    // version 3, which she cannot see.
    assert_eq!(s.latest_artifact(&ann, "doc").unwrap().unwrap().info, v2);
    let e = s
        .store_artifact(&ann, ArtifactSpec::new("doc", b"ann's".to_vec()).level(AclLevel::Swarm))
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::PermissionDenied(m) if m.starts_with("the name is held by")),
        "{e}"
    );
    let all = ArtifactFilter { name: Some("doc".into()), ..ArtifactFilter::default() };
    assert_eq!(s.list_artifacts(&bob, &all).unwrap().len(), 3);
    assert_eq!(s.list_artifacts(&ann, &all).unwrap().len(), 2);
}

#[test]
fn a_writer_who_may_not_read_a_level_gets_its_artifact_back() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    // Default grants stop short of level 5.
    let e = env
        .store
        .store_artifact(&ann, ArtifactSpec::new("sys", vec![1]).level(AclLevel::System))
        .unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied(_)), "{e}");
    let mut grants = Grant::defaults();
    grants.push(Grant::new(ResourceType::Artifact, Action::Write, AclLevel::System));
    let boss = env.agent_with("boss", "s1", &[], grants);
    let info = env
        .store
        .store_artifact(&boss, ArtifactSpec::new("sys", b"dump".to_vec()).level(AclLevel::System))
        .unwrap();
    assert_eq!((info.version, info.level, info.size), (1, AclLevel::System, 4));
    let a = env.store.get_artifact(&Identity::System, &info.id).unwrap().unwrap();
    assert_eq!((a.info, a.content), (info.clone(), b"dump".to_vec()));
    assert_eq!(env.store.get_artifact(&boss, &info.id).unwrap(), None);
    assert_eq!(count(&env, "SELECT count(*) FROM artifacts"), 1);
}

/// One artifact per level: levels 1-4 stored by `own` (the team one for red), level 5 by
/// admin (the system does not store artifacts).
fn artifacts_per_level(w: &World) -> Vec<ArtifactInfo> {
    AclLevel::ALL
        .iter()
        .map(|&level| {
            let mut spec = ArtifactSpec::new(
                format!("art-{}", level.name()),
                level.name().as_bytes().to_vec(),
            )
            .level(level);
            if level == AclLevel::Team {
                spec = spec.team(w.red.clone());
            }
            let who = if level == AclLevel::System { "admin" } else { "own" };
            w.env.store.store_artifact(&w.agents[who], spec).unwrap()
        })
        .collect()
}

#[test]
fn every_artifact_read_agrees_with_the_acl_model() {
    let w = world();
    let s = &w.env.store;
    let arts = artifacts_per_level(&w);
    w.suspend_and_revoke(ResourceType::Artifact);
    let allows = |who: &Identity, a: &ArtifactInfo| {
        w.allows(
            who,
            Action::Read,
            ResourceType::Artifact,
            &a.swarm,
            a.level,
            a.owner.as_ref(),
            a.team.as_ref(),
        )
    };
    let literal = READS_BY_LEVEL;
    for (name, want) in literal {
        for (a, want) in arts.iter().zip(want) {
            assert_eq!(allows(&w.agents[name], a), want, "model: {name} reading {}", a.level);
        }
    }
    let s1 = swarm("s1");
    for (name, who) in &w.agents {
        let listed: Vec<String> = match s
            .list_artifacts(who, &ArtifactFilter { limit: Some(1000), ..ArtifactFilter::default() })
        {
            Ok(v) => v.into_iter().map(|a| a.id).collect(),
            Err(StoreError::InactiveAgent(_)) => vec![],
            Err(e) => panic!("{name}: {e}"),
        };
        for a in &arts {
            let may_read = allows(who, a);
            let read = |r: Result<Option<swarm_store::Artifact>, StoreError>| match r {
                Ok(v) => v.map(|x| x.content),
                Err(StoreError::InactiveAgent(_)) => None,
                Err(e) => panic!("{name}: {e}"),
            };
            let got = read(s.get_artifact(who, &a.id));
            assert_eq!(got.is_some(), may_read, "{name} getting the {} artifact", a.level);
            if let Some(content) = got {
                assert_eq!(content, a.level.name().as_bytes());
            }
            let local = w.in_swarm(who, &s1);
            assert_eq!(
                listed.contains(&a.id),
                may_read && local,
                "{name} listing the {} artifact",
                a.level
            );
            let latest = read(s.latest_artifact(who, &a.name));
            // The system has no swarm of its own: it looks names up in every swarm.
            assert_eq!(
                latest.is_some(),
                may_read && (local || who == &Identity::System),
                "{name} latest {}",
                a.level
            );
        }
    }
}
