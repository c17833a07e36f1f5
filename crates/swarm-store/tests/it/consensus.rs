//! Consensus rounds: requests with every option, one vote per agent, the tally after every
//! vote, each strategy and the quorum, deadlines, an outcome recorded once (also against
//! hand-written SQL and 8 concurrent voters), split failures, and who may vote.

use std::sync::{Arc, Barrier};

use serde_json::json;
use swarm_acl::{AclLevel, Action, AgentId, Grant, Identity, ResourceType, Timestamp};
use swarm_store::{
    Ballot, ConflictFilter, Round, RoundSpec, RoundStatus, StoreError, Strategy, Tally, VoteOutcome,
};

use crate::fixtures::{Env, T0, World, raw, swarm, world};

fn count(env: &Env, sql: &str) -> i64 {
    raw(env.path()).query_row(sql, [], |r| r.get(0)).unwrap()
}

fn tally(votes_for: u32, votes_against: u32, weight_for: f64, weight_against: f64) -> Tally {
    Tally { votes_for, votes_against, weight_for, weight_against }
}

/// The `consensus_decided` events about round `id`, as the system reads them.
fn decided_events(env: &Env, id: &str) -> Vec<serde_json::Value> {
    let page =
        env.store.events_since(&Identity::System, 0, Some("consensus_decided"), 1000).unwrap();
    page.events.into_iter().map(|e| e.payload).filter(|p| p["consensus"] == json!(id)).collect()
}

fn voters(env: &Env, n: usize) -> Vec<Identity> {
    (0..n).map(|i| env.agent(&format!("v{i}"), "s1", &[])).collect()
}

#[test]
fn a_round_is_requested_with_every_option() {
    let env = Env::new();
    let red = env.team("red", "s1");
    let ann = env.agent("ann", "s1", &[&red]);
    let deadline = Timestamp::from_millis(T0 + 60_000);
    let r = env
        .store
        .request_consensus(
            &ann,
            RoundSpec::new("task", "deploy-42")
                .id("ship-it")
                .description("ship release 42?")
                .strategy(Strategy::Threshold)
                .threshold(0.75)
                .quorum(4)
                .deadline(deadline)
                .level(AclLevel::Team)
                .team(red.clone())
                .metadata(json!({ "release": 42 })),
        )
        .unwrap();
    assert_eq!((r.id.as_str(), r.swarm.as_str()), ("ship-it", "s1"));
    assert_eq!((r.target_type.as_str(), r.target_id.as_str()), ("task", "deploy-42"));
    assert_eq!(
        (r.description.as_str(), r.strategy, r.threshold, r.quorum),
        ("ship release 42?", Strategy::Threshold, 0.75, 4)
    );
    assert_eq!(
        (r.level, r.team.as_ref(), r.owner.as_ref().map(AgentId::as_str)),
        (AclLevel::Team, Some(&red), Some("ann"))
    );
    assert_eq!(
        (r.status, r.tally, r.deadline, r.decided_at),
        (RoundStatus::Open, Tally::default(), Some(deadline), None)
    );
    assert_eq!(
        (r.metadata.clone(), r.created_at),
        (json!({ "release": 42 }), Timestamp::from_millis(T0))
    );
    assert_eq!(env.store.get_round(&ann, "ship-it").unwrap().as_ref(), Some(&r));
    // The request is announced on the bus, at the round's level.
    let page = env.store.events_since(&ann, 0, Some("consensus_requested"), 10).unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(
        (page.events[0].payload["consensus"].as_str(), page.events[0].level),
        (Some("ship-it"), AclLevel::Team)
    );
    // Defaults: majority, quorum 1, swarm level.
    let d = env.store.request_consensus(&ann, RoundSpec::new("memory", "k")).unwrap();
    assert_eq!(
        (d.strategy, d.quorum, d.level, d.id.starts_with("cs")),
        (Strategy::Majority, 1, AclLevel::Swarm, true)
    );

    for spec in [
        RoundSpec::new("t", "x").threshold(0.0),
        RoundSpec::new("t", "x").threshold(1.5),
        RoundSpec::new("t", "x").threshold(f64::NAN),
        RoundSpec::new("t", "x").quorum(0),
        RoundSpec::new("t", "x").deadline(Timestamp::from_millis(T0)),
        RoundSpec::new("t", "x").id("ship-it"),
        RoundSpec::new("", "x"),
        RoundSpec::new("t", "x").metadata(json!(1)),
    ] {
        let e = env.store.request_consensus(&ann, spec).unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    }
    let e =
        env.store.request_consensus(&ann, RoundSpec::new("t", "x").swarm(swarm("s2"))).unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied(_)), "{e}");
    // Default grants stop at swarm level: a public round needs more.
    let e = env
        .store
        .request_consensus(&ann, RoundSpec::new("t", "x").level(AclLevel::Public))
        .unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied(_)), "{e}");
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE action = 'consensus.request' AND outcome = 'ok'"
        ),
        2
    );
}

