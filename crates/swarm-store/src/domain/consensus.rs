//! Consensus rounds: a request, one vote per agent, a tally after every vote, and an
//! outcome recorded once (a trigger makes it final even against hand-written SQL) and
//! published as an event.

use rusqlite::{OptionalExtension, Row, params_from_iter};
use serde::Serialize;
use swarm_acl::{
    AclLevel, Action, AgentId, Identity, Principal, ResourceType, SwarmId, TeamId, Timestamp,
    sql_predicate,
};

use super::events::{EventRecord, publish_in_tx};
use super::{
    Scope, allowed, audit, check_id, check_text, columns, deny, json_object, new_id, new_scope,
};
use crate::audit::Outcome;
use crate::error::{Result, StoreError};
use crate::sql::{Bind, push_pred};
use crate::store::Store;
use crate::txn::WriteCtx;

const COLS: swarm_acl::SqlColumns<'static> =
    columns("c.acl_level", "c.swarm_id", "c.owner_id", "c.team_id");
const RESOURCE: ResourceType = ResourceType::Consensus;

/// How votes are turned into an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// More approvals than rejections among the votes cast (strictly more than half).
    Majority,
    /// Approvals weighted by the voters' confidence reach the threshold.
    Weighted,
    /// Every vote approves; the first rejection fails the round.
    Unanimous,
    /// The share of approvals reaches the threshold.
    Threshold,
}

crate::names::string_forms!(Strategy, "strategy", {
    Majority => "majority",
    Weighted => "weighted",
    Unanimous => "unanimous",
    Threshold => "threshold",
});

/// Where a round stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoundStatus {
    /// Taking votes.
    Open,
    /// Decided: approved.
    Achieved,
    /// Decided: rejected.
    Failed,
    /// The deadline passed undecided.
    Expired,
}

crate::names::string_forms!(RoundStatus, "round status", {
    Open => "open",
    Achieved => "achieved",
    Failed => "failed",
    Expired => "expired",
});

/// Votes so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Approvals.
    pub votes_for: u32,
    /// Rejections.
    pub votes_against: u32,
    /// Sum of the approvers' confidence.
    pub weight_for: f64,
    /// Sum of the rejecters' confidence.
    pub weight_against: f64,
}

impl Tally {
    /// Votes cast.
    pub fn cast(&self) -> u32 {
        self.votes_for + self.votes_against
    }
}

/// The tally rule (the same one swarm-coord's Redis script applies across hosts).
///
/// Before `quorum` votes are cast a round stays open, except that a unanimous round fails
/// at its first rejection. Once `cast >= quorum`: majority is achieved iff
/// `2 * for > cast`; threshold iff `for >= threshold * cast`; weighted iff the confidence
/// weights are not all zero and `w_for >= threshold * (w_for + w_against)`; unanimous iff
/// there is no rejection. Otherwise the round fails.
pub fn decide_tally(strategy: Strategy, threshold: f64, quorum: u32, t: &Tally) -> RoundStatus {
    if strategy == Strategy::Unanimous && t.votes_against > 0 {
        return RoundStatus::Failed;
    }
    let cast = t.cast();
    if cast < quorum.max(1) {
        return RoundStatus::Open;
    }
    let achieved = match strategy {
        Strategy::Majority => 2 * u64::from(t.votes_for) > u64::from(cast),
        Strategy::Threshold => f64::from(t.votes_for) >= threshold * f64::from(cast),
        Strategy::Weighted => {
            let total = t.weight_for + t.weight_against;
            total > 0.0 && t.weight_for >= threshold * total
        }
        Strategy::Unanimous => t.votes_against == 0,
    };
    if achieved { RoundStatus::Achieved } else { RoundStatus::Failed }
}

/// What to ask the swarm.
#[derive(Clone, Debug)]
pub struct RoundSpec {
    id: Option<String>,
    swarm: Option<SwarmId>,
    target_id: String,
    target_type: String,
    description: String,
    strategy: Strategy,
    threshold: f64,
    quorum: u32,
    deadline: Option<Timestamp>,
    level: Option<AclLevel>,
    team: Option<TeamId>,
    metadata: serde_json::Value,
}

