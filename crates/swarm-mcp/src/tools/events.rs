//! `event_publish`, `event_poll`.

use std::time::Duration;

use rmcp::schemars::{self, JsonSchema};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use swarm_memory::{Event, EventSpec};

use super::{Ctx, Level, level_name, limit, seconds, team};
use crate::reply::{Outcome, PAGE_BUDGET, Reply, ToolError, clip, json_len};

/// Longest wait of one poll, in milliseconds.
const MAX_WAIT_MS: u64 = 20_000;
/// Characters of one event's payload shown whole; a larger payload is shown as a preview.
const MAX_PAYLOAD_CHARS: usize = 4_000;
/// The consumer name used when none is given.
const DEFAULT_CONSUMER: &str = "mcp";

fn any_value(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({})
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishArgs {
    /// The event type, such as `build.finished` (1-128 characters).
    #[serde(rename = "type")]
    event_type: String,
    /// The payload: any JSON (default `{}`, at most 256 KiB).
    #[schemars(schema_with = "any_value")]
    payload: Option<Json>,
    /// Priority 0 (lowest) to 10 (highest), default 5.
    priority: Option<u8>,
    /// Who may read it: `private`, `team`, `swarm` (default) or `public`.
    level: Option<Level>,
    /// The team of a team-level event.
    team: Option<String>,
    /// Expire after this many seconds (default: never).
    ttl_seconds: Option<u64>,
    /// Address it to one agent id.
    target: Option<String>,
    /// The sequence number of the event this one answers.
    parent: Option<u64>,
}

pub(crate) fn publish(ctx: &Ctx, a: PublishArgs) -> Outcome {
    let mut spec = EventSpec::new(a.event_type, a.payload.unwrap_or_else(|| json!({})));
    if let Some(p) = a.priority {
        spec = spec.priority(p);
    }
    if let Some(l) = a.level {
        spec = spec.level(l.into());
    }
    if let Some(t) = team(a.team.as_deref())? {
        spec = spec.team(t);
    }
    if let Some(s) = a.ttl_seconds {
        spec = spec.ttl(seconds("ttl_seconds", s)?);
    }
    if let Some(t) = a.target {
        spec = spec.target(t);
    }
    if let Some(p) = a.parent {
        spec = spec.parent(p);
    }
    let e = ctx.store().publish_event(ctx.who(), spec)?;
    Ok(Reply::new(json!({
        "seq": e.seq,
        "id": e.id,
        "type": e.event_type,
        "level": level_name(e.level),
        "created_at": e.created_at,
        "expires_at": e.expires_at,
    })))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub(crate) struct PollArgs {
    /// Return events after this sequence number (default: where `consumer` got to).
    since: Option<u64>,
    /// The name of this agent's durable cursor (default `mcp`): letters, digits, `-`, `_`,
    /// `.`, `:`.
    consumer: Option<String>,
    /// Only events of this type.
    #[serde(rename = "type")]
    event_type: Option<String>,
    /// Most events, 1 to 50 (default 20).
    limit: Option<u32>,
    /// When there is no event yet, wait up to this many milliseconds for one (0 to 20000,
    /// default 0).
    #[serde(default)]
    wait_ms: u64,
}

pub(crate) fn poll(ctx: &Ctx, a: PollArgs) -> Outcome {
    let limit = limit(a.limit, 20, 50)?;
    if a.wait_ms > MAX_WAIT_MS {
        return Err(ToolError::invalid(format!("wait_ms must be 0 to {MAX_WAIT_MS}")));
    }
    let store = ctx.store();
    let who = ctx.who();
    let consumer = a.consumer.unwrap_or_else(|| DEFAULT_CONSUMER.to_owned());
    let since = match a.since {
        Some(s) => s,
        None => store.event_cursor(who, &consumer)?,
    };
    let mut watch = store.watch_events(who, a.event_type.as_deref(), since);
    let mut events: Vec<Json> = Vec::new();
    let mut used = 0;
    let mut cursor = since;
    let mut wait = Duration::from_millis(a.wait_ms);
    let mut full = false;
    while events.len() < limit {
        let Some(e) = watch.next_timeout(wait)? else {
            cursor = cursor.max(watch.cursor());
            break;
        };
        // Only the first event is waited for; the rest are what is there already.
        wait = Duration::ZERO;
        let doc = event_json(&e);
        let len = json_len(&doc) + 1;
        if !events.is_empty() && used + len > PAGE_BUDGET {
            // Not returned: the cursor stays before it, so the next poll starts with it.
            full = true;
            break;
        }
        used += len;
        events.push(doc);
        cursor = e.seq;
    }
    if events.len() == limit || full {
        // Stopped on the limit or the size budget: resume right after the last event given.
    } else {
        cursor = cursor.max(watch.cursor());
    }
    // The consumer's cursor only moves forward (the store keeps the larger of the two).
    store.commit_event_cursor(who, &consumer, cursor)?;
    Ok(Reply::new(json!({
        "events": events,
        "cursor": cursor,
        "consumer": consumer,
        "more": full || events.len() == limit,
    })))
}

/// An event for output, its payload shown as a preview when large.
fn event_json(e: &Event) -> Json {
    let payload_text = e.payload.to_string();
    let payload = if payload_text.chars().count() > MAX_PAYLOAD_CHARS {
        json!({
            "truncated": true,
            "size": payload_text.len(),
            "preview": clip(&payload_text, 500),
        })
    } else {
        e.payload.clone()
    };
    json!({
        "seq": e.seq,
        "id": e.id,
        "type": e.event_type,
        "source": e.source,
        "target": e.target,
        "payload": payload,
        "priority": e.priority,
        "level": level_name(e.level),
        "team": e.team,
        "parent": e.parent,
        "created_at": e.created_at,
        "expires_at": e.expires_at,
    })
}
