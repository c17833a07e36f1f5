//! `consensus ...`: rounds of votes, as the authenticated agent. One vote per agent; the
//! tally is updated after every vote and the outcome, once decided, is final and
//! published as a `consensus_decided` event.

use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use serde_json::json;
use swarm_memory::{AclLevel, Ballot, Round, RoundSpec, RoundStatus, Strategy, TeamId, Vote};

use crate::exit::{CliError, Result};
use crate::input;
use crate::open::AgentCtx;
use crate::output::{self, Reply, to_json};

#[derive(Debug, Subcommand)]
pub(crate) enum ConsensusCommand {
    /// Open a round about something (a task, a conflict, a proposal...)
    Propose(ProposeArgs),
    /// Vote on an open round and print the tally (exit 5 for a second vote or a closed
    /// round)
    Vote(VoteArgs),
    /// Show a round and its votes
    Show {
        /// The round
        id: String,
    },
    /// List rounds the agent can see, newest first
    List(ListArgs),
}

/// How votes become an outcome.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum StrategyArg {
    /// More approvals than rejections
    Majority,
    /// Approvals weighted by confidence reach --threshold
    Weighted,
    /// Every vote approves; the first rejection fails the round
    Unanimous,
    /// The share of approvals reaches --threshold
    Threshold,
}

