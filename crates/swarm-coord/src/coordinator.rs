//! The `Coordinator` interface and the types it speaks.

use serde_json::{Value, json};
use swarm_acl::{AgentId, SwarmId};

use crate::channel::{Channel, ChannelFilter, ChannelKind};
use crate::config::CoordConfig;
use crate::consensus::{Ballot, RoundSpec, Tally, VoteResult};
use crate::envelope::{Envelope, MAX_PRIORITY, new_id};
use crate::health::Health;
use crate::router::{Handler, HandlerSubscription, Subscription};
use crate::{CoordError, Result};

/// Coordination between the nodes of a swarm: authenticated publish/subscribe, presence
/// with liveness, and consensus rounds decided exactly once.
///
/// Implemented by [`crate::InProcessBus`] (every node in one process, no Redis) and
/// [`crate::RedisCoordinator`] (across processes and hosts). Object safe: share it as
/// `Arc<dyn Coordinator>`.
pub trait Coordinator: Send + Sync {
    /// This node's id.
    fn node_id(&self) -> &str;

    /// Signs and publishes a message; returns the envelope as sent. Fails fast with
    /// [`CoordError::Unavailable`] while the backend is down.
    fn publish(&self, channel: &Channel, message: Value, opts: PublishOptions) -> Result<Envelope>;

    /// Subscribes. Only messages that pass every check (docs/FORMAT.md 2.5) are delivered.
    fn subscribe(&self, filter: ChannelFilter) -> Result<Subscription>;

    /// Subscribes with a handler, the seed's `subscribe(channel, handler)`: the handler is
    /// called with every message that passes every check, on the thread that received it
    /// (for Redis, the coordinator's subscriber thread; for the in-process bus, the
    /// publishing thread), so a message reaches it without a hand-off between threads.
    /// It must return quickly: while it runs, no other subscription of this coordinator
    /// receives anything, and a `subscribe` from another thread waits for it. It may
    /// publish, subscribe and unsubscribe. A message it publishes to an in-process bus is
    /// delivered to handlers after it returns, in order. On Redis, a subscription it makes
    /// on its own coordinator takes effect only once it returns (its own thread is the one
    /// that subscribes), so a reply to a request it publishes from inside the handler can be
    /// missed: subscribe to replies beforehand. A handler that panics is counted in
    /// [`Health::dropped`] (`handler_panics`) and the coordinator carries on. Dropping the
    /// returned value unsubscribes; from then on the handler is not called again, not even
    /// for a message already on its way.
    fn subscribe_with(
        &self,
        filter: ChannelFilter,
        handler: Handler,
    ) -> Result<HandlerSubscription>;

    /// Registers a participant and starts its heartbeats (every heartbeat interval, from a
    /// background thread), publishing `agent_joined` on the swarm's coordination channel.
    fn join(&self, participant: Participant) -> Result<()>;

    /// Stops a participant's heartbeats and removes it, publishing `agent_left`.
    fn leave(&self, swarm: &SwarmId, agent: &AgentId) -> Result<()>;

    /// The swarm's participants with their liveness.
    fn participants(&self, swarm: &SwarmId) -> Result<Vec<ParticipantStatus>>;

    /// Casts a vote, atomically: one vote per agent ([`CoordError::DuplicateVote`] for a
    /// second), tally updated, outcome decided once. The call that decides the round
    /// publishes `consensus_decided` on the swarm's consensus channel.
    fn vote(&self, round: &RoundSpec, ballot: Ballot) -> Result<VoteResult>;

    /// Where a round stands; an open round past its deadline is marked `Expired` (and the
    /// call that does so publishes `consensus_decided`).
    fn round_state(&self, round: &RoundSpec) -> Result<VoteResult>;

    /// The backend's health.
    fn health(&self) -> Health;

    /// Leaves every participant joined here (best effort) and stops every background
    /// thread. Idempotent; also done on drop.
    fn shutdown(&self);
}

/// Options of [`Coordinator::publish`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishOptions {
    priority: u8,
    ttl_ms: Option<u64>,
    sender: Option<String>,
}

impl Default for PublishOptions {
    fn default() -> Self {
        Self { priority: 5, ttl_ms: None, sender: None }
    }
}

impl PublishOptions {
    /// Priority 5, no ttl, sent as the node.
    pub fn new() -> Self {
        Self::default()
    }

    /// Priority 0-10 (checked when publishing).
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = priority;
        self
    }

    /// Receivers drop the message once `ttl_ms` has passed since it was sent.
    pub fn ttl_ms(mut self, ttl_ms: u64) -> Self {
        self.ttl_ms = Some(ttl_ms);
        self
    }

    /// Sends on behalf of an agent (the `senderId`); by default the node id.
    pub fn sender(mut self, agent: &AgentId) -> Self {
        self.sender = Some(agent.as_str().to_owned());
        self
    }

    /// Builds the envelope for `channel` at `now_ms`.
    pub(crate) fn envelope(
        &self,
        config: &CoordConfig,
        channel: &Channel,
        message: Value,
    ) -> Result<Envelope> {
        if self.priority > MAX_PRIORITY {
            return Err(CoordError::Invalid(format!(
                "priority {} is above {MAX_PRIORITY}",
                self.priority
            )));
        }
        let sender = self.sender.as_deref().unwrap_or(config.node_id());
        Envelope::new(
            &new_id()?,
            sender,
            channel,
            message,
            config.now_ms(),
            self.priority,
            self.ttl_ms,
        )
    }
}

