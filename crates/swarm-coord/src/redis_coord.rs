//! The Redis coordinator: across processes and hosts.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use serde_json::Value;
use swarm_acl::{AgentId, SwarmId};

use crate::channel::{Channel, ChannelFilter, ChannelKind, Topic};
use crate::config::{CoordConfig, RedisConfig};
use crate::consensus::{Ballot, Outcome, RoundSpec, RoundState, Tally, VoteResult};
use crate::coordinator::{
    Coordinator, Participant, ParticipantStatus, Presence, PublishOptions, coordination, payload,
};
use crate::envelope::{Envelope, verify_stored};
use crate::health::{Counters, Health};
use crate::router::{Handler, HandlerSubscription, Router, Subscription, Unsubscribe};
use crate::scripts;
use crate::{CoordError, Result};

/// How often the subscriber thread looks up from a blocking read (to take new
/// subscriptions and notice shutdown).
const POLL: Duration = Duration::from_millis(25);
/// How often an idle subscription link is pinged, so a dead link is noticed.
const SUB_PING: Duration = Duration::from_secs(1);
/// Presence keys of a swarm live this long after the last heartbeat written to them.
const PRESENCE_RETENTION_MS: u64 = 24 * 3600 * 1000;
/// System messages kept for re-publishing while Redis is down.
const MAX_PENDING: usize = 10_000;

/// Key names. The swarm id is wrapped in `{}` (which no id may contain), so keys of
/// different swarms can never collide, and in a Redis Cluster all keys of one swarm share a
/// hash slot.
pub(crate) mod keys {
    use swarm_acl::SwarmId;

    pub(crate) fn participants(s: &SwarmId) -> String {
        format!("swarm:{{{s}}}:participants")
    }
    pub(crate) fn presence(s: &SwarmId) -> String {
        format!("swarm:{{{s}}}:presence")
    }
    pub(crate) fn heartbeats(s: &SwarmId) -> String {
        format!("swarm:{{{s}}}:heartbeats")
    }
    pub(crate) fn deadlines(s: &SwarmId) -> String {
        format!("swarm:{{{s}}}:deadlines")
    }
    pub(crate) fn round(s: &SwarmId, id: &str) -> String {
        format!("swarm:{{{s}}}:round:{id}")
    }
    pub(crate) fn ballots(s: &SwarmId, id: &str) -> String {
        format!("swarm:{{{s}}}:ballots:{id}")
    }
}

enum Control {
    Subscribe(Topic, Sender<()>),
    Unsubscribe(Topic),
}

#[derive(Default)]
struct Links {
    cmd_up: bool,
    sub_up: bool,
    cmd_ever: bool,
    sub_ever: bool,
    connected: bool,
    since_ms: u64,
}

#[derive(Clone, Copy)]
enum Link {
    Command,
    Subscriber,
}

/// A participant joined through this node, with its signed join record.
type Joined = (Participant, Vec<u8>);

struct Inner {
    config: CoordConfig,
    redis: RedisConfig,
    client: redis::Client,
    counters: Arc<Counters>,
    router: Router,
    cmd: Mutex<Option<redis::Connection>>,
    links: Mutex<Links>,
    joined: Mutex<BTreeMap<(SwarmId, AgentId), Joined>>,
    /// Held while heartbeats are written and while an agent leaves, so a heartbeat in flight
    /// cannot bring back an agent that has just left.
    presence_lock: Mutex<()>,
    control: Sender<Control>,
    pending: Mutex<VecDeque<(Channel, Value, PublishOptions)>>,
    stopping: AtomicBool,
    /// The subscriber thread, where handlers run (set when it starts).
    subscriber_thread: std::sync::OnceLock<std::thread::ThreadId>,
    beat: redis::Script,
    liveness: redis::Script,
    vote: redis::Script,
}

