//! The durable event bus: the seed's event bus, persisted.
//!
//! One table is both a log and a queue. As a log, every event has a sequence number:
//! `events_since` reads it through the ACL predicate, and a consumer that was offline
//! resumes from its stored cursor. As a queue, `claim_events` hands each event to one
//! consumer at a time, in priority order, for a visibility timeout; `ack_event` finishes
//! it, `fail_event` (or a lapsed claim) retries it until `max_retries`, after which it is
//! dead. Expired events are never delivered. Every publish also writes an outbox row in
//! the same transaction, which the coordination relay carries to other hosts.

use std::time::Duration;

use rusqlite::{OptionalExtension, Row, params_from_iter};
use serde::Serialize;
use swarm_acl::{
    AclLevel, Action, AgentId, Identity, ResourceType, SwarmId, TeamId, Timestamp, sql_predicate,
};
use swarm_codec::Seal;

use super::{Scope, allowed, audit, check_text, columns, deny, new_id, new_scope, payload_aad};
use crate::audit::Outcome;
use crate::error::{Result, StoreError};
use crate::sql::{Bind, i64_of, push_pred, u64_of};
use crate::store::{Shared, Store};
use crate::txn::WriteCtx;

const COLS: swarm_acl::SqlColumns<'static> =
    columns("e.acl_level", "e.swarm_id", "e.source_id", "e.team_id");
const RESOURCE: ResourceType = ResourceType::Event;
/// Largest event payload, serialized.
pub const MAX_PAYLOAD: usize = 256 * 1024;

/// An event to publish.
#[derive(Clone, Debug)]
pub struct EventSpec {
    event_type: String,
    target: Option<String>,
    payload: serde_json::Value,
    priority: u8,
    ttl: Option<Duration>,
    level: Option<AclLevel>,
    team: Option<TeamId>,
    parent: Option<u64>,
    max_retries: u32,
    swarm: Option<SwarmId>,
}

impl EventSpec {
    /// An event of `event_type` with `payload`: priority 5, no expiry, swarm level, three
    /// retries.
    pub fn new(event_type: impl Into<String>, payload: serde_json::Value) -> Self {
        Self {
            event_type: event_type.into(),
            target: None,
            payload,
            priority: 5,
            ttl: None,
            level: None,
            team: None,
            parent: None,
            max_retries: 3,
            swarm: None,
        }
    }
    /// Address it to one agent (only it may claim it; readers who can see it still do).
    pub fn target(mut self, agent: impl Into<String>) -> Self {
        self.target = Some(agent.into());
        self
    }
    /// Priority 0 (lowest) to 10 (highest).
    pub fn priority(mut self, p: u8) -> Self {
        self.priority = p;
        self
    }
    /// Expire after `ttl`: never delivered afterwards.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
    /// ACL level (default swarm).
    pub fn level(mut self, l: AclLevel) -> Self {
        self.level = Some(l);
        self
    }
    /// Team, for team-level events.
    pub fn team(mut self, t: TeamId) -> Self {
        self.team = Some(t);
        self
    }
    /// The event this one follows from.
    pub fn parent(mut self, seq: u64) -> Self {
        self.parent = Some(seq);
        self
    }
    /// Deliveries after the first before the event is dead (0-100, default 3).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }
    /// The swarm (the system principal must name one; agents publish in their own).
    pub fn swarm(mut self, s: SwarmId) -> Self {
        self.swarm = Some(s);
        self
    }
}

/// An event published by the store itself (consensus outcomes and the like).
pub(crate) struct EventRecord {
    pub(crate) swarm: SwarmId,
    pub(crate) event_type: String,
    /// Only for callers that set it explicitly; the owner column is the scope's owner.
    #[allow(dead_code)]
    pub(crate) source: Option<AgentId>,
    pub(crate) target: Option<String>,
    pub(crate) payload: serde_json::Value,
    pub(crate) priority: u8,
    pub(crate) ttl_ms: Option<i64>,
    pub(crate) scope: Scope,
    pub(crate) parent_seq: Option<i64>,
    pub(crate) max_retries: u32,
}

