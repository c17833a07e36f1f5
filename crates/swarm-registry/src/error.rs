use swarm_store::{AgentStatus, StoreError};

/// Errors of the registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The agent id or the token is wrong. Deliberately does not say which.
    #[error("authentication failed: unknown agent or wrong token")]
    Authentication,
    /// The credentials are right but the agent may not act.
    #[error("agent {id} is {status} and cannot act")]
    Inactive {
        /// The agent.
        id: String,
        /// Its status.
        status: &'static str,
    },
    /// The input is not acceptable.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RegistryError {
    pub(crate) fn inactive(id: &str, status: AgentStatus) -> Self {
        RegistryError::Inactive { id: id.to_owned(), status: status.as_str() }
    }
}

impl From<swarm_acl::AclError> for RegistryError {
    fn from(e: swarm_acl::AclError) -> Self {
        RegistryError::Invalid(e.to_string())
    }
}

/// Short for `Result<T, RegistryError>`.
pub(crate) type Result<T, E = RegistryError> = std::result::Result<T, E>;
