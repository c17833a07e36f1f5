//! The system handle: the seed's SQLiteMemorySystem.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use swarm_acl::{AclLevel, Action, AgentId, Identity, ResourceType, SwarmId, Timestamp};
use swarm_codec::{CodecConfig, Key, KeyId, Keyring};
use swarm_registry::{AgentSpec, Registered, Registry};
use swarm_store::{AgentFilter, AgentRecord, Store, StoreConfig, StoreError};

use crate::adapter::MemoryAdapter;
use crate::config::{Builder, DEFAULT_NODE_ID, DEFAULT_SWARM_ID, KeySource};
use crate::error::{Error, Result};
use crate::events::{EventBus, SystemEvent};
use crate::keyfile;

/// The whole system behind one handle: the store, the registry and (later) the
/// coordinator and background work. Cheap to clone.
#[derive(Clone)]
pub struct SwarmMemory {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    registry: Registry,
    swarm: SwarmId,
    node_id: String,
    database: Option<PathBuf>,
    key_file: Option<PathBuf>,
    encrypted_levels: Option<AclLevel>,
    swarm_created: bool,
    events: Arc<EventBus>,
    coordination: crate::coordination::Coordination,
    performance_monitoring: bool,
    benchmark_output_dir: Option<PathBuf>,
    closed: AtomicBool,
}

impl std::fmt::Debug for SwarmMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmMemory")
            .field("database", &self.inner.database)
            .field("swarm", &self.inner.swarm)
            .finish_non_exhaustive()
    }
}

/// Who an operation runs as, obtained from [`SwarmMemory::authenticate`] (untrusted
/// callers), [`SwarmMemory::act_as`] (trusted in-process code) or [`SwarmMemory::system`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    identity: Identity,
    swarm: SwarmId,
}

impl Session {
    /// The identity operations run as.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The swarm the session works in (the agent's own).
    pub fn swarm(&self) -> &SwarmId {
        &self.swarm
    }

    /// The agent id, unless this is the system session.
    pub fn agent(&self) -> Option<&AgentId> {
        match &self.identity {
            Identity::Agent(a) => Some(a),
            Identity::System => None,
        }
    }
}

/// Counts and settings reported by [`SwarmMemory::get_system_metrics`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct SystemMetrics {
    /// Schema version.
    pub schema_version: u32,
    /// Rows per table.
    pub tables: Vec<(String, u64)>,
    /// Principal cache lookups answered from the cache.
    pub acl_cache_hits: u64,
    /// Principal cache lookups that missed.
    pub acl_cache_misses: u64,
    /// `hits / (hits + misses)`.
    pub acl_cache_hit_rate: f64,
    /// The pragmas the database runs with.
    pub pragmas: swarm_store::PragmaReport,
    /// Whether metrics snapshots are written to the database every minute
    /// (`ENABLE_PERFORMANCE_MONITORING`); the in-process counters above always run.
    pub performance_monitoring: bool,
}

impl SwarmMemory {
    /// A builder with defaults (see [`Builder::new`]).
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Opens the system configured by the seed's environment variables.
    pub fn from_env() -> Result<Self> {
        Builder::from_env()?.open()
    }

