//! Coordination through the umbrella: ACL-filtered change notifications, the durable
//! outbox relayed across a Redis outage, and consensus decided across hosts that share no
//! database. Redis tests use a real Redis (never a mock): the shared test server with a
//! unique swarm id per test, or a private `redis-server` that the test kills.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use swarm_coord::{
    ChannelFilter, CoordConfig, Coordinator, RedisConfig, RedisCoordinator, SwarmKeys, SwarmSecret,
};
use swarm_memory::*;
use swarm_testkit::{ChildProcess, PrivateRedis, TestRedis, child_role, unique_id};

const SECRET: &str = "7f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const CHILD: &str = "coordination::child_entry";

fn open(db: &std::path::Path, swarm: &str, redis: Option<&str>) -> SwarmMemory {
    let mut b = SwarmMemory::builder()
        .path(db)
        .swarm(SwarmId::new(swarm).unwrap())
        .swarm_secret(SECRET)
        .sweep_interval(None);
    if let Some(url) = redis {
        b = b.redis_url(url).unwrap();
    }
    b.open().unwrap()
}

fn agent(system: &SwarmMemory, id: &str) -> Session {
    let reg = system.register_agent(AgentSpec::new(id, "worker").unwrap().id(id).unwrap()).unwrap();
    system.act_as(&reg.agent.id).unwrap()
}

/// A raw subscriber on Redis, as an agent in another language would be.
fn observer(url: &str, swarm: &str) -> RedisCoordinator {
    let keys = SwarmKeys::new()
        .with_secret(&SwarmId::new(swarm).unwrap(), SwarmSecret::parse(SECRET).unwrap());
    let config = CoordConfig::new(keys).unwrap().with_node_id("observer").unwrap();
    RedisCoordinator::connect_lazy(RedisConfig::from_url(url).unwrap(), config).unwrap()
}

