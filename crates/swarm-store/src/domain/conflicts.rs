//! Conflicts: recorded automatically when writes collide (compare-and-set mismatches,
//! concurrent claims), when a dependency would close a cycle, and when a consensus round
//! ends split; listed, resolved, and escalated to a consensus round when left open too
//! long.

use rusqlite::{OptionalExtension, Row, params_from_iter};
use serde::Serialize;
use swarm_acl::{
    AclLevel, Action, AgentId, Identity, ResourceType, SwarmId, TeamId, Timestamp, sql_predicate,
};

use super::{Scope, audit, columns, new_id};
use crate::audit::Outcome;
use crate::error::{Result, StoreError};
use crate::sql::{Bind, push_pred};
use crate::store::Store;
use crate::txn::WriteCtx;

const COLS: swarm_acl::SqlColumns<'static> =
    columns("c.acl_level", "c.swarm_id", "c.owner_id", "c.team_id");

/// What to record.
pub(crate) struct NewConflict {
    pub(crate) swarm: SwarmId,
    /// `version_mismatch`, `concurrent_claim`, `consensus_split` or `dependency_clash`.
    pub(crate) kind: &'static str,
    /// `low`, `medium`, `high` or `critical`.
    pub(crate) severity: &'static str,
    pub(crate) a: (String, String),
    pub(crate) b: Option<(String, String)>,
    pub(crate) description: String,
    pub(crate) detail: serde_json::Value,
    /// How it is (to be) resolved.
    pub(crate) strategy: &'static str,
    /// `open` or `resolved` (when the store already resolved it, e.g. first write wins).
    pub(crate) status: &'static str,
    /// Who may see it: the scope of what it is about.
    pub(crate) scope: Scope,
}

const INSERT: &str = "INSERT INTO conflicts (id, swarm_id, type, severity, entity_a_type, entity_a_id, entity_b_type, \
    entity_b_id, description, detail, strategy, status, resolution, acl_level, owner_id, team_id, resolved_at, \
    created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?18)";

/// Records a conflict inside the caller's transaction; returns its id.
pub(crate) fn record(ctx: &mut WriteCtx<'_>, c: &NewConflict, now: Timestamp) -> Result<String> {
    let id = new_id("cf");
    let resolved = c.status == "resolved";
    ctx.conn().prepare_cached(INSERT)?.execute(rusqlite::params![
        id,
        c.swarm.as_str(),
        c.kind,
        c.severity,
        c.a.0,
        c.a.1,
        c.b.as_ref().map(|b| b.0.as_str()),
        c.b.as_ref().map(|b| b.1.as_str()),
        c.description,
        c.detail.to_string(),
        c.strategy,
        c.status,
        resolved.then_some("resolved by the store when it happened"),
        c.scope.level.as_u8(),
        c.scope.owner.as_ref().map(AgentId::as_str),
        c.scope.team.as_ref().map(TeamId::as_str),
        resolved.then_some(now.as_millis()),
        now.as_millis(),
    ])?;
    Ok(id)
}

/// A conflict as read.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conflict {
    /// Id.
    pub id: String,
    /// Swarm.
    pub swarm: SwarmId,
    /// `version_mismatch`, `concurrent_claim`, `consensus_split` or `dependency_clash`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `low` to `critical`.
    pub severity: String,
    /// The first entity: (type, id).
    pub entity_a: (String, String),
    /// The second entity, if any.
    pub entity_b: Option<(String, String)>,
    /// What happened.
    pub description: String,
    /// Details (never values).
    pub detail: serde_json::Value,
    /// `last_write_wins`, `first_write_wins`, `merge`, `manual` or `consensus`.
    pub strategy: String,
    /// `open`, `resolved`, `escalated` or `dismissed`.
    pub status: String,
    /// How it was resolved.
    pub resolution: Option<String>,
    /// Who resolved it.
    pub resolved_by: Option<String>,
    /// When.
    pub resolved_at: Option<Timestamp>,
    /// The consensus round it was escalated to.
    pub consensus_id: Option<String>,
    /// Level (the scope of what it is about).
    pub level: AclLevel,
    /// Created.
    pub created_at: Timestamp,
}

