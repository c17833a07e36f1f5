//! The durable event bus: publishing with every option, persistence, the queue under 8
//! consumers, retries and dead letters, priority order, expiry, targets, cursors of
//! offline consumers, live watches, sealed payloads, the outbox, and the ACL on every
//! read and claim.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use serde_json::json;
use swarm_acl::{AclLevel, Action, AgentId, Identity, ResourceType, Timestamp};
use swarm_store::{Delivery, Event, EventSpec, EventStatus, StoreError};

use crate::fixtures::{Env, READS_BY_LEVEL, T0, World, contains, file_bytes, raw, swarm, world};

const VIS: Duration = Duration::from_secs(60);

fn count(env: &Env, sql: &str) -> i64 {
    raw(env.path()).query_row(sql, [], |r| r.get(0)).unwrap()
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

fn claimed(d: &[Delivery]) -> Vec<u64> {
    d.iter().map(|d| d.event.seq).collect()
}

fn publish(env: &Env, who: &Identity, spec: EventSpec) -> Event {
    env.store.publish_event(who, spec).unwrap()
}

#[test]
fn an_event_is_published_with_every_option_and_survives_a_reopen() {
    let mut env = Env::new();
    let red = env.team("red", "s1");
    let ann = env.agent("ann", "s1", &[&red]);
    let root = publish(&env, &ann, EventSpec::new("build.started", json!({ "job": 1 })));
    assert_eq!(
        (root.priority, root.level, root.max_retries, root.expires_at, root.parent),
        (5, AclLevel::Swarm, 3, None, None),
        "the defaults"
    );
    env.clock.advance(10);
    let e = publish(
        &env,
        &ann,
        EventSpec::new("build.failed", json!({ "job": 1, "error": "linker" }))
            .target("bob")
            .priority(9)
            .ttl(Duration::from_secs(3600))
            .level(AclLevel::Team)
            .team(red.clone())
            .parent(root.seq)
            .max_retries(5),
    );
    assert!(e.seq > root.seq);
    assert_eq!((e.swarm.as_str(), e.event_type.as_str()), ("s1", "build.failed"));
    assert_eq!(
        (e.source.as_ref().map(AgentId::as_str), e.target.as_deref()),
        (Some("ann"), Some("bob"))
    );
    assert_eq!(e.payload, json!({ "job": 1, "error": "linker" }));
    assert_eq!((e.priority, e.level, e.team.as_ref()), (9, AclLevel::Team, Some(&red)));
    assert_eq!((e.parent, e.max_retries, e.attempts), (Some(root.seq), 5, 0));
    assert_eq!((e.status, e.last_error.as_ref()), (EventStatus::Pending, None));
    assert_eq!(
        (e.created_at, e.expires_at),
        (Timestamp::from_millis(T0 + 10), Some(Timestamp::from_millis(T0 + 10 + 3_600_000)))
    );
    // Durable: the same after the store is closed and opened again.
    env.reopen();
    assert_eq!(env.store.get_event(&ann, e.seq).unwrap().as_ref(), Some(&e));
    assert_eq!(seqs(&env.store.events_since(&ann, 0, None, 10).unwrap().events), [root.seq, e.seq]);
    // The system publishes in a swarm it names; the event has no source.
    let sys =
        publish(&env, &Identity::System, EventSpec::new("tick", json!({})).swarm(swarm("s2")));
    assert_eq!((sys.swarm.as_str(), sys.source), ("s2", None));

    let refused = |spec: EventSpec| env.store.publish_event(&ann, spec).unwrap_err();
    for spec in [
        EventSpec::new("p", json!({})).priority(11),
        EventSpec::new("", json!({})),
        EventSpec::new("r", json!({})).max_retries(101),
        EventSpec::new("t", json!({})).target("not an id"),
        EventSpec::new("ttl", json!({})).ttl(Duration::ZERO),
        EventSpec::new("big", json!({ "x": "y".repeat(swarm_store::MAX_EVENT_PAYLOAD) })),
    ] {
        let e = refused(spec);
        assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    }
    let e = refused(EventSpec::new("orphan", json!({})).parent(9999));
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    let e = refused(EventSpec::new("elsewhere", json!({})).swarm(swarm("s2")));
    assert!(matches!(e, StoreError::PermissionDenied(_)), "{e}");
    let e =
        env.store.publish_event(&Identity::System, EventSpec::new("where", json!({}))).unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    // Priorities 0 and 10 are the ends of the range.
    for p in [0, 10] {
        assert_eq!(publish(&env, &ann, EventSpec::new("edge", json!({})).priority(p)).priority, p);
    }
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_log WHERE action = 'event.publish' AND outcome = 'ok'"
        ),
        5
    );
}

