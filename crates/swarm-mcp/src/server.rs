//! The MCP server: one authenticated agent, its tool table, and the stdio loop.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ErrorData, Implementation, JsonObject,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, ServerInitializeError};
use rmcp::{RoleServer, ServerHandler};
use swarm_memory::{RegistryError, Session, StoreError, SwarmMemory};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::framing;
use crate::reply::ToolError;
use crate::tools::{self, Ctx, ToolDef};

/// Which tools a server offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Profile {
    /// `whoami` and the memory tools: what most agents need.
    #[default]
    Core,
    /// Core plus tasks, events and consensus.
    Swarm,
}

impl Profile {
    /// The name, as `--tools` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Core => "core",
            Profile::Swarm => "swarm",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Profile {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "core" => Ok(Profile::Core),
            "swarm" => Ok(Profile::Swarm),
            other => Err(Error::Config(format!(
                "unknown tool profile {other:?}: expected core or swarm"
            ))),
        }
    }
}

/// The agent a server acts as: its id and token, taken from the environment.
pub struct Credentials {
    agent: String,
    token: Zeroizing<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("agent", &self.agent).finish_non_exhaustive()
    }
}

impl Credentials {
    /// The environment variable holding the agent id.
    pub const AGENT_VAR: &'static str = "SWARM_AGENT_ID";
    /// The environment variable holding the agent's token.
    pub const TOKEN_VAR: &'static str = "SWARM_AGENT_TOKEN";

    /// Credentials given directly (for embedding; servers take them from the environment).
    pub fn new(agent: impl Into<String>, token: impl Into<String>) -> Self {
        Self { agent: agent.into(), token: Zeroizing::new(token.into()) }
    }

    /// `SWARM_AGENT_ID` and `SWARM_AGENT_TOKEN`; both must be set and not empty.
    pub fn from_env() -> Result<Self, Error> {
        let get = |name: &str| {
            std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
        };
        match (get(Self::AGENT_VAR), get(Self::TOKEN_VAR)) {
            (Some(agent), Some(token)) => Ok(Self::new(agent, token)),
            _ => Err(Error::MissingCredentials),
        }
    }

    /// The agent id.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// Whether `token` is this token (for callers that must tell where it came from).
    pub fn token_is(&self, token: &str) -> bool {
        self.token.as_str() == token
    }
}

/// What `whoami` reports about the server itself.
pub(crate) struct Facts {
    pub(crate) database: PathBuf,
    pub(crate) profile: Profile,
    pub(crate) tools: Vec<String>,
}

/// An MCP server acting as one agent on an opened [`SwarmMemory`].
///
/// It is a thin adapter: every call re-authenticates the agent (so a token rotation, a
/// suspension or a removal made by any process applies at the next call) and then calls
/// the store as that agent; access control, encryption and audit all happen there.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    system: SwarmMemory,
    credentials: Credentials,
    facts: Arc<Facts>,
    tools: Vec<ToolDef>,
    listed: Vec<Tool>,
    /// Tools of a larger profile, to say where an unknown name lives.
    elsewhere: Vec<(String, Profile)>,
    instructions: String,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("agent", &self.inner.credentials.agent)
            .field("profile", &self.inner.facts.profile)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server for `credentials` on `system`, offering the tools of `profile`. The
    /// credentials are checked now: a server never starts for an agent that cannot act.
    pub fn new(
        system: SwarmMemory,
        credentials: Credentials,
        profile: Profile,
    ) -> Result<Self, Error> {
        let Some(database) = system.database().map(PathBuf::from) else {
            return Err(Error::Config("an MCP server needs a database file, not :memory:".into()));
        };
        let session = authenticate(&system, &credentials)?;
        let (tools, others): (Vec<ToolDef>, Vec<ToolDef>) =
            tools::all().into_iter().partition(|t| t.profile <= profile);
        let listed: Vec<Tool> = tools.iter().map(|t| t.tool.clone()).collect();
        let names: Vec<String> = tools.iter().map(|t| t.name().to_owned()).collect();
        let elsewhere = others.iter().map(|t| (t.name().to_owned(), t.profile)).collect();
        let instructions = instructions(&credentials, &session, profile);
        Ok(Self {
            inner: Arc::new(Inner {
                system,
                credentials,
                facts: Arc::new(Facts { database, profile, tools: names }),
                tools,
                listed,
                elsewhere,
                instructions,
            }),
        })
    }

    /// The tools this server offers.
    pub fn tools(&self) -> &[Tool] {
        &self.inner.listed
    }

    /// Serves MCP over standard input and output until the input ends, then shuts the
    /// system down (flush, checkpoint). Stdout carries only JSON-RPC messages; logs go
    /// wherever `tracing` was pointed (stderr in the `swarm-memory` binary).
    pub fn serve_stdio(self) -> Result<(), Error> {
        let system = self.inner.system.clone();
        tracing::info!(
            agent = %self.inner.credentials.agent,
            database = %self.inner.facts.database.display(),
            profile = %self.inner.facts.profile,
            "serving MCP on stdio"
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Transport(format!("cannot start the runtime: {e}")))?;
        let served = runtime.block_on(async move {
            let (stdin, stdout) = rmcp::transport::stdio_pipes();
            let (transport, input, output) = framing::filtered(stdin, stdout);
            let input = tokio::spawn(input);
            let output = tokio::spawn(output);
            let served = match rmcp::serve_server(self, transport).await {
                Ok(running) => running
                    .waiting()
                    .await
                    .map(|reason| tracing::debug!(?reason, "MCP session ended"))
                    .map_err(|e| Error::Transport(e.to_string())),
                // The input ended before a session started: nothing to serve.
                Err(ServerInitializeError::ConnectionClosed(_)) => Ok(()),
                Err(e) => Err(Error::Transport(e.to_string())),
            };
            // The session is over: every answer it wrote reaches stdout before we return. The
            // output task ends by itself once the SDK has closed its end (or stdout is gone);
            // the bound only guards against a client that stopped reading.
            input.abort();
            match tokio::time::timeout(Duration::from_secs(30), output).await {
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "writing to stdout failed"),
                Ok(_) => {}
                Err(_) => tracing::warn!("stdout did not drain in 30 s"),
            }
            served
        });
        // A call still running (a poll waiting for events) gets a moment, not forever.
        runtime.shutdown_timeout(Duration::from_secs(2));
        let closed = system.graceful_shutdown();
        served?;
        closed?;
        Ok(())
    }
}

