//! Coordination wiring: the coordinator (in-process bus by default, Redis when
//! configured), the relay that carries the store's durable outbox and memory change feed
//! to it, and the listener that turns what other processes announce into local wake-ups
//! and ACL-filtered notifications.
//!
//! The database stays the source of truth. The relay is at-least-once: it publishes, then
//! marks what it published; a crash in between publishes again, and receivers recognise
//! duplicates by the `seq` each message carries. Several processes on one database may
//! all relay; they race on the same marks, which costs duplicates, never losses.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use serde::Serialize;
use swarm_acl::{AclLevel, Action, AgentId, Identity, ResourceType, SwarmId, TeamId, decide};
use swarm_coord::{
    Channel, ChannelFilter, ChannelKind, CoordConfig, CoordError, Coordinator, InProcessBus,
    PublishOptions, RedisConfig, RedisCoordinator, SwarmKeys, SwarmSecret,
};
use swarm_store::{ChangeFilter, Store};

use crate::error::{Error, Result};
use crate::events::{EventBus, SystemEvent};

/// Which coordination backend to use.
#[derive(Clone, Debug, Default)]
pub enum Backend {
    /// The in-process bus: everything works in one process with no Redis (default).
    #[default]
    InProcess,
    /// Redis, for processes and hosts.
    Redis(RedisConfig),
}

/// How often the relay looks for new outbox messages and changes.
const RELAY_EVERY: Duration = Duration::from_millis(100);

/// A memory change announced by some process, as delivered to a session that may see it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RemoteChange {
    /// Position in the announcing database's change feed (duplicates repeat it).
    pub seq: u64,
    /// Swarm.
    pub swarm: String,
    /// Namespace.
    pub namespace: String,
    /// Key.
    pub key: String,
    /// `set`, `delete` or `expire`.
    pub op: String,
    /// The record's version.
    pub version: u64,
    /// The record's level.
    pub level: u8,
    /// The node that announced it.
    pub node: String,
}

struct Listener {
    identity: Identity,
    tx: Sender<RemoteChange>,
}

pub(crate) struct Coordination {
    coordinator: Arc<dyn Coordinator>,
    listeners: Arc<Mutex<Vec<Listener>>>,
    threads: Mutex<Vec<(Sender<()>, JoinHandle<()>)>>,
}

impl Coordination {
    pub(crate) fn start(
        backend: &Backend,
        secret: SwarmSecret,
        swarm: &SwarmId,
        node_id: &str,
        store: &Store,
        events: &Arc<EventBus>,
    ) -> Result<Self> {
        let coord_err = |e: CoordError| Error::Config(format!("coordination: {e}"));
        let config = CoordConfig::new(SwarmKeys::new().with_secret(swarm, secret))
            .and_then(|c| c.with_node_id(node_id))
            .map_err(coord_err)?;
        let coordinator: Arc<dyn Coordinator> = match backend {
            Backend::InProcess => Arc::new(InProcessBus::new(config).map_err(coord_err)?),
            // Lazy: opening never waits for Redis; its absence shows in health.
            Backend::Redis(r) => {
                Arc::new(RedisCoordinator::connect_lazy(r.clone(), config).map_err(coord_err)?)
            }
        };
        let me = Coordination {
            coordinator,
            listeners: Arc::new(Mutex::new(Vec::new())),
            threads: Mutex::new(Vec::new()),
        };
        me.spawn_relay(store.clone(), swarm.clone())?;
        me.spawn_listener(store.clone(), swarm.clone(), Arc::clone(events))?;
        Ok(me)
    }

    pub(crate) fn coordinator(&self) -> &Arc<dyn Coordinator> {
        &self.coordinator
    }