impl RoundSpec {
    /// A majority round about `target_type` `target_id`, quorum 1, swarm level.
    pub fn new(target_type: impl Into<String>, target_id: impl Into<String>) -> Self {
        Self {
            id: None,
            swarm: None,
            target_id: target_id.into(),
            target_type: target_type.into(),
            description: String::new(),
            strategy: Strategy::Majority,
            threshold: 0.5,
            quorum: 1,
            deadline: None,
            level: None,
            team: None,
            metadata: serde_json::json!({}),
        }
    }

    /// Use this id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
    /// The swarm (the system principal must name one; agents use their own).
    pub fn swarm(mut self, s: SwarmId) -> Self {
        self.swarm = Some(s);
        self
    }
    /// What is being decided.
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.description = d.into();
        self
    }
    /// The strategy.
    pub fn strategy(mut self, s: Strategy) -> Self {
        self.strategy = s;
        self
    }
    /// The threshold in (0, 1] (threshold and weighted strategies).
    pub fn threshold(mut self, t: f64) -> Self {
        self.threshold = t;
        self
    }
    /// Votes needed before the round can be decided (at least 1).
    pub fn quorum(mut self, q: u32) -> Self {
        self.quorum = q;
        self
    }
    /// When the round expires undecided.
    pub fn deadline(mut self, at: Timestamp) -> Self {
        self.deadline = Some(at);
        self
    }
    /// ACL level (default swarm): who may see the round and vote.
    pub fn level(mut self, l: AclLevel) -> Self {
        self.level = Some(l);
        self
    }
    /// Team, for team-level rounds.
    pub fn team(mut self, t: TeamId) -> Self {
        self.team = Some(t);
        self
    }
    /// Metadata (a JSON object).
    pub fn metadata(mut self, m: serde_json::Value) -> Self {
        self.metadata = m;
        self
    }
}

/// A round as read.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Round {
    /// Id.
    pub id: String,
    /// Swarm.
    pub swarm: SwarmId,
    /// What it is about.
    pub target_type: String,
    /// Which one.
    pub target_id: String,
    /// Description.
    pub description: String,
    /// Strategy.
    pub strategy: Strategy,
    /// Threshold.
    pub threshold: f64,
    /// Quorum.
    pub quorum: u32,
    /// Status.
    pub status: RoundStatus,
    /// Level.
    pub level: AclLevel,
    /// Who asked.
    pub owner: Option<AgentId>,
    /// Team.
    pub team: Option<TeamId>,
    /// Votes so far.
    pub tally: Tally,
    /// Metadata.
    pub metadata: serde_json::Value,
    /// Deadline.
    pub deadline: Option<Timestamp>,
    /// When decided or expired.
    pub decided_at: Option<Timestamp>,
    /// Created.
    pub created_at: Timestamp,
}

/// A vote.
#[derive(Clone, Debug, PartialEq)]
pub struct Ballot {
    /// Approve or reject.
    pub approve: bool,
    /// Confidence, 0 to 1 (weights the weighted strategy).
    pub confidence: f64,
    /// Why (free text).
    pub reason: String,
}

impl Ballot {
    /// An approval with full confidence.
    pub fn approve() -> Self {
        Self { approve: true, confidence: 1.0, reason: String::new() }
    }

    /// A rejection with full confidence.
    pub fn reject() -> Self {
        Self { approve: false, confidence: 1.0, reason: String::new() }
    }

    /// The same vote with this confidence.
    pub fn confidence(mut self, c: f64) -> Self {
        self.confidence = c;
        self
    }

    /// The same vote with a reason.
    pub fn reason(mut self, r: impl Into<String>) -> Self {
        self.reason = r.into();
        self
    }
}

/// The result of a vote.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VoteOutcome {
    /// The round after the vote.
    pub round: Round,
    /// Whether this vote decided it.
    pub decided_now: bool,
}

/// A vote as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Vote {
    /// The voter.
    pub agent: AgentId,
    /// Approve or reject.
    pub approve: bool,
    /// Confidence.
    pub confidence: f64,
    /// Reason.
    pub reason: String,
    /// When.
    pub cast_at: Timestamp,
}

const ROUND_COLUMNS: &str = "c.id, c.swarm_id, c.target_type, c.target_id, c.description, c.strategy, c.threshold, \
    c.quorum, c.status, c.acl_level, c.owner_id, c.team_id, c.votes_for, c.votes_against, c.weight_for, \
    c.weight_against, c.metadata, c.deadline_at, c.decided_at, c.created_at";

