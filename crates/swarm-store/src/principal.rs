//! Resolving an identity into a principal: the agent's status, swarm, teams and live
//! grants, read in one snapshot together with the ACL generation they belong to.

use rusqlite::{Connection, OptionalExtension};
use swarm_acl::{
    AclLevel, Action, AgentId, Grant, Principal, ResourceType, SwarmId, TeamId, Timestamp,
};

use crate::error::{Result, StoreError};

const AGENT: &str = "SELECT swarm_id, status FROM agents WHERE id = ?1";
const TEAMS: &str = "SELECT team_id FROM team_members WHERE agent_id = ?1";
const GRANTS: &str =
    "SELECT resource_type, action, level, expires_at FROM permissions WHERE agent_id = ?1";
pub(crate) const GENERATION: &str = "SELECT value FROM meta WHERE key = 'acl_generation'";

/// Loads the principal of agent `id`. The caller provides the snapshot: a write
/// transaction, or a read transaction on a pooled connection.
///
/// Unknown, suspended, inactive and terminated agents all get [`StoreError::InactiveAgent`]:
/// only active agents can act.
pub(crate) fn load(conn: &Connection, id: &AgentId) -> Result<Principal> {
    let generation = current_generation(conn)?;
    load_at(conn, id, generation)
}

/// The ACL generation as of the caller's snapshot.
pub(crate) fn current_generation(conn: &Connection) -> Result<u64> {
    let g: i64 = conn.prepare_cached(GENERATION)?.query_row([], |r| r.get(0))?;
    Ok(u64::try_from(g).unwrap_or(0))
}

/// Loads the principal of agent `id`, labelled with `generation`. Inside a write
/// transaction the caller passes the group's running generation, which already counts
/// the uncommitted changes of earlier jobs of the group.
pub(crate) fn load_at(conn: &Connection, id: &AgentId, generation: u64) -> Result<Principal> {
    let row: Option<(String, String)> = conn
        .prepare_cached(AGENT)?
        .query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((swarm, status)) = row else {
        return Err(StoreError::InactiveAgent(id.to_string()));
    };
    if status != "active" {
        return Err(StoreError::InactiveAgent(id.to_string()));
    }
    let swarm =
        SwarmId::new(&swarm).map_err(|e| StoreError::Corrupt(format!("agent {id}: {e}")))?;
    let mut teams = Vec::new();
    let mut stmt = conn.prepare_cached(TEAMS)?;
    for t in stmt.query_map([id.as_str()], |r| r.get::<_, String>(0))? {
        let t = t?;
        teams.push(
            TeamId::new(&t).map_err(|e| StoreError::Corrupt(format!("team of agent {id}: {e}")))?,
        );
    }
    let mut grants = Vec::new();
    let mut stmt = conn.prepare_cached(GRANTS)?;
    let rows = stmt.query_map([id.as_str()], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, Option<i64>>(3)?,
        ))
    })?;
    for row in rows {
        let (resource, action, level, expires) = row?;
        // A row that does not parse grants nothing: fail closed, but say so.
        let parsed =
            (resource.parse::<ResourceType>(), action.parse::<Action>(), AclLevel::from_i64(level));
        match parsed {
            (Ok(resource), Ok(action), Ok(level)) => {
                let g = Grant::new(resource, action, level);
                grants.push(match expires {
                    Some(at) => g.expiring_at(Timestamp::from_millis(at)),
                    None => g,
                });
            }
            _ => tracing::warn!(agent = %id, "ignoring an unreadable permission row"),
        }
    }
    Ok(Principal::agent(id.clone(), swarm, teams, grants, generation))
}

/// Loads a principal in its own read transaction on a pooled connection.
pub(crate) fn load_snapshot(conn: &mut Connection, id: &AgentId) -> Result<Principal> {
    let tx = conn.transaction()?;
    let p = load(&tx, id)?;
    tx.commit()?;
    Ok(p)
}

/// The generation a principal was resolved at (the system principal has none: it is
/// never stale).
pub(crate) fn generation_of(p: &Principal) -> Option<u64> {
    p.as_agent().map(|a| a.generation())
}