    fn spawn_relay(&self, store: Store, swarm: SwarmId) -> Result<()> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let coordinator = Arc::clone(&self.coordinator);
        let handle = std::thread::Builder::new()
            .name("swarm-memory-relay".into())
            .spawn(move || {
                loop {
                    relay_once(&store, coordinator.as_ref(), &swarm);
                    match stopped.recv_timeout(RELAY_EVERY) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => {
                            // One last pass, so a process that wrote and is now shutting
                            // down relays what it can before it goes.
                            relay_once(&store, coordinator.as_ref(), &swarm);
                            return;
                        }
                    }
                }
            })
            .map_err(|e| Error::Config(format!("cannot start the relay thread: {e}")))?;
        self.threads.lock().push((stop, handle));
        Ok(())
    }

    fn spawn_listener(&self, store: Store, swarm: SwarmId, events: Arc<EventBus>) -> Result<()> {
        let subscription = self
            .coordinator
            .subscribe(
                ChannelFilter::pattern(&swarm, "*").map_err(|e| Error::Config(e.to_string()))?,
            )
            .map_err(Error::Coordination)?;
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let listeners = Arc::clone(&self.listeners);
        let coordinator = Arc::clone(&self.coordinator);
        let handle = std::thread::Builder::new()
            .name("swarm-memory-listener".into())
            .spawn(move || {
                loop {
                    // Wait on the stop signal too, so shutting down never waits for a message.
                    let envelope = crossbeam_channel::select! {
                        recv(stopped) -> _ => return,
                        recv(subscription.receiver()) -> e => match e {
                            Ok(e) => e,
                            Err(_) => return,
                        },
                    };
                    let message = envelope.message();
                    match envelope.channel().kind() {
                        ChannelKind::Memory => {
                            store.notify_memory_changed();
                            if let Some(change) = parse_change(message, envelope.sender()) {
                                deliver(&store, &listeners, &change, message);
                            }
                        }
                        ChannelKind::Consensus => {
                            store.notify_events_changed();
                            if envelope.message_type() == Some("consensus_decided")
                                && let Some(id) = message.get("consensusId").and_then(|i| i.as_str())
                                && let Err(e) = sync_round(&store, coordinator.as_ref(), id)
                            {
                                tracing::debug!(round = id, error = %e, "could not mirror a decided round");
                            }
                        }
                        ChannelKind::Events => store.notify_events_changed(),
                        ChannelKind::Coordination => {
                            let agent = message.get("agent").and_then(|a| a.as_str()).unwrap_or_default().to_owned();
                            match envelope.message_type() {
                                Some("acl_generation") => store.invalidate_principals(),
                                Some(t @ ("agent_offline" | "agent_online" | "agent_joined" | "agent_left")) => {
                                    events.emit(SystemEvent::Presence { agent, status: t.trim_start_matches("agent_").to_owned() });
                                }
                                _ => {}
                            }
                        }
                        _ => {}
                    }
                }
            })
            .map_err(|e| Error::Config(format!("cannot start the listener thread: {e}")))?;
        self.threads.lock().push((stop, handle));
        Ok(())
    }

    /// Delivers memory changes announced by any process (this one included) to `who`,
    /// filtered through the ACL at delivery time: a change to a record `who` cannot see
    /// never arrives.
    pub(crate) fn subscribe_changes(&self, who: Identity) -> Receiver<RemoteChange> {
        let (tx, rx) = crossbeam_channel::bounded(4096);
        self.listeners.lock().push(Listener { identity: who, tx });
        rx
    }

    pub(crate) fn shutdown(&self) {
        let threads = std::mem::take(&mut *self.threads.lock());
        for (stop, handle) in threads {
            drop(stop);
            let _ = handle.join();
        }
        self.coordinator.shutdown();
    }
}

/// The coordinator's spec of a round this database holds.
pub(crate) fn round_spec(
    round: &swarm_store::Round,
) -> std::result::Result<swarm_coord::RoundSpec, CoordError> {
    let strategy = match round.strategy {
        swarm_store::Strategy::Majority => swarm_coord::Strategy::Majority,
        swarm_store::Strategy::Weighted => swarm_coord::Strategy::Weighted,
        swarm_store::Strategy::Unanimous => swarm_coord::Strategy::Unanimous,
        swarm_store::Strategy::Threshold => swarm_coord::Strategy::Threshold,
    };
    let deadline = round
        .deadline
        .map_or(swarm_coord::MAX_DEADLINE_MS, |d| u64::try_from(d.as_millis()).unwrap_or(0));
    swarm_coord::RoundSpec::new(
        &round.id,
        &round.swarm,
        strategy,
        round.threshold,
        round.quorum,
        deadline,
    )
}

