//! Opening the database from the global options, as the system principal (administrative
//! commands) or as an authenticated agent (memory commands).

use std::path::Path;

use swarm_memory::{
    Builder, DEFAULT_SWARM_ID, Identity, Namespace, RecordKey, Session, Store, SwarmId, SwarmMemory,
};

use crate::Global;
use crate::exit::{CliError, Result};
use crate::output::Reply;

/// Which databases a command accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Db {
    /// A database file: the command is useless on `:memory:`, which keeps nothing between
    /// invocations.
    File,
    /// A file or `:memory:`: the command does all its work in this one process.
    FileOrMemory,
}

impl Global {
    /// The swarm the options name, or the default one.
    pub(crate) fn swarm_or_default(&self) -> Result<SwarmId> {
        match &self.swarm {
            Some(s) => Ok(s.clone()),
            None => SwarmId::new(DEFAULT_SWARM_ID).map_err(|e| CliError::usage(e.to_string())),
        }
    }

    /// Whether `--db` is `:memory:`.
    pub(crate) fn in_memory(&self) -> bool {
        self.db == Path::new(":memory:")
    }

    /// The builder for these options: the seed's environment variables
    /// (`SQLITE_ENCRYPTION_KEY`, `SQLITE_COMPRESSION_THRESHOLD`, ...) with `--db` and
    /// `--swarm` on top.
    pub(crate) fn builder(&self) -> Result<Builder> {
        let mut builder = Builder::from_env()?.path(&self.db).swarm(self.swarm_or_default()?);
        if let Some(url) = &self.redis {
            builder = builder.redis_url(url)?;
        }
        Ok(builder)
    }

    /// Refuses `:memory:` for commands that need a database file.
    pub(crate) fn require_file(&self, command: &str) -> Result<()> {
        if self.in_memory() {
            return Err(CliError::usage(format!(
                "`{command}` needs a database file: `:memory:` keeps nothing between invocations (pass --db PATH)"
            )));
        }
        Ok(())
    }
}

/// Opens an existing database as its operator; never creates one.
pub(crate) fn open_existing(g: &Global, db: Db, command: &str) -> Result<SwarmMemory> {
    if db == Db::File {
        g.require_file(command)?;
    }
    if !g.in_memory() && !g.db.exists() {
        return Err(CliError::not_found(format!(
            "no database at {}: run `swarm-memory init` first",
            g.db.display()
        )));
    }
    Ok(g.builder()?.must_exist().open()?)
}

/// Refuses a swarm that does not exist, saying how to create it (exit 3). Opening an
/// existing database never creates a swarm: a typo in `--swarm` must not make one.
pub(crate) fn require_swarm(system: &SwarmMemory, swarm: &SwarmId) -> Result<()> {
    match system.store().get_swarm(&Identity::System, swarm)? {
        Some(_) => Ok(()),
        None => Err(swarm_not_found(swarm)),
    }
}

/// The error for a swarm that does not exist.
pub(crate) fn swarm_not_found(swarm: &SwarmId) -> CliError {
    CliError::not_found(format!(
        "swarm {swarm} not found: create it with `swarm-memory swarm create {swarm}`"
    ))
}

/// Runs `f` on the opened system and shuts it down afterwards, so queued audit rows are
/// written before the process exits. The command's own error wins over a shutdown error.
pub(crate) fn with_system(
    g: &Global,
    db: Db,
    command: &str,
    f: impl FnOnce(&SwarmMemory) -> Result<Reply>,
) -> Result<Reply> {
    let system = open_existing(g, db, command)?;
    finish(&system, f(&system))
}

/// Shuts `system` down after a command, keeping the command's error first.
pub(crate) fn finish(system: &SwarmMemory, reply: Result<Reply>) -> Result<Reply> {
    let closed = system.graceful_shutdown();
    let reply = reply?;
    closed?;
    Ok(reply)
}

/// An authenticated agent and where its command works.
#[derive(Debug)]
pub(crate) struct AgentCtx {
    system: SwarmMemory,
    session: Session,
    /// `--swarm`/`SWARM_ID` when given: reads may look into another swarm (where only
    /// records the agent may see there, such as public ones, are visible); writes may not.
    swarm_flag: Option<SwarmId>,
    /// Whether `--json` was given (for commands that stream).
    pub(crate) json: bool,
}

impl AgentCtx {
    /// The store, to call as [`AgentCtx::identity`].
    pub(crate) fn store(&self) -> &Store {
        self.system.store()
    }

    /// Who the command runs as.
    pub(crate) fn identity(&self) -> &Identity {
        self.session.identity()
    }

    /// The swarm reads look in: `--swarm` if given, else the agent's own.
    pub(crate) fn read_swarm(&self) -> &SwarmId {
        self.swarm_flag.as_ref().unwrap_or_else(|| self.session.swarm())
    }

    /// The swarm writes go to: the agent's own. A `--swarm` naming another is refused
    /// here, with a clearer message than the store's own refusal.
    pub(crate) fn write_swarm(&self) -> Result<&SwarmId> {
        let own = self.session.swarm();
        match &self.swarm_flag {
            Some(asked) if asked != own => Err(CliError::denied(format!(
                "agent {} belongs to swarm {own} and cannot write into swarm {asked} (drop --swarm/SWARM_ID or pass --swarm {own})",
                self.session.identity().audit_name()
            ))),
            _ => Ok(own),
        }
    }

    /// Names a record in `swarm` and `namespace`.
    pub(crate) fn key(
        &self,
        swarm: &SwarmId,
        namespace: &Namespace,
        key: &str,
    ) -> Result<RecordKey> {
        Ok(RecordKey::parse(swarm.as_str(), namespace.as_str(), key)?)
    }
}

/// Authenticates `--agent`/`--token`, runs `f` as that agent, and shuts down. Fails closed
/// (exit 4) without both.
pub(crate) fn with_agent(
    g: &Global,
    command: &str,
    f: impl FnOnce(&AgentCtx) -> Result<Reply>,
) -> Result<Reply> {
    let (Some(agent), Some(token)) = (g.agent.as_deref(), g.token.as_deref()) else {
        return Err(CliError::unauthenticated(format!(
            "`{command}` runs as an agent: pass --agent ID and --token TOKEN (or set SWARM_AGENT_ID and SWARM_AGENT_TOKEN)"
        )));
    };
    let system = open_existing(g, Db::File, command)?;
    let ctx = match system.authenticate(agent, token) {
        Ok(session) => {
            AgentCtx { system: system.clone(), session, swarm_flag: g.swarm.clone(), json: g.json }
        }
        Err(e) => return finish(&system, Err(e.into())),
    };
    // After authentication: who may not act learns nothing about swarms.
    if let Some(swarm) = &g.swarm
        && let Err(e) = require_swarm(&system, swarm)
    {
        return finish(&system, Err(e));
    }
    finish(&system, f(&ctx))
}
