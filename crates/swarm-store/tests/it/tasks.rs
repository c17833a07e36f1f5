//! Tasks: creation with every option, filtered lists, assignment, the validated status
//! table, claims under a lease with fencing tokens (8 claimers at once), dependencies with
//! cycle refusal, readiness, and the ACL on every read and claim.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::json;
use swarm_acl::{AclLevel, Action, AgentId, Grant, Identity, ResourceType, TeamId, Timestamp};
use swarm_store::{
    Assignee, Dependency, DependencyKind, StoreError, Task, TaskChanges, TaskFilter, TaskSpec,
    TaskStatus,
};

use crate::fixtures::{Env, READS_BY_LEVEL, T0, World, raw, swarm, world};

const LEASE: Duration = Duration::from_secs(60);

fn agent_id(id: &str) -> AgentId {
    AgentId::new(id).unwrap()
}

fn ids(tasks: &[Task]) -> Vec<&str> {
    tasks.iter().map(|t| t.id.as_str()).collect()
}

fn count(env: &Env, sql: &str) -> i64 {
    raw(env.path()).query_row(sql, [], |r| r.get(0)).unwrap()
}

fn status_of(env: &Env, id: &str) -> TaskStatus {
    env.store.get_task(&Identity::System, id).unwrap().unwrap().status
}

/// Grants on tasks up to public plus `admin` at public: an operator of the task board.
fn task_admin() -> Vec<Grant> {
    let mut g = Grant::defaults();
    g.push(Grant::new(ResourceType::Task, Action::Admin, AclLevel::Public));
    g
}

#[test]
fn a_task_is_created_with_every_option_and_read_back() {
    let env = Env::new();
    let red = env.team("red", "s1");
    let ann = env.agent("ann", "s1", &[&red]);
    let epic = env.store.create_task(&ann, TaskSpec::new("epic")).unwrap();
    let deadline = Timestamp::from_millis(T0 + 86_400_000);
    let t = env
        .store
        .create_task(
            &ann,
            TaskSpec::new("write the parser")
                .id("parser")
                .description("a recursive descent parser")
                .task_type("code")
                .priority(9)
                .level(AclLevel::Team)
                .team(red.clone())
                .deadline(deadline)
                .parent(&epic.id)
                .requirements(["rust", "tests"])
                .metadata(json!({ "repo": "swarm" }))
                .estimated_hours(3.5),
        )
        .unwrap();
    assert_eq!(
        (t.id.as_str(), t.swarm.as_str(), t.parent.as_deref()),
        ("parser", "s1", Some(epic.id.as_str()))
    );
    assert_eq!(
        (t.title.as_str(), t.description.as_str(), t.task_type.as_str(), t.priority),
        ("write the parser", "a recursive descent parser", "code", 9)
    );
    assert_eq!(
        (t.level, t.team.as_ref(), t.owner.as_ref()),
        (AclLevel::Team, Some(&red), Some(&agent_id("ann")))
    );
    assert_eq!(t.requirements, ["rust", "tests"]);
    assert_eq!(t.metadata, json!({ "repo": "swarm" }));
    assert_eq!((t.deadline, t.estimated_hours), (Some(deadline), Some(3.5)));
    assert_eq!((t.status, t.progress, t.fencing_token), (TaskStatus::Pending, 0, 0));
    assert_eq!((t.lease.as_ref(), t.assignee.as_ref(), t.result.as_ref()), (None, None, None));
    assert_eq!(t.created_at, Timestamp::from_millis(T0));
    assert_eq!(env.store.get_task(&ann, "parser").unwrap(), Some(t));
    // The defaults: general, priority 5, swarm level, generated id.
    assert_eq!(
        (epic.task_type.as_str(), epic.priority, epic.level, epic.id.starts_with("task")),
        ("general", 5, AclLevel::Swarm, true)
    );
    // The system names the swarm; a task is then owned by nobody.
    let sys =
        env.store.create_task(&Identity::System, TaskSpec::new("ops").swarm(swarm("s2"))).unwrap();
    assert_eq!((sys.swarm.as_str(), sys.owner), ("s2", None));

    let invalid = |spec: TaskSpec| env.store.create_task(&ann, spec).unwrap_err();
    for spec in [
        TaskSpec::new("p").priority(0),
        TaskSpec::new("p").priority(11),
        TaskSpec::new(" "),
        TaskSpec::new("m").metadata(json!([1, 2])),
        TaskSpec::new("h").estimated_hours(-1.0),
        TaskSpec::new("dup").id("parser"),
        TaskSpec::new("bad id").id("no spaces"),
        TaskSpec::new("team without team").team(red.clone()),
    ] {
        let e = invalid(spec);
        assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    }
    let e = invalid(TaskSpec::new("orphan").parent("no-such-task"));
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    let e = invalid(TaskSpec::new("elsewhere").swarm(swarm("s2")));
    assert!(matches!(e, StoreError::PermissionDenied(_)), "{e}");
    let e = env.store.create_task(&Identity::System, TaskSpec::new("where?")).unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    // A parent the creator cannot see is as absent as a missing one.
    let bob = env.agent("bob", "s1", &[]);
    let e = env.store.create_task(&bob, TaskSpec::new("child").parent("parser")).unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
}

