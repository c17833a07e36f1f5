//! `swarm ...`: the swarms of a database, their metadata and configuration, as the system
//! principal. `init` creates the first swarm; every other one is created here, never as
//! a side effect of naming it in `--swarm`.

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use swarm_memory::{AgentFilter, Identity, SwarmId, SwarmMemory, SwarmRecord};

use crate::exit::{CliError, Result};
use crate::input;
use crate::open;
use crate::output::{self, Reply, to_json};

#[derive(Debug, Subcommand)]
pub(crate) enum SwarmCommand {
    /// Create a swarm (exit 2 when it already exists)
    Create(CreateArgs),
    /// List every swarm of the database
    List,
    /// Show a swarm, with its number of agents and teams
    Show {
        /// The swarm
        id: SwarmId,
    },
    /// Replace a swarm's configuration or change its status
    Update(UpdateArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The swarm's id: letters, digits, `-`, `_`, `.`
    id: SwarmId,
    /// Display name [default: the id]
    #[arg(long)]
    name: Option<String>,
    /// What the swarm is for
    #[arg(long, default_value = "")]
    description: String,
    /// Free-form configuration: a JSON object
    #[arg(long, value_name = "JSON")]
    config: Option<String>,
}

/// Status values of a swarm.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Status {
    Active,
    Paused,
    Archived,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Paused => "paused",
            Status::Archived => "archived",
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// The swarm
    id: SwarmId,
    /// The configuration, replacing the current one: a JSON object
    #[arg(long, value_name = "JSON")]
    config: Option<String>,
    /// The new status
    #[arg(long, value_enum)]
    status: Option<Status>,
}

pub(crate) fn run(system: &SwarmMemory, c: SwarmCommand) -> Result<Reply> {
    match c {
        SwarmCommand::Create(a) => create(system, a),
        SwarmCommand::List => list(system),
        SwarmCommand::Show { id } => show(system, &id),
        SwarmCommand::Update(a) => update(system, a),
    }
}

fn describe(s: &SwarmRecord) -> Vec<(&'static str, String)> {
    vec![
        ("id", s.id.to_string()),
        ("name", s.name.clone()),
        ("description", if s.description.is_empty() { "-".into() } else { s.description.clone() }),
        ("status", s.status.clone()),
        ("config", s.config.to_string()),
        ("created", output::time(s.created_at.as_millis())),
        ("updated", output::time(s.updated_at.as_millis())),
    ]
}

fn find(system: &SwarmMemory, id: &SwarmId) -> Result<SwarmRecord> {
    system.store().get_swarm(&Identity::System, id)?.ok_or_else(|| open::swarm_not_found(id))
}

fn create(system: &SwarmMemory, a: CreateArgs) -> Result<Reply> {
    let config = match &a.config {
        Some(text) => input::json_object("--config", text)?,
        None => json!({}),
    };
    let name = a.name.unwrap_or_else(|| a.id.to_string());
    let swarm =
        system.store().create_swarm(&Identity::System, &a.id, &name, &a.description, config)?;
    let text = format!("created swarm {}\n{}", swarm.id, output::fields(&describe(&swarm)));
    Ok(Reply::new(json!({ "swarm": to_json(&swarm)? }), text))
}

fn list(system: &SwarmMemory) -> Result<Reply> {
    let swarms = system.store().list_swarms(&Identity::System)?;
    let rows: Vec<Vec<String>> = swarms
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                s.name.clone(),
                s.status.clone(),
                output::time(s.created_at.as_millis()),
                output::clip(&s.description, 50),
            ]
        })
        .collect();
    let text = if swarms.is_empty() {
        "no swarms".to_owned()
    } else {
        output::table(&["ID", "NAME", "STATUS", "CREATED", "DESCRIPTION"], &rows)
    };
    Ok(Reply::new(json!({ "swarms": to_json(&swarms)? }), text))
}

fn show(system: &SwarmMemory, id: &SwarmId) -> Result<Reply> {
    let swarm = find(system, id)?;
    let agents = system
        .list_agents(&AgentFilter { swarm: Some(id.clone()), ..AgentFilter::default() })?
        .len();
    let teams = system.registry().list_teams(&Identity::System, Some(id))?.len();
    let mut pairs = describe(&swarm);
    pairs.push(("agents", agents.to_string()));
    pairs.push(("teams", teams.to_string()));
    let doc = json!({ "swarm": to_json(&swarm)?, "agents": agents, "teams": teams });
    Ok(Reply::new(doc, output::fields(&pairs)))
}

fn update(system: &SwarmMemory, a: UpdateArgs) -> Result<Reply> {
    if a.config.is_none() && a.status.is_none() {
        return Err(CliError::usage("nothing to change: give --config or --status"));
    }
    find(system, &a.id)?;
    let config = a.config.as_deref().map(|t| input::json_object("--config", t)).transpose()?;
    let swarm = system.store().update_swarm(
        &Identity::System,
        &a.id,
        config,
        a.status.map(Status::as_str),
    )?;
    let text = format!("updated swarm {}\n{}", swarm.id, output::fields(&describe(&swarm)));
    Ok(Reply::new(json!({ "swarm": to_json(&swarm)? }), text))
}
