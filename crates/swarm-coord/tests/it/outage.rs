//! A private redis-server killed mid-run and restarted on the same port.

use std::time::{Duration, Instant};

use serde_json::json;
use swarm_acl::{AgentId, SwarmId};
use swarm_coord::*;
use swarm_testkit::PrivateRedis;

use crate::support::*;

#[test]
fn an_outage_is_reported_fails_fast_and_heals_by_itself() {
    let mut server = PrivateRedis::start();
    let swarm = SwarmId::new("outage").unwrap();
    // A command timeout long enough that "fails fast" below can be told apart from waiting
    // for it, with room for a busy machine in between.
    let command_timeout = Duration::from_secs(5);
    let connect = |node: &str| {
        let redis = redis_config(&server.url()).with_command_timeout(command_timeout);
        RedisCoordinator::connect(redis, config(&swarm, node)).unwrap()
    };
    let (a, b) = (connect("a"), connect("b"));
    let events = Channel::new(&swarm, ChannelKind::Events);
    let sub = b.subscribe(ChannelFilter::exact(&swarm, ChannelKind::Events)).unwrap();
    let watcher = b.subscribe(ChannelFilter::exact(&swarm, ChannelKind::Coordination)).unwrap();
    a.join(Participant::new(AgentId::new("survivor").unwrap(), swarm.clone())).unwrap();
    a.publish(&events, json!({"type": "before"}), PublishOptions::new()).unwrap();
    assert!(recv_type(&sub, "before", Duration::from_secs(10)).is_some());

    server.kill();
    assert!(
        wait_until(Duration::from_secs(10), || !a.health().connected && !b.health().connected),
        "{:?}",
        a.health()
    );
    let down = a.health();
    assert!(down.last_error.is_some(), "{down:?}");
    // While down: publish fails fast with Unavailable, every time.
    for _ in 0..5 {
        let start = Instant::now();
        let err = a.publish(&events, json!({"type": "lost"}), PublishOptions::new()).unwrap_err();
        assert!(matches!(err, CoordError::Unavailable { .. }), "{err}");
        let took = start.elapsed();
        assert!(took < command_timeout / 5, "took {took:?}, as if waiting for the link");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(!a.health().connected, "still reported down");
    assert!(a.health().since_ms >= down.since_ms);

    server.restart();
    assert!(
        wait_until(Duration::from_secs(15), || a.health().connected && b.health().connected),
        "{:?}",
        b.health()
    );
    // The subscription works again without its holder doing anything.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut delivered = false;
    while !delivered && Instant::now() < deadline {
        a.publish(&events, json!({"type": "after"}), PublishOptions::new()).unwrap();
        delivered = recv_type(&sub, "after", Duration::from_millis(200)).is_some();
    }
    assert!(delivered, "resubscribed after the restart");
    assert!(
        a.health().reconnects >= 1 && b.health().reconnects >= 1,
        "{:?} {:?}",
        a.health(),
        b.health()
    );
    // Presence came back too: the restarted Redis was empty, the heartbeats rebuilt it.
    assert!(wait_until(Duration::from_secs(10), || {
        b.participants(&swarm)
            .unwrap()
            .iter()
            .any(|p| p.participant.id().as_str() == "survivor" && p.status == Presence::Online)
    }));
    drop(watcher);
}
