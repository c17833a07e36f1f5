//! `swarm-memory`: the command-line tool of swarm-memory, for operators and scripts.
//!
//! It initialises a database and its key file, registers agents and teams, grants and
//! revokes permissions, reads and writes memory as an authenticated agent, watches
//! changes, verifies the audit trail and reports health. It is a thin client of the
//! `swarm-memory` umbrella crate: every rule (ACL, encryption, audit) is enforced below
//! it, never here.
//!
//! What it is not: a server. Each invocation opens the database, does one thing and
//! closes it. Its trust boundary is described in `LONG_ABOUT` (shown by `--help`).
//!
//! Layout: this file holds the command tree and the dispatch; each command group has a
//! module (`admin`, `swarm`, `agent`, `team`, `memory`, `task`, `event`, `consensus`,
//! `artifact`, `conflict`, `ops`, `audit`, `doctor`); `open` opens the database as the
//! system principal or an authenticated agent, `input` parses what clap cannot, `output`
//! decides how anything is printed, `progress` draws the bar of long work and `exit`
//! decides which exit code an error gets. A new group is a new module with its own clap
//! `Subcommand` and one line in [`Command`] and [`run`].

mod admin;
mod agent;
mod artifact;
mod audit;
mod bench;
mod conflict;
mod consensus;
mod demo;
mod doctor;
mod event;
mod exit;
mod input;
mod mcp;
mod memory;
mod open;
mod ops;
mod output;
mod progress;
mod swarm;
mod task;
mod team;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use swarm_memory::{DEFAULT_DB_PATH, SwarmId};

use crate::exit::Result;
use crate::open::Db;
use crate::output::Reply;

const ABOUT: &str = "Shared, persistent, access-controlled, encrypted memory for agent swarms";

const LONG_ABOUT: &str = "\
Shared, persistent, access-controlled, encrypted memory for agent swarms, on an embedded
SQLite database.

Trust boundary:
  Administrative commands (init, doctor, swarm, agent, team, grant, revoke, audit,
  backup, restore, optimize, rotate-key, metrics, conflict escalate) run as the
  system principal: whoever can open the database file and its key is its operator.
  Memory commands (set, get, has, del, keys, incr, decr, mget, mset, stats, watch) and
  task, event, consensus, artifact and conflict (list, resolve) commands run as the agent
  named by --agent/--token (or SWARM_AGENT_ID/SWARM_AGENT_TOKEN), checked against the
  token issued by `agent register`; without them they fail (exit 4). A token is printed
  only by `agent register` and `agent rotate-token`, once. Prefer the environment
  variable to --token: command lines are visible to other local users.

Swarms:
  `init` creates the database and its first swarm; `swarm create` adds more. Naming a
  swarm that does not exist (--swarm, SWARM_ID) is an error (exit 3), never a new swarm.

Encryption key:
  SQLITE_ENCRYPTION_KEY (64 hex digits or base64 of 32 bytes) if set, else the key file
  beside the database (<db>.key), created with mode 0600 by `init`. Every command but
  `init` refuses to create a database.";

