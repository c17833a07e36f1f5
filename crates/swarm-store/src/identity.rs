//! Persistence of the registry: swarms, agents, teams and permission grants.
//!
//! Policy (ids, tokens, defaults, validation of names) lives in `swarm-registry`; this
//! module owns the SQL, checks who may change what, audits every change in the same
//! transaction and bumps the ACL generation whenever grants, teams or statuses change,
//! so cached principals everywhere go stale at once.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use swarm_acl::{
    AclLevel, Action, AgentId, Grant, Identity, Principal, ResourceType, SwarmId, TeamId, Timestamp,
};

use crate::audit::{AuditEntry, Outcome};
use crate::error::{Result, StoreError};
use crate::store::Store;
use crate::txn::WriteCtx;

/// The lifecycle of an agent. Only active agents can act.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    /// May act.
    Active,
    /// Registered but idle; may not act until reactivated.
    Inactive,
    /// Stopped by an operator; may not act.
    Suspended,
    /// Unregistered for good: its id is never reused.
    Terminated,
}

crate::names::string_forms!(AgentStatus, "agent status", {
    Active => "active",
    Inactive => "inactive",
    Suspended => "suspended",
    Terminated => "terminated",
});

/// A swarm and its configuration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SwarmRecord {
    /// Id.
    pub id: SwarmId,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// `active`, `paused` or `archived`.
    pub status: String,
    /// Free-form configuration (a JSON object).
    pub config: serde_json::Value,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

/// An agent as the registry knows it (never its token).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgentRecord {
    /// Id.
    pub id: AgentId,
    /// Its swarm.
    pub swarm: SwarmId,
    /// Display name.
    pub name: String,
    /// Type, such as `backend-dev`.
    #[serde(rename = "type")]
    pub agent_type: String,
    /// Status.
    pub status: AgentStatus,
    /// Capabilities.
    pub capabilities: Vec<String>,
    /// Free-form metadata (a JSON object).
    pub metadata: serde_json::Value,
    /// Teams it belongs to.
    pub teams: Vec<TeamId>,
    /// Last time it was seen acting.
    pub last_seen_at: Option<Timestamp>,
    /// When its current token was issued.
    pub token_issued_at: Timestamp,
    /// Registered.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

/// What registering an agent writes.
#[derive(Clone, Debug)]
pub struct NewAgent {
    /// Id (the registry generates one unless given).
    pub id: AgentId,
    /// Swarm (must exist).
    pub swarm: SwarmId,
    /// Display name.
    pub name: String,
    /// Type.
    pub agent_type: String,
    /// Capabilities.
    pub capabilities: Vec<String>,
    /// Metadata (a JSON object).
    pub metadata: serde_json::Value,
    /// BLAKE3 of its token.
    pub token_hash: [u8; 32],
    /// Teams to join at once.
    pub teams: Vec<TeamId>,
    /// Grants to give at once.
    pub grants: Vec<Grant>,
}

/// Changes to an agent; `None` fields stay.
#[derive(Clone, Debug, Default)]
pub struct AgentUpdate {
    /// New name.
    pub name: Option<String>,
    /// New type.
    pub agent_type: Option<String>,
    /// New capabilities (replacing).
    pub capabilities: Option<Vec<String>>,
    /// New metadata (replacing).
    pub metadata: Option<serde_json::Value>,
    /// New status (not `Terminated`: use `terminate_agent`).
    pub status: Option<AgentStatus>,
}

/// Filters of `list_agents`; every set field must match.
#[derive(Clone, Debug, Default)]
pub struct AgentFilter {
    /// Swarm.
    pub swarm: Option<SwarmId>,
    /// Type.
    pub agent_type: Option<String>,
    /// Status.
    pub status: Option<AgentStatus>,
    /// Member of this team.
    pub team: Option<TeamId>,
    /// Has this capability.
    pub capability: Option<String>,
}

/// A team.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TeamRecord {
    /// Id.
    pub id: TeamId,
    /// Its swarm.
    pub swarm: SwarmId,
    /// Name (unique in the swarm).
    pub name: String,
    /// Description.
    pub description: String,
    /// Leader, if any.
    pub leader: Option<AgentId>,
    /// Members.
    pub members: Vec<AgentId>,
    /// Created.
    pub created_at: Timestamp,
}

/// A grant as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GrantRecord {
    /// The agent.
    pub agent: AgentId,
    /// The grant.
    pub grant: Grant,
    /// Who granted it.
    pub granted_by: String,
    /// When.
    pub granted_at: Timestamp,
}

