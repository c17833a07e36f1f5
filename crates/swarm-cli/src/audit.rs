//! `audit verify` and `audit tail`: the hash-chained audit trail, as the system principal.

use clap::Subcommand;
use serde_json::json;
use swarm_memory::{ChainProblem, Identity, SwarmMemory, VerifyReport};

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
}

pub(crate) fn run(system: &SwarmMemory, c: AuditCommand) -> Result<Reply> {
    match c {
        AuditCommand::Verify => verify(system),
        AuditCommand::Tail { n } => tail(system, n),
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
    let text = if rows.is_empty() {
        "the audit trail is empty".to_owned()
    } else {
        output::table(&["SEQ", "TIME", "ACTOR", "ACTION", "RESOURCE", "OUTCOME"], &table)
    };
    Ok(Reply::new(json!({ "rows": to_json(&rows)? }), text))
}