const CONFLICT_COLUMNS: &str = "c.id, c.swarm_id, c.type, c.severity, c.entity_a_type, c.entity_a_id, c.entity_b_type, \
    c.entity_b_id, c.description, c.detail, c.strategy, c.status, c.resolution, c.resolved_by, c.resolved_at, \
    c.consensus_id, c.acl_level, c.created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Result<Conflict>> {
    let id: String = r.get(0)?;
    let swarm: String = r.get(1)?;
    let (kind, severity, a_type, a_id): (String, String, String, String) =
        (r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?);
    let (b_type, b_id): (Option<String>, Option<String>) = (r.get(6)?, r.get(7)?);
    let (description, detail, strategy, status): (String, String, String, String) =
        (r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?);
    let (resolution, resolved_by, resolved_at, consensus_id): (
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<String>,
    ) = (r.get(12)?, r.get(13)?, r.get(14)?, r.get(15)?);
    let (level, created): (i64, i64) = (r.get(16)?, r.get(17)?);
    Ok((|| {
        Ok(Conflict {
            swarm: SwarmId::new(&swarm)
                .map_err(|e| StoreError::Corrupt(format!("conflict {id}: {e}")))?,
            kind,
            severity,
            entity_a: (a_type, a_id),
            entity_b: b_type.zip(b_id),
            description,
            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
            strategy,
            status,
            resolution,
            resolved_by,
            resolved_at: resolved_at.map(Timestamp::from_millis),
            consensus_id,
            level: AclLevel::from_i64(level)
                .map_err(|e| StoreError::Corrupt(format!("conflict {id}: {e}")))?,
            created_at: Timestamp::from_millis(created),
            id,
        })
    })())
}

/// The resource type a conflict's visibility and resolution are judged by: that of the
/// entity it is about.
fn resource_of(entity_type: &str) -> ResourceType {
    match entity_type {
        "memory" => ResourceType::Memory,
        "consensus" => ResourceType::Consensus,
        "event" => ResourceType::Event,
        "artifact" => ResourceType::Artifact,
        _ => ResourceType::Task,
    }
}

/// swarm, entity type, status, level, owner, team.
type ConflictScopeRow = (String, String, String, i64, Option<String>, Option<String>);
/// id, swarm, level, owner, team, description.
type StaleRow = (String, String, i64, Option<String>, Option<String>, String);

/// Filters of `list_conflicts`.
#[derive(Clone, Debug, Default)]
pub struct ConflictFilter {
    /// Swarm (default: the agent's own).
    pub swarm: Option<SwarmId>,
    /// Status.
    pub status: Option<String>,
    /// Type.
    pub kind: Option<String>,
    /// Most returned (1-1000, default 100).
    pub limit: Option<usize>,
}

impl Store {
    /// Conflicts `who` can see (judged with the resource type of what each is about),
    /// newest first.
    pub fn list_conflicts(&self, who: &Identity, filter: &ConflictFilter) -> Result<Vec<Conflict>> {
        self.query_conflicts(who, filter, None)
    }

