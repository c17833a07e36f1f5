//! `consensus_propose`, `consensus_vote`, `consensus_status`.

use rmcp::schemars::{self, JsonSchema};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use swarm_memory::{Ballot, Round, RoundSpec, RoundStatus, Strategy};

use super::{Ctx, Level, level_name, limit, seconds, team};
use crate::reply::{Outcome, PAGE_BUDGET, Reply, ToolError, clip, json_len};

fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object" })
}

/// How votes decide a round.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(rename_all = "lowercase")]
pub(crate) enum StrategyArg {
    /// More approvals than rejections (default).
    Majority,
    /// Approvals weighted by confidence reach the threshold.
    Weighted,
    /// Every vote approves; one rejection fails the round.
    Unanimous,
    /// The share of approvals reaches the threshold.
    Threshold,
}

impl From<StrategyArg> for Strategy {
    fn from(s: StrategyArg) -> Self {
        match s {
            StrategyArg::Majority => Strategy::Majority,
            StrategyArg::Weighted => Strategy::Weighted,
            StrategyArg::Unanimous => Strategy::Unanimous,
            StrategyArg::Threshold => Strategy::Threshold,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub(crate) struct ProposeArgs {
    /// What is being decided, such as a task id or `release-1.4` (1-512 characters).
    target_id: String,
    /// The kind of thing decided, such as `task`, `design` or `release` (default
    /// `decision`).
    target_type: Option<String>,
    /// The question, for the voters.
    description: Option<String>,
    /// How votes decide it (default majority).
    strategy: Option<StrategyArg>,
    /// For threshold and weighted: the share needed, in (0, 1] (default 0.5).
    threshold: Option<f64>,
    /// Votes needed before the round can be decided (default 1).
    quorum: Option<u32>,
    /// Expire undecided after this many seconds.
    deadline_in_seconds: Option<u64>,
    /// Who may see and vote: `private`, `team`, `swarm` (default) or `public`.
    level: Option<Level>,
    /// The team of a team-level round.
    team: Option<String>,
    /// Free-form metadata (a JSON object).
    #[schemars(schema_with = "any_object")]
    metadata: Option<Json>,
}

pub(crate) fn propose(ctx: &Ctx, a: ProposeArgs) -> Outcome {
    let mut spec = RoundSpec::new(a.target_type.unwrap_or_else(|| "decision".into()), a.target_id);
    if let Some(d) = a.description {
        spec = spec.description(d);
    }
    if let Some(s) = a.strategy {
        spec = spec.strategy(s.into());
    }
    if let Some(t) = a.threshold {
        spec = spec.threshold(t);
    }
    if let Some(q) = a.quorum {
        spec = spec.quorum(q);
    }
    if let Some(s) = a.deadline_in_seconds {
        let ms = i64::try_from(seconds("deadline_in_seconds", s)?.as_millis())
            .map_err(|_| ToolError::invalid("deadline_in_seconds is too large"))?;
        spec = spec.deadline(ctx.store().now().plus_millis(ms));
    }
    if let Some(l) = a.level {
        spec = spec.level(l.into());
    }
    if let Some(t) = team(a.team.as_deref())? {
        spec = spec.team(t);
    }
    if let Some(m) = a.metadata {
        spec = spec.metadata(m);
    }
    let round = ctx.store().request_consensus(ctx.who(), spec)?;
    Ok(Reply::new(json!({ "round": round_json(&round, false) })))
}

/// A round for output; `brief` shortens the description and leaves out metadata.
fn round_json(r: &Round, brief: bool) -> Json {
    let mut doc = json!({
        "id": r.id,
        "target_type": r.target_type,
        "target_id": r.target_id,
        "description": if brief { clip(&r.description, 200) } else { r.description.clone() },
        "strategy": r.strategy,
        "threshold": r.threshold,
        "quorum": r.quorum,
        "status": r.status,
        "level": level_name(r.level),
        "owner": r.owner,
        "team": r.team,
        "tally": {
            "for": r.tally.votes_for,
            "against": r.tally.votes_against,
            "weight_for": r.tally.weight_for,
            "weight_against": r.tally.weight_against,
        },
        "deadline": r.deadline,
        "decided_at": r.decided_at,
        "created_at": r.created_at,
    });
    if !brief {
        doc["metadata"] = r.metadata.clone();
    }
    doc
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub(crate) struct VoteArgs {
    /// The round id.
    id: String,
    /// Approve (true) or reject (false).
    approve: bool,
    /// How sure, 0 to 1 (default 1); weights the weighted strategy.
    confidence: Option<f64>,
    /// Why, for the other agents.
    reason: Option<String>,
}

pub(crate) fn vote(ctx: &Ctx, a: VoteArgs) -> Outcome {
    let mut ballot = if a.approve { Ballot::approve() } else { Ballot::reject() };
    if let Some(c) = a.confidence {
        ballot = ballot.confidence(c);
    }
    if let Some(r) = a.reason {
        ballot = ballot.reason(r);
    }
    let out = ctx.store().vote(ctx.who(), &a.id, ballot)?;
    Ok(Reply::new(json!({
        "round": round_json(&out.round, false),
        "decided_now": out.decided_now,
    })))
}

/// A round status, for filters.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(rename_all = "lowercase")]
pub(crate) enum StatusArg {
    /// Taking votes.
    Open,
    /// Decided: approved.
    Achieved,
    /// Decided: rejected.
    Failed,
    /// The deadline passed undecided.
    Expired,
}

impl From<StatusArg> for RoundStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Open => RoundStatus::Open,
            StatusArg::Achieved => RoundStatus::Achieved,
            StatusArg::Failed => RoundStatus::Failed,
            StatusArg::Expired => RoundStatus::Expired,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusArgs {
    /// One round's id (with its votes); leave out to list rounds.
    id: Option<String>,
    /// When listing: only rounds with this status.
    status: Option<StatusArg>,
    /// When listing: most rounds, 1 to 50 (default 20).
    limit: Option<u32>,
}

pub(crate) fn status(ctx: &Ctx, a: StatusArgs) -> Outcome {
    let store = ctx.store();
    match a.id {
        Some(id) => {
            if a.status.is_some() || a.limit.is_some() {
                return Err(ToolError::invalid("status and limit are for listing: leave out id"));
            }
            let Some(round) = store.get_round(ctx.who(), &id)? else {
                return Err(ToolError::not_found(format!("consensus round {id}")));
            };
            let round_doc = round_json(&round, false);
            let mut used = json_len(&round_doc);
            let mut votes = Vec::new();
            let mut truncated = false;
            for v in store.round_votes(ctx.who(), &id)? {
                let doc = json!({
                    "agent": v.agent,
                    "approve": v.approve,
                    "confidence": v.confidence,
                    "reason": clip(&v.reason, 300),
                    "cast_at": v.cast_at,
                });
                let len = json_len(&doc) + 1;
                if used + len > PAGE_BUDGET {
                    truncated = true;
                    break;
                }
                used += len;
                votes.push(doc);
            }
            Ok(Reply::new(json!({
                "round": round_doc,
                "votes": votes,
                "votes_truncated": truncated,
            })))
        }
        None => {
            let limit = limit(a.limit, 20, 50)?;
            let rounds = store.list_rounds(ctx.who(), None, a.status.map(Into::into), limit)?;
            let mut out = Vec::new();
            let mut used = 0;
            let mut truncated = false;
            for r in &rounds {
                let doc = round_json(r, true);
                let len = json_len(&doc) + 1;
                if !out.is_empty() && used + len > PAGE_BUDGET {
                    truncated = true;
                    break;
                }
                used += len;
                out.push(doc);
            }
            Ok(Reply::new(json!({ "rounds": out, "truncated": truncated })))
        }
    }
}