/// Mirrors the coordinator's state of a round into this database (and the vote of a local
/// agent, when given).
pub(crate) fn mirror(
    store: &Store,
    round_id: &str,
    result: &swarm_coord::VoteResult,
    local: Option<(AgentId, swarm_store::Ballot)>,
) -> swarm_store::Result<swarm_store::Round> {
    let tally = swarm_store::Tally {
        votes_for: result.tally.votes_for,
        votes_against: result.tally.votes_against,
        weight_for: result.tally.weight_for,
        weight_against: result.tally.weight_against,
    };
    let status = match result.outcome {
        swarm_coord::Outcome::Open => swarm_store::RoundStatus::Open,
        swarm_coord::Outcome::Achieved => swarm_store::RoundStatus::Achieved,
        swarm_coord::Outcome::Failed => swarm_store::RoundStatus::Failed,
        swarm_coord::Outcome::Expired => swarm_store::RoundStatus::Expired,
    };
    store.mirror_round(&Identity::System, round_id, tally, status, local)
}

/// Reads the coordinator's state of a round held here (the coordinator re-verifies the
/// signed ballots) and mirrors it. Rounds this database does not hold are ignored.
pub(crate) fn sync_round(
    store: &Store,
    coordinator: &dyn Coordinator,
    round_id: &str,
) -> std::result::Result<(), String> {
    let Some(round) = store.get_round(&Identity::System, round_id).map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    let spec = round_spec(&round).map_err(|e| e.to_string())?;
    let result = coordinator.round_state(&spec).map_err(|e| e.to_string())?;
    mirror(store, round_id, &result, None).map_err(|e| e.to_string())?;
    Ok(())
}

fn parse_change(m: &serde_json::Value, node: &str) -> Option<RemoteChange> {
    if m.get("type")?.as_str()? != "memory_change" {
        return None;
    }
    Some(RemoteChange {
        seq: m.get("seq")?.as_u64()?,
        swarm: m.get("swarm")?.as_str()?.to_owned(),
        namespace: m.get("namespace")?.as_str()?.to_owned(),
        key: m.get("key")?.as_str()?.to_owned(),
        op: m.get("op")?.as_str()?.to_owned(),
        version: m.get("version")?.as_u64()?,
        level: u8::try_from(m.get("level")?.as_u64()?).ok()?,
        node: node.to_owned(),
    })
}

/// Hands `change` to every listener whose principal may read the record it describes.
fn deliver(
    store: &Store,
    listeners: &Mutex<Vec<Listener>>,
    change: &RemoteChange,
    m: &serde_json::Value,
) {
    let Ok(level) = AclLevel::from_i64(i64::from(change.level)) else { return };
    let owner = m.get("owner").and_then(|o| o.as_str()).and_then(|o| AgentId::new(o).ok());
    let team = m.get("team").and_then(|t| t.as_str()).and_then(|t| TeamId::new(t).ok());
    let now = store.now();
    listeners.lock().retain(|l| {
        let Ok(p) = store.principal(&l.identity) else {
            // A listener whose agent can no longer act gets nothing, and is dropped.
            return false;
        };
        let access = swarm_acl::Access::new(level, &change.swarm)
            .with_owner(owner.as_ref())
            .with_team(team.as_ref());
        if decide(&p, Action::Read, ResourceType::Memory, &access, now).is_allowed() {
            !matches!(
                l.tx.try_send(change.clone()),
                Err(crossbeam_channel::TrySendError::Disconnected(_))
            )
        } else {
            true
        }
    });
}

