//! Scenarios written once and run on both backends.

use std::time::{Duration, Instant};

use serde_json::json;
use swarm_acl::{AgentId, SwarmId};
use swarm_coord::*;

use crate::support::*;

/// How long a scenario waits for something that normally takes milliseconds. Waits return
/// as soon as the condition holds, so a generous bound costs nothing when things go well.
const WAIT: Duration = Duration::from_secs(15);

/// Messages published on one node reach the other's exact and pattern subscriptions once
/// each, with every field intact; a dropped subscription stops receiving.
pub(crate) fn pubsub(a: &dyn Coordinator, b: &dyn Coordinator, swarm: &SwarmId) {
    let events = Channel::new(swarm, ChannelKind::Events);
    let exact = b.subscribe(ChannelFilter::exact(swarm, ChannelKind::Events)).unwrap();
    let pattern = b.subscribe(ChannelFilter::pattern(swarm, "*").unwrap()).unwrap();
    let memory_only = b.subscribe(ChannelFilter::exact(swarm, ChannelKind::Memory)).unwrap();
    let agent = AgentId::new("writer-1").unwrap();
    let sent = a
        .publish(
            &events,
            json!({"type": "task_done", "n": 1, "nested": {"b": [1, 2], "a": "é"}}),
            PublishOptions::new().priority(9).ttl_ms(60_000).sender(&agent),
        )
        .unwrap();
    for sub in [&exact, &pattern] {
        let got = recv_type(sub, "task_done", WAIT).expect("delivered");
        assert_eq!(got.id(), sent.id());
        assert_eq!(got.message(), sent.message());
        assert_eq!((got.sender(), got.priority(), got.ttl_ms()), ("writer-1", 9, Some(60_000)));
        assert_eq!(got.channel(), &events);
        assert_eq!(got.timestamp_ms(), sent.timestamp_ms());
        assert!(got.received_at().is_some());
    }
    assert!(
        memory_only.recv_timeout(Duration::from_millis(100)).unwrap().is_none(),
        "other channel"
    );
    assert!(exact.recv_timeout(Duration::from_millis(100)).unwrap().is_none(), "exactly once");

    drop(exact);
    a.publish(&events, json!({"type": "second"}), PublishOptions::new()).unwrap();
    assert!(
        recv_type(&pattern, "second", WAIT).is_some(),
        "the pattern subscription is unaffected"
    );
    assert_eq!(a.health().dropped.rejected() + b.health().dropped.rejected(), 0);
}

/// The JS version shut a node down on `{"type":"shutdown_request"}` from anyone. Here it is
/// an ordinary message, even validly signed: the node keeps working.
pub(crate) fn shutdown_request_is_just_a_message(
    a: &dyn Coordinator,
    b: &dyn Coordinator,
    swarm: &SwarmId,
) {
    let coordination = Channel::new(swarm, ChannelKind::Coordination);
    let sub = b.subscribe(ChannelFilter::exact(swarm, ChannelKind::Coordination)).unwrap();
    a.publish(
        &coordination,
        json!({"type": "shutdown_request", "target": b.node_id()}),
        PublishOptions::new().priority(10),
    )
    .unwrap();
    assert!(recv_type(&sub, "shutdown_request", WAIT).is_some());
    std::thread::sleep(Duration::from_millis(100));
    assert!(b.health().connected, "{:?}", b.health());
    b.publish(&coordination, json!({"type": "still_here"}), PublishOptions::new()).unwrap();
    assert!(recv_type(&sub, "still_here", WAIT).is_some());
}