    pub(crate) fn open_with(b: Builder) -> Result<Self> {
        let swarm = match b.swarm.clone() {
            Some(s) => s,
            None => SwarmId::new(DEFAULT_SWARM_ID)?,
        };
        let database = b.db_path();
        let (keyring, key_file) = resolve_key(&b, database.as_deref())?;
        let mut codec = CodecConfig::default();
        if let Some(t) = b.compression_threshold {
            codec = codec.with_compression_threshold(t);
        }
        let mut config = match &database {
            Some(p) => StoreConfig::file(p),
            None => StoreConfig::memory(),
        }
        .with_codec(codec)
        .with_durability(b.durability)
        .with_sweep_interval(b.sweep_interval)
        .with_encrypt_up_to(if keyring.is_some() { b.encrypt_up_to } else { None });
        if let Some(k) = keyring {
            config = config.with_keyring(k);
        }
        if let Some(path) = &key_file {
            // A rotation by another process (`swarm-memory rotate-key`) appends a key to
            // this file: the store reads it again and goes on, no restart needed.
            config = config.with_keyring_source(Arc::new(keyfile::Source { path: path.clone() }));
        }
        if let Some(c) = &b.clock {
            config = config.with_clock(Arc::clone(c));
        }
        if !b.create {
            config = config.must_exist();
        }
        if !b.performance_monitoring {
            // The in-process counters stay (nanoseconds each); what stops is the periodic
            // snapshot written into the database.
            config = config.with_metrics_interval(None);
        }
        let store = Store::open(config)?;
        let registry = Registry::new(store.clone()).with_default_swarm(swarm.clone());
        // Only a system allowed to create its database creates its swarm: opening an
        // existing database (`must_exist`) never adds a swarm because of a typo.
        let swarm_created = b.create && registry.ensure_swarm(&swarm)?;
        let events = Arc::new(EventBus::default());
        for l in &b.listeners {
            events.add(l.clone());
        }
        let node_id = b.node_id.clone().unwrap_or_else(|| DEFAULT_NODE_ID.to_owned());
        let secret = resolve_secret(&b, database.as_deref())?;
        let coordination = crate::coordination::Coordination::start(
            &b.backend, secret, &swarm, &node_id, &store, &events,
        )?;
        let encrypted_levels = store.config().encrypts_up_to();
        let system = SwarmMemory {
            inner: Arc::new(Inner {
                store,
                registry,
                swarm: swarm.clone(),
                node_id,
                database: database.clone(),
                key_file,
                encrypted_levels,
                swarm_created,
                events,
                coordination,
                performance_monitoring: b.performance_monitoring,
                benchmark_output_dir: b.benchmark_output_dir.clone(),
                closed: AtomicBool::new(false),
            }),
        };
        system.emit(SystemEvent::Initialized {
            database: database.map_or_else(|| ":memory:".to_owned(), |p| p.display().to_string()),
            swarm: swarm.to_string(),
            schema_version: system.inner.store.migration().to,
        });
        Ok(system)
    }

    /// The store underneath (trusted, in-process use).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The system's swarm.
    pub fn swarm(&self) -> &SwarmId {
        &self.inner.swarm
    }

    /// Whether opening created the system's swarm.
    pub fn swarm_created(&self) -> bool {
        self.inner.swarm_created
    }

    /// This node's name on the coordination bus.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The database file (`None` when in memory).
    pub fn database(&self) -> Option<&Path> {
        self.inner.database.as_deref()
    }

    /// The key file in use, if keys come from one.
    pub fn key_file(&self) -> Option<&Path> {
        self.inner.key_file.as_deref()
    }

    /// Records at this level and below are encrypted (`None`: none are).
    pub fn encrypted_levels(&self) -> Option<AclLevel> {
        self.inner.encrypted_levels
    }

