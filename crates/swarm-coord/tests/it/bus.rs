//! The scenarios on the in-process bus, inside one process.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use swarm_acl::SwarmId;
use swarm_coord::*;

use crate::scenarios;
use crate::support::*;

fn swarm() -> SwarmId {
    SwarmId::new("bus-swarm").unwrap()
}

fn nodes(n: usize) -> Vec<InProcessBus> {
    let first = InProcessBus::new(config(&swarm(), "bus-0")).unwrap();
    let mut out = Vec::new();
    for i in 1..n {
        out.push(first.node(config(&swarm(), &format!("bus-{i}"))).unwrap());
    }
    out.insert(0, first);
    out
}

#[test]
fn pubsub_between_nodes() {
    let n = nodes(2);
    scenarios::pubsub(&n[0], &n[1], &swarm());
}

#[test]
fn handler_subscriptions_between_nodes() {
    let mut n = nodes(2);
    let b: Arc<dyn Coordinator> = Arc::new(n.remove(1));
    scenarios::handlers(&n[0], b, None, &swarm(), Duration::from_secs(1));
}

/// Every subscription of a topic gets its own copy of a message, queues and handlers alike,
/// whichever comes last (the last target is handed the message itself, the others copies).
#[test]
fn every_subscription_of_a_topic_gets_the_whole_message() {
    let bus = nodes(1).remove(0);
    let events = Channel::new(&swarm(), ChannelKind::Events);
    let filter = || ChannelFilter::exact(&swarm(), ChannelKind::Events);
    let handled = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handler = |tag: &'static str| {
        let handled = handled.clone();
        Box::new(move |env: &Envelope| {
            handled.lock().unwrap().push((tag, env.id().to_owned(), env.message().clone()));
        })
    };
    let first = bus.subscribe(filter()).unwrap();
    let _h1 = bus.subscribe_with(filter(), handler("h1")).unwrap();
    let second = bus.subscribe(filter()).unwrap();
    let _h2 = bus.subscribe_with(filter(), handler("h2")).unwrap();
    let message = json!({"type": "note", "n": 7, "text": "for everyone"});
    let sent = bus.publish(&events, message.clone(), PublishOptions::new()).unwrap();
    for sub in [&first, &second] {
        let got = sub.try_recv().unwrap().expect("delivered to the queue");
        assert_eq!((got.id(), got.message()), (sent.id(), &message));
        assert!(sub.try_recv().unwrap().is_none(), "once");
    }
    let mut handled = handled.lock().unwrap().clone();
    handled.sort_by_key(|h| h.0);
    assert_eq!(
        handled,
        [("h1", sent.id().to_owned(), message.clone()), ("h2", sent.id().to_owned(), message)]
    );
}

/// A handler that publishes to the bus it listens to is called again only after it
/// returns: a chain of thousands of messages neither overflows the stack nor loses or
/// reorders one, and the first publish returns once the chain has run out.
#[test]
fn a_handler_that_publishes_to_its_own_bus_runs_its_chain_in_order() {
    const CHAIN: u64 = 20_000;
    let bus = Arc::new(nodes(1).remove(0));
    let events = Channel::new(&swarm(), ChannelKind::Events);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handler = {
        let (weak, seen, events) = (Arc::downgrade(&bus), seen.clone(), events.clone());
        Box::new(move |env: &Envelope| {
            let n = env.message()["n"].as_u64().unwrap();
            seen.lock().unwrap().push(n);
            if n + 1 < CHAIN
                && let Some(bus) = weak.upgrade()
            {
                bus.publish(&events, json!({"type": "chain", "n": n + 1}), PublishOptions::new())
                    .unwrap();
            }
        })
    };
    let _sub =
        bus.subscribe_with(ChannelFilter::exact(&swarm(), ChannelKind::Events), handler).unwrap();
    bus.publish(&events, json!({"type": "chain", "n": 0}), PublishOptions::new()).unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len() as u64, CHAIN, "the whole chain ran before the first publish returned");
    assert!(seen.iter().copied().eq(0..CHAIN), "in order");
}

/// A handler unsubscribed while a delivery to it is queued (here: by the handler that
/// published it) is not called; a panic whose payload panics again when dropped does not
/// escape, and later deliveries on the same thread still run.
#[test]
fn retired_handlers_are_not_called_and_hard_panics_stay_inside() {
    use std::sync::Mutex;
    let bus = Arc::new(nodes(1).remove(0));
    let s = swarm();
    let (events, memory) =
        (Channel::new(&s, ChannelKind::Events), Channel::new(&s, ChannelKind::Memory));
    let b_calls = Arc::new(Mutex::new(0_u32));
    let b_sub: Arc<Mutex<Option<HandlerSubscription>>> = Arc::default();
    let b = {
        let calls = b_calls.clone();
        bus.subscribe_with(
            ChannelFilter::exact(&s, ChannelKind::Memory),
            Box::new(move |_: &Envelope| *calls.lock().unwrap() += 1),
        )
        .unwrap()
    };
    *b_sub.lock().unwrap() = Some(b);
    struct Nasty;
    impl Drop for Nasty {
        fn drop(&mut self) {
            panic!("a payload that panics when dropped");
        }
    }
    let a_calls = Arc::new(Mutex::new(0_u32));
    let _a = {
        let (weak, b_sub, memory, calls) =
            (Arc::downgrade(&bus), b_sub.clone(), memory.clone(), a_calls.clone());
        bus.subscribe_with(
            ChannelFilter::exact(&s, ChannelKind::Events),
            Box::new(move |env: &Envelope| {
                *calls.lock().unwrap() += 1;
                match env.message_type() {
                    Some("retire") => {
                        let bus = weak.upgrade().unwrap();
                        // Queued for b (a handler is running on this thread) ...
                        bus.publish(&memory, json!({"type": "m"}), PublishOptions::new()).unwrap();
                        // ... and b is gone before its turn.
                        drop(b_sub.lock().unwrap().take());
                    }
                    Some("nasty") => std::panic::panic_any(Nasty),
                    _ => {}
                }
            }),
        )
        .unwrap()
    };
    bus.publish(&events, json!({"type": "retire"}), PublishOptions::new()).unwrap();
    assert_eq!(*b_calls.lock().unwrap(), 0, "a retired handler was called");
    bus.publish(&events, json!({"type": "nasty"}), PublishOptions::new()).unwrap();
    bus.publish(&events, json!({"type": "after"}), PublishOptions::new()).unwrap();
    assert_eq!(*a_calls.lock().unwrap(), 3, "deliveries go on after the panic");
    assert_eq!(bus.health().dropped.handler_panics, 1);
    // Shutting down with handlers that own state must not hang either.
    bus.shutdown();
}