/// The Redis coordinator: pub/sub, presence and consensus across processes and hosts.
///
/// One command connection (publish, scripts, reads) and one subscription connection, each
/// with its own background thread, plus nothing else: no tokio. When Redis goes away every
/// call fails fast with [`CoordError::Unavailable`], [`Coordinator::health`] says so, and
/// both links are re-established with jittered, capped exponential backoff; subscriptions
/// are renewed on the new link without their holders doing anything.
///
/// ```no_run
/// use std::time::Duration;
/// use serde_json::json;
/// use swarm_acl::SwarmId;
/// use swarm_coord::*;
///
/// let swarm = SwarmId::new("s1")?;
/// let keys = SwarmKeys::new().with_secret(&swarm, SwarmSecret::parse(&std::env::var("SWARM_SECRET").unwrap())?);
/// let coord = RedisCoordinator::connect(RedisConfig::from_env()?, CoordConfig::new(keys)?)?;
/// let sub = coord.subscribe(ChannelFilter::all(&swarm))?;
/// coord.publish(&Channel::new(&swarm, ChannelKind::Events), json!({"type": "hello"}), PublishOptions::new())?;
/// while let Some(msg) = sub.recv_timeout(Duration::from_secs(1))? {
///     println!("{} from {}: {}", msg.channel(), msg.sender(), msg.message());
/// }
/// # Ok::<(), swarm_coord::CoordError>(())
/// ```
pub struct RedisCoordinator {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop_tx: Mutex<Option<Sender<()>>>,
}

impl RedisCoordinator {
    /// Connects, failing with [`CoordError::Unavailable`] if Redis cannot be reached now.
    pub fn connect(redis: RedisConfig, config: CoordConfig) -> Result<Self> {
        Self::start(redis, config, true)
    }

    /// Starts without waiting for Redis: if it is down, the coordinator starts in the
    /// disconnected state and keeps trying in the background.
    pub fn connect_lazy(redis: RedisConfig, config: CoordConfig) -> Result<Self> {
        Self::start(redis, config, false)
    }

    fn start(redis_cfg: RedisConfig, config: CoordConfig, require: bool) -> Result<Self> {
        let info = redis_cfg
            .connection_info()
            .map_err(|e| CoordError::Config { field: "redis".into(), reason: e.to_string() })?;
        let client = redis::Client::open(info)
            .map_err(|e| CoordError::Config { field: "redis".into(), reason: e.to_string() })?;
        let counters = Arc::new(Counters::default());
        let (control_tx, control_rx) = crossbeam_channel::unbounded();
        let inner = Arc::new(Inner {
            router: Router::new(config.clone(), counters.clone()),
            counters,
            redis: redis_cfg,
            client,
            cmd: Mutex::new(None),
            links: Mutex::new(Links { since_ms: config.now_ms(), ..Links::default() }),
            joined: Mutex::new(BTreeMap::new()),
            presence_lock: Mutex::new(()),
            control: control_tx,
            pending: Mutex::new(VecDeque::new()),
            stopping: AtomicBool::new(false),
            subscriber_thread: std::sync::OnceLock::new(),
            beat: redis::Script::new(scripts::BEAT),
            liveness: redis::Script::new(scripts::LIVENESS),
            vote: redis::Script::new(scripts::VOTE),
            config,
        });
        match inner.open_command_link() {
            Ok(()) => {}
            Err(e) if require => return Err(e),
            Err(_) => {}
        }
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
        let mut threads = Vec::new();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| CoordError::Backend(format!("cannot start a thread: {e}")))
        };
        let (i, rx) = (inner.clone(), stop_rx.clone());
        threads.push(spawn("swarm-coord-sub", Box::new(move || subscriber(&i, &rx, &control_rx)))?);
        let (i, rx) = (inner.clone(), stop_rx);
        threads.push(spawn("swarm-coord-maint", Box::new(move || maintenance(&i, &rx)))?);
        let coord =
            Self { inner, threads: Mutex::new(threads), stop_tx: Mutex::new(Some(stop_tx)) };
        if require {
            // Wait (briefly) for the subscription link too, so a coordinator returned by
            // `connect` is fully connected.
            let until = Instant::now() + coord.inner.redis.connect_timeout() * 2;
            while !coord.inner.links.lock().sub_up && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(coord)
    }

    /// The Redis settings in use (password redacted in `Display`).
    pub fn redis_config(&self) -> &RedisConfig {
        &self.inner.redis
    }
}

