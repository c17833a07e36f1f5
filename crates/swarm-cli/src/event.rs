//! `event ...`: the durable event bus, as the authenticated agent.
//!
//! Two ways to read it: the log (`list`, `follow`), where every reader sees every event
//! it may see, and the queue (`claim`, `ack`, `fail`), where each event is handed to one
//! consumer at a time until acknowledged, retried, or dead after its retries.

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{Value as Json, json};
use swarm_memory::{AclLevel, Delivery, Event, EventSpec, EventStatus, TeamId};

use crate::exit::{CliError, Result};
use crate::input;
use crate::open::AgentCtx;
use crate::output::{self, Reply, to_json};

/// The consumer name used when `--consumer` is not given.
const DEFAULT_CONSUMER: &str = "cli";

#[derive(Debug, Subcommand)]
pub(crate) enum EventCommand {
    /// Publish an event in the agent's swarm
    Publish(PublishArgs),
    /// Read the log: events after a position, oldest first, and the cursor to resume from
    List(ListArgs),
    /// Take events off the queue for a consumer, highest priority first; each must be
    /// acknowledged (`ack`) or failed (`fail`) before its visibility timeout
    Claim(ClaimArgs),
    /// Acknowledge a claimed event: done, never delivered again
    Ack(AckArgs),
    /// Report a claimed event as failed: offered again after a backoff, or dead once
    /// its retries are used up
    Fail(FailArgs),
    /// Print events as they arrive, resuming from the consumer's committed cursor and
    /// committing it as it goes, until Ctrl-C or --timeout. The cursor is one position
    /// in the log: give each --type its own --consumer
    Follow(FollowArgs),
    /// Show one event
    Show {
        /// The event's position in the log
        seq: u64,
    },
}

#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The event type, such as `build_finished`
    #[arg(value_name = "TYPE")]
    event_type: String,
    /// The payload: a JSON document, or `-` to read it from stdin [default: {}]
    #[arg(value_name = "PAYLOAD_JSON")]
    payload: Option<String>,
    /// Address it to one agent: only it may claim it
    #[arg(long, value_name = "AGENT")]
    target: Option<String>,
    /// Priority, 0 (lowest) to 10 (highest)
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(0..=10))]
    priority: u8,
    /// Expire after this many seconds: never delivered afterwards
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    ttl: Option<u64>,
    /// ACL level: 1-5 or private, team, swarm, public, system [default: swarm]
    #[arg(long)]
    level: Option<AclLevel>,
    /// The event's team (for team-level events)
    #[arg(long)]
    team: Option<TeamId>,
    /// The event this one follows from
    #[arg(long, value_name = "SEQ")]
    parent: Option<u64>,
    /// Deliveries after the first before the event is dead (0-100)
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=100))]
    max_retries: u32,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only events after this position [default: 0, the start of the log]
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    after: u64,
    /// Only events of this type
    #[arg(long = "type", value_name = "TYPE")]
    event_type: Option<String>,
    /// Print at most this many
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    limit: u64,
}

/// `--consumer`, shared by the queue commands.
#[derive(Debug, Args)]
pub(crate) struct Consumer {
    /// The consumer's name: one agent may run several consumers
    #[arg(long, value_name = "NAME", default_value = DEFAULT_CONSUMER)]
    consumer: String,
}

#[derive(Debug, Args)]
pub(crate) struct ClaimArgs {
    #[command(flatten)]
    consumer: Consumer,
    /// Claim at most this many
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100))]
    limit: u64,
    /// Seconds before an unacknowledged claim lapses and the event is offered again
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    visibility: u64,
}

#[derive(Debug, Args)]
pub(crate) struct AckArgs {
    /// The event's position in the log
    seq: u64,
    /// The delivery attempt, as printed by `event claim`
    #[arg(long, value_name = "N")]
    attempt: u32,
    #[command(flatten)]
    consumer: Consumer,
}

#[derive(Debug, Args)]
pub(crate) struct FailArgs {
    /// The event's position in the log
    seq: u64,
    /// The delivery attempt, as printed by `event claim`
    #[arg(long, value_name = "N")]
    attempt: u32,
    /// What went wrong
    #[arg(long, value_name = "E")]
    error: String,
    #[command(flatten)]
    consumer: Consumer,
}

