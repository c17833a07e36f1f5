use crate::{AclLevel, Action, Principal, ResourceType, Timestamp};

/// The access metadata of one record: what a decision needs to know about it.
///
/// Fields borrow text so that a store can decide on a row it has just read without
/// allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access<'a> {
    level: AclLevel,
    swarm: &'a str,
    owner: Option<&'a str>,
    team: Option<&'a str>,
}

impl<'a> Access<'a> {
    /// A record of `level` in `swarm`, with no owner and no team.
    pub fn new<S: AsRef<str> + ?Sized>(level: AclLevel, swarm: &'a S) -> Self {
        Self { level, swarm: swarm.as_ref(), owner: None, team: None }
    }

    /// Sets the owning agent (`None` for records the system owns).
    pub fn with_owner<S: AsRef<str> + ?Sized>(mut self, owner: Option<&'a S>) -> Self {
        self.owner = owner.map(AsRef::as_ref);
        self
    }

    /// Sets the team the record belongs to.
    pub fn with_team<S: AsRef<str> + ?Sized>(mut self, team: Option<&'a S>) -> Self {
        self.team = team.map(AsRef::as_ref);
        self
    }

    /// The record's level.
    pub fn level(&self) -> AclLevel {
        self.level
    }

    /// The record's swarm.
    pub fn swarm(&self) -> &'a str {
        self.swarm
    }

    /// The record's owner.
    pub fn owner(&self) -> Option<&'a str> {
        self.owner
    }

    /// The record's team.
    pub fn team(&self) -> Option<&'a str> {
        self.team
    }
}

/// Why access was refused. Kept for the audit trail; callers that answer untrusted
/// parties must not reveal it (a record that cannot be seen behaves as absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// The record's scope does not admit the principal.
    OutOfScope,
    /// The principal holds no live grant for the action at the record's level.
    NoGrant,
}

/// The answer of [`decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Decision {
    /// Access allowed.
    Allow,
    /// Access refused, and why.
    Deny(DenyReason),
}

impl Decision {
    /// Whether access is allowed.
    pub fn is_allowed(self) -> bool {
        matches!(self, Decision::Allow)
    }
}

/// The one access decision: the record's scope admits the principal **and** the
/// principal holds `action` on `resource` at or above the record's level at `now`.
///
/// Scope by level: private admits the owner; team admits members of the record's team in
/// the record's swarm; swarm admits agents of the record's swarm; public admits every
/// agent; system admits agents of the record's swarm (the level-5 grant the permission
/// half then demands is what makes it "explicit"). The system principal is admitted
/// everywhere and holds every action.
pub fn decide(
    principal: &Principal,
    action: Action,
    resource: ResourceType,
    record: &Access<'_>,
    now: Timestamp,
) -> Decision {
    let agent = match principal {
        Principal::System => return Decision::Allow,
        Principal::Agent(a) => a,
    };
    let same_swarm = record.swarm == agent.swarm().as_str();
    let in_scope = match record.level {
        AclLevel::Private => record.owner == Some(agent.id().as_str()),
        AclLevel::Team => same_swarm && record.team.is_some_and(|t| agent.in_team(t)),
        AclLevel::Swarm | AclLevel::System => same_swarm,
        AclLevel::Public => true,
    };
    if !in_scope {
        return Decision::Deny(DenyReason::OutOfScope);
    }
    match agent.max_level(resource, action, now) {
        Some(max) if max >= record.level => Decision::Allow,
        _ => Decision::Deny(DenyReason::NoGrant),
    }
}
