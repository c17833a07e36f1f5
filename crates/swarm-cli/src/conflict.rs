//! `conflict ...`: conflicts the store recorded (concurrent claims, dependency cycles,
//! split consensus rounds). `list` and `resolve` run as the authenticated agent (resolving
//! needs an admin grant on what the conflict is about); `escalate` runs as the system
//! principal, like the background sweeper that does the same.

use clap::{Args, Subcommand};
use serde_json::json;
use swarm_memory::{Conflict, ConflictFilter, Identity, SwarmMemory};

use crate::exit::{CliError, Result};
use crate::input;
use crate::open::AgentCtx;
use crate::output::{self, Reply, to_json};

#[derive(Debug, Subcommand)]
pub(crate) enum ConflictCommand {
    /// List the conflicts the agent can see, newest first
    List(ListArgs),
    /// Resolve (or dismiss) an open or escalated conflict, saying how
    Resolve(ResolveArgs),
    /// Open a consensus round for each shared conflict left open too long (as the system
    /// principal)
    Escalate(EscalateArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only conflicts with this status: open, resolved, escalated or dismissed
    #[arg(long, value_name = "S")]
    status: Option<String>,
    /// Only conflicts of this type: version_mismatch, concurrent_claim, consensus_split
    /// or dependency_clash
    #[arg(long = "type", value_name = "T")]
    kind: Option<String>,
    /// Print at most this many
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    limit: u64,
}

#[derive(Debug, Args)]
pub(crate) struct ResolveArgs {
    /// The conflict
    id: String,
    /// How it was resolved
    #[arg(long, value_name = "TEXT")]
    resolution: String,
    /// Dismiss it instead: nothing needed doing
    #[arg(long)]
    dismiss: bool,
}

#[derive(Debug, Args)]
pub(crate) struct EscalateArgs {
    /// Escalate conflicts open for at least this many seconds
    #[arg(long, value_name = "SECS")]
    older_than: u64,
}

/// Runs the agent's subcommands (everything but `escalate`).
pub(crate) fn run(ctx: &AgentCtx, c: ConflictCommand) -> Result<Reply> {
    match c {
        ConflictCommand::List(a) => list(ctx, a),
        ConflictCommand::Resolve(a) => resolve(ctx, a),
        ConflictCommand::Escalate(a) => Err(CliError::usage(format!(
            "`conflict escalate --older-than {}` runs as the system principal",
            a.older_than
        ))),
    }
}

fn entity(e: &(String, String)) -> String {
    format!("{} {}", e.0, e.1)
}

fn describe(c: &Conflict) -> String {
    output::fields(&[
        ("id", c.id.clone()),
        ("type", c.kind.clone()),
        ("status", c.status.clone()),
        ("severity", c.severity.clone()),
        ("about", entity(&c.entity_a)),
        ("and", c.entity_b.as_ref().map_or_else(|| "-".to_owned(), entity)),
        ("description", c.description.clone()),
        ("strategy", c.strategy.clone()),
        ("resolution", output::opt(c.resolution.as_ref())),
        ("resolved by", output::opt(c.resolved_by.as_ref())),
        ("resolved", output::opt_time(c.resolved_at)),
        ("consensus", output::opt(c.consensus_id.as_ref())),
        ("level", output::level(c.level)),
        ("created", output::time(c.created_at.as_millis())),
    ])
}

fn list(ctx: &AgentCtx, a: ListArgs) -> Result<Reply> {
    let filter = ConflictFilter {
        swarm: Some(ctx.read_swarm().clone()),
        status: a.status,
        kind: a.kind,
        limit: Some(usize::try_from(a.limit).unwrap_or(1000)),
    };
    let conflicts = ctx.store().list_conflicts(ctx.identity(), &filter)?;
    let rows: Vec<Vec<String>> = conflicts
        .iter()
        .map(|c| {
            vec![
                c.id.clone(),
                c.kind.clone(),
                c.status.clone(),
                c.severity.clone(),
                entity(&c.entity_a),
                output::clip(&c.description, 60),
            ]
        })
        .collect();
    let text = if conflicts.is_empty() {
        "no conflicts".to_owned()
    } else {
        output::table(&["ID", "TYPE", "STATUS", "SEVERITY", "ABOUT", "DESCRIPTION"], &rows)
    };
    Ok(Reply::new(json!({ "conflicts": to_json(&conflicts)? }), text))
}

fn resolve(ctx: &AgentCtx, a: ResolveArgs) -> Result<Reply> {
    let c = ctx.store().resolve_conflict(ctx.identity(), &a.id, &a.resolution, a.dismiss)?;
    let text = format!(
        "{} conflict {}\n{}",
        if a.dismiss { "dismissed" } else { "resolved" },
        c.id,
        describe(&c)
    );
    Ok(Reply::new(json!({ "conflict": to_json(&c)? }), text))
}

/// `conflict escalate`, as the system principal.
pub(crate) fn escalate(system: &SwarmMemory, a: &EscalateArgs) -> Result<Reply> {
    let older = input::millis("--older-than", a.older_than)?;
    let n = system.store().escalate_stale_conflicts(&Identity::System, older)?;
    let text = format!(
        "escalated {n} conflict{} open for {} s or more to consensus rounds",
        if n == 1 { "" } else { "s" },
        a.older_than
    );
    Ok(Reply::new(json!({ "escalated": n, "older_than_secs": a.older_than }), text))
}