#[test]
fn one_vote_per_agent_and_a_tally_after_every_vote() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let carl = env.agent("carl", "s1", &[]);
    let s = &env.store;
    s.request_consensus(&ann, RoundSpec::new("task", "t").id("r").quorum(5)).unwrap();
    let v = s.vote(&ann, "r", Ballot::approve().confidence(0.75).reason("looks right")).unwrap();
    assert_eq!(
        (v.round.tally, v.decided_now, v.round.status),
        (tally(1, 0, 0.75, 0.0), false, RoundStatus::Open)
    );
    // A second vote is refused and the first stands.
    let e = s.vote(&ann, "r", Ballot::reject()).unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    assert_eq!(s.get_round(&ann, "r").unwrap().unwrap().tally, tally(1, 0, 0.75, 0.0));
    for c in [1.5, -0.25, f64::NAN] {
        let e = s.vote(&bob, "r", Ballot::approve().confidence(c)).unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "confidence {c}: {e}");
    }
    let v = s.vote(&bob, "r", Ballot::reject().confidence(0.5)).unwrap();
    assert_eq!(v.round.tally, tally(1, 1, 0.75, 0.5));
    // Confidence 0 and 1 are the ends of the range.
    let v = s.vote(&carl, "r", Ballot::approve().confidence(0.0)).unwrap();
    assert_eq!(v.round.tally, tally(2, 1, 0.75, 0.5));
    assert_eq!(s.get_round(&bob, "r").unwrap().unwrap().tally, v.round.tally);
    let votes = s.round_votes(&ann, "r").unwrap();
    let summary: Vec<(&str, bool, f64, &str)> = votes
        .iter()
        .map(|v| (v.agent.as_str(), v.approve, v.confidence, v.reason.as_str()))
        .collect();
    assert_eq!(
        summary,
        [("ann", true, 0.75, "looks right"), ("bob", false, 0.5, ""), ("carl", true, 0.0, "")]
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE action = 'consensus.vote' AND outcome = 'ok'"
        ),
        3
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE action = 'consensus.vote' AND outcome = 'conflict'"
        ),
        1
    );
    let e = s.vote(&Identity::System, "r", Ballot::approve()).unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "only agents vote: {e}");
    let e = s.vote(&ann, "nothing", Ballot::approve()).unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
}

#[test]
fn an_outcome_is_recorded_once_and_never_flipped() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let s = &env.store;
    s.request_consensus(&ann, RoundSpec::new("task", "t").id("r")).unwrap();
    env.clock.advance(7);
    let v = s.vote(&ann, "r", Ballot::approve()).unwrap();
    assert_eq!(
        (v.round.status, v.decided_now, v.round.decided_at),
        (RoundStatus::Achieved, true, Some(Timestamp::from_millis(T0 + 7)))
    );
    // Later votes are refused, and change nothing.
    let e = s.vote(&bob, "r", Ballot::reject()).unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    let r = s.get_round(&bob, "r").unwrap().unwrap();
    assert_eq!((r.status, r.tally), (RoundStatus::Achieved, tally(1, 0, 1.0, 0.0)));
    // Hand-written SQL cannot flip it either: the trigger refuses.
    let conn = raw(env.path());
    for status in ["failed", "open", "expired"] {
        let e =
            conn.execute("UPDATE consensus SET status = ?1 WHERE id = 'r'", [status]).unwrap_err();
        assert!(e.to_string().contains("consensus outcome is final"), "{status}: {e}");
    }
    assert_eq!(s.get_round(&ann, "r").unwrap().unwrap().status, RoundStatus::Achieved);
    // Published once, at the round's level.
    let events = decided_events(&env, "r");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["status"], json!("achieved"));
    assert_eq!(events[0]["tally"]["votes_for"], json!(1));
    assert_eq!(count(&env, "SELECT count(*) FROM audit_log WHERE action = 'consensus.decide'"), 1);
    assert_eq!(
        count(&env, "SELECT count(*) FROM outbox WHERE channel = 'swarm:s1:consensus'"),
        2,
        "requested and decided"
    );
}

