//! Helpers: temporary stores with a known key and a manual clock, and registered agents.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use swarm_acl::{AgentId, Grant, Identity, SwarmId, TeamId, Timestamp};
use swarm_codec::{Key, KeyId, Keyring};
use swarm_store::{ManualClock, NewAgent, Store, StoreConfig};

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
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.db");
        let clock = ManualClock::new(Timestamp::from_millis(T0));
        let store = Store::open(config(&path, &clock)).unwrap();
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
