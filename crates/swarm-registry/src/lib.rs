//! The agent registry of swarm-memory: the seed's AgentRegistry, on the store's database.
//!
//! - **Agents** register with a name, type, capabilities, metadata, teams and a swarm, and
//!   receive a random 256-bit [`Token`] exactly once; the database keeps only its BLAKE3
//!   hash. [`Registry::authenticate`] turns an agent id and token into an
//!   [`swarm_acl::Identity`] the store accepts, or fails without saying which half was
//!   wrong. Suspended, inactive and terminated agents cannot act.
//! - **Teams** have a leader and members; an agent may be in several.
//! - **Permissions** are grants of actions on a resource type up to an ACL level,
//!   optionally expiring. Registration gives defaults that let an agent use its own scopes
//!   ([`swarm_acl::Grant::defaults`]).
//!
//! Every change is audited and bumps the ACL generation in the store, so a revoke or a
//! suspension takes effect on the agent's next operation, in every process.
//!
//! The trust boundary: whoever holds a [`swarm_store::Store`] in-process is trusted to act
//! as any identity. Code that serves untrusted callers (the CLI, an MCP server, anything
//! reachable from another process) must obtain identities only from
//! [`Registry::authenticate`].
//!
//! ```
//! use swarm_acl::Identity;
//! use swarm_registry::{AgentSpec, Registry};
//! use swarm_store::{Store, StoreConfig};
//!
//! let store = Store::open(StoreConfig::memory().with_encrypt_up_to(None))?;
//! let registry = Registry::new(store);
//! registry.ensure_swarm(&swarm_acl::SwarmId::new("my-swarm")?)?;
//! let spec = AgentSpec::new("Backend Developer", "backend-dev")?
//!     .swarm("my-swarm")?
//!     .capabilities(["api", "database"])?;
//! let registered = registry.register_agent(&Identity::System, spec)?;
//! let id = registered.agent.id.clone();
//! let who = registry.authenticate(id.as_str(), registered.token.expose())?;
//! assert_eq!(who, Identity::Agent(id.clone()));
//! assert!(registry.authenticate(id.as_str(), "smt_wrong").is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod registry;
mod spec;
mod token;

pub use error::RegistryError;
pub use registry::{DEFAULT_SWARM, Registered, Registry};
pub use spec::{AgentSpec, DefaultGrants};
pub use token::Token;