fn is_link_error(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Inner {
    fn open_command_link(&self) -> Result<()> {
        match self.client.get_connection_with_timeout(self.redis.connect_timeout()) {
            Ok(conn) => {
                let t = Some(self.redis.command_timeout());
                if let Err(e) = conn.set_read_timeout(t).and_then(|()| conn.set_write_timeout(t)) {
                    self.link_down(Link::Command, &e.to_string());
                    return Err(self.unavailable());
                }
                *self.cmd.lock() = Some(conn);
                self.link_up(Link::Command);
                Ok(())
            }
            Err(e) => {
                self.link_down(Link::Command, &e.to_string());
                Err(self.unavailable())
            }
        }
    }

    fn unavailable(&self) -> CoordError {
        let reason =
            self.counters.last_error.lock().clone().unwrap_or_else(|| "not connected".into());
        CoordError::Unavailable { reason }
    }

    fn link_up(&self, link: Link) {
        let mut l = self.links.lock();
        let again = match link {
            Link::Command => {
                let again = l.cmd_ever && !l.cmd_up;
                l.cmd_up = true;
                l.cmd_ever = true;
                again
            }
            Link::Subscriber => {
                let again = l.sub_ever && !l.sub_up;
                l.sub_up = true;
                l.sub_ever = true;
                again
            }
        };
        if again {
            self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
            tracing::info!(link = link_name(link), "redis link re-established");
        }
        self.update_connected(&mut l);
    }

    fn link_down(&self, link: Link, error: &str) {
        let mut l = self.links.lock();
        let was_up = match link {
            Link::Command => std::mem::replace(&mut l.cmd_up, false),
            Link::Subscriber => std::mem::replace(&mut l.sub_up, false),
        };
        if was_up {
            tracing::warn!(link = link_name(link), error, "redis link lost");
        }
        self.counters.set_error(format!("{} link: {error}", link_name(link)));
        self.update_connected(&mut l);
    }

    fn update_connected(&self, l: &mut Links) {
        let connected = l.cmd_up && l.sub_up;
        if connected != l.connected {
            l.connected = connected;
            l.since_ms = self.config.now_ms();
        }
    }

    /// Runs a command on the command link. A connection-level failure drops the link (the
    /// maintenance thread re-establishes it) and is reported as `Unavailable`.
    fn run<T>(&self, f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>) -> Result<T> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(CoordError::Closed);
        }
        let mut guard = self.cmd.lock();
        let Some(conn) = guard.as_mut() else {
            drop(guard);
            return Err(self.unavailable());
        };
        match f(conn) {
            Ok(v) => Ok(v),
            Err(e) if is_link_error(&e) => {
                *guard = None;
                drop(guard);
                self.link_down(Link::Command, &e.to_string());
                Err(self.unavailable())
            }
            Err(e) => Err(CoordError::Backend(e.to_string())),
        }
    }

    fn publish(
        &self,
        channel: &Channel,
        message: Value,
        opts: &PublishOptions,
    ) -> Result<Envelope> {
        let env = opts.envelope(&self.config, channel, message)?;
        let bytes = env.encode(self.config.keys(), self.config.limits().max_message_bytes)?;
        self.run(|c| redis::cmd("PUBLISH").arg(channel.name()).arg(&bytes).query::<i64>(c))?;
        Ok(env)
    }

    /// Publishes a message the coordinator itself owes the swarm (offline, decided...);
    /// while Redis is down it is kept and re-sent when the link returns.
    fn publish_system(&self, channel: Channel, message: Value, opts: PublishOptions) {
        match self.publish(&channel, message.clone(), &opts) {
            Ok(_) => {}
            Err(CoordError::Unavailable { .. }) => {
                let mut pending = self.pending.lock();
                if pending.len() >= MAX_PENDING {
                    pending.pop_front();
                }
                pending.push_back((channel, message, opts));
            }
            Err(e) => tracing::warn!(error = %e, "could not publish a coordination message"),
        }
    }

    fn flush_pending(&self) {
        loop {
            let Some((channel, message, opts)) = self.pending.lock().pop_front() else { return };
            if let Err(e) = self.publish(&channel, message.clone(), &opts) {
                if matches!(e, CoordError::Unavailable { .. }) {
                    self.pending.lock().push_front((channel, message, opts));
                    return;
                }
                tracing::warn!(error = %e, "dropped a pending coordination message");
            }
        }
    }

    fn beat_one(&self, p: &Participant, record: &[u8]) -> Result<()> {
        let swarm = p.swarm();
        let expiry = millis(self.config.heartbeat_expiry());
        let (prev, now): (String, String) = self.run(|c| {
            self.beat
                .key(keys::presence(swarm))
                .key(keys::heartbeats(swarm))
                .key(keys::deadlines(swarm))
                .key(keys::participants(swarm))
                .arg(p.id().as_str())
                .arg(expiry)
                .arg(PRESENCE_RETENTION_MS)
                .arg(record)
                .invoke(c)
        })?;
        if prev == "offline" {
            let last = now.parse().unwrap_or(0);
            let msg =
                payload::presence("agent_online", p.id().as_str(), last, self.config.node_id());
            self.publish_system(coordination(swarm), msg, PublishOptions::new());
        }
        let interval = millis(self.config.heartbeat_interval());
        let msg = payload::heartbeat(p.id(), self.config.node_id(), interval, expiry);
        self.publish(
            &Channel::new(swarm, ChannelKind::Heartbeat),
            msg,
            &PublishOptions::new().sender(p.id()),
        )?;
        Ok(())
    }

    fn beat_all(&self) {
        let _presence = self.presence_lock.lock();
        let joined: Vec<Joined> = self.joined.lock().values().cloned().collect();
        for (p, record) in joined {
            if let Err(e) = self.beat_one(&p, &record) {
                tracing::debug!(error = %e, agent = %p.id(), "heartbeat not sent");
            }
        }
    }

    fn check_liveness(&self) {
        for swarm in self.config.keys().swarms() {
            let flipped: Result<Vec<String>> = self.run(|c| {
                self.liveness
                    .key(keys::presence(swarm))
                    .key(keys::heartbeats(swarm))
                    .key(keys::deadlines(swarm))
                    .invoke(c)
            });
            let Ok(flipped) = flipped else { continue };
            for pair in flipped.chunks_exact(2) {
                let last = pair[1].parse().unwrap_or(0);
                tracing::info!(%swarm, agent = %pair[0], "agent offline: heartbeats stopped");
                let msg = payload::presence("agent_offline", &pair[0], last, self.config.node_id());
                self.publish_system(coordination(swarm), msg, PublishOptions::new().priority(8));
            }
        }
    }

    /// Runs the vote script; `ballot` `None` looks at the round.
    fn vote_script(
        &self,
        spec: &RoundSpec,
        ballot: Option<(&Ballot, &[u8])>,
    ) -> Result<(String, VoteResult)> {
        let swarm = spec.swarm();
        let retention = millis(self.config.round_retention()).max(1_000);
        let reply: Vec<String> = self.run(|c| {
            let mut inv = self.vote.key(keys::round(swarm, spec.id()));
            inv.key(keys::ballots(swarm, spec.id()))
                .arg(spec.strategy().as_str())
                .arg(spec.threshold().to_string())
                .arg(spec.quorum())
                .arg(spec.deadline_ms());
            match ballot {
                Some((b, blob)) => inv
                    .arg(b.agent().as_str())
                    .arg(if b.approve() { "1" } else { "0" })
                    .arg(b.confidence().to_string())
                    .arg(blob),
                None => inv.arg("").arg("").arg("").arg(""),
            };
            inv.arg(retention).invoke(c)
        })?;
        parse_vote_reply(spec, &reply)
    }

    /// Reads the round's signed ballots back and re-tallies them in counting order; refuses
    /// the stored result if it differs (someone wrote to Redis directly).
    fn verify_round(&self, spec: &RoundSpec, result: &VoteResult) -> Result<()> {
        let swarm = spec.swarm();
        let entries: Vec<(String, Vec<u8>)> =
            self.run(|c| redis::cmd("HGETALL").arg(keys::ballots(swarm, spec.id())).query(c))?;
        let tampered =
            |what: &str| CoordError::Tampered { what: format!("round {}: {what}", spec.id()) };
        let mut ballots = Vec::with_capacity(entries.len());
        for (agent, value) in &entries {
            let space = value
                .iter()
                .position(|&b| b == b' ')
                .ok_or_else(|| tampered("ballot without sequence"))?;
            let seq: u64 = std::str::from_utf8(&value[..space])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| tampered("bad ballot sequence"))?;
            let env = verify_stored(&value[space + 1..], self.config.keys(), self.config.limits())
                .ok_or_else(|| tampered("ballot signature"))?;
            let ballot =
                ballot_from(spec, &env, agent).ok_or_else(|| tampered("ballot content"))?;
            ballots.push((seq, ballot));
        }
        ballots.sort_by_key(|(seq, _)| *seq);
        let mut state = RoundState::new();
        for (_, b) in &ballots {
            // Counted ballots were all cast before the deadline by the server's clock.
            state.apply(spec, b, 0);
        }
        let expected_outcome =
            if result.outcome == Outcome::Expired { Outcome::Open } else { result.outcome };
        if state.tally != result.tally || state.outcome != expected_outcome {
            return Err(tampered("stored tally differs from its signed ballots"));
        }
        Ok(())
    }

    fn publish_decided(&self, spec: &RoundSpec, result: &VoteResult) -> Result<()> {
        self.verify_round(spec, result)?;
        let msg = payload::decided(spec, result.outcome, &result.tally, self.config.node_id());
        self.publish_system(
            Channel::new(spec.swarm(), ChannelKind::Consensus),
            msg,
            PublishOptions::new().priority(8),
        );
        Ok(())
    }
}