#[derive(Debug, Args)]
pub(crate) struct FollowArgs {
    #[command(flatten)]
    consumer: Consumer,
    /// Only events of this type
    #[arg(long = "type", value_name = "TYPE")]
    event_type: Option<String>,
    /// Stop after this many seconds [default: run until Ctrl-C]
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
}

pub(crate) fn run(ctx: &AgentCtx, c: EventCommand) -> Result<Reply> {
    match c {
        EventCommand::Publish(a) => publish(ctx, a),
        EventCommand::List(a) => list(ctx, a),
        EventCommand::Claim(a) => claim(ctx, a),
        EventCommand::Ack(a) => ack(ctx, a),
        EventCommand::Fail(a) => fail(ctx, a),
        EventCommand::Follow(a) => follow(ctx, a),
        EventCommand::Show { seq } => show(ctx, seq),
    }
}

/// The same words whether the event is absent, expired or invisible to the agent.
fn not_found(seq: u64) -> CliError {
    CliError::not_found(format!("event {seq} not found"))
}

/// An event on one line: `seq type from source: payload`.
fn line(e: &Event) -> String {
    format!(
        "{} {} from {}: {}",
        e.seq,
        e.event_type,
        e.source.as_ref().map_or("system", |s| s.as_str()),
        e.payload
    )
}

fn describe(e: &Event) -> String {
    output::fields(&[
        ("seq", e.seq.to_string()),
        ("id", e.id.clone()),
        ("type", e.event_type.clone()),
        ("swarm", e.swarm.to_string()),
        ("source", e.source.as_ref().map_or("system".to_owned(), ToString::to_string)),
        ("target", output::opt(e.target.as_ref())),
        ("priority", e.priority.to_string()),
        ("level", output::level(e.level)),
        ("team", output::opt(e.team.as_ref())),
        ("parent", output::opt(e.parent)),
        ("status", e.status.as_str().to_owned()),
        ("attempts", format!("{} of {} retries", e.attempts, e.max_retries)),
        ("last error", output::opt(e.last_error.as_ref())),
        ("published", output::time(e.created_at.as_millis())),
        ("expires", output::opt_time(e.expires_at)),
        ("payload", e.payload.to_string()),
    ])
}

fn publish(ctx: &AgentCtx, a: PublishArgs) -> Result<Reply> {
    ctx.write_swarm()?;
    let payload = match a.payload.as_deref() {
        None => json!({}),
        Some("-") => {
            let bytes = input::stdin_bytes()?;
            let text = String::from_utf8(bytes)
                .map_err(|_| CliError::usage("the payload on stdin is not UTF-8 JSON"))?;
            input::json_value("PAYLOAD_JSON", &text)?
        }
        Some(text) => input::json_value("PAYLOAD_JSON", text)?,
    };
    let mut spec =
        EventSpec::new(a.event_type, payload).priority(a.priority).max_retries(a.max_retries);
    if let Some(t) = a.target {
        spec = spec.target(t);
    }
    if let Some(secs) = a.ttl {
        spec = spec.ttl(input::seconds(secs));
    }
    if let Some(l) = a.level {
        spec = spec.level(l);
    }
    if let Some(t) = a.team {
        spec = spec.team(t);
    }
    if let Some(p) = a.parent {
        spec = spec.parent(p);
    }
    let event = ctx.store().publish_event(ctx.identity(), spec)?;
    let text = format!("published event {} ({})", event.seq, event.event_type);
    Ok(Reply::new(json!({ "event": to_json(&event)? }), text))
}

fn list(ctx: &AgentCtx, a: ListArgs) -> Result<Reply> {
    let limit = usize::try_from(a.limit).unwrap_or(1000);
    let page = ctx.store().events_since(ctx.identity(), a.after, a.event_type.as_deref(), limit)?;
    let rows: Vec<Vec<String>> = page
        .events
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                output::time(e.created_at.as_millis()),
                e.event_type.clone(),
                e.source.as_ref().map_or("system".to_owned(), ToString::to_string),
                e.priority.to_string(),
                output::clip(&e.payload.to_string(), 60),
            ]
        })
        .collect();
    let mut text = if page.events.is_empty() {
        "no events\n".to_owned()
    } else {
        output::table(&["SEQ", "TIME", "TYPE", "SOURCE", "PRI", "PAYLOAD"], &rows)
    };
    text.push_str(&format!("cursor: {} (resume with --after {})", page.cursor, page.cursor));
    let doc = json!({ "events": to_json(&page.events)?, "cursor": page.cursor });
    Ok(Reply::new(doc, text))
}