#[test]
fn eight_consumers_share_the_queue_without_loss_or_double_delivery() {
    let env = Env::new();
    let publisher = env.agent("pub", "s1", &[]);
    let all: Vec<u64> = (0..200)
        .map(|i| {
            let spec = EventSpec::new("job", json!({ "n": i })).priority((i % 11) as u8);
            publish(&env, &publisher, spec).seq
        })
        .collect();
    // A third of the events fail their first delivery and are retried after the backoff.
    let flaky = |seq: u64| seq.is_multiple_of(3);
    let consumers: Vec<Identity> = (0..8).map(|i| env.agent(&format!("w{i}"), "s1", &[])).collect();
    let holders: Mutex<HashMap<u64, String>> = Mutex::new(HashMap::new());
    let acked: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    let deliveries: Mutex<Vec<(u64, u32)>> = Mutex::new(Vec::new());
    let total = all.len();
    let done = AtomicUsize::new(0);
    let clock_moves = AtomicUsize::new(0);
    let barrier = Barrier::new(consumers.len());
    std::thread::scope(|sc| {
        for (i, who) in consumers.iter().enumerate() {
            let (store, clock) = (env.store.clone(), env.clock.clone());
            let (holders, acked, deliveries, done, clock_moves, barrier) =
                (&holders, &acked, &deliveries, &done, &clock_moves, &barrier);
            sc.spawn(move || {
                let name = format!("w{i}");
                barrier.wait();
                while done.load(Ordering::SeqCst) < total {
                    let batch = store.claim_events(who, "queue", 5, VIS).unwrap();
                    if batch.is_empty() {
                        // Failed events wait out their backoff: let time pass.
                        clock.advance(250);
                        clock_moves.fetch_add(1, Ordering::SeqCst);
                        std::thread::yield_now();
                        continue;
                    }
                    for d in batch {
                        let seq = d.event.seq;
                        let previous = holders.lock().unwrap().insert(seq, name.clone());
                        assert_eq!(previous, None, "event {seq} handed to two consumers at once");
                        deliveries.lock().unwrap().push((seq, d.attempt));
                        holders.lock().unwrap().remove(&seq);
                        if flaky(seq) && d.attempt == 1 {
                            store.fail_event(who, "queue", seq, d.attempt, "flaky").unwrap();
                        } else {
                            store.ack_event(who, "queue", seq, d.attempt).unwrap();
                            acked.lock().unwrap().push(seq);
                            done.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            });
        }
    });
    // No claim could have lapsed: the clock moved far less than the visibility timeout.
    assert!((clock_moves.load(Ordering::SeqCst) as u64) * 250 < VIS.as_millis() as u64);
    let mut acked = acked.into_inner().unwrap();
    acked.sort_unstable();
    assert_eq!(acked, all, "every event acked exactly once");
    let mut per_event: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    for (seq, attempt) in deliveries.into_inner().unwrap() {
        per_event.entry(seq).or_default().push(attempt);
    }
    for seq in &all {
        let mut attempts = per_event[seq].clone();
        attempts.sort_unstable();
        let want: &[u32] = if flaky(*seq) { &[1, 2] } else { &[1] };
        assert_eq!(attempts, want, "deliveries of event {seq}");
    }
    assert_eq!(count(&env, "SELECT count(*) FROM events WHERE status = 'acked'"), 200);
    let retried = all.iter().filter(|s| flaky(**s)).count() as i64;
    assert_eq!(count(&env, "SELECT count(*) FROM events WHERE attempts = 2"), retried);
    assert_eq!(count(&env, "SELECT count(*) FROM audit_log WHERE action = 'event.fail'"), retried);
    assert_eq!(count(&env, "SELECT count(*) FROM audit_log WHERE action = 'event.ack'"), 200);
    assert!(env.store.claim_events(&consumers[0], "queue", 10, VIS).unwrap().is_empty());
    let report = env.store.verify_audit().unwrap();
    assert!(report.is_intact(), "{report:?}");
}

#[test]
fn failed_and_lapsed_deliveries_count_until_the_event_is_dead() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let s = &env.store;
    let seq = publish(&env, &ann, EventSpec::new("job", json!({})).max_retries(2)).seq;
    let claim = || s.claim_events(&ann, "c", 10, Duration::from_secs(10)).unwrap();
    let d = claim();
    assert_eq!((claimed(&d), d[0].attempt), (vec![seq], 1));
    assert_eq!(d[0].visible_until, Timestamp::from_millis(T0 + 10_000));
    s.fail_event(&ann, "c", seq, 1, "timeout upstream").unwrap();
    let e = s.get_event(&ann, seq).unwrap().unwrap();
    assert_eq!(
        (e.status, e.attempts, e.last_error.as_deref()),
        (EventStatus::Pending, 1, Some("timeout upstream"))
    );
    // The retry waits out a backoff.
    assert!(claim().is_empty());
    env.clock.advance(200);
    let d = claim();
    assert_eq!(d[0].attempt, 2, "the failure counted as a delivery");
    // The consumer goes quiet: when the claim lapses, that too counts.
    assert!(claim().is_empty(), "claimed events are not handed out twice");
    env.clock.advance(10_000);
    let d = claim();
    assert_eq!(d[0].attempt, 3, "the lapsed claim counted as a delivery");
    // A settlement for an older delivery is refused.
    let e = s.ack_event(&ann, "c", seq, 2).unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    // The third delivery is the last one max_retries 2 allows: failing it kills the event.
    s.fail_event(&ann, "c", seq, 3, "still broken").unwrap();
    let e = s.get_event(&ann, seq).unwrap().unwrap();
    assert_eq!((e.status, e.attempts), (EventStatus::Dead, 3));
    env.clock.advance(3_600_000);
    assert!(claim().is_empty(), "a dead event is never delivered again");
    let e = s.ack_event(&ann, "c", seq, 3).unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");

    // An event whose only delivery lapses is dead at the next claim, not delivered.
    let once = publish(&env, &ann, EventSpec::new("once", json!({})).max_retries(0)).seq;
    assert_eq!(claimed(&claim()), [once]);
    env.clock.advance(10_000);
    assert!(claim().is_empty());
    let e = s.get_event(&ann, once).unwrap().unwrap();
    assert_eq!(
        (e.status, e.attempts, e.last_error.as_deref()),
        (EventStatus::Dead, 1, Some("claim lapsed"))
    );
    assert_eq!(count(&env, "SELECT count(*) FROM audit_log WHERE action = 'event.dead'"), 1);
    // Unknown events and non-agents.
    let e = s.ack_event(&ann, "c", 9999, 1).unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    let e = s.claim_events(&Identity::System, "c", 1, VIS).unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
}

#[test]
fn a_consumer_whose_claim_lapsed_and_moved_on_cannot_settle_it() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let s = &env.store;
    let seq = publish(&env, &ann, EventSpec::new("job", json!({}))).seq;
    let mine = s.claim_events(&ann, "c", 1, Duration::from_secs(5)).unwrap();
    assert!(s.claim_events(&bob, "c", 1, VIS).unwrap().is_empty(), "one consumer at a time");
    env.clock.advance(5_000);
    let theirs = s.claim_events(&bob, "c", 1, VIS).unwrap();
    assert_eq!((claimed(&theirs), theirs[0].attempt), (vec![seq], 2));
    for r in [
        s.ack_event(&ann, "c", seq, mine[0].attempt),
        s.fail_event(&ann, "c", seq, mine[0].attempt, "late"),
    ] {
        assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    }
    // Another consumer name of the same agent is another consumer.
    let e = s.ack_event(&bob, "other", seq, 2).unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    s.ack_event(&bob, "c", seq, 2).unwrap();
    assert_eq!(s.get_event(&ann, seq).unwrap().unwrap().status, EventStatus::Acked);
    // An event never claimed cannot be acked.
    let fresh = publish(&env, &ann, EventSpec::new("job", json!({}))).seq;
    let e = s.ack_event(&ann, "c", fresh, 1).unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
}

#[test]
fn claims_go_by_priority_then_sequence() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let by_prio: Vec<(u8, u64)> = [3, 9, 5, 9, 0, 10]
        .into_iter()
        .map(|p| (p, publish(&env, &ann, EventSpec::new("job", json!({})).priority(p)).seq))
        .collect();
    let seq_of = |i: usize| by_prio[i].1;
    let first = env.store.claim_events(&ann, "c", 2, VIS).unwrap();
    assert_eq!(claimed(&first), [seq_of(5), seq_of(1)], "10, then the older 9");
    let rest = env.store.claim_events(&ann, "c", 10, VIS).unwrap();
    assert_eq!(claimed(&rest), [seq_of(3), seq_of(2), seq_of(0), seq_of(4)]);
}

