//! The `coord` suite (issue 8): swarm-coord on Redis, process to process.
//!
//! This binary runs itself again as child processes (the variable [`CHILD_VAR`] names the
//! role; [`child`] is their entry point). Parent and children exchange the measured traffic
//! over Redis only; the children's stdin carries their settings (one JSON line, so the
//! Redis password and the swarm secret never appear in an environment or on a command
//! line) and their stdout carries `ready` and, for voters, one line per vote.
//!
//! - Notification latency. An echo child answers every ping with a pong. Ours: the parent's
//!   `RedisCoordinator` publishes a signed ping on the swarm's `memory` channel, the child's
//!   `Subscription` receives it (checked: size, shape, HMAC, skew, replay) and its
//!   coordinator publishes a pong on the `events` channel, which the parent's subscription
//!   receives. Ours with handlers: the same through `subscribe_with` on two other channels,
//!   the child's handler answering on its subscriber thread and the parent's stamping the
//!   pong there (the like-for-like side, which the goal applies to). Baseline: the raw
//!   `redis` crate, `PUBLISH` to a raw `SUBSCRIBE` in another child that answers the same
//!   way on a raw channel, with payloads padded to the size of our ping envelope so both
//!   sides move the same bytes. The three sides alternate in blocks of 100 round trips, and every block counts: tails are half of what is
//!   compared, and keeping each side's best round by its median (as the store suites do)
//!   would set one round's tail beside another's.
//! - One-way latency is measured with timestamps in the messages: the sender stamps the
//!   wall clock just before publishing, the receiver just after its receive call returns,
//!   and the difference is one notification. All processes run on one host, so they read
//!   one kernel clock (`CLOCK_REALTIME`) and the difference needs no synchronisation; a
//!   round trip halved would hide which leg an outlier was on and halve every tail.
//!   Round trips are also reported, on the parent's monotonic clock alone.
//! - Two rows break our overhead down: the hand-off from the child's subscriber thread to
//!   the thread that receives the ping (both stamps in the child), and the library's whole
//!   path without I/O or hand-off (publish to delivery on the in-process bus, one thread).
//! - A consensus round across three processes: three voter children, each with its own
//!   `RedisCoordinator`, vote in a round (majority, quorum 3) when the parent announces it;
//!   the vote that reaches the quorum decides the round and publishes `consensus_decided`.
//!   Timed from the first vote sent (the earliest `vote()` call of the three) to the
//!   parent receiving `consensus_decided`, and from the parent's announcement to the same.
//!
//! Redis is found or started by swarm-testkit's `TestRedis` (`SWARM_TEST_REDIS_URL`,
//! default `redis://127.0.0.1:6379`, or a private `redis-server`); without one the suite
//! fails and says how to fix it. Everything lives in a swarm with a unique id whose keys
//! are deleted at the end. Children are killed and reaped when the parent drops them, on
//! every path out of the suite, and exit by themselves when their stdin closes, so they do
//! not outlive a parent that is killed.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail, ensure};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use swarm_acl::{AgentId, SwarmId};
use swarm_coord::{
    Ballot, Channel, ChannelFilter, ChannelKind, CoordConfig, Coordinator, Envelope,
    HandlerSubscription, InProcessBus, PublishOptions, RedisConfig, RedisCoordinator, RoundSpec,
    Strategy, Subscription, SwarmKeys, SwarmSecret,
};
use swarm_testkit::TestRedis;

use crate::harness::{
    Comparison, Goal, Measurement, Section, Settings, measure, new_histogram, record, summarize,
};

/// Set (to a role name) in the environment of the children this suite starts.
pub(crate) const CHILD_VAR: &str = "SWARM_BENCH_COORD_CHILD";

/// Issue 8: one-way notification latency of ours against the raw redis crate.
const NOTIFY_GOAL: f64 = 1.5;
/// Round trips of one side before the other side's turn: short enough (a few
/// milliseconds) that a burst of load from outside lands on both sides alike.
const BLOCK: u64 = 100;
/// Round trips measured per side, and before measuring (capped by the settings).
const ROUND_TRIPS: u64 = 30_000;
const ROUND_TRIP_WARMUP: u64 = 1_000;
/// Consensus rounds measured, and before measuring.
const CONSENSUS_ROUNDS: u64 = 1_000;
const CONSENSUS_ROUNDS_QUICK: u64 = 100;
const CONSENSUS_WARMUP: u64 = 20;
/// Voter processes, and the round's quorum: every one of them must vote.
const VOTERS: usize = 3;
/// The confidence each voter gives.
const CONFIDENCE: f64 = 0.9;
/// How far ahead a round's deadline lies: far enough never to expire while measured.
const ROUND_DEADLINE: Duration = Duration::from_secs(60);
/// How long a child may take to connect and subscribe.
const CHILD_START: Duration = Duration::from_secs(10);
/// How long a reply may take before the run fails.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a child may take to exit once its stdin is closed.
const CHILD_STOP: Duration = Duration::from_secs(5);
/// How much of a child's stderr is kept for error messages (about; the start of it).
const STDERR_KEPT: usize = 4096;