#[test]
fn eight_concurrent_voters_get_an_exact_tally_and_one_outcome() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let s = &env.store;
    // Every voter is needed: the eighth vote decides.
    s.request_consensus(&ann, RoundSpec::new("task", "t").id("all").quorum(8)).unwrap();
    // Three votes decide; the other five come too late.
    s.request_consensus(&ann, RoundSpec::new("task", "t").id("early").quorum(3)).unwrap();
    let vs = voters(&env, 8);
    // Confidences are multiples of 1/8, so the sums are exact in any order.
    let ballot = |i: usize| {
        let b = if i < 5 { Ballot::approve() } else { Ballot::reject() };
        b.confidence(0.125 * (i + 1) as f64)
    };
    let barrier = Arc::new(Barrier::new(vs.len()));
    let results: Vec<(VoteResult, VoteResult)> = std::thread::scope(|sc| {
        let handles: Vec<_> = vs
            .iter()
            .enumerate()
            .map(|(i, who)| {
                let (store, barrier) = (env.store.clone(), Arc::clone(&barrier));
                sc.spawn(move || {
                    barrier.wait();
                    let all = store.vote(who, "all", ballot(i));
                    let early = store.vote(who, "early", Ballot::approve());
                    (all, early)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (all, early): (Vec<_>, Vec<_>) = results.into_iter().unzip();

    assert!(all.iter().all(Result::is_ok), "{all:?}");
    assert_eq!(all.iter().filter(|r| r.as_ref().is_ok_and(|v| v.decided_now)).count(), 1);
    let r = s.get_round(&ann, "all").unwrap().unwrap();
    // for: 1+2+3+4+5 eighths; against: 6+7+8 eighths.
    assert_eq!(
        (r.status, r.tally),
        (RoundStatus::Achieved, tally(5, 3, 15.0 * 0.125, 21.0 * 0.125))
    );
    // Each voter's outcome saw a tally that grew by one vote at a time.
    let mut cast: Vec<u32> = all.iter().map(|r| r.as_ref().unwrap().round.tally.cast()).collect();
    cast.sort_unstable();
    assert_eq!(cast, (1..=8).collect::<Vec<_>>());

    let ok: Vec<&VoteOutcome> = early.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ok.len(), 3, "{early:?}");
    assert_eq!(ok.iter().filter(|v| v.decided_now).count(), 1);
    for r in &early {
        if let Err(e) = r {
            assert!(
                matches!(e, StoreError::Conflict { .. }),
                "a late vote meets the decided round: {e}"
            );
        }
    }
    let r = s.get_round(&ann, "early").unwrap().unwrap();
    assert_eq!((r.status, r.tally.votes_for, r.tally.votes_against), (RoundStatus::Achieved, 3, 0));

    for id in ["all", "early"] {
        assert_eq!(decided_events(&env, id).len(), 1, "one consensus_decided event for {id}");
    }
    assert_eq!(count(&env, "SELECT count(*) FROM events WHERE type = 'consensus_decided'"), 2);
    assert_eq!(count(&env, "SELECT count(*) FROM consensus_votes WHERE consensus_id = 'all'"), 8);
    assert_eq!(count(&env, "SELECT count(*) FROM consensus_votes WHERE consensus_id = 'early'"), 3);
    assert_eq!(count(&env, "SELECT count(*) FROM audit_log WHERE action = 'consensus.decide'"), 2);
    let report = env.store.verify_audit().unwrap();
    assert!(report.is_intact(), "{report:?}");
}

type VoteResult = Result<VoteOutcome, StoreError>;

/// Opens a round and casts `ballots` in order, by fresh agents; returns the status after
/// each vote.
fn run(env: &Env, id: &str, spec: RoundSpec, ballots: &[Ballot]) -> Vec<RoundStatus> {
    let owner = env.agent(&format!("{id}-owner"), "s1", &[]);
    env.store.request_consensus(&owner, spec.id(id)).unwrap();
    ballots
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let who = env.agent(&format!("{id}-{i}"), "s1", &[]);
            env.store.vote(&who, id, b.clone()).unwrap().round.status
        })
        .collect()
}

#[test]
fn each_strategy_decides_by_its_rule_once_the_quorum_is_reached() {
    use RoundStatus::{Achieved, Failed, Open};
    let env = Env::new();
    let (yes, no) = (Ballot::approve(), Ballot::reject());
    let spec = |strategy, quorum| RoundSpec::new("task", "t").strategy(strategy).quorum(quorum);
    // Majority: strictly more than half; a tie fails.
    assert_eq!(
        run(&env, "tie", spec(Strategy::Majority, 2), &[yes.clone(), no.clone()]),
        [Open, Failed]
    );
    assert_eq!(
        run(&env, "maj", spec(Strategy::Majority, 3), &[yes.clone(), no.clone(), yes.clone()]),
        [Open, Open, Achieved]
    );
    // The quorum holds a round open however the votes lean.
    assert_eq!(
        run(&env, "quorum", spec(Strategy::Majority, 3), &[yes.clone(), yes.clone()]),
        [Open, Open]
    );
    assert_eq!(run(&env, "nay", spec(Strategy::Majority, 1), std::slice::from_ref(&no)), [Failed]);
    // Threshold: the share of approvals.
    let four = [yes.clone(), no.clone(), yes.clone(), yes.clone()];
    assert_eq!(
        run(&env, "thr75", spec(Strategy::Threshold, 4).threshold(0.75), &four)[3],
        Achieved
    );
    assert_eq!(run(&env, "thr80", spec(Strategy::Threshold, 4).threshold(0.8), &four)[3], Failed);
    // Weighted: approvals weighted by confidence.
    let sure_yes = [yes.clone().confidence(0.9), no.clone().confidence(0.3)];
    let sure_no = [yes.clone().confidence(0.3), no.clone().confidence(0.9)];
    assert_eq!(
        run(&env, "w-yes", spec(Strategy::Weighted, 2).threshold(0.6), &sure_yes),
        [Open, Achieved]
    );
    assert_eq!(
        run(&env, "w-no", spec(Strategy::Weighted, 2).threshold(0.6), &sure_no),
        [Open, Failed]
    );
    // ...where a tally of zero confidence decides nothing in favour.
    assert_eq!(
        run(&env, "w-zero", spec(Strategy::Weighted, 1), &[yes.clone().confidence(0.0)]),
        [Failed]
    );
    // Unanimous: the first rejection fails the round, before the quorum.
    assert_eq!(
        run(&env, "una-no", spec(Strategy::Unanimous, 5), &[yes.clone(), yes.clone(), no.clone()]),
        [Open, Open, Failed]
    );
    assert_eq!(
        run(
            &env,
            "una-yes",
            spec(Strategy::Unanimous, 3),
            &[yes.clone(), yes.clone(), yes.clone()]
        ),
        [Open, Open, Achieved]
    );
    // Every outcome above matches the published rule.
    for r in env.store.list_rounds(&Identity::System, Some(&swarm("s1")), None, 100).unwrap() {
        assert_eq!(
            r.status,
            swarm_store::decide_tally(r.strategy, r.threshold, r.quorum, &r.tally),
            "round {}",
            r.id
        );
    }
    let failed = env.store.list_rounds(&Identity::System, None, Some(Failed), 100).unwrap();
    let mut ids: Vec<&str> = failed.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["nay", "thr80", "tie", "una-no", "w-no", "w-zero"]);
}

#[test]
fn a_round_expires_at_its_deadline() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let s = &env.store;
    let deadline = Timestamp::from_millis(T0 + 10_000);
    for id in ["voted-late", "swept", "later"] {
        let at = if id == "later" { deadline.plus_millis(10_000) } else { deadline };
        s.request_consensus(&ann, RoundSpec::new("task", "t").id(id).quorum(3).deadline(at))
            .unwrap();
    }
    s.vote(&ann, "voted-late", Ballot::approve()).unwrap();
    env.clock.advance(9_999);
    assert_eq!(s.expire_rounds(&Identity::System).unwrap(), 0, "1 ms before the deadline");
    env.clock.advance(1);
    // A vote at the deadline expires the round instead of counting.
    let e = s.vote(&bob, "voted-late", Ballot::approve()).unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    let r = s.get_round(&ann, "voted-late").unwrap().unwrap();
    assert_eq!((r.status, r.tally.cast(), r.decided_at), (RoundStatus::Expired, 1, Some(deadline)));
    // The sweep expires the rest that are due, once.
    let e = s.expire_rounds(&ann).unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied(_)), "{e}");
    assert_eq!(s.expire_rounds(&Identity::System).unwrap(), 1);
    assert_eq!(s.expire_rounds(&Identity::System).unwrap(), 0);
    assert_eq!(s.get_round(&ann, "swept").unwrap().unwrap().status, RoundStatus::Expired);
    assert_eq!(s.get_round(&ann, "later").unwrap().unwrap().status, RoundStatus::Open);
    let e = s.vote(&bob, "swept", Ballot::approve()).unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    for id in ["voted-late", "swept"] {
        let events = decided_events(&env, id);
        assert_eq!(events.len(), 1, "{id}");
        assert_eq!(events[0]["status"], json!("expired"));
    }
    let expired = s.list_rounds(&ann, None, Some(RoundStatus::Expired), 10).unwrap();
    assert_eq!(expired.len(), 2);
}

