//! `agent ...`: registering and managing agents, as the system principal.

use clap::{Args, Subcommand};
use serde_json::json;
use swarm_memory::{
    AgentFilter, AgentId, AgentRecord, AgentSpec, AgentStatus, AgentUpdate, DefaultGrants,
    Identity, SwarmMemory, TeamId,
};

use crate::Global;
use crate::exit::{CliError, Result};
use crate::output::{self, Reply, to_json};
use crate::{input, open};

const TOKEN_WARNING: &str = "the token is shown only now: hand it to the agent and keep it secret (it cannot be recovered, only rotated)";

#[derive(Debug, Subcommand)]
pub(crate) enum AgentCommand {
    /// Register an agent in --swarm and print its id and token (the token only this once)
    Register(RegisterArgs),
    /// List agents, of --swarm when given, else of every swarm
    List(ListArgs),
    /// Show an agent and its grants
    Show {
        /// The agent
        id: AgentId,
    },
    /// Change an agent's name, type, status, capabilities or metadata
    Update(UpdateArgs),
    /// Unregister an agent for good: its token stops working and its id is never reused
    Remove {
        /// The agent
        id: AgentId,
    },
    /// Issue a new token (printed only this once); the old one stops working at once
    RotateToken {
        /// The agent
        id: AgentId,
    },
}

#[derive(Debug, Args)]
pub(crate) struct RegisterArgs {
    /// Display name
    #[arg(long)]
    name: String,
    /// Type, such as `backend-dev`
    #[arg(long = "type", value_name = "TYPE")]
    agent_type: String,
    /// Use this id instead of a generated `agt_...` one
    #[arg(long)]
    id: Option<String>,
    /// Join this team at once (repeatable; the team must exist in the swarm)
    #[arg(long = "team", value_name = "TEAM")]
    teams: Vec<String>,
    /// A capability (repeatable)
    #[arg(long = "capability", value_name = "C")]
    capabilities: Vec<String>,
    /// Metadata: a JSON object
    #[arg(long, value_name = "JSON")]
    metadata: Option<String>,
    /// Give no grants at all (default: memory, task, event and artifact use of the agent's
    /// own scopes up to public, consensus up to swarm)
    #[arg(long)]
    no_default_grants: bool,
}

/// Status values an operator can set (`terminated` is `agent remove`).
const SETTABLE_STATUSES: &[&str] = &["active", "inactive", "suspended"];

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only agents of this type
    #[arg(long = "type", value_name = "TYPE")]
    agent_type: Option<String>,
    /// Only members of this team
    #[arg(long)]
    team: Option<TeamId>,
    /// Only agents with this status
    #[arg(long, value_parser = input::one_of(AgentStatus::NAMES, AgentStatus::parse))]
    status: Option<AgentStatus>,
    /// Only agents with this capability
    #[arg(long, value_name = "C")]
    capability: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// The agent
    id: AgentId,
    /// New display name
    #[arg(long)]
    name: Option<String>,
    /// New type
    #[arg(long = "type", value_name = "TYPE")]
    agent_type: Option<String>,
    /// New status; anything but active stops the agent from acting at once
    #[arg(long, value_parser = input::one_of(SETTABLE_STATUSES, AgentStatus::parse))]
    status: Option<AgentStatus>,
    /// Capabilities, replacing the current ones (repeatable)
    #[arg(long = "capability", value_name = "C")]
    capabilities: Vec<String>,
    /// Metadata, replacing the current one: a JSON object
    #[arg(long, value_name = "JSON")]
    metadata: Option<String>,
}

pub(crate) fn run(system: &SwarmMemory, g: &Global, c: AgentCommand) -> Result<Reply> {
    match c {
        AgentCommand::Register(a) => register(system, g, a),
        AgentCommand::List(a) => list(system, g, a),
        AgentCommand::Show { id } => show(system, &id),
        AgentCommand::Update(a) => update(system, a),
        AgentCommand::Remove { id } => remove(system, &id),
        AgentCommand::RotateToken { id } => rotate(system, &id),
    }
}

fn parse_metadata(text: &str) -> Result<serde_json::Value> {
    input::json_object("--metadata", text)
}

fn register(system: &SwarmMemory, g: &Global, a: RegisterArgs) -> Result<Reply> {
    let swarm = g.swarm_or_default()?;
    open::require_swarm(system, &swarm)?;
    let mut spec = AgentSpec::new(a.name, a.agent_type)?.swarm(swarm.as_str())?;
    if let Some(id) = &a.id {
        spec = spec.id(id)?;
    }
    for t in &a.teams {
        spec = spec.team(t)?;
    }
    if !a.capabilities.is_empty() {
        spec = spec.capabilities(a.capabilities)?;
    }
    if let Some(m) = &a.metadata {
        spec = spec.metadata(parse_metadata(m)?)?;
    }
    if a.no_default_grants {
        spec = spec.grants(DefaultGrants::None);
    }
    let registered = system.register_agent(spec)?;
    let agent = &registered.agent;
    let token = registered.token.expose();
    let text = format!(
        "registered agent {} in swarm {}\n{}",
        agent.id,
        agent.swarm,
        output::fields(&[("id", agent.id.to_string()), ("token", token.to_owned())])
    );
    let doc = json!({ "id": agent.id, "token": token, "agent": to_json(agent)? });
    Ok(Reply::new(doc, text).note(TOKEN_WARNING))
}