/// Ours: pings on the swarm's memory channel (the notifications the store relays), pongs on
/// its events channel, so no process receives what it sent itself.
const PING_KIND: ChannelKind = ChannelKind::Memory;
const PONG_KIND: ChannelKind = ChannelKind::Events;
/// Ours with handler subscriptions: the same, on two other channels of the swarm, so each
/// echo child answers only its own side's pings.
const HANDLER_PING_KIND: ChannelKind = ChannelKind::Sqlite;
const HANDLER_PONG_KIND: ChannelKind = ChannelKind::Coordination;
/// Consensus rounds are announced on the events channel.
const OPEN_KIND: ChannelKind = ChannelKind::Events;

/// What a child does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Answers pings with pongs through a `RedisCoordinator`, receiving from a
    /// `Subscription` (the subscriber thread hands each ping to the answering thread).
    CoordEcho,
    /// The same with a handler subscription: the subscriber thread answers each ping.
    HandlerEcho,
    /// Answers pings with pongs through raw redis-crate `PUBLISH`/`SUBSCRIBE`.
    RawEcho,
    /// Votes in every round announced.
    Voter,
}

impl Role {
    const ALL: [Role; 4] = [Role::CoordEcho, Role::HandlerEcho, Role::RawEcho, Role::Voter];

    fn name(self) -> &'static str {
        match self {
            Role::CoordEcho => "coord-echo",
            Role::HandlerEcho => "handler-echo",
            Role::RawEcho => "raw-echo",
            Role::Voter => "voter",
        }
    }
}

/// What a child is told on its stdin.
#[derive(Debug, Serialize, Deserialize)]
struct ChildConfig {
    redis_url: String,
    swarm: String,
    secret_hex: String,
    /// The child's node id (and, for a voter, its agent id).
    name: String,
    /// Bytes the raw payloads are padded to.
    raw_len: usize,
}

/// The suite's Redis, swarm and secret; the swarm's keys are deleted when it is dropped.
struct Env {
    /// Deletes the swarm's keys on drop, so it is declared before the Redis it talks to.
    _scope: swarm_testkit::KeyScope,
    redis: TestRedis,
    swarm: SwarmId,
    secret: SwarmSecret,
}

impl Env {
    fn open() -> anyhow::Result<Self> {
        let redis =
            TestRedis::try_start().map_err(|e| anyhow!("the coord suite needs Redis: {e}"))?;
        let scope = redis.scope();
        let swarm = SwarmId::new(scope.id()).context("the scope id is a swarm id")?;
        // A fresh secret per run: nothing signed here is meant to outlive the run.
        let secret = SwarmSecret::generate()?;
        Ok(Self { _scope: scope, redis, swarm, secret })
    }

    fn child_config(&self, name: &str, raw_len: usize) -> ChildConfig {
        ChildConfig {
            redis_url: self.redis.url(),
            swarm: self.swarm.as_str().to_owned(),
            secret_hex: self.secret.to_hex().as_str().to_owned(),
            name: name.to_owned(),
            raw_len,
        }
    }

    fn coordinator(&self, name: &str) -> anyhow::Result<RedisCoordinator> {
        connect(&self.redis.url(), &self.swarm, self.secret.clone(), name)
    }
}

fn connect(
    url: &str,
    swarm: &SwarmId,
    secret: SwarmSecret,
    name: &str,
) -> anyhow::Result<RedisCoordinator> {
    let redis = RedisConfig::from_url(url)?;
    let shown = redis.to_string();
    let config =
        CoordConfig::new(SwarmKeys::new().with_secret(swarm, secret))?.with_node_id(name)?;
    RedisCoordinator::connect(redis, config)
        .with_context(|| format!("{name}: connecting to Redis at {shown}"))
}

pub(crate) fn run(settings: &Settings) -> anyhow::Result<Section> {
    let mut section = Section::new("coord");
    let env = Env::open()?;
    notifications(settings, &env, &mut section)?;
    consensus(settings, &env, &mut section)?;
    Ok(section)
}

/// Wall-clock nanoseconds since the Unix epoch: the clock every process on this host
/// shares, for one-way latencies.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

/// A one-way latency from two wall-clock stamps (a clock stepped backwards reads as zero
/// rather than wrapping).
fn one_way(sent_ns: u64, received_ns: u64) -> Duration {
    Duration::from_nanos(received_ns.saturating_sub(sent_ns))
}

fn raw_ping_channel(swarm: &SwarmId) -> String {
    format!("swarm-bench:{swarm}:raw-ping")
}

fn raw_pong_channel(swarm: &SwarmId) -> String {
    format!("swarm-bench:{swarm}:raw-pong")
}

/// A raw payload: the numbers in decimal, separated by spaces, padded with spaces to `len`.
fn raw_payload(numbers: &[u64], len: usize) -> Vec<u8> {
    let mut text = numbers.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
    if text.len() < len {
        text.extend(std::iter::repeat_n(' ', len - text.len()));
    }
    text.into_bytes()
}

/// The numbers of a raw payload; exactly `N` of them.
fn parse_raw<const N: usize>(payload: &[u8]) -> anyhow::Result<[u64; N]> {
    let text = std::str::from_utf8(payload).context("raw payload is not UTF-8")?;
    let mut out = [0; N];
    let mut fields = text.split_ascii_whitespace();
    for slot in &mut out {
        *slot = fields
            .next()
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("raw payload {:?} lacks a number", truncate(text)))?;
    }
    ensure!(fields.next().is_none(), "raw payload {:?} has extra fields", truncate(text));
    Ok(out)
}

fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

/// A number field of a received message.
fn field(env: &Envelope, name: &str) -> anyhow::Result<u64> {
    env.message()
        .get(name)
        .and_then(Value::as_u64)
        .with_context(|| format!("{} message without a number `{name}`", env.channel()))
}

/// The next message of type `kind` on `sub`; fails after [`REPLY_TIMEOUT`].
fn recv_type(sub: &Subscription, kind: &str, from: &str) -> anyhow::Result<Envelope> {
    let deadline = Instant::now() + REPLY_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match sub.recv_timeout(left)? {
            Some(env) if env.message_type() == Some(kind) => return Ok(env),
            Some(_) => {}
            None => bail!("no `{kind}` from {from} within {REPLY_TIMEOUT:?}"),
        }
    }
}

/// Latencies of one side of the comparison.
struct Sample {
    one_way: Histogram<u64>,
    round_trip: Histogram<u64>,
    /// Ours only: how long received pings waited between the child's subscriber thread,
    /// which verified them, and the thread that received them.
    handoff: Histogram<u64>,
    round_trips: u64,
    wall: Duration,
}

impl Sample {
    fn new() -> Self {
        Self {
            one_way: new_histogram(),
            round_trip: new_histogram(),
            handoff: new_histogram(),
            round_trips: 0,
            wall: Duration::ZERO,
        }
    }

    /// Records one round trip: its own time and the two notifications it was made of.
    fn add(&mut self, trip: &Trip) {
        record(&mut self.round_trip, trip.round_trip);
        record(&mut self.one_way, trip.there);
        record(&mut self.one_way, trip.back);
        if let Some(handoff) = trip.handoff {
            record(&mut self.handoff, handoff);
        }
        self.round_trips += 1;
    }

    fn measurements(&self, name: &str) -> [Measurement; 2] {
        [
            summarize(&format!("{name}, one way"), self.round_trips * 2, self.wall, &self.one_way),
            summarize(
                &format!("{name}, round trip"),
                self.round_trips,
                self.wall,
                &self.round_trip,
            ),
        ]
    }

    fn handoff(&self) -> Measurement {
        summarize(
            "of which: hand-off from the subscriber thread to the receiving thread (child)",
            self.handoff.len(),
            self.wall,
            &self.handoff,
        )
    }
}

/// One ping answered by one pong.
struct Trip {
    round_trip: Duration,
    there: Duration,
    back: Duration,
    /// Ours only: the part of `there` spent handing the ping to the receiving thread.
    handoff: Option<Duration>,
}

/// Publishes ping `seq` stamped with the wall clock; returns when the round trip started.
fn send_ping(coord: &RedisCoordinator, ping: &Channel, seq: u64) -> anyhow::Result<Instant> {
    let start = Instant::now();
    let sent = now_ns();
    coord.publish(
        ping,
        json!({"type": "ping", "seq": seq, "sentNs": sent}),
        PublishOptions::new(),
    )?;
    Ok(start)
}

/// The trip a pong ends: it must answer ping `seq`; `received` is its wall-clock stamp.
fn pong_trip(
    pong: &Envelope,
    seq: u64,
    start: Instant,
    received: u64,
    handoff: Option<Duration>,
) -> anyhow::Result<Trip> {
    let round_trip = start.elapsed();
    ensure!(field(pong, "seq")? == seq, "pong out of order");
    Ok(Trip {
        round_trip,
        there: Duration::from_nanos(field(pong, "forwardNs")?),
        back: one_way(field(pong, "sentNs")?, received),
        handoff,
    })
}

/// The parent's end of our side: its coordinator and the subscription pongs arrive on.
struct CoordPinger {
    coord: RedisCoordinator,
    ping: Channel,
    pongs: Subscription,
    seq: u64,
}

impl CoordPinger {
    fn trip(&mut self) -> anyhow::Result<Trip> {
        self.seq += 1;
        let start = send_ping(&self.coord, &self.ping, self.seq)?;
        let pong = recv_type(&self.pongs, "pong", Role::CoordEcho.name())?;
        let received = now_ns();
        let handoff = Duration::from_nanos(field(&pong, "handoffNs")?);
        pong_trip(&pong, self.seq, start, received, Some(handoff))
    }
}

/// The parent's end of our side with handler subscriptions: the handler stamps each pong
/// as it arrives on the subscriber thread and passes it on to the measuring thread.
struct HandlerPinger {
    coord: RedisCoordinator,
    ping: Channel,
    pongs: mpsc::Receiver<(u64, Envelope)>,
    _subscription: HandlerSubscription,
    seq: u64,
}

impl HandlerPinger {
    fn new(coord: RedisCoordinator, swarm: &SwarmId) -> anyhow::Result<Self> {
        let (tx, pongs) = mpsc::channel();
        let subscription = coord.subscribe_with(
            ChannelFilter::exact(swarm, HANDLER_PONG_KIND),
            Box::new(move |env: &Envelope| {
                let received = now_ns();
                if env.message_type() == Some("pong") {
                    let _ = tx.send((received, env.clone()));
                }
            }),
        )?;
        let ping = Channel::new(swarm, HANDLER_PING_KIND);
        Ok(Self { coord, ping, pongs, _subscription: subscription, seq: 0 })
    }

