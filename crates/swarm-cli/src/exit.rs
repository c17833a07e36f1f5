//! Errors of the command and the exit code each one gets: the only place that decides.

use std::fmt;

use swarm_memory::{Error, OpenError, RegistryError, StoreError};

/// The exit codes, as documented in `--help`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Code {
    /// 1: anything else (database, key, unhealthy report, I/O).
    Failure = 1,
    /// 2: bad usage or invalid input.
    Usage = 2,
    /// 3: not found, including what the agent cannot see and a missing database.
    NotFound = 3,
    /// 4: authentication failed or permission denied.
    Denied = 4,
    /// 5: conflict: a version mismatch, a task claimed by someone else or a stale fencing
    /// token, a settled event, a second vote, a task still blocked by its dependencies.
    Conflict = 5,
}

/// A failed command: its exit code, a short machine-readable kind and a one-line message.
#[derive(Debug)]
pub(crate) struct CliError {
    code: Code,
    kind: &'static str,
    message: String,
}

impl CliError {
    fn new(code: Code, kind: &'static str, message: impl Into<String>) -> Self {
        Self { code, kind, message: one_line(message.into()) }
    }

    /// Bad usage or invalid input (exit 2).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(Code::Usage, "invalid_input", message)
    }

    /// Not found or not visible (exit 3).
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, "not_found", message)
    }

    /// No usable credentials (exit 4).
    pub(crate) fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(Code::Denied, "authentication", message)
    }

    /// Permission denied (exit 4).
    pub(crate) fn denied(message: impl Into<String>) -> Self {
        Self::new(Code::Denied, "permission_denied", message)
    }

    /// A file the user named could not be read or written (exit 1).
    pub(crate) fn io(path: &std::path::Path, e: &std::io::Error) -> Self {
        Self::new(Code::Failure, "io", format!("{}: {e}", path.display()))
    }

    /// Anything else that went wrong in this process (exit 1).
    pub(crate) fn other(message: impl Into<String>) -> Self {
        Self::new(Code::Failure, "failure", message)
    }

    /// A health check failed (exit 1).
    pub(crate) fn unhealthy(message: impl Into<String>) -> Self {
        Self::new(Code::Failure, "unhealthy", message)
    }

    /// The process exit code.
    pub(crate) fn code(&self) -> u8 {
        self.code as u8
    }

    /// A short snake_case name of the failure, for `--json`.
    pub(crate) fn kind(&self) -> &'static str {
        self.kind
    }

    /// The one-line message.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// Whether this is stdout going away (`swarm-memory keys | head`): not worth a word.
    pub(crate) fn is_broken_pipe(&self) -> bool {
        self.kind == "broken_pipe"
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Messages are printed on one line: a multi-line library message is joined.
fn one_line(s: String) -> String {
    if s.contains('\n') { s.split_whitespace().collect::<Vec<_>>().join(" ") } else { s }
}

fn store_code(e: &StoreError) -> (Code, &'static str) {
    match e {
        StoreError::NotFound(_) => (Code::NotFound, "not_found"),
        StoreError::PermissionDenied(_) => (Code::Denied, "permission_denied"),
        StoreError::InactiveAgent(_) => (Code::Denied, "inactive_agent"),
        StoreError::Conflict { .. } => (Code::Conflict, "conflict"),
        // A task whose hard dependencies are not completed: try again later, like a
        // conflict (exit 5).
        StoreError::Blocked(_) => (Code::Conflict, "blocked"),
        StoreError::Invalid(_) | StoreError::NotAnInteger(_) | StoreError::Overflow(_) => {
            (Code::Usage, "invalid_input")
        }
        // A value that does not open is a key or integrity problem of the database, not
        // something the caller typed.
        StoreError::Codec { .. } => (Code::Failure, "decrypt"),
        StoreError::Corrupt(_) => (Code::Failure, "corrupt"),
        StoreError::Busy => (Code::Failure, "busy"),
        _ => (Code::Failure, "database"),
    }
}

fn open_code(e: &OpenError) -> (Code, &'static str) {
    match e {
        OpenError::SchemaTooNew { .. } => (Code::Failure, "schema_too_new"),
        OpenError::MigrationMismatch { .. } | OpenError::MigrationFailed { .. } => {
            (Code::Failure, "schema")
        }
        // Key problems are the operator's, not an agent's credentials: exit 1, so scripts
        // can tell "this database cannot be opened" from "these credentials are refused".
        OpenError::KeyRequired | OpenError::WrongKey { .. } => (Code::Failure, "key"),
        OpenError::Config(_) => (Code::Usage, "invalid_input"),
        OpenError::Corrupt { .. } => (Code::Failure, "corrupt"),
        _ => (Code::Failure, "open"),
    }
}

fn registry_code(e: &RegistryError) -> (Code, &'static str) {
    match e {
        RegistryError::Authentication => (Code::Denied, "authentication"),
        RegistryError::Inactive { .. } => (Code::Denied, "inactive_agent"),
        RegistryError::Invalid(_) => (Code::Usage, "invalid_input"),
        RegistryError::Store(e) => store_code(e),
        _ => (Code::Failure, "registry"),
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        let (code, kind) = match &e {
            Error::Config(_) => (Code::Usage, "invalid_input"),
            Error::Coordination(_) => (Code::Failure, "coordination"),
            Error::Key(_) => (Code::Failure, "key"),
            Error::Bench(_) => (Code::Failure, "bench"),
            Error::Open(o) => open_code(o),
            Error::Store(s) => store_code(s),
            Error::Registry(r) => registry_code(r),
            _ => (Code::Failure, "internal"),
        };
        Self::new(code, kind, e.to_string())
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        let (code, kind) = store_code(&e);
        Self::new(code, kind, e.to_string())
    }
}

impl From<RegistryError> for CliError {
    fn from(e: RegistryError) -> Self {
        let (code, kind) = registry_code(&e);
        Self::new(code, kind, e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Self::new(Code::Failure, "broken_pipe", "output closed");
        }
        Self::new(Code::Failure, "io", e.to_string())
    }
}

impl From<serde_json::Error> for CliError {
    fn from(e: serde_json::Error) -> Self {
        Self::new(Code::Failure, "internal", format!("cannot render JSON: {e}"))
    }
}

/// Short for `Result<T, CliError>`.
pub(crate) type Result<T, E = CliError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_errors_get_their_documented_codes() {
        let cases: Vec<(CliError, u8)> = vec![
            (StoreError::NotFound("key k".into()).into(), 3),
            (StoreError::PermissionDenied("no".into()).into(), 4),
            (StoreError::InactiveAgent("a".into()).into(), 4),
            (
                StoreError::Conflict { key: "k".into(), expected: "1".into(), found: "2".into() }
                    .into(),
                5,
            ),
            (StoreError::Blocked("task t waits for u".into()).into(), 5),
            (StoreError::Invalid("bad".into()).into(), 2),
            (StoreError::NotAnInteger("k".into()).into(), 2),
            (StoreError::Overflow("k".into()).into(), 2),
            (StoreError::Busy.into(), 1),
            (RegistryError::Authentication.into(), 4),
            (RegistryError::Invalid("x".into()).into(), 2),
            (Error::Open(OpenError::SchemaTooNew { found: 9, supported: 1 }).into(), 1),
            (Error::Open(OpenError::WrongKey { key_id: 1 }).into(), 1),
            (Error::Config("SWARM_ID".into()).into(), 2),
            (Error::Registry(RegistryError::Store(StoreError::NotFound("t".into()))).into(), 3),
        ];
        for (e, code) in cases {
            assert_eq!(e.code(), code, "{e}");
        }
    }

    #[test]
    fn messages_are_one_line() {
        let e = CliError::usage("first\nsecond");
        assert_eq!(e.message(), "first second");
    }
}
