//! swarm-memory: a shared, persistent, access-controlled, encrypted memory for agent
//! swarms, on embedded SQLite.
//!
//! This crate is the facade (the seed's `SQLiteMemorySystem`): it opens the store,
//! registry and background work from one [`Builder`] (or the seed's environment
//! variables) and re-exports what an application needs. The work happens in the crates
//! below it: `swarm-store` (the only one that opens SQLite), `swarm-registry`,
//! `swarm-acl` and `swarm-codec`.
//!
//! ```
//! use swarm_memory::{AclLevel, AgentSpec, SetOptions, SwarmMemory, Value};
//!
//! let dir = tempfile::tempdir()?;
//! let system = SwarmMemory::builder().path(dir.path().join("swarm.db")).open()?;
//!
//! // Register two agents; each gets a token, shown once.
//! let ann = system.register_agent(AgentSpec::new("Backend Developer", "backend-dev")?)?;
//! let ben = system.register_agent(AgentSpec::new("Frontend Developer", "frontend-dev")?)?;
//!
//! // Untrusted callers authenticate with id and token; trusted code may use act_as.
//! let ann_session = system.authenticate(ann.agent.id.as_str(), ann.token.expose())?;
//! let ben_session = system.act_as(&ben.agent.id)?;
//!
//! let ann_mem = system.create_memory_adapter(&ann_session, "my-app")?;
//! let ben_mem = system.create_memory_adapter(&ben_session, "my-app")?;
//!
//! // Private by default (encrypted at rest); swarm-level when asked.
//! ann_mem.set("secret-key", "secret-value", &SetOptions::new())?;
//! ann_mem.set("plan", Value::Json(serde_json::json!({"step": 1})), &SetOptions::new().level(AclLevel::Swarm))?;
//!
//! assert_eq!(ann_mem.get("secret-key")?, Some(Value::from("secret-value")));
//! assert_eq!(ben_mem.get("secret-key")?, None); // invisible, exactly like absent
//! assert!(ben_mem.get("plan")?.is_some());
//!
//! // Atomic counters, also on encrypted records.
//! assert_eq!(ann_mem.incr("visits")?, 1);
//! system.graceful_shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The trust boundary: code holding a [`SwarmMemory`] is trusted (it can act as any agent
//! through [`SwarmMemory::act_as`] or as the system). Anything serving other processes
//! must use [`SwarmMemory::authenticate`].

mod adapter;
mod bench;
mod config;
mod coordination;
mod error;
mod events;
pub mod keyfile;
mod restore;
mod system;

pub use adapter::MemoryAdapter;
pub use bench::{
    AclPerformance, BackupFigures, BasicOperations, BenchOptions, BenchProgress, BenchReport,
    BenchResults, BenchSettings, Compared, Compression, ConcurrentOperations, Encryption,
    LargeValues, MAX_CONCURRENCY, MAX_ITERATIONS, MAX_NAMESPACES, MAX_TTL, Namespaces, ProgressFn,
    REPORT_FORMAT, Timing, TtlFigures, Units, memory_json,
};
pub use config::{Builder, DEFAULT_DB_PATH, DEFAULT_NODE_ID, DEFAULT_SWARM_ID, KeySource};
pub use coordination::{Backend, RemoteChange};
pub use error::{Error, Result};
pub use events::SystemEvent;
pub use keyfile::{key_file_for, secret_file_for};
pub use restore::{FileOutcome, RestoreOptions, RestoreReport};
pub use swarm_coord::{Health as CoordinationHealth, ParticipantStatus, Presence, RedisConfig};
pub use system::{Session, SwarmMemory, SystemMetrics};
// Key rotation over every sealed column, persisted metrics, status names.
pub use swarm_acl::{Rfc3339, UtcDateTime};
pub use swarm_store::{
    KindRotation, MAX_METRICS_LIMIT, MetricKind, MetricSample, MetricsQuery, SealedCounts,
    SealedKind,
};

pub use swarm_acl::{
    AclLevel, Action, AgentId, Grant, Identity, ResourceType, SwarmId, TeamId, Timestamp,
};
pub use swarm_registry::{AgentSpec, DefaultGrants, Registered, Registry, RegistryError, Token};
pub use swarm_store::{
    AgentFilter, AgentRecord, AgentStatus, AgentUpdate, Artifact, ArtifactFilter, ArtifactInfo,
    ArtifactSpec, Assignee, AuditPage, AuditQuery, AuditRow, BackupMethod, BackupReport, Ballot,
    ChainProblem, ChangeEvent, ChangeFilter, Claim, Completion, Conflict, ConflictFilter, Delivery,
    Dependency, DependencyKind, Durability, Event, EventPage, EventSpec, EventStatus, Expect,
    GrantRecord, Key, KeyPattern, KeyReport, KeyUse, ListQuery, MemoryStats, MetricsSnapshot,
    MigrationReport, Namespace, Op, OpenError, OptimizeReport, PragmaReport, Progress, Record,
    RecordKey, RecordMeta, RotationReport, Round, RoundSpec, RoundStatus, SetOptions, Store,
    StoreError, Strategy, SwarmRecord, Task, TaskChanges, TaskFilter, TaskSpec, TaskStatus,
    TeamRecord, Value, VerifyReport, Vote, VoteOutcome, Written,
};
