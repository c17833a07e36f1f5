//! The other tables of the seed's schema as working features: tasks with dependencies,
//! the durable event bus, consensus rounds, artifacts and conflicts.
//!
//! Everything here follows the memory module's rules: every read carries the ACL
//! predicate in its SQL, every write decides inside the write transaction, and every
//! change and refusal is audited there.

pub(crate) mod artifacts;
pub(crate) mod conflicts;
pub(crate) mod consensus;
pub(crate) mod events;
pub(crate) mod tasks;

use swarm_acl::{
    Access, AclLevel, Action, AgentId, Principal, ResourceType, SqlColumns, SwarmId, TeamId,
    Timestamp, decide,
};

use crate::audit::{AuditEntry, Outcome};
use crate::error::{Result, StoreError};
use crate::txn::WriteCtx;

/// The scope of a domain record: who owns it, its team, its level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Scope {
    pub(crate) owner: Option<AgentId>,
    pub(crate) team: Option<TeamId>,
    pub(crate) level: AclLevel,
}

impl Scope {
    pub(crate) fn access<'a>(&'a self, swarm: &'a SwarmId) -> Access<'a> {
        Access::new(self.level, swarm).with_owner(self.owner.as_ref()).with_team(self.team.as_ref())
    }

    /// Parses stored columns.
    pub(crate) fn parse(owner: Option<&str>, team: Option<&str>, level: i64) -> Result<Self> {
        let owner = owner.map(AgentId::new).transpose().map_err(|e| corrupt("owner", &e))?;
        Self::with_owner(owner, team, level)
    }

    /// Parses the stored team and level of a record whose owner is known already.
    pub(crate) fn with_owner(
        owner: Option<AgentId>,
        team: Option<&str>,
        level: i64,
    ) -> Result<Self> {
        Ok(Scope {
            owner,
            team: team.map(TeamId::new).transpose().map_err(|e| corrupt("team", &e))?,
            level: AclLevel::from_i64(level).map_err(|e| corrupt("level", &e))?,
        })
    }
}

fn corrupt(what: &str, e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("stored {what}: {e}"))
}

/// The scope a new domain record gets: owned by its creator, at `level` (or `default`),
/// with the team given, or the creator's only team for team-level records.
pub(crate) fn new_scope(
    p: &Principal,
    level: Option<AclLevel>,
    team: Option<&TeamId>,
    default: AclLevel,
) -> Result<Scope> {
    let level = level.unwrap_or(default);
    let team = if level == AclLevel::Team {
        match (team, p.as_agent().map(|a| a.teams())) {
            (Some(t), _) => Some(t.clone()),
            (None, Some([only])) => Some(only.clone()),
            (None, Some(_)) => {
                return Err(StoreError::invalid("a team-level record needs a team: name one"));
            }
            (None, None) => {
                return Err(StoreError::invalid(
                    "a team-level record written by the system needs a team",
                ));
            }
        }
    } else {
        if team.is_some() {
            return Err(StoreError::invalid("a team can only be given for team-level records"));
        }
        None
    };
    let owner = p.as_agent().map(|a| a.id().clone());
    if level == AclLevel::Private && owner.is_none() {
        return Err(StoreError::invalid("the system principal cannot own a private record"));
    }
    Ok(Scope { owner, team, level })
}

/// Column expressions for a table aliased `alias` whose owner column is `owner`.
pub(crate) const fn columns(
    level: &'static str,
    swarm: &'static str,
    owner: &'static str,
    team: &'static str,
) -> SqlColumns<'static> {
    SqlColumns { level, swarm, owner, team }
}

/// Whether `p` may `action` the record; a refusal reason for the audit trail otherwise.
pub(crate) fn allowed(
    p: &Principal,
    action: Action,
    resource: ResourceType,
    scope: &Scope,
    swarm: &SwarmId,
    now: Timestamp,
) -> bool {
    decide(p, action, resource, &scope.access(swarm), now).is_allowed()
}

/// Agents create and change records only in their own swarm.
pub(crate) fn own_swarm(p: &Principal, swarm: &SwarmId) -> bool {
    p.as_agent().is_none_or(|a| a.swarm() == swarm)
}