    fn query_conflicts(
        &self,
        who: &Identity,
        filter: &ConflictFilter,
        id: Option<&str>,
    ) -> Result<Vec<Conflict>> {
        let now = self.now();
        let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
        self.shared.read_snapshot_as(who, |conn, p| {
            // A lookup by id admits every swarm; a list defaults to the agent's own.
            let swarm = match id {
                Some(_) => filter.swarm.clone(),
                None => filter.swarm.clone().or_else(|| p.as_agent().map(|a| a.swarm().clone())),
            };
            // One predicate per resource type a conflict can be about, chosen by the entity.
            let mut binds = vec![
                Bind::OptText(swarm.as_ref().map(SwarmId::as_str)),
                Bind::OptText(filter.status.as_deref()),
                Bind::OptText(filter.kind.as_deref()),
                Bind::Int(i64::try_from(limit).unwrap_or(1000)),
                Bind::OptText(id),
            ];
            let mut clauses = Vec::new();
            let mut next = 6;
            let preds: Vec<(&str, swarm_acl::SqlPredicate<'_>)> = ["memory", "task", "consensus", "event", "artifact"]
                .iter()
                .map(|t| {
                    let pred = sql_predicate(p, Action::Read, resource_of(t), COLS, now, next);
                    next += pred.params().len();
                    (*t, pred)
                })
                .collect();
            for (t, pred) in &preds {
                let entity = if *t == "task" {
                    "c.entity_a_type NOT IN ('memory', 'consensus', 'event', 'artifact')".to_owned()
                } else {
                    format!("c.entity_a_type = '{t}'")
                };
                clauses.push(format!("({entity} AND {})", pred.sql()));
                push_pred(&mut binds, pred);
            }
            let sql = format!(
                "SELECT {CONFLICT_COLUMNS} FROM conflicts AS c WHERE (?1 IS NULL OR c.swarm_id = ?1) \
                 AND (?2 IS NULL OR c.status = ?2) AND (?3 IS NULL OR c.type = ?3) AND (?5 IS NULL OR c.id = ?5) AND ({}) \
                 ORDER BY c.created_at DESC, c.id LIMIT ?4",
                clauses.join(" OR ")
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(binds), from_row)?;
            rows.map(|r| r?).collect()
        })
    }

    /// A conflict, if `who` can see it.
    pub fn get_conflict(&self, who: &Identity, id: &str) -> Result<Option<Conflict>> {
        // Looked up by its id: it used to be searched for among the newest 1000 of the
        // agent's swarm, so an older one (or one of another swarm) was missing, and
        // `resolve_conflict` reported a resolution it had committed as not found.
        let found = self.query_conflicts(who, &ConflictFilter::default(), Some(id))?;
        Ok(found.into_iter().next())
    }

    /// Resolves (or dismisses) an open or escalated conflict. Needs `admin` on the
    /// resource type of what it is about, at its level.
    pub fn resolve_conflict(
        &self,
        who: &Identity,
        id: &str,
        resolution: &str,
        dismiss: bool,
    ) -> Result<Conflict> {
        super::check_text("resolution", resolution, 4096, false)?;
        let (cid, text) = (id.to_owned(), resolution.to_owned());
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                let row: Option<ConflictScopeRow> = ctx
                    .conn()
                    .prepare_cached("SELECT swarm_id, entity_a_type, status, acl_level, owner_id, team_id FROM conflicts WHERE id = ?1")?
                    .query_row([&cid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
                    .optional()?;
                let Some((swarm, entity, status, level, owner, team)) = row else {
                    return Ok(Err(StoreError::NotFound(format!("conflict {cid}"))));
                };
                let swarm = SwarmId::new(&swarm).map_err(StoreError::from)?;
                let scope = Scope::parse(owner.as_deref(), team.as_deref(), level)?;
                let resource = resource_of(&entity);
                if !super::allowed(p, Action::Read, resource, &scope, &swarm, now) {
                    // Absent to the caller, but audited as a denial (SPEC section 3).
                    let why = serde_json::json!({ "reason": "not visible to the principal" });
                    audit(ctx, p, "conflict.resolve", "conflict", &cid, &swarm, Outcome::Denied, why, now)?;
                    return Ok(Err(StoreError::NotFound(format!("conflict {cid}"))));
                }
                if !super::allowed(p, Action::Admin, resource, &scope, &swarm, now) {
                    return Ok(Err(super::deny(ctx, p, "conflict.resolve", "conflict", &cid, &swarm, "resolving needs an admin grant", now)?));
                }
                if !matches!(status.as_str(), "open" | "escalated") {
                    return Ok(Err(StoreError::invalid(format!("conflict {cid} is already {status}"))));
                }
                let new_status = if dismiss { "dismissed" } else { "resolved" };
                ctx.conn()
                    .prepare_cached(
                        "UPDATE conflicts SET status = ?2, resolution = ?3, resolved_by = ?4, resolved_at = ?5, updated_at = ?5 WHERE id = ?1",
                    )?
                    .execute(rusqlite::params![cid, new_status, text, p.audit_name(), now.as_millis()])?;
                audit(ctx, p, "conflict.resolve", "conflict", &cid, &swarm, Outcome::Ok, serde_json::json!({ "status": new_status }), now)?;
                Ok(Ok(()))
            })
            .and_then(|r| r)?;
        self.get_conflict(who, id)?.ok_or_else(|| StoreError::NotFound(format!("conflict {id}")))
    }

    /// Escalates conflicts left open for longer than `older_than_ms` to a consensus round
    /// each (majority of the swarm, at the conflict's level) and returns how many.
    /// The sweeper calls this; operators may too.
    pub fn escalate_stale_conflicts(&self, who: &Identity, older_than_ms: i64) -> Result<u64> {
        if !self.principal(who)?.is_system() {
            return Err(StoreError::PermissionDenied("escalation is run by the system".into()));
        }
        self.shared.write_as(who, move |ctx, shared, p| {
            let now = shared.now();
            let stale: Vec<StaleRow> = {
                let mut stmt = ctx.conn().prepare_cached(
                    "SELECT id, swarm_id, acl_level, owner_id, team_id, description FROM conflicts \
                     WHERE status = 'open' AND created_at <= ?1 ORDER BY created_at LIMIT 100",
                )?;
                let rows = stmt.query_map([now.as_millis() - older_than_ms], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                })?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut n = 0;
            for (id, swarm, level, owner, team, description) in stale {
                let swarm = SwarmId::new(&swarm).map_err(StoreError::from)?;
                let scope = Scope::parse(owner.as_deref(), team.as_deref(), level)?;
                // A private conflict concerns one agent: a vote of the swarm about it would
                // reveal it, so only shared conflicts are escalated.
                if scope.level == AclLevel::Private {
                    continue;
                }
                let round = super::consensus::open_round_in_tx(ctx, &super::consensus::RoundRecord {
                    swarm: swarm.clone(),
                    target_type: "conflict".into(),
                    target_id: id.clone(),
                    description: format!("resolve conflict: {description}"),
                    scope,
                }, now)?;
                ctx.conn()
                    .prepare_cached("UPDATE conflicts SET status = 'escalated', strategy = 'consensus', consensus_id = ?2, updated_at = ?3 WHERE id = ?1")?
                    .execute(rusqlite::params![id, round, now.as_millis()])?;
                audit(ctx, p, "conflict.escalate", "conflict", &id, &swarm, Outcome::Ok, serde_json::json!({ "consensus": round }), now)?;
                n += 1;
            }
            Ok(n)
        })
    }
}