fn link_name(link: Link) -> &'static str {
    match link {
        Link::Command => "command",
        Link::Subscriber => "subscription",
    }
}

/// The spec as the script records and compares it.
fn spec_key(spec: &RoundSpec) -> String {
    format!("{}|{}|{}|{}", spec.strategy(), spec.threshold(), spec.quorum(), spec.deadline_ms())
}

fn ballot_from(spec: &RoundSpec, env: &Envelope, agent: &str) -> Option<Ballot> {
    let m = env.message();
    let ok = env.swarm() == spec.swarm()
        && env.message_type() == Some("consensus_vote")
        && m.get("consensusId")?.as_str()? == spec.id()
        && m.get("spec")?.as_str()? == spec_key(spec)
        && m.get("agentId")?.as_str()? == agent
        && env.sender() == agent;
    if !ok {
        return None;
    }
    Ballot::new(
        AgentId::new(agent).ok()?,
        m.get("approve")?.as_bool()?,
        m.get("confidence")?.as_f64()?,
    )
    .ok()
}

fn parse_vote_reply(spec: &RoundSpec, reply: &[String]) -> Result<(String, VoteResult)> {
    let bad = || {
        CoordError::Backend(format!(
            "unexpected reply from the vote script for round {}",
            spec.id()
        ))
    };
    match reply.first().map(String::as_str) {
        Some("mismatch") => return Err(CoordError::RoundMismatch { round: spec.id().to_owned() }),
        Some(_) if reply.len() == 7 => {}
        _ => return Err(bad()),
    }
    let outcome = Outcome::from_name(&reply[2]).ok_or_else(bad)?;
    let tally = Tally {
        votes_for: reply[3].parse().map_err(|_| bad())?,
        votes_against: reply[4].parse().map_err(|_| bad())?,
        weight_for: reply[5].parse().map_err(|_| bad())?,
        weight_against: reply[6].parse().map_err(|_| bad())?,
    };
    let code = reply[0].clone();
    let result =
        VoteResult { outcome, tally, counted: code == "counted", decided_now: reply[1] == "1" };
    Ok((code, result))
}