/// An audit row for a domain operation.
#[allow(clippy::too_many_arguments)]
pub(crate) fn audit(
    ctx: &mut WriteCtx<'_>,
    p: &Principal,
    action: &'static str,
    resource_type: &'static str,
    resource: &str,
    swarm: &SwarmId,
    outcome: Outcome,
    detail: serde_json::Value,
    now: Timestamp,
) -> Result<()> {
    ctx.audit(&AuditEntry {
        at: now.as_millis(),
        actor: p.audit_name().to_owned(),
        action,
        resource_type,
        resource: resource.to_owned(),
        swarm: Some(swarm.to_string()),
        outcome,
        detail: detail.to_string(),
        feed: None,
    })
}

/// Audits a refusal and returns the caller's error (the job commits the audit row).
#[allow(clippy::too_many_arguments)]
pub(crate) fn deny(
    ctx: &mut WriteCtx<'_>,
    p: &Principal,
    action: &'static str,
    resource_type: &'static str,
    resource: &str,
    swarm: &SwarmId,
    why: &str,
    now: Timestamp,
) -> Result<StoreError> {
    audit(
        ctx,
        p,
        action,
        resource_type,
        resource,
        swarm,
        Outcome::Denied,
        serde_json::json!({ "reason": why }),
        now,
    )?;
    Ok(StoreError::PermissionDenied(format!("{why} ({resource})")))
}

/// The refusal of a create whose client-chosen id is in use. Ids are keys of the whole
/// database, so the collision cannot be hidden (docs/DECISIONS.md, "Client-chosen ids"):
/// the answer is the same whether the record holding the id is visible to `p`, hidden
/// from it, or in another swarm, says nothing about that record, and is audited as a
/// denial so that probing for ids shows in the audit trail.
pub(crate) fn id_taken(
    ctx: &mut WriteCtx<'_>,
    p: &Principal,
    action: &'static str,
    resource_type: &'static str,
    id: &str,
    swarm: &SwarmId,
    now: Timestamp,
) -> Result<StoreError> {
    let detail = serde_json::json!({ "reason": "the id is taken" });
    audit(ctx, p, action, resource_type, id, swarm, Outcome::Denied, detail, now)?;
    Ok(StoreError::invalid(format!(
        "{resource_type} id {id} is taken: choose another, or leave the id out and the store generates one"
    )))
}

/// The associated data binding a sealed domain payload (an event's payload, an artifact's
/// content) to its record: docs/FORMAT.md section 4.
pub(crate) fn payload_aad(kind: &str, swarm: &SwarmId, id: &str, scope: &Scope) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + id.len());
    out.extend_from_slice(format!("swarm-memory/{kind}/v1").as_bytes());
    out.push(0);
    for field in [swarm.as_str(), id] {
        out.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out.push(scope.level.as_u8());
    for field in
        [scope.owner.as_ref().map(AgentId::as_str), scope.team.as_ref().map(TeamId::as_str)]
    {
        match field {
            Some(s) => {
                out.push(1);
                out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            None => out.push(0),
        }
    }
    out
}

/// A new random id with a prefix.
pub(crate) fn new_id(prefix: &str) -> String {
    crate::memory::random_id(prefix)
}

/// Checks an id given by a caller (ids are generated unless given).
pub(crate) fn check_id(what: &str, id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'))
    {
        return Err(StoreError::invalid(format!(
            "{what} id {id:?} must be 1-128 letters, digits or . _ : @ -"
        )));
    }
    Ok(())
}

/// Checks free text given by a caller.
pub(crate) fn check_text(what: &str, s: &str, max: usize, allow_empty: bool) -> Result<()> {
    if (!allow_empty && s.trim().is_empty()) || s.len() > max {
        return Err(StoreError::invalid(format!(
            "{what} must be {}-{max} bytes",
            usize::from(!allow_empty)
        )));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(StoreError::invalid(format!("{what} contains a control character")));
    }
    Ok(())
}

/// A JSON object given by a caller, serialized.
pub(crate) fn json_object(what: &str, v: &serde_json::Value, max: usize) -> Result<String> {
    if !v.is_object() {
        return Err(StoreError::invalid(format!("{what} must be a JSON object")));
    }
    let s = serde_json::to_string(v).map_err(|e| StoreError::invalid(format!("{what}: {e}")))?;
    if s.len() > max {
        return Err(StoreError::invalid(format!("{what} is larger than {max} bytes")));
    }
    Ok(s)
}