/// Where an event stands in the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    /// Waiting for a consumer.
    Pending,
    /// Handed to a consumer until its visibility timeout.
    Claimed,
    /// Done.
    Acked,
    /// Failed more than `max_retries` times.
    Dead,
}

crate::names::string_forms!(EventStatus, "event status", {
    Pending => "pending",
    Claimed => "claimed",
    Acked => "acked",
    Dead => "dead",
});

/// An event as read.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// Position in the log.
    pub seq: u64,
    /// Public id.
    pub id: String,
    /// Swarm.
    pub swarm: SwarmId,
    /// Type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Publisher (`None`: the system).
    pub source: Option<AgentId>,
    /// Addressee.
    pub target: Option<String>,
    /// Payload.
    pub payload: serde_json::Value,
    /// Priority 0-10.
    pub priority: u8,
    /// Level.
    pub level: AclLevel,
    /// Team.
    pub team: Option<TeamId>,
    /// Parent event.
    pub parent: Option<u64>,
    /// Queue status.
    pub status: EventStatus,
    /// Deliveries so far.
    pub attempts: u32,
    /// Retries allowed.
    pub max_retries: u32,
    /// Last failure reported.
    pub last_error: Option<String>,
    /// Published.
    pub created_at: Timestamp,
    /// Expiry.
    pub expires_at: Option<Timestamp>,
}

/// An event handed to a consumer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Delivery {
    /// The event.
    pub event: Event,
    /// Which delivery this is (1 for the first); pass it to `ack_event` / `fail_event`.
    pub attempt: u32,
    /// When the claim lapses and the event becomes claimable again.
    pub visible_until: Timestamp,
}

/// A page of the event log.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventPage {
    /// Events after the requested position that the caller can see, oldest first.
    pub events: Vec<Event>,
    /// Where to resume (the last position looked at, visible or not).
    pub cursor: u64,
}

const EVENT_COLUMNS: &str = "e.seq, e.id, e.swarm_id, e.type, e.source_id, e.target_id, e.payload, e.priority, \
    e.acl_level, e.team_id, e.parent_seq, e.status, e.attempts, e.max_retries, e.last_error, e.created_at, e.expires_at";

struct RawEvent {
    seq: i64,
    id: String,
    swarm: String,
    event_type: String,
    source: Option<String>,
    target: Option<String>,
    payload: Vec<u8>,
    priority: i64,
    level: i64,
    team: Option<String>,
    parent: Option<i64>,
    status: String,
    attempts: i64,
    max_retries: i64,
    last_error: Option<String>,
    created_at: i64,
    expires_at: Option<i64>,
}

impl RawEvent {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            seq: r.get(0)?,
            id: r.get(1)?,
            swarm: r.get(2)?,
            event_type: r.get(3)?,
            source: r.get(4)?,
            target: r.get(5)?,
            payload: r.get(6)?,
            priority: r.get(7)?,
            level: r.get(8)?,
            team: r.get(9)?,
            parent: r.get(10)?,
            status: r.get(11)?,
            attempts: r.get(12)?,
            max_retries: r.get(13)?,
            last_error: r.get(14)?,
            created_at: r.get(15)?,
            expires_at: r.get(16)?,
        })
    }

    fn open(self, shared: &Shared) -> Result<Event> {
        let swarm = SwarmId::new(&self.swarm)
            .map_err(|e| StoreError::Corrupt(format!("event {}: {e}", self.id)))?;
        let scope = Scope::parse(self.source.as_deref(), self.team.as_deref(), self.level)?;
        let aad = payload_aad("event", &swarm, &self.id, &scope);
        let codec_err = |source| StoreError::Codec { key: format!("event {}", self.id), source };
        let bytes = if shared.encrypts_level(scope.level) {
            shared
                .codec_for(&self.payload)
                .decode_encrypted(&self.payload, &aad)
                .map_err(codec_err)?
        } else {
            shared.codec_for(&self.payload).decode(&self.payload, &aad).map_err(codec_err)?
        };
        let payload = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("event {} payload: {e}", self.id)))?;
        Ok(Event {
            seq: u64_of(self.seq),
            swarm,
            event_type: self.event_type,
            source: scope.owner,
            target: self.target,
            payload,
            priority: u8::try_from(self.priority).unwrap_or(5),
            level: scope.level,
            team: scope.team,
            parent: self.parent.map(u64_of),
            status: EventStatus::from_stored(&self.status)?,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            max_retries: u32::try_from(self.max_retries).unwrap_or(0),
            last_error: self.last_error,
            created_at: Timestamp::from_millis(self.created_at),
            expires_at: self.expires_at.map(Timestamp::from_millis),
            id: self.id,
        })
    }
}