    fn trip(&mut self) -> anyhow::Result<Trip> {
        self.seq += 1;
        let start = send_ping(&self.coord, &self.ping, self.seq)?;
        let (received, pong) = self.pongs.recv_timeout(REPLY_TIMEOUT).with_context(|| {
            format!("no `pong` from {} within {REPLY_TIMEOUT:?}", Role::HandlerEcho.name())
        })?;
        pong_trip(&pong, self.seq, start, received, None)
    }
}

/// The parent's end of the raw side: a publishing connection and a subscribed one.
struct RawPinger<'a> {
    publisher: redis::Connection,
    pongs: redis::PubSub<'a>,
    ping: String,
    len: usize,
    seq: u64,
}

impl RawPinger<'_> {
    fn trip(&mut self) -> anyhow::Result<Trip> {
        self.seq += 1;
        let start = Instant::now();
        let sent = now_ns();
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(&self.ping)
            .arg(raw_payload(&[self.seq, sent], self.len))
            .query(&mut self.publisher)?;
        ensure!(receivers == 1, "raw ping reached {receivers} subscribers, not the echo child");
        let msg = self.pongs.get_message().context("waiting for a raw pong")?;
        let received = now_ns();
        let round_trip = start.elapsed();
        let [seq, forward, pong_sent] = parse_raw::<3>(msg.get_payload_bytes())?;
        ensure!(seq == self.seq, "raw pong out of order");
        Ok(Trip {
            round_trip,
            there: Duration::from_nanos(forward),
            back: one_way(pong_sent, received),
            handoff: None,
        })
    }
}