impl Unsubscribe for Inner {
    fn unsubscribe(&self, id: u64) {
        if let Some(topic) = self.router.remove(id) {
            let _ = self.control.send(Control::Unsubscribe(topic));
        }
    }
}

/// A random point between half and all of `d`.
fn jittered(d: Duration) -> Duration {
    let half = d / 2;
    let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_micros(getrandom::u64().unwrap_or(0) % spread)
}

fn stopped(stop: &Receiver<()>, wait: Duration) -> bool {
    !matches!(stop.recv_timeout(wait), Err(RecvTimeoutError::Timeout))
}

/// The maintenance thread: re-establishes the command link, sends heartbeats, runs the
/// liveness check and re-sends pending system messages.
fn maintenance(inner: &Inner, stop: &Receiver<()>) {
    let (min, max) = inner.redis.backoff();
    let mut backoff = min;
    let mut next_attempt = Instant::now();
    let hb = inner.config.heartbeat_interval();
    let check = inner.config.liveness_check_interval();
    let (mut next_beat, mut next_check) = (Instant::now() + hb, Instant::now() + check);
    while !stopped(stop, hb.min(check).min(Duration::from_millis(50))) {
        let now = Instant::now();
        if inner.cmd.lock().is_none() && now >= next_attempt {
            if inner.open_command_link().is_ok() {
                backoff = min;
                // Presence may have lapsed while we were away: beat at once.
                next_beat = now;
            } else {
                next_attempt = Instant::now() + jittered(backoff);
                backoff = (backoff * 2).min(max);
                continue;
            }
        }
        if now >= next_beat {
            inner.beat_all();
            next_beat = now + hb;
        }
        if now >= next_check {
            inner.check_liveness();
            next_check = now + check;
        }
        inner.flush_pending();
    }
}

