//! The swarm-memory store: the only crate that opens SQLite.
//!
//! It keeps agent memory (and, in later modules, tasks, events, consensus, artifacts and
//! conflicts) in one SQLite database, with:
//!
//! - one write path with group commit: concurrent writes share transactions, each caller
//!   still gets its own result ([`Store::set`] and friends);
//! - pooled read-only connections for reads, which run the visibility predicate of
//!   [`swarm_acl`] inside their SQL: a record the principal cannot see is never fetched and
//!   behaves as absent;
//! - values sealed by [`swarm_codec`] (encrypted for private and team records by default,
//!   with associated data binding swarm, namespace, key, level, owner, team and type);
//! - an append-only, hash-chained audit trail written in the same transaction as the
//!   change it records;
//! - TTL enforced on every read and a background sweeper;
//! - a durable, ACL-filtered change feed ([`Store::changes_since`], [`Store::watch`]);
//! - online key rotation over every sealed column, resumable after a crash
//!   ([`Store::rotate_keys`], [`Store::key_report`]).
//!
//! What it is not: it does not authenticate anyone. Every operation takes an
//! [`swarm_acl::Identity`]; code holding a `Store` is trusted to name the identity it acts
//! for. Untrusted callers go through `swarm-registry`, which hands out identities only for
//! a valid agent token.
//!
//! ```
//! use swarm_acl::{AclLevel, Identity};
//! use swarm_store::{RecordKey, SetOptions, Store, StoreConfig, Value};
//!
//! let store = Store::open(StoreConfig::memory().with_encrypt_up_to(None))?;
//! store.ensure_swarm(&Identity::System, &swarm_acl::SwarmId::new("default")?)?;
//! let key = RecordKey::parse("default", "notes", "greeting")?;
//! let w = store.set(&Identity::System, &key, Value::from("hello"), &SetOptions::new().level(AclLevel::Swarm))?;
//! let record = store.get(&Identity::System, &key)?.expect("just written");
//! assert_eq!(record.value, Value::from("hello"));
//! assert_eq!(record.meta.version, w.version);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod audit;
mod baseline;
mod clock;
mod config;
mod conn;
mod domain;
mod error;
mod history;
mod identity;
mod keys;
mod maintenance;
mod memory;
mod metrics;
mod migrate;
mod names;
mod ops;
mod principal;
mod relay;
mod retry;
mod sql;
mod store;
mod txn;
mod writer;

pub use audit::{AuditPage, AuditQuery, AuditRow, ChainProblem, Outcome, VerifyReport};
pub use baseline::{Baseline, BaselineReader};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{DEFAULT_MMAP_SIZE, Durability, KeyringSource, Limits, Location, StoreConfig};
pub use conn::PragmaReport;
pub use domain::artifacts::{Artifact, ArtifactFilter, ArtifactInfo, ArtifactSpec};
pub use domain::conflicts::{Conflict, ConflictFilter};
pub use domain::consensus::{
    Ballot, Round, RoundSpec, RoundStatus, Strategy, Tally, Vote, VoteOutcome, decide_tally,
};
pub use domain::events::{
    Delivery, Event, EventPage, EventSpec, EventStatus, EventWatch,
    MAX_PAYLOAD as MAX_EVENT_PAYLOAD,
};
pub use domain::tasks::{
    Assignee, Claim, Completion, Dependency, DependencyKind, Lease, Task, TaskChanges, TaskFilter,
    TaskSpec, TaskStatus,
};
pub use error::{OpenError, Result, StoreError};
pub use history::{MAX_METRICS_LIMIT, MetricKind, MetricSample, MetricsQuery};
pub use identity::{
    AgentFilter, AgentRecord, AgentStatus, AgentUpdate, GrantRecord, NewAgent, SwarmRecord,
    TeamRecord,
};
pub use keys::{KeyReport, KeyUse, KindRotation, RotationReport, SealedCounts, SealedKind};
pub use memory::{
    ChangeEvent, ChangeFilter, ChangePage, Expect, Key, KeyPattern, ListQuery, MemoryStats,
    Namespace, Page, Record, RecordKey, RecordMeta, RecordSummary, SearchHit, SearchPage,
    SearchQuery, SetOptions, Value, ValueType, Watch, Written,
};
pub use metrics::{MetricsSnapshot, Op, OpMetrics};
pub use migrate::{MigrationReport, dump_schema, expected_schema};
pub use ops::{
    BackupMethod, BackupReport, OptimizeReport, Progress, StagedRestore, restore, stage_restore,
};
pub use relay::OutboxMessage;
pub use store::Store;