#[test]
fn lists_filter_by_status_assignee_type_parent_and_readiness() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let s = &env.store;
    let mk = |id: &str, ty: &str, prio: u8| TaskSpec::new(id).id(id).task_type(ty).priority(prio);
    s.create_task(&ann, mk("epic", "plan", 3)).unwrap();
    s.create_task(&ann, mk("review", "review", 8).parent("epic")).unwrap();
    s.create_task(&ann, mk("build", "code", 5).parent("epic")).unwrap();
    s.create_task(&ann, mk("fetch", "code", 5)).unwrap();
    s.add_dependency(&ann, "build", "fetch", DependencyKind::Hard).unwrap();
    s.assign_task(&ann, "review", Assignee::Agent(agent_id("bob"))).unwrap();
    s.claim_task(&ann, "fetch", LEASE).unwrap();

    let list = |f: TaskFilter| ids(&s.list_tasks(&ann, &f).unwrap()).join(" ");
    // Highest priority first, then oldest (all created at T0: then by id).
    assert_eq!(list(TaskFilter::default()), "review build fetch epic");
    let by_status = |st| TaskFilter { status: Some(st), ..TaskFilter::default() };
    assert_eq!(list(by_status(TaskStatus::Pending)), "review build epic");
    assert_eq!(list(by_status(TaskStatus::Claimed)), "fetch");
    assert_eq!(list(by_status(TaskStatus::Completed)), "");
    assert_eq!(
        list(TaskFilter { assignee: Some(agent_id("bob")), ..TaskFilter::default() }),
        "review"
    );
    assert_eq!(
        list(TaskFilter { task_type: Some("code".into()), ..TaskFilter::default() }),
        "build fetch"
    );
    assert_eq!(
        list(TaskFilter { parent: Some("epic".into()), ..TaskFilter::default() }),
        "review build"
    );
    // build waits for fetch (claimed, not completed); fetch itself is not pending.
    assert_eq!(list(TaskFilter { ready_only: true, ..TaskFilter::default() }), "review epic");
    assert_eq!(ids(&s.ready_tasks(&bob, 10).unwrap()), ["review", "epic"]);
    assert_eq!(list(TaskFilter { limit: Some(1), ..TaskFilter::default() }), "review");
    assert_eq!(list(TaskFilter { swarm: Some(swarm("s2")), ..TaskFilter::default() }), "");
    assert_eq!(
        list(TaskFilter {
            status: Some(TaskStatus::Pending),
            task_type: Some("code".into()),
            parent: Some("epic".into()),
            ..TaskFilter::default()
        }),
        "build"
    );
}

#[test]
fn an_update_changes_only_what_it_names() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let reader = env.agent_with(
        "reader",
        "s1",
        &[],
        vec![Grant::new(ResourceType::Task, Action::Read, AclLevel::Public)],
    );
    let bob = env.agent("bob", "s1", &[]);
    let s = &env.store;
    let before = s
        .create_task(&ann, TaskSpec::new("old").id("t").description("keep me").estimated_hours(1.0))
        .unwrap();
    env.clock.advance(5);
    let after = s
        .update_task(
            &ann,
            "t",
            TaskChanges {
                title: Some("new".into()),
                priority: Some(7),
                requirements: Some(vec!["docs".into()]),
                metadata: Some(json!({ "k": 1 })),
                ..TaskChanges::default()
            },
        )
        .unwrap();
    assert_eq!((after.title.as_str(), after.priority), ("new", 7));
    assert_eq!(
        (after.requirements.clone(), after.metadata.clone()),
        (vec!["docs".to_owned()], json!({ "k": 1 }))
    );
    assert_eq!((after.description.as_str(), after.estimated_hours), ("keep me", Some(1.0)));
    assert_eq!((after.status, after.created_at), (before.status, before.created_at));
    assert_eq!(after.updated_at, Timestamp::from_millis(T0 + 5));

    for changes in [
        TaskChanges { priority: Some(0), ..TaskChanges::default() },
        TaskChanges { title: Some(String::new()), ..TaskChanges::default() },
        TaskChanges { metadata: Some(json!("not an object")), ..TaskChanges::default() },
        TaskChanges { estimated_hours: Some(-2.0), ..TaskChanges::default() },
        TaskChanges { estimated_hours: Some(f64::NAN), ..TaskChanges::default() },
    ] {
        let e = s.update_task(&ann, "t", changes).unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    }
    assert_eq!(s.get_task(&ann, "t").unwrap().unwrap(), after, "refused updates change nothing");
    // Someone who may read but not write is refused (and audited); a private task of
    // someone else is absent.
    let e = s.update_task(&reader, "t", TaskChanges::default()).unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied(_)), "{e}");
    s.create_task(&ann, TaskSpec::new("mine").id("mine").level(AclLevel::Private)).unwrap();
    let e = s.update_task(&bob, "mine", TaskChanges::default()).unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE action = 'task.update' AND actor = 'reader' AND outcome = 'denied'"
        ),
        1
    );
}

#[test]
fn an_assignment_decides_who_may_claim() {
    let env = Env::new();
    let red = env.team("red", "s1");
    env.team("blue", "s2");
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let dan = env.agent("dan", "s1", &[&red]);
    env.agent("far", "s2", &[]);
    let s = &env.store;
    s.create_task(&ann, TaskSpec::new("for bob").id("b")).unwrap();
    s.create_task(&ann, TaskSpec::new("for red").id("r")).unwrap();

    let t = s.assign_task(&ann, "b", Assignee::Agent(agent_id("bob"))).unwrap();
    assert_eq!((t.assignee.as_ref(), t.assignee_team.as_ref()), (Some(&agent_id("bob")), None));
    let e = s.claim_task(&ann, "b", LEASE).unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied(_)), "{e}");
    assert_eq!(s.claim_task(&bob, "b", LEASE).unwrap().task.lease.unwrap().holder, agent_id("bob"));

    let t = s.assign_task(&ann, "r", Assignee::Team(red.clone())).unwrap();
    assert_eq!((t.assignee.as_ref(), t.assignee_team.as_ref()), (None, Some(&red)));
    let e = s.claim_task(&bob, "r", LEASE).unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied(_)), "{e}");
    s.claim_task(&dan, "r", LEASE).unwrap();

    // Agents and teams of another swarm, and unknown ones, cannot be assigned.
    for to in [
        Assignee::Agent(agent_id("far")),
        Assignee::Agent(agent_id("nobody")),
        Assignee::Team(TeamId::new("blue").unwrap()),
        Assignee::Team(TeamId::new("ghosts").unwrap()),
    ] {
        let e = s.assign_task(&ann, "b", to).unwrap_err();
        assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    }
    // Unassigned again: anyone allowed may claim.
    s.create_task(&ann, TaskSpec::new("open").id("o")).unwrap();
    s.assign_task(&ann, "o", Assignee::Agent(agent_id("dan"))).unwrap();
    let t = s.assign_task(&ann, "o", Assignee::Nobody).unwrap();
    assert_eq!((t.assignee, t.assignee_team), (None, None));
    s.claim_task(&bob, "o", LEASE).unwrap();
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE action = 'task.claim' AND outcome = 'denied'"
        ),
        2,
        "both refused claims are audited"
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE action = 'task.assign' AND outcome = 'ok'"
        ),
        4
    );
}

