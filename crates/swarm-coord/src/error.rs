//! The crate's error type.

use swarm_acl::{AclError, AgentId, SwarmId};

/// Everything a coordinator operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordError {
    /// The backend cannot be reached right now (Redis is down or the link is being
    /// re-established). Returned quickly rather than blocking, so a caller such as an outbox
    /// relay can keep the work and retry later.
    #[error("coordination backend unavailable: {reason}")]
    Unavailable {
        /// What was last seen going wrong.
        reason: String,
    },
    /// The coordinator was shut down; nothing more can be done with it.
    #[error("coordinator is shut down")]
    Closed,
    /// A configuration value is invalid.
    #[error("invalid configuration: {field}: {reason}")]
    Config {
        /// The setting or environment variable at fault.
        field: String,
        /// What is wrong with it (never the value of a password).
        reason: String,
    },
    /// `rediss://` was asked for, but this build has no TLS support.
    #[error("TLS (rediss://) is not supported in this build of swarm-coord; see docs/DECISIONS.md")]
    TlsUnsupported,
    /// No secret is configured for the swarm, so its messages can be neither signed nor
    /// verified.
    #[error("no secret configured for swarm {swarm}")]
    NoSecret {
        /// The swarm.
        swarm: SwarmId,
    },
    /// The encoded message is larger than the configured limit; receivers would drop it.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Encoded size in bytes.
        size: usize,
        /// The configured `max_message_bytes`.
        limit: usize,
    },
    /// An argument is out of range (priority above 10, confidence outside 0-1, a bad glob).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// An id failed validation.
    #[error(transparent)]
    Id(#[from] AclError),
    /// The agent has already voted in this round; its first vote stands.
    #[error("agent {agent} has already voted in round {round}")]
    DuplicateVote {
        /// The round id.
        round: String,
        /// The agent that voted twice.
        agent: AgentId,
    },
    /// The round exists with different parameters (strategy, threshold, quorum or
    /// deadline) than the ones given.
    #[error("round {round} exists with different parameters")]
    RoundMismatch {
        /// The round id.
        round: String,
    },
    /// The round is not known to the backend (it was never voted in, or has been
    /// retained past its retention period).
    #[error("round {round} not found")]
    UnknownRound {
        /// The round id.
        round: String,
    },
    /// State read back from the backend failed verification: a record without a valid
    /// signature, or a stored tally that its signed ballots do not reproduce. Someone with
    /// write access to Redis changed it; nothing of it is used.
    #[error("stored coordination state failed verification: {what}")]
    Tampered {
        /// Which state.
        what: String,
    },
    /// The backend answered with an error or an unexpected reply.
    #[error("coordination backend error: {0}")]
    Backend(String),
    /// The operating system's random generator failed.
    #[error("random number generator failed")]
    Random,
}

/// Result alias of this crate.
pub type Result<T, E = CoordError> = std::result::Result<T, E>;
