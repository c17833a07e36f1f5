//! Helpers: temporary stores with a known key and a manual clock, and registered agents.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use swarm_acl::{
    Access, AclLevel, Action, AgentId, Grant, Identity, ResourceType, SwarmId, TeamId, Timestamp,
    decide,
};
use swarm_codec::{Key, KeyId, Keyring};
use swarm_store::{AgentStatus, AgentUpdate, ManualClock, NewAgent, Store, StoreConfig};

/// The test key (hex), so a database can be reopened with it.
pub(crate) const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

pub(crate) const T0: i64 = 1_700_000_000_000;

pub(crate) fn keyring() -> Arc<Keyring> {
    Arc::new(Keyring::new(KeyId::new(1), Key::from_hex(KEY_HEX).unwrap()))
}

pub(crate) struct Env {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) path: PathBuf,
    pub(crate) store: Store,
    pub(crate) clock: ManualClock,
}

impl Env {
    /// A store on a fresh file, with the test key, a manual clock at T0 and no sweeper.
    pub(crate) fn new() -> Self {
        Self::with_config(|c| c)
    }

    /// Like [`Env::new`], with the test configuration adjusted by `adjust`.
    pub(crate) fn with_config(adjust: impl FnOnce(StoreConfig) -> StoreConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.db");
        let clock = ManualClock::new(Timestamp::from_millis(T0));
        let store = Store::open(adjust(config(&path, &clock))).unwrap();
        store.ensure_swarm(&Identity::System, &swarm("s1")).unwrap();
        store.ensure_swarm(&Identity::System, &swarm("s2")).unwrap();
        Env { _dir: dir, path, store, clock }
    }

    /// Reopens the same file (after shutting the current store down).
    pub(crate) fn reopen(&mut self) {
        self.store.shutdown().unwrap();
        self.store = Store::open(config(&self.path, &self.clock)).unwrap();
    }

    pub(crate) fn team(&self, id: &str, swarm_id: &str) -> TeamId {
        let t = TeamId::new(id).unwrap();
        self.store.create_team(&Identity::System, &t, &swarm(swarm_id), id, "", None).unwrap();
        t
    }

    /// Registers an agent with the default grants.
    pub(crate) fn agent(&self, id: &str, swarm_id: &str, teams: &[&TeamId]) -> Identity {
        self.agent_with(id, swarm_id, teams, Grant::defaults())
    }