#[test]
fn who_may_vote_is_an_acl_question() {
    let env = Env::new();
    let red = env.team("red", "s1");
    let ann = env.agent("ann", "s1", &[&red]);
    let mate = env.agent("mate", "s1", &[&red]);
    let peer = env.agent("peer", "s1", &[]);
    let far = env.agent("far", "s2", &[]);
    let mut no_vote: Vec<Grant> = Grant::defaults()
        .into_iter()
        .filter(|g| !(g.resource() == ResourceType::Consensus && g.action() == Action::Vote))
        .collect();
    no_vote.push(Grant::new(ResourceType::Consensus, Action::Vote, AclLevel::Private));
    let mute = env.agent_with("mute", "s1", &[&red], no_vote);
    let s = &env.store;
    s.request_consensus(&ann, RoundSpec::new("task", "t").id("swarm-round").quorum(10)).unwrap();
    s.request_consensus(
        &ann,
        RoundSpec::new("task", "t").id("team-round").quorum(10).level(AclLevel::Team),
    )
    .unwrap();
    // Seeing the round is not enough: voting needs the vote grant at the round's level.
    assert!(s.get_round(&mute, "swarm-round").unwrap().is_some());
    let e = s.vote(&mute, "swarm-round", Ballot::approve()).unwrap_err();
    assert!(matches!(e, StoreError::PermissionDenied(_)), "{e}");
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE action = 'consensus.vote' AND actor = 'mute' AND outcome = 'denied'"
        ),
        1
    );
    // Another swarm does not see the round at all; outside the team neither.
    for (who, id) in [(&far, "swarm-round"), (&far, "team-round"), (&peer, "team-round")] {
        assert_eq!(s.get_round(who, id).unwrap(), None);
        let e = s.vote(who, id, Ballot::approve()).unwrap_err();
        assert!(matches!(e, StoreError::NotFound(_)), "{e}");
        let e = s.round_votes(who, id).unwrap_err();
        assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    }
    assert!(s.list_rounds(&far, Some(&swarm("s1")), None, 10).unwrap().is_empty());
    // The votes on rounds they cannot see are refused as absent, and audited.
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE action = 'consensus.vote' AND actor = 'far' AND outcome = 'denied'"
        ),
        2
    );
    let e = s.vote(&far, "no-such-round", Ballot::approve()).unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    assert_eq!(
        count(&env, "SELECT count(*) FROM audit_log WHERE actor = 'far' AND outcome = 'denied'"),
        2,
        "a missing round is not a denial"
    );
    s.vote(&mate, "team-round", Ballot::approve()).unwrap();
    s.vote(&peer, "swarm-round", Ballot::approve()).unwrap();
    let tallies: Vec<u32> = ["swarm-round", "team-round"]
        .iter()
        .map(|id| s.get_round(&ann, id).unwrap().unwrap().tally.cast())
        .collect();
    assert_eq!(tallies, [1, 1], "refused voters changed nothing");
}

