use swarm_registry::RegistryError;
use swarm_store::{OpenError, StoreError};

/// Errors of the umbrella crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting (builder value or environment variable) is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The encryption key could not be read, created or parsed.
    #[error("encryption key: {0}")]
    Key(String),
    /// The database could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// An operation of the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An operation of the registry failed (authentication included).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The coordination backend (Redis, or the in-process bus) failed an operation; the
    /// database is unaffected.
    #[error(transparent)]
    Coordination(#[from] swarm_coord::CoordError),
    /// The system was shut down.
    #[error("the memory system is shut down")]
    Closed,
    /// A benchmark run could not be completed: its scratch directory or report file could
    /// not be written, or a measured operation gave a wrong answer (which would make its
    /// figure meaningless).
    #[error("benchmark: {0}")]
    Bench(String),
}

impl From<swarm_acl::AclError> for Error {
    fn from(e: swarm_acl::AclError) -> Self {
        Error::Store(StoreError::from(e))
    }
}

impl Error {
    /// The store error inside, if this is one (directly or through the registry).
    pub fn as_store(&self) -> Option<&StoreError> {
        match self {
            Error::Store(e) | Error::Registry(RegistryError::Store(e)) => Some(e),
            _ => None,
        }
    }
}

/// Short for `Result<T, swarm_memory::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
