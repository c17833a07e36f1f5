//! The scenarios on a real Redis, plus what only Redis has: raw clients, stored state.

use std::time::Duration;

use serde_json::json;
use swarm_acl::AgentId;
use swarm_coord::*;

use crate::scenarios;
use crate::support::*;

#[test]
fn pubsub_between_coordinators() {
    let env = RedisEnv::new();
    let (a, b) = (env.coordinator("a"), env.coordinator("b"));
    scenarios::pubsub(&a, &b, &env.swarm);
}

#[test]
fn handler_subscriptions_between_coordinators() {
    let env = RedisEnv::new();
    let a = env.coordinator("a");
    let b: std::sync::Arc<dyn Coordinator> = std::sync::Arc::new(env.coordinator("b"));
    let client = std::sync::Mutex::new(env.redis.client());
    let raw = |channel: &str, bytes: &[u8]| {
        let n = client.lock().unwrap().publish(channel, bytes).unwrap();
        assert_eq!(n, 1, "the target is subscribed");
    };
    scenarios::handlers(&a, b, Some(&raw), &env.swarm, Duration::from_secs(1));
}

/// A handler of one coordinator that subscribes on another waits for the other's
/// confirmation, as any other thread does: a message published right after is received.
#[test]
fn a_handler_subscribing_on_another_coordinator_misses_nothing() {
    use std::sync::{Arc, Mutex};
    let env = RedisEnv::new();
    let (x, publisher) = (env.coordinator("x"), Arc::new(env.coordinator("p")));
    let y = Arc::new(env.coordinator("y"));
    let got: Arc<Mutex<Vec<Envelope>>> = Arc::default();
    let held: Arc<Mutex<Option<Subscription>>> = Arc::default();
    let memory = Channel::new(&env.swarm, ChannelKind::Memory);
    let _h = {
        let (y, publisher, held, swarm, memory, got) = (
            y.clone(),
            publisher.clone(),
            held.clone(),
            env.swarm.clone(),
            memory.clone(),
            got.clone(),
        );
        x.subscribe_with(
            ChannelFilter::exact(&env.swarm, ChannelKind::Events),
            Box::new(move |_: &Envelope| {
                let sub = y.subscribe(ChannelFilter::exact(&swarm, ChannelKind::Memory)).unwrap();
                publisher
                    .publish(&memory, json!({"type": "right-after"}), PublishOptions::new())
                    .unwrap();
                if let Some(m) = recv_type(&sub, "right-after", Duration::from_secs(10)) {
                    got.lock().unwrap().push(m);
                }
                *held.lock().unwrap() = Some(sub);
            }),
        )
        .unwrap()
    };
    let events = Channel::new(&env.swarm, ChannelKind::Events);
    publisher.publish(&events, json!({"type": "go"}), PublishOptions::new()).unwrap();
    assert!(wait_until(Duration::from_secs(30), || held.lock().unwrap().is_some()));
    assert_eq!(
        got.lock().unwrap().len(),
        1,
        "the message published right after subscribing was missed"
    );
}

#[test]
fn a_shutdown_request_shuts_nothing_down() {
    let env = RedisEnv::new();
    let (a, b) = (env.coordinator("a"), env.coordinator("b"));
    scenarios::shutdown_request_is_just_a_message(&a, &b, &env.swarm);
}

#[test]
fn consensus_from_three_coordinators_decides_once() {
    let env = RedisEnv::new();
    let n = [env.coordinator("a"), env.coordinator("b"), env.coordinator("c")];
    let refs: Vec<&dyn Coordinator> = n.iter().map(|c| c as &dyn Coordinator).collect();
    scenarios::consensus_once(&refs, &env.swarm);
}

#[test]
fn deadlines_expire_rounds_once() {
    let env = RedisEnv::new();
    let (a, b) = (env.coordinator("a"), env.coordinator("b"));
    scenarios::deadline(&a, &b, &env.swarm);
}

#[test]
fn raw_publishes_of_forged_messages_are_dropped_and_counted() {
    let env = RedisEnv::new();
    let target = env.coordinator("target");
    let client = std::sync::Mutex::new(env.redis.client());
    let raw = |channel: &str, bytes: &[u8]| {
        let n = client.lock().unwrap().publish(channel, bytes).unwrap();
        assert_eq!(n, 1, "the target is subscribed");
    };
    scenarios::forged(&target, &raw, &env.swarm);
}

#[test]
fn a_tally_edited_in_redis_is_refused() {
    let env = RedisEnv::new();
    let coord = env.coordinator("a");
    let spec = RoundSpec::new(
        "edited",
        &env.swarm,
        Strategy::Majority,
        0.5,
        2,
        scenarios::now_ms() + 60_000,
    )
    .unwrap();
    coord.vote(&spec, Ballot::new(AgentId::new("honest").unwrap(), false, 1.0).unwrap()).unwrap();
    let mut raw = env.redis.client();
    let round_key = format!("swarm:{{{}}}:round:edited", env.swarm);
    let ballots_key = format!("swarm:{{{}}}:ballots:edited", env.swarm);
    // A Redis client with write access forges a second ballot and flips the outcome.
    raw.command(&[b"HSET", ballots_key.as_bytes(), b"mallory", b"2 {\"not\":\"signed\"}"]).unwrap();
    raw.command(&[b"HSET", round_key.as_bytes(), b"for", b"1", b"status", b"achieved"]).unwrap();
    let err = coord.round_state(&spec).unwrap_err();
    assert!(matches!(err, CoordError::Tampered { .. }), "{err}");
    // Also when the forged ballot is left out: the stored tally no longer matches.
    raw.command(&[b"HDEL", ballots_key.as_bytes(), b"mallory"]).unwrap();
    let err = coord.round_state(&spec).unwrap_err();
    assert!(matches!(err, CoordError::Tampered { .. }), "{err}");
}