fn round_from_row(r: &Row<'_>) -> rusqlite::Result<Result<Round>> {
    let id: String = r.get(0)?;
    let swarm: String = r.get(1)?;
    let (target_type, target_id, description, strategy): (String, String, String, String) =
        (r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?);
    let threshold: f64 = r.get(6)?;
    let quorum: i64 = r.get(7)?;
    let status: String = r.get(8)?;
    let level: i64 = r.get(9)?;
    let (owner, team): (Option<String>, Option<String>) = (r.get(10)?, r.get(11)?);
    let (vf, va): (i64, i64) = (r.get(12)?, r.get(13)?);
    let (wf, wa): (f64, f64) = (r.get(14)?, r.get(15)?);
    let metadata: String = r.get(16)?;
    let (deadline, decided, created): (Option<i64>, Option<i64>, i64) =
        (r.get(17)?, r.get(18)?, r.get(19)?);
    Ok((|| {
        let scope = Scope::parse(owner.as_deref(), team.as_deref(), level)?;
        Ok(Round {
            swarm: SwarmId::new(&swarm)
                .map_err(|e| StoreError::Corrupt(format!("round {id}: {e}")))?,
            target_type,
            target_id,
            description,
            strategy: Strategy::from_stored(&strategy)?,
            threshold,
            quorum: u32::try_from(quorum).unwrap_or(1),
            status: RoundStatus::from_stored(&status)?,
            level: scope.level,
            owner: scope.owner,
            team: scope.team,
            tally: Tally {
                votes_for: u32::try_from(vf).unwrap_or(0),
                votes_against: u32::try_from(va).unwrap_or(0),
                weight_for: wf,
                weight_against: wa,
            },
            metadata: serde_json::from_str(&metadata).unwrap_or_else(|_| serde_json::json!({})),
            deadline: deadline.map(Timestamp::from_millis),
            decided_at: decided.map(Timestamp::from_millis),
            created_at: Timestamp::from_millis(created),
            id,
        })
    })())
}

impl Round {
    fn scope(&self) -> Scope {
        Scope { owner: self.owner.clone(), team: self.team.clone(), level: self.level }
    }
}

fn load(conn: &rusqlite::Connection, id: &str) -> Result<Option<Round>> {
    conn.prepare_cached(&format!("SELECT {ROUND_COLUMNS} FROM consensus AS c WHERE c.id = ?1"))?
        .query_row([id], round_from_row)
        .optional()?
        .transpose()
}

/// A round opened by the store itself (conflict escalation): majority, quorum 1.
pub(crate) struct RoundRecord {
    pub(crate) swarm: SwarmId,
    pub(crate) target_type: String,
    pub(crate) target_id: String,
    pub(crate) description: String,
    pub(crate) scope: Scope,
}

const INSERT: &str = "INSERT INTO consensus (id, swarm_id, target_id, target_type, description, strategy, threshold, \
    quorum, acl_level, owner_id, team_id, metadata, deadline_at, created_at, updated_at) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14)";

/// Opens a round inside the caller's transaction; returns its id.
pub(crate) fn open_round_in_tx(
    ctx: &mut WriteCtx<'_>,
    r: &RoundRecord,
    now: Timestamp,
) -> Result<String> {
    let id = new_id("cs");
    ctx.conn().prepare_cached(INSERT)?.execute(rusqlite::params![
        id,
        r.swarm.as_str(),
        r.target_id,
        r.target_type,
        r.description,
        Strategy::Majority.as_str(),
        0.5,
        1,
        r.scope.level.as_u8(),
        r.scope.owner.as_ref().map(AgentId::as_str),
        r.scope.team.as_ref().map(TeamId::as_str),
        "{}",
        None::<i64>,
        now.as_millis(),
    ])?;
    Ok(id)
}