const AFTER_HELP: &str = "\
Output:
  Human-readable text by default. With --json, stdout carries exactly one JSON document
  per invocation (for `watch` and `event follow`: one JSON object per line). Long work
  (backup, restore, rotate-key, bench) draws a progress bar on stderr when it is a
  terminal. Errors: `error: <message>` on stderr; with --json the object {\"error\":
  {\"code\": <exit code>, \"kind\": \"...\", \"message\": \"...\"}} is also printed on stdout.
  Timestamps in JSON are Unix milliseconds. Logs go to stderr, filtered by RUST_LOG (default `warn`).

Exit codes:
  0  success
  1  anything else: database or key problem, unhealthy `doctor`, broken audit chain
  2  bad usage or invalid input
  3  not found (also a record the agent cannot see, and a missing database)
  4  authentication failed or permission denied
  5  version conflict (--if-version), or a race lost: a task claimed by another, a stale
     fencing token (--fence), a task still waiting for its dependencies, an event
     delivery that is no longer yours, a second vote or a vote on a closed round";

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "swarm-memory",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = AFTER_HELP,
    propagate_version = true
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub(crate) struct Global {
    /// The database file
    ///
    /// `:memory:` is accepted only by commands that do all their work in one process
    /// (`doctor`, `bench`): it keeps nothing between invocations.
    #[arg(
        long,
        global = true,
        env = "SQLITE_DB_PATH",
        default_value = DEFAULT_DB_PATH,
        value_name = "PATH"
    )]
    pub(crate) db: PathBuf,

    /// The swarm [default: default]
    ///
    /// The one `init`, `agent register` and `team create` work in, and that `agent list`
    /// and `team list` show (all swarms when not given). Memory commands work in the
    /// agent's own swarm: naming another one lets reads look there (where the agent sees
    /// only what it may, such as public records) and makes writes fail (exit 4).
    #[arg(long, global = true, env = "SWARM_ID", value_name = "ID")]
    pub(crate) swarm: Option<SwarmId>,

    /// The agent memory commands run as
    #[arg(long, global = true, env = "SWARM_AGENT_ID", value_name = "ID")]
    pub(crate) agent: Option<String>,

    /// The agent's token
    ///
    /// Prefer the environment variable: command lines are visible to other local users.
    #[arg(
        long,
        global = true,
        env = "SWARM_AGENT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub(crate) token: Option<String>,

    /// Print exactly one JSON document on stdout
    ///
    /// Errors too: `{"error": {"code", "kind", "message"}}` on stdout, and the message on
    /// stderr. `watch` prints one JSON object per line instead.
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// Coordinate with other processes and hosts through this Redis server
    ///
    /// `redis://[:PASSWORD@]HOST[:PORT][/DB]` (or REDIS_HOST, REDIS_PORT, REDIS_PASSWORD,
    /// REDIS_DB). Without it, coordination stays inside this process and the database is
    /// the only thing shared. Redis is connected lazily: its absence degrades, never blocks.
    #[arg(long, global = true, env = "REDIS_URL", hide_env_values = true, value_name = "URL")]
    pub(crate) redis: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the database, its key file and the swarm if missing (idempotent)
    Init,
    /// Check the database: settings, key, audit chain, row counts (exit 1 when unhealthy)
    Doctor,
    /// Create, list, show and configure swarms
    #[command(subcommand)]
    Swarm(swarm::SwarmCommand),
    /// Register, list, show, update and remove agents
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Create teams and change their members
    #[command(subcommand)]
    Team(team::TeamCommand),
    /// Give an agent actions on a resource type up to an ACL level
    Grant(admin::GrantArgs),
    /// Take an agent's grants on a resource type at an ACL level away
    Revoke(admin::RevokeArgs),
    /// Write a value (as the agent)
    Set(memory::SetArgs),
    /// Print a value (as the agent); exit 3 when absent or not visible
    Get(memory::GetArgs),
    /// Print whether a visible record exists: `true` or `false`, exit 0 either way
    Has(memory::HasArgs),
    /// Delete a record (as the agent); exit 3 when nothing was deleted
    Del(memory::DelArgs),
    /// List the keys matching a glob pattern (as the agent)
    Keys(memory::KeysArgs),
    /// Add to an integer atomically and print the new value (as the agent)
    Incr(memory::CountArgs),
    /// Subtract from an integer atomically and print the new value (as the agent)
    Decr(memory::CountArgs),
    /// Print several values read in one snapshot (as the agent)
    Mget(memory::MgetArgs),
    /// Write several values in one transaction: all or none (as the agent)
    Mset(memory::MsetArgs),
    /// Count the records the agent can see in the swarm
    Stats,
    /// Print memory changes as they happen (as the agent), until Ctrl-C or --timeout
    Watch(memory::WatchArgs),
    /// Tasks: create, claim under a lease with a fencing token, progress, complete,
    /// dependencies (as the agent)
    #[command(subcommand)]
    Task(task::TaskCommand),
    /// Events: publish, read the log, follow it, consume the queue (as the agent)
    #[command(subcommand)]
    Event(event::EventCommand),
    /// Consensus rounds: propose, vote, show, list (as the agent)
    #[command(subcommand)]
    Consensus(consensus::ConsensusCommand),
    /// Versioned artifacts: put, get, list (as the agent)
    #[command(subcommand)]
    Artifact(artifact::ArtifactCommand),
    /// Conflicts the store recorded: list and resolve (as the agent), escalate (as the
    /// system)
    #[command(subcommand)]
    Conflict(conflict::ConflictCommand),
    /// Write a consistent copy of the database while it is in use
    Backup(ops::BackupArgs),
    /// Restore a backup into a new database file, with its key file and swarm secret beside it
    Restore(ops::RestoreArgs),
    /// Checkpoint the WAL, analyze, purge expired records
    Optimize,
    /// Add a new key to the key file and re-encrypt every memory record, artifact and event
    /// payload under it
    RotateKey(ops::RotateArgs),
    /// Print the store's metrics and row counts (--prometheus for scraping, --history for
    /// the snapshots persisted over time)
    Metrics(ops::MetricsArgs),
    /// Verify and read the audit trail
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Measure the seed's benchmark figures with this database's settings, on a scratch
    /// database beside it (never in it), each beside raw SQLite measured in the same run
    Bench(bench::BenchArgs),
    /// Run a realistic scenario on a temporary database: swarm, teams, agents, memory at
    /// every level, TTL, counters, tasks, events, consensus, audit (no set-up, no Redis)
    Demo(demo::DemoArgs),
    /// Serve MCP (Model Context Protocol) on stdin/stdout as the agent named by
    /// SWARM_AGENT_ID and SWARM_AGENT_TOKEN, for LLM clients (see docs/MCP.md)
    Mcp(mcp::McpArgs),
}

