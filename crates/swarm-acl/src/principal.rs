use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{AclLevel, Action, AgentId, ResourceType, SwarmId, TeamId, Timestamp};

/// Permission to perform `action` on records of `resource` up to and including `level`,
/// until `expires_at` (exclusive) if set.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    resource: ResourceType,
    action: Action,
    level: AclLevel,
    expires_at: Option<Timestamp>,
}

impl Grant {
    /// A grant without expiry.
    pub fn new(resource: ResourceType, action: Action, level: AclLevel) -> Self {
        Self { resource, action, level, expires_at: None }
    }

    /// The same grant, expiring at `at` (it no longer counts from that instant on).
    pub fn expiring_at(mut self, at: Timestamp) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// The resource type covered.
    pub fn resource(&self) -> ResourceType {
        self.resource
    }

    /// The action allowed.
    pub fn action(&self) -> Action {
        self.action
    }

    /// The highest level covered.
    pub fn level(&self) -> AclLevel {
        self.level
    }

    /// When the grant stops counting, if ever.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.expires_at
    }

    /// Whether the grant still counts at `now`. Expired grants stop working at once,
    /// whether or not anything has swept them away.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }

    /// The grants a newly registered agent receives, so it can use its own scopes
    /// (private, team, swarm, public) without further set-up. Level 5, metrics, audit and
    /// system work need explicit grants.
    ///
    /// | resource | actions | up to |
    /// |---|---|---|
    /// | memory | read, write, delete | public |
    /// | task | read, write | public |
    /// | event | read, write | public |
    /// | artifact | read, write | public |
    /// | consensus | read, write, vote | swarm |
    pub fn defaults() -> Vec<Grant> {
        use Action::*;
        use ResourceType::*;
        let mut out = Vec::new();
        let mut add = |resource, actions: &[Action], level| {
            out.extend(actions.iter().map(|&a| Grant::new(resource, a, level)));
        };
        add(Memory, &[Read, Write, Delete], AclLevel::Public);
        add(Task, &[Read, Write], AclLevel::Public);
        add(Event, &[Read, Write], AclLevel::Public);
        add(Artifact, &[Read, Write], AclLevel::Public);
        add(Consensus, &[Read, Write, Vote], AclLevel::Swarm);
        out
    }
}

/// Who an operation claims to run as, before the claim is resolved into a [`Principal`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// The system principal: the operator of the database.
    System,
    /// An agent.
    Agent(AgentId),
}

impl Identity {
    /// The name written in audit rows: the agent id, or `system`.
    pub fn audit_name(&self) -> &str {
        match self {
            Identity::System => AgentId::SYSTEM_NAME,
            Identity::Agent(id) => id.as_str(),
        }
    }
}

/// A resolved principal: what every access decision is made for. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// The system principal: every scope admits it and it holds every action.
    System,
    /// An active, authenticated agent.
    Agent(Arc<AgentPrincipal>),
}

impl Principal {
    /// Builds an agent principal. `generation` is the ACL generation its grants and teams
    /// were read at; a store compares it with the current one to detect staleness.
    pub fn agent(
        id: AgentId,
        swarm: SwarmId,
        teams: Vec<TeamId>,
        grants: Vec<Grant>,
        generation: u64,
    ) -> Self {
        Principal::Agent(Arc::new(AgentPrincipal::new(id, swarm, teams, grants, generation)))
    }

    /// The identity this principal resolves.
    pub fn identity(&self) -> Identity {
        match self {
            Principal::System => Identity::System,
            Principal::Agent(a) => Identity::Agent(a.id.clone()),
        }
    }

    /// The agent behind the principal, if it is one.
    pub fn as_agent(&self) -> Option<&AgentPrincipal> {
        match self {
            Principal::System => None,
            Principal::Agent(a) => Some(a),
        }
    }

    /// Whether this is the system principal.
    pub fn is_system(&self) -> bool {
        matches!(self, Principal::System)
    }

    /// The name written in audit rows.
    pub fn audit_name(&self) -> &str {
        match self {
            Principal::System => AgentId::SYSTEM_NAME,
            Principal::Agent(a) => a.id.as_str(),
        }
    }

    /// The highest level at which the principal may perform `action` on `resource` at
    /// `now`, or `None` if it may not at all.
    pub fn max_level(
        &self,
        resource: ResourceType,
        action: Action,
        now: Timestamp,
    ) -> Option<AclLevel> {
        match self {
            Principal::System => Some(AclLevel::System),
            Principal::Agent(a) => a.max_level(resource, action, now),
        }
    }