impl Inner {
    /// Asks the subscriber thread to subscribe to a topic that has just got its first
    /// subscription. Always tells it, even while the link is down: a link coming up at this
    /// moment may have listed the topics before this one was added. While the link is up,
    /// waits for Redis to confirm, so that a message published after `subscribe` returns is
    /// received: for as long as it takes (a slow handler holds the subscriber thread), until
    /// the link drops or the coordinator stops. Never on this coordinator's subscriber
    /// thread itself (a handler that subscribes), which is the thread that confirms: there
    /// the topic is subscribed as soon as the handler returns.
    fn subscribe_topic(&self, topic: Topic) {
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
        if self.control.send(Control::Subscribe(topic, done_tx)).is_err()
            || self.subscriber_thread.get() == Some(&std::thread::current().id())
        {
            return;
        }
        let step = self.redis.command_timeout();
        let mut waited = Duration::ZERO;
        while self.links.lock().sub_up && !self.stopping.load(Ordering::SeqCst) {
            match done_rx.recv_timeout(step) {
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    waited += step;
                    tracing::warn!(
                        ?waited,
                        "subscribing waits for the subscriber thread (a slow subscription handler?)"
                    );
                }
                _ => return,
            }
        }
    }
}

/// The subscriber thread: owns the subscription link, renews every subscription after a
/// reconnect, and hands every message to the router for checking and delivery (running
/// handler subscriptions' handlers here).
fn subscriber(inner: &Inner, stop: &Receiver<()>, control: &Receiver<Control>) {
    let _ = inner.subscriber_thread.set(std::thread::current().id());
    let (min, max) = inner.redis.backoff();
    let mut backoff = min;
    loop {
        if inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        match inner.client.get_connection_with_timeout(inner.redis.connect_timeout()) {
            Ok(mut conn) => {
                backoff = min;
                let error = serve(inner, &mut conn, control);
                if inner.stopping.load(Ordering::SeqCst) {
                    return;
                }
                inner.link_down(Link::Subscriber, &error);
            }
            Err(e) => inner.link_down(Link::Subscriber, &e.to_string()),
        }
        // Down: answer subscription requests at once (they are registered and will be
        // subscribed on the next link), then wait out the backoff.
        let until = Instant::now() + jittered(backoff);
        backoff = (backoff * 2).min(max);
        while Instant::now() < until {
            while control.try_recv().is_ok() {}
            if stopped(stop, POLL.min(until.saturating_duration_since(Instant::now()))) {
                return;
            }
        }
    }
}

/// Serves one subscription link until it fails; returns the error.
fn serve(inner: &Inner, conn: &mut redis::Connection, control: &Receiver<Control>) -> String {
    if let Err(e) = conn.set_write_timeout(Some(inner.redis.command_timeout())) {
        return e.to_string();
    }
    let mut ps = conn.as_pubsub();
    if let Err(e) = ps.set_read_timeout(Some(inner.redis.command_timeout())) {
        return e.to_string();
    }
    for topic in inner.router.topics() {
        if let Err(e) = subscribe_topic(&mut ps, &topic) {
            return e.to_string();
        }
    }
    if let Err(e) = ps.set_read_timeout(Some(POLL)) {
        return e.to_string();
    }
    inner.link_up(Link::Subscriber);
    let mut last_traffic = Instant::now();
    loop {
        if inner.stopping.load(Ordering::SeqCst) {
            return "shutting down".into();
        }
        while let Ok(c) = control.try_recv() {
            let r = match c {
                Control::Subscribe(topic, done) => {
                    let r = subscribe_topic(&mut ps, &topic);
                    drop(done);
                    r
                }
                Control::Unsubscribe(topic) => match &topic {
                    Topic::Channel(name) => ps.unsubscribe(name),
                    Topic::Pattern(p) => ps.punsubscribe(p),
                },
            };
            if let Err(e) = r {
                return e.to_string();
            }
        }
        match ps.get_message() {
            Ok(msg) => {
                last_traffic = Instant::now();
                let channel = msg.get_channel_name().to_owned();
                let topic = if msg.from_pattern() {
                    match msg.get_pattern::<String>() {
                        Ok(p) => Topic::Pattern(p),
                        Err(_) => continue,
                    }
                } else {
                    Topic::Channel(channel.clone())
                };
                // Handlers are guarded inside the router; this only keeps a fault of our own
                // from ending the subscriber thread while health still says connected.
                let dispatched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    inner.router.dispatch(&topic, &channel, msg.get_payload_bytes());
                }));
                if dispatched.is_err() {
                    tracing::error!("delivering a message panicked; the subscriber carries on");
                }
            }
            Err(e) if e.is_timeout() => {
                if last_traffic.elapsed() >= SUB_PING {
                    let ping = ps
                        .set_read_timeout(Some(inner.redis.command_timeout()))
                        .and_then(|()| ps.ping::<redis::Value>())
                        .and_then(|_| ps.set_read_timeout(Some(POLL)));
                    if let Err(e) = ping {
                        return e.to_string();
                    }
                    last_traffic = Instant::now();
                }
            }
            Err(e) => return e.to_string(),
        }
    }
}