#[test]
fn a_participant_record_without_a_valid_signature_is_ignored() {
    let env = RedisEnv::new();
    let coord = env.coordinator("a");
    coord.join(Participant::new(AgentId::new("real").unwrap(), env.swarm.clone())).unwrap();
    let key = format!("swarm:{{{}}}:participants", env.swarm);
    let mut raw = env.redis.client();
    raw.command(&[b"HSET", key.as_bytes(), b"ghost", b"{\"type\":\"agent_joined\"}"]).unwrap();
    let listed = coord.participants(&env.swarm).unwrap();
    assert_eq!(listed.iter().map(|p| p.participant.id().as_str()).collect::<Vec<_>>(), ["real"]);
    assert_eq!(coord.health().dropped.bad_signature, 1);
}

#[test]
fn join_leave_and_graceful_shutdown() {
    let env = RedisEnv::new();
    let (a, b) = (env.coordinator("a"), env.coordinator("b"));
    let sub = b.subscribe(ChannelFilter::exact(&env.swarm, ChannelKind::Coordination)).unwrap();
    let agent = AgentId::new("temp").unwrap();
    a.join(Participant::new(agent.clone(), env.swarm.clone()).with_role("r")).unwrap();
    assert!(recv_type(&sub, "agent_joined", Duration::from_secs(10)).is_some());
    a.leave(&env.swarm, &agent).unwrap();
    assert!(recv_type(&sub, "agent_left", Duration::from_secs(10)).is_some());
    assert!(b.participants(&env.swarm).unwrap().is_empty());
    a.join(Participant::new(agent, env.swarm.clone())).unwrap();
    a.shutdown();
    a.shutdown();
    assert!(recv_type(&sub, "agent_left", Duration::from_secs(10)).is_some(), "shutdown leaves");
    assert!(!a.health().connected);
    let err = a
        .publish(&Channel::new(&env.swarm, ChannelKind::Events), json!(1), PublishOptions::new())
        .unwrap_err();
    assert!(matches!(err, CoordError::Closed), "{err}");
    // No offline report follows a graceful leave.
    assert!(collect_type(&sub, "agent_offline", HEARTBEAT * 6).is_empty());
}

#[test]
fn health_reports_a_connected_redis() {
    let env = RedisEnv::new();
    let a = env.coordinator("healthy");
    let h = a.health();
    assert_eq!(
        (h.backend, h.connected, h.reconnects, h.node_id.as_str()),
        ("redis", true, 0, "healthy")
    );
    assert_eq!(h.dropped, DropCounts::default());
}

#[test]
fn nothing_listens_on_a_dropped_subscription() {
    let env = RedisEnv::new();
    let a = env.coordinator("a");
    let channel = Channel::new(&env.swarm, ChannelKind::Memory);
    let mut raw = env.redis.client();
    let numsub = |raw: &mut swarm_testkit::RespClient| match raw
        .command(&[b"PUBSUB", b"NUMSUB", channel.name().as_bytes()])
        .unwrap()
    {
        swarm_testkit::Resp::Array(Some(v)) => v[1].as_int().unwrap(),
        other => panic!("{other:?}"),
    };
    let s1 = a.subscribe(ChannelFilter::Exact(channel.clone())).unwrap();
    let s2 = a.subscribe(ChannelFilter::Exact(channel.clone())).unwrap();
    assert_eq!(numsub(&mut raw), 1, "one Redis subscription per topic");
    drop(s1);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(numsub(&mut raw), 1);
    drop(s2);
    assert!(wait_until(Duration::from_secs(10), || numsub(&mut raw) == 0));
}

#[test]
fn connect_fails_fast_when_nothing_listens_and_lazy_connect_waits() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let swarm = swarm_acl::SwarmId::new("nowhere").unwrap();
    let url = format!("redis://127.0.0.1:{port}");
    let start = std::time::Instant::now();
    let err = RedisCoordinator::connect(redis_config(&url), config(&swarm, "x")).unwrap_err();
    assert!(matches!(err, CoordError::Unavailable { .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(2));
    let lazy = RedisCoordinator::connect_lazy(redis_config(&url), config(&swarm, "y")).unwrap();
    let h = lazy.health();
    assert!(!h.connected);
    assert!(h.last_error.is_some());
    let err = lazy
        .publish(&Channel::new(&swarm, ChannelKind::Events), json!(1), PublishOptions::new())
        .unwrap_err();
    assert!(matches!(err, CoordError::Unavailable { .. }), "{err}");
    let shown = format!("{lazy:?} {}", lazy.redis_config());
    assert!(shown.contains(&port.to_string()), "{shown}");
}