/// Our notification latency beside the raw redis crate's, process to process.
fn notifications(settings: &Settings, env: &Env, section: &mut Section) -> anyhow::Result<()> {
    let settings = settings.capped(ROUND_TRIP_WARMUP, ROUND_TRIPS);
    let swarm = &env.swarm;
    let coord = env.coordinator("bench-parent")?;
    let pongs = coord.subscribe(ChannelFilter::exact(swarm, PONG_KIND))?;
    let ping = Channel::new(swarm, PING_KIND);
    // The size of our ping, for padding the raw payloads to: a ping published before any
    // echo child listens reaches nobody.
    let probe = coord.publish(
        &ping,
        json!({"type": "ping", "seq": 0, "sentNs": now_ns()}),
        PublishOptions::new(),
    )?;
    let keys = SwarmKeys::new().with_secret(swarm, env.secret.clone());
    let envelope_len = probe.encode(&keys, usize::MAX)?.len();
    let mut ours = CoordPinger { coord, ping, pongs, seq: 0 };
    let mut handled = HandlerPinger::new(env.coordinator("bench-parent-handler")?, swarm)?;

    let client = redis::Client::open(env.redis.url().as_str())
        .context("opening a raw redis client for the baseline")?;
    let publisher = client.get_connection().context("raw publishing connection")?;
    let mut sub_conn = client.get_connection().context("raw subscribing connection")?;
    let mut pongs = sub_conn.as_pubsub();
    pongs.subscribe(raw_pong_channel(swarm))?;
    pongs.set_read_timeout(Some(REPLY_TIMEOUT))?;
    let mut raw =
        RawPinger { publisher, pongs, ping: raw_ping_channel(swarm), len: envelope_len, seq: 0 };

    let mut echo = Node::spawn(Role::CoordEcho, &env.child_config("bench-echo", envelope_len))?;
    let mut handler_echo =
        Node::spawn(Role::HandlerEcho, &env.child_config("bench-handler-echo", envelope_len))?;
    let mut raw_echo =
        Node::spawn(Role::RawEcho, &env.child_config("bench-raw-echo", envelope_len))?;

    eprintln!("coord: {} round trips per side, {envelope_len} B messages", settings.iterations);
    let mut measure_three = || -> anyhow::Result<(Sample, Sample, Sample)> {
        for _ in 0..settings.warmup {
            ours.trip()?;
            handled.trip()?;
            raw.trip()?;
        }
        let (mut a, mut h, mut b) = (Sample::new(), Sample::new(), Sample::new());
        let mut done = 0;
        while done < settings.iterations {
            let n = BLOCK.min(settings.iterations - done);
            let start = Instant::now();
            for _ in 0..n {
                a.add(&ours.trip()?);
            }
            a.wall += start.elapsed();
            let start = Instant::now();
            for _ in 0..n {
                h.add(&handled.trip()?);
            }
            h.wall += start.elapsed();
            let start = Instant::now();
            for _ in 0..n {
                b.add(&raw.trip()?);
            }
            b.wall += start.elapsed();
            done += n;
        }
        Ok((a, h, b))
    };
    let (a, h, b) = measure_three()
        .map_err(|e| with_children(e, [&mut echo, &mut handler_echo, &mut raw_echo]))?;
    echo.stop()?;
    handler_echo.stop()?;
    raw_echo.stop()?;
    let [ours_one, ours_trip] = a.measurements("swarm-coord publish -> subscription");
    let [handler_one, handler_trip] = h.measurements("swarm-coord publish -> handler subscription");
    let [raw_one, raw_trip] = b.measurements("raw redis PUBLISH -> SUBSCRIBE");
    let handoff = a.handoff();
    for coord in [&ours.coord, &handled.coord] {
        let health = coord.health();
        let dropped =
            health.dropped.rejected() + health.dropped.lagged + health.dropped.handler_panics;
        ensure!(dropped == 0, "the parent's coordinator dropped {dropped} messages: {health:?}");
    }

    // The goal is set on the like-for-like pair: the raw subscriber handles each message
    // on the thread that read it from the socket, as a handler subscription does. A
    // `Subscription` adds the hand-off to the receiving thread measured below.
    section.goals.push(Goal::at_most(
        "notification one way p99, ours (handler) / raw",
        handler_one.p99_ns as f64 / raw_one.p99_ns.max(1) as f64,
        NOTIFY_GOAL,
        "x",
    ));
    section.comparisons.push(Comparison::latency(
        "notification one way, process to process, handler subscription",
        handler_one.clone(),
        raw_one.clone(),
        Some(NOTIFY_GOAL),
    ));
    section.comparisons.push(Comparison::latency(
        "notification one way, process to process, Subscription (with the hand-off)",
        ours_one.clone(),
        raw_one.clone(),
        None,
    ));
    section.comparisons.push(Comparison::latency(
        "round trip (two notifications), process to process, handler subscription",
        handler_trip.clone(),
        raw_trip.clone(),
        None,
    ));
    section.comparisons.push(Comparison::latency(
        "round trip (two notifications), process to process, Subscription",
        ours_trip.clone(),
        raw_trip.clone(),
        None,
    ));
    // What ours adds to a notification apart from the thread hand-off, without I/O: the
    // same publish and subscription on the in-process bus, which hands the signed bytes to
    // the router on the publishing thread (id, signature, encoding, then decoding,
    // verification, the replay check and delivery into the subscription's queue).
    let in_process = {
        let bus =
            InProcessBus::new(CoordConfig::new(keys.clone())?.with_node_id(ours.coord.node_id())?)?;
        let ping = Channel::new(swarm, PING_KIND);
        let sub = bus.subscribe(ChannelFilter::exact(swarm, PING_KIND))?;
        let mut seq = 0_u64;
        let mut once = || -> anyhow::Result<Envelope> {
            seq += 1;
            let message = json!({"type": "ping", "seq": seq, "sentNs": now_ns()});
            bus.publish(&ping, message, PublishOptions::new())?;
            sub.try_recv()?.context("the in-process bus did not deliver our own ping")
        };
        let mut failed = None;
        let m = measure(
            "of which: publish -> delivery on the in-process bus (one thread, no I/O, no hand-off)",
            &settings,
            || {
                if let Err(e) = once() {
                    failed.get_or_insert(e);
                }
            },
        );
        let dropped = bus.health().dropped;
        bus.shutdown();
        if let Some(e) = failed {
            return Err(e);
        }
        ensure!(
            dropped.rejected() + dropped.lagged == 0,
            "the in-process bus dropped: {dropped:?}"
        );
        m
    };
    section.measurements.extend([
        ours_one,
        handler_one,
        raw_one,
        ours_trip,
        handler_trip,
        raw_trip,
        handoff,
        in_process,
    ]);
    section.figures.push((
        "message bytes (our ping envelope; raw payloads padded to it)".into(),
        envelope_len as f64,
    ));
    section.figures.push(("round trips measured per side".into(), settings.iterations as f64));
    ours.coord.shutdown();
    handled.coord.shutdown();
    Ok(())
}

/// One vote, as a voter reports it.
struct Vote {
    started_ns: u64,
    took: Duration,
    decided_now: bool,
}

impl Vote {
    /// Parses `voted ROUND STARTED_NS TOOK_NS DECIDED_NOW COUNTED`.
    fn parse(line: &str, round: &str) -> anyhow::Result<Self> {
        let bad = || anyhow!("unexpected vote report {:?}", truncate(line));
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let &[_, id, started, took, decided, counted] = fields.as_slice() else {
            return Err(bad());
        };
        ensure!(id == round, "vote report for round {id}, expected {round}");
        ensure!(counted == "true", "a vote in round {round} was not counted");
        Ok(Self {
            started_ns: started.parse().map_err(|_| bad())?,
            took: Duration::from_nanos(took.parse().map_err(|_| bad())?),
            decided_now: decided.parse().map_err(|_| bad())?,
        })
    }
}