/// Records an outcome once: status, time, an event, and a conflict if the round split.
fn decide(
    ctx: &mut WriteCtx<'_>,
    shared: &std::sync::Arc<crate::store::Shared>,
    p: &Principal,
    round: &mut Round,
    status: RoundStatus,
    now: Timestamp,
) -> Result<()> {
    ctx.conn()
        .prepare_cached("UPDATE consensus SET status = ?2, decided_at = ?3, updated_at = ?3 WHERE id = ?1 AND status = 'open'")?
        .execute(rusqlite::params![round.id, status.as_str(), now.as_millis()])?;
    round.status = status;
    round.decided_at = Some(now);
    let payload = serde_json::json!({
        "consensus": round.id,
        "status": status.as_str(),
        "target_type": round.target_type,
        "target_id": round.target_id,
        "tally": round.tally,
    });
    publish_in_tx(
        ctx,
        shared,
        &EventRecord {
            swarm: round.swarm.clone(),
            event_type: "consensus_decided".into(),
            source: None,
            target: None,
            payload,
            priority: 7,
            ttl_ms: None,
            scope: round.scope(),
            parent_seq: None,
            max_retries: 3,
        },
        now,
    )?;
    if status == RoundStatus::Failed && round.tally.votes_for > 0 && round.tally.votes_against > 0 {
        super::conflicts::record(
            ctx,
            &super::conflicts::NewConflict {
                swarm: round.swarm.clone(),
                kind: "consensus_split",
                severity: "medium",
                a: ("consensus".into(), round.id.clone()),
                b: Some((round.target_type.clone(), round.target_id.clone())),
                description: format!(
                    "consensus {} failed split {}-{}",
                    round.id, round.tally.votes_for, round.tally.votes_against
                ),
                detail: serde_json::json!({ "tally": round.tally }),
                strategy: "manual",
                status: "open",
                scope: round.scope(),
            },
            now,
        )?;
    }
    // A round opened to settle a conflict settles it.
    if round.target_type == "conflict" {
        ctx.conn()
            .prepare_cached(
                "UPDATE conflicts SET status = 'resolved', resolution = ?2, resolved_by = 'consensus', resolved_at = ?3, \
                 updated_at = ?3 WHERE id = ?1 AND status = 'escalated'",
            )?
            .execute(rusqlite::params![round.target_id, format!("consensus {} {}", round.id, status.as_str()), now.as_millis()])?;
    }
    let detail = serde_json::json!({ "status": status.as_str(), "tally": round.tally });
    audit(
        ctx,
        p,
        "consensus.decide",
        "consensus",
        &round.id,
        &round.swarm,
        Outcome::Ok,
        detail,
        now,
    )
}