    /// `has_permission` of the seed: whether the principal holds `action` on `resource`
    /// at `level` (or above) at `now`. This is the permission half of [`crate::decide`]
    /// only; the scope half needs a record.
    pub fn holds(
        &self,
        resource: ResourceType,
        action: Action,
        level: AclLevel,
        now: Timestamp,
    ) -> bool {
        self.max_level(resource, action, now).is_some_and(|max| max >= level)
    }
}

/// The resolved state of an agent that an access decision needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentPrincipal {
    id: AgentId,
    swarm: SwarmId,
    teams: Vec<TeamId>,
    grants: Vec<Grant>,
    generation: u64,
}

impl AgentPrincipal {
    /// Builds the state; teams are sorted and deduplicated.
    pub fn new(
        id: AgentId,
        swarm: SwarmId,
        mut teams: Vec<TeamId>,
        grants: Vec<Grant>,
        generation: u64,
    ) -> Self {
        teams.sort();
        teams.dedup();
        Self { id, swarm, teams, grants, generation }
    }

    /// The agent's id.
    pub fn id(&self) -> &AgentId {
        &self.id
    }

    /// The agent's swarm.
    pub fn swarm(&self) -> &SwarmId {
        &self.swarm
    }

    /// The teams the agent belongs to, sorted.
    pub fn teams(&self) -> &[TeamId] {
        &self.teams
    }

    /// The agent's grants, live or expired.
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// The ACL generation this state was read at.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the agent belongs to the team named `team`.
    pub fn in_team(&self, team: &str) -> bool {
        self.teams.binary_search_by(|t| t.as_str().cmp(team)).is_ok()
    }

    /// The highest level of a live grant for `action` on `resource`.
    pub fn max_level(
        &self,
        resource: ResourceType,
        action: Action,
        now: Timestamp,
    ) -> Option<AclLevel> {
        self.grants
            .iter()
            .filter(|g| g.resource == resource && g.action == action && g.is_live(now))
            .map(|g| g.level)
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice(grants: Vec<Grant>) -> Principal {
        Principal::agent(
            AgentId::new("alice").unwrap(),
            SwarmId::new("s").unwrap(),
            vec![
                TeamId::new("t2").unwrap(),
                TeamId::new("t1").unwrap(),
                TeamId::new("t2").unwrap(),
            ],
            grants,
            7,
        )
    }

    #[test]
    fn expired_grants_stop_counting_at_their_instant() {
        let g = Grant::new(ResourceType::Memory, Action::Read, AclLevel::Swarm)
            .expiring_at(Timestamp::from_millis(100));
        let p = alice(vec![g]);
        let at = Timestamp::from_millis;
        assert!(p.holds(ResourceType::Memory, Action::Read, AclLevel::Team, at(99)));
        assert!(!p.holds(ResourceType::Memory, Action::Read, AclLevel::Team, at(100)));
    }

    #[test]
    fn highest_live_grant_wins_and_resource_types_do_not_mix() {
        let p = alice(vec![
            Grant::new(ResourceType::Memory, Action::Read, AclLevel::Team),
            Grant::new(ResourceType::Memory, Action::Read, AclLevel::Public),
            Grant::new(ResourceType::Task, Action::Write, AclLevel::System),
        ]);
        let now = Timestamp::from_millis(0);
        assert_eq!(p.max_level(ResourceType::Memory, Action::Read, now), Some(AclLevel::Public));
        assert_eq!(p.max_level(ResourceType::Memory, Action::Write, now), None);
        assert!(!p.holds(ResourceType::Memory, Action::Read, AclLevel::System, now));
    }

    #[test]
    fn teams_are_sorted_and_deduplicated() {
        let p = alice(vec![]);
        let a = p.as_agent().unwrap();
        assert_eq!(a.teams().len(), 2);
        assert!(a.in_team("t1") && a.in_team("t2") && !a.in_team("t3"));
    }

    #[test]
    fn defaults_stop_below_system_level() {
        let p = alice(Grant::defaults());
        let now = Timestamp::from_millis(0);
        assert!(p.holds(ResourceType::Memory, Action::Read, AclLevel::Public, now));
        assert!(!p.holds(ResourceType::Memory, Action::Read, AclLevel::System, now));
        assert!(!p.holds(ResourceType::Audit, Action::Read, AclLevel::Private, now));
        assert!(Principal::System.holds(ResourceType::Audit, Action::Admin, AclLevel::System, now));
    }
}