#[test]
fn progress_runs_from_0_to_100_under_the_lease() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let s = &env.store;
    s.create_task(&ann, TaskSpec::new("work").id("w")).unwrap();
    let claim = s.claim_task(&ann, "w", LEASE).unwrap();
    let t = s.report_progress(&ann, "w", claim.token, 40).unwrap();
    assert_eq!((t.status, t.progress), (TaskStatus::InProgress, 40));
    let e = s.report_progress(&ann, "w", claim.token, 101).unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    assert_eq!(s.get_task(&ann, "w").unwrap().unwrap().progress, 40);
    let t = s.report_progress(&ann, "w", claim.token, 0).unwrap();
    assert_eq!((t.status, t.progress), (TaskStatus::InProgress, 0));
    let t = s.report_progress(&ann, "w", claim.token, 100).unwrap();
    assert_eq!((t.status, t.progress), (TaskStatus::InProgress, 100));
}

/// Brings a new task into `from` with `admin` holding any lease; returns the token.
fn task_in(env: &Env, admin: &Identity, id: &str, from: TaskStatus) -> u64 {
    let s = &env.store;
    s.create_task(admin, TaskSpec::new(id).id(id)).unwrap();
    let claim = || s.claim_task(admin, id, LEASE).unwrap().token;
    match from {
        TaskStatus::Pending => 0,
        TaskStatus::Claimed => claim(),
        TaskStatus::InProgress => {
            let t = claim();
            s.report_progress(admin, id, t, 10).unwrap();
            t
        }
        TaskStatus::Blocked | TaskStatus::Cancelled => {
            s.set_task_status(admin, id, from, None).unwrap();
            0
        }
        TaskStatus::Completed => {
            let t = claim();
            s.complete_task(admin, id, Some(t), None, None).unwrap();
            t
        }
        TaskStatus::Failed => {
            let t = claim();
            s.fail_task(admin, id, Some(t), "broke").unwrap();
            t
        }
    }
}