/// `crash` stops `a` the way a killed process stops. Its agent is reported offline by `b`
/// within the bound, once; participants show it offline; a new heartbeat brings it back.
pub(crate) fn liveness(
    a: &dyn Coordinator,
    b: &dyn Coordinator,
    swarm: &SwarmId,
    crash: impl FnOnce(),
    rejoin: impl FnOnce(Participant),
) {
    let agent = AgentId::new("worker-7").unwrap();
    let sub = b.subscribe(ChannelFilter::exact(swarm, ChannelKind::Coordination)).unwrap();
    let beats = b.subscribe(ChannelFilter::exact(swarm, ChannelKind::Heartbeat)).unwrap();
    let p = Participant::new(agent.clone(), swarm.clone())
        .with_role("worker")
        .with_metadata(json!({"caps": ["rust"]}));
    a.join(p.clone()).unwrap();
    let joined = recv_type(&sub, "agent_joined", WAIT).expect("agent_joined");
    assert_eq!(joined.sender(), "worker-7");
    assert!(recv_type(&beats, "heartbeat", WAIT).is_some(), "heartbeats are sent");
    let listed = b.participants(swarm).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].participant, p);
    assert_eq!(listed[0].status, Presence::Online);
    assert_eq!(listed[0].node_id, a.node_id());

    // Let it beat a few times, so that staying online is shown to depend on heartbeats.
    std::thread::sleep(HEARTBEAT * 5);
    assert_eq!(b.participants(swarm).unwrap()[0].status, Presence::Online);
    crash();
    let stopped = Instant::now();
    let bound = HEARTBEAT * 3 + CHECK;
    let offline = recv_type(&sub, "agent_offline", WAIT).expect("agent_offline");
    let took = stopped.elapsed();
    assert_eq!(offline.message()["agentId"], "worker-7");
    // The bound counts from the last heartbeat, which was at most one interval before the
    // crash; a loaded machine may delay the check and the delivery on top of that.
    let most = bound + HEARTBEAT + SCHEDULING_SLACK;
    assert!(took <= most, "offline after {took:?}, bound {bound:?}");
    let again = collect_type(&sub, "agent_offline", bound * 2);
    assert!(again.is_empty(), "exactly one agent_offline per outage: {again:?}");
    let listed = b.participants(swarm).unwrap();
    assert_eq!(listed[0].status, Presence::Offline);

    rejoin(p);
    assert!(recv_type(&sub, "agent_online", WAIT).is_some(), "back online");
    assert!(wait_until(WAIT, || b.participants(swarm).unwrap()[0].status == Presence::Online));
}

