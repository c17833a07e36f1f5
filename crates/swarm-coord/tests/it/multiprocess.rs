//! Several processes on one Redis: this test binary runs itself again as children
//! (`child_entry`, with `SWARM_CHILD_ROLE` naming the role).

// Children report to their parent on stdout (`SWARM:` lines), from helper functions.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use serde_json::json;
use swarm_acl::{AgentId, SwarmId};
use swarm_coord::*;
use swarm_testkit::{ChildProcess, child_role};

use crate::support::*;

const ENTRY: &str = "multiprocess::child_entry";
const START: Duration = Duration::from_secs(30);
/// How long the parent waits for something that normally takes milliseconds. Waits return
/// as soon as the condition holds, so a generous bound costs nothing when things go well.
const WAIT: Duration = Duration::from_secs(15);

/// The entry point of every child. Run as an ordinary test (no role set) it does nothing.
#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    match role.as_str() {
        "node" => node(),
        "threads" => threads(),
        other => panic!("unknown child role {other}"),
    }
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} not set for the child"))
}

/// A node with one agent: answers pings, votes when asked, reports decisions, exits when
/// told to (gracefully) or when killed.
fn node() {
    let swarm = SwarmId::new(var("CHILD_SWARM")).unwrap();
    let agent = AgentId::new(var("CHILD_AGENT")).unwrap();
    let url = var(swarm_testkit::REDIS_URL_VAR);
    let coord =
        RedisCoordinator::connect(redis_config(&url), config(&swarm, &format!("node-{agent}")))
            .unwrap();
    let events = coord.subscribe(ChannelFilter::exact(&swarm, ChannelKind::Events)).unwrap();
    let decisions = coord.subscribe(ChannelFilter::exact(&swarm, ChannelKind::Consensus)).unwrap();
    coord.join(Participant::new(agent.clone(), swarm.clone()).with_role("child")).unwrap();
    println!("SWARM:ready {}", agent);
    loop {
        while let Some(d) = decisions.try_recv().unwrap() {
            if d.message_type() == Some("consensus_decided") {
                println!("SWARM:decided {}", d.message());
            }
        }
        let Some(msg) = events.recv_timeout(Duration::from_millis(20)).unwrap() else { continue };
        let m = msg.message();
        match msg.message_type() {
            Some("ping") => {
                let reply = json!({"type": "pong", "seq": m["seq"], "from": agent.as_str()});
                coord
                    .publish(
                        &Channel::new(&swarm, ChannelKind::Events),
                        reply,
                        PublishOptions::new().sender(&agent),
                    )
                    .unwrap();
            }
            Some("vote") => {
                let spec = RoundSpec::new(
                    m["round"].as_str().unwrap(),
                    &swarm,
                    Strategy::Majority,
                    0.5,
                    u32::try_from(m["quorum"].as_u64().unwrap()).unwrap(),
                    m["deadline"].as_u64().unwrap(),
                )
                .unwrap();
                let r = coord.vote(&spec, Ballot::new(agent.clone(), true, 0.75).unwrap()).unwrap();
                println!("SWARM:voted counted={} decided_now={}", r.counted, r.decided_now);
            }
            Some("exit") => {
                coord.shutdown();
                println!("SWARM:bye");
                return;
            }
            _ => {}
        }
    }
}

/// Counts this process's threads before and after coordinators come and go.
fn threads() {
    let count = || std::fs::read_dir("/proc/self/task").unwrap().count();
    let swarm = SwarmId::new(var("CHILD_SWARM")).unwrap();
    let url = var(swarm_testkit::REDIS_URL_VAR);
    let before = count();
    for i in 0..3 {
        let coord = RedisCoordinator::connect(redis_config(&url), config(&swarm, &format!("t{i}")))
            .unwrap();
        let _sub = coord.subscribe(ChannelFilter::all(&swarm)).unwrap();
        coord
            .join(Participant::new(AgentId::new(format!("t{i}")).unwrap(), swarm.clone()))
            .unwrap();
        let bus = InProcessBus::new(config(&swarm, "bus")).unwrap();
        let other = bus.node(config(&swarm, "bus2")).unwrap();
        let _bsub = other.subscribe(ChannelFilter::all(&swarm)).unwrap();
        bus.join(Participant::new(AgentId::new("b").unwrap(), swarm.clone())).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(count() > before, "threads are running");
        // Dropped here: coordinators first, then subscriptions outlive nothing.
    }
    let lazy =
        RedisCoordinator::connect_lazy(redis_config("redis://127.0.0.1:1"), config(&swarm, "lazy"))
            .unwrap();
    drop(lazy);
    println!("SWARM:threads {before} {}", count());
}

fn spawn(env: &RedisEnv, role: &str, agent: &str) -> ChildProcess {
    let url = env.redis.url();
    ChildProcess::spawn(
        ENTRY,
        role,
        &[
            (swarm_testkit::REDIS_URL_VAR, url.as_str()),
            ("CHILD_SWARM", env.swarm.as_str()),
            ("CHILD_AGENT", agent),
        ],
    )
}