/// An agent taking part in a swarm.
#[derive(Clone, Debug, PartialEq)]
pub struct Participant {
    id: AgentId,
    swarm: SwarmId,
    role: String,
    metadata: Value,
}

impl Participant {
    /// An agent of a swarm, no role, empty metadata.
    pub fn new(id: AgentId, swarm: SwarmId) -> Self {
        Self { id, swarm, role: String::new(), metadata: json!({}) }
    }

    /// Sets the role (at most 128 bytes; checked at join).
    pub fn with_role(mut self, role: &str) -> Self {
        role.clone_into(&mut self.role);
        self
    }

    /// Sets free-form metadata (capabilities, version...).
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = metadata;
        self
    }

    /// The agent.
    pub fn id(&self) -> &AgentId {
        &self.id
    }

    /// The swarm.
    pub fn swarm(&self) -> &SwarmId {
        &self.swarm
    }

    /// The role.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// The metadata.
    pub fn metadata(&self) -> &Value {
        &self.metadata
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.role.len() > 128 {
            return Err(CoordError::Invalid("role must be at most 128 bytes".into()));
        }
        Ok(())
    }

    /// Reads a participant back from an `agent_joined` message.
    pub(crate) fn from_joined(swarm: &SwarmId, message: &Value) -> Option<Self> {
        if message.get("type")?.as_str()? != "agent_joined" {
            return None;
        }
        let id = AgentId::new(message.get("agentId")?.as_str()?).ok()?;
        let role = message.get("role")?.as_str()?.to_owned();
        let metadata = message.get("metadata")?.clone();
        Some(Self { id, swarm: swarm.clone(), role, metadata })
    }
}

/// Liveness of a participant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Presence {
    /// Heartbeats arrive.
    Online,
    /// Heartbeats stopped for longer than its expiry.
    Offline,
}

/// A participant and its liveness.
#[derive(Clone, Debug, PartialEq)]
pub struct ParticipantStatus {
    /// Who.
    pub participant: Participant,
    /// Online or offline.
    pub status: Presence,
    /// Unix ms of its last heartbeat (on Redis by the Redis server's clock).
    pub last_heartbeat_ms: u64,
    /// The node it joined through.
    pub node_id: String,
}

/// The payloads of the messages coordinators publish themselves (docs/FORMAT.md 2.4).
pub(crate) mod payload {
    use super::*;

    pub(crate) fn joined(p: &Participant, node: &str, expiry_ms: u64) -> Value {
        json!({
            "type": "agent_joined",
            "agentId": p.id().as_str(),
            "role": p.role(),
            "metadata": p.metadata(),
            "nodeId": node,
            "expiryMs": expiry_ms,
        })
    }

    pub(crate) fn left(agent: &AgentId, node: &str) -> Value {
        json!({ "type": "agent_left", "agentId": agent.as_str(), "nodeId": node })
    }

    pub(crate) fn heartbeat(
        agent: &AgentId,
        node: &str,
        interval_ms: u64,
        expiry_ms: u64,
    ) -> Value {
        json!({
            "type": "heartbeat",
            "agentId": agent.as_str(),
            "nodeId": node,
            "intervalMs": interval_ms,
            "expiryMs": expiry_ms,
        })
    }

    pub(crate) fn presence(kind: &str, agent: &str, last_heartbeat_ms: u64, node: &str) -> Value {
        json!({ "type": kind, "agentId": agent, "lastHeartbeat": last_heartbeat_ms, "detectedBy": node })
    }

    pub(crate) fn decided(
        spec: &RoundSpec,
        outcome: crate::Outcome,
        tally: &Tally,
        node: &str,
    ) -> Value {
        json!({
            "type": "consensus_decided",
            "consensusId": spec.id(),
            "outcome": outcome.as_str(),
            "strategy": spec.strategy().as_str(),
            "threshold": spec.threshold(),
            "quorum": spec.quorum(),
            "tally": tally,
            "decidedBy": node,
        })
    }

    pub(crate) fn vote(spec: &RoundSpec, ballot: &Ballot, spec_key: &str) -> Value {
        json!({
            "type": "consensus_vote",
            "consensusId": spec.id(),
            "spec": spec_key,
            "agentId": ballot.agent().as_str(),
            "approve": ballot.approve(),
            "confidence": ballot.confidence(),
        })
    }
}

/// The coordination channel of a swarm.
pub(crate) fn coordination(swarm: &SwarmId) -> Channel {
    Channel::new(swarm, ChannelKind::Coordination)
}