#[test]
fn every_status_transition_obeys_the_table() {
    let env = Env::new();
    // An administrator holding the lease where there is one, so that only the table (and
    // not a missing token) decides.
    let admin = env.agent_with("boss", "s1", &[], task_admin());
    let s = &env.store;
    let mut checked = 0;
    for from in TaskStatus::ALL {
        for to in TaskStatus::ALL {
            if from == to {
                continue;
            }
            let id = format!("{}-to-{}", from.as_str(), to.as_str());
            let token = task_in(&env, &admin, &id, from);
            assert_eq!(status_of(&env, &id), from);
            let leased = matches!(from, TaskStatus::Claimed | TaskStatus::InProgress);
            let tok = leased.then_some(token);
            let result: Result<(), StoreError> = match to {
                TaskStatus::Claimed => s.claim_task(&admin, &id, LEASE).map(drop),
                TaskStatus::InProgress => s.report_progress(&admin, &id, token, 50).map(drop),
                TaskStatus::Completed => s.complete_task(&admin, &id, tok, None, None).map(drop),
                TaskStatus::Failed if leased => s.fail_task(&admin, &id, tok, "no").map(drop),
                _ => s.set_task_status(&admin, &id, to, tok).map(drop),
            };
            let legal = from.can_become(to);
            assert_eq!(result.is_ok(), legal, "{} -> {}: {result:?}", from.as_str(), to.as_str());
            match result {
                Ok(()) => assert_eq!(status_of(&env, &id), to),
                Err(e) => {
                    assert_eq!(status_of(&env, &id), from, "a refused transition changes nothing");
                    match &e {
                        // Transitions the table refuses name both ends.
                        StoreError::Invalid(m) if m.contains("cannot go from") => {
                            assert!(
                                m.contains(&format!("from {} to {}", from.as_str(), to.as_str())),
                                "{m}"
                            );
                        }
                        // A claim of a task that is not pending says what it is.
                        StoreError::Invalid(m) if to == TaskStatus::Claimed => {
                            assert!(
                                m.contains(&format!("is {} and cannot be claimed", from.as_str())),
                                "{m}"
                            );
                        }
                        // Progress on a task nobody holds, or a claim of a held one.
                        StoreError::Conflict { .. } => {
                            assert!(
                                matches!(to, TaskStatus::InProgress | TaskStatus::Claimed),
                                "{e}"
                            );
                        }
                        other => {
                            panic!("{} -> {}: unclear error {other}", from.as_str(), to.as_str())
                        }
                    }
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 42);
    // Staying put is not a transition either, except that progress keeps a task in progress.
    for st in [TaskStatus::Pending, TaskStatus::Blocked, TaskStatus::Failed, TaskStatus::Cancelled]
    {
        let id = format!("{}-again", st.as_str());
        task_in(&env, &admin, &id, st);
        let e = s.set_task_status(&admin, &id, st, None).unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    }
    // The operations that have their own API are refused by set_task_status.
    for to in [TaskStatus::Claimed, TaskStatus::InProgress, TaskStatus::Completed] {
        let e = s.set_task_status(&admin, "pending-again", to, None).unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    }
    // Someone else's live lease: no status change without its token.
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    s.create_task(&ann, TaskSpec::new("held").id("held")).unwrap();
    let c = s.claim_task(&ann, "held", LEASE).unwrap();
    let e = s.set_task_status(&bob, "held", TaskStatus::Cancelled, None).unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    let e = s.set_task_status(&bob, "held", TaskStatus::Cancelled, Some(c.token)).unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    assert_eq!(status_of(&env, "held"), TaskStatus::Claimed);
    // A failed task may be retried: pending again, progress reset.
    let t = task_in(&env, &ann, "retry", TaskStatus::Failed);
    assert!(t > 0);
    let again = s.set_task_status(&ann, "retry", TaskStatus::Pending, None).unwrap();
    assert_eq!((again.status, again.progress, again.completed_at), (TaskStatus::Pending, 0, None));
}

#[test]
fn completion_records_the_result_and_actual_hours() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let s = &env.store;
    s.create_task(&ann, TaskSpec::new("work").id("w").estimated_hours(2.0)).unwrap();
    let c = s.claim_task(&ann, "w", LEASE).unwrap();
    assert_eq!(
        (c.task.started_at, c.expires_at),
        (Some(Timestamp::from_millis(T0)), Timestamp::from_millis(T0 + 60_000))
    );
    env.clock.advance(1000);
    for hours in [-1.0, f64::INFINITY, f64::NAN] {
        let e = s.complete_task(&ann, "w", Some(c.token), None, Some(hours)).unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    }
    let done = s
        .complete_task(&ann, "w", Some(c.token), Some(json!({ "lines": 420 })), Some(2.5))
        .unwrap();
    let t = &done.task;
    assert_eq!(
        (t.status, t.progress, t.result.clone()),
        (TaskStatus::Completed, 100, Some(json!({ "lines": 420 })))
    );
    assert_eq!((t.actual_hours, t.estimated_hours), (Some(2.5), Some(2.0)));
    assert_eq!((t.completed_at, t.lease.as_ref()), (Some(Timestamp::from_millis(T0 + 1000)), None));
    assert!(done.ready.is_empty());
    assert_eq!(s.get_task(&ann, "w").unwrap().as_ref(), Some(t));
    // Completing twice is refused: the claim is over.
    let e = s.complete_task(&ann, "w", Some(c.token), None, None).unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    // A failure records why.
    s.create_task(&ann, TaskSpec::new("doomed").id("d")).unwrap();
    let c = s.claim_task(&ann, "d", LEASE).unwrap();
    let failed = s.fail_task(&ann, "d", Some(c.token), "out of disk").unwrap();
    assert_eq!(
        (failed.status, failed.result),
        (TaskStatus::Failed, Some(json!({ "error": "out of disk" })))
    );
}

#[test]
fn eight_claimers_at_once_exactly_one_wins() {
    let env = Env::new();
    let owner = env.agent("owner", "s1", &[]);
    env.store.create_task(&owner, TaskSpec::new("contested").id("hot")).unwrap();
    let claimers: Vec<Identity> = (0..8).map(|i| env.agent(&format!("c{i}"), "s1", &[])).collect();
    let barrier = Arc::new(Barrier::new(claimers.len()));
    let results: Vec<(Identity, Result<swarm_store::Claim, StoreError>)> =
        std::thread::scope(|sc| {
            let handles: Vec<_> = claimers
                .iter()
                .map(|who| {
                    let (store, barrier) = (env.store.clone(), Arc::clone(&barrier));
                    sc.spawn(move || {
                        barrier.wait();
                        (who.clone(), store.claim_task(who, "hot", LEASE))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
    let winners: Vec<_> = results.iter().filter(|(_, r)| r.is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (_, r) in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, StoreError::Conflict { .. }),
                "a losing claimer gets a conflict: {e}"
            );
        }
    }
    let (winner, claim) = winners[0];
    let claim = claim.as_ref().unwrap();
    assert_eq!(claim.token, 1);
    let task = env.store.get_task(&owner, "hot").unwrap().unwrap();
    let Identity::Agent(winner_id) = winner else { unreachable!() };
    assert_eq!((task.status, task.fencing_token), (TaskStatus::Claimed, 1));
    assert_eq!(task.lease.unwrap().holder, *winner_id);
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM conflicts WHERE type = 'concurrent_claim' AND entity_a_type = 'task' AND entity_a_id = 'hot'"
        ),
        7
    );
    // Each loser is named in its conflict, and none of them is the winner.
    let conn = raw(env.path());
    let mut stmt =
        conn.prepare("SELECT entity_b_id FROM conflicts WHERE type = 'concurrent_claim'").unwrap();
    let mut losers: Vec<String> =
        stmt.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect();
    losers.sort();
    let mut want: Vec<String> =
        (0..8).map(|i| format!("c{i}")).filter(|c| c != winner_id.as_str()).collect();
    want.sort();
    assert_eq!(losers, want);
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE action = 'task.claim' AND outcome = 'ok'"
        ),
        1
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE action = 'task.claim' AND outcome = 'conflict'"
        ),
        7
    );
    // The winner works on under its token and finishes.
    env.store.report_progress(winner, "hot", claim.token, 50).unwrap();
    env.store.complete_task(winner, "hot", Some(claim.token), None, Some(1.0)).unwrap();
    for action in ["task.create", "task.progress", "task.complete"] {
        let n = count(
            &env,
            &format!("SELECT count(*) FROM audit_log WHERE action = '{action}' AND outcome = 'ok'"),
        );
        assert_eq!(n, 1, "{action}");
    }
    let report = env.store.verify_audit().unwrap();
    assert!(report.is_intact(), "{report:?}");
}

#[test]
fn fencing_tokens_refuse_a_holder_whose_lease_was_taken_over() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let s = &env.store;
    s.create_task(&ann, TaskSpec::new("job").id("job")).unwrap();
    let first = s.claim_task(&ann, "job", LEASE).unwrap();
    // Renewal under the token extends the lease.
    env.clock.advance(30_000);
    let renewed = s.renew_lease(&ann, "job", first.token, LEASE).unwrap();
    assert_eq!(
        (renewed.token, renewed.expires_at),
        (first.token, Timestamp::from_millis(T0 + 90_000))
    );
    // A second claimer meets the live lease.
    let e = s.claim_task(&bob, "job", LEASE).unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    // The lease lapses: ann can no longer complete or report under it.
    env.clock.advance(60_000);
    let e = s.complete_task(&ann, "job", Some(first.token), None, None).unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "an expired lease cannot complete: {e}");
    let e = s.report_progress(&ann, "job", first.token, 10).unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    assert_eq!(status_of(&env, "job"), TaskStatus::Claimed);
    // bob takes it over with a strictly greater token.
    let second = s.claim_task(&bob, "job", LEASE).unwrap();
    assert!(second.token > first.token, "{} > {}", second.token, first.token);
    // Every lease-holding operation of ann's old claim is refused.
    let stale: [Result<(), StoreError>; 5] = [
        s.report_progress(&ann, "job", first.token, 90).map(drop),
        s.complete_task(&ann, "job", Some(first.token), None, None).map(drop),
        s.release_task(&ann, "job", first.token).map(drop),
        s.renew_lease(&ann, "job", first.token, LEASE).map(drop),
        s.fail_task(&ann, "job", Some(first.token), "late").map(drop),
    ];
    for r in stale {
        assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    }
    // ...and presenting bob's token does not make ann the holder.
    let e = s.complete_task(&ann, "job", Some(second.token), None, None).unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    let t = s.get_task(&bob, "job").unwrap().unwrap();
    assert_eq!((t.status, t.progress, t.fencing_token), (TaskStatus::Claimed, 0, second.token));
    assert_eq!(t.lease.unwrap().holder, agent_id("bob"));
    assert_eq!(
        count(&env, "SELECT count(*) FROM audit_log WHERE actor = 'ann' AND outcome = 'conflict'"),
        8,
        "each refused operation of the stale holder is audited"
    );
    // The same holder is fenced too: after a release and a new claim, its older token fails.
    s.release_task(&bob, "job", second.token).unwrap();
    let third = s.claim_task(&bob, "job", LEASE).unwrap();
    assert!(third.token > second.token);
    let e = s.report_progress(&bob, "job", second.token, 5).unwrap_err();
    match &e {
        StoreError::Conflict { expected, .. } => assert!(expected.contains("fencing token"), "{e}"),
        other => panic!("{other}"),
    }
    let done = s.complete_task(&bob, "job", Some(third.token), None, Some(0.5)).unwrap();
    assert_eq!(done.task.status, TaskStatus::Completed);
}