const AGENT_COLUMNS: &str = "a.id, a.swarm_id, a.name, a.type, a.status, a.capabilities, a.metadata, \
    a.last_seen_at, a.token_issued_at, a.created_at, a.updated_at, \
    (SELECT json_group_array(team_id) FROM (SELECT team_id FROM team_members WHERE agent_id = a.id ORDER BY team_id))";

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn agent_from_row(r: &Row<'_>) -> rusqlite::Result<Result<AgentRecord>> {
    let id: String = r.get(0)?;
    let swarm: String = r.get(1)?;
    let status: String = r.get(4)?;
    let caps: String = r.get(5)?;
    let meta: String = r.get(6)?;
    let teams: String = r.get(11)?;
    let (name, agent_type): (String, String) = (r.get(2)?, r.get(3)?);
    let (last_seen, issued, created, updated): (Option<i64>, i64, i64, i64) =
        (r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?);
    Ok((|| {
        let teams: Vec<String> = serde_json::from_str(&teams).map_err(|e| corrupt("teams", e))?;
        Ok(AgentRecord {
            id: AgentId::new(&id).map_err(|e| corrupt("agent id", e))?,
            swarm: SwarmId::new(&swarm).map_err(|e| corrupt("swarm id", e))?,
            name,
            agent_type,
            status: AgentStatus::from_stored(&status)?,
            capabilities: serde_json::from_str(&caps).map_err(|e| corrupt("capabilities", e))?,
            metadata: serde_json::from_str(&meta).map_err(|e| corrupt("metadata", e))?,
            teams: teams
                .iter()
                .map(TeamId::new)
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| corrupt("team", e))?,
            last_seen_at: last_seen.map(Timestamp::from_millis),
            token_issued_at: Timestamp::from_millis(issued),
            created_at: Timestamp::from_millis(created),
            updated_at: Timestamp::from_millis(updated),
        })
    })())
}

fn swarm_from_row(r: &Row<'_>) -> rusqlite::Result<Result<SwarmRecord>> {
    let id: String = r.get(0)?;
    let config: String = r.get(4)?;
    let (name, description, status): (String, String, String) = (r.get(1)?, r.get(2)?, r.get(3)?);
    let (created, updated): (i64, i64) = (r.get(5)?, r.get(6)?);
    Ok((|| {
        Ok(SwarmRecord {
            id: SwarmId::new(&id).map_err(|e| corrupt("swarm id", e))?,
            name,
            description,
            status,
            config: serde_json::from_str(&config).map_err(|e| corrupt("swarm config", e))?,
            created_at: Timestamp::from_millis(created),
            updated_at: Timestamp::from_millis(updated),
        })
    })())
}

/// Whether `p` may administer the registry: the system principal, or an agent holding
/// `admin` on the `system` resource at level 5.
fn is_admin(p: &Principal, now: Timestamp) -> bool {
    p.holds(ResourceType::System, Action::Admin, AclLevel::System, now)
}

fn require_admin(p: &Principal, now: Timestamp, what: &str) -> Result<()> {
    if is_admin(p, now) {
        Ok(())
    } else {
        Err(StoreError::PermissionDenied(format!(
            "{what} needs the system principal or a system admin grant"
        )))
    }
}

fn audit(
    ctx: &mut WriteCtx<'_>,
    p: &Principal,
    action: &'static str,
    resource: &str,
    swarm: Option<&str>,
    detail: serde_json::Value,
    now: Timestamp,
) -> Result<()> {
    ctx.audit(&AuditEntry {
        at: now.as_millis(),
        actor: p.audit_name().to_owned(),
        action,
        resource_type: "system",
        resource: resource.to_owned(),
        swarm: swarm.map(str::to_owned),
        outcome: Outcome::Ok,
        detail: detail.to_string(),
        feed: None,
    })
}

/// Audits a refused registry change in its own job, then returns the error: the refusal
/// is recorded even though nothing changed.
fn refused<T>(
    ctx: &mut WriteCtx<'_>,
    p: &Principal,
    action: &'static str,
    resource: &str,
    e: StoreError,
    now: Timestamp,
) -> Result<Result<T>> {
    if matches!(e, StoreError::PermissionDenied(_)) {
        ctx.audit(&AuditEntry {
            at: now.as_millis(),
            actor: p.audit_name().to_owned(),
            action,
            resource_type: "system",
            resource: resource.to_owned(),
            swarm: None,
            outcome: Outcome::Denied,
            detail: serde_json::json!({ "reason": e.to_string() }).to_string(),
            feed: None,
        })?;
    }
    Ok(Err(e))
}

fn json_text(v: &serde_json::Value, what: &str, object: bool) -> Result<String> {
    if object && !v.is_object() {
        return Err(StoreError::invalid(format!("{what} must be a JSON object")));
    }
    serde_json::to_string(v).map_err(|e| StoreError::invalid(format!("{what}: {e}")))
}

