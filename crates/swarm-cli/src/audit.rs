//! `audit verify`, `audit tail` and `audit query`: the hash-chained audit trail, as the
//! system principal.

use clap::{Args, Subcommand};
use serde_json::json;
use swarm_memory::{AuditQuery, AuditRow, ChainProblem, Identity, SwarmMemory, VerifyReport};

use crate::exit::{CliError, Result};
use crate::output::{self, Reply, to_json};

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Walk the hash chain from the first row; exit 1 when it is broken
    Verify,
    /// Print the newest audit rows, oldest first
    Tail {
        /// How many rows
        #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 20)]
        n: u64,
    },
    /// Print the audit rows matching filters, oldest first, a page at a time
    Query(QueryArgs),
}

#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    /// Rows from this many seconds ago on
    #[arg(long, value_name = "SECS")]
    since: Option<u64>,
    /// Rows older than this many seconds ago
    #[arg(long, value_name = "SECS")]
    until: Option<u64>,
    /// Rows of this actor (an agent id, or `system`)
    #[arg(long, value_name = "ID")]
    actor: Option<String>,
    /// Rows of this action, such as `memory.set` or `grant`
    #[arg(long, value_name = "ACTION")]
    action: Option<String>,
    /// Rows with this outcome
    #[arg(long, value_parser = ["ok", "denied", "conflict", "error"])]
    outcome: Option<String>,
    /// Rows after this sequence number (the `next` of the previous page)
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    after: u64,
    /// At most this many rows (1-1000)
    #[arg(short = 'n', long = "limit", value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    limit: u16,
}

pub(crate) fn run(system: &SwarmMemory, c: AuditCommand) -> Result<Reply> {
    match c {
        AuditCommand::Verify => verify(system),
        AuditCommand::Tail { n } => tail(system, n),
        AuditCommand::Query(a) => query(system, &a),
    }
}

/// What went wrong, in words.
pub(crate) fn describe_problem(p: &ChainProblem) -> String {
    match p {
        ChainProblem::Edited { seq } => {
            format!("row {seq} was edited: its content no longer matches its hash")
        }
        ChainProblem::Removed { seq } => format!("rows are missing from row {seq} on"),
        ChainProblem::Inserted { seq } => {
            format!("row {seq} does not follow its predecessor: inserted, reordered or replaced")
        }
        ChainProblem::WitnessMismatch { version, seq } => format!(
            "the newest record's version {version} points at row {seq}, which did not write it: \
             the end of the log, a record's version or the version offset was edited"
        ),
        ChainProblem::Truncated { last, recorded } => {
            format!(
                "the newest rows were removed: the last row is {last}, the recorded head {recorded}"
            )
        }
    }
}

/// The head as text: `seq <n> hash <hex>`.
pub(crate) fn describe_head(r: &VerifyReport) -> String {
    match &r.head {
        Some((seq, hash)) => format!("seq {seq} hash {hash}"),
        None if r.problem.is_some() => "unknown: verification stopped at the break".to_owned(),
        None => "none: the trail is empty".to_owned(),
    }
}

/// The report as JSON: `{intact, rows, head: {seq, hash} | null, problem: {...} | null}`.
pub(crate) fn report_json(r: &VerifyReport) -> Result<serde_json::Value> {
    Ok(json!({
        "intact": r.is_intact(),
        "rows": r.rows,
        "head": r.head.as_ref().map(|(seq, hash)| json!({ "seq": seq, "hash": hash })),
        "problem": match &r.problem {
            Some(p) => {
                let mut doc = to_json(p)?;
                doc["description"] = json!(describe_problem(p));
                doc
            }
            None => serde_json::Value::Null,
        },
    }))
}

fn verify(system: &SwarmMemory) -> Result<Reply> {
    let report = system.store().verify_audit()?;
    let doc = report_json(&report)?;
    let head = format!("head: {}", describe_head(&report));
    match &report.problem {
        None => {
            let text = format!("audit chain intact: {} rows\n{head}", report.rows);
            Ok(Reply::new(doc, text))
        }
        Some(p) => {
            let problem = describe_problem(p);
            let text =
                format!("audit chain BROKEN (checked {} rows): {problem}\n{head}", report.rows);
            let error = CliError::unhealthy(format!("audit chain is broken: {problem}"));
            Ok(Reply::new(doc, text).failing(error))
        }
    }
}

fn tail(system: &SwarmMemory, n: u64) -> Result<Reply> {
    let rows = system.store().audit_tail(&Identity::System, n)?;
    let text =
        if rows.is_empty() { "the audit trail is empty".to_owned() } else { rows_table(&rows) };
    Ok(Reply::new(json!({ "rows": to_json(&rows)? }), text))
}

fn query(system: &SwarmMemory, a: &QueryArgs) -> Result<Reply> {
    let now = system.store().now().as_millis();
    let ago = |flag: &str, secs: u64| -> Result<i64> {
        secs.checked_mul(1000)
            .and_then(|ms| i64::try_from(ms).ok())
            .map(|ms| now.saturating_sub(ms))
            .ok_or_else(|| CliError::usage(format!("{flag} is too far back")))
    };
    let mut q = AuditQuery::new().after(a.after).limit(usize::from(a.limit));
    if let Some(s) = a.since {
        q = q.since(ago("--since", s)?);
    }
    if let Some(u) = a.until {
        q = q.until(ago("--until", u)?);
    }
    if let Some(actor) = &a.actor {
        q = q.actor(actor);
    }
    if let Some(action) = &a.action {
        q = q.action(action);
    }
    if let Some(outcome) = &a.outcome {
        q = q.outcome(outcome);
    }
    let page = system.store().audit_query(&Identity::System, &q)?;
    let mut text = if page.rows.is_empty() {
        "no matching audit rows".to_owned()
    } else {
        rows_table(&page.rows)
    };
    if let Some(n) = page.next {
        text.push_str(&format!("\nmore: run again with --after {n}"));
    }
    Ok(Reply::new(json!({ "rows": to_json(&page.rows)?, "next": page.next }), text))
}

fn rows_table(rows: &[AuditRow]) -> String {
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.seq.to_string(),
                output::time(r.at),
                r.actor.clone(),
                r.action.clone(),
                r.resource.clone(),
                r.outcome.clone(),
            ]
        })
        .collect();
    output::table(&["SEQ", "TIME", "ACTOR", "ACTION", "RESOURCE", "OUTCOME"], &table)
}
