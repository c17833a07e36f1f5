//! `mcp`: serve MCP (Model Context Protocol) on stdin/stdout as one agent, so LLM clients
//! use memory, tasks, events and consensus as tools. The server is the `swarm-mcp` crate;
//! this module opens the database the way every other command does and hands it over.
//!
//! Identity comes only from the environment (`SWARM_AGENT_ID`, `SWARM_AGENT_TOKEN`), as
//! MCP clients pass it; it is checked before anything is served, and a failure is one
//! `error:` line on stderr and exit 4. A relative `--db` is resolved once, here, so the
//! server opens the same file whatever directory the client starts it in.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use swarm_mcp::{Credentials, Profile, Server};

use crate::Global;
use crate::exit::{CliError, Result};
use crate::output::Reply;

#[derive(Debug, Args)]
pub(crate) struct McpArgs {
    /// Which tools to offer: `core` (whoami and the memory tools) or `swarm` (core plus
    /// tasks, events and consensus)
    #[arg(long, value_enum, default_value_t = Tools::Core, value_name = "PROFILE")]
    tools: Tools,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Tools {
    Core,
    Swarm,
}

pub(crate) fn run(g: &Global, a: &McpArgs) -> Result<Reply> {
    g.require_file("mcp")?;
    let credentials =
        Credentials::from_env().map_err(|e| CliError::unauthenticated(e.to_string()))?;
    // `--agent`/`--token` read the same variables; a value that differs came from the
    // command line, which other local users can read and MCP clients do not use.
    let from_env = g.agent.as_deref().map(str::trim) == Some(credentials.agent())
        && g.token.as_deref().map(str::trim).is_some_and(|t| credentials.token_is(t));
    if !from_env {
        return Err(CliError::usage(
            "`mcp` takes its identity only from SWARM_AGENT_ID and SWARM_AGENT_TOKEN in its environment, not from --agent/--token",
        ));
    }
    let database = resolve(&g.db)?;
    let system = g.builder()?.path(&database).must_exist().open()?;
    let profile = match a.tools {
        Tools::Core => Profile::Core,
        Tools::Swarm => Profile::Swarm,
    };
    let server = match Server::new(system.clone(), credentials, profile) {
        Ok(s) => s,
        Err(e) => {
            let _ = system.graceful_shutdown();
            return Err(mcp_error(e));
        }
    };
    server.serve_stdio().map_err(mcp_error)?;
    Ok(Reply::streamed())
}

/// The database's absolute path, resolved once: its directory canonical (no `..`, no
/// symlinked directories), its file name as given, so the key file is looked for beside
/// the same name every other command uses.
fn resolve(db: &Path) -> Result<PathBuf> {
    let missing = |shown: &Path| {
        CliError::not_found(format!(
            "no database at {}: run `swarm-memory init` first",
            shown.display()
        ))
    };
    let absolute = std::path::absolute(db).map_err(|e| CliError::io(db, &e))?;
    let (Some(dir), Some(name)) = (absolute.parent(), absolute.file_name()) else {
        return Err(missing(&absolute));
    };
    let dir = std::fs::canonicalize(dir).map_err(|_| missing(&absolute))?;
    let database = dir.join(name);
    if !database.is_file() {
        return Err(missing(&database));
    }
    Ok(database)
}

fn mcp_error(e: swarm_mcp::Error) -> CliError {
    match e {
        swarm_mcp::Error::System(e) => e.into(),
        swarm_mcp::Error::Config(m) => CliError::usage(m),
        e @ (swarm_mcp::Error::MissingCredentials | swarm_mcp::Error::Authentication { .. }) => {
            CliError::unauthenticated(e.to_string())
        }
        other => CliError::other(other.to_string()),
    }
}