    /// Where benchmark reports go.
    pub fn benchmark_output_dir(&self) -> Option<&Path> {
        self.inner.benchmark_output_dir.as_deref()
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Relaxed) { Err(Error::Closed) } else { Ok(()) }
    }

    pub(crate) fn emit(&self, e: SystemEvent) {
        self.inner.events.emit(e);
    }

    /// Receives system events from now on.
    pub fn subscribe(&self) -> crossbeam_channel::Receiver<SystemEvent> {
        let (tx, rx) = crossbeam_channel::bounded(1024);
        self.inner.events.add(tx);
        rx
    }

    /// The system session: the operator's principal, which passes every check. Only
    /// trusted code holding this handle can get it.
    pub fn system(&self) -> Session {
        Session { identity: Identity::System, swarm: self.inner.swarm.clone() }
    }

    /// Checks an agent id and token, for callers that are not trusted (anything reachable
    /// from another process). Any wrong half fails the same way.
    pub fn authenticate(&self, agent_id: &str, token: &str) -> Result<Session> {
        self.check_open()?;
        let identity = self.inner.registry.authenticate(agent_id, token)?;
        self.session_for(identity)
    }

    /// A session for an agent, without a token: for trusted in-process code (an
    /// orchestrator embedding the library). The agent must exist and be active.
    pub fn act_as(&self, agent: &AgentId) -> Result<Session> {
        self.check_open()?;
        self.session_for(Identity::Agent(agent.clone()))
    }

    fn session_for(&self, identity: Identity) -> Result<Session> {
        let principal = self.inner.store.principal(&identity)?;
        let swarm = match principal.as_agent() {
            Some(a) => a.swarm().clone(),
            None => self.inner.swarm.clone(),
        };
        Ok(Session { identity, swarm })
    }

    /// Registers an agent (as the system) and returns it with its token, shown once.
    /// Agents without a swarm in their spec join the system's swarm.
    pub fn register_agent(&self, spec: AgentSpec) -> Result<Registered> {
        self.check_open()?;
        let r = self.inner.registry.register_agent(&Identity::System, spec);
        match &r {
            Ok(reg) => self.emit(SystemEvent::AgentRegistered {
                agent: reg.agent.id.to_string(),
                swarm: reg.agent.swarm.to_string(),
            }),
            Err(e) => self.emit(SystemEvent::Error {
                context: "register_agent".into(),
                message: e.to_string(),
            }),
        }
        Ok(r?)
    }

    /// An agent.
    pub fn get_agent(&self, id: &AgentId) -> Result<Option<AgentRecord>> {
        self.check_open()?;
        Ok(self.inner.registry.get_agent(&Identity::System, id)?)
    }

    /// Agents matching `filter`.
    pub fn list_agents(&self, filter: &AgentFilter) -> Result<Vec<AgentRecord>> {
        self.check_open()?;
        Ok(self.inner.registry.list_agents(&Identity::System, filter)?)
    }

    /// The seed's `grantPermission(agentId, resourceType, level, actions)`.
    pub fn grant_permission(
        &self,
        agent: &AgentId,
        resource: ResourceType,
        level: AclLevel,
        actions: &[Action],
    ) -> Result<()> {
        self.grant_permission_until(agent, resource, level, actions, None)
    }

    /// A grant that lapses at `expires_at`.
    pub fn grant_permission_until(
        &self,
        agent: &AgentId,
        resource: ResourceType,
        level: AclLevel,
        actions: &[Action],
        expires_at: Option<Timestamp>,
    ) -> Result<()> {
        self.check_open()?;
        Ok(self.inner.registry.grant_permission(
            &Identity::System,
            agent,
            resource,
            level,
            actions,
            expires_at,
        )?)
    }

    /// The seed's `hasPermission(agentId, resourceType, action, level)`.
    pub fn has_permission(
        &self,
        agent: &AgentId,
        resource: ResourceType,
        action: Action,
        level: AclLevel,
    ) -> Result<bool> {
        self.check_open()?;
        Ok(self.inner.registry.has_permission(agent, resource, action, level)?)
    }

    /// A namespace-bound handle with the seed's MemoryStoreAdapter API, acting as
    /// `session`, in the session's swarm.
    pub fn create_memory_adapter(
        &self,
        session: &Session,
        namespace: &str,
    ) -> Result<MemoryAdapter> {
        self.check_open()?;
        MemoryAdapter::new(self.clone(), session.clone(), namespace)
    }

    /// Counts, cache figures and pragmas.
    pub fn get_system_metrics(&self) -> Result<SystemMetrics> {
        self.check_open()?;
        let store = &self.inner.store;
        let cache = store.acl_cache_stats();
        Ok(SystemMetrics {
            schema_version: store.migration().to,
            tables: store.table_counts(&Identity::System)?,
            acl_cache_hits: cache.hits,
            acl_cache_misses: cache.misses,
            acl_cache_hit_rate: cache.hit_rate(),
            pragmas: store.pragmas().clone(),
            performance_monitoring: self.inner.performance_monitoring,
        })
    }

    /// The coordinator (in-process bus or Redis), for publishing and subscribing to
    /// channels directly.
    pub fn coordinator(&self) -> &Arc<dyn swarm_coord::Coordinator> {
        self.inner.coordination.coordinator()
    }

    /// The coordination link's health: backend, connected or not since when, last error,
    /// dropped messages by reason, reconnects.
    pub fn coordination_health(&self) -> swarm_coord::Health {
        self.inner.coordination.coordinator().health()
    }

    /// Memory changes announced by any process of the swarm, delivered to `session` only
    /// when its principal may read the record (checked at delivery, so a revoke applies at
    /// once). Changes carry keys and versions, never values; duplicates repeat `seq`.
    pub fn subscribe_changes(
        &self,
        session: &Session,
    ) -> crossbeam_channel::Receiver<crate::RemoteChange> {
        self.inner.coordination.subscribe_changes(session.identity().clone())
    }

    /// Announces `session`'s agent as a participant of the swarm; heartbeats follow on an
    /// interval until it leaves or this system shuts down.
    pub fn join(&self, session: &Session, role: &str) -> Result<()> {
        let agent =
            session.agent().ok_or_else(|| Error::Config("only agents join the swarm".into()))?;
        let p =
            swarm_coord::Participant::new(agent.clone(), session.swarm().clone()).with_role(role);
        self.coordinator().join(p).map_err(Error::Coordination)
    }

    /// Withdraws `session`'s agent from the participants.
    pub fn leave(&self, session: &Session) -> Result<()> {
        let agent =
            session.agent().ok_or_else(|| Error::Config("only agents join the swarm".into()))?;
        self.coordinator().leave(session.swarm(), agent).map_err(Error::Coordination)
    }

    /// The swarm's participants, online or offline (the seed's `getParticipants`).
    pub fn participants(&self) -> Result<Vec<swarm_coord::ParticipantStatus>> {
        self.coordinator().participants(&self.inner.swarm).map_err(Error::Coordination)
    }

    /// Votes on a round that hosts without a shared database decide together: the vote
    /// is counted atomically by the coordinator (once per agent, the outcome decided once)
    /// and the tally and outcome are mirrored into this database's copy of the round.
    /// The round must exist here (created with the same id on every host).
    pub fn vote_across_hosts(
        &self,
        session: &Session,
        round_id: &str,
        ballot: swarm_store::Ballot,
    ) -> Result<swarm_store::Round> {
        self.check_open()?;
        let agent =
            session.agent().ok_or_else(|| Error::Config("only agents vote".into()))?.clone();
        let store = &self.inner.store;
        let Some(round) = store.get_round(session.identity(), round_id)? else {
            return Err(Error::Store(StoreError::NotFound(format!("consensus {round_id}"))));
        };
        let p = store.principal(session.identity())?;
        let access = swarm_acl::Access::new(round.level, &round.swarm)
            .with_owner(round.owner.as_ref())
            .with_team(round.team.as_ref());
        if !swarm_acl::decide(&p, Action::Vote, ResourceType::Consensus, &access, store.now())
            .is_allowed()
        {
            return Err(Error::Store(StoreError::PermissionDenied(format!(
                "no vote permission on consensus {round_id}"
            ))));
        }
        let coord_err = |e: swarm_coord::CoordError| match e {
            swarm_coord::CoordError::DuplicateVote { .. } => Error::Store(StoreError::Conflict {
                key: format!("consensus {round_id}"),
                expected: "a first vote".into(),
                found: format!("{agent} already voted"),
            }),
            other => Error::Coordination(other),
        };
        let spec = crate::coordination::round_spec(&round).map_err(coord_err)?;
        let b = swarm_coord::Ballot::new(agent.clone(), ballot.approve, ballot.confidence)
            .map_err(coord_err)?;
        let result = self.coordinator().vote(&spec, b).map_err(coord_err)?;
        let local = result.counted.then_some((agent, ballot));
        Ok(crate::coordination::mirror(store, round_id, &result, local)?)
    }

    /// Brings this database's copy of a round decided across hosts up to date with the
    /// coordinator (the listener does this when it hears a decision; this is for callers
    /// that want it now).
    pub fn sync_round_across_hosts(&self, round_id: &str) -> Result<()> {
        self.check_open()?;
        crate::coordination::sync_round(&self.inner.store, self.coordinator().as_ref(), round_id)
            .map_err(Error::Config)
    }

    /// Stops background work, flushes, checkpoints and closes. Idempotent.
    pub fn graceful_shutdown(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.inner.coordination.shutdown();
        Ok(self.inner.store.shutdown()?)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropped without graceful_shutdown: the relay and listener threads still stop
        // (they hold clones of the store, which closes when the last one goes).
        if !self.closed.load(Ordering::SeqCst) {
            self.coordination.shutdown();
        }
    }
}