#[test]
fn three_processes_exchange_messages_heartbeats_votes_and_liveness() {
    let env = RedisEnv::new();
    let parent = env.coordinator("parent");
    let swarm = &env.swarm;
    let events = parent.subscribe(ChannelFilter::exact(swarm, ChannelKind::Events)).unwrap();
    let beats = parent.subscribe(ChannelFilter::exact(swarm, ChannelKind::Heartbeat)).unwrap();
    let coordination =
        parent.subscribe(ChannelFilter::exact(swarm, ChannelKind::Coordination)).unwrap();
    let decisions = parent.subscribe(ChannelFilter::exact(swarm, ChannelKind::Consensus)).unwrap();
    let mut children = [spawn(&env, "node", "child-1"), spawn(&env, "node", "child-2")];
    for c in &mut children {
        assert!(
            c.wait_line("SWARM:ready", START).is_some(),
            "child did not start: {:?}",
            c.output()
        );
    }
    parent.join(Participant::new(AgentId::new("parent-agent").unwrap(), swarm.clone())).unwrap();

    // Presence: all three online, seen from the parent.
    assert!(wait_until(WAIT, || {
        let p = parent.participants(swarm).unwrap();
        p.len() == 3 && p.iter().all(|s| s.status == Presence::Online)
    }));
    // Heartbeats from both children.
    let mut senders = std::collections::BTreeSet::<String>::new();
    let deadline = Instant::now() + WAIT;
    while !(senders.contains("child-1") && senders.contains("child-2")) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(beat) = recv_type(&beats, "heartbeat", left) else { break };
        senders.insert(beat.sender().to_owned());
    }
    assert!(senders.contains("child-1") && senders.contains("child-2"), "{senders:?}");

    // Messages: a ping answered by each child.
    parent
        .publish(
            &Channel::new(swarm, ChannelKind::Events),
            json!({"type": "ping", "seq": 7}),
            PublishOptions::new(),
        )
        .unwrap();
    let mut from = Vec::new();
    while let Some(p) = recv_type(&events, "pong", WAIT) {
        assert_eq!(p.message()["seq"], 7);
        from.push(p.sender().to_owned());
        if from.len() == 2 {
            break;
        }
    }
    from.sort();
    assert_eq!(from, ["child-1", "child-2"]);

    // Votes from three processes: quorum 3, decided once, announced once everywhere.
    let deadline = scenarios_now() + 60_000;
    parent
        .publish(
            &Channel::new(swarm, ChannelKind::Events),
            json!({"type": "vote", "round": "mp", "quorum": 3, "deadline": deadline}),
            PublishOptions::new(),
        )
        .unwrap();
    let spec = RoundSpec::new("mp", swarm, Strategy::Majority, 0.5, 3, deadline).unwrap();
    let mine = parent
        .vote(&spec, Ballot::new(AgentId::new("parent-agent").unwrap(), true, 0.75).unwrap())
        .unwrap();
    let mut decided_now = usize::from(mine.decided_now);
    for c in &mut children {
        let line = c.wait_line("SWARM:voted", START).expect("child voted");
        assert!(line.contains("counted=true"), "{line}");
        decided_now += usize::from(line.contains("decided_now=true"));
    }
    assert_eq!(decided_now, 1, "exactly one process decided the round");
    let state = parent.round_state(&spec).unwrap();
    assert_eq!(state.outcome, Outcome::Achieved);
    assert_eq!((state.tally.votes_for, state.tally.votes_against), (3, 0));
    assert_eq!(state.tally.weight_for, 0.75 + 0.75 + 0.75);
    let announced = recv_type(&decisions, "consensus_decided", WAIT).expect("consensus_decided");
    let more = collect_type(&decisions, "consensus_decided", Duration::from_millis(500));
    assert!(more.is_empty(), "announced once: {announced:?} {more:?}");
    assert_eq!(announced.message()["tally"]["votesFor"], 3);
    for c in &mut children {
        assert!(c.wait_line("SWARM:decided", WAIT).is_some());
        assert!(
            c.wait_line("SWARM:decided", Duration::from_millis(300)).is_none(),
            "announced once"
        );
    }

    // SIGKILL one child: reported offline within the bound, exactly once, although the
    // parent and the other child both monitor.
    while coordination.try_recv().unwrap().is_some() {}
    children[0].kill();
    let killed = Instant::now();
    let bound = HEARTBEAT * 3 + CHECK;
    let offline = recv_type(&coordination, "agent_offline", WAIT)
        .expect("agent_offline for the killed child");
    assert_eq!(offline.message()["agentId"], "child-1");
    // The bound counts from the child's last heartbeat, at most one interval before the kill.
    let took = killed.elapsed();
    assert!(took <= bound + HEARTBEAT + SCHEDULING_SLACK, "took {took:?}, bound {bound:?}");
    let more = collect_type(&coordination, "agent_offline", bound * 2);
    assert!(more.is_empty(), "one agent_offline per outage: {more:?}");
    let status: Vec<(String, Presence)> = parent
        .participants(swarm)
        .unwrap()
        .into_iter()
        .map(|p| (p.participant.id().to_string(), p.status))
        .collect();
    assert!(status.contains(&("child-1".into(), Presence::Offline)), "{status:?}");
    assert!(status.contains(&("child-2".into(), Presence::Online)), "{status:?}");

    // The other child exits gracefully: it leaves, and is not reported offline.
    parent
        .publish(
            &Channel::new(swarm, ChannelKind::Events),
            json!({"type": "exit"}),
            PublishOptions::new(),
        )
        .unwrap();
    assert!(children[1].wait_line("SWARM:bye", START).is_some());
    let left = recv_type(&coordination, "agent_left", WAIT).expect("agent_left");
    assert_eq!(left.message()["agentId"], "child-2");
    assert!(children[1].wait(START).is_some_and(|s| s.success()));
}

#[test]
fn coordinators_leave_no_thread_behind() {
    let env = RedisEnv::new();
    let mut child = spawn(&env, "threads", "t");
    let line =
        child.wait_line("SWARM:threads", START).unwrap_or_else(|| panic!("{:?}", child.output()));
    let counts: Vec<usize> = line.split_whitespace().skip(1).map(|n| n.parse().unwrap()).collect();
    assert_eq!(counts[0], counts[1], "threads before and after: {line}");
    assert!(child.wait(START).is_some_and(|s| s.success()));
}

fn scenarios_now() -> u64 {
    crate::scenarios::now_ms()
}
