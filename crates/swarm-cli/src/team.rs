//! `team ...`: teams and their members, as the system principal.

use clap::{Args, Subcommand};
use serde_json::json;
use swarm_memory::{AgentId, Identity, SwarmMemory, TeamId, TeamRecord};

use crate::Global;
use crate::exit::{CliError, Result};
use crate::open;
use crate::output::{self, Reply, to_json};

#[derive(Debug, Subcommand)]
pub(crate) enum TeamCommand {
    /// Create a team in --swarm; the leader, if given, joins it
    Create(CreateArgs),
    /// Add an agent to a team (exit 0 also when it already was a member)
    Add(Membership),
    /// Remove an agent from a team (exit 3 when it was not a member)
    Remove(Membership),
    /// List teams, of --swarm when given, else of every swarm
    List,
    /// Show a team and its members
    Show {
        /// The team
        team: TeamId,
    },
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Name, unique in the swarm
    #[arg(long)]
    name: String,
    /// Use this id instead of a generated `team_...` one
    #[arg(long)]
    id: Option<String>,
    /// The team's leader (an agent of the swarm), who may change its members
    #[arg(long, value_name = "AGENT")]
    leader: Option<AgentId>,
}

#[derive(Debug, Args)]
pub(crate) struct Membership {
    /// The team
    team: TeamId,
    /// The agent
    #[arg(value_name = "AGENT")]
    who: AgentId,
}

pub(crate) fn run(system: &SwarmMemory, g: &Global, c: TeamCommand) -> Result<Reply> {
    match c {
        TeamCommand::Create(a) => create(system, g, a),
        TeamCommand::Add(m) => add(system, m),
        TeamCommand::Remove(m) => remove(system, m),
        TeamCommand::List => list(system, g),
        TeamCommand::Show { team } => show(system, &team),
    }
}

fn describe(t: &TeamRecord) -> String {
    output::fields(&[
        ("id", t.id.to_string()),
        ("name", t.name.clone()),
        ("swarm", t.swarm.to_string()),
        ("leader", t.leader.as_ref().map_or("-".to_owned(), ToString::to_string)),
        ("members", output::list(&t.members)),
        ("created", output::time(t.created_at.as_millis())),
    ])
}

fn create(system: &SwarmMemory, g: &Global, a: CreateArgs) -> Result<Reply> {
    let swarm = g.swarm_or_default()?;
    open::require_swarm(system, &swarm)?;
    let team = system.registry().create_team(
        &Identity::System,
        a.id.as_deref(),
        &a.name,
        Some(&swarm),
        a.leader.as_ref(),
    )?;
    let text = format!("created team {}\n{}", team.id, describe(&team));
    Ok(Reply::new(json!({ "team": to_json(&team)? }), text))
}

fn add(system: &SwarmMemory, m: Membership) -> Result<Reply> {
    let added = system.registry().add_agent_to_team(&Identity::System, &m.who, &m.team)?;
    let text = if added {
        format!("added agent {} to team {}", m.who, m.team)
    } else {
        format!("agent {} already is a member of team {}", m.who, m.team)
    };
    Ok(Reply::new(json!({ "team": m.team, "agent": m.who, "changed": added }), text))
}

fn remove(system: &SwarmMemory, m: Membership) -> Result<Reply> {
    if !system.registry().remove_agent_from_team(&Identity::System, &m.who, &m.team)? {
        return Err(CliError::not_found(format!(
            "agent {} is not a member of team {}",
            m.who, m.team
        )));
    }
    let text = format!("removed agent {} from team {}", m.who, m.team);
    Ok(Reply::new(json!({ "team": m.team, "agent": m.who, "changed": true }), text))
}

fn list(system: &SwarmMemory, g: &Global) -> Result<Reply> {
    if let Some(swarm) = &g.swarm {
        open::require_swarm(system, swarm)?;
    }
    let teams = system.registry().list_teams(&Identity::System, g.swarm.as_ref())?;
    let rows: Vec<Vec<String>> = teams
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.name.clone(),
                t.swarm.to_string(),
                t.leader.as_ref().map_or("-".to_owned(), ToString::to_string),
                t.members.len().to_string(),
            ]
        })
        .collect();
    let text = if teams.is_empty() {
        "no teams".to_owned()
    } else {
        output::table(&["ID", "NAME", "SWARM", "LEADER", "MEMBERS"], &rows)
    };
    Ok(Reply::new(json!({ "teams": to_json(&teams)? }), text))
}

fn show(system: &SwarmMemory, id: &TeamId) -> Result<Reply> {
    let team = system
        .registry()
        .get_team(&Identity::System, id)?
        .ok_or_else(|| CliError::not_found(format!("team {id} not found")))?;
    Ok(Reply::new(json!({ "team": to_json(&team)? }), describe(&team)))
}