/// Votes from several nodes at once: counted once each, decided once, announced once.
pub(crate) fn consensus_once(nodes: &[&dyn Coordinator], swarm: &SwarmId) {
    let deadline = now_ms() + 60_000;
    let spec = RoundSpec::new("deploy-42", swarm, Strategy::Weighted, 0.6, 5, deadline).unwrap();
    let subs: Vec<Subscription> = nodes
        .iter()
        .map(|n| n.subscribe(ChannelFilter::exact(swarm, ChannelKind::Consensus)).unwrap())
        .collect();
    // 8 voters spread over the nodes, all at once; quorum 5, so later ones find it closed.
    let votes: Vec<(usize, Ballot)> = (0..8)
        .map(|i| {
            (
                i % nodes.len(),
                Ballot::new(
                    AgentId::new(format!("voter-{i}")).unwrap(),
                    i % 3 != 0,
                    0.5 + i as f64 / 20.0,
                )
                .unwrap(),
            )
        })
        .collect();
    let spec_ref = &spec;
    let results: Vec<VoteResult> = std::thread::scope(|s| {
        let handles: Vec<_> = votes
            .iter()
            .map(|(n, b)| {
                let node = nodes[*n];
                s.spawn(move || node.vote(spec_ref, b.clone()).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let counted = results.iter().filter(|r| r.counted).count();
    assert_eq!(counted, 5, "exactly the quorum is counted: {results:?}");
    assert_eq!(results.iter().filter(|r| r.decided_now).count(), 1, "decided once: {results:?}");
    let final_state = nodes[0].round_state(&spec).unwrap();
    assert!(final_state.outcome.is_closed());
    assert!(!final_state.decided_now);
    assert_eq!(final_state.tally.cast(), 5);
    // The tally is exactly the one of the counted votes, in counting order.
    let decided = results.iter().find(|r| r.decided_now).unwrap();
    assert_eq!(decided.tally, final_state.tally);
    assert_eq!(decided.outcome, final_state.outcome);
    for sub in &subs {
        let first = recv_type(sub, "consensus_decided", WAIT).expect("consensus_decided");
        let more = collect_type(sub, "consensus_decided", Duration::from_millis(500));
        assert!(more.is_empty(), "one consensus_decided per subscriber: {first:?} {more:?}");
        let m = first.message();
        assert_eq!(m["consensusId"], "deploy-42");
        assert_eq!(m["outcome"], final_state.outcome.as_str());
        assert_eq!(m["tally"]["votesFor"], final_state.tally.votes_for);
        assert_eq!(m["tally"]["weightFor"], final_state.tally.weight_for);
    }
    // One vote per agent, whatever the state; other parameters are refused.
    let first_counted = results.iter().position(|r| r.counted).unwrap();
    let err = nodes[0].vote(&spec, votes[first_counted].1.clone()).unwrap_err();
    assert!(matches!(err, CoordError::DuplicateVote { .. }), "{err}");
    let other = RoundSpec::new("deploy-42", swarm, Strategy::Majority, 0.6, 5, deadline).unwrap();
    let err = nodes[0]
        .vote(&other, Ballot::new(AgentId::new("late").unwrap(), true, 1.0).unwrap())
        .unwrap_err();
    assert!(matches!(err, CoordError::RoundMismatch { .. }), "{err}");
}

/// A round past its deadline: a vote then is not counted and expires it; announced once.
pub(crate) fn deadline(a: &dyn Coordinator, b: &dyn Coordinator, swarm: &SwarmId) {
    let sub = b.subscribe(ChannelFilter::exact(swarm, ChannelKind::Consensus)).unwrap();
    // Both rounds end in two seconds: room for the calls that must come before the
    // deadline even on a busy machine; then the test waits until the deadline has passed.
    let deadline = now_ms() + 2_000;
    let spec = RoundSpec::new("short", swarm, Strategy::Majority, 0.5, 3, deadline).unwrap();
    let quiet = RoundSpec::new("quiet", swarm, Strategy::Unanimous, 1.0, 2, deadline).unwrap();
    let vote = |who: &str| Ballot::new(AgentId::new(who).unwrap(), true, 1.0).unwrap();
    assert!(a.vote(&spec, vote("a")).unwrap().counted);
    assert_eq!(b.round_state(&spec).unwrap().outcome, Outcome::Open);
    assert!(a.vote(&quiet, vote("a")).unwrap().counted);
    wait_past(deadline);
    let late = b.vote(&spec, vote("b")).unwrap();
    assert_eq!((late.outcome, late.counted, late.decided_now), (Outcome::Expired, false, true));
    assert_eq!(late.tally.cast(), 1);
    let state = a.round_state(&spec).unwrap();
    assert_eq!((state.outcome, state.decided_now), (Outcome::Expired, false));
    let first = recv_type(&sub, "consensus_decided", WAIT).expect("consensus_decided");
    assert_eq!(first.message()["consensusId"], "short");
    assert_eq!(first.message()["outcome"], "expired");
    let more = collect_type(&sub, "consensus_decided", Duration::from_millis(300));
    assert!(more.is_empty(), "announced once: {first:?} {more:?}");

    // round_state alone expires a round nobody votes in after its deadline.
    let s = b.round_state(&quiet).unwrap();
    assert_eq!((s.outcome, s.decided_now), (Outcome::Expired, true));
    assert!(!a.round_state(&quiet).unwrap().decided_now);
}

/// Raw bytes on the channel, as any client of the medium can send: unsigned, badly signed,
/// replayed, oversized, malformed, misrouted. Each is dropped and counted; none is delivered;
/// a valid message after them still is.
pub(crate) fn forged(target: &dyn Coordinator, raw: &dyn Fn(&str, &[u8]), swarm: &SwarmId) {
    let coordination = Channel::new(swarm, ChannelKind::Coordination);
    let consensus = Channel::new(swarm, ChannelKind::Consensus);
    let sub = target.subscribe(ChannelFilter::all(swarm)).unwrap();
    let before = target.health().dropped;
    let now = now_ms();
    let keys = keys(swarm);
    let envelope = |id: &str, channel: &Channel, message: serde_json::Value| {
        Envelope::new(id, "mallory", channel, message, now, 5, None).unwrap()
    };
    let signed = |env: &Envelope| env.encode(&keys, 64 * 1024).unwrap();
    let with = |env: &Envelope, edit: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut v: serde_json::Value = serde_json::from_slice(&signed(env)).unwrap();
        edit(v.as_object_mut().unwrap());
        serde_json::to_vec(&v).unwrap()
    };
    // A forged vote and a forged decision, the way the seed's protocol carried them.
    let vote = envelope(
        "f1",
        &consensus,
        json!({"type": "consensus_vote", "consensusId": "r", "agentId": "mallory", "approve": true}),
    );
    raw(consensus.name(), &with(&vote, &|m| drop(m.remove("hmac"))));
    let decided = envelope(
        "f2",
        &consensus,
        json!({"type": "consensus_decided", "consensusId": "r", "outcome": "achieved"}),
    );
    raw(
        consensus.name(),
        &with(&decided, &|m| drop(m.insert("hmac".into(), json!("ab".repeat(32))))),
    );
    let wrong_key = SwarmKeys::new().with_secret(swarm, SwarmSecret::from_bytes([7; 32]));
    let shutdown = envelope("f3", &coordination, json!({"type": "shutdown_request"}));
    raw(coordination.name(), &shutdown.encode(&wrong_key, 65_536).unwrap());
    // Replayed: the first copy is genuine and delivered, the second is not.
    let genuine = envelope("f4", &coordination, json!({"type": "genuine"}));
    raw(coordination.name(), &signed(&genuine));
    raw(coordination.name(), &signed(&genuine));
    // Oversized, malformed, and a valid message for another channel sent on this one.
    let big = envelope("f5", &coordination, json!({"type": "big", "pad": "x".repeat(70_000)}));
    raw(coordination.name(), &big.encode(&keys, 1 << 20).unwrap());
    raw(coordination.name(), b"{\"type\":\"shutdown_request\"}");
    raw(
        coordination.name(),
        &signed(&envelope(
            "f6",
            &Channel::new(swarm, ChannelKind::Memory),
            json!({"type": "misrouted"}),
        )),
    );
    let expired = Envelope::new(
        "f7",
        "mallory",
        &coordination,
        json!({"type": "stale"}),
        now - 10_000,
        5,
        Some(1_000),
    )
    .unwrap();
    raw(coordination.name(), &signed(&expired));

    let first = recv_type(&sub, "genuine", WAIT).expect("the genuine message");
    assert_eq!(first.id(), "f4");
    let expect = DropCounts {
        unsigned: before.unsigned + 1,
        bad_signature: before.bad_signature + 2,
        oversized: before.oversized + 1,
        malformed: before.malformed + 2,
        replayed: before.replayed + 1,
        expired: before.expired + 1,
        skewed: before.skewed,
        lagged: before.lagged,
        handler_panics: before.handler_panics,
    };
    assert!(
        wait_until(WAIT, || target.health().dropped == expect),
        "{:?} != {expect:?}",
        target.health().dropped
    );
    assert!(
        sub.recv_timeout(Duration::from_millis(200)).unwrap().is_none(),
        "nothing forged was delivered"
    );
    // The node still works.
    assert!(target.health().connected);
    target.publish(&coordination, json!({"type": "after"}), PublishOptions::new()).unwrap();
    assert!(recv_type(&sub, "after", WAIT).is_some());
    let round = RoundSpec::new("r", swarm, Strategy::Majority, 0.5, 1, now + 60_000).unwrap();
    assert_eq!(
        target.round_state(&round).unwrap().tally.cast(),
        0,
        "the forged vote counted nothing"
    );
}

pub(crate) fn now_ms() -> u64 {
    SystemClock.now_ms()
}

/// Sleeps until the wall clock (which both backends judge deadlines by) is past
/// `deadline_ms`.
fn wait_past(deadline_ms: u64) {
    loop {
        let now = now_ms();
        if now > deadline_ms {
            return;
        }
        std::thread::sleep(Duration::from_millis(deadline_ms - now + 1));
    }
}

/// Publishes bytes on a channel as any Redis client could.
pub(crate) type RawPublish<'a> = &'a dyn Fn(&str, &[u8]);

/// Handler subscriptions (the seed's `subscribe(channel, handler)`): every message that
/// passes the checks reaches the handler once, in order, with its fields; a forged one
/// never does; a handler that panics is counted and the next message still arrives; a
/// handler may subscribe without stalling its coordinator; dropping the subscription
/// stops the calls. `raw` publishes bytes on a channel as any Redis client could (for the
/// in-process bus, nothing outside can publish, so it is `None`).
pub(crate) fn handlers(
    a: &dyn Coordinator,
    b: std::sync::Arc<dyn Coordinator>,
    raw: Option<RawPublish<'_>>,
    swarm: &SwarmId,
    command_timeout: Duration,
) {
    use std::sync::{Arc, Mutex};

    let events = Channel::new(swarm, ChannelKind::Events);
    let memory = Channel::new(swarm, ChannelKind::Memory);
    let got: Arc<Mutex<Vec<Envelope>>> = Arc::default();
    let inner: Arc<Mutex<Option<HandlerSubscription>>> = Arc::default();
    let subscribe_took: Arc<Mutex<Option<Duration>>> = Arc::default();
    let nested: Arc<Mutex<Vec<Envelope>>> = Arc::default();
    let handler = {
        let (got, inner, took, nested) =
            (got.clone(), inner.clone(), subscribe_took.clone(), nested.clone());
        let swarm = swarm.clone();
        // Weak: the coordinator holds this handler.
        let b = Arc::downgrade(&b);
        Box::new(move |env: &Envelope| {
            match env.message_type() {
                Some("boom") => panic!("a handler that panics"),
                Some("subscribe") => {
                    let nested = nested.clone();
                    let start = Instant::now();
                    let Some(b) = b.upgrade() else { return };
                    let sub = b
                        .subscribe_with(
                            ChannelFilter::exact(&swarm, ChannelKind::Memory),
                            Box::new(move |env: &Envelope| {
                                nested.lock().unwrap().push(env.clone())
                            }),
                        )
                        .unwrap();
                    *took.lock().unwrap() = Some(start.elapsed());
                    *inner.lock().unwrap() = Some(sub);
                }
                _ => {}
            }
            got.lock().unwrap().push(env.clone());
        })
    };
    // The handler owns a subscription of its own coordinator: dropping the handler (when
    // it is unsubscribed) drops that one too, which must not come back into a held lock.
    let owned = b.subscribe(ChannelFilter::exact(swarm, ChannelKind::Heartbeat)).unwrap();
    let handler = Box::new(move |env: &Envelope| {
        let _keep = &owned;
        handler(env);
    });
    let sub = b.subscribe_with(ChannelFilter::exact(swarm, ChannelKind::Events), handler).unwrap();
    assert_eq!(sub.filter(), &ChannelFilter::exact(swarm, ChannelKind::Events));
    let before = b.health().dropped;

    let mut sent = Vec::new();
    for n in 0..5 {
        sent.push(a.publish(&events, json!({"type": "n", "n": n}), PublishOptions::new()).unwrap());
    }
    let count =
        |kind: &str| got.lock().unwrap().iter().filter(|e| e.message_type() == Some(kind)).count();
    assert!(wait_until(WAIT, || count("n") == 5), "{} of 5 delivered", count("n"));
    {
        let got = got.lock().unwrap();
        let ids: Vec<&str> = got.iter().map(Envelope::id).collect();
        let want: Vec<&str> = sent.iter().map(Envelope::id).collect();
        assert_eq!(ids, want, "once each, in order");
        assert_eq!(got[3].message(), sent[3].message());
        assert_eq!(got[3].channel(), &events);
        assert!(got[3].received_at().is_some());
    }

    if let Some(raw) = raw {
        let forged =
            Envelope::new("h1", "forger", &events, json!({"type": "forged"}), now_ms(), 5, None)
                .unwrap();
        let wrong = SwarmKeys::new().with_secret(swarm, SwarmSecret::from_bytes([7; 32]));
        raw(events.name(), &forged.encode(&wrong, usize::MAX).unwrap());
        raw(events.name(), br#"{"not":"an envelope"}"#);
        a.publish(&events, json!({"type": "marker"}), PublishOptions::new()).unwrap();
        assert!(wait_until(WAIT, || count("marker") == 1));
        assert_eq!(count("forged"), 0, "a forged message never reaches a handler");
        let now = b.health().dropped;
        assert_eq!(now.bad_signature, before.bad_signature + 1);
        assert_eq!(now.malformed, before.malformed + 1);
    }

    a.publish(&events, json!({"type": "boom"}), PublishOptions::new()).unwrap();
    a.publish(&events, json!({"type": "after"}), PublishOptions::new()).unwrap();
    assert!(wait_until(WAIT, || count("after") == 1), "the handler survives a panic");
    assert_eq!(count("boom"), 0);
    assert_eq!(b.health().dropped.handler_panics, before.handler_panics + 1);

    a.publish(&events, json!({"type": "subscribe"}), PublishOptions::new()).unwrap();
    assert!(wait_until(WAIT, || inner.lock().unwrap().is_some()));
    let took = subscribe_took.lock().unwrap().unwrap();
    assert!(
        took < command_timeout,
        "subscribing from a handler waited {took:?}, as if for its own thread"
    );
    // The subscription made inside the handler works once the handler has returned.
    assert!(wait_until(WAIT, || {
        a.publish(&memory, json!({"type": "m"}), PublishOptions::new()).unwrap();
        !nested.lock().unwrap().is_empty()
    }));

    let (dropped_tx, dropped_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(sub);
        let _ = dropped_tx.send(());
    });
    assert!(
        dropped_rx.recv_timeout(WAIT).is_ok(),
        "dropping a handler that owns a subscription of its coordinator hung"
    );
    let seen = got.lock().unwrap().len();
    a.publish(&events, json!({"type": "late"}), PublishOptions::new()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(got.lock().unwrap().len(), seen, "nothing after the subscription is dropped");
    assert_eq!(count("late"), 0);
}
