//! Errors of the store: [`OpenError`] when a database cannot be opened or migrated,
//! [`StoreError`] when an operation fails.

use swarm_acl::AclError;
use swarm_codec::CodecError;

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// SQLite refused to open or configure the file.
    #[error("cannot open database {path}: {message}")]
    Sqlite {
        /// The path or URI opened.
        path: String,
        /// SQLite's message.
        message: String,
    },
    /// The database was written by a newer swarm-memory: opening it could corrupt it.
    #[error(
        "database schema version {found} is newer than this build supports ({supported}); upgrade swarm-memory"
    )]
    SchemaTooNew {
        /// Version recorded in the database.
        found: u32,
        /// Latest version this build knows.
        supported: u32,
    },
    /// A migration recorded in the database differs from the one this build ships: the
    /// schema history was edited.
    #[error(
        "migration {version} recorded in the database differs from this build's ({name}): schema history was edited"
    )]
    MigrationMismatch {
        /// The version whose checksum differs.
        version: u32,
        /// The name of the migration in this build.
        name: &'static str,
    },
    /// Applying a migration failed; nothing was changed.
    #[error("migration {version} ({name}) failed, database left unchanged: {message}")]
    MigrationFailed {
        /// The failing version.
        version: u32,
        /// Its name.
        name: &'static str,
        /// SQLite's message.
        message: String,
    },
    /// The configuration asks for something impossible.
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// Records must be encrypted (by the encryption policy) but no key was given.
    #[error(
        "an encryption key is required: set one, or configure the store to store every level in plaintext"
    )]
    KeyRequired,
    /// The key given is not the one this database's values were encrypted with.
    #[error("encryption key {key_id} does not match the key this database was written with")]
    WrongKey {
        /// The key id whose check value differs.
        key_id: u32,
    },
    /// The operating system could not provide random bytes (for the in-memory key that
    /// seals search cursors).
    #[error("the operating system's random number generator failed")]
    Random,
    /// The file is not a swarm-memory database or is damaged.
    #[error("database {path} is not usable: {message}")]
    Corrupt {
        /// The path opened.
        path: String,
        /// What was found.
        message: String,
    },
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The thing named does not exist, or the principal cannot see it (the two are
    /// deliberately indistinguishable).
    #[error("{0} not found")]
    NotFound(String),
    /// The principal may not do this.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// A compare-and-set expectation failed; nothing was written.
    #[error("version conflict on {key}: expected {expected}, found {found}")]
    Conflict {
        /// The record.
        key: String,
        /// What the caller expected (`absent` or a version).
        expected: String,
        /// What was there (`absent` or a version).
        found: String,
    },
    /// A task cannot be claimed yet: hard dependencies are not completed.
    #[error("{0}")]
    Blocked(String),
    /// The input is not acceptable (bad id, key, value, option or limit).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// An increment or decrement met a value that is not an integer.
    #[error("value of {0} is not an integer")]
    NotAnInteger(String),
    /// An increment or decrement would overflow a 64-bit integer.
    #[error("integer overflow on {0}")]
    Overflow(String),
    /// The agent is unknown to this database, or is suspended or terminated.
    #[error("agent {0} is not an active agent of this database")]
    InactiveAgent(String),
    /// A stored value could not be opened (wrong key, tampered data, unknown key id).
    #[error("cannot read value of {key}: {source}")]
    Codec {
        /// The record.
        key: String,
        /// What the codec said.
        #[source]
        source: CodecError,
    },
    /// Stored data breaks an invariant of this crate (edited by hand, or a bug).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// SQLite reported an error.
    #[error("database error: {0}")]
    Database(String),
    /// The database stayed locked by other processes past the busy timeout and retries.
    #[error("database is busy: another process held the write lock past the timeout")]
    Busy,
    /// The store was shut down.
    #[error("store is closed")]
    Closed,
}

impl StoreError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        StoreError::Invalid(msg.into())
    }
}

impl From<AclError> for StoreError {
    fn from(e: AclError) -> Self {
        StoreError::Invalid(e.to_string())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        if crate::retry::is_busy(&e) {
            return StoreError::Busy;
        }
        StoreError::Database(e.to_string())
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        StoreError::Database(format!("connection pool: {e}"))
    }
}

/// Short for `Result<T, StoreError>`.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
