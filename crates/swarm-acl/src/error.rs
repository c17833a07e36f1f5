/// Errors of this crate: all of them are invalid input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AclError {
    /// An identifier (agent, team or swarm id) is empty, too long, or has characters
    /// outside `[A-Za-z0-9._:@-]`, or is a reserved name.
    #[error("invalid {kind} id {value:?}: {reason}")]
    InvalidId {
        /// Which kind of id.
        kind: &'static str,
        /// The offending value, truncated to 64 characters.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An ACL level outside 1-5 or a name that is not one.
    #[error("invalid acl level {0:?}: expected 1-5 or private, team, swarm, public, system")]
    InvalidLevel(String),
    /// An action name that is not one of read, write, delete, vote, admin.
    #[error("unknown action {0:?}: expected read, write, delete, vote or admin")]
    UnknownAction(String),
    /// A resource type name that is not known.
    #[error(
        "unknown resource type {0:?}: expected memory, task, event, consensus, artifact, metrics, audit or system"
    )]
    UnknownResource(String),
}