#[test]
fn only_an_administrator_completes_without_a_token() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let boss = env.agent_with("boss", "s1", &[], task_admin());
    let s = &env.store;
    for id in ["a", "b"] {
        s.create_task(&ann, TaskSpec::new(id).id(id)).unwrap();
        s.claim_task(&ann, id, LEASE).unwrap();
    }
    for who in [&ann, &bob] {
        let e = s.complete_task(who, "a", None, None, None).unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "an ordinary agent needs its token: {e}");
    }
    assert_eq!(status_of(&env, "a"), TaskStatus::Claimed);
    let done = s.complete_task(&boss, "a", None, Some(json!("overridden")), None).unwrap();
    assert_eq!(done.task.status, TaskStatus::Completed);
    let done = s.complete_task(&Identity::System, "b", None, None, None).unwrap();
    assert_eq!(done.task.status, TaskStatus::Completed);
    // An administrator still obeys the status table.
    s.create_task(&ann, TaskSpec::new("p").id("p")).unwrap();
    let e = s.complete_task(&boss, "p", None, None, None).unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    // The system does not claim: claims are for agents.
    let e = s.claim_task(&Identity::System, "p", LEASE).unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
}

/// The ids named by a refused edge's message, in order.
fn named_cycle(e: &StoreError) -> Vec<String> {
    let StoreError::Invalid(m) = e else { panic!("expected an invalid-input error, got {e}") };
    let (_, cycle) = m.split_once("cycle ").unwrap_or_else(|| panic!("no cycle named in {m:?}"));
    cycle.split(" -> ").map(str::to_owned).collect()
}

#[test]
fn dependency_cycles_of_every_length_are_refused_and_named() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let s = &env.store;
    for id in ["a", "b", "c", "d", "e"] {
        s.create_task(&ann, TaskSpec::new(id).id(id)).unwrap();
    }
    // Length 1.
    let e = s.add_dependency(&ann, "a", "a", DependencyKind::Hard).unwrap_err();
    assert_eq!(named_cycle(&e), ["a", "a"]);
    // Length 2.
    s.add_dependency(&ann, "a", "b", DependencyKind::Hard).unwrap();
    let e = s.add_dependency(&ann, "b", "a", DependencyKind::Hard).unwrap_err();
    assert_eq!(named_cycle(&e), ["b", "a", "b"]);
    // Length 4, closed by a soft edge: a soft cycle cannot be ordered either.
    s.add_dependency(&ann, "b", "c", DependencyKind::Soft).unwrap();
    s.add_dependency(&ann, "c", "d", DependencyKind::Optional).unwrap();
    let e = s.add_dependency(&ann, "d", "a", DependencyKind::Soft).unwrap_err();
    assert_eq!(named_cycle(&e), ["d", "a", "b", "c", "d"]);
    // Length 3 inside it, and an edge that closes nothing.
    let e = s.add_dependency(&ann, "c", "a", DependencyKind::Hard).unwrap_err();
    assert_eq!(named_cycle(&e), ["c", "a", "b", "c"]);
    s.add_dependency(&ann, "a", "d", DependencyKind::Hard).unwrap();
    s.add_dependency(&ann, "e", "a", DependencyKind::Hard).unwrap();
    let e = s.add_dependency(&ann, "d", "e", DependencyKind::Hard).unwrap_err();
    assert_eq!(named_cycle(&e), ["d", "e", "a", "d"]);

    assert_eq!(count(&env, "SELECT count(*) FROM dependencies"), 5, "no refused edge was stored");
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM conflicts WHERE type = 'dependency_clash' AND entity_a_type = 'task' AND entity_b_type = 'task'"
        ),
        5
    );
    let conn = raw(env.path());
    let (a, b, desc): (String, String, String) = conn
        .query_row(
            "SELECT entity_a_id, entity_b_id, description FROM conflicts WHERE type = 'dependency_clash' AND entity_a_id = 'd' AND entity_b_id = 'a'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((a.as_str(), b.as_str()), ("d", "a"));
    assert!(desc.contains("d -> a -> b -> c -> d"), "{desc}");
    // Re-adding an edge changes its kind instead of duplicating it; removing it works once.
    s.add_dependency(&ann, "a", "b", DependencyKind::Soft).unwrap();
    let deps = s.task_dependencies(&ann, "a").unwrap();
    assert_eq!(
        deps.iter().map(|d| (d.on.as_str(), d.kind)).collect::<Vec<_>>(),
        [("b", DependencyKind::Soft), ("d", DependencyKind::Hard)]
    );
    assert!(s.remove_dependency(&ann, "a", "b").unwrap());
    assert!(!s.remove_dependency(&ann, "a", "b").unwrap());
    // Dependencies stay inside a swarm, and name existing tasks.
    s.create_task(
        &Identity::System,
        TaskSpec::new("there").id("there").swarm(swarm("s2")).level(AclLevel::Public),
    )
    .unwrap();
    let e = s.add_dependency(&ann, "a", "there", DependencyKind::Hard).unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    let e = s.add_dependency(&ann, "a", "nothing", DependencyKind::Hard).unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE action = 'task.depend' AND outcome = 'ok'"
        ),
        6
    );
}