fn list(system: &SwarmMemory, g: &Global, a: ListArgs) -> Result<Reply> {
    if let Some(swarm) = &g.swarm {
        open::require_swarm(system, swarm)?;
    }
    let filter = AgentFilter {
        swarm: g.swarm.clone(),
        agent_type: a.agent_type,
        status: a.status,
        team: a.team,
        capability: a.capability,
    };
    let agents = system.list_agents(&filter)?;
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.name.clone(),
                r.agent_type.clone(),
                r.status.as_str().to_owned(),
                r.swarm.to_string(),
                output::list(&r.teams),
            ]
        })
        .collect();
    let text = if agents.is_empty() {
        "no agents".to_owned()
    } else {
        output::table(&["ID", "NAME", "TYPE", "STATUS", "SWARM", "TEAMS"], &rows)
    };
    Ok(Reply::new(json!({ "agents": to_json(&agents)? }), text))
}

fn find(system: &SwarmMemory, id: &AgentId) -> Result<AgentRecord> {
    system.get_agent(id)?.ok_or_else(|| CliError::not_found(format!("agent {id} not found")))
}

fn describe(r: &AgentRecord) -> String {
    output::fields(&[
        ("id", r.id.to_string()),
        ("name", r.name.clone()),
        ("type", r.agent_type.clone()),
        ("swarm", r.swarm.to_string()),
        ("status", r.status.as_str().to_owned()),
        ("teams", output::list(&r.teams)),
        ("capabilities", output::list(&r.capabilities)),
        ("metadata", r.metadata.to_string()),
        ("registered", output::time(r.created_at.as_millis())),
        ("token issued", output::time(r.token_issued_at.as_millis())),
        ("last seen", r.last_seen_at.map_or("never".to_owned(), |t| output::time(t.as_millis()))),
    ])
}

fn show(system: &SwarmMemory, id: &AgentId) -> Result<Reply> {
    let agent = find(system, id)?;
    let grants = system.registry().grants_of(&Identity::System, id)?;
    let rows: Vec<Vec<String>> = grants
        .iter()
        .map(|g| {
            vec![
                g.grant.resource().to_string(),
                g.grant.action().to_string(),
                format!("{} ({})", g.grant.level().as_u8(), g.grant.level()),
                g.grant.expires_at().map_or("never".to_owned(), |t| output::time(t.as_millis())),
            ]
        })
        .collect();
    let grants_text = if grants.is_empty() {
        "grants: none\n".to_owned()
    } else {
        format!("grants:\n{}", output::table(&["RESOURCE", "ACTION", "UP TO", "EXPIRES"], &rows))
    };
    let text = format!("{}{grants_text}", describe(&agent));
    Ok(Reply::new(json!({ "agent": to_json(&agent)?, "grants": to_json(&grants)? }), text))
}

fn update(system: &SwarmMemory, a: UpdateArgs) -> Result<Reply> {
    let change = AgentUpdate {
        name: a.name,
        agent_type: a.agent_type,
        capabilities: (!a.capabilities.is_empty()).then_some(a.capabilities),
        metadata: a.metadata.as_deref().map(parse_metadata).transpose()?,
        status: a.status,
    };
    let nothing = change.name.is_none()
        && change.agent_type.is_none()
        && change.capabilities.is_none()
        && change.metadata.is_none()
        && change.status.is_none();
    if nothing {
        return Err(CliError::usage(
            "nothing to change: give --name, --type, --status, --capability or --metadata",
        ));
    }
    let agent = system.registry().update_agent(&Identity::System, &a.id, change)?;
    let text = format!("updated agent {}\n{}", agent.id, describe(&agent));
    Ok(Reply::new(json!({ "agent": to_json(&agent)? }), text))
}

fn remove(system: &SwarmMemory, id: &AgentId) -> Result<Reply> {
    system.registry().unregister_agent(&Identity::System, id)?;
    Ok(Reply::new(json!({ "id": id, "removed": true }), format!("removed agent {id}")))
}

fn rotate(system: &SwarmMemory, id: &AgentId) -> Result<Reply> {
    let token = system.registry().rotate_token(&Identity::System, id)?;
    let text = format!(
        "new token for agent {id} (the old one no longer works)\n{}",
        output::fields(&[("id", id.to_string()), ("token", token.expose().to_owned())])
    );
    let doc = json!({ "id": id, "token": token.expose() });
    Ok(Reply::new(doc, text).note(TOKEN_WARNING))
}