const INSERT: &str = "INSERT INTO events (id, swarm_id, type, source_id, target_id, payload, priority, acl_level, \
    team_id, parent_seq, max_retries, visible_at, created_at, expires_at, key_id) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, ?14)";

const OUTBOX: &str =
    "INSERT INTO outbox (swarm_id, channel, message, created_at) VALUES (?1, ?2, ?3, ?4)";

/// Publishes an event inside the caller's transaction: the row, and an outbox row for the
/// coordination relay. Returns (seq, id).
pub(crate) fn publish_in_tx(
    ctx: &mut WriteCtx<'_>,
    shared: &std::sync::Arc<Shared>,
    e: &EventRecord,
    now: Timestamp,
) -> Result<(u64, String)> {
    let id = new_id("ev");
    let bytes = serde_json::to_vec(&e.payload)
        .map_err(|err| StoreError::invalid(format!("payload: {err}")))?;
    if bytes.len() > MAX_PAYLOAD {
        return Err(StoreError::invalid(format!(
            "event payload is {} bytes, the limit is {MAX_PAYLOAD}",
            bytes.len()
        )));
    }
    let aad = payload_aad("event", &e.swarm, &id, &e.scope);
    let codec_err = |source| StoreError::Codec { key: format!("event {id}"), source };
    let sealed = if shared.encrypts_level(e.scope.level) {
        shared.codec().encode(&bytes, Seal::Encrypt { aad: &aad }).map_err(codec_err)?
    } else {
        shared.codec().encode(&bytes, Seal::Plain).map_err(codec_err)?
    };
    let key_id =
        swarm_codec::inspect(&sealed).map_err(codec_err)?.key_id().map(|k| i64::from(k.get()));
    let expires_at = e.ttl_ms.map(|ttl| now.as_millis().saturating_add(ttl));
    ctx.conn().prepare_cached(INSERT)?.execute(rusqlite::params![
        id,
        e.swarm.as_str(),
        e.event_type,
        e.scope.owner.as_ref().map(AgentId::as_str),
        e.target,
        sealed,
        e.priority,
        e.scope.level.as_u8(),
        e.scope.team.as_ref().map(TeamId::as_str),
        e.parent_seq,
        e.max_retries,
        now.as_millis(),
        expires_at,
        key_id,
    ])?;
    let seq = u64_of(ctx.conn().last_insert_rowid());
    // The outbox carries what other hosts need to know. Payloads travel only for levels
    // every agent of the swarm may read anyway; narrower events carry their metadata, and
    // readers fetch the payload through the ACL from a database that has it.
    let shares_payload = matches!(e.scope.level, AclLevel::Swarm | AclLevel::Public);
    let message = serde_json::json!({
        "type": "event",
        "seq": seq,
        "id": id,
        "eventType": e.event_type,
        "level": e.scope.level.as_u8(),
        "source": e.scope.owner.as_ref().map(AgentId::as_str),
        "target": e.target,
        "priority": e.priority,
        "createdAt": now.as_millis(),
        "expiresAt": expires_at,
        "payload": if shares_payload { e.payload.clone() } else { serde_json::Value::Null },
    });
    let channel = if e.event_type.starts_with("consensus_") { "consensus" } else { "events" };
    ctx.conn().prepare_cached(OUTBOX)?.execute(rusqlite::params![
        e.swarm.as_str(),
        format!("swarm:{}:{channel}", e.swarm),
        message.to_string(),
        now.as_millis()
    ])?;
    let signal = std::sync::Arc::clone(shared);
    ctx.after_commit(move || signal.events_changed.notify());
    Ok((seq, id))
}