/// One pass of the relay: the outbox, then the memory change feed. Stops at the first
/// sign that the coordinator is unavailable; the next pass retries.
fn relay_once(store: &Store, coordinator: &dyn Coordinator, swarm: &SwarmId) {
    if let Err(e) = relay_outbox(store, coordinator, swarm) {
        tracing::debug!(error = %e, "relaying the outbox paused");
    }
    if let Err(e) = relay_changes(store, coordinator, swarm) {
        tracing::debug!(error = %e, "relaying memory changes paused");
    }
}

fn relay_outbox(
    store: &Store,
    coordinator: &dyn Coordinator,
    swarm: &SwarmId,
) -> std::result::Result<(), String> {
    let pending = store.outbox_pending(&Identity::System, swarm, 200).map_err(|e| e.to_string())?;
    let mut relayed = Vec::new();
    let mut failed = Vec::new();
    let mut outage = None;
    for m in pending {
        let channel = match Channel::parse(&m.channel) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(seq = m.seq, error = %e, "outbox message has an invalid channel");
                failed.push(m.seq);
                continue;
            }
        };
        let priority = m
            .message
            .get("priority")
            .and_then(|p| p.as_u64())
            .and_then(|p| u8::try_from(p).ok())
            .unwrap_or(5);
        match coordinator.publish(
            &channel,
            m.message,
            PublishOptions::new().priority(priority.min(10)),
        ) {
            Ok(_) => relayed.push(m.seq),
            Err(CoordError::Unavailable { .. }) | Err(CoordError::Closed) => {
                outage = Some("coordinator unavailable");
                break;
            }
            Err(e) => {
                tracing::warn!(seq = m.seq, error = %e, "outbox message could not be published");
                failed.push(m.seq);
            }
        }
    }
    store.outbox_settle(&Identity::System, &relayed, true).map_err(|e| e.to_string())?;
    store.outbox_settle(&Identity::System, &failed, false).map_err(|e| e.to_string())?;
    outage.map_or(Ok(()), |o| Err(o.to_owned()))
}

fn relay_changes(
    store: &Store,
    coordinator: &dyn Coordinator,
    swarm: &SwarmId,
) -> std::result::Result<(), String> {
    let name = format!("relay-memory-{swarm}");
    let Some(cursor) = store.cursor(&Identity::System, &name).map_err(|e| e.to_string())? else {
        // The first relay of a database announces from now on, not its whole history;
        // later relays, in any process, continue from where the last one stopped.
        let head = store.change_head().map_err(|e| e.to_string())?;
        store.advance_cursor(&Identity::System, &name, None, head).map_err(|e| e.to_string())?;
        return Ok(());
    };
    let page = store
        .changes_since(&Identity::System, cursor, &ChangeFilter::swarm(swarm.clone()), 500)
        .map_err(|e| e.to_string())?;
    let channel = Channel::new(swarm, ChannelKind::Memory);
    let mut reached = cursor;
    for c in &page.changes {
        // Keys, versions and scope only: a change never carries a value.
        let message = serde_json::json!({
            "type": "memory_change",
            "seq": c.seq,
            "swarm": c.key.swarm().as_str(),
            "namespace": c.key.namespace().as_str(),
            "key": c.key.key().as_str(),
            "op": c.op,
            "version": c.version,
            "level": c.level.as_u8(),
            "owner": c.owner.as_ref().map(AgentId::as_str),
            "team": c.team.as_ref().map(TeamId::as_str),
            "at": c.at.as_millis(),
        });
        match coordinator.publish(&channel, message, PublishOptions::new().priority(3)) {
            Ok(_) => reached = c.seq,
            Err(e) => {
                let _ = store.advance_cursor(&Identity::System, &name, Some(cursor), reached);
                return Err(e.to_string());
            }
        }
    }
    let to =
        if page.changes.is_empty() { page.cursor.max(cursor) } else { reached.max(page.cursor) };
    if to > cursor {
        store
            .advance_cursor(&Identity::System, &name, Some(cursor), to)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
