use std::fmt::Write as _;
use std::sync::Arc;

use crate::{AclLevel, Action, Principal, ResourceType, Timestamp};

/// Column expressions of the table a predicate filters, such as `m.acl_level`.
#[derive(Clone, Copy, Debug)]
pub struct SqlColumns<'a> {
    /// The record's ACL level (INTEGER 1-5).
    pub level: &'a str,
    /// The record's swarm id (TEXT).
    pub swarm: &'a str,
    /// The owning agent id (TEXT, NULL for the system).
    pub owner: &'a str,
    /// The record's team id (TEXT or NULL).
    pub team: &'a str,
}

/// A value bound to a predicate placeholder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SqlParam {
    /// An integer.
    Int(i64),
    /// Text.
    Text(Arc<str>),
}

/// The visibility rule of [`crate::decide`] as a SQL boolean expression with numbered
/// placeholders (`?N`) and the values to bind to them, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlPredicate {
    sql: String,
    params: Vec<SqlParam>,
}

impl SqlPredicate {
    /// The expression, always parenthesised so it can be joined with `AND`.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Values for placeholders `?first`, `?first+1`, ... in order.
    pub fn params(&self) -> &[SqlParam] {
        &self.params
    }

    /// Whether the predicate admits no row at all (the principal holds no grant for the
    /// action). A caller may skip the query.
    pub fn is_never(&self) -> bool {
        self.sql == NEVER
    }
}

const NEVER: &str = "(0)";
const ALWAYS: &str = "(1)";

/// Builds the SQL form of [`crate::decide`] for `principal` doing `action` on `resource`
/// at `now`. Placeholders are numbered from `first_param`, so the fragment can follow a
/// query's own parameters.
///
/// The fragment admits exactly the rows [`crate::decide`] allows: levels above the
/// principal's highest live grant are left out entirely, and each remaining level is
/// joined with its scope condition. A NULL owner or team never matches.
pub fn sql_predicate(
    principal: &Principal,
    action: Action,
    resource: ResourceType,
    cols: SqlColumns<'_>,
    now: Timestamp,
    first_param: usize,
) -> SqlPredicate {
    let agent = match principal {
        Principal::System => return SqlPredicate { sql: ALWAYS.to_owned(), params: Vec::new() },
        Principal::Agent(a) => a,
    };
    let Some(max) = agent.max_level(resource, action, now) else {
        return SqlPredicate { sql: NEVER.to_owned(), params: Vec::new() };
    };
    let mut params = Vec::with_capacity(2 + agent.teams().len());
    let mut next = first_param;
    let mut bind = |params: &mut Vec<SqlParam>, p: SqlParam| {
        params.push(p);
        next += 1;
        next - 1
    };
    let mut parts: Vec<String> = Vec::with_capacity(5);

    // Private: owner only.
    let owner = bind(&mut params, SqlParam::Text(Arc::from(agent.id().as_str())));
    parts.push(format!("({} = 1 AND {} = ?{owner})", cols.level, cols.owner));

    // The swarm is bound only when some clause below refers to it: an unreferenced
    // placeholder would make the statement's parameter count disagree with the values.
    let swarm_needed =
        (max >= AclLevel::Team && !agent.teams().is_empty()) || max >= AclLevel::Swarm;
    let swarm = if swarm_needed {
        Some(bind(&mut params, SqlParam::Text(Arc::from(agent.swarm().as_str()))))
    } else {
        None
    };
    if let Some(swarm) = swarm {
        if !agent.teams().is_empty() {
            let mut list = String::new();
            for team in agent.teams() {
                let n = bind(&mut params, SqlParam::Text(Arc::from(team.as_str())));
                if !list.is_empty() {
                    list.push_str(", ");
                }
                let _ = write!(list, "?{n}");
            }
            parts.push(format!(
                "({} = 2 AND {} = ?{swarm} AND {} IN ({list}))",
                cols.level, cols.swarm, cols.team
            ));
        }
        if max >= AclLevel::Swarm {
            parts.push(format!("({} = 3 AND {} = ?{swarm})", cols.level, cols.swarm));
        }
        if max >= AclLevel::Public {
            parts.push(format!("({} = 4)", cols.level));
        }
        if max >= AclLevel::System {
            parts.push(format!("({} = 5 AND {} = ?{swarm})", cols.level, cols.swarm));
        }
    }
    SqlPredicate { sql: format!("({})", parts.join(" OR ")), params }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentId, Grant, SwarmId, TeamId};

    const COLS: SqlColumns<'static> = SqlColumns {
        level: "m.acl_level",
        swarm: "m.swarm_id",
        owner: "m.owner_id",
        team: "m.team_id",
    };

    fn principal(grants: Vec<Grant>, teams: &[&str]) -> Principal {
        Principal::agent(
            AgentId::new("a").unwrap(),
            SwarmId::new("s").unwrap(),
            teams.iter().map(|t| TeamId::new(t).unwrap()).collect(),
            grants,
            1,
        )
    }

    #[test]
    fn system_sees_everything_and_no_grant_sees_nothing() {
        let now = Timestamp::from_millis(0);
        let p = sql_predicate(&Principal::System, Action::Read, ResourceType::Memory, COLS, now, 1);
        assert_eq!(p.sql(), "(1)");
        let p = sql_predicate(
            &principal(vec![], &["t"]),
            Action::Read,
            ResourceType::Memory,
            COLS,
            now,
            1,
        );
        assert!(p.is_never());
        assert!(p.params().is_empty());
    }

    #[test]
    fn placeholders_are_numbered_from_first_and_all_used() {
        let now = Timestamp::from_millis(0);
        let p = sql_predicate(
            &principal(Grant::defaults(), &["t1", "t2"]),
            Action::Read,
            ResourceType::Memory,
            COLS,
            now,
            5,
        );
        assert_eq!(p.params().len(), 4);
        for n in 5..9 {
            assert!(p.sql().contains(&format!("?{n}")), "{} lacks ?{n}", p.sql());
        }
        assert!(!p.sql().contains("?9"));
        assert!(!p.sql().contains("= 5"), "defaults stop at public: {}", p.sql());
    }

    #[test]
    fn team_grant_without_teams_binds_no_swarm() {
        let now = Timestamp::from_millis(0);
        let g = vec![Grant::new(ResourceType::Memory, Action::Read, AclLevel::Team)];
        let p = sql_predicate(&principal(g, &[]), Action::Read, ResourceType::Memory, COLS, now, 1);
        assert_eq!(p.params().len(), 1, "{}", p.sql());
    }

    #[test]
    fn private_only_grant_binds_only_the_owner() {
        let now = Timestamp::from_millis(0);
        let g = vec![Grant::new(ResourceType::Memory, Action::Read, AclLevel::Private)];
        let p =
            sql_predicate(&principal(g, &["t"]), Action::Read, ResourceType::Memory, COLS, now, 1);
        assert_eq!(p.sql(), "((m.acl_level = 1 AND m.owner_id = ?1))");
        assert_eq!(p.params().len(), 1);
    }
}
