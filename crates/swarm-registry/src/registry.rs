use swarm_acl::{
    AclLevel, Action, AgentId, Grant, Identity, ResourceType, SwarmId, TeamId, Timestamp,
};
use swarm_store::{
    AgentFilter, AgentRecord, AgentStatus, AgentUpdate, GrantRecord, NewAgent, Store, StoreError,
    SwarmRecord, TeamRecord,
};

use crate::error::{RegistryError, Result};
use crate::spec::AgentSpec;
use crate::token::{self, Token};

/// The swarm agents join when their spec names none.
pub const DEFAULT_SWARM: &str = "default";

/// The agent registry: swarms, agents, teams and grants, on a [`Store`].
#[derive(Clone, Debug)]
pub struct Registry {
    store: Store,
    default_swarm: SwarmId,
}

/// A freshly registered agent and its token, shown this once.
#[derive(Debug)]
pub struct Registered {
    /// The agent as stored.
    pub agent: AgentRecord,
    /// Its bearer token. Hand it to the agent now: it cannot be recovered.
    pub token: Token,
}

fn random_suffix() -> Result<String> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b)
        .map_err(|e| RegistryError::Invalid(format!("no randomness available: {e}")))?;
    Ok(hex::encode(b))
}

impl Registry {
    /// A registry on `store`, whose default swarm is `default`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            default_swarm: SwarmId::new(DEFAULT_SWARM).expect("the default swarm id is valid"),
        }
    }

    /// The same registry with another default swarm.
    pub fn with_default_swarm(mut self, swarm: SwarmId) -> Self {
        self.default_swarm = swarm;
        self
    }

    /// The store underneath.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The swarm agents join by default.
    pub fn default_swarm(&self) -> &SwarmId {
        &self.default_swarm
    }

    /// Creates the swarm if missing (as the system principal). Returns whether it was new.
    pub fn ensure_swarm(&self, swarm: &SwarmId) -> Result<bool> {
        Ok(self.store.ensure_swarm(&Identity::System, swarm)?)
    }

    /// Creates a swarm with a name, description and configuration.
    pub fn create_swarm(
        &self,
        who: &Identity,
        id: &SwarmId,
        name: &str,
        description: &str,
        config: serde_json::Value,
    ) -> Result<SwarmRecord> {
        Ok(self.store.create_swarm(who, id, name, description, config)?)
    }

    /// A swarm.
    pub fn get_swarm(&self, who: &Identity, id: &SwarmId) -> Result<Option<SwarmRecord>> {
        Ok(self.store.get_swarm(who, id)?)
    }

    /// Every swarm.
    pub fn list_swarms(&self, who: &Identity) -> Result<Vec<SwarmRecord>> {
        Ok(self.store.list_swarms(who)?)
    }

    /// Replaces a swarm's configuration and/or status.
    pub fn update_swarm(
        &self,
        who: &Identity,
        id: &SwarmId,
        config: Option<serde_json::Value>,
        status: Option<&str>,
    ) -> Result<SwarmRecord> {
        Ok(self.store.update_swarm(who, id, config, status)?)
    }

    /// Registers an agent and returns it with its token (shown once). The id is generated
    /// (`agt_` and 16 hex digits) unless the spec gives one.
    pub fn register_agent(&self, who: &Identity, spec: AgentSpec) -> Result<Registered> {
        let id = match spec.id {
            Some(id) => id,
            None => AgentId::new(format!("agt_{}", random_suffix()?))?,
        };
        let token = Token::generate()?;
        let agent = self.store.insert_agent(
            who,
            NewAgent {
                id,
                swarm: spec.swarm.unwrap_or_else(|| self.default_swarm.clone()),
                name: spec.name,
                agent_type: spec.agent_type,
                capabilities: spec.capabilities,
                metadata: spec.metadata,
                token_hash: token.hash(),
                teams: spec.teams,
                grants: spec.grants.into_grants(),
            },
        )?;
        Ok(Registered { agent, token })
    }

    /// Unregisters an agent for good (its id is never reused; its token stops working).
    pub fn unregister_agent(&self, who: &Identity, id: &AgentId) -> Result<()> {
        // The stored hash becomes that of a token nobody has.
        let void = Token::generate()?.hash();
        Ok(self.store.terminate_agent(who, id, void)?)
    }

    /// Changes an agent.
    pub fn update_agent(
        &self,
        who: &Identity,
        id: &AgentId,
        update: AgentUpdate,
    ) -> Result<AgentRecord> {
        Ok(self.store.update_agent(who, id, update)?)
    }

    /// An agent.
    pub fn get_agent(&self, who: &Identity, id: &AgentId) -> Result<Option<AgentRecord>> {
        Ok(self.store.get_agent(who, id)?)
    }

    /// Agents matching `filter`.
    pub fn list_agents(&self, who: &Identity, filter: &AgentFilter) -> Result<Vec<AgentRecord>> {
        Ok(self.store.list_agents(who, filter)?)
    }

    /// Checks an agent id and token and returns the identity to act as. Any failure of
    /// either half is the same [`RegistryError::Authentication`]; an agent whose
    /// credentials are right but which is suspended, inactive or terminated gets
    /// [`RegistryError::Inactive`].
    pub fn authenticate(&self, agent_id: &str, token: &str) -> Result<Identity> {
        // The id is parsed but an invalid one fails like a wrong token.
        let id = AgentId::new(agent_id).map_err(|_| RegistryError::Authentication)?;
        let stored = self.store.credentials(&id)?;
        // Hash even when the agent is unknown or the token malformed, so the answer takes
        // the same time whichever half was wrong.
        let presented = blake3::Hash::from(token::hash_text(token));
        let (hash, status) = match stored {
            Some((hash, status)) => (blake3::Hash::from(hash), Some(status)),
            None => (blake3::Hash::from([0u8; 32]), None),
        };
        // blake3::Hash compares in constant time.
        let matches = presented == hash;
        match status {
            Some(status) if matches && token::well_formed(token) => match status {
                AgentStatus::Active => Ok(Identity::Agent(id)),
                other => Err(RegistryError::inactive(id.as_str(), other)),
            },
            _ => Err(RegistryError::Authentication),
        }
    }

    /// Issues a new token for an agent; the old one stops working at once.
    pub fn rotate_token(&self, who: &Identity, id: &AgentId) -> Result<Token> {
        let token = Token::generate()?;
        self.store.set_token_hash(who, id, token.hash())?;
        Ok(token)
    }

    /// Creates a team in `swarm` (default swarm if `None`); the id is generated
    /// (`team_` and 16 hex digits) unless given. The leader joins the team.
    pub fn create_team(
        &self,
        who: &Identity,
        id: Option<&str>,
        name: &str,
        swarm: Option<&SwarmId>,
        leader: Option<&AgentId>,
    ) -> Result<TeamRecord> {
        let id = match id {
            Some(id) => TeamId::new(id)?,
            None => TeamId::new(format!("team_{}", random_suffix()?))?,
        };
        let swarm = swarm.unwrap_or(&self.default_swarm);
        Ok(self.store.create_team(who, &id, swarm, name, "", leader)?)
    }

    /// Adds an agent to a team (administrators and the team's leader).
    pub fn add_agent_to_team(
        &self,
        who: &Identity,
        agent: &AgentId,
        team: &TeamId,
    ) -> Result<bool> {
        Ok(self.store.add_team_member(who, team, agent)?)
    }

    /// Removes an agent from a team (administrators and the team's leader).
    pub fn remove_agent_from_team(
        &self,
        who: &Identity,
        agent: &AgentId,
        team: &TeamId,
    ) -> Result<bool> {
        Ok(self.store.remove_team_member(who, team, agent)?)
    }

    /// A team.
    pub fn get_team(&self, who: &Identity, id: &TeamId) -> Result<Option<TeamRecord>> {
        Ok(self.store.get_team(who, id)?)
    }

    /// Teams of a swarm (every swarm for the system principal with `None`).
    pub fn list_teams(&self, who: &Identity, swarm: Option<&SwarmId>) -> Result<Vec<TeamRecord>> {
        Ok(self.store.list_teams(who, swarm)?)
    }

    /// The seed's `grantPermission(agentId, resourceType, level, actions)`, with an
    /// optional expiry.
    pub fn grant_permission(
        &self,
        who: &Identity,
        agent: &AgentId,
        resource: ResourceType,
        level: AclLevel,
        actions: &[Action],
        expires_at: Option<Timestamp>,
    ) -> Result<()> {
        if actions.is_empty() {
            return Err(RegistryError::Invalid("a grant needs at least one action".into()));
        }
        for &action in actions {
            let g = Grant::new(resource, action, level);
            let g = match expires_at {
                Some(at) => g.expiring_at(at),
                None => g,
            };
            self.store.grant(who, agent, g)?;
        }
        Ok(())
    }

    /// Revokes an agent's grants on `resource` at `level` (all actions, or only those
    /// named). Returns how many went.
    pub fn revoke_permission(
        &self,
        who: &Identity,
        agent: &AgentId,
        resource: ResourceType,
        level: AclLevel,
        actions: Option<&[Action]>,
    ) -> Result<u64> {
        Ok(self.store.revoke(who, agent, resource, level, actions.map(<[Action]>::to_vec))?)
    }

    /// The seed's `hasPermission(agentId, resourceType, action, level)`: whether the agent
    /// is active and holds a live grant for `action` on `resource` at `level` or above.
    /// Answers from current grants (never a stale cache).
    pub fn has_permission(
        &self,
        agent: &AgentId,
        resource: ResourceType,
        action: Action,
        level: AclLevel,
    ) -> Result<bool> {
        match self.store.principal(&Identity::Agent(agent.clone())) {
            Ok(p) => Ok(p.holds(resource, action, level, self.store.now())),
            Err(StoreError::InactiveAgent(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// An agent's grants.
    pub fn grants_of(&self, who: &Identity, agent: &AgentId) -> Result<Vec<GrantRecord>> {
        Ok(self.store.grants_of(who, agent)?)
    }
}
