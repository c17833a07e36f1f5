//! Why a server could not start or stopped with a failure. Failures of single tool calls
//! are not errors of the server: they go back to the client as tool results.

/// Errors of swarm-mcp.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `SWARM_AGENT_ID` or `SWARM_AGENT_TOKEN` is not set (or empty).
    #[error(
        "an MCP server acts as one agent: set SWARM_AGENT_ID and SWARM_AGENT_TOKEN in its environment (the token `swarm-memory agent register` printed)"
    )]
    MissingCredentials,
    /// The agent id and token do not authenticate, or the agent may not act (suspended,
    /// removed). Deliberately does not say which half was wrong.
    #[error(
        "authentication failed for agent {agent}: unknown agent, wrong token, or an agent that may not act (check SWARM_AGENT_ID and SWARM_AGENT_TOKEN)"
    )]
    Authentication {
        /// The agent id given.
        agent: String,
    },
    /// The server cannot run with this configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Opening, using or shutting down the system failed.
    #[error(transparent)]
    System(#[from] swarm_memory::Error),
    /// Standard input or output, or the runtime behind them, failed.
    #[error("stdio transport: {0}")]
    Transport(String),
}