fn claimer(agent: &AgentId, consumer: &str) -> String {
    format!("{agent}/{consumer}")
}

fn check_consumer(consumer: &str) -> Result<()> {
    super::check_id("consumer", consumer)
}

/// Backoff before a failed event is offered again: 100 ms doubling, at most a minute.
fn backoff_ms(attempts: u32) -> i64 {
    (100i64 << attempts.min(10)).min(60_000)
}

impl Store {
    /// Publishes an event in the caller's swarm: persisted, visible to in-process watchers
    /// at once, claimable by consumers, and relayed to other hosts.
    pub fn publish_event(&self, who: &Identity, spec: EventSpec) -> Result<Event> {
        check_text("event type", &spec.event_type, 128, false)?;
        if spec.priority > 10 {
            return Err(StoreError::invalid("event priority must be 0-10"));
        }
        if spec.max_retries > 100 {
            return Err(StoreError::invalid("max_retries must be 0-100"));
        }
        if let Some(t) = &spec.target {
            super::check_id("target agent", t)?;
        }
        let ttl_ms = spec.ttl.map(crate::memory::ttl_ms).transpose()?;
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                let swarm = match (p.as_agent(), &spec.swarm) {
                    (Some(a), Some(s)) if s != a.swarm() => {
                        return Ok(Err(StoreError::PermissionDenied("agents publish only in their own swarm".into())));
                    }
                    (Some(a), _) => a.swarm().clone(),
                    (None, Some(s)) => s.clone(),
                    (None, None) => return Ok(Err(StoreError::invalid("the system principal must name the event's swarm"))),
                };
                let scope = new_scope(p, spec.level, spec.team.as_ref(), AclLevel::Swarm)?;
                if !allowed(p, Action::Write, RESOURCE, &scope, &swarm, now) {
                    return Ok(Err(deny(ctx, p, "event.publish", "event", &spec.event_type, &swarm, "no write permission on events at this level", now)?));
                }
                if let Some(parent) = spec.parent {
                    // Only a parent the publisher can see: one it cannot see (or one that
                    // expired) is as absent as a missing one; answering otherwise would
                    // confirm that it exists.
                    let pred = sql_predicate(p, Action::Read, RESOURCE, COLS, now, 4);
                    let sql = format!(
                        "SELECT EXISTS (SELECT 1 FROM events AS e WHERE e.seq = ?1 AND e.swarm_id = ?2 \
                         AND (e.expires_at IS NULL OR e.expires_at > ?3) AND {})",
                        pred.sql()
                    );
                    let mut binds = vec![Bind::Int(i64_of(parent)), Bind::Text(swarm.as_str()), Bind::Int(now.as_millis())];
                    push_pred(&mut binds, &pred);
                    let visible: bool =
                        ctx.conn().prepare_cached(&sql)?.query_row(params_from_iter(binds), |r| r.get(0))?;
                    if !visible {
                        return Ok(Err(StoreError::NotFound(format!("parent event {parent}"))));
                    }
                }
                let record = EventRecord {
                    swarm: swarm.clone(),
                    event_type: spec.event_type.clone(),
                    source: p.as_agent().map(|a| a.id().clone()),
                    target: spec.target.clone(),
                    payload: spec.payload.clone(),
                    priority: spec.priority,
                    ttl_ms,
                    scope,
                    parent_seq: spec.parent.map(i64_of),
                    max_retries: spec.max_retries,
                };
                let (seq, id) = publish_in_tx(ctx, shared, &record, now)?;
                let detail = serde_json::json!({ "seq": seq, "type": spec.event_type, "priority": spec.priority });
                audit(ctx, p, "event.publish", "event", &id, &swarm, Outcome::Ok, detail, now)?;
                // Read back in the same transaction, not through the publisher's ACL and
                // TTL: a publisher who may write but not read this level (or whose event
                // expired at once) got an error for an event that was published.
                let raw = ctx
                    .conn()
                    .prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events AS e WHERE e.seq = ?1"))?
                    .query_row([i64_of(seq)], RawEvent::from_row)?;
                Ok(Ok(raw.open(shared)?))
            })
            .and_then(|r| r)
    }

    /// An event by sequence number, if `who` can see it and it has not expired.
    pub fn get_event(&self, who: &Identity, seq: u64) -> Result<Option<Event>> {
        let now = self.now();
        let raw = self.shared.read_snapshot_as(who, |conn, p| {
            let pred = sql_predicate(p, Action::Read, RESOURCE, COLS, now, 3);
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM events AS e WHERE e.seq = ?1 AND (e.expires_at IS NULL OR e.expires_at > ?2) AND {}",
                pred.sql()
            );
            let mut binds = vec![Bind::Int(i64_of(seq)), Bind::Int(now.as_millis())];
            push_pred(&mut binds, &pred);
            Ok(conn.prepare_cached(&sql)?.query_row(params_from_iter(binds), RawEvent::from_row).optional()?)
        })?;
        raw.map(|r| r.open(&self.shared)).transpose()
    }

    /// The log: events after `after` that `who` can see and that have not expired, oldest
    /// first, optionally of one type.
    pub fn events_since(
        &self,
        who: &Identity,
        after: u64,
        event_type: Option<&str>,
        limit: usize,
    ) -> Result<EventPage> {
        let now = self.now();
        let limit = limit.clamp(1, 1000);
        let (raws, cursor) = self.shared.read_snapshot_as(who, |conn, p| {
            let swarm = p.as_agent().map(|a| a.swarm().as_str().to_owned());
            // A bounded window, so a flood of invisible events cannot make one call scan
            // without end; the cursor still moves past it.
            let window_end: i64 = conn.query_row(
                "SELECT coalesce(max(seq), ?1) FROM (SELECT seq FROM events WHERE seq > ?1 ORDER BY seq LIMIT 10000)",
                [i64_of(after)],
                |r| r.get(0),
            )?;
            let pred = sql_predicate(p, Action::Read, RESOURCE, COLS, now, 7);
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM events AS e WHERE e.seq > ?1 AND e.seq <= ?2 AND (?3 IS NULL OR e.swarm_id = ?3) \
                 AND (?4 IS NULL OR e.type = ?4) AND (e.expires_at IS NULL OR e.expires_at > ?5) AND {} ORDER BY e.seq LIMIT ?6",
                pred.sql()
            );
            let mut binds = vec![
                Bind::Int(i64_of(after)),
                Bind::Int(window_end),
                Bind::OptText(swarm.as_deref()),
                Bind::OptText(event_type),
                Bind::Int(now.as_millis()),
                Bind::Int(i64::try_from(limit).unwrap_or(1000)),
            ];
            push_pred(&mut binds, &pred);
            let mut stmt = conn.prepare_cached(&sql)?;
            let raws: Vec<RawEvent> = stmt.query_map(params_from_iter(binds), RawEvent::from_row)?.collect::<rusqlite::Result<_>>()?;
            let cursor = if raws.len() == limit { raws.last().map_or(after, |r| u64_of(r.seq)) } else { u64_of(window_end).max(after) };
            Ok((raws, cursor))
        })?;
        let events = raws.into_iter().map(|r| r.open(&self.shared)).collect::<Result<_>>()?;
        Ok(EventPage { events, cursor })
    }

    /// The stored cursor of a named durable consumer of `who` (0 if it never committed).
    pub fn event_cursor(&self, who: &Identity, consumer: &str) -> Result<u64> {
        check_consumer(consumer)?;
        self.shared.read_snapshot_as(who, |conn, p| {
            let name = consumer_name(p, consumer)?;
            let swarm = consumer_swarm(p)?;
            let v: Option<i64> = conn
                .prepare_cached(
                    "SELECT last_seq FROM event_cursors WHERE consumer = ?1 AND swarm_id = ?2",
                )?
                .query_row([&name, &swarm], |r| r.get(0))
                .optional()?;
            Ok(v.map_or(0, u64_of))
        })
    }

    /// Stores where a named durable consumer of `who` got to; it never moves back.
    pub fn commit_event_cursor(&self, who: &Identity, consumer: &str, seq: u64) -> Result<()> {
        check_consumer(consumer)?;
        let consumer = consumer.to_owned();
        self.shared.write_as(who, move |ctx, shared, p| {
            let name = consumer_name(p, &consumer)?;
            let swarm = consumer_swarm(p)?;
            ctx.conn()
                .prepare_cached(
                    "INSERT INTO event_cursors (consumer, swarm_id, last_seq, updated_at) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (consumer, swarm_id) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq), updated_at = excluded.updated_at",
                )?
                .execute(rusqlite::params![name, swarm, i64_of(seq), shared.now().as_millis()])?;
            Ok(())
        })
    }

    /// Claims up to `limit` events for `consumer` (a name of the caller's choosing, so one
    /// agent can run several consumers), highest priority first, each for `visibility`.
    /// Only events `who` can see, that have not expired, and that are addressed to nobody
    /// or to `who`. An event whose claim lapsed counts as a failed delivery; past
    /// `max_retries` it is dead and never delivered again.
    pub fn claim_events(
        &self,
        who: &Identity,
        consumer: &str,
        limit: usize,
        visibility: Duration,
    ) -> Result<Vec<Delivery>> {
        check_consumer(consumer)?;
        let vis = crate::memory::ttl_ms(visibility)?;
        let limit = limit.clamp(1, 100);
        let consumer = consumer.to_owned();
        let raws = self.shared.write_as(who, move |ctx, shared, p| {
            let now = shared.now();
            let Some(agent) = p.as_agent() else {
                return Err(StoreError::invalid("only agents consume events"));
            };
            let pred = sql_predicate(p, Action::Read, RESOURCE, COLS, now, 5);
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM events AS e WHERE e.swarm_id = ?1 AND e.status IN ('pending', 'claimed') \
                 AND e.visible_at <= ?2 AND (e.expires_at IS NULL OR e.expires_at > ?2) \
                 AND (e.target_id IS NULL OR e.target_id = ?3) AND {} ORDER BY e.priority DESC, e.seq LIMIT ?4",
                pred.sql()
            );
            let mut binds = vec![
                Bind::Text(agent.swarm().as_str()),
                Bind::Int(now.as_millis()),
                Bind::Text(agent.id().as_str()),
                // Dead letters found on the way do not count toward the limit.
                Bind::Int(i64::try_from(limit * 4).unwrap_or(400)),
            ];
            push_pred(&mut binds, &pred);
            let candidates: Vec<RawEvent> = {
                let mut stmt = ctx.conn().prepare_cached(&sql)?;
                stmt.query_map(params_from_iter(binds), RawEvent::from_row)?.collect::<rusqlite::Result<_>>()?
            };
            let by = claimer(agent.id(), &consumer);
            let mut out = Vec::new();
            for mut raw in candidates {
                if out.len() == limit {
                    break;
                }
                let scope = Scope::parse(raw.source.as_deref(), raw.team.as_deref(), raw.level)?;
                let swarm = agent.swarm().clone();
                if !allowed(p, Action::Write, RESOURCE, &scope, &swarm, now) {
                    continue;
                }
                // A lapsed claim was a delivery that failed.
                if raw.attempts > raw.max_retries {
                    ctx.conn()
                        .prepare_cached("UPDATE events SET status = 'dead', last_error = coalesce(last_error, 'claim lapsed') WHERE seq = ?1")?
                        .execute([raw.seq])?;
                    audit(ctx, p, "event.dead", "event", &raw.id, &swarm, Outcome::Error, serde_json::json!({ "attempts": raw.attempts }), now)?;
                    continue;
                }
                raw.attempts += 1;
                let until = now.as_millis().saturating_add(vis);
                ctx.conn()
                    .prepare_cached("UPDATE events SET status = 'claimed', claimed_by = ?2, attempts = ?3, visible_at = ?4 WHERE seq = ?1")?
                    .execute(rusqlite::params![raw.seq, by, raw.attempts, until])?;
                raw.status = "claimed".into();
                out.push((raw, until));
            }
            Ok(out)
        })?;
        raws.into_iter()
            .map(|(raw, until)| {
                let attempt = u32::try_from(raw.attempts).unwrap_or(0);
                Ok(Delivery {
                    event: raw.open(&self.shared)?,
                    attempt,
                    visible_until: Timestamp::from_millis(until),
                })
            })
            .collect()
    }

    /// Finishes a delivery. The claim must still be this consumer's, at `attempt`: once
    /// it lapsed and someone else claimed the event, the old claimer's ack is refused.
    pub fn ack_event(&self, who: &Identity, consumer: &str, seq: u64, attempt: u32) -> Result<()> {
        self.settle(who, consumer, seq, attempt, None)
    }

    /// Reports a failed delivery: the event is offered again after a backoff, or is dead
    /// once it failed more than `max_retries` times.
    pub fn fail_event(
        &self,
        who: &Identity,
        consumer: &str,
        seq: u64,
        attempt: u32,
        error: &str,
    ) -> Result<()> {
        check_text("error", error, 4096, false)?;
        self.settle(who, consumer, seq, attempt, Some(error.to_owned()))
    }

    fn settle(
        &self,
        who: &Identity,
        consumer: &str,
        seq: u64,
        attempt: u32,
        error: Option<String>,
    ) -> Result<()> {
        check_consumer(consumer)?;
        let consumer = consumer.to_owned();
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                let Some(agent) = p.as_agent() else {
                    return Ok(Err(StoreError::invalid("only agents consume events")));
                };
                let row: Option<(String, String, Option<String>, i64, i64, String)> = ctx
                    .conn()
                    .prepare_cached("SELECT id, status, claimed_by, attempts, max_retries, swarm_id FROM events WHERE seq = ?1")?
                    .query_row([i64_of(seq)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
                    .optional()?;
                let by = claimer(agent.id(), &consumer);
                let Some((id, status, claimed_by, attempts, max_retries, swarm)) = row else {
                    return Ok(Err(StoreError::NotFound(format!("event {seq}"))));
                };
                let swarm = SwarmId::new(&swarm).map_err(StoreError::from)?;
                if status != "claimed" || claimed_by.as_deref() != Some(by.as_str()) || attempts != i64::from(attempt) {
                    return Ok(Err(StoreError::Conflict {
                        key: format!("event {seq}"),
                        expected: format!("delivery {attempt} claimed by {by}"),
                        found: format!("{status}, delivery {attempts}"),
                    }));
                }
                match &error {
                    None => {
                        ctx.conn()
                            .prepare_cached("UPDATE events SET status = 'acked', acked_at = ?2 WHERE seq = ?1")?
                            .execute(rusqlite::params![i64_of(seq), now.as_millis()])?;
                        audit(ctx, p, "event.ack", "event", &id, &swarm, Outcome::Ok, serde_json::json!({ "attempt": attempt }), now)?;
                    }
                    Some(err) => {
                        let dead = attempts > max_retries;
                        let visible_at = now.as_millis().saturating_add(backoff_ms(attempt));
                        ctx.conn()
                            .prepare_cached(
                                "UPDATE events SET status = ?2, claimed_by = NULL, visible_at = ?3, last_error = ?4 WHERE seq = ?1",
                            )?
                            .execute(rusqlite::params![i64_of(seq), if dead { "dead" } else { "pending" }, visible_at, err])?;
                        let detail = serde_json::json!({ "attempt": attempt, "dead": dead });
                        audit(ctx, p, "event.fail", "event", &id, &swarm, Outcome::Error, detail, now)?;
                    }
                }
                Ok(Ok(()))
            })
            .and_then(|r| r)
    }

    /// Watches the event log for `who`, starting after `from`.
    pub fn watch_events(&self, who: &Identity, event_type: Option<&str>, from: u64) -> EventWatch {
        EventWatch {
            store: self.clone(),
            who: who.clone(),
            event_type: event_type.map(str::to_owned),
            cursor: from,
            buffer: Default::default(),
        }
    }

    /// The newest position of the event log.
    pub fn event_head(&self) -> Result<u64> {
        self.shared.check_open()?;
        let conn = self.shared.pool.get()?;
        Ok(u64_of(conn.query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))?))
    }
}