fn subscribe_topic(ps: &mut redis::PubSub<'_>, topic: &Topic) -> redis::RedisResult<()> {
    match topic {
        Topic::Channel(name) => ps.subscribe(name),
        Topic::Pattern(p) => ps.psubscribe(p),
    }
}

impl Coordinator for RedisCoordinator {
    fn node_id(&self) -> &str {
        self.inner.config.node_id()
    }

    fn publish(&self, channel: &Channel, message: Value, opts: PublishOptions) -> Result<Envelope> {
        self.inner.publish(channel, message, &opts)
    }

    fn subscribe(&self, filter: ChannelFilter) -> Result<Subscription> {
        if self.inner.stopping.load(Ordering::SeqCst) {
            return Err(CoordError::Closed);
        }
        let (id, rx, topic, new) = self.inner.router.add(filter.clone())?;
        let owner: Arc<dyn Unsubscribe> = self.inner.clone();
        let sub =
            Subscription::new(id, filter, rx, Arc::downgrade(&owner) as Weak<dyn Unsubscribe>);
        if new {
            self.inner.subscribe_topic(topic);
        }
        Ok(sub)
    }

    fn subscribe_with(
        &self,
        filter: ChannelFilter,
        handler: Handler,
    ) -> Result<HandlerSubscription> {
        if self.inner.stopping.load(Ordering::SeqCst) {
            return Err(CoordError::Closed);
        }
        let (id, topic, new) = self.inner.router.add_handler(filter.clone(), handler)?;
        let owner: Arc<dyn Unsubscribe> = self.inner.clone();
        let sub = HandlerSubscription::new(id, filter, Arc::downgrade(&owner));
        if new {
            self.inner.subscribe_topic(topic);
        }
        Ok(sub)
    }

    fn join(&self, participant: Participant) -> Result<()> {
        participant.check()?;
        let swarm = participant.swarm().clone();
        let expiry = millis(self.inner.config.heartbeat_expiry());
        let msg = payload::joined(&participant, self.inner.config.node_id(), expiry);
        let opts = PublishOptions::new().sender(participant.id());
        let env = opts.envelope(&self.inner.config, &coordination(&swarm), msg)?;
        let bytes =
            env.encode(self.inner.config.keys(), self.inner.config.limits().max_message_bytes)?;
        let _presence = self.inner.presence_lock.lock();
        // The heartbeat stores the signed join record, so the record and the presence are
        // written by one script; then the join is announced.
        self.inner.beat_one(&participant, &bytes)?;
        self.inner.run(|c| {
            redis::cmd("PUBLISH").arg(coordination(&swarm).name()).arg(&bytes).query::<i64>(c)
        })?;
        self.inner.joined.lock().insert((swarm, participant.id().clone()), (participant, bytes));
        Ok(())
    }

    fn leave(&self, swarm: &SwarmId, agent: &AgentId) -> Result<()> {
        let _presence = self.inner.presence_lock.lock();
        self.inner.joined.lock().remove(&(swarm.clone(), agent.clone()));
        let removed: i64 = self.inner.run(|c| {
            let (r,): (i64,) = redis::pipe()
                .atomic()
                .hdel(keys::participants(swarm), agent.as_str())
                .hdel(keys::presence(swarm), agent.as_str())
                .ignore()
                .hdel(keys::heartbeats(swarm), agent.as_str())
                .ignore()
                .zrem(keys::deadlines(swarm), agent.as_str())
                .ignore()
                .query(c)?;
            Ok(r)
        })?;
        if removed > 0 {
            let msg = payload::left(agent, self.inner.config.node_id());
            self.inner.publish(&coordination(swarm), msg, &PublishOptions::new().sender(agent))?;
        }
        Ok(())
    }