#[test]
fn a_split_failure_records_an_open_consensus_split_conflict() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let s = &env.store;
    s.request_consensus(&ann, RoundSpec::new("memory", "s1/config/mode").id("split").quorum(2))
        .unwrap();
    s.vote(&ann, "split", Ballot::approve()).unwrap();
    assert_eq!(s.vote(&bob, "split", Ballot::reject()).unwrap().round.status, RoundStatus::Failed);
    // A round that fails without any approval is not split.
    s.request_consensus(&ann, RoundSpec::new("task", "t").id("flat")).unwrap();
    assert_eq!(s.vote(&bob, "flat", Ballot::reject()).unwrap().round.status, RoundStatus::Failed);
    let conflicts = s
        .list_conflicts(
            &ann,
            &ConflictFilter { kind: Some("consensus_split".into()), ..ConflictFilter::default() },
        )
        .unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let c = &conflicts[0];
    assert_eq!(
        (c.status.as_str(), c.strategy.as_str(), c.level),
        ("open", "manual", AclLevel::Swarm)
    );
    assert_eq!(c.entity_a, ("consensus".to_owned(), "split".to_owned()));
    assert_eq!(c.entity_b, Some(("memory".to_owned(), "s1/config/mode".to_owned())));
    assert_eq!(c.detail["tally"]["votes_for"], json!(1));
}