fn delivery_json(d: &Delivery) -> Result<Json> {
    Ok(json!({
        "event": to_json(&d.event)?,
        "attempt": d.attempt,
        "visible_until": d.visible_until.as_millis(),
    }))
}

fn claim(ctx: &AgentCtx, a: ClaimArgs) -> Result<Reply> {
    let limit = usize::try_from(a.limit).unwrap_or(100);
    let got = ctx.store().claim_events(
        ctx.identity(),
        &a.consumer.consumer,
        limit,
        input::seconds(a.visibility),
    )?;
    let rows: Vec<Vec<String>> = got
        .iter()
        .map(|d| {
            vec![
                d.event.seq.to_string(),
                d.attempt.to_string(),
                d.event.event_type.clone(),
                d.event.priority.to_string(),
                output::time(d.visible_until.as_millis()),
                output::clip(&d.event.payload.to_string(), 60),
            ]
        })
        .collect();
    let text = if got.is_empty() {
        "no events to claim".to_owned()
    } else {
        output::table(&["SEQ", "ATTEMPT", "TYPE", "PRI", "UNTIL", "PAYLOAD"], &rows)
    };
    let deliveries = got.iter().map(delivery_json).collect::<Result<Vec<_>>>()?;
    let doc = json!({ "consumer": a.consumer.consumer, "deliveries": deliveries });
    Ok(Reply::new(doc, text))
}

fn ack(ctx: &AgentCtx, a: AckArgs) -> Result<Reply> {
    ctx.store().ack_event(ctx.identity(), &a.consumer.consumer, a.seq, a.attempt)?;
    let doc = json!({ "seq": a.seq, "attempt": a.attempt, "status": "acked" });
    Ok(Reply::new(doc, format!("acknowledged event {}", a.seq)))
}

fn fail(ctx: &AgentCtx, a: FailArgs) -> Result<Reply> {
    ctx.store().fail_event(ctx.identity(), &a.consumer.consumer, a.seq, a.attempt, &a.error)?;
    // Whether it will be offered again or is dead now.
    let status = ctx.store().get_event(ctx.identity(), a.seq)?.map(|e| e.status);
    let text = match status {
        Some(EventStatus::Dead) => format!("event {} failed for good: it is dead", a.seq),
        _ => format!("event {} failed: it will be offered again", a.seq),
    };
    let doc = json!({ "seq": a.seq, "attempt": a.attempt, "status": status });
    Ok(Reply::new(doc, text))
}

fn follow(ctx: &AgentCtx, a: FollowArgs) -> Result<Reply> {
    let (store, who, consumer) = (ctx.store(), ctx.identity(), a.consumer.consumer.as_str());
    let mut committed = store.event_cursor(who, consumer)?;
    let mut events = store.watch_events(who, a.event_type.as_deref(), committed);
    let deadline = a.timeout.map(|s| Instant::now() + Duration::from_secs(s));
    // On stderr, so a reader of stdout sees only events; it also says the follow is in
    // place.
    output::stderr_line(&format!(
        "following events of swarm {} as consumer {consumer} from seq {committed}{} ({})",
        ctx.read_swarm(),
        a.event_type.as_ref().map_or(String::new(), |t| format!(", type {t}")),
        if a.timeout.is_some() { "until --timeout" } else { "Ctrl-C to stop" }
    ));
    loop {
        let wait = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left,
                _ => break,
            },
            None => Duration::from_secs(60),
        };
        match events.next_timeout(wait)? {
            Some(e) => {
                output::stream_item(ctx.json, &to_json(&e)?, &line(&e))?;
                // Printed, then committed: a follow stopped in between prints that event
                // once more next time (at least once, never lost).
                store.commit_event_cursor(who, consumer, e.seq)?;
                committed = committed.max(e.seq);
            }
            None => {
                // Nothing buffered: the watch's cursor is past everything looked at,
                // visible or not.
                let at = events.cursor();
                if at > committed {
                    store.commit_event_cursor(who, consumer, at)?;
                    committed = at;
                }
            }
        }
    }
    Ok(Reply::streamed())
}

fn show(ctx: &AgentCtx, seq: u64) -> Result<Reply> {
    let event = ctx.store().get_event(ctx.identity(), seq)?.ok_or_else(|| not_found(seq))?;
    Ok(Reply::new(json!({ "event": to_json(&event)? }), describe(&event)))
}
