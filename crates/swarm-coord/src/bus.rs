//! The in-process bus: every node in one process, no Redis.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use serde_json::Value;
use swarm_acl::{AgentId, SwarmId};

use crate::channel::{Channel, ChannelFilter, ChannelKind};
use crate::config::CoordConfig;
use crate::consensus::{Applied, Ballot, RoundSpec, RoundState, VoteResult};
use crate::coordinator::{
    Coordinator, Participant, ParticipantStatus, Presence, PublishOptions, coordination, payload,
};
use crate::envelope::Envelope;
use crate::health::{Counters, Health};
use crate::router::{Handler, HandlerSubscription, Router, Subscription, Unsubscribe};
use crate::{CoordError, Result};

/// The shared medium: what Redis is to processes, this is to the nodes of one process.
#[derive(Default)]
struct Medium {
    nodes: Mutex<Vec<Weak<Node>>>,
    presence: Mutex<HashMap<SwarmId, BTreeMap<AgentId, Record>>>,
    rounds: Mutex<HashMap<(SwarmId, String), (RoundSpec, RoundState)>>,
}

struct Record {
    participant: Participant,
    node_id: String,
    last_heartbeat_ms: u64,
    expiry_ms: u64,
    online: bool,
}

impl Medium {
    fn broadcast(&self, channel: &str, bytes: &[u8]) {
        let nodes: Vec<Arc<Node>> = {
            let mut nodes = self.nodes.lock();
            nodes.retain(|n| n.strong_count() > 0);
            nodes.iter().filter_map(Weak::upgrade).collect()
        };
        for node in nodes {
            node.router.dispatch_all(channel, bytes);
        }
    }
}

/// One node on the bus.
struct Node {
    medium: Arc<Medium>,
    config: CoordConfig,
    router: Router,
    counters: Arc<Counters>,
    joined: Mutex<BTreeMap<(SwarmId, AgentId), Participant>>,
    started_ms: u64,
    stopped: Mutex<bool>,
}

impl Unsubscribe for Node {
    fn unsubscribe(&self, id: u64) {
        self.router.remove(id);
    }
}

impl Node {
    fn is_stopped(&self) -> bool {
        *self.stopped.lock()
    }

    fn publish(
        &self,
        channel: &Channel,
        message: Value,
        opts: &PublishOptions,
    ) -> Result<Envelope> {
        if self.is_stopped() {
            return Err(CoordError::Closed);
        }
        let env = opts.envelope(&self.config, channel, message)?;
        let bytes = env.encode(self.config.keys(), self.config.limits().max_message_bytes)?;
        self.medium.broadcast(channel.name(), &bytes);
        Ok(env)
    }

    fn publish_quietly(&self, channel: &Channel, message: Value, opts: &PublishOptions) {
        if let Err(e) = self.publish(channel, message, opts) {
            tracing::warn!(error = %e, channel = %channel, "could not publish a coordination message");
        }
    }

    fn beat(&self) {
        let now = self.config.now_ms();
        let interval = millis(self.config.heartbeat_interval());
        let expiry = millis(self.config.heartbeat_expiry());
        let joined: Vec<Participant> = self.joined.lock().values().cloned().collect();
        for p in joined {
            let was_offline = {
                let mut presence = self.medium.presence.lock();
                let records = presence.entry(p.swarm().clone()).or_default();
                let record = records.entry(p.id().clone()).or_insert_with(|| Record {
                    participant: p.clone(),
                    node_id: self.config.node_id().to_owned(),
                    last_heartbeat_ms: now,
                    expiry_ms: expiry,
                    online: true,
                });
                let was_offline = !record.online;
                record.online = true;
                record.last_heartbeat_ms = now;
                record.expiry_ms = expiry;
                was_offline
            };
            let as_agent = PublishOptions::new().sender(p.id());
            if was_offline {
                let msg =
                    payload::presence("agent_online", p.id().as_str(), now, self.config.node_id());
                self.publish_quietly(&coordination(p.swarm()), msg, &PublishOptions::new());
            }
            let msg = payload::heartbeat(p.id(), self.config.node_id(), interval, expiry);
            self.publish_quietly(&Channel::new(p.swarm(), ChannelKind::Heartbeat), msg, &as_agent);
        }
    }