fn main() -> ExitCode {
    init_logging();
    let wants_json = std::env::args_os().skip(1).any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Usage errors exit 2 (clap's own code); --help and --version exit 0.
            if e.use_stderr() && wants_json {
                output::usage_error_json(&e.render().to_string());
            }
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let json = cli.global.json;
    let code = match run(cli) {
        Ok(reply) => output::emit(reply, json),
        Err(e) => output::emit_error(&e, json),
    };
    ExitCode::from(code)
}

/// Logs go to stderr only, filtered by `RUST_LOG` (default `warn`), so stdout carries
/// nothing but command output.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn run(cli: Cli) -> Result<Reply> {
    let g = &cli.global;
    match cli.command {
        Command::Init => admin::init(g),
        Command::Doctor => open::with_system(g, Db::FileOrMemory, "doctor", doctor::run),
        Command::Agent(c) => open::with_system(g, Db::File, "agent", |s| agent::run(s, g, c)),
        Command::Team(c) => open::with_system(g, Db::File, "team", |s| team::run(s, g, c)),
        Command::Grant(a) => open::with_system(g, Db::File, "grant", |s| admin::grant(s, a)),
        Command::Revoke(a) => open::with_system(g, Db::File, "revoke", |s| admin::revoke(s, a)),
        Command::Audit(c) => open::with_system(g, Db::File, "audit", |s| audit::run(s, c)),
        Command::Swarm(c) => open::with_system(g, Db::File, "swarm", |s| swarm::run(s, c)),
        Command::Task(c) => open::with_agent(g, "task", |ctx| task::run(ctx, c)),
        Command::Event(c) => open::with_agent(g, "event", |ctx| event::run(ctx, c)),
        Command::Consensus(c) => open::with_agent(g, "consensus", |ctx| consensus::run(ctx, c)),
        Command::Artifact(c) => open::with_agent(g, "artifact", |ctx| artifact::run(ctx, c)),
        Command::Conflict(conflict::ConflictCommand::Escalate(a)) => {
            open::with_system(g, Db::File, "conflict escalate", |s| conflict::escalate(s, &a))
        }
        Command::Conflict(c) => open::with_agent(g, "conflict", |ctx| conflict::run(ctx, c)),
        Command::Backup(a) => open::with_system(g, Db::File, "backup", |s| ops::backup(s, &a)),
        Command::Restore(a) => ops::restore(g, &a),
        Command::Optimize => open::with_system(g, Db::File, "optimize", ops::optimize),
        Command::RotateKey(a) => ops::rotate_key(g, &a),
        Command::Metrics(a) => {
            open::with_system(g, Db::File, "metrics", |s| ops::metrics(s, &a, g.json))
        }
        Command::Set(a) => open::with_agent(g, "set", |ctx| memory::set(ctx, a)),
        Command::Get(a) => open::with_agent(g, "get", |ctx| memory::get(ctx, a)),
        Command::Has(a) => open::with_agent(g, "has", |ctx| memory::has(ctx, a)),
        Command::Del(a) => open::with_agent(g, "del", |ctx| memory::del(ctx, a)),
        Command::Keys(a) => open::with_agent(g, "keys", |ctx| memory::keys(ctx, a)),
        Command::Incr(a) => open::with_agent(g, "incr", |ctx| memory::add(ctx, a, 1)),
        Command::Decr(a) => open::with_agent(g, "decr", |ctx| memory::add(ctx, a, -1)),
        Command::Mget(a) => open::with_agent(g, "mget", |ctx| memory::mget(ctx, a)),
        Command::Mset(a) => open::with_agent(g, "mset", |ctx| memory::mset(ctx, a)),
        Command::Stats => open::with_agent(g, "stats", memory::stats),
        Command::Watch(a) => open::with_agent(g, "watch", |ctx| memory::watch(ctx, a)),
        Command::Mcp(a) => mcp::run(g, &a),
        Command::Bench(a) => open::with_system(g, Db::FileOrMemory, "bench", |s| bench::run(s, &a)),
        Command::Demo(a) => demo::run(a, g.json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_tree_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