    fn participants(&self, swarm: &SwarmId) -> Result<Vec<ParticipantStatus>> {
        type Hash = BTreeMap<String, Vec<u8>>;
        let (records, presence, beats): (Hash, BTreeMap<String, String>, BTreeMap<String, String>) =
            self.inner.run(|c| {
                redis::pipe()
                    .hgetall(keys::participants(swarm))
                    .hgetall(keys::presence(swarm))
                    .hgetall(keys::heartbeats(swarm))
                    .query(c)
            })?;
        let mut out = Vec::with_capacity(records.len());
        for (agent, record) in records {
            let verified =
                verify_stored(&record, self.inner.config.keys(), self.inner.config.limits())
                    .filter(|env| env.swarm() == swarm && env.sender() == agent);
            let Some(participant) = verified.and_then(|env| {
                Participant::from_joined(swarm, env.message()).filter(|p| p.id().as_str() == agent)
            }) else {
                tracing::warn!(%swarm, agent = %crate::channel::truncated(&agent), "ignored a participant record without a valid signature");
                self.inner.counters.drop_message(crate::DropReason::BadSignature);
                continue;
            };
            let node_id = verified_node(&record).unwrap_or_default();
            out.push(ParticipantStatus {
                status: if presence.get(&agent).map(String::as_str) == Some("online") {
                    Presence::Online
                } else {
                    Presence::Offline
                },
                last_heartbeat_ms: beats.get(&agent).and_then(|b| b.parse().ok()).unwrap_or(0),
                node_id,
                participant,
            });
        }
        Ok(out)
    }

    fn vote(&self, round: &RoundSpec, ballot: Ballot) -> Result<VoteResult> {
        let msg = payload::vote(round, &ballot, &spec_key(round));
        let opts = PublishOptions::new().sender(ballot.agent());
        let env = opts.envelope(
            &self.inner.config,
            &Channel::new(round.swarm(), ChannelKind::Consensus),
            msg,
        )?;
        let blob =
            env.encode(self.inner.config.keys(), self.inner.config.limits().max_message_bytes)?;
        let (code, result) = self.inner.vote_script(round, Some((&ballot, &blob)))?;
        if code == "duplicate" {
            return Err(CoordError::DuplicateVote {
                round: round.id().to_owned(),
                agent: ballot.agent().clone(),
            });
        }
        if result.decided_now {
            self.inner.publish_decided(round, &result)?;
        }
        Ok(result)
    }

    fn round_state(&self, round: &RoundSpec) -> Result<VoteResult> {
        if !self.inner.config.keys().contains(round.swarm()) {
            return Err(CoordError::NoSecret { swarm: round.swarm().clone() });
        }
        let (_, result) = self.inner.vote_script(round, None)?;
        if result.decided_now {
            self.inner.publish_decided(round, &result)?;
        } else if result.outcome.is_closed() {
            self.inner.verify_round(round, &result)?;
        }
        Ok(result)
    }

    fn health(&self) -> Health {
        let l = self.inner.links.lock();
        Health {
            backend: "redis",
            node_id: self.inner.config.node_id().to_owned(),
            connected: l.connected,
            since_ms: l.since_ms,
            last_error: self.inner.counters.last_error.lock().clone(),
            dropped: self.inner.counters.snapshot(),
            reconnects: self.inner.counters.reconnects.load(Ordering::Relaxed),
        }
    }

    fn shutdown(&self) {
        let Some(stop_tx) = self.stop_tx.lock().take() else { return };
        let joined: Vec<(SwarmId, AgentId)> = self.inner.joined.lock().keys().cloned().collect();
        for (swarm, agent) in joined {
            if let Err(e) = self.leave(&swarm, &agent) {
                tracing::debug!(error = %e, %agent, "could not leave at shutdown");
            }
        }
        self.inner.stopping.store(true, Ordering::SeqCst);
        drop(stop_tx);
        let current = std::thread::current().id();
        for handle in self.threads.lock().drain(..) {
            if handle.thread().id() != current {
                let _ = handle.join();
            }
        }
        self.inner.router.close();
        *self.inner.cmd.lock() = None;
        let mut l = self.inner.links.lock();
        l.cmd_up = false;
        l.sub_up = false;
        self.inner.update_connected(&mut l);
    }
}

/// The node id in a stored join record (already verified by the caller).
fn verified_node(record: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(record).ok()?;
    Some(v.get("message")?.get("nodeId")?.as_str()?.to_owned())
}

impl Drop for RedisCoordinator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for RedisCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCoordinator")
            .field("node_id", &self.inner.config.node_id())
            .field("redis", &self.inner.redis)
            .finish_non_exhaustive()
    }
}