#[test]
fn expired_events_are_never_delivered_even_before_a_sweep() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let s = &env.store;
    let brief =
        publish(&env, &ann, EventSpec::new("flash", json!({})).ttl(Duration::from_secs(1))).seq;
    let claimed_brief = publish(
        &env,
        &ann,
        EventSpec::new("flash", json!({})).ttl(Duration::from_secs(1)).priority(0),
    )
    .seq;
    let lasting = publish(&env, &ann, EventSpec::new("steady", json!({}))).seq;
    assert_eq!(
        seqs(&s.events_since(&bob, 0, None, 10).unwrap().events),
        [brief, claimed_brief, lasting]
    );
    // One of them is out with a consumer when it expires.
    let d = s.claim_events(&ann, "c", 1, Duration::from_millis(500)).unwrap();
    assert_eq!(claimed(&d), [brief]);
    env.clock.advance(999);
    assert!(s.get_event(&bob, claimed_brief).unwrap().is_some(), "still alive 1 ms before");
    env.clock.advance(1);
    assert_eq!(seqs(&s.events_since(&bob, 0, None, 10).unwrap().events), [lasting]);
    assert_eq!(s.events_since(&bob, 0, Some("flash"), 10).unwrap().events, []);
    for seq in [brief, claimed_brief] {
        assert_eq!(s.get_event(&bob, seq).unwrap(), None);
        assert_eq!(s.get_event(&Identity::System, seq).unwrap(), None, "not even the system");
    }
    assert_eq!(claimed(&s.claim_events(&bob, "c", 10, VIS).unwrap()), [lasting]);
    assert!(s.claim_events(&ann, "c", 10, VIS).unwrap().is_empty());
    assert_eq!(count(&env, "SELECT count(*) FROM events"), 3, "no sweep ran: the rows are there");
}