/// Entry point of child processes (does nothing unless run as one).
#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    let var = |k: &str| std::env::var(k).unwrap();
    let db = std::path::PathBuf::from(var("CHILD_DB"));
    let swarm = var("CHILD_SWARM");
    let url = var("CHILD_REDIS");
    match role.as_str() {
        "publisher" => {
            // A short-lived writer: publishes events and exits, whether or not Redis is up.
            let system = open(&db, &swarm, Some(&url));
            let who = system.act_as(&AgentId::new("ann").unwrap()).unwrap();
            let n: usize = var("CHILD_N").parse().unwrap();
            for i in 0..n {
                let e = system
                    .store()
                    .publish_event(
                        who.identity(),
                        EventSpec::new("job.done", serde_json::json!({ "n": i })),
                    )
                    .unwrap();
                println!("SWARM:published {}", e.id);
            }
            system.graceful_shutdown().unwrap();
        }
        "writer" => {
            let system = open(&db, &swarm, Some(&url));
            let who = system.act_as(&AgentId::new("ann").unwrap()).unwrap();
            let mem = system.create_memory_adapter(&who, "shared").unwrap();
            mem.set("from-child", "value never sent", &SetOptions::new().level(AclLevel::Swarm))
                .unwrap();
            println!("SWARM:written");
            // Stay up long enough for the relay to announce it.
            std::thread::sleep(Duration::from_millis(800));
            system.graceful_shutdown().unwrap();
        }
        "voter" => {
            // A host with a database of its own.
            let me = var("CHILD_AGENT");
            let approve = var("CHILD_APPROVE") == "1";
            let system = open(&db, &swarm, Some(&url));
            let who = agent(&system, &me);
            system
                .store()
                .request_consensus(
                    who.identity(),
                    RoundSpec::new("plan", "p1").id("round-1").quorum(3),
                )
                .unwrap();
            println!("SWARM:ready");
            // Wait for the parent's go, so all three hosts have their copy of the round.
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).ok();
            std::thread::sleep(Duration::from_millis(var("CHILD_DELAY").parse().unwrap()));
            let ballot = if approve { Ballot::approve() } else { Ballot::reject() };
            let round = system.vote_across_hosts(&who, "round-1", ballot).unwrap();
            println!("SWARM:voted {} {}", round.status.as_str(), round.tally.cast());
            // Others may decide after us: the listener mirrors the decision when the
            // coordinator announces it.
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                let r = system.store().get_round(who.identity(), "round-1").unwrap().unwrap();
                if r.status != RoundStatus::Open || round.status != RoundStatus::Open {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let r = system.store().get_round(who.identity(), "round-1").unwrap().unwrap();
            println!("SWARM:final {}", r.status.as_str());
            system.graceful_shutdown().unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn remote_change_notifications_respect_the_acl_and_carry_no_values() {
    let dir = tempfile::tempdir().unwrap();
    let system = open(&dir.path().join("a.db"), "acl-notes", None);
    let ann = agent(&system, "ann");
    let ben = agent(&system, "ben");
    let ann_rx = system.subscribe_changes(&ann);
    let ben_rx = system.subscribe_changes(&ben);
    let mem = system.create_memory_adapter(&ann, "n").unwrap();
    mem.set("secret", "private value", &SetOptions::new()).unwrap();
    mem.set("shared", "swarm value", &SetOptions::new().level(AclLevel::Swarm)).unwrap();
    let collect = |rx: &crossbeam_channel::Receiver<RemoteChange>| {
        let mut keys = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while keys.len() < 2 && Instant::now() < deadline {
            if let Ok(c) = rx.recv_timeout(Duration::from_millis(100)) {
                assert!(
                    !serde_json::to_string(&c).unwrap().contains("value"),
                    "a value travelled: {c:?}"
                );
                keys.push(c.key);
            }
        }
        keys
    };
    let ann_keys = collect(&ann_rx);
    assert!(
        ann_keys.contains(&"secret".into()) && ann_keys.contains(&"shared".into()),
        "{ann_keys:?}"
    );
    let ben_keys = collect(&ben_rx);
    assert_eq!(ben_keys, vec!["shared".to_owned()], "ben must not hear of ann's private record");
    system.graceful_shutdown().unwrap();
}

#[test]
fn memory_notifications_cross_processes_through_redis() {
    let redis = TestRedis::start();
    let scope = redis.scope();
    let swarm = scope.id().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let system = open(&db, &swarm, Some(&redis.url()));
    let ann = agent(&system, "ann");
    let rx = system.subscribe_changes(&ann);
    let mut child = ChildProcess::spawn(
        CHILD,
        "writer",
        &[
            ("CHILD_DB", db.to_str().unwrap()),
            ("CHILD_SWARM", &swarm),
            ("CHILD_REDIS", &redis.url()),
        ],
    );
    assert!(
        child.wait_line("SWARM:written", Duration::from_secs(30)).is_some(),
        "{:?}",
        child.output()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut heard = None;
    while heard.is_none() && Instant::now() < deadline {
        if let Ok(c) = rx.recv_timeout(Duration::from_millis(100))
            && c.key == "from-child"
        {
            heard = Some(c);
        }
    }
    let c = heard.expect("the other process's change was announced through Redis");
    assert_eq!((c.namespace.as_str(), c.op.as_str()), ("shared", "set"));
    assert!(system.coordination_health().connected);
    child.wait(Duration::from_secs(10));
    system.graceful_shutdown().unwrap();
}

#[test]
fn events_written_while_redis_is_down_are_relayed_when_it_returns() {
    let mut redis = PrivateRedis::start();
    let swarm = unique_id("outage");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("outage.db");
    // A long-running node (a watcher) on the database, and an observer on Redis. Pub/sub
    // reaches only subscribers connected when a message is published (the database keeps
    // the durable log), so the observer must be back before the node is. Racing two
    // reconnect backoffs loses on a busy machine; instead the node logs in as a Redis ACL
    // user that a restarted server (no persistence) does not know until the test creates
    // it again, once the observer is subscribed. Until then the node's attempts fail as
    // they would against a server that is down.
    const NODE_PASSWORD: &str = "node-password";
    let create_node_user = |redis: &PrivateRedis| {
        let mut admin = swarm_testkit::RespClient::connect(&redis.addr(), Duration::from_secs(2))
            .expect("admin connection to the private redis");
        let reply = admin
            .command(&[
                b"ACL",
                b"SETUSER",
                b"node",
                b"on",
                format!(">{NODE_PASSWORD}").as_bytes(),
                b"~*",
                b"&*",
                b"+@all",
            ])
            .unwrap();
        assert!(matches!(reply, swarm_testkit::Resp::Simple(_)), "ACL SETUSER: {reply:?}");
    };
    create_node_user(&redis);
    let node_url = format!("redis://node:{NODE_PASSWORD}@127.0.0.1:{}", redis.port());
    let slow = RedisConfig::from_url(&node_url)
        .unwrap()
        .with_backoff(Duration::from_millis(50), Duration::from_millis(200));
    let node = SwarmMemory::builder()
        .path(&db)
        .swarm(SwarmId::new(&swarm).unwrap())
        .swarm_secret(SECRET)
        .sweep_interval(None)
        .redis(slow)
        .open()
        .unwrap();
    agent(&node, "ann");
    let obs = observer(&redis.url(), &swarm);
    let sub = obs
        .subscribe(ChannelFilter::pattern(&SwarmId::new(&swarm).unwrap(), "events").unwrap())
        .unwrap();
    let wait_connected = |c: &dyn Coordinator, want: bool| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while c.health().connected != want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        c.health().connected == want
    };
    assert!(wait_connected(&obs, true) && wait_connected(node.coordinator().as_ref(), true));
    redis.kill();
    assert!(wait_connected(node.coordinator().as_ref(), false), "health must show the outage");
    let health = node.coordination_health();
    assert!(!health.connected);
    // A short-lived writer publishes while Redis is down, and exits.
    let mut child = ChildProcess::spawn(
        CHILD,
        "publisher",
        &[
            ("CHILD_DB", db.to_str().unwrap()),
            ("CHILD_SWARM", &swarm),
            ("CHILD_REDIS", &node_url),
            ("CHILD_N", "20"),
        ],
    );
    let status =
        child.wait(Duration::from_secs(30)).expect("the publisher finishes although Redis is down");
    // Drain what it printed (returns when the reader sees the end of its output).
    child.wait_line("SWARM:no-such-line", Duration::from_secs(30));
    assert!(status.success(), "{:?}", child.output());
    let published: HashSet<String> = child
        .output()
        .iter()
        .filter_map(|l| l.split("SWARM:published ").nth(1))
        .map(str::to_owned)
        .collect();
    assert_eq!(published.len(), 20);
    assert!(node.store().outbox_backlog().unwrap() >= 20, "the events wait in the durable outbox");
    redis.restart();
    assert!(wait_connected(&obs, true), "the observer reconnects to the restarted server");
    assert!(
        !node.coordination_health().connected,
        "the node cannot log in before its user exists again"
    );
    create_node_user(&redis);
    assert!(wait_connected(node.coordinator().as_ref(), true), "the node reconnects");
    // The watcher relays every pending event once the link is back; duplicates are allowed
    // and recognisable by id.
    let mut seen: HashSet<String> = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !published.is_subset(&seen) && Instant::now() < deadline {
        if let Ok(Some(e)) = sub.recv_timeout(Duration::from_millis(200))
            && let Some(id) = e.message().get("id").and_then(|i| i.as_str())
        {
            seen.insert(id.to_owned());
        }
    }
    let missing: Vec<&String> = published.difference(&seen).collect();
    assert!(missing.is_empty(), "lost events: {missing:?}");
    assert!(node.coordination_health().reconnects >= 1);
    obs.shutdown();
    node.graceful_shutdown().unwrap();
}

#[test]
fn consensus_across_three_hosts_without_a_shared_database_decides_once() {
    let redis = TestRedis::start();
    let scope = redis.scope();
    let swarm = scope.id().to_owned();
    let obs = observer(&redis.url(), &swarm);
    let sub = obs
        .subscribe(ChannelFilter::pattern(&SwarmId::new(&swarm).unwrap(), "consensus").unwrap())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut hosts: Vec<ChildProcess> = (0..3)
        .map(|i| {
            let db = dir.path().join(format!("host{i}.db"));
            ChildProcess::spawn(
                CHILD,
                "voter",
                &[
                    ("CHILD_DB", db.to_str().unwrap()),
                    ("CHILD_SWARM", &swarm),
                    ("CHILD_REDIS", &redis.url()),
                    ("CHILD_AGENT", &format!("host{i}")),
                    ("CHILD_APPROVE", if i == 2 { "0" } else { "1" }),
                    ("CHILD_DELAY", &(i * 150).to_string()),
                ],
            )
        })
        .collect();
    for h in &mut hosts {
        assert!(h.wait_line("SWARM:ready", Duration::from_secs(30)).is_some(), "{:?}", h.output());
    }
    for h in &mut hosts {
        h.send_line("go");
    }
    let mut finals = Vec::new();
    for h in &mut hosts {
        let line = h
            .wait_line("SWARM:final", Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{:?}", h.output()));
        finals.push(line);
    }
    assert!(
        finals.iter().all(|l| l == "SWARM:final achieved"),
        "every host mirrors the one outcome: {finals:?}"
    );
    // The coordinator announced the decision exactly once.
    let mut decided = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(e)) = sub.recv_timeout(Duration::from_millis(100))
            && e.message_type() == Some("consensus_decided")
        {
            decided += 1;
        }
    }
    assert_eq!(decided, 1);
    obs.shutdown();
}