impl Store {
    /// Opens a consensus round (the seed's `requestConsensus`).
    pub fn request_consensus(&self, who: &Identity, spec: RoundSpec) -> Result<Round> {
        check_text("target type", &spec.target_type, 128, false)?;
        check_text("target id", &spec.target_id, 512, false)?;
        check_text("description", &spec.description, 16 * 1024, true)?;
        if let Some(id) = &spec.id {
            check_id("consensus", id)?;
        }
        if !(spec.threshold > 0.0 && spec.threshold <= 1.0) {
            return Err(StoreError::invalid("threshold must be in (0, 1]"));
        }
        if spec.quorum == 0 {
            return Err(StoreError::invalid("quorum must be at least 1"));
        }
        let metadata = json_object("metadata", &spec.metadata, 64 * 1024)?;
        let id = spec.id.clone().unwrap_or_else(|| new_id("cs"));
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                let swarm = match (p.as_agent(), &spec.swarm) {
                    (Some(a), Some(s)) if s != a.swarm() => {
                        return Ok(Err(StoreError::PermissionDenied("agents open rounds only in their own swarm".into())));
                    }
                    (Some(a), _) => a.swarm().clone(),
                    (None, Some(s)) => s.clone(),
                    (None, None) => return Ok(Err(StoreError::invalid("the system principal must name the round's swarm"))),
                };
                if spec.deadline.is_some_and(|d| d <= now) {
                    return Ok(Err(StoreError::invalid("the deadline is in the past")));
                }
                let scope = new_scope(p, spec.level, spec.team.as_ref(), AclLevel::Swarm)?;
                if !allowed(p, Action::Write, RESOURCE, &scope, &swarm, now) {
                    return Ok(Err(deny(ctx, p, "consensus.request", "consensus", &id, &swarm, "no write permission on consensus at this level", now)?));
                }
                if load(ctx.conn(), &id)?.is_some() {
                    return Ok(Err(super::id_taken(ctx, p, "consensus.request", "consensus", &id, &swarm, now)?));
                }
                ctx.conn().prepare_cached(INSERT)?.execute(rusqlite::params![
                    id,
                    swarm.as_str(),
                    spec.target_id,
                    spec.target_type,
                    spec.description,
                    spec.strategy.as_str(),
                    spec.threshold,
                    spec.quorum,
                    scope.level.as_u8(),
                    scope.owner.as_ref().map(AgentId::as_str),
                    scope.team.as_ref().map(TeamId::as_str),
                    metadata,
                    spec.deadline.map(Timestamp::as_millis),
                    now.as_millis(),
                ])?;
                publish_in_tx(ctx, shared, &EventRecord {
                    swarm: swarm.clone(),
                    event_type: "consensus_requested".into(),
                    source: p.as_agent().map(|a| a.id().clone()),
                    target: None,
                    payload: serde_json::json!({
                        "consensus": id, "target_type": spec.target_type, "target_id": spec.target_id,
                        "strategy": spec.strategy.as_str(), "quorum": spec.quorum,
                    }),
                    priority: 6,
                    ttl_ms: None,
                    scope: scope.clone(),
                    parent_seq: None,
                    max_retries: 3,
                }, now)?;
                let detail = serde_json::json!({ "strategy": spec.strategy.as_str(), "quorum": spec.quorum });
                audit(ctx, p, "consensus.request", "consensus", &id, &swarm, Outcome::Ok, detail, now)?;
                // Read back in the same transaction, not through the requester's ACL: a
                // requester who may write but not read this level got an error for a round
                // that was opened.
                let round = load(ctx.conn(), &id)?
                    .ok_or_else(|| StoreError::Corrupt("round vanished after creation".into()))?;
                Ok(Ok(round))
            })
            .and_then(|r| r)
    }

    /// A round, if `who` can see it.
    pub fn get_round(&self, who: &Identity, id: &str) -> Result<Option<Round>> {
        let now = self.now();
        self.shared.read_snapshot_as(who, |conn, p| {
            let pred = sql_predicate(p, Action::Read, RESOURCE, COLS, now, 2);
            let sql = format!(
                "SELECT {ROUND_COLUMNS} FROM consensus AS c WHERE c.id = ?1 AND {}",
                pred.sql()
            );
            let mut binds = vec![Bind::Text(id)];
            push_pred(&mut binds, &pred);
            conn.prepare_cached(&sql)?
                .query_row(params_from_iter(binds), round_from_row)
                .optional()?
                .transpose()
        })
    }

    /// Rounds `who` can see in its swarm (or `swarm`), newest first.
    pub fn list_rounds(
        &self,
        who: &Identity,
        swarm: Option<&SwarmId>,
        status: Option<RoundStatus>,
        limit: usize,
    ) -> Result<Vec<Round>> {
        let now = self.now();
        self.shared.read_snapshot_as(who, |conn, p| {
            let swarm = swarm.cloned().or_else(|| p.as_agent().map(|a| a.swarm().clone()));
            let pred = sql_predicate(p, Action::Read, RESOURCE, COLS, now, 4);
            let sql = format!(
                "SELECT {ROUND_COLUMNS} FROM consensus AS c WHERE (?1 IS NULL OR c.swarm_id = ?1) AND (?2 IS NULL OR c.status = ?2) \
                 AND {} ORDER BY c.created_at DESC, c.id LIMIT ?3",
                pred.sql()
            );
            let mut binds = vec![
                Bind::OptText(swarm.as_ref().map(SwarmId::as_str)),
                Bind::OptText(status.map(RoundStatus::as_str)),
                Bind::Int(i64::try_from(limit.clamp(1, 1000)).unwrap_or(1000)),
            ];
            push_pred(&mut binds, &pred);
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(binds), round_from_row)?;
            rows.map(|r| r?).collect()
        })
    }

    /// The votes of a round `who` can see.
    pub fn round_votes(&self, who: &Identity, id: &str) -> Result<Vec<Vote>> {
        if self.get_round(who, id)?.is_none() {
            return Err(StoreError::NotFound(format!("consensus {id}")));
        }
        self.shared.read_snapshot_as(who, |conn, _| {
            let mut stmt = conn.prepare_cached(
                "SELECT agent_id, approve, confidence, reason, cast_at FROM consensus_votes WHERE consensus_id = ?1 ORDER BY cast_at, agent_id",
            )?;
            let rows = stmt.query_map([id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?, r.get::<_, f64>(2)?, r.get::<_, String>(3)?, r.get::<_, i64>(4)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (agent, approve, confidence, reason, at) = row?;
                out.push(Vote {
                    agent: AgentId::new(&agent).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    approve,
                    confidence,
                    reason,
                    cast_at: Timestamp::from_millis(at),
                });
            }
            Ok(out)
        })
    }

    /// Casts `who`'s vote (the seed's `submitVote`). One vote per agent: a second is
    /// refused with [`StoreError::Conflict`] and the first stands. The tally is updated
    /// and, if the vote decides the round, the outcome is recorded once and published.
    /// A vote on a round past its deadline expires the round instead.
    pub fn vote(&self, who: &Identity, id: &str, ballot: Ballot) -> Result<VoteOutcome> {
        if !(0.0..=1.0).contains(&ballot.confidence) {
            return Err(StoreError::invalid("confidence must be between 0 and 1"));
        }
        check_text("reason", &ballot.reason, 4096, true)?;
        let rid = id.to_owned();
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                let Some(agent) = p.as_agent() else {
                    return Ok(Err(StoreError::invalid("only agents vote")));
                };
                let Some(mut round) = load(ctx.conn(), &rid)? else {
                    return Ok(Err(StoreError::NotFound(format!("consensus {rid}"))));
                };
                let scope = round.scope();
                if !allowed(p, Action::Read, RESOURCE, &scope, &round.swarm, now) {
                    // Absent to the voter, but audited as a denial (SPEC section 3).
                    let why = serde_json::json!({ "reason": "not visible to the principal" });
                    audit(ctx, p, "consensus.vote", "consensus", &rid, &round.swarm, Outcome::Denied, why, now)?;
                    return Ok(Err(StoreError::NotFound(format!("consensus {rid}"))));
                }
                if !allowed(p, Action::Vote, RESOURCE, &scope, &round.swarm, now) {
                    return Ok(Err(deny(ctx, p, "consensus.vote", "consensus", &rid, &round.swarm, "no vote permission on this round", now)?));
                }
                if round.status == RoundStatus::Open && round.deadline.is_some_and(|d| now >= d) {
                    decide(ctx, shared, p, &mut round, RoundStatus::Expired, now)?;
                }
                if round.status != RoundStatus::Open {
                    return Ok(Err(StoreError::Conflict {
                        key: format!("consensus {rid}"),
                        expected: "an open round".into(),
                        found: round.status.as_str().to_owned(),
                    }));
                }
                let inserted = ctx
                    .conn()
                    .prepare_cached(
                        "INSERT INTO consensus_votes (consensus_id, agent_id, approve, confidence, reason, cast_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                    )?
                    .execute(rusqlite::params![rid, agent.id().as_str(), ballot.approve, ballot.confidence, ballot.reason, now.as_millis()])?;
                if inserted == 0 {
                    audit(ctx, p, "consensus.vote", "consensus", &rid, &round.swarm, Outcome::Conflict, serde_json::json!({ "reason": "already voted" }), now)?;
                    return Ok(Err(StoreError::Conflict {
                        key: format!("consensus {rid}"),
                        expected: "a first vote".into(),
                        found: format!("{} already voted", agent.id()),
                    }));
                }
                if ballot.approve {
                    round.tally.votes_for += 1;
                    round.tally.weight_for += ballot.confidence;
                } else {
                    round.tally.votes_against += 1;
                    round.tally.weight_against += ballot.confidence;
                }
                ctx.conn()
                    .prepare_cached(
                        "UPDATE consensus SET votes_for = ?2, votes_against = ?3, weight_for = ?4, weight_against = ?5, updated_at = ?6 WHERE id = ?1",
                    )?
                    .execute(rusqlite::params![
                        rid,
                        round.tally.votes_for,
                        round.tally.votes_against,
                        round.tally.weight_for,
                        round.tally.weight_against,
                        now.as_millis()
                    ])?;
                audit(ctx, p, "consensus.vote", "consensus", &rid, &round.swarm, Outcome::Ok, serde_json::json!({ "approve": ballot.approve, "confidence": ballot.confidence }), now)?;
                let outcome = decide_tally(round.strategy, round.threshold, round.quorum, &round.tally);
                let decided_now = outcome != RoundStatus::Open;
                if decided_now {
                    decide(ctx, shared, p, &mut round, outcome, now)?;
                }
                Ok(Ok(VoteOutcome { round, decided_now }))
            })
            .and_then(|r| r)
    }

    /// Mirrors a round decided elsewhere (by the Redis script that counts votes across
    /// hosts) into this database: the tally grows to `tally` (never shrinks), a decided
    /// status is recorded once (and published here as `consensus_decided`), and `local`
    /// records the vote of this database's agent who cast it. System principal only.
    pub fn mirror_round(
        &self,
        who: &Identity,
        id: &str,
        tally: Tally,
        status: RoundStatus,
        local: Option<(AgentId, Ballot)>,
    ) -> Result<Round> {
        if *who != Identity::System {
            return Err(StoreError::PermissionDenied(
                "mirroring rounds is done by the system principal".into(),
            ));
        }
        let rid = id.to_owned();
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                let Some(mut round) = load(ctx.conn(), &rid)? else {
                    return Ok(Err(StoreError::NotFound(format!("consensus {rid}"))));
                };
                if let Some((agent, b)) = &local {
                    ctx.conn()
                        .prepare_cached(
                            "INSERT INTO consensus_votes (consensus_id, agent_id, approve, confidence, reason, cast_at) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                        )?
                        .execute(rusqlite::params![rid, agent.as_str(), b.approve, b.confidence, b.reason, now.as_millis()])?;
                }
                if round.status == RoundStatus::Open && tally.cast() >= round.tally.cast() {
                    round.tally = tally;
                    ctx.conn()
                        .prepare_cached(
                            "UPDATE consensus SET votes_for = ?2, votes_against = ?3, weight_for = ?4, weight_against = ?5, updated_at = ?6 WHERE id = ?1",
                        )?
                        .execute(rusqlite::params![rid, tally.votes_for, tally.votes_against, tally.weight_for, tally.weight_against, now.as_millis()])?;
                    if status != RoundStatus::Open {
                        decide(ctx, shared, p, &mut round, status, now)?;
                    }
                }
                Ok(Ok(round))
            })
            .and_then(|r| r)
    }

    /// Expires open rounds past their deadline (the sweeper calls this); returns how many.
    pub fn expire_rounds(&self, who: &Identity) -> Result<u64> {
        if !self.principal(who)?.is_system() {
            return Err(StoreError::PermissionDenied(
                "expiring rounds is run by the system".into(),
            ));
        }
        self.shared.write_as(who, move |ctx, shared, p| {
            let now = shared.now();
            let ids: Vec<String> = {
                let mut stmt = ctx.conn().prepare_cached(
                    "SELECT id FROM consensus WHERE status = 'open' AND deadline_at IS NOT NULL AND deadline_at <= ?1 LIMIT 500",
                )?;
                let rows = stmt.query_map([now.as_millis()], |r| r.get::<_, String>(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut n = 0;
            for id in ids {
                if let Some(mut round) = load(ctx.conn(), &id)? {
                    decide(ctx, shared, p, &mut round, RoundStatus::Expired, now)?;
                    n += 1;
                }
            }
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(f: u32, a: u32, wf: f64, wa: f64) -> Tally {
        Tally { votes_for: f, votes_against: a, weight_for: wf, weight_against: wa }
    }

    #[test]
    fn the_tally_rule() {
        use RoundStatus::*;
        assert_eq!(decide_tally(Strategy::Majority, 0.5, 3, &t(2, 0, 2.0, 0.0)), Open);
        assert_eq!(decide_tally(Strategy::Majority, 0.5, 3, &t(2, 1, 2.0, 1.0)), Achieved);
        assert_eq!(
            decide_tally(Strategy::Majority, 0.5, 2, &t(1, 1, 1.0, 1.0)),
            Failed,
            "a tie is not a majority"
        );
        assert_eq!(decide_tally(Strategy::Threshold, 0.75, 4, &t(3, 1, 0.0, 0.0)), Achieved);
        assert_eq!(decide_tally(Strategy::Threshold, 0.8, 4, &t(3, 1, 0.0, 0.0)), Failed);
        assert_eq!(decide_tally(Strategy::Weighted, 0.6, 2, &t(1, 1, 0.9, 0.3)), Achieved);
        assert_eq!(decide_tally(Strategy::Weighted, 0.6, 2, &t(1, 1, 0.3, 0.9)), Failed);
        assert_eq!(
            decide_tally(Strategy::Weighted, 0.5, 1, &t(1, 0, 0.0, 0.0)),
            Failed,
            "zero confidence decides nothing"
        );
        assert_eq!(
            decide_tally(Strategy::Unanimous, 1.0, 5, &t(1, 1, 1.0, 1.0)),
            Failed,
            "first rejection fails"
        );
        assert_eq!(decide_tally(Strategy::Unanimous, 1.0, 3, &t(3, 0, 3.0, 0.0)), Achieved);
        assert_eq!(decide_tally(Strategy::Unanimous, 1.0, 3, &t(2, 0, 2.0, 0.0)), Open);
    }
}