#[test]
fn ready_tasks_wait_for_hard_dependencies_and_completion_reports_the_newly_ready() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let s = &env.store;
    for id in ["compile", "fetch", "build", "docs", "lint", "deploy"] {
        s.create_task(&ann, TaskSpec::new(id).id(id)).unwrap();
    }
    s.add_dependency(&ann, "build", "compile", DependencyKind::Hard).unwrap();
    s.add_dependency(&ann, "build", "fetch", DependencyKind::Hard).unwrap();
    s.add_dependency(&ann, "docs", "compile", DependencyKind::Soft).unwrap();
    s.add_dependency(&ann, "lint", "compile", DependencyKind::Optional).unwrap();
    s.add_dependency(&ann, "deploy", "build", DependencyKind::Hard).unwrap();
    let ready = |who: &Identity| {
        let mut v: Vec<String> =
            s.ready_tasks(who, 100).unwrap().into_iter().map(|t| t.id).collect();
        v.sort();
        v
    };
    assert_eq!(
        ready(&ann),
        ["compile", "docs", "fetch", "lint"],
        "soft and optional edges do not block"
    );
    // A task that is not ready cannot be claimed; the error names what it waits for.
    let e = s.claim_task(&bob, "build", LEASE).unwrap_err();
    match &e {
        StoreError::Blocked(m) => assert!(m.contains("compile") && m.contains("fetch"), "{m}"),
        other => panic!("expected Blocked, got {other}"),
    }
    assert_eq!(status_of(&env, "build"), TaskStatus::Pending);
    let finish = |id: &str| {
        let c = s.claim_task(&bob, id, LEASE).unwrap();
        let mut ready = s.complete_task(&bob, id, Some(c.token), None, None).unwrap().ready;
        ready.sort();
        ready
    };
    // build still waits for fetch; docs and lint were ready all along.
    assert!(finish("compile").is_empty());
    let deps = s.task_dependencies(&ann, "build").unwrap();
    assert_eq!(
        deps,
        [
            Dependency {
                task: "build".into(),
                on: "compile".into(),
                kind: DependencyKind::Hard,
                on_status: Some(TaskStatus::Completed)
            },
            Dependency {
                task: "build".into(),
                on: "fetch".into(),
                kind: DependencyKind::Hard,
                on_status: Some(TaskStatus::Pending)
            },
        ]
    );
    assert_eq!(finish("fetch"), ["build"]);
    assert_eq!(ready(&ann), ["build", "docs", "lint"]);
    assert_eq!(finish("build"), ["deploy"]);
    assert!(finish("deploy").is_empty());
    let e = s.task_dependencies(&ann, "nothing").unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
}

#[test]
fn dependency_statuses_and_readiness_are_shown_only_where_visible() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let s = &env.store;
    s.create_task(&ann, TaskSpec::new("secret prep").id("prep").level(AclLevel::Private)).unwrap();
    s.create_task(&ann, TaskSpec::new("shared").id("shared")).unwrap();
    s.create_task(&ann, TaskSpec::new("ann's follow-up").id("follow").level(AclLevel::Private))
        .unwrap();
    s.add_dependency(&ann, "shared", "prep", DependencyKind::Hard).unwrap();
    s.add_dependency(&ann, "follow", "shared", DependencyKind::Hard).unwrap();
    let mine = s.task_dependencies(&ann, "shared").unwrap();
    assert_eq!(mine[0].on_status, Some(TaskStatus::Pending));
    let theirs = s.task_dependencies(&bob, "shared").unwrap();
    assert_eq!(
        (theirs[0].on.as_str(), theirs[0].on_status),
        ("prep", None),
        "bob sees the edge, not the task"
    );
    // bob cannot see the private dependency, nor add an edge to it.
    s.create_task(&bob, TaskSpec::new("bob's").id("bobs")).unwrap();
    let e = s.add_dependency(&bob, "bobs", "prep", DependencyKind::Hard).unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    let e = s.task_dependencies(&bob, "follow").unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    // ann finishes prep; shared becomes ready. bob finishes shared: ann's private follow-up
    // became ready, but bob is not told about a task it cannot see.
    let c = s.claim_task(&ann, "prep", LEASE).unwrap();
    assert_eq!(s.complete_task(&ann, "prep", Some(c.token), None, None).unwrap().ready, ["shared"]);
    let c = s.claim_task(&bob, "shared", LEASE).unwrap();
    assert!(s.complete_task(&bob, "shared", Some(c.token), None, None).unwrap().ready.is_empty());
    assert!(s.ready_tasks(&ann, 10).unwrap().iter().any(|t| t.id == "follow"));
    assert!(!s.ready_tasks(&bob, 10).unwrap().iter().any(|t| t.id == "follow"));
}