#[test]
fn a_requester_who_may_write_but_not_read_a_level_gets_its_round_back() {
    let env = Env::new();
    let mut grants = Grant::defaults();
    grants.push(Grant::new(ResourceType::Consensus, Action::Write, AclLevel::Public));
    let asker = env.agent_with("asker", "s1", &[], grants);
    let r = env
        .store
        .request_consensus(&asker, RoundSpec::new("task", "t").id("wide").level(AclLevel::Public))
        .unwrap();
    assert_eq!((r.id.as_str(), r.level, r.status), ("wide", AclLevel::Public, RoundStatus::Open));
    assert_eq!(env.store.get_round(&Identity::System, "wide").unwrap().as_ref(), Some(&r));
    assert_eq!(env.store.get_round(&asker, "wide").unwrap(), None);
    assert_eq!(count(&env, "SELECT count(*) FROM consensus"), 1);
}

/// One round per level: levels 1-3 requested by `own` (the team one for red), levels 4 and
/// 5 by the system (default grants stop at swarm level). A quorum nobody reaches keeps
/// every round open for every voter.
fn rounds_per_level(w: &World) -> Vec<Round> {
    AclLevel::ALL
        .iter()
        .map(|&level| {
            let mut spec = RoundSpec::new("task", "t")
                .id(format!("round-{}", level.name()))
                .level(level)
                .quorum(100);
            if level == AclLevel::Team {
                spec = spec.team(w.red.clone());
            }
            let who = if level >= AclLevel::Public {
                spec = spec.swarm(swarm("s1"));
                &Identity::System
            } else {
                &w.agents["own"]
            };
            w.env.store.request_consensus(who, spec).unwrap()
        })
        .collect()
}