/// A full consensus round across three voter processes.
fn consensus(settings: &Settings, env: &Env, section: &mut Section) -> anyhow::Result<()> {
    let rounds = if settings.quick { CONSENSUS_ROUNDS_QUICK } else { CONSENSUS_ROUNDS };
    let warmup = CONSENSUS_WARMUP.min(rounds);
    let swarm = &env.swarm;
    let coord = env.coordinator("bench-chair")?;
    let decisions = coord.subscribe(ChannelFilter::exact(swarm, ChannelKind::Consensus))?;
    let open = Channel::new(swarm, OPEN_KIND);
    let mut voters = Vec::with_capacity(VOTERS);
    for i in 0..VOTERS {
        voters.push(Node::spawn(Role::Voter, &env.child_config(&format!("voter-{i}"), 0))?);
    }
    eprintln!("coord: {rounds} consensus rounds across {VOTERS} voter processes");
    let quorum = u32::try_from(VOTERS)?;
    let (mut first_to_decided, mut open_to_decided) = (new_histogram(), new_histogram());
    let (mut deciding, mut other) = (new_histogram(), new_histogram());
    // Rounds follow one another, so their rate is over the rounds' own time; a vote's rate
    // is over the time spent in vote() calls of its kind (one call at a time per voter).
    let mut wall = Duration::ZERO;
    let (mut deciding_wall, mut other_wall) = (Duration::ZERO, Duration::ZERO);
    for r in 0..warmup + rounds {
        let round =
            one_round(&coord, &decisions, &open, &mut voters, &format!("round-{r}"), quorum)
                .map_err(|e| with_children(e, &mut voters))?;
        if r < warmup {
            continue;
        }
        wall += round.elapsed;
        let first = round.votes.iter().map(|v| v.started_ns).min().unwrap_or(round.decided_ns);
        record(&mut first_to_decided, one_way(first, round.decided_ns));
        record(&mut open_to_decided, round.announced);
        for v in &round.votes {
            let (hist, wall) = if v.decided_now {
                (&mut deciding, &mut deciding_wall)
            } else {
                (&mut other, &mut other_wall)
            };
            record(hist, v.took);
            *wall += v.took;
        }
    }
    for v in voters {
        v.stop()?;
    }
    let others = rounds * (VOTERS as u64 - 1);
    section.measurements.extend([
        summarize(
            &format!("consensus round, first vote sent -> consensus_decided received ({VOTERS} voter processes)"),
            rounds,
            wall,
            &first_to_decided,
        ),
        summarize(
            "consensus round, round announced -> consensus_decided received",
            rounds,
            wall,
            &open_to_decided,
        ),
        summarize(
            "vote() that decides (script, ballots re-verified, consensus_decided published)",
            rounds,
            deciding_wall,
            &deciding,
        ),
        summarize("vote() that does not decide", others, other_wall, &other),
    ]);
    section.figures.push(("consensus rounds measured".into(), rounds as f64));
    coord.shutdown();
    Ok(())
}

/// One consensus round as the parent saw it.
struct Round {
    /// From publishing `round_open` to receiving `consensus_decided` (parent's clock).
    announced: Duration,
    /// When `consensus_decided` was received (wall clock).
    decided_ns: u64,
    /// The round until every voter had reported (parent's clock).
    elapsed: Duration,
    votes: Vec<Vote>,
}

/// Announces round `id`, waits for its decision and every voter's report, and checks that
/// it was decided once, for, by all [`VOTERS`].
fn one_round(
    coord: &RedisCoordinator,
    decisions: &Subscription,
    open: &Channel,
    voters: &mut [Node],
    id: &str,
    quorum: u32,
) -> anyhow::Result<Round> {
    let deadline = now_ms() + u64::try_from(ROUND_DEADLINE.as_millis())?;
    let start = Instant::now();
    coord.publish(
        open,
        json!({"type": "round_open", "round": id, "quorum": quorum, "deadline": deadline}),
        PublishOptions::new(),
    )?;
    let decided = loop {
        let d = recv_type(decisions, "consensus_decided", "the voters")?;
        if d.message()["consensusId"] == id {
            break d;
        }
    };
    let decided_ns = now_ns();
    let announced = start.elapsed();
    let m = decided.message();
    ensure!(
        m["outcome"] == "achieved" && m["tally"]["votesFor"] == json!(quorum),
        "round {id} decided unexpectedly: {m}"
    );
    let mut votes = Vec::with_capacity(voters.len());
    for v in voters {
        votes.push(Vote::parse(&v.expect_line("voted ", REPLY_TIMEOUT)?, id)?);
    }
    let deciders = votes.iter().filter(|v| v.decided_now).count();
    ensure!(deciders == 1, "round {id} was decided by {deciders} votes, not exactly one");
    Ok(Round { announced, decided_ns, elapsed: start.elapsed(), votes })
}

/// Adds to `e` what became of any of `nodes` that has exited: a child that died is the
/// likelier story than a reply that was merely late.
fn with_children<'a>(
    e: anyhow::Error,
    nodes: impl IntoIterator<Item = &'a mut Node>,
) -> anyhow::Error {
    for node in nodes {
        if matches!(node.child.try_wait(), Ok(Some(_))) {
            let ended = node.fail("ended during the run").to_string();
            return e.context(ended);
        }
    }
    e
}