fn authenticate(system: &SwarmMemory, c: &Credentials) -> Result<Session, Error> {
    system.authenticate(&c.agent, &c.token).map_err(|e| {
        let refused = matches!(
            e,
            swarm_memory::Error::Registry(
                RegistryError::Authentication | RegistryError::Inactive { .. }
            )
        ) || matches!(e.as_store(), Some(StoreError::InactiveAgent(_)));
        if refused { Error::Authentication { agent: c.agent.clone() } } else { Error::System(e) }
    })
}

fn instructions(c: &Credentials, s: &Session, profile: Profile) -> String {
    let mut text = format!(
        "swarm-memory: a shared, persistent memory for a swarm of agents. You act as agent {} of \
         swarm {}. Records you store are private to you unless you pass `level` (team, swarm, \
         public). To update safely, read with memory_get and write with `if_version`; a \
         `conflict` error means someone else wrote first. Call whoami to see what you may do.",
        c.agent,
        s.swarm()
    );
    if profile == Profile::Swarm {
        text.push_str(
            " Tasks: claim with task_update (action claim) and pass the fencing_token it returns \
             to later updates. Events: event_poll remembers where you got to.",
        );
    }
    text
}

impl Inner {
    /// Runs one call on the blocking pool's thread: authenticate again, then the tool.
    fn call(&self, index: usize, args: JsonObject) -> CallToolResult {
        let Some(tool) = self.tools.get(index) else {
            return ToolError::new("unavailable", "unknown tool").into_result();
        };
        let started = Instant::now();
        let outcome = self
            .system
            .authenticate(&self.credentials.agent, &self.credentials.token)
            .map_err(ToolError::from)
            .and_then(|session| {
                let ctx =
                    Ctx { system: self.system.clone(), session, facts: Arc::clone(&self.facts) };
                tool.call(&ctx, args)
            });
        tracing::debug!(
            tool = tool.name(),
            error = outcome.as_ref().err().map(|e| e.kind),
            elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "tool call"
        );
        match outcome {
            Ok(reply) => reply.into_result(),
            Err(e) => e.into_result(),
        }
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new(crate::SERVER_NAME, crate::VERSION)
                    .with_title("swarm-memory")
                    .with_description("Shared, access-controlled, encrypted memory, tasks, events and consensus for agent swarms"),
            )
            .with_instructions(self.inner.instructions.clone())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.inner.listed.clone()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.inner.listed.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let inner = Arc::clone(&self.inner);
        let Some(index) = inner.tools.iter().position(|t| t.name() == request.name) else {
            let hint = match inner.elsewhere.iter().find(|(n, _)| *n == request.name) {
                Some((_, p)) => format!(
                    " (it is in the {p} profile: start the server with `swarm-memory mcp --tools {p}`)"
                ),
                None => String::new(),
            };
            return Err(ErrorData::invalid_params(
                format!("unknown tool {:?}{hint}", request.name),
                None,
            ));
        };
        let args = request.arguments.unwrap_or_default();
        // Every store call blocks (SQLite): run it on the blocking pool so other requests
        // keep flowing.
        let result = tokio::task::spawn_blocking(move || inner.call(index, args))
            .await
            .map_err(|e| ErrorData::internal_error(format!("the tool call failed: {e}"), None))?;
        Ok(CallToolResponse::from(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_and_order() {
        assert_eq!("swarm".parse::<Profile>().ok(), Some(Profile::Swarm));
        assert_eq!(" Core ".parse::<Profile>().ok(), Some(Profile::Core));
        assert!("all".parse::<Profile>().is_err());
        assert!(Profile::Core < Profile::Swarm);
    }

    #[test]
    fn credentials_never_show_the_token() {
        let c = Credentials::new("ann", "smt_secret");
        assert!(!format!("{c:?}").contains("smt_secret"));
        assert!(c.token_is("smt_secret"));
    }
}
