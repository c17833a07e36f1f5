//! `whoami`: who this server acts as and what it may do.

use rmcp::schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use swarm_memory::{AclLevel, Action, ResourceType};

use super::Ctx;
use crate::reply::{Outcome, Reply, ToolError};

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub(crate) struct Args {}

/// The resources and actions whoami reports, per profile.
const MEMORY: (ResourceType, &[Action]) =
    (ResourceType::Memory, &[Action::Read, Action::Write, Action::Delete]);
const SWARM: &[(ResourceType, &[Action])] = &[
    (ResourceType::Task, &[Action::Read, Action::Write]),
    (ResourceType::Event, &[Action::Read, Action::Write]),
    (ResourceType::Consensus, &[Action::Read, Action::Write, Action::Vote]),
];

pub(crate) fn run(ctx: &Ctx, _: Args) -> Outcome {
    let Some(agent) = ctx.session.agent() else {
        return Err(ToolError::new("unavailable", "this server does not act as an agent"));
    };
    let record = ctx.system.get_agent(agent)?.ok_or_else(crate::reply::unauthenticated)?;
    let principal = ctx.store().principal(ctx.who())?;
    let now = ctx.store().now();
    let mut resources: Vec<(ResourceType, &[Action])> = vec![MEMORY];
    if ctx.facts.profile == crate::Profile::Swarm {
        resources.extend_from_slice(SWARM);
    }
    // For each resource and action, the levels the grants reach (a grant at level n
    // covers records of levels 1..=n).
    let mut permissions = Map::new();
    for (resource, actions) in resources {
        let mut per = Map::new();
        for a in actions {
            let levels: Vec<&str> = match principal.max_level(resource, *a, now) {
                Some(max) => {
                    AclLevel::ALL.iter().filter(|l| **l <= max).map(|l| l.name()).collect()
                }
                None => Vec::new(),
            };
            per.insert(a.as_str().to_owned(), json!(levels));
        }
        permissions.insert(resource.as_str().to_owned(), Json::Object(per));
    }
    let encrypted: Vec<&str> = match ctx.system.encrypted_levels() {
        Some(max) => AclLevel::ALL.iter().filter(|l| **l <= max).map(|l| l.name()).collect(),
        None => Vec::new(),
    };
    let searchable: Vec<&str> =
        AclLevel::ALL.iter().map(|l| l.name()).filter(|l| !encrypted.contains(l)).collect();
    let health = ctx.system.coordination_health();
    let facts = &ctx.facts;
    Ok(Reply::new(json!({
        "agent": record.id,
        "name": record.name,
        "type": record.agent_type,
        "swarm": record.swarm,
        "teams": record.teams,
        "capabilities": record.capabilities,
        "permissions": permissions,
        "encrypted_levels": encrypted,
        "searchable_levels": searchable,
        "database": facts.database.display().to_string(),
        "server": {
            "name": crate::SERVER_NAME,
            "version": crate::VERSION,
            "profile": facts.profile.as_str(),
            "tools": facts.tools,
        },
        "coordination": { "backend": health.backend, "connected": health.connected },
    })))
}