#[test]
fn a_shutdown_request_shuts_nothing_down() {
    let n = nodes(2);
    scenarios::shutdown_request_is_just_a_message(&n[0], &n[1], &swarm());
}

#[test]
fn a_crashed_node_is_reported_offline_once_within_the_bound() {
    let n = nodes(3);
    let rejoin_node = n[0].node(config(&swarm(), "bus-rejoin")).unwrap();
    // Two monitors (n[1], n[2]) watch; exactly one agent_offline must be published.
    scenarios::liveness(
        &n[0],
        &n[1],
        &swarm(),
        || n[0].simulate_crash(),
        |p| rejoin_node.join(p).unwrap(),
    );
}

#[test]
fn consensus_from_three_nodes_decides_once() {
    let n = nodes(3);
    let refs: Vec<&dyn Coordinator> = n.iter().map(|b| b as &dyn Coordinator).collect();
    scenarios::consensus_once(&refs, &swarm());
}

#[test]
fn deadlines_expire_rounds_once() {
    let n = nodes(2);
    scenarios::deadline(&n[0], &n[1], &swarm());
}

#[test]
fn forged_messages_are_dropped_and_counted() {
    let n = nodes(2);
    let raw = |channel: &str, bytes: &[u8]| n[0].publish_raw(channel, bytes);
    scenarios::forged(&n[1], &raw, &swarm());
}

#[test]
fn health_and_shutdown() {
    let n = nodes(2);
    let h = n[0].health();
    assert_eq!((h.backend, h.connected, h.reconnects), ("in-process", true, 0));
    assert_eq!(h.node_id, "bus-0");
    let sub = n[1].subscribe(ChannelFilter::all(&swarm())).unwrap();
    n[1].join(Participant::new(swarm_acl::AgentId::new("leaver").unwrap(), swarm())).unwrap();
    n[1].shutdown();
    n[1].shutdown();
    assert!(!n[1].health().connected);
    assert!(matches!(
        sub.recv_timeout(Duration::from_millis(10)),
        Err(CoordError::Closed) | Ok(Some(_))
    ));
    assert!(n[0].participants(&swarm()).unwrap().is_empty(), "shutdown leaves");
    let err = n[1]
        .publish(&Channel::new(&swarm(), ChannelKind::Events), json!(1), PublishOptions::new())
        .unwrap_err();
    assert!(matches!(err, CoordError::Closed), "{err}");
}

#[test]
fn a_swarm_without_a_secret_is_refused() {
    let n = nodes(1);
    let other = SwarmId::new("other").unwrap();
    for err in [
        n[0].subscribe(ChannelFilter::all(&other)).unwrap_err(),
        n[0].publish(&Channel::new(&other, ChannelKind::Events), json!(1), PublishOptions::new())
            .unwrap_err(),
        n[0].join(Participant::new(swarm_acl::AgentId::new("a").unwrap(), other.clone()))
            .unwrap_err(),
    ] {
        assert!(matches!(err, CoordError::NoSecret { .. }), "{err}");
    }
}

#[test]
fn priorities_above_ten_are_refused() {
    let n = nodes(1);
    let err = n[0]
        .publish(
            &Channel::new(&swarm(), ChannelKind::Events),
            json!(1),
            PublishOptions::new().priority(11),
        )
        .unwrap_err();
    assert!(matches!(err, CoordError::Invalid(_)), "{err}");
}

#[test]
fn a_slow_subscriber_loses_messages_counted_not_memory() {
    let cfg = config(&swarm(), "small").with_subscription_capacity(4);
    let bus = InProcessBus::new(cfg).unwrap();
    let sub = bus.subscribe(ChannelFilter::exact(&swarm(), ChannelKind::Events)).unwrap();
    for i in 0..10 {
        bus.publish(&Channel::new(&swarm(), ChannelKind::Events), json!(i), PublishOptions::new())
            .unwrap();
    }
    assert_eq!(sub.pending(), 4);
    assert_eq!(bus.health().dropped.lagged, 6);
}

#[test]
fn the_bus_is_usable_as_a_shared_trait_object() {
    let shared: Arc<dyn Coordinator> =
        Arc::new(InProcessBus::new(config(&swarm(), "shared")).unwrap());
    let clone = shared.clone();
    let sub = shared.subscribe(ChannelFilter::exact(&swarm(), ChannelKind::Memory)).unwrap();
    std::thread::spawn(move || {
        clone
            .publish(
                &Channel::new(&swarm(), ChannelKind::Memory),
                json!({"type": "changed"}),
                PublishOptions::new(),
            )
            .unwrap();
    })
    .join()
    .unwrap();
    assert!(recv_type(&sub, "changed", Duration::from_secs(1)).is_some());
}