#[test]
fn refusals_do_not_name_tasks_or_links_the_caller_cannot_see() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let s = &env.store;
    for id in ["task-a", "task-b", "prep-open"] {
        s.create_task(&ann, TaskSpec::new(id).id(id)).unwrap();
    }
    for id in ["prep-secret", "hidden-1", "hidden-2"] {
        s.create_task(&ann, TaskSpec::new(id).id(id).level(AclLevel::Private)).unwrap();
    }
    let hidden = ["prep-secret", "hidden-1", "hidden-2"];

    // task-a waits for a task bob sees and one he does not.
    s.add_dependency(&ann, "task-a", "prep-open", DependencyKind::Hard).unwrap();
    s.add_dependency(&ann, "task-a", "prep-secret", DependencyKind::Hard).unwrap();
    let blocked = |who: &Identity| match s.claim_task(who, "task-a", LEASE) {
        Err(StoreError::Blocked(m)) => m,
        other => panic!("expected Blocked, got {other:?}"),
    };
    assert_eq!(blocked(&bob), "task task-a waits for prep-open, <hidden>");
    assert_eq!(blocked(&ann), "task task-a waits for prep-open, prep-secret");

    // ann links task-a -> hidden-1 -> hidden-2 -> task-b: bob's edge task-b -> task-a
    // closes a cycle through two tasks he cannot see. It is refused all the same.
    s.add_dependency(&ann, "task-a", "hidden-1", DependencyKind::Hard).unwrap();
    s.add_dependency(&ann, "hidden-1", "hidden-2", DependencyKind::Soft).unwrap();
    s.add_dependency(&ann, "hidden-2", "task-b", DependencyKind::Hard).unwrap();
    let e = s.add_dependency(&bob, "task-b", "task-a", DependencyKind::Hard).unwrap_err();
    assert_eq!(named_cycle(&e), ["task-b", "task-a", "<hidden>", "task-b"]);
    for h in hidden {
        assert!(!e.to_string().contains(h), "{e}");
    }
    let edge = "SELECT count(*) FROM dependencies WHERE dependent_id = 'task-b' AND dependency_id = 'task-a'";
    assert_eq!(count(&env, edge), 0, "the cycle is still refused");
    // The conflict it records does not name them either.
    let (description, detail): (String, String) = raw(env.path())
        .query_row(
            "SELECT description, detail FROM conflicts WHERE type = 'dependency_clash' AND entity_a_id = 'task-b'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        description,
        "dependency would close the cycle task-b -> task-a -> <hidden> -> task-b"
    );
    let detail: serde_json::Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(detail["cycle"], json!(["task-b", "task-a", "<hidden>", "task-b"]));
    for h in hidden {
        assert!(!detail.to_string().contains(h), "{detail}");
    }
    // ann sees every task on the cycle, and is told all of them.
    let e = s.add_dependency(&ann, "task-b", "task-a", DependencyKind::Hard).unwrap_err();
    assert_eq!(named_cycle(&e), ["task-b", "task-a", "hidden-1", "hidden-2", "task-b"]);
}

#[test]
fn changing_a_task_one_cannot_see_is_refused_as_absent_and_audited() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let s = &env.store;
    s.create_task(&ann, TaskSpec::new("mine").id("mine").level(AclLevel::Private)).unwrap();
    let attempts = |id: &str| -> Vec<Result<(), StoreError>> {
        vec![
            s.claim_task(&bob, id, LEASE).map(drop),
            s.update_task(&bob, id, TaskChanges::default()).map(drop),
            s.assign_task(&bob, id, Assignee::Nobody).map(drop),
            s.set_task_status(&bob, id, TaskStatus::Cancelled, None).map(drop),
            s.complete_task(&bob, id, None, None, None).map(drop),
            s.add_dependency(&bob, id, id, DependencyKind::Hard),
        ]
    };
    // A hidden task and a missing one give the same answer...
    for id in ["mine", "missing"] {
        for r in attempts(id) {
            assert!(matches!(r, Err(StoreError::NotFound(_))), "{id}: {r:?}");
        }
    }
    assert_eq!(status_of(&env, "mine"), TaskStatus::Pending);
    // ...but the attempts on the hidden one are in the audit trail (spec section 3).
    let denied = |resource: &str| {
        count(
            &env,
            &format!(
                "SELECT count(*) FROM audit_log WHERE actor = 'bob' AND outcome = 'denied' AND resource = '{resource}'"
            ),
        )
    };
    assert_eq!((denied("mine"), denied("missing")), (6, 0));
}

#[test]
fn a_creator_who_may_write_but_not_read_a_level_gets_its_task_back() {
    let env = Env::new();
    let mut grants = Grant::defaults();
    grants.push(Grant::new(ResourceType::Task, Action::Write, AclLevel::System));
    let ops = env.agent_with("ops", "s1", &[], grants);
    let t = env
        .store
        .create_task(&ops, TaskSpec::new("rotate keys").id("rotate").level(AclLevel::System))
        .unwrap();
    assert_eq!(
        (t.id.as_str(), t.level, t.owner.as_ref()),
        ("rotate", AclLevel::System, Some(&agent_id("ops")))
    );
    // Stored once, and still out of the creator's reads.
    assert_eq!(env.store.get_task(&Identity::System, "rotate").unwrap().as_ref(), Some(&t));
    assert_eq!(env.store.get_task(&ops, "rotate").unwrap(), None);
    assert_eq!(count(&env, "SELECT count(*) FROM tasks"), 1);
}

#[test]
fn an_expired_grant_stops_lists_and_claims_without_a_sweep() {
    let env = Env::new();
    let until = Timestamp::from_millis(T0 + 1000);
    let mut grants = Grant::defaults();
    for a in [Action::Read, Action::Write] {
        grants.push(Grant::new(ResourceType::Task, a, AclLevel::System).expiring_at(until));
    }
    let temp = env.agent_with("temp", "s1", &[], grants);
    let spec = TaskSpec::new("ops").id("ops").level(AclLevel::System).swarm(swarm("s1"));
    env.store.create_task(&Identity::System, spec).unwrap();
    assert_eq!(ids(&env.store.ready_tasks(&temp, 10).unwrap()), ["ops"]);
    env.clock.advance(1000);
    assert!(env.store.get_task(&temp, "ops").unwrap().is_none());
    assert!(env.store.list_tasks(&temp, &TaskFilter::default()).unwrap().is_empty());
    assert!(env.store.ready_tasks(&temp, 10).unwrap().is_empty());
    let e = env.store.claim_task(&temp, "ops", LEASE).unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    assert_eq!(status_of(&env, "ops"), TaskStatus::Pending);
}

/// One task per level: levels 1-4 created by `own` (the team one for team red), level 5 by
/// the system.
fn tasks_per_level(w: &World, prefix: &str) -> Vec<Task> {
    AclLevel::ALL
        .iter()
        .map(|&level| {
            let mut spec = TaskSpec::new(format!("{prefix} {}", level.name()))
                .id(format!("{prefix}-{}", level.name()))
                .level(level);
            if level == AclLevel::Team {
                spec = spec.team(w.red.clone());
            }
            let who = if level == AclLevel::System {
                spec = spec.swarm(swarm("s1"));
                &Identity::System
            } else {
                &w.agents["own"]
            };
            w.env.store.create_task(who, spec).unwrap()
        })
        .collect()
}

fn allows(w: &World, who: &Identity, action: Action, t: &Task) -> bool {
    w.allows(who, action, ResourceType::Task, &t.swarm, t.level, t.owner.as_ref(), t.team.as_ref())
}