/// A child process of this suite. Killed and reaped when dropped, whatever happened.
struct Node {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Node {
    /// Starts a child in `role`, hands it its settings and waits until it is ready.
    fn spawn(role: Role, config: &ChildConfig) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding this executable to run children")?;
        let mut child = Command::new(&exe)
            .env(CHILD_VAR, role.name())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} as a {} child", exe.display(), role.name()))?;
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let (tx, lines) = mpsc::channel();
        let kept = Arc::new(Mutex::new(String::new()));
        // From here on the child is owned by `node`, so any failure kills it.
        let mut node =
            Self { name: config.name.clone(), child, stdin, lines, stderr: kept.clone() };
        let (Some(stdout), Some(stderr)) = (stdout, stderr) else {
            bail!("{}: no pipes to the child", node.name);
        };
        // Both readers end when the child's pipes close, which its exit or kill does.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            let mut buf = [0_u8; 1024];
            let mut stderr = stderr;
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                // The start is kept: a child's error message comes first, a backtrace after.
                let mut kept = kept.lock().unwrap_or_else(PoisonError::into_inner);
                if kept.len() < STDERR_KEPT {
                    kept.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        let line = serde_json::to_string(config)?;
        let sent = node.stdin.as_mut().map(|s| writeln!(s, "{line}").and_then(|()| s.flush()));
        if !matches!(sent, Some(Ok(()))) {
            return Err(node.fail("cannot write its settings"));
        }
        node.expect_line("ready", CHILD_START)?;
        Ok(node)
    }

    /// An error about the child: `what`, how it ended if it did, and what it printed on
    /// stderr.
    fn fail(&mut self, what: &str) -> anyhow::Error {
        let status = match self.child.try_wait() {
            Ok(Some(status)) => format!(" (exited: {status})"),
            _ => String::new(),
        };
        let stderr = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        if stderr.trim().is_empty() {
            anyhow!("{}: {what}{status}", self.name)
        } else {
            anyhow!("{}: {what}{status}; its stderr:\n{}", self.name, stderr.trim_end())
        }
    }

    /// The next line the child prints, which must start with `prefix`.
    fn expect_line(&mut self, prefix: &str, timeout: Duration) -> anyhow::Result<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) if line.starts_with(prefix) => Ok(line),
            Ok(line) => bail!("{}: expected `{prefix}...`, got {:?}", self.name, truncate(&line)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err(self.fail(&format!("no `{prefix}` within {timeout:?}")))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // The pipe closed: give the child a moment to be reaped so the status shows.
                let _ = self.wait_exit(Duration::from_millis(200));
                Err(self.fail(&format!("ended before `{prefix}`")))
            }
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Closes the child's stdin, which tells it to exit, and checks that it did, cleanly.
    fn stop(mut self) -> anyhow::Result<()> {
        self.stdin = None;
        match self.wait_exit(CHILD_STOP) {
            Some(status) if status.success() => Ok(()),
            Some(_) => Err(self.fail("failed")),
            None => bail!("{} did not exit within {CHILD_STOP:?} of being told to", self.name),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The role a child of this suite was started in, if this process is one.
pub(crate) fn child_role() -> Option<String> {
    std::env::var(CHILD_VAR).ok()
}

/// The entry point of a child: reads its settings from stdin, then plays `role` until its
/// stdin closes.
pub(crate) fn child(role: &str) -> anyhow::Result<()> {
    let role = Role::ALL.into_iter().find(|r| r.name() == role).with_context(|| {
        let known: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
        format!("{CHILD_VAR}={role:?} is not a role (known: {})", known.join(" "))
    })?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading settings from stdin")?;
    let config: ChildConfig =
        serde_json::from_str(&line).context("settings on stdin are not a child configuration")?;
    // The parent closes stdin to stop a child, and so does its death: exit then, whatever
    // the child is waiting for.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let swarm = SwarmId::new(&config.swarm).context("swarm id in the settings")?;
    let secret = SwarmSecret::from_hex(&config.secret_hex)?;
    match role {
        Role::CoordEcho => coord_echo(&config, &swarm, secret),
        Role::HandlerEcho => handler_echo(&config, &swarm, secret),
        Role::RawEcho => raw_echo(&config, &swarm),
        Role::Voter => voter(&config, &swarm, secret),
    }
}

/// Tells the parent the child is ready for traffic.
fn ready() -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    Ok(())
}

fn coord_echo(config: &ChildConfig, swarm: &SwarmId, secret: SwarmSecret) -> anyhow::Result<()> {
    let coord = connect(&config.redis_url, swarm, secret, &config.name)?;
    let pings = coord.subscribe(ChannelFilter::exact(swarm, PING_KIND))?;
    let pong = Channel::new(swarm, PONG_KIND);
    ready()?;
    loop {
        let Ok(ping) = pings.receiver().recv() else { bail!("the coordinator closed") };
        let received = now_ns();
        if ping.message_type() != Some("ping") {
            continue;
        }
        let forward = one_way(field(&ping, "sentNs")?, received);
        // Both stamps are this process's wall clock: the router's, once the ping passed
        // every check, and this thread's, once it had the ping.
        let verified = ping
            .received_at()
            .context("a received ping without its time of receipt")?
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let reply = json!({
            "type": "pong",
            "seq": field(&ping, "seq")?,
            "forwardNs": u64::try_from(forward.as_nanos())?,
            "handoffNs": u64::try_from(one_way(verified, received).as_nanos())?,
            "sentNs": now_ns(),
        });
        coord.publish(&pong, reply, PublishOptions::new())?;
    }
}

fn handler_echo(config: &ChildConfig, swarm: &SwarmId, secret: SwarmSecret) -> anyhow::Result<()> {
    let coord = Arc::new(connect(&config.redis_url, swarm, secret, &config.name)?);
    let pong = Channel::new(swarm, HANDLER_PONG_KIND);
    // The first failure, for the main thread to report (the handler cannot return it).
    let failed: Arc<Mutex<Option<anyhow::Error>>> = Arc::default();
    let handler = {
        let (weak, failed) = (Arc::downgrade(&coord), Arc::clone(&failed));
        Box::new(move |ping: &Envelope| {
            let received = now_ns();
            if ping.message_type() != Some("ping") {
                return;
            }
            let answer = || -> anyhow::Result<()> {
                let coord = weak.upgrade().context("the coordinator is gone")?;
                let forward = one_way(field(ping, "sentNs")?, received);
                let reply = json!({
                    "type": "pong",
                    "seq": field(ping, "seq")?,
                    "forwardNs": u64::try_from(forward.as_nanos())?,
                    "sentNs": now_ns(),
                });
                coord.publish(&pong, reply, PublishOptions::new())?;
                Ok(())
            };
            if let Err(e) = answer() {
                failed.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(e);
            }
        })
    };
    let _subscription =
        coord.subscribe_with(ChannelFilter::exact(swarm, HANDLER_PING_KIND), handler)?;
    ready()?;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        if let Some(e) = failed.lock().unwrap_or_else(PoisonError::into_inner).take() {
            return Err(e);
        }
    }
}