    /// Marks agents whose heartbeats expired offline. The flip happens under the medium's
    /// lock, so of all the nodes checking, exactly one sees it and publishes.
    fn check_liveness(&self) {
        let now = self.config.now_ms();
        let mut gone = Vec::new();
        {
            let mut presence = self.medium.presence.lock();
            for (swarm, records) in presence.iter_mut() {
                if !self.config.keys().contains(swarm) {
                    continue;
                }
                for (agent, r) in records.iter_mut() {
                    if r.online && now >= r.last_heartbeat_ms.saturating_add(r.expiry_ms) {
                        r.online = false;
                        gone.push((swarm.clone(), agent.clone(), r.last_heartbeat_ms));
                    }
                }
            }
        }
        for (swarm, agent, last) in gone {
            tracing::info!(%swarm, %agent, "agent offline: heartbeats stopped");
            let msg =
                payload::presence("agent_offline", agent.as_str(), last, self.config.node_id());
            self.publish_quietly(&coordination(&swarm), msg, &PublishOptions::new().priority(8));
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The embedded default coordinator: every node of the swarm lives in this process and
/// shares one medium. Messages still travel as signed JSON and meet the same checks as on
/// Redis, so behaviour does not change when a deployment moves to Redis.
///
/// Each `InProcessBus` is one node with its own participants, heartbeat and liveness thread
/// and counters; [`InProcessBus::node`] makes another node on the same medium.
///
/// ```
/// use std::time::Duration;
/// use serde_json::json;
/// use swarm_acl::SwarmId;
/// use swarm_coord::*;
///
/// let swarm = SwarmId::new("s1")?;
/// let keys = SwarmKeys::new().with_secret(&swarm, SwarmSecret::generate()?);
/// let a = InProcessBus::new(CoordConfig::new(keys.clone())?)?;
/// let b = a.node(CoordConfig::new(keys)?)?;
///
/// let sub = b.subscribe(ChannelFilter::exact(&swarm, ChannelKind::Events))?;
/// a.publish(&Channel::new(&swarm, ChannelKind::Events), json!({"type": "hello"}), PublishOptions::new())?;
/// let got = sub.recv_timeout(Duration::from_secs(1))?.expect("delivered");
/// assert_eq!(got.message_type(), Some("hello"));
/// assert_eq!(got.sender(), a.node_id());
/// # Ok::<(), swarm_coord::CoordError>(())
/// ```
pub struct InProcessBus {
    node: Arc<Node>,
    thread: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
}

impl InProcessBus {
    /// A new medium with its first node.
    pub fn new(config: CoordConfig) -> Result<Self> {
        Self::start(Arc::new(Medium::default()), config)
    }

    /// Another node on the same medium (another "process" of the swarm).
    pub fn node(&self, config: CoordConfig) -> Result<Self> {
        Self::start(self.node.medium.clone(), config)
    }

    fn start(medium: Arc<Medium>, config: CoordConfig) -> Result<Self> {
        let counters = Arc::new(Counters::default());
        let node = Arc::new(Node {
            medium: medium.clone(),
            router: Router::new(config.clone(), counters.clone()),
            counters,
            joined: Mutex::new(BTreeMap::new()),
            started_ms: config.now_ms(),
            stopped: Mutex::new(false),
            config,
        });
        medium.nodes.lock().push(Arc::downgrade(&node));
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
        let worker = node.clone();
        let handle = std::thread::Builder::new()
            .name("swarm-coord-bus".into())
            .spawn(move || run(worker, stop_rx))
            .map_err(|e| CoordError::Backend(format!("cannot start the bus thread: {e}")))?;
        Ok(Self { node, thread: Mutex::new(Some((stop_tx, handle))) })
    }

    /// Delivers raw bytes on a channel name to every node, exactly as a Redis client's raw
    /// `PUBLISH` would: they are checked like any received message, so this is how tests
    /// show that forged, replayed or malformed messages are dropped.
    pub fn publish_raw(&self, channel: &str, bytes: &[u8]) {
        self.node.medium.broadcast(channel, bytes);
    }

    /// Stops this node's threads without leaving its participants, as a crashed process
    /// would: the other nodes' liveness monitors then report its agents offline.
    pub fn simulate_crash(&self) {
        self.stop(false);
    }

    fn stop(&self, leave: bool) {
        let Some((stop_tx, handle)) = self.thread.lock().take() else { return };
        if leave {
            let joined: Vec<(SwarmId, AgentId)> = self.node.joined.lock().keys().cloned().collect();
            for (swarm, agent) in joined {
                let _ = self.leave(&swarm, &agent);
            }
        }
        *self.node.stopped.lock() = true;
        self.node.joined.lock().clear();
        drop(stop_tx);
        if handle.thread().id() != std::thread::current().id() {
            let _ = handle.join();
        }
        self.node.router.close();
    }
}

fn run(node: Arc<Node>, stop: Receiver<()>) {
    let hb = node.config.heartbeat_interval();
    let check = node.config.liveness_check_interval();
    let tick = hb.min(check);
    let (mut next_beat, mut next_check) = (Instant::now() + hb, Instant::now() + check);
    loop {
        match stop.recv_timeout(tick.min(Duration::from_millis(50))) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let now = Instant::now();
        if now >= next_beat {
            node.beat();
            next_beat = now + hb;
        }
        if now >= next_check {
            node.check_liveness();
            next_check = now + check;
        }
    }
}

impl Coordinator for InProcessBus {
    fn node_id(&self) -> &str {
        self.node.config.node_id()
    }

    fn publish(&self, channel: &Channel, message: Value, opts: PublishOptions) -> Result<Envelope> {
        self.node.publish(channel, message, &opts)
    }

    fn subscribe(&self, filter: ChannelFilter) -> Result<Subscription> {
        let (id, rx, _, _) = self.node.router.add(filter.clone())?;
        let owner: Arc<dyn Unsubscribe> = self.node.clone();
        Ok(Subscription::new(id, filter, rx, Arc::downgrade(&owner)))
    }

    fn subscribe_with(
        &self,
        filter: ChannelFilter,
        handler: Handler,
    ) -> Result<HandlerSubscription> {
        let (id, _, _) = self.node.router.add_handler(filter.clone(), handler)?;
        let owner: Arc<dyn Unsubscribe> = self.node.clone();
        Ok(HandlerSubscription::new(id, filter, Arc::downgrade(&owner)))
    }

    fn join(&self, participant: Participant) -> Result<()> {
        participant.check()?;
        if self.node.is_stopped() {
            return Err(CoordError::Closed);
        }
        if !self.node.config.keys().contains(participant.swarm()) {
            return Err(CoordError::NoSecret { swarm: participant.swarm().clone() });
        }
        let now = self.node.config.now_ms();
        let expiry = millis(self.node.config.heartbeat_expiry());
        let previous = self
            .node
            .medium
            .presence
            .lock()
            .entry(participant.swarm().clone())
            .or_default()
            .insert(
                participant.id().clone(),
                Record {
                    participant: participant.clone(),
                    node_id: self.node.config.node_id().to_owned(),
                    last_heartbeat_ms: now,
                    expiry_ms: expiry,
                    online: true,
                },
            );
        if previous.is_some_and(|r| !r.online) {
            let msg = payload::presence(
                "agent_online",
                participant.id().as_str(),
                now,
                self.node.config.node_id(),
            );
            self.node.publish_quietly(
                &coordination(participant.swarm()),
                msg,
                &PublishOptions::new(),
            );
        }
        self.node
            .joined
            .lock()
            .insert((participant.swarm().clone(), participant.id().clone()), participant.clone());
        let msg = payload::joined(&participant, self.node.config.node_id(), expiry);
        self.node.publish(
            &coordination(participant.swarm()),
            msg,
            &PublishOptions::new().sender(participant.id()),
        )?;
        Ok(())
    }

    fn leave(&self, swarm: &SwarmId, agent: &AgentId) -> Result<()> {
        self.node.joined.lock().remove(&(swarm.clone(), agent.clone()));
        let removed =
            self.node.medium.presence.lock().get_mut(swarm).and_then(|r| r.remove(agent)).is_some();
        if removed {
            let msg = payload::left(agent, self.node.config.node_id());
            self.node.publish(&coordination(swarm), msg, &PublishOptions::new().sender(agent))?;
        }
        Ok(())
    }

    fn participants(&self, swarm: &SwarmId) -> Result<Vec<ParticipantStatus>> {
        let presence = self.node.medium.presence.lock();
        Ok(presence
            .get(swarm)
            .map(|records| {
                records
                    .values()
                    .map(|r| ParticipantStatus {
                        participant: r.participant.clone(),
                        status: if r.online { Presence::Online } else { Presence::Offline },
                        last_heartbeat_ms: r.last_heartbeat_ms,
                        node_id: r.node_id.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    fn vote(&self, round: &RoundSpec, ballot: Ballot) -> Result<VoteResult> {
        if !self.node.config.keys().contains(round.swarm()) {
            return Err(CoordError::NoSecret { swarm: round.swarm().clone() });
        }
        let now = self.node.config.now_ms();
        let (applied, state) = {
            let mut rounds = self.node.medium.rounds.lock();
            let (spec, state) = rounds
                .entry((round.swarm().clone(), round.id().to_owned()))
                .or_insert_with(|| (round.clone(), RoundState::new()));
            if spec != round {
                return Err(CoordError::RoundMismatch { round: round.id().to_owned() });
            }
            let applied = state.apply(round, &ballot, now);
            (applied, state.clone())
        };
        let result = |counted, decided_now| VoteResult {
            outcome: state.outcome,
            tally: state.tally,
            counted,
            decided_now,
        };
        let result = match applied {
            Applied::Duplicate => {
                return Err(CoordError::DuplicateVote {
                    round: round.id().to_owned(),
                    agent: ballot.agent().clone(),
                });
            }
            Applied::Closed => result(false, false),
            Applied::Expired => result(false, true),
            Applied::Counted { decided } => result(true, decided),
        };
        if result.decided_now {
            self.publish_decided(round, &result);
        }
        Ok(result)
    }

    fn round_state(&self, round: &RoundSpec) -> Result<VoteResult> {
        if !self.node.config.keys().contains(round.swarm()) {
            return Err(CoordError::NoSecret { swarm: round.swarm().clone() });
        }
        let now = self.node.config.now_ms();
        let (expired_now, state) = {
            let mut rounds = self.node.medium.rounds.lock();
            let (spec, state) = rounds
                .entry((round.swarm().clone(), round.id().to_owned()))
                .or_insert_with(|| (round.clone(), RoundState::new()));
            if spec != round {
                return Err(CoordError::RoundMismatch { round: round.id().to_owned() });
            }
            (state.expire(round, now), state.clone())
        };
        let result = VoteResult {
            outcome: state.outcome,
            tally: state.tally,
            counted: false,
            decided_now: expired_now,
        };
        if expired_now {
            self.publish_decided(round, &result);
        }
        Ok(result)
    }

    fn health(&self) -> Health {
        let stopped = self.node.is_stopped();
        Health {
            backend: "in-process",
            node_id: self.node.config.node_id().to_owned(),
            connected: !stopped,
            since_ms: self.node.started_ms,
            last_error: None,
            dropped: self.node.counters.snapshot(),
            reconnects: 0,
        }
    }

    fn shutdown(&self) {
        self.stop(true);
    }
}

impl InProcessBus {
    fn publish_decided(&self, round: &RoundSpec, result: &VoteResult) {
        let msg =
            payload::decided(round, result.outcome, &result.tally, self.node.config.node_id());
        let channel = Channel::new(round.swarm(), ChannelKind::Consensus);
        self.node.publish_quietly(&channel, msg, &PublishOptions::new().priority(8));
    }
}

impl Drop for InProcessBus {
    fn drop(&mut self) {
        self.stop(true);
    }
}

impl std::fmt::Debug for InProcessBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessBus")
            .field("node_id", &self.node.config.node_id())
            .finish_non_exhaustive()
    }
}