    pub(crate) fn agent_with(
        &self,
        id: &str,
        swarm_id: &str,
        teams: &[&TeamId],
        grants: Vec<Grant>,
    ) -> Identity {
        let aid = AgentId::new(id).unwrap();
        self.store
            .insert_agent(
                &Identity::System,
                NewAgent {
                    id: aid.clone(),
                    swarm: swarm(swarm_id),
                    name: id.to_owned(),
                    agent_type: "tester".to_owned(),
                    capabilities: vec![],
                    metadata: serde_json::json!({}),
                    token_hash: [7; 32],
                    teams: teams.iter().map(|t| (*t).clone()).collect(),
                    grants,
                },
            )
            .unwrap();
        Identity::Agent(aid)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

pub(crate) fn config(path: &Path, clock: &ManualClock) -> StoreConfig {
    StoreConfig::file(path)
        .with_keyring(keyring())
        .with_clock(Arc::new(clock.clone()))
        .with_sweep_interval(None)
}

pub(crate) fn swarm(id: &str) -> SwarmId {
    SwarmId::new(id).unwrap()
}

pub(crate) fn key(swarm_id: &str, ns: &str, k: &str) -> swarm_store::RecordKey {
    swarm_store::RecordKey::parse(swarm_id, ns, k).unwrap()
}

/// A raw connection to the file, for tests that inspect or tamper with it as an
/// attacker with file access would.
pub(crate) fn raw(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    c
}

/// Agents of every relation to the records of the ACL conformance tests.
pub(crate) struct World {
    pub(crate) env: Env,
    pub(crate) red: TeamId,
    pub(crate) agents: BTreeMap<&'static str, Identity>,
}

/// s1: team red = {own, mate, sus, rev}; peer in s1 outside red; far in s2; admin holds
/// level-5 grants (read, write and delete on memory; read, write and vote on the domain
/// resources). Tests suspend sus and revoke rev's grants after writing their records
/// ([`World::suspend_and_revoke`]).
pub(crate) fn world() -> World {
    let env = Env::new();
    let red = env.team("red", "s1");
    let mut agents = BTreeMap::new();
    agents.insert("own", env.agent("own", "s1", &[&red]));
    agents.insert("mate", env.agent("mate", "s1", &[&red]));
    agents.insert("peer", env.agent("peer", "s1", &[]));
    agents.insert("far", env.agent("far", "s2", &[]));
    agents.insert("sus", env.agent("sus", "s1", &[&red]));
    agents.insert("rev", env.agent("rev", "s1", &[&red]));
    let mut admin = Grant::defaults();
    for a in [Action::Read, Action::Write, Action::Delete] {
        admin.push(Grant::new(ResourceType::Memory, a, AclLevel::System));
    }
    for r in [ResourceType::Task, ResourceType::Event, ResourceType::Artifact] {
        for a in [Action::Read, Action::Write] {
            admin.push(Grant::new(r, a, AclLevel::System));
        }
    }
    for a in [Action::Read, Action::Write, Action::Vote] {
        admin.push(Grant::new(ResourceType::Consensus, a, AclLevel::System));
    }
    agents.insert("admin", env.agent_with("admin", "s1", &[], admin));
    agents.insert("system", Identity::System);
    World { env, red, agents }
}

/// Who of [`world`] may read a record of each level (private, team, swarm, public, system)
/// owned by `own` in team red of s1, once sus is suspended and rev's grants revoked: literal
/// expectations, so agreement with the model cannot be vacuous.
pub(crate) const READS_BY_LEVEL: [(&str, [bool; 5]); 8] = [
    ("own", [true, true, true, true, false]),
    ("mate", [false, true, true, true, false]),
    ("peer", [false, false, true, true, false]),
    ("far", [false, false, false, true, false]),
    ("sus", [false; 5]),
    ("rev", [false; 5]),
    ("admin", [false, false, true, true, true]),
    ("system", [true; 5]),
];

impl World {
    /// Suspends sus, and revokes every grant rev holds on `resource` at every level.
    pub(crate) fn suspend_and_revoke(&self, resource: ResourceType) {
        let store = &self.env.store;
        let sus = AgentId::new("sus").unwrap();
        let update = AgentUpdate { status: Some(AgentStatus::Suspended), ..AgentUpdate::default() };
        store.update_agent(&Identity::System, &sus, update).unwrap();
        let rev = AgentId::new("rev").unwrap();
        for level in AclLevel::ALL {
            store.revoke(&Identity::System, &rev, resource, level, None).unwrap();
        }
    }

    /// The model: what swarm-acl decides for `who`'s resolved principal about a record of
    /// this scope (false for an identity that does not resolve, such as a suspended agent).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn allows(
        &self,
        who: &Identity,
        action: Action,
        resource: ResourceType,
        swarm_id: &SwarmId,
        level: AclLevel,
        owner: Option<&AgentId>,
        team: Option<&TeamId>,
    ) -> bool {
        let Ok(p) = self.env.store.principal(who) else { return false };
        let access = Access::new(level, swarm_id.as_str())
            .with_owner(owner.map(AgentId::as_str))
            .with_team(team.map(TeamId::as_str));
        decide(&p, action, resource, &access, self.env.store.now()).is_allowed()
    }

    /// Whether `who` is an agent of `swarm_id` (or the system principal): operations that
    /// work on "the caller's swarm" (the event log and queue, ready tasks, artifact lists,
    /// claims) answer for that swarm only.
    pub(crate) fn in_swarm(&self, who: &Identity, swarm_id: &SwarmId) -> bool {
        match self.env.store.principal(who) {
            Ok(p) => p.as_agent().is_none_or(|a| a.swarm() == swarm_id),
            Err(_) => false,
        }
    }
}

/// The bytes of the database file and its WAL after the store shut down, for tests that
/// look for plaintext as an attacker with the file would.
pub(crate) fn file_bytes(env: Env) -> Vec<u8> {
    let mut env = env;
    env.reopen();
    env.store.shutdown().unwrap();
    let mut bytes = std::fs::read(&env.path).unwrap();
    if let Ok(wal) = std::fs::read(env.path.with_extension("db-wal")) {
        bytes.extend(wal);
    }
    bytes
}

pub(crate) fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}