fn agent_exists(conn: &Connection, id: &AgentId) -> Result<Option<(String, String)>> {
    Ok(conn
        .prepare_cached("SELECT swarm_id, status FROM agents WHERE id = ?1")?
        .query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

fn team_swarm_and_leader(
    conn: &Connection,
    id: &TeamId,
) -> Result<Option<(String, Option<String>)>> {
    Ok(conn
        .prepare_cached("SELECT swarm_id, leader_id FROM teams WHERE id = ?1")?
        .query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

fn insert_grant(
    conn: &Connection,
    agent: &AgentId,
    g: &Grant,
    by: &str,
    now: Timestamp,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO permissions (agent_id, resource_type, action, level, expires_at, granted_by, granted_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (agent_id, resource_type, action, level) \
         DO UPDATE SET expires_at = excluded.expires_at, granted_by = excluded.granted_by, granted_at = excluded.granted_at",
    )?
    .execute(params![
        agent.as_str(),
        g.resource().as_str(),
        g.action().as_str(),
        g.level().as_u8(),
        g.expires_at().map(Timestamp::as_millis),
        by,
        now.as_millis()
    ])?;
    Ok(())
}

impl Store {
    /// Creates a swarm. System administrators only.
    pub fn create_swarm(
        &self,
        who: &Identity,
        id: &SwarmId,
        name: &str,
        description: &str,
        config: serde_json::Value,
    ) -> Result<SwarmRecord> {
        check_text("swarm name", name, 256)?;
        let config = json_text(&config, "swarm config", true)?;
        let (sid, name, description) = (id.clone(), name.to_owned(), description.to_owned());
        let id = sid.clone();
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                if let Err(e) = require_admin(p, now, "creating a swarm") {
                    return refused(ctx, p, "swarm.create", id.as_str(), e, now);
                }
                let inserted = ctx.conn().prepare_cached(
                    "INSERT INTO swarms (id, name, description, config, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT (id) DO NOTHING",
                )?
                .execute(params![id.as_str(), name, description, config, now.as_millis()])?;
                if inserted == 0 {
                    return Ok(Err(StoreError::invalid(format!("swarm {id} already exists"))));
                }
                audit(
                    ctx,
                    p,
                    "swarm.create",
                    id.as_str(),
                    Some(id.as_str()),
                    serde_json::json!({ "name": name }),
                    now,
                )?;
                Ok(Ok(()))
            })
            .and_then(|r| r)?;
        self.get_swarm(&Identity::System, &sid)?
            .ok_or_else(|| StoreError::Corrupt("swarm vanished after creation".into()))
    }

    /// Creates the swarm if it does not exist (named after its id). System administrators
    /// only. Returns whether it was created.
    pub fn ensure_swarm(&self, who: &Identity, id: &SwarmId) -> Result<bool> {
        let id = id.clone();
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                if let Err(e) = require_admin(p, now, "creating a swarm") {
                    return refused(ctx, p, "swarm.create", id.as_str(), e, now);
                }
                let inserted = ctx.conn().prepare_cached(
                    "INSERT INTO swarms (id, name, created_at, updated_at) VALUES (?1, ?1, ?2, ?2) ON CONFLICT (id) DO NOTHING",
                )?
                .execute(params![id.as_str(), now.as_millis()])?;
                if inserted > 0 {
                    audit(ctx, p, "swarm.create", id.as_str(), Some(id.as_str()), serde_json::json!({}), now)?;
                }
                Ok(Ok(inserted > 0))
            })
            .and_then(|r| r)
    }

    /// A swarm, if it exists. Any resolved identity may read swarm metadata.
    pub fn get_swarm(&self, who: &Identity, id: &SwarmId) -> Result<Option<SwarmRecord>> {
        self.shared.read_snapshot_as(who, |conn, _| {
            conn.prepare_cached(
                "SELECT id, name, description, status, config, created_at, updated_at FROM swarms WHERE id = ?1",
            )?
            .query_row([id.as_str()], swarm_from_row)
            .optional()?
            .transpose()
        })
    }

    /// Every swarm.
    pub fn list_swarms(&self, who: &Identity) -> Result<Vec<SwarmRecord>> {
        self.shared.read_snapshot_as(who, |conn, _| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, name, description, status, config, created_at, updated_at FROM swarms ORDER BY id",
            )?;
            let rows = stmt.query_map([], swarm_from_row)?;
            rows.map(|r| r?).collect()
        })
    }

    /// Replaces a swarm's configuration (and optionally its status). System
    /// administrators only.
    pub fn update_swarm(
        &self,
        who: &Identity,
        id: &SwarmId,
        config: Option<serde_json::Value>,
        status: Option<&str>,
    ) -> Result<SwarmRecord> {
        let config = config.map(|c| json_text(&c, "swarm config", true)).transpose()?;
        if let Some(s) = status
            && !matches!(s, "active" | "paused" | "archived")
        {
            return Err(StoreError::invalid(format!(
                "unknown swarm status {s:?}: expected active, paused or archived"
            )));
        }
        let status = status.map(str::to_owned);
        let sid = id.clone();
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                if let Err(e) = require_admin(p, now, "changing a swarm") {
                    return refused(ctx, p, "swarm.update", sid.as_str(), e, now);
                }
                let n = ctx.conn().prepare_cached(
                    "UPDATE swarms SET config = coalesce(?2, config), status = coalesce(?3, status), updated_at = ?4 WHERE id = ?1",
                )?
                .execute(params![sid.as_str(), config, status, now.as_millis()])?;
                if n == 0 {
                    return Ok(Err(StoreError::NotFound(format!("swarm {sid}"))));
                }
                audit(ctx, p, "swarm.update", sid.as_str(), Some(sid.as_str()), serde_json::json!({}), now)?;
                Ok(Ok(()))
            })
            .and_then(|r| r)?;
        self.get_swarm(who, id)?.ok_or_else(|| StoreError::NotFound(format!("swarm {id}")))
    }

    /// Registers an agent with its token hash, teams and grants, in one transaction.
    /// System administrators only.
    pub fn insert_agent(&self, who: &Identity, agent: NewAgent) -> Result<AgentRecord> {
        check_text("agent name", &agent.name, 256)?;
        check_text("agent type", &agent.agent_type, 128)?;
        let caps = serde_json::to_string(&agent.capabilities)
            .map_err(|e| StoreError::invalid(e.to_string()))?;
        let meta = json_text(&agent.metadata, "agent metadata", true)?;
        let id = agent.id.clone();
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                if let Err(e) = require_admin(p, now, "registering an agent") {
                    return refused(ctx, p, "agent.register", agent.id.as_str(), e, now);
                }
                let conn = ctx.conn();
                let swarm_exists: bool = conn
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM swarms WHERE id = ?1)")?
                    .query_row([agent.swarm.as_str()], |r| r.get(0))?;
                if !swarm_exists {
                    return Ok(Err(StoreError::NotFound(format!("swarm {}", agent.swarm))));
                }
                if agent_exists(conn, &agent.id)?.is_some() {
                    return Ok(Err(StoreError::invalid(format!(
                        "agent id {} is taken (ids of removed agents are never reused)",
                        agent.id
                    ))));
                }
                conn.prepare_cached(
                    "INSERT INTO agents (id, swarm_id, name, type, capabilities, metadata, token_hash, token_issued_at, \
                     created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?8)",
                )?
                .execute(params![
                    agent.id.as_str(),
                    agent.swarm.as_str(),
                    agent.name,
                    agent.agent_type,
                    caps,
                    meta,
                    &agent.token_hash[..],
                    now.as_millis()
                ])?;
                for team in &agent.teams {
                    match team_swarm_and_leader(conn, team)? {
                        Some((swarm, _)) if swarm == agent.swarm.as_str() => {}
                        Some(_) => {
                            return Err(StoreError::invalid(format!("team {team} belongs to another swarm")));
                        }
                        None => return Err(StoreError::NotFound(format!("team {team}"))),
                    }
                    conn.prepare_cached("INSERT INTO team_members (team_id, agent_id, joined_at) VALUES (?1, ?2, ?3)")?
                        .execute(params![team.as_str(), agent.id.as_str(), now.as_millis()])?;
                }
                for g in &agent.grants {
                    insert_grant(conn, &agent.id, g, p.audit_name(), now)?;
                }
                ctx.bump_generation();
                audit(ctx, p, "agent.register",
                    agent.id.as_str(),
                    Some(agent.swarm.as_str()),
                    serde_json::json!({ "type": agent.agent_type, "teams": agent.teams, "grants": agent.grants.len() }),
                    now,
                )?;
                Ok(Ok(()))
            })
            .and_then(|r| r)?;
        self.get_agent(&Identity::System, &id)?
            .ok_or_else(|| StoreError::Corrupt("agent vanished after insert".into()))
    }

    /// An agent, if it exists and `who` may see it (agents see the agents of their own
    /// swarm; the system sees all).
    pub fn get_agent(&self, who: &Identity, id: &AgentId) -> Result<Option<AgentRecord>> {
        self.shared.read_snapshot_as(who, |conn, p| {
            let found = conn
                .prepare_cached(&format!(
                    "SELECT {AGENT_COLUMNS} FROM agents AS a WHERE a.id = ?1"
                ))?
                .query_row([id.as_str()], agent_from_row)
                .optional()?
                .transpose()?;
            Ok(found.filter(|a| p.as_agent().is_none_or(|me| me.swarm() == &a.swarm)))
        })
    }

    /// Agents matching `filter`, ordered by id (agents see only their own swarm).
    pub fn list_agents(&self, who: &Identity, filter: &AgentFilter) -> Result<Vec<AgentRecord>> {
        self.shared.read_snapshot_as(who, |conn, p| {
            let swarm = match p.as_agent() {
                Some(me) => Some(me.swarm().as_str()),
                None => filter.swarm.as_ref().map(SwarmId::as_str),
            };
            if let (Some(me), Some(asked)) = (p.as_agent(), &filter.swarm)
                && me.swarm() != asked
            {
                return Ok(Vec::new());
            }
            let sql = format!(
                "SELECT {AGENT_COLUMNS} FROM agents AS a \
                 WHERE (?1 IS NULL OR a.swarm_id = ?1) AND (?2 IS NULL OR a.type = ?2) AND (?3 IS NULL OR a.status = ?3) \
                 AND (?4 IS NULL OR EXISTS (SELECT 1 FROM team_members t WHERE t.agent_id = a.id AND t.team_id = ?4)) \
                 AND (?5 IS NULL OR EXISTS (SELECT 1 FROM json_each(a.capabilities) WHERE json_each.value = ?5)) \
                 ORDER BY a.id"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                params![
                    swarm,
                    filter.agent_type,
                    filter.status.map(AgentStatus::as_str),
                    filter.team.as_ref().map(TeamId::as_str),
                    filter.capability
                ],
                agent_from_row,
            )?;
            rows.map(|r| r?).collect()
        })
    }

    /// Changes an agent's name, type, capabilities, metadata or status. System
    /// administrators only; a status change takes effect at once everywhere.
    pub fn update_agent(
        &self,
        who: &Identity,
        id: &AgentId,
        update: AgentUpdate,
    ) -> Result<AgentRecord> {
        if let Some(n) = &update.name {
            check_text("agent name", n, 256)?;
        }
        if let Some(t) = &update.agent_type {
            check_text("agent type", t, 128)?;
        }
        if update.status == Some(AgentStatus::Terminated) {
            return Err(StoreError::invalid("terminate an agent by unregistering it"));
        }
        let caps = update
            .capabilities
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::invalid(e.to_string()))?;
        let meta =
            update.metadata.as_ref().map(|m| json_text(m, "agent metadata", true)).transpose()?;
        let aid = id.clone();
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                if let Err(e) = require_admin(p, now, "changing an agent") {
                    return refused(ctx, p, "agent.update", aid.as_str(), e, now);
                }
                match agent_exists(ctx.conn(), &aid)? {
                    None => return Ok(Err(StoreError::NotFound(format!("agent {aid}")))),
                    Some((_, status)) if status == "terminated" => {
                        return Ok(Err(StoreError::invalid(format!("agent {aid} is terminated"))));
                    }
                    Some(_) => {}
                }
                ctx.conn()
                    .prepare_cached(
                        "UPDATE agents SET name = coalesce(?2, name), type = coalesce(?3, type), \
                         capabilities = coalesce(?4, capabilities), metadata = coalesce(?5, metadata), \
                         status = coalesce(?6, status), updated_at = ?7 WHERE id = ?1",
                    )?
                    .execute(params![
                        aid.as_str(),
                        update.name,
                        update.agent_type,
                        caps,
                        meta,
                        update.status.map(AgentStatus::as_str),
                        now.as_millis()
                    ])?;
                if update.status.is_some() {
                    ctx.bump_generation();
                }
                let detail = serde_json::json!({ "status": update.status.map(AgentStatus::as_str) });
                audit(ctx, p, "agent.update", aid.as_str(), None, detail, now)?;
                Ok(Ok(()))
            })
            .and_then(|r| r)?;
        self.get_agent(&Identity::System, id)?
            .ok_or_else(|| StoreError::NotFound(format!("agent {id}")))
    }

    /// Unregisters an agent for good: status terminated, token void, grants and team
    /// memberships removed. Its id is never reused, so nobody inherits its records.
    pub fn terminate_agent(
        &self,
        who: &Identity,
        id: &AgentId,
        void_token_hash: [u8; 32],
    ) -> Result<()> {
        let aid = id.clone();
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                if let Err(e) = require_admin(p, now, "unregistering an agent") {
                    return refused(ctx, p, "agent.unregister", aid.as_str(), e, now);
                }
                if agent_exists(ctx.conn(), &aid)?.is_none() {
                    return Ok(Err(StoreError::NotFound(format!("agent {aid}"))));
                }
                let conn = ctx.conn();
                conn.prepare_cached(
                    "UPDATE agents SET status = 'terminated', token_hash = ?2, updated_at = ?3 WHERE id = ?1",
                )?
                .execute(params![aid.as_str(), &void_token_hash[..], now.as_millis()])?;
                conn.prepare_cached("DELETE FROM permissions WHERE agent_id = ?1")?.execute([aid.as_str()])?;
                conn.prepare_cached("DELETE FROM team_members WHERE agent_id = ?1")?.execute([aid.as_str()])?;
                conn.prepare_cached("UPDATE teams SET leader_id = NULL, updated_at = ?2 WHERE leader_id = ?1")?
                    .execute(params![aid.as_str(), now.as_millis()])?;
                ctx.bump_generation();
                audit(ctx, p, "agent.unregister", aid.as_str(), None, serde_json::json!({}), now)?;
                Ok(Ok(()))
            })
            .and_then(|r| r)
    }

    /// The stored token hash and status of an agent, for authentication. `None` for an
    /// unknown agent. This reads no ACL: it is the registry's building block.
    pub fn credentials(&self, id: &AgentId) -> Result<Option<([u8; 32], AgentStatus)>> {
        self.shared.check_open()?;
        let conn = self.shared.pool.get()?;
        let row: Option<(Vec<u8>, String)> = conn
            .prepare_cached("SELECT token_hash, status FROM agents WHERE id = ?1")?
            .query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match row {
            None => Ok(None),
            Some((hash, status)) => {
                let hash = <[u8; 32]>::try_from(hash.as_slice())
                    .map_err(|_| corrupt("token hash", "wrong length"))?;
                Ok(Some((hash, AgentStatus::from_stored(&status)?)))
            }
        }
    }

    /// Replaces an agent's token hash (token rotation). System administrators only; the
    /// old token stops working at once.
    pub fn set_token_hash(&self, who: &Identity, id: &AgentId, hash: [u8; 32]) -> Result<()> {
        let aid = id.clone();
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                if let Err(e) = require_admin(p, now, "rotating a token") {
                    return refused(ctx, p, "agent.rotate_token", aid.as_str(), e, now);
                }
                let n = ctx
                    .conn()
                    .prepare_cached(
                        "UPDATE agents SET token_hash = ?2, token_issued_at = ?3, updated_at = ?3 \
                         WHERE id = ?1 AND status <> 'terminated'",
                    )?
                    .execute(params![aid.as_str(), &hash[..], now.as_millis()])?;
                if n == 0 {
                    return Ok(Err(StoreError::NotFound(format!("agent {aid}"))));
                }
                ctx.bump_generation();
                audit(
                    ctx,
                    p,
                    "agent.rotate_token",
                    aid.as_str(),
                    None,
                    serde_json::json!({}),
                    now,
                )?;
                Ok(Ok(()))
            })
            .and_then(|r| r)
    }

    /// Records that an agent acted now (best effort; not audited).
    pub fn touch_agent(&self, id: &AgentId) -> Result<()> {
        let aid = id.clone();
        self.shared.write_as(&Identity::System, move |ctx, shared, _| {
            ctx.conn()
                .prepare_cached("UPDATE agents SET last_seen_at = ?2 WHERE id = ?1")?
                .execute(params![aid.as_str(), shared.now().as_millis()])?;
            Ok(())
        })
    }

    /// Creates a team in `swarm`; the leader, if given, joins it. System administrators
    /// only.
    pub fn create_team(
        &self,
        who: &Identity,
        id: &TeamId,
        swarm: &SwarmId,
        name: &str,
        description: &str,
        leader: Option<&AgentId>,
    ) -> Result<TeamRecord> {
        check_text("team name", name, 256)?;
        let (tid, sid, name, description, leader) =
            (id.clone(), swarm.clone(), name.to_owned(), description.to_owned(), leader.cloned());
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                if let Err(e) = require_admin(p, now, "creating a team") {
                    return refused(ctx, p, "team.create", tid.as_str(), e, now);
                }
                let conn = ctx.conn();
                if team_swarm_and_leader(conn, &tid)?.is_some() {
                    return Ok(Err(StoreError::invalid(format!("team {tid} already exists"))));
                }
                let taken: bool = conn
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM teams WHERE swarm_id = ?1 AND name = ?2)")?
                    .query_row(params![sid.as_str(), name], |r| r.get(0))?;
                if taken {
                    return Ok(Err(StoreError::invalid(format!("swarm {sid} already has a team named {name:?}"))));
                }
                if let Some(l) = &leader {
                    match agent_exists(conn, l)? {
                        Some((s, status)) if s == sid.as_str() && status != "terminated" => {}
                        Some(_) => return Ok(Err(StoreError::invalid(format!("leader {l} is not an agent of swarm {sid}")))),
                        None => return Ok(Err(StoreError::NotFound(format!("agent {l}")))),
                    }
                }
                let swarm_exists: bool = conn
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM swarms WHERE id = ?1)")?
                    .query_row([sid.as_str()], |r| r.get(0))?;
                if !swarm_exists {
                    return Ok(Err(StoreError::NotFound(format!("swarm {sid}"))));
                }
                conn.prepare_cached(
                    "INSERT INTO teams (id, swarm_id, name, description, leader_id, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                )?
                .execute(params![tid.as_str(), sid.as_str(), name, description, leader.as_ref().map(AgentId::as_str), now.as_millis()])?;
                if let Some(l) = &leader {
                    conn.prepare_cached("INSERT INTO team_members (team_id, agent_id, joined_at) VALUES (?1, ?2, ?3)")?
                        .execute(params![tid.as_str(), l.as_str(), now.as_millis()])?;
                    ctx.bump_generation();
                }
                audit(ctx, p, "team.create", tid.as_str(), Some(sid.as_str()), serde_json::json!({ "name": name }), now)?;
                Ok(Ok(()))
            })
            .and_then(|r| r)?;
        self.get_team(&Identity::System, id)?
            .ok_or_else(|| StoreError::Corrupt("team vanished after creation".into()))
    }

    /// A team with its members (agents see teams of their own swarm only).
    pub fn get_team(&self, who: &Identity, id: &TeamId) -> Result<Option<TeamRecord>> {
        Ok(self.list_teams_where(who, None, Some(id))?.pop())
    }

    /// Teams of `swarm` (or of every swarm for the system principal).
    pub fn list_teams(&self, who: &Identity, swarm: Option<&SwarmId>) -> Result<Vec<TeamRecord>> {
        self.list_teams_where(who, swarm, None)
    }

    fn list_teams_where(
        &self,
        who: &Identity,
        swarm: Option<&SwarmId>,
        id: Option<&TeamId>,
    ) -> Result<Vec<TeamRecord>> {
        self.shared.read_snapshot_as(who, |conn, p| {
            let swarm = match p.as_agent() {
                Some(me) => Some(me.swarm().as_str()),
                None => swarm.map(SwarmId::as_str),
            };
            let mut stmt = conn.prepare_cached(
                "SELECT t.id, t.swarm_id, t.name, t.description, t.leader_id, t.created_at, \
                 (SELECT json_group_array(agent_id) FROM (SELECT agent_id FROM team_members WHERE team_id = t.id ORDER BY agent_id)) \
                 FROM teams AS t WHERE (?1 IS NULL OR t.swarm_id = ?1) AND (?2 IS NULL OR t.id = ?2) ORDER BY t.swarm_id, t.name",
            )?;
            let rows = stmt.query_map(params![swarm, id.map(TeamId::as_str)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (tid, sid, name, description, leader, created, members) = row?;
                let members: Vec<String> = serde_json::from_str(&members).map_err(|e| corrupt("members", e))?;
                out.push(TeamRecord {
                    id: TeamId::new(&tid).map_err(|e| corrupt("team id", e))?,
                    swarm: SwarmId::new(&sid).map_err(|e| corrupt("swarm id", e))?,
                    name,
                    description,
                    leader: leader.map(AgentId::new).transpose().map_err(|e| corrupt("leader", e))?,
                    members: members.iter().map(AgentId::new).collect::<std::result::Result<_, _>>().map_err(|e| corrupt("member", e))?,
                    created_at: Timestamp::from_millis(created),
                });
            }
            Ok(out)
        })
    }

    /// Adds an agent to a team. System administrators and the team's leader may.
    pub fn add_team_member(&self, who: &Identity, team: &TeamId, agent: &AgentId) -> Result<bool> {
        self.change_membership(who, team, agent, true)
    }

    /// Removes an agent from a team. System administrators and the team's leader may.
    pub fn remove_team_member(
        &self,
        who: &Identity,
        team: &TeamId,
        agent: &AgentId,
    ) -> Result<bool> {
        self.change_membership(who, team, agent, false)
    }

    fn change_membership(
        &self,
        who: &Identity,
        team: &TeamId,
        agent: &AgentId,
        add: bool,
    ) -> Result<bool> {
        let (tid, aid) = (team.clone(), agent.clone());
        let action = if add { "team.add_member" } else { "team.remove_member" };
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                let conn = ctx.conn();
                let Some((team_swarm, leader)) = team_swarm_and_leader(conn, &tid)? else {
                    return Ok(Err(StoreError::NotFound(format!("team {tid}"))));
                };
                let is_leader = p.as_agent().is_some_and(|a| leader.as_deref() == Some(a.id().as_str()));
                if !is_admin(p, now) && !is_leader {
                    let e = StoreError::PermissionDenied(format!("changing team {tid} needs an administrator or its leader"));
                    return refused(ctx, p, action, tid.as_str(), e, now);
                }
                let changed = if add {
                    match agent_exists(conn, &aid)? {
                        None => return Ok(Err(StoreError::NotFound(format!("agent {aid}")))),
                        Some((s, _)) if s != team_swarm => {
                            return Ok(Err(StoreError::invalid(format!("agent {aid} and team {tid} are in different swarms"))));
                        }
                        Some((_, status)) if status == "terminated" => {
                            return Ok(Err(StoreError::invalid(format!("agent {aid} is terminated"))));
                        }
                        Some(_) => {}
                    }
                    conn.prepare_cached(
                        "INSERT INTO team_members (team_id, agent_id, joined_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                    )?
                    .execute(params![tid.as_str(), aid.as_str(), now.as_millis()])?
                } else {
                    conn.prepare_cached("DELETE FROM team_members WHERE team_id = ?1 AND agent_id = ?2")?
                        .execute(params![tid.as_str(), aid.as_str()])?
                };
                if changed > 0 {
                    ctx.bump_generation();
                    audit(ctx, p, action, tid.as_str(), Some(&team_swarm), serde_json::json!({ "agent": aid }), now)?;
                }
                Ok(Ok(changed > 0))
            })
            .and_then(|r| r)
    }

    /// Grants `grant` to an agent (replacing the expiry of an identical grant). System
    /// administrators only. Takes effect on the agent's next operation.
    pub fn grant(&self, who: &Identity, agent: &AgentId, grant: Grant) -> Result<()> {
        let aid = agent.clone();
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                if let Err(e) = require_admin(p, now, "granting permissions") {
                    return refused(ctx, p, "permission.grant", aid.as_str(), e, now);
                }
                match agent_exists(ctx.conn(), &aid)? {
                    None => return Ok(Err(StoreError::NotFound(format!("agent {aid}")))),
                    Some((_, status)) if status == "terminated" => {
                        return Ok(Err(StoreError::invalid(format!("agent {aid} is terminated"))));
                    }
                    Some(_) => {}
                }
                insert_grant(ctx.conn(), &aid, &grant, p.audit_name(), now)?;
                ctx.bump_generation();
                audit(
                    ctx,
                    p,
                    "permission.grant",
                    aid.as_str(),
                    None,
                    serde_json::json!(grant),
                    now,
                )?;
                Ok(Ok(()))
            })
            .and_then(|r| r)
    }

    /// Revokes an agent's grants on `resource` at exactly `level` (all actions, or only
    /// `actions`). Returns how many grants went. System administrators only. Takes effect
    /// on the agent's next operation, cached or not.
    pub fn revoke(
        &self,
        who: &Identity,
        agent: &AgentId,
        resource: ResourceType,
        level: AclLevel,
        actions: Option<Vec<Action>>,
    ) -> Result<u64> {
        let aid = agent.clone();
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                if let Err(e) = require_admin(p, now, "revoking permissions") {
                    return refused(ctx, p, "permission.revoke", aid.as_str(), e, now);
                }
                let mut n = 0;
                let all: Vec<Action> = Action::ALL.to_vec();
                for a in actions.as_ref().unwrap_or(&all) {
                    n += ctx
                        .conn()
                        .prepare_cached(
                            "DELETE FROM permissions WHERE agent_id = ?1 AND resource_type = ?2 AND level = ?3 AND action = ?4",
                        )?
                        .execute(params![aid.as_str(), resource.as_str(), level.as_u8(), a.as_str()])?;
                }
                ctx.bump_generation();
                let detail = serde_json::json!({ "resource": resource, "level": level, "revoked": n });
                audit(ctx, p, "permission.revoke", aid.as_str(), None, detail, now)?;
                Ok(Ok(n as u64))
            })
            .and_then(|r| r)
    }

    /// The grants of an agent, live and expired.
    pub fn grants_of(&self, who: &Identity, agent: &AgentId) -> Result<Vec<GrantRecord>> {
        self.shared.read_snapshot_as(who, |conn, p| {
            if let Some(me) = p.as_agent()
                && me.id() != agent
                && !is_admin(p, self.shared.now())
            {
                return Err(StoreError::PermissionDenied("agents may read only their own grants".into()));
            }
            let mut stmt = conn.prepare_cached(
                "SELECT resource_type, action, level, expires_at, granted_by, granted_at FROM permissions \
                 WHERE agent_id = ?1 ORDER BY resource_type, action, level",
            )?;
            let rows = stmt.query_map([agent.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (res, act, lvl, exp, by, at) = row?;
                let g = Grant::new(
                    res.parse().map_err(|e| corrupt("grant", e))?,
                    act.parse().map_err(|e| corrupt("grant", e))?,
                    AclLevel::from_i64(lvl).map_err(|e| corrupt("grant", e))?,
                );
                out.push(GrantRecord {
                    agent: agent.clone(),
                    grant: match exp {
                        Some(e) => g.expiring_at(Timestamp::from_millis(e)),
                        None => g,
                    },
                    granted_by: by,
                    granted_at: Timestamp::from_millis(at),
                });
            }
            Ok(out)
        })
    }

    /// Counts of rows per table, for health reports. System principal only.
    pub fn table_counts(&self, who: &Identity) -> Result<Vec<(String, u64)>> {
        self.shared.read_snapshot_as(who, |conn, p| {
            if !p.is_system() {
                return Err(StoreError::PermissionDenied(
                    "table counts are for the system principal".into(),
                ));
            }
            let mut out = Vec::new();
            for t in swarm_schema::TABLES {
                let n: i64 =
                    conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))?;
                out.push(((*t).to_owned(), u64::try_from(n).unwrap_or(0)));
            }
            Ok(out)
        })
    }
}

fn check_text(what: &str, s: &str, max: usize) -> Result<()> {
    if s.trim().is_empty() {
        return Err(StoreError::invalid(format!("{what} must not be empty")));
    }
    if s.len() > max {
        return Err(StoreError::invalid(format!("{what} is longer than {max} bytes")));
    }
    if s.chars().any(char::is_control) {
        return Err(StoreError::invalid(format!("{what} contains a control character")));
    }
    Ok(())
}
