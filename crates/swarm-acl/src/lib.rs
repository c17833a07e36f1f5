//! Five-level access control for agent swarms, as a pure library: no I/O, no database.
//!
//! Every operation in swarm-memory runs as a [`Principal`]: an authenticated agent (its
//! id, swarm, teams and grants) or the system. A record carries its [`Access`] metadata
//! (owner, team, swarm, [`AclLevel`]). One function, [`decide`], answers whether the
//! principal may perform an [`Action`] on it; [`sql_predicate`] is the same rule as a SQL
//! fragment that a store pushes into every read query, so filtering and checking cannot
//! disagree. Both are property-tested against an independent model.
//!
//! The rule: access is allowed when the record's *scope* admits the principal **and** the
//! principal holds the action on the resource type at or above the record's level.
//!
//! | level | scope admits |
//! |---|---|
//! | 1 private | the owning agent |
//! | 2 team | members of the record's team (in the record's swarm) |
//! | 3 swarm | agents of the record's swarm |
//! | 4 public | every authenticated agent, any swarm |
//! | 5 system | the system principal; agents of the swarm holding the action at level 5 |
//!
//! There is no default identity: a principal exists only once the caller has resolved one
//! (in swarm-memory, by authenticating a token or through the trusted system handle).
//!
//! ```
//! use swarm_acl::*;
//!
//! let swarm = SwarmId::new("s1")?;
//! let team = TeamId::new("backend")?;
//! let alice = AgentId::new("alice")?;
//! let now = Timestamp::from_millis(1_000);
//! let principal = Principal::agent(
//!     alice.clone(),
//!     swarm.clone(),
//!     vec![team.clone()],
//!     Grant::defaults(),
//!     1,
//! );
//!
//! // A team record of alice's team: readable. A private record of someone else: not.
//! let team_record = Access::new(AclLevel::Team, &swarm).with_team(Some(&team));
//! assert!(decide(&principal, Action::Read, ResourceType::Memory, &team_record, now).is_allowed());
//! let bob = AgentId::new("bob")?;
//! let private = Access::new(AclLevel::Private, &swarm).with_owner(Some(&bob));
//! assert!(!decide(&principal, Action::Read, ResourceType::Memory, &private, now).is_allowed());
//! # Ok::<(), swarm_acl::AclError>(())
//! ```

mod cache;
mod decide;
mod error;
mod ids;
mod level;
mod principal;
mod sql;
mod time;

pub use cache::{AclCache, CacheStats};
pub use decide::{Access, Decision, DenyReason, decide};
pub use error::AclError;
pub use ids::{AgentId, SwarmId, TeamId};
pub use level::{AclLevel, Action, ResourceType, Timestamp};
pub use principal::{AgentPrincipal, Grant, Identity, Principal};
pub use sql::{SqlColumns, SqlParam, SqlPredicate, sql_predicate, sql_predicate_in_swarm};
pub use time::{Rfc3339, UtcDateTime};
