use swarm_acl::{AgentId, Grant, SwarmId, TeamId};

use crate::error::{RegistryError, Result};

/// Most capabilities an agent may list, and the longest one.
const MAX_CAPABILITIES: usize = 64;
const MAX_CAPABILITY_LEN: usize = 64;

/// Which grants a new agent receives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DefaultGrants {
    /// [`Grant::defaults`]: its own scopes up to public, no level 5.
    #[default]
    Standard,
    /// None at all (the agent can do nothing until granted).
    None,
    /// Exactly these.
    Custom(Vec<Grant>),
}

impl DefaultGrants {
    pub(crate) fn into_grants(self) -> Vec<Grant> {
        match self {
            DefaultGrants::Standard => Grant::defaults(),
            DefaultGrants::None => Vec::new(),
            DefaultGrants::Custom(g) => g,
        }
    }
}

/// What to register: the seed's `agentInfo`.
#[derive(Clone, Debug)]
pub struct AgentSpec {
    pub(crate) id: Option<AgentId>,
    pub(crate) name: String,
    pub(crate) agent_type: String,
    pub(crate) swarm: Option<SwarmId>,
    pub(crate) teams: Vec<TeamId>,
    pub(crate) capabilities: Vec<String>,
    pub(crate) metadata: serde_json::Value,
    pub(crate) grants: DefaultGrants,
}

impl AgentSpec {
    /// An agent named `name` of type `agent_type` (such as `backend-dev`).
    pub fn new(name: impl Into<String>, agent_type: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let agent_type = agent_type.into();
        text("name", &name, 256)?;
        text("type", &agent_type, 128)?;
        Ok(Self {
            id: None,
            name,
            agent_type,
            swarm: None,
            teams: Vec::new(),
            capabilities: Vec::new(),
            metadata: serde_json::json!({}),
            grants: DefaultGrants::Standard,
        })
    }

    /// Use this id instead of a generated one.
    pub fn id(mut self, id: &str) -> Result<Self> {
        self.id = Some(AgentId::new(id)?);
        Ok(self)
    }

    /// The agent's swarm (default: the registry's default swarm).
    pub fn swarm(mut self, swarm: &str) -> Result<Self> {
        self.swarm = Some(SwarmId::new(swarm)?);
        Ok(self)
    }

    /// Join this team at once (may be called several times).
    pub fn team(mut self, team: &str) -> Result<Self> {
        self.teams.push(TeamId::new(team)?);
        Ok(self)
    }

    /// The agent's capabilities.
    pub fn capabilities<I, S>(mut self, caps: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let caps: Vec<String> = caps.into_iter().map(Into::into).collect();
        if caps.len() > MAX_CAPABILITIES {
            return Err(RegistryError::Invalid(format!("at most {MAX_CAPABILITIES} capabilities")));
        }
        for c in &caps {
            text("capability", c, MAX_CAPABILITY_LEN)?;
        }
        self.capabilities = caps;
        Ok(self)
    }

    /// Free-form metadata; must be a JSON object.
    pub fn metadata(mut self, metadata: serde_json::Value) -> Result<Self> {
        if !metadata.is_object() {
            return Err(RegistryError::Invalid("metadata must be a JSON object".into()));
        }
        self.metadata = metadata;
        Ok(self)
    }

    /// Which grants to give (default [`DefaultGrants::Standard`]).
    pub fn grants(mut self, grants: DefaultGrants) -> Self {
        self.grants = grants;
        self
    }
}

fn text(what: &str, s: &str, max: usize) -> Result<()> {
    if s.trim().is_empty() || s.len() > max || s.chars().any(char::is_control) {
        return Err(RegistryError::Invalid(format!(
            "{what} must be 1-{max} bytes of text without control characters"
        )));
    }
    Ok(())
}