fn visible(r: Result<bool, StoreError>) -> bool {
    match r {
        Ok(v) => v,
        Err(StoreError::InactiveAgent(_)) => false,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn every_task_read_and_claim_agrees_with_the_acl_model() {
    let w = world();
    let s = &w.env.store;
    let read = tasks_per_level(&w, "read");
    let claims: Vec<(&str, Vec<Task>)> = w
        .agents
        .keys()
        .map(|name| (*name, tasks_per_level(&w, &format!("claim-{name}"))))
        .collect();
    w.suspend_and_revoke(ResourceType::Task);

    // Literal expectations (private, team, swarm, public, system), so agreement with the
    // model cannot be vacuous.
    let literal = READS_BY_LEVEL;
    for (name, want) in literal {
        let who = &w.agents[name];
        for (t, want) in read.iter().zip(want) {
            assert_eq!(allows(&w, who, Action::Read, t), want, "model: {name} reading {}", t.level);
        }
    }
    let s1 = swarm("s1");
    for (name, who) in &w.agents {
        for t in &read {
            let may_read = allows(&w, who, Action::Read, t);
            let local = w.in_swarm(who, &s1);
            let get = visible(s.get_task(who, &t.id).map(|r| r.is_some()));
            let list = visible(
                s.list_tasks(
                    who,
                    &TaskFilter {
                        swarm: Some(s1.clone()),
                        limit: Some(1000),
                        ..TaskFilter::default()
                    },
                )
                .map(|v| v.iter().any(|x| x.id == t.id)),
            );
            let listed_by_status = visible(
                s.list_tasks(
                    who,
                    &TaskFilter {
                        swarm: Some(s1.clone()),
                        status: Some(TaskStatus::Pending),
                        ..TaskFilter::default()
                    },
                )
                .map(|v| v.iter().any(|x| x.id == t.id)),
            );
            let ready = visible(s.ready_tasks(who, 1000).map(|v| v.iter().any(|x| x.id == t.id)));
            assert_eq!(
                [get, list, listed_by_status, ready],
                [may_read, may_read, may_read, may_read && local],
                "{name} reading the {} task: [get, list, list by status, ready]",
                t.level
            );
        }
    }
    for (name, tasks) in &claims {
        let who = &w.agents[name];
        for t in tasks {
            let may_claim = w.in_swarm(who, &t.swarm)
                && allows(&w, who, Action::Read, t)
                && allows(&w, who, Action::Write, t)
                && who != &Identity::System;
            let r = s.claim_task(who, &t.id, LEASE);
            assert_eq!(r.is_ok(), may_claim, "{name} claiming the {} task: {r:?}", t.level);
            match r {
                Ok(c) => assert_eq!(c.task.id, t.id),
                // What it cannot see is absent; what it sees but may not change is refused.
                Err(StoreError::NotFound(_)) => assert!(!allows(&w, who, Action::Read, t)),
                Err(StoreError::PermissionDenied(_)) => assert!(allows(&w, who, Action::Read, t)),
                Err(StoreError::InactiveAgent(_)) => assert_eq!(*name, "sus"),
                Err(StoreError::Invalid(_)) => assert_eq!(*name, "system"),
                Err(e) => panic!("{name}: {e}"),
            }
            assert_eq!(status_of(&w.env, &t.id) == TaskStatus::Claimed, may_claim);
        }
    }
}

#[test]
fn a_taken_id_reads_the_same_whether_visible_hidden_or_in_another_swarm() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let far = env.agent("far", "s2", &[]);
    let s = &env.store;
    s.create_task(&ann, TaskSpec::new("shared").id("t-open")).unwrap();
    s.create_task(&ann, TaskSpec::new("secret").id("t-hidden").level(AclLevel::Private)).unwrap();
    s.create_task(&far, TaskSpec::new("elsewhere").id("t-far")).unwrap();
    assert!(s.get_task(&bob, "t-open").unwrap().is_some());
    assert_eq!(s.get_task(&bob, "t-hidden").unwrap(), None);
    assert_eq!(s.get_task(&bob, "t-far").unwrap(), None);
    // Ids are keys of the whole database, so a collision is refused; the refusal is the
    // same for a task bob sees, one hidden from him and one in another swarm, and says
    // nothing about the task that holds the id.
    let refusals: Vec<String> = ["t-open", "t-hidden", "t-far"]
        .into_iter()
        .map(|id| {
            let e = s.create_task(&bob, TaskSpec::new("mine").id(id)).unwrap_err();
            assert!(matches!(e, StoreError::Invalid(_)), "{e}");
            e.to_string().replace(id, "ID")
        })
        .collect();
    assert_eq!(refusals[0], refusals[1]);
    assert_eq!(refusals[1], refusals[2]);
    for word in ["private", "secret", "s2", "ann", "far"] {
        assert!(!refusals[0].contains(word), "{}", refusals[0]);
    }
    // Each attempt is audited as a denial, so probing for ids shows in the trail.
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE action = 'task.create' AND actor = 'bob' AND outcome = 'denied'"
        ),
        3
    );
    assert_eq!(s.get_task(&ann, "t-hidden").unwrap().unwrap().title, "secret");
}

#[test]
fn claim_conflicts_tell_the_lease_end_as_rfc3339() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let ben = env.agent("ben", "s1", &[]);
    let s = &env.store;
    s.create_task(&ann, TaskSpec::new("t").id("t")).unwrap();
    let claim = s.claim_task(&ann, "t", LEASE).unwrap();
    assert_eq!(claim.expires_at, Timestamp::from_millis(T0 + 60_000));
    // T0 + 60 s, for people: no Unix milliseconds in the message.
    let e = s.claim_task(&ben, "t", LEASE).unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    assert!(e.to_string().contains("claimed by ann until 2023-11-14T22:14:20.000Z"), "{e}");
    assert!(!e.to_string().contains(&(T0 + 60_000).to_string()), "{e}");
    // Work under someone else's claim says the same.
    let e = s.report_progress(&ben, "t", claim.token, 50).unwrap_err();
    assert!(e.to_string().contains("claimed by ann until 2023-11-14T22:14:20.000Z"), "{e}");
}