impl StrategyArg {
    fn get(self) -> Strategy {
        match self {
            StrategyArg::Majority => Strategy::Majority,
            StrategyArg::Weighted => Strategy::Weighted,
            StrategyArg::Unanimous => Strategy::Unanimous,
            StrategyArg::Threshold => Strategy::Threshold,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct ProposeArgs {
    /// What kind of thing is decided, such as `task` or `deploy`
    #[arg(long, value_name = "T")]
    target_type: String,
    /// Which one
    #[arg(long, value_name = "ID")]
    target_id: String,
    /// What is being decided
    #[arg(long, default_value = "")]
    description: String,
    /// How votes are tallied
    #[arg(long, value_enum, default_value_t = StrategyArg::Majority)]
    strategy: StrategyArg,
    /// The share needed by the threshold and weighted strategies, in (0, 1]
    #[arg(long, value_name = "X", default_value_t = 0.5)]
    threshold: f64,
    /// Votes needed before the round can be decided
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    quorum: u32,
    /// The round expires undecided this many seconds from now
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    deadline_in: Option<u64>,
    /// ACL level: who may see and vote [default: swarm]
    #[arg(long)]
    level: Option<AclLevel>,
    /// The round's team (for team-level rounds)
    #[arg(long)]
    team: Option<TeamId>,
    /// Metadata: a JSON object
    #[arg(long, value_name = "JSON")]
    metadata: Option<String>,
    /// Use this id instead of a generated one
    #[arg(long)]
    id: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("ballot").required(true).args(["approve", "reject"])))]
pub(crate) struct VoteArgs {
    /// The round
    id: String,
    /// Vote for
    #[arg(long)]
    approve: bool,
    /// Vote against
    #[arg(long)]
    reject: bool,
    /// Confidence, 0 to 1 (weights the weighted strategy)
    #[arg(long, value_name = "C", default_value_t = 1.0)]
    confidence: f64,
    /// Why
    #[arg(long, value_name = "R", default_value = "")]
    reason: String,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only rounds with this status
    #[arg(long, value_parser = input::one_of(RoundStatus::NAMES, RoundStatus::parse))]
    status: Option<RoundStatus>,
    /// Print at most this many
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    limit: u64,
}

pub(crate) fn run(ctx: &AgentCtx, c: ConsensusCommand) -> Result<Reply> {
    match c {
        ConsensusCommand::Propose(a) => propose(ctx, a),
        ConsensusCommand::Vote(a) => vote(ctx, a),
        ConsensusCommand::Show { id } => show(ctx, &id),
        ConsensusCommand::List(a) => list(ctx, a),
    }
}

/// `2 for, 1 against (weights 1.70 / 0.90)`.
fn tally(r: &Round) -> String {
    let t = &r.tally;
    format!(
        "{} for, {} against (weights {:.2} / {:.2}), quorum {}",
        t.votes_for, t.votes_against, t.weight_for, t.weight_against, r.quorum
    )
}

fn describe(r: &Round) -> String {
    output::fields(&[
        ("id", r.id.clone()),
        ("target", format!("{} {}", r.target_type, r.target_id)),
        ("description", if r.description.is_empty() { "-".into() } else { r.description.clone() }),
        ("status", r.status.as_str().to_owned()),
        ("strategy", r.strategy.as_str().to_owned()),
        ("threshold", r.threshold.to_string()),
        ("tally", tally(r)),
        ("swarm", r.swarm.to_string()),
        ("level", output::level(r.level)),
        ("owner", output::opt(r.owner.as_ref())),
        ("team", output::opt(r.team.as_ref())),
        ("deadline", output::opt_time(r.deadline)),
        ("decided", output::opt_time(r.decided_at)),
        ("created", output::time(r.created_at.as_millis())),
    ])
}

fn propose(ctx: &AgentCtx, a: ProposeArgs) -> Result<Reply> {
    ctx.write_swarm()?;
    let mut spec = RoundSpec::new(a.target_type, a.target_id)
        .description(a.description)
        .strategy(a.strategy.get())
        .threshold(a.threshold)
        .quorum(a.quorum);
    if let Some(id) = a.id {
        spec = spec.id(id);
    }
    if let Some(secs) = a.deadline_in {
        spec = spec.deadline(input::from_now(ctx.store(), "--deadline-in", secs)?);
    }
    if let Some(l) = a.level {
        spec = spec.level(l);
    }
    if let Some(t) = a.team {
        spec = spec.team(t);
    }
    if let Some(m) = &a.metadata {
        spec = spec.metadata(input::json_object("--metadata", m)?);
    }
    let round = ctx.store().request_consensus(ctx.identity(), spec)?;
    let text = format!("opened consensus round {}\n{}", round.id, describe(&round));
    Ok(Reply::new(json!({ "round": to_json(&round)? }), text))
}

fn vote(ctx: &AgentCtx, a: VoteArgs) -> Result<Reply> {
    let ballot = if a.approve { Ballot::approve() } else { Ballot::reject() };
    let ballot = ballot.confidence(a.confidence).reason(a.reason);
    let out = ctx.store().vote(ctx.identity(), &a.id, ballot)?;
    let r = &out.round;
    let verdict = match (r.status, out.decided_now) {
        (RoundStatus::Open, _) => "the round is still open".to_owned(),
        (s, true) => format!("this vote decided the round: {}", s.as_str()),
        (s, false) => format!("the round is {}", s.as_str()),
    };
    let text = format!(
        "voted {} on round {}: {}\n{verdict}",
        if a.approve { "approve" } else { "reject" },
        r.id,
        tally(r)
    );
    let doc = json!({
        "round": to_json(r)?,
        "tally": to_json(&r.tally)?,
        "status": r.status.as_str(),
        "decided_now": out.decided_now,
    });
    Ok(Reply::new(doc, text))
}

fn vote_rows(votes: &[Vote]) -> Vec<Vec<String>> {
    votes
        .iter()
        .map(|v| {
            vec![
                v.agent.to_string(),
                if v.approve { "approve" } else { "reject" }.to_owned(),
                format!("{:.2}", v.confidence),
                output::time(v.cast_at.as_millis()),
                output::clip(&v.reason, 50),
            ]
        })
        .collect()
}

fn show(ctx: &AgentCtx, id: &str) -> Result<Reply> {
    let round = ctx
        .store()
        .get_round(ctx.identity(), id)?
        .ok_or_else(|| CliError::not_found(format!("consensus round {id} not found")))?;
    let votes = ctx.store().round_votes(ctx.identity(), id)?;
    let votes_text = if votes.is_empty() {
        "votes: none\n".to_owned()
    } else {
        format!(
            "votes:\n{}",
            output::table(&["AGENT", "VOTE", "CONFIDENCE", "CAST", "REASON"], &vote_rows(&votes))
        )
    };
    let text = format!("{}{votes_text}", describe(&round));
    Ok(Reply::new(json!({ "round": to_json(&round)?, "votes": to_json(&votes)? }), text))
}

fn list(ctx: &AgentCtx, a: ListArgs) -> Result<Reply> {
    let rounds = ctx.store().list_rounds(
        ctx.identity(),
        Some(ctx.read_swarm()),
        a.status,
        usize::try_from(a.limit).unwrap_or(1000),
    )?;
    let rows: Vec<Vec<String>> = rounds
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.status.as_str().to_owned(),
                r.strategy.as_str().to_owned(),
                format!("{}/{}", r.tally.votes_for, r.tally.votes_against),
                format!("{} {}", r.target_type, r.target_id),
                output::clip(&r.description, 50),
            ]
        })
        .collect();
    let text = if rounds.is_empty() {
        "no consensus rounds".to_owned()
    } else {
        output::table(&["ID", "STATUS", "STRATEGY", "FOR/AGAINST", "TARGET", "DESCRIPTION"], &rows)
    };
    Ok(Reply::new(json!({ "rounds": to_json(&rounds)? }), text))
}