#[test]
fn every_round_read_and_vote_agrees_with_the_acl_model() {
    let w = world();
    let s = &w.env.store;
    let rounds = rounds_per_level(&w);
    w.suspend_and_revoke(ResourceType::Consensus);
    let allows = |who: &Identity, action: Action, r: &Round| {
        w.allows(
            who,
            action,
            ResourceType::Consensus,
            &r.swarm,
            r.level,
            r.owner.as_ref(),
            r.team.as_ref(),
        )
    };
    // Default grants reach swarm level only, so nobody but admin and the system sees the
    // public round.
    let literal = [
        ("own", [true, true, true, false, false]),
        ("mate", [false, true, true, false, false]),
        ("peer", [false, false, true, false, false]),
        ("far", [false; 5]),
        ("sus", [false; 5]),
        ("rev", [false; 5]),
        ("admin", [false, false, true, true, true]),
        ("system", [true; 5]),
    ];
    for (name, want) in literal {
        for (r, want) in rounds.iter().zip(want) {
            assert_eq!(
                allows(&w.agents[name], Action::Read, r),
                want,
                "model: {name} reading {}",
                r.level
            );
        }
    }
    let s1 = swarm("s1");
    for (name, who) in &w.agents {
        let listed: Vec<String> = match s.list_rounds(who, Some(&s1), None, 100) {
            Ok(v) => v.into_iter().map(|r| r.id).collect(),
            Err(StoreError::InactiveAgent(_)) => vec![],
            Err(e) => panic!("{name}: {e}"),
        };
        for r in &rounds {
            let may_read = allows(who, Action::Read, r);
            let got = match s.get_round(who, &r.id) {
                Ok(v) => v.is_some(),
                Err(StoreError::InactiveAgent(_)) => false,
                Err(e) => panic!("{name}: {e}"),
            };
            assert_eq!(
                [got, listed.contains(&r.id)],
                [may_read; 2],
                "{name} reading the {} round: [get, list]",
                r.level
            );
            if *name == "system" {
                continue;
            }
            let may_vote = may_read && allows(who, Action::Vote, r);
            let v = s.vote(who, &r.id, Ballot::approve());
            assert_eq!(v.is_ok(), may_vote, "{name} voting on the {} round: {v:?}", r.level);
            match v {
                Ok(_) | Err(StoreError::InactiveAgent(_)) => {}
                Err(StoreError::NotFound(_)) => assert!(!may_read, "{name}"),
                Err(StoreError::PermissionDenied(_)) => assert!(may_read, "{name}"),
                Err(e) => panic!("{name}: {e}"),
            }
        }
    }
    // Each round counted exactly the allowed votes.
    for r in &rounds {
        let voters = w
            .agents
            .iter()
            .filter(|(n, who)| {
                **n != "system" && allows(who, Action::Read, r) && allows(who, Action::Vote, r)
            })
            .count();
        assert_eq!(
            s.get_round(&Identity::System, &r.id).unwrap().unwrap().tally.cast() as usize,
            voters,
            "{}",
            r.level
        );
    }
}

#[test]
fn a_taken_round_id_reads_the_same_whether_visible_hidden_or_in_another_swarm() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let far = env.agent("far", "s2", &[]);
    let s = &env.store;
    s.request_consensus(&ann, RoundSpec::new("task", "t1").id("r-open")).unwrap();
    s.request_consensus(&ann, RoundSpec::new("task", "t2").id("r-hidden").level(AclLevel::Private))
        .unwrap();
    s.request_consensus(&far, RoundSpec::new("task", "t3").id("r-far")).unwrap();
    assert!(s.get_round(&bob, "r-open").unwrap().is_some());
    assert!(s.get_round(&bob, "r-hidden").unwrap().is_none());
    assert!(s.get_round(&bob, "r-far").unwrap().is_none());
    let refusals: Vec<String> = ["r-open", "r-hidden", "r-far"]
        .into_iter()
        .map(|id| {
            let e = s.request_consensus(&bob, RoundSpec::new("task", "t9").id(id)).unwrap_err();
            assert!(matches!(e, StoreError::Invalid(_)), "{e}");
            e.to_string().replace(id, "ID")
        })
        .collect();
    assert_eq!(refusals[0], refusals[1]);
    assert_eq!(refusals[1], refusals[2]);
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE action = 'consensus.request' AND actor = 'bob' AND outcome = 'denied'"
        ),
        3
    );
}