#[test]
fn a_targeted_event_is_claimed_only_by_its_target() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let carl = env.agent("carl", "s1", &[]);
    let s = &env.store;
    let seq = publish(&env, &ann, EventSpec::new("review.requested", json!({})).target("bob")).seq;
    assert!(s.claim_events(&carl, "c", 10, VIS).unwrap().is_empty());
    assert!(s.claim_events(&ann, "c", 10, VIS).unwrap().is_empty(), "not even its publisher");
    // Readers who can see it still see it in the log.
    assert_eq!(seqs(&s.events_since(&carl, 0, None, 10).unwrap().events), [seq]);
    let d = s.claim_events(&bob, "inbox", 10, VIS).unwrap();
    assert_eq!((claimed(&d), d[0].event.target.as_deref()), (vec![seq], Some("bob")));
}

#[test]
fn an_offline_consumer_catches_up_from_its_committed_cursor() {
    let mut env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let first: Vec<u64> =
        (0..5).map(|i| publish(&env, &ann, EventSpec::new("n", json!(i))).seq).collect();
    assert_eq!(env.store.event_cursor(&bob, "indexer").unwrap(), 0);
    let page = env.store.events_since(&bob, 0, None, 3).unwrap();
    assert_eq!((seqs(&page.events), page.cursor), (first[..3].to_vec(), first[2]));
    env.store.commit_event_cursor(&bob, "indexer", page.cursor).unwrap();
    // bob goes offline; the swarm carries on; the store restarts.
    let later: Vec<u64> =
        (5..9).map(|i| publish(&env, &ann, EventSpec::new("n", json!(i))).seq).collect();
    env.reopen();
    let from = env.store.event_cursor(&bob, "indexer").unwrap();
    assert_eq!(from, first[2]);
    let page = env.store.events_since(&bob, from, None, 100).unwrap();
    let mut want = first[3..].to_vec();
    want.extend(&later);
    assert_eq!(seqs(&page.events), want, "everything after the cursor, in order, once");
    assert_eq!(page.cursor, *later.last().unwrap());
    env.store.commit_event_cursor(&bob, "indexer", page.cursor).unwrap();
    // The cursor never moves back.
    env.store.commit_event_cursor(&bob, "indexer", first[0]).unwrap();
    assert_eq!(env.store.event_cursor(&bob, "indexer").unwrap(), page.cursor);
    // Cursors belong to a consumer name of one agent.
    assert_eq!(env.store.event_cursor(&bob, "auditor").unwrap(), 0);
    assert_eq!(env.store.event_cursor(&ann, "indexer").unwrap(), 0);
    assert!(env.store.events_since(&bob, page.cursor, None, 10).unwrap().events.is_empty());
    let e = env.store.commit_event_cursor(&Identity::System, "indexer", 1).unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    let e = env.store.event_cursor(&bob, "bad name").unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
}