fn consumer_name(p: &swarm_acl::Principal, consumer: &str) -> Result<String> {
    match p.as_agent() {
        Some(a) => Ok(claimer(a.id(), consumer)),
        None => Err(StoreError::invalid("only agents keep event cursors")),
    }
}

fn consumer_swarm(p: &swarm_acl::Principal) -> Result<String> {
    p.as_agent()
        .map(|a| a.swarm().to_string())
        .ok_or_else(|| StoreError::invalid("only agents keep event cursors"))
}

/// Deletes expired events (never delivered anyway) and settled ones past `keep_ms`, at
/// most `batch` per call.
pub(crate) fn sweep_events(
    shared: &std::sync::Arc<Shared>,
    batch: u32,
    keep_ms: i64,
) -> Result<u64> {
    shared.write_as(&Identity::System, move |ctx, shared, _| {
        let now = shared.now().as_millis();
        let n = ctx
            .conn()
            .prepare_cached(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE (expires_at IS NOT NULL AND expires_at <= ?1) \
                 OR (status IN ('acked', 'dead') AND created_at <= ?2) LIMIT ?3)",
            )?
            .execute(rusqlite::params![now, now - keep_ms, batch])?;
        Ok(n as u64)
    })
}

/// A live view of the event log for one principal, woken by publishes in this process and
/// polling for those of others.
pub struct EventWatch {
    store: Store,
    who: Identity,
    event_type: Option<String>,
    cursor: u64,
    buffer: std::collections::VecDeque<Event>,
}

impl EventWatch {
    const POLL: Duration = Duration::from_millis(100);

    /// The position to resume from.
    pub fn cursor(&self) -> u64 {
        // `cursor` is how far the log was read; events read but not yet handed out are
        // still buffered, and resuming from `cursor` would skip them. Resume just before
        // the first of them instead.
        self.buffer.front().map_or(self.cursor, |e| e.seq.saturating_sub(1))
    }

    /// The next visible event, waiting at most `timeout`.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Event>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(e) = self.buffer.pop_front() {
                return Ok(Some(e));
            }
            let epoch = self.store.shared.events_changed.epoch();
            let page =
                self.store.events_since(&self.who, self.cursor, self.event_type.as_deref(), 256)?;
            self.cursor = page.cursor;
            if !page.events.is_empty() {
                self.buffer.extend(page.events);
                continue;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.store.shared.events_changed.wait_past(epoch, (deadline - now).min(Self::POLL));
        }
    }
}
