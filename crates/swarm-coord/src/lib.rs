//! Coordination for agent swarms: authenticated publish/subscribe, presence with real
//! liveness, and consensus rounds decided exactly once, on an in-process bus or on Redis.
//!
//! The [`Coordinator`] trait has two implementations:
//!
//! * [`InProcessBus`], the embedded default: every node lives in one process and shares a
//!   medium through `Arc`; everything works with no Redis;
//! * [`RedisCoordinator`], across processes and hosts, on the `redis` crate's blocking API
//!   with background threads (no async runtime).
//!
//! Messages travel on the seed's channels `swarm:{swarm_id}:{coordination|memory|events|
//! consensus|heartbeat|sqlite}` in the seed's JSON envelope (`id, swarmId, senderId, channel,
//! message, timestamp, priority, ttl`) plus an `hmac`: HMAC-SHA256 under the swarm's
//! [`SwarmSecret`] over a canonical string, documented byte for byte in `docs/FORMAT.md`
//! section 2 so that agents in Node or Python can take part. Everything received is
//! untrusted: unsigned, badly signed, oversized, malformed, expired, future-dated or replayed
//! messages are dropped and counted ([`Health::dropped`]), never delivered and never acted
//! on. There is no message that shuts a node down.
//!
//! Presence: [`Coordinator::join`] starts heartbeats (every 5 s by default); every
//! coordinator runs a liveness monitor, and an agent whose heartbeats stop is reported
//! offline (status and exactly one `agent_offline` message per outage) within
//! [`CoordConfig::offline_bound`] of its last heartbeat. Consensus: [`Coordinator::vote`]
//! records one vote per agent and decides the round once, atomically (a Lua script on
//! Redis), by the rule of [`tally`].
//!
//! What this crate is not: it knows no database. Where processes share a database, that
//! database is the source of truth and this crate carries notifications, presence and
//! wake-ups; the durable outbox that relays events while Redis is down lives above it.
//!
//! ```
//! use std::time::Duration;
//! use serde_json::json;
//! use swarm_acl::{AgentId, SwarmId};
//! use swarm_coord::*;
//!
//! let swarm = SwarmId::new("s1")?;
//! let keys = SwarmKeys::new().with_secret(&swarm, SwarmSecret::generate()?);
//! let bus = InProcessBus::new(CoordConfig::new(keys)?)?;
//!
//! // Publish and subscribe.
//! let events = bus.subscribe(ChannelFilter::exact(&swarm, ChannelKind::Events))?;
//! bus.publish(&Channel::new(&swarm, ChannelKind::Events), json!({"type": "task_done"}), PublishOptions::new())?;
//! assert_eq!(events.recv_timeout(Duration::from_secs(1))?.unwrap().message_type(), Some("task_done"));
//!
//! // Presence.
//! bus.join(Participant::new(AgentId::new("coder-1")?, swarm.clone()).with_role("coder"))?;
//! assert_eq!(bus.participants(&swarm)?[0].status, Presence::Online);
//!
//! // Consensus: decided at the quorum, once.
//! let round = RoundSpec::new("r1", &swarm, Strategy::Majority, 0.5, 2, MAX_DEADLINE_MS)?;
//! bus.vote(&round, Ballot::new(AgentId::new("a")?, true, 0.9)?)?;
//! let result = bus.vote(&round, Ballot::new(AgentId::new("b")?, true, 0.8)?)?;
//! assert_eq!((result.outcome, result.decided_now), (Outcome::Achieved, true));
//! assert!(matches!(
//!     bus.vote(&round, Ballot::new(AgentId::new("a")?, false, 1.0)?),
//!     Err(CoordError::DuplicateVote { .. })
//! ));
//! # Ok::<(), swarm_coord::CoordError>(())
//! ```

mod bus;
mod channel;
mod clock;
mod config;
mod consensus;
mod coordinator;
mod envelope;
mod error;
mod health;
mod redis_coord;
mod replay;
mod router;
mod scripts;
mod secret;

pub use bus::InProcessBus;
pub use channel::{Channel, ChannelFilter, ChannelKind};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{CoordConfig, RedisConfig};
pub use consensus::{
    Applied, Ballot, MAX_DEADLINE_MS, Outcome, RoundSpec, RoundState, Strategy, Tally, VoteResult,
    decide, tally,
};
pub use coordinator::{Coordinator, Participant, ParticipantStatus, Presence, PublishOptions};
pub use envelope::{CANONICAL_PREFIX, DropReason, Envelope, Limits, MAX_PRIORITY, decode_envelope};
pub use error::{CoordError, Result};
pub use health::{DropCounts, Health};
pub use redis_coord::RedisCoordinator;
pub use router::{Handler, HandlerSubscription, Subscription};
pub use secret::{SwarmKeys, SwarmSecret};