#[test]
fn a_watch_wakes_on_a_publish_from_another_thread() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let head = env.store.event_head().unwrap();
    let mut watch = env.store.watch_events(&bob, Some("ping"), head);
    let barrier = Arc::new(Barrier::new(2));
    let started = std::time::Instant::now();
    let got = std::thread::scope(|sc| {
        let (store, b, ann) = (env.store.clone(), Arc::clone(&barrier), ann.clone());
        sc.spawn(move || {
            b.wait();
            // What bob may not see, and what he did not ask for, come first.
            store
                .publish_event(
                    &ann,
                    EventSpec::new("ping", json!("hidden")).level(AclLevel::Private),
                )
                .unwrap();
            store.publish_event(&ann, EventSpec::new("pong", json!("other"))).unwrap();
            store.publish_event(&ann, EventSpec::new("ping", json!("hello"))).unwrap();
        });
        barrier.wait();
        watch.next_timeout(Duration::from_secs(10)).unwrap()
    });
    let got = got.expect("the watch saw the publish");
    assert_eq!((got.event_type.as_str(), got.payload.clone()), ("ping", json!("hello")));
    assert!(started.elapsed() < Duration::from_secs(5), "woken, not timed out");
    assert_eq!(watch.cursor(), got.seq);
    assert_eq!(watch.next_timeout(Duration::from_millis(1)).unwrap(), None);
}

#[test]
fn a_watch_resumes_from_what_it_handed_out_not_from_what_it_buffered() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let seqs: Vec<u64> =
        (0..3).map(|i| publish(&env, &ann, EventSpec::new("tick", json!(i))).seq).collect();
    let mut watch = env.store.watch_events(&bob, None, 0);
    let first = watch.next_timeout(Duration::from_secs(1)).unwrap().unwrap();
    assert_eq!(first.seq, seqs[0]);
    // bob stops here and keeps the cursor: a new watch from it must not lose the rest.
    let resume = watch.cursor();
    drop(watch);
    let mut again = env.store.watch_events(&bob, None, resume);
    let rest: Vec<u64> =
        (0..2).map(|_| again.next_timeout(Duration::from_secs(1)).unwrap().unwrap().seq).collect();
    assert_eq!(rest, seqs[1..]);
    assert_eq!(again.cursor(), seqs[2]);
}

