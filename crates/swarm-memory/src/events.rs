//! System events for the embedding application: the seed's `initialized`,
//! `agentRegistered`, `memoryOperation`, `error` and `benchmarksCompleted`.

use parking_lot::Mutex;
use serde::Serialize;

/// Something the system reports to its listeners. Never carries a value or a secret.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SystemEvent {
    /// The system is open.
    Initialized {
        /// The database path, or `:memory:`.
        database: String,
        /// The system's swarm.
        swarm: String,
        /// The schema version.
        schema_version: u32,
    },
    /// An agent was registered.
    AgentRegistered {
        /// Its id.
        agent: String,
        /// Its swarm.
        swarm: String,
    },
    /// A memory operation ran through an adapter.
    MemoryOperation {
        /// `get`, `set`, `delete`, ...
        op: &'static str,
        /// Who ran it.
        actor: String,
        /// The namespace.
        namespace: String,
        /// The key (or pattern), when there is one.
        key: Option<String>,
        /// Whether it succeeded.
        ok: bool,
    },
    /// An operation failed.
    Error {
        /// What failed.
        context: String,
        /// The error.
        message: String,
    },
    /// A coordination participant came online, went offline, joined or left (as the
    /// coordinator reports it).
    Presence {
        /// The agent.
        agent: String,
        /// `online`, `offline`, `joined` or `left`.
        status: String,
    },
    /// A benchmark run finished.
    BenchmarksCompleted {
        /// Where the report was written, if anywhere.
        report: Option<String>,
    },
}

/// Fans events out to listeners; a listener that went away is dropped, one that is full
/// misses the event (events are notifications, never a source of truth).
#[derive(Debug, Default)]
pub(crate) struct EventBus {
    listeners: Mutex<Vec<crossbeam_channel::Sender<SystemEvent>>>,
}

impl EventBus {
    pub(crate) fn add(&self, tx: crossbeam_channel::Sender<SystemEvent>) {
        self.listeners.lock().push(tx);
    }

    pub(crate) fn emit(&self, event: SystemEvent) {
        let mut listeners = self.listeners.lock();
        if listeners.is_empty() {
            return;
        }
        listeners.retain(|tx| {
            !matches!(
                tx.try_send(event.clone()),
                Err(crossbeam_channel::TrySendError::Disconnected(_))
            )
        });
    }
}