/// The swarm secret: explicit (or `SWARM_SECRET`), else the secret file beside the
/// database (created the first time), else a random one for an in-memory database.
fn resolve_secret(b: &Builder, database: Option<&Path>) -> Result<swarm_coord::SwarmSecret> {
    if let Some(text) = &b.swarm_secret {
        return swarm_coord::SwarmSecret::parse(text)
            .map_err(|e| Error::Key(format!("SWARM_SECRET: {e}")));
    }
    match database {
        Some(db) => keyfile::read_or_create_secret(&keyfile::secret_file_for(db)),
        None => swarm_coord::SwarmSecret::generate().map_err(|e| Error::Key(e.to_string())),
    }
}

/// Chooses the keyring: explicit, from `SQLITE_ENCRYPTION_KEY` text, from the key file
/// beside the database (created only for a new database), or a throwaway key for an
/// in-memory database.
fn resolve_key(
    b: &Builder,
    database: Option<&Path>,
) -> Result<(Option<Arc<Keyring>>, Option<PathBuf>)> {
    match &b.key {
        KeySource::None => Ok((None, None)),
        KeySource::Keyring(k) => Ok((Some(Arc::clone(k)), None)),
        KeySource::Text(t) => {
            let key =
                Key::parse(t).map_err(|e| Error::Key(format!("SQLITE_ENCRYPTION_KEY: {e}")))?;
            Ok((Some(Arc::new(Keyring::new(KeyId::new(1), key))), None))
        }
        KeySource::File(p) => Ok((Some(Arc::new(keyfile::read(p)?)), Some(p.clone()))),
        KeySource::Auto => {
            let Some(db) = database else {
                let key = Key::generate().map_err(|e| Error::Key(e.to_string()))?;
                return Ok((Some(Arc::new(Keyring::new(KeyId::new(1), key))), None));
            };
            let path = keyfile::key_file_for(db);
            if path.exists() {
                return Ok((Some(Arc::new(keyfile::read(&path)?)), Some(path)));
            }
            if db.exists() && std::fs::metadata(db).map(|m| m.len() > 0).unwrap_or(false) {
                return Err(Error::Key(format!(
                    "database {} exists but its key file {} does not: restore the key file or set SQLITE_ENCRYPTION_KEY",
                    db.display(),
                    path.display()
                )));
            }
            if !b.create {
                return Err(Error::Store(StoreError::NotFound(format!(
                    "database {}",
                    db.display()
                ))));
            }
            if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::Config(format!("cannot create directory {}: {e}", dir.display()))
                })?;
            }
            Ok((Some(Arc::new(keyfile::create(&path)?)), Some(path)))
        }
    }
}