#[test]
fn narrow_payloads_are_sealed_in_the_file_and_kept_off_the_outbox() {
    let env = Env::new();
    let red = env.team("red", "s1");
    let ann = env.agent("ann", "s1", &[&red]);
    let canaries = [
        (AclLevel::Private, "CANARY-event-private-3b1f"),
        (AclLevel::Team, "CANARY-event-team-9c2e"),
        (AclLevel::Swarm, "CANARY-event-swarm-51d0"),
        (AclLevel::Public, "CANARY-event-public-e7a4"),
    ];
    for (level, canary) in canaries {
        let mut spec = EventSpec::new("secret", json!({ "text": canary })).level(level);
        if level == AclLevel::Team {
            spec = spec.team(red.clone());
        }
        let e = publish(&env, &ann, spec);
        assert_eq!(e.payload, json!({ "text": canary }), "the reader gets the payload back");
    }
    let system = "CANARY-event-system-0a0a";
    let spec = EventSpec::new("secret", json!({ "text": system }))
        .level(AclLevel::System)
        .swarm(swarm("s1"));
    publish(&env, &Identity::System, spec);
    // One outbox row per publish, carrying the payload only where the whole swarm may read.
    let rows: Vec<(String, String)> = {
        let conn = raw(env.path());
        let mut stmt = conn.prepare("SELECT channel, message FROM outbox ORDER BY seq").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(|r| r.unwrap()).collect()
    };
    assert_eq!(rows.len(), 5);
    for ((channel, message), level) in rows.iter().zip(AclLevel::ALL) {
        let m: serde_json::Value = serde_json::from_str(message).unwrap();
        assert_eq!(channel, "swarm:s1:events");
        assert_eq!(
            (m["eventType"].as_str(), m["level"].as_u64()),
            (Some("secret"), Some(u64::from(level.as_u8())))
        );
        let carries = matches!(level, AclLevel::Swarm | AclLevel::Public);
        assert_eq!(!m["payload"].is_null(), carries, "{level}: {message}");
        if carries {
            assert!(m["payload"]["text"].as_str().unwrap().starts_with("CANARY-event-"));
        }
    }
    let bytes = file_bytes(env);
    for (level, canary) in canaries {
        let encrypted = matches!(level, AclLevel::Private | AclLevel::Team);
        assert_eq!(
            contains(&bytes, canary),
            !encrypted,
            "{level} payload in the file: {}",
            !encrypted
        );
    }
}

#[test]
fn a_publisher_who_may_write_but_not_read_a_level_gets_its_event_back() {
    let env = Env::new();
    let mut grants = swarm_acl::Grant::defaults();
    grants.push(swarm_acl::Grant::new(ResourceType::Event, Action::Write, AclLevel::System));
    let probe = env.agent_with("probe", "s1", &[], grants);
    let e = publish(
        &env,
        &probe,
        EventSpec::new("health", json!({ "ok": true })).level(AclLevel::System),
    );
    assert_eq!(
        (e.level, e.payload.clone(), e.source.as_ref().map(AgentId::as_str)),
        (AclLevel::System, json!({ "ok": true }), Some("probe"))
    );
    assert_eq!(env.store.get_event(&Identity::System, e.seq).unwrap().as_ref(), Some(&e));
    assert_eq!(env.store.get_event(&probe, e.seq).unwrap(), None);
    assert_eq!(count(&env, "SELECT count(*) FROM events"), 1, "published once");
}

#[test]
fn an_expired_grant_stops_reads_and_claims_without_a_sweep() {
    let env = Env::new();
    let until = Timestamp::from_millis(T0 + 1000);
    let mut grants = swarm_acl::Grant::defaults();
    for a in [Action::Read, Action::Write] {
        grants.push(
            swarm_acl::Grant::new(ResourceType::Event, a, AclLevel::System).expiring_at(until),
        );
    }
    let temp = env.agent_with("temp", "s1", &[], grants.clone());
    let spec = EventSpec::new("ops", json!({})).level(AclLevel::System).swarm(swarm("s1"));
    let seq = publish(&env, &Identity::System, spec).seq;
    assert!(env.store.get_event(&temp, seq).unwrap().is_some());
    assert_eq!(seqs(&env.store.events_since(&temp, 0, None, 10).unwrap().events), [seq]);
    env.clock.advance(1000);
    assert_eq!(env.store.get_event(&temp, seq).unwrap(), None);
    assert!(env.store.events_since(&temp, 0, None, 10).unwrap().events.is_empty());
    assert!(env.store.claim_events(&temp, "c", 10, VIS).unwrap().is_empty());
    // The event itself is still there for whoever holds a live grant.
    let live: Vec<_> = grants
        .into_iter()
        .map(|g| swarm_acl::Grant::new(g.resource(), g.action(), g.level()))
        .collect();
    let keeper = env.agent_with("keeper", "s1", &[], live);
    assert_eq!(claimed(&env.store.claim_events(&keeper, "c", 10, VIS).unwrap()), [seq]);
}

