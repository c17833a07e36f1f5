//! swarm-mcp: an MCP (Model Context Protocol) server over stdio, so LLM agents (Claude
//! Code, Claude Desktop, Cursor, anything that speaks MCP) use swarm-memory's memory,
//! tasks, events and consensus as tools.
//!
//! Each server process acts as exactly one agent, authenticated from the environment
//! (`SWARM_AGENT_ID`, `SWARM_AGENT_TOKEN`) when it starts and again on every call, so a
//! token rotation, suspension or removal made with the command line from another process
//! takes effect at the next call. The identity is never a tool argument.
//!
//! What it is not: a second place where access control, encryption or audit live. Every
//! tool is a thin adapter over the umbrella crate's store API, called as that agent; a
//! record the agent may not see is "not found" because the store's SQL never returns it.
//! Administration (registering agents, tokens, grants, keys) stays in the CLI.
//!
//! Tools: the `core` profile has `whoami`, `memory_store`, `memory_get`, `memory_search`
//! and `memory_delete`; the `swarm` profile adds `task_create`, `task_list`,
//! `task_update`, `event_publish`, `event_poll`, `consensus_propose`, `consensus_vote` and
//! `consensus_status`. docs/MCP.md describes them and how to configure clients.
//!
//! ```no_run
//! use swarm_mcp::{Credentials, Profile, Server};
//!
//! let system = swarm_memory::SwarmMemory::builder()
//!     .path("/var/lib/swarm/swarm-memory.db")
//!     .must_exist()
//!     .open()?;
//! let server = Server::new(system, Credentials::from_env()?, Profile::Core)?;
//! server.serve_stdio()?; // until standard input ends
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod framing;
mod reply;
mod server;
mod tools;

pub use error::Error;
pub use server::{Credentials, Profile, Server};

/// The server's name in the MCP handshake.
pub const SERVER_NAME: &str = "swarm-memory";
/// The server's version in the MCP handshake (the crate's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