fn raw_echo(config: &ChildConfig, swarm: &SwarmId) -> anyhow::Result<()> {
    let client = redis::Client::open(config.redis_url.as_str())?;
    let mut publisher = client.get_connection()?;
    let mut sub_conn = client.get_connection()?;
    let mut pings = sub_conn.as_pubsub();
    pings.subscribe(raw_ping_channel(swarm))?;
    let pong = raw_pong_channel(swarm);
    ready()?;
    loop {
        let ping = pings.get_message()?;
        let received = now_ns();
        let [seq, sent] = parse_raw::<2>(ping.get_payload_bytes())?;
        let forward = u64::try_from(one_way(sent, received).as_nanos())?;
        let reply = raw_payload(&[seq, forward, now_ns()], config.raw_len);
        redis::cmd("PUBLISH").arg(&pong).arg(reply).query::<i64>(&mut publisher)?;
    }
}

fn voter(config: &ChildConfig, swarm: &SwarmId, secret: SwarmSecret) -> anyhow::Result<()> {
    let agent = AgentId::new(&config.name).context("voter name is not an agent id")?;
    let coord = connect(&config.redis_url, swarm, secret, &config.name)?;
    let opens = coord.subscribe(ChannelFilter::exact(swarm, OPEN_KIND))?;
    ready()?;
    loop {
        let Ok(open) = opens.receiver().recv() else { bail!("the coordinator closed") };
        if open.message_type() != Some("round_open") {
            continue;
        }
        let id = open.message()["round"].as_str().context("round_open without a round")?;
        let quorum = u32::try_from(field(&open, "quorum")?)?;
        let spec =
            RoundSpec::new(id, swarm, Strategy::Majority, 0.5, quorum, field(&open, "deadline")?)?;
        let started = now_ns();
        let start = Instant::now();
        let result = coord.vote(&spec, Ballot::new(agent.clone(), true, CONFIDENCE)?)?;
        let took = start.elapsed().as_nanos();
        let mut out = std::io::stdout().lock();
        writeln!(out, "voted {id} {started} {took} {} {}", result.decided_now, result.counted)?;
        out.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_payloads_round_trip_and_are_padded() {
        let p = raw_payload(&[7, 1_764_201_600_000_000_000], 64);
        assert_eq!(p.len(), 64);
        assert_eq!(parse_raw::<2>(&p).unwrap(), [7, 1_764_201_600_000_000_000]);
        // Never truncated below its numbers.
        assert_eq!(raw_payload(&[12_345], 2), b"12345");
        assert!(parse_raw::<3>(&p).is_err(), "too few numbers");
        assert!(parse_raw::<1>(&p).is_err(), "extra numbers");
        assert!(parse_raw::<1>(b"x").is_err());
        assert!(parse_raw::<1>(&[0xff]).is_err());
    }

    #[test]
    fn vote_reports_parse_and_bad_ones_are_errors() {
        let v = Vote::parse("voted round-3 100 2500 true true", "round-3").unwrap();
        assert_eq!((v.started_ns, v.took, v.decided_now), (100, Duration::from_nanos(2500), true));
        for bad in [
            "voted round-4 100 2500 true true",
            "voted round-3 100 2500 true false",
            "voted round-3 x 2500 true true",
            "voted round-3 100 2500 maybe true",
            "voted round-3 100",
        ] {
            assert!(Vote::parse(bad, "round-3").is_err(), "{bad}");
        }
    }

    #[test]
    fn one_way_latencies_never_wrap() {
        assert_eq!(one_way(10, 25), Duration::from_nanos(15));
        assert_eq!(one_way(25, 10), Duration::ZERO);
    }

    #[test]
    fn child_roles_have_distinct_names() {
        let names: std::collections::BTreeSet<&str> = Role::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), Role::ALL.len());
    }
}