/// One event per level: levels 1-4 published by `own` (the team one for red), level 5 by
/// the system.
fn events_per_level(w: &World, kind: &str) -> Vec<Event> {
    AclLevel::ALL
        .iter()
        .map(|&level| {
            let mut spec = EventSpec::new(kind, json!({ "level": level.as_u8() }))
                .level(level)
                .max_retries(100);
            if level == AclLevel::Team {
                spec = spec.team(w.red.clone());
            }
            let who = if level == AclLevel::System {
                spec = spec.swarm(swarm("s1"));
                &Identity::System
            } else {
                &w.agents["own"]
            };
            w.env.store.publish_event(who, spec).unwrap()
        })
        .collect()
}

fn allows(w: &World, who: &Identity, action: Action, e: &Event) -> bool {
    w.allows(
        who,
        action,
        ResourceType::Event,
        &e.swarm,
        e.level,
        e.source.as_ref(),
        e.team.as_ref(),
    )
}

fn visible(r: Result<bool, StoreError>) -> bool {
    match r {
        Ok(v) => v,
        Err(StoreError::InactiveAgent(_)) => false,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn every_event_read_and_claim_agrees_with_the_acl_model() {
    let w = world();
    let s = &w.env.store;
    let events = events_per_level(&w, "acl");
    w.suspend_and_revoke(ResourceType::Event);
    let literal = READS_BY_LEVEL;
    for (name, want) in literal {
        for (e, want) in events.iter().zip(want) {
            assert_eq!(
                allows(&w, &w.agents[name], Action::Read, e),
                want,
                "model: {name} reading {}",
                e.level
            );
        }
    }
    let s1 = swarm("s1");
    for (name, who) in &w.agents {
        let log: Vec<u64> = match s.events_since(who, 0, None, 1000) {
            Ok(page) => seqs(&page.events),
            Err(StoreError::InactiveAgent(_)) => vec![],
            Err(e) => panic!("{name}: {e}"),
        };
        for e in &events {
            let may_read = allows(&w, who, Action::Read, e);
            let get = visible(s.get_event(who, e.seq).map(|r| r.is_some()));
            let log = log.contains(&e.seq);
            assert_eq!(
                [get, log],
                [may_read, may_read && w.in_swarm(who, &s1)],
                "{name} reading the {} event: [get, events_since]",
                e.level
            );
        }
        // Claims: every event is free again when this agent claims (the previous claimer's
        // visibility lapsed).
        if *name == "system" {
            continue;
        }
        let got = match s.claim_events(who, "acl", 100, Duration::from_millis(1)) {
            Ok(d) => claimed(&d),
            Err(StoreError::InactiveAgent(_)) => vec![],
            Err(e) => panic!("{name}: {e}"),
        };
        for e in &events {
            let may_claim = w.in_swarm(who, &s1)
                && allows(&w, who, Action::Read, e)
                && allows(&w, who, Action::Write, e);
            assert_eq!(got.contains(&e.seq), may_claim, "{name} claiming the {} event", e.level);
        }
        w.env.clock.advance(10);
    }
}

#[test]
fn a_parent_event_the_publisher_cannot_see_is_as_absent_as_a_missing_one() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let bob = env.agent("bob", "s1", &[]);
    let s = &env.store;
    let hidden =
        s.publish_event(&ann, EventSpec::new("note", json!({})).level(AclLevel::Private)).unwrap();
    let shared = s.publish_event(&ann, EventSpec::new("note", json!({}))).unwrap();
    let short = s
        .publish_event(&ann, EventSpec::new("note", json!({})).ttl(Duration::from_secs(1)))
        .unwrap();
    env.clock.advance(2_000);
    let child =
        |parent: u64| s.publish_event(&bob, EventSpec::new("reply", json!({})).parent(parent));
    // A visible parent is fine.
    assert_eq!(child(shared.seq).unwrap().parent, Some(shared.seq));
    // Hidden, expired and missing parents get the same answer.
    let refusals: Vec<String> = [hidden.seq, short.seq, 9_999]
        .into_iter()
        .map(|seq| {
            let e = child(seq).unwrap_err();
            assert!(matches!(e, StoreError::NotFound(_)), "{e}");
            e.to_string().replace(&seq.to_string(), "N")
        })
        .collect();
    assert_eq!(refusals[0], refusals[1]);
    assert_eq!(refusals[1], refusals[2]);
    // ann may name her own private event as a parent.
    assert!(s.publish_event(&ann, EventSpec::new("reply", json!({})).parent(hidden.seq)).is_ok());
}
