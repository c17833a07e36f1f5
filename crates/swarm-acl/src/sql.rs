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

/// A value bound to a predicate placeholder, borrowed from the principal the predicate
/// was built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlParam<'p> {
    /// An integer.
    Int(i64),
    /// Text.
    Text(&'p str),
}

/// The visibility rule of [`crate::decide`] as a SQL boolean expression with numbered
/// placeholders (`?N`) and the values to bind to them, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlPredicate<'p> {
    sql: Arc<str>,
    params: Params<'p>,
}

/// Parameters held inline: the owner, the swarm and two teams.
const INLINE: usize = 4;

/// A predicate's parameters, inline up to [`INLINE`] so that building a predicate for a
/// read allocates nothing (a vector per read showed in profiles of GET); more spill to
/// the heap.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Params<'p> {
    Inline(usize, [SqlParam<'p>; INLINE]),
    Heap(Vec<SqlParam<'p>>),
}

impl<'p> Params<'p> {
    fn with_capacity(n: usize) -> Self {
        if n <= INLINE {
            Params::Inline(0, [SqlParam::Int(0); INLINE])
        } else {
            Params::Heap(Vec::with_capacity(n))
        }
    }

    fn push(&mut self, p: SqlParam<'p>) {
        match self {
            Params::Inline(len, items) if *len < INLINE => {
                items[*len] = p;
                *len += 1;
            }
            Params::Inline(len, items) => {
                let mut heap = items[..*len].to_vec();
                heap.push(p);
                *self = Params::Heap(heap);
            }
            Params::Heap(v) => v.push(p),
        }
    }

    fn as_slice(&self) -> &[SqlParam<'p>] {
        match self {
            Params::Inline(len, items) => &items[..*len],
            Params::Heap(v) => v,
        }
    }
}

impl<'p> SqlPredicate<'p> {
    /// The expression, always parenthesised so it can be joined with `AND`.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The expression as a shared string. Predicates of the same shape (columns, highest
    /// level, number of teams, first placeholder, the swarm placeholder reused by
    /// [`sql_predicate_in_swarm`]) share one allocation on a thread, so a
    /// caller may use its address to memoise the statements it builds around it.
    pub fn sql_shared(&self) -> &Arc<str> {
        &self.sql
    }

    /// Values for placeholders `?first`, `?first+1`, ... in order.
    pub fn params(&self) -> &[SqlParam<'p>] {
        self.params.as_slice()
    }

    /// Whether the predicate admits no row at all (the principal holds no grant for the
    /// action). A caller may skip the query.
    pub fn is_never(&self) -> bool {
        &*self.sql == NEVER
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
pub fn sql_predicate<'p>(
    principal: &'p Principal,
    action: Action,
    resource: ResourceType,
    cols: SqlColumns<'_>,
    now: Timestamp,
    first_param: usize,
) -> SqlPredicate<'p> {
    build(principal, action, resource, cols, now, first_param, None)
}

/// [`sql_predicate`] for a query that already binds a swarm id, `bound.1`, at placeholder
/// `?bound.0` (a point read by key does). When it is the principal's own swarm the
/// predicate refers to that placeholder instead of binding the id again (one parameter
/// fewer to copy on every read); otherwise it is [`sql_predicate`].
pub fn sql_predicate_in_swarm<'p>(
    principal: &'p Principal,
    action: Action,
    resource: ResourceType,
    cols: SqlColumns<'_>,
    now: Timestamp,
    first_param: usize,
    bound: (usize, &str),
) -> SqlPredicate<'p> {
    let same = principal.as_agent().is_some_and(|a| a.swarm().as_str() == bound.1);
    build(principal, action, resource, cols, now, first_param, same.then_some(bound.0))
}

/// Both builders: `swarm_at` is the placeholder already holding the principal's swarm.
fn build<'p>(
    principal: &'p Principal,
    action: Action,
    resource: ResourceType,
    cols: SqlColumns<'_>,
    now: Timestamp,
    first_param: usize,
    swarm_at: Option<usize>,
) -> SqlPredicate<'p> {
    let agent = match principal {
        Principal::System => {
            return SqlPredicate { sql: shared_text(ALWAYS), params: Params::with_capacity(0) };
        }
        Principal::Agent(a) => a,
    };
    let Some(max) = agent.max_level(resource, action, now) else {
        return SqlPredicate { sql: shared_text(NEVER), params: Params::with_capacity(0) };
    };
    let teams = agent.teams();
    // The swarm is bound only when some clause refers to it: an unreferenced placeholder
    // would make the statement's parameter count disagree with the values.
    let swarm_needed = (max >= AclLevel::Team && !teams.is_empty()) || max >= AclLevel::Swarm;
    let swarm_bound = swarm_needed && swarm_at.is_none();
    let teams_bound = if swarm_needed && max >= AclLevel::Team { teams.len() } else { 0 };
    let mut params = Params::with_capacity(1 + usize::from(swarm_bound) + teams_bound);
    // Borrowed from the principal: copying the ids (and later sharing them) showed in
    // profiles of every read.
    params.push(SqlParam::Text(agent.id().as_str()));
    if swarm_needed {
        if swarm_at.is_none() {
            params.push(SqlParam::Text(agent.swarm().as_str()));
        }
        if max >= AclLevel::Team {
            for t in teams {
                params.push(SqlParam::Text(t.as_str()));
            }
        }
    }
    let sql = SHAPES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((_, sql)) =
            cache.iter().find(|(s, _)| s.is(cols, max, teams.len(), first_param, swarm_at))
        {
            return Arc::clone(sql);
        }
        let sql: Arc<str> =
            Arc::from(predicate_text(cols, max, teams.len(), first_param, swarm_at));
        if cache.len() < MAX_SHAPES {
            let shape = Shape {
                cols: [cols.level, cols.swarm, cols.owner, cols.team].map(str::to_owned),
                max,
                teams: teams.len(),
                first: first_param,
                swarm_at,
            };
            cache.push((shape, Arc::clone(&sql)));
        }
        sql
    });
    SqlPredicate { sql, params }
}

/// Most predicate shapes remembered per thread; beyond it texts are built each time.
const MAX_SHAPES: usize = 512;

/// What a predicate's text depends on.
struct Shape {
    cols: [String; 4],
    max: AclLevel,
    teams: usize,
    first: usize,
    swarm_at: Option<usize>,
}

impl Shape {
    fn is(
        &self,
        cols: SqlColumns<'_>,
        max: AclLevel,
        teams: usize,
        first: usize,
        swarm_at: Option<usize>,
    ) -> bool {
        self.max == max
            && self.teams == teams
            && self.first == first
            && self.swarm_at == swarm_at
            && self.cols[0] == cols.level
            && self.cols[1] == cols.swarm
            && self.cols[2] == cols.owner
            && self.cols[3] == cols.team
    }
}

thread_local! {
    static SHAPES: std::cell::RefCell<Vec<(Shape, Arc<str>)>> = const { std::cell::RefCell::new(Vec::new()) };
    static CONSTANTS: [Arc<str>; 2] = [Arc::from(ALWAYS), Arc::from(NEVER)];
}

fn shared_text(text: &'static str) -> Arc<str> {
    CONSTANTS.with(|c| if text == ALWAYS { Arc::clone(&c[0]) } else { Arc::clone(&c[1]) })
}

/// The text of the predicate for an agent whose highest live grant is `max` and who is in
/// `teams` teams, with placeholders numbered as `sql_predicate` binds them: owner, then
/// swarm (when referenced and not already at `swarm_at`), then the teams.
fn predicate_text(
    cols: SqlColumns<'_>,
    max: AclLevel,
    teams: usize,
    first: usize,
    swarm_at: Option<usize>,
) -> String {
    let owner = first;
    let swarm_needed = (max >= AclLevel::Team && teams > 0) || max >= AclLevel::Swarm;
    let swarm = swarm_at.unwrap_or(owner + 1);
    let first_team = if swarm_at.is_some() { owner + 1 } else { owner + 2 };
    let mut parts: Vec<String> = Vec::with_capacity(5);
    parts.push(format!("({} = 1 AND {} = ?{owner})", cols.level, cols.owner));
    if swarm_needed {
        if max >= AclLevel::Team && teams > 0 {
            let mut list = String::new();
            for i in 0..teams {
                if i > 0 {
                    list.push_str(", ");
                }
                let _ = write!(list, "?{}", first_team + i);
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
    format!("({})", parts.join(" OR "))
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
        let nobody = principal(vec![], &["t"]);
        let p = sql_predicate(&nobody, Action::Read, ResourceType::Memory, COLS, now, 1);
        assert!(p.is_never());
        assert!(p.params().is_empty());
    }

    #[test]
    fn placeholders_are_numbered_from_first_and_all_used() {
        let now = Timestamp::from_millis(0);
        let member = principal(Grant::defaults(), &["t1", "t2"]);
        let p = sql_predicate(&member, Action::Read, ResourceType::Memory, COLS, now, 5);
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
        let loner = principal(g, &[]);
        let p = sql_predicate(&loner, Action::Read, ResourceType::Memory, COLS, now, 1);
        assert_eq!(p.params().len(), 1, "{}", p.sql());
    }

    #[test]
    fn many_teams_spill_to_the_heap_in_order() {
        let now = Timestamp::from_millis(0);
        let names: Vec<String> = (0..7).map(|i| format!("t{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let many = principal(Grant::defaults(), &refs);
        let p = sql_predicate(&many, Action::Read, ResourceType::Memory, COLS, now, 1);
        let texts: Vec<&str> = p
            .params()
            .iter()
            .map(|v| match v {
                SqlParam::Text(s) => *s,
                SqlParam::Int(_) => "int",
            })
            .collect();
        let mut want = vec!["a", "s"];
        want.extend(&refs);
        assert_eq!(texts, want);
        for n in 1..=9 {
            assert!(p.sql().contains(&format!("?{n}")), "{} lacks ?{n}", p.sql());
        }
    }

    #[test]
    fn a_reused_swarm_leaves_room_for_three_teams_inline() {
        let now = Timestamp::from_millis(0);
        let member = principal(Grant::defaults(), &["t1", "t2", "t3"]);
        let p = sql_predicate_in_swarm(
            &member,
            Action::Read,
            ResourceType::Memory,
            COLS,
            now,
            5,
            (1, "s"),
        );
        assert!(matches!(p.params, Params::Inline(4, _)), "{:?}", p.params);
        assert!(p.sql().contains("m.swarm_id = ?1") && p.sql().contains("?8"), "{}", p.sql());
        assert!(!p.sql().contains("?9"), "{}", p.sql());
        let other = sql_predicate_in_swarm(
            &member,
            Action::Read,
            ResourceType::Memory,
            COLS,
            now,
            5,
            (1, "x"),
        );
        assert_eq!(other.params().len(), 5, "another swarm's key binds the principal's swarm");
        assert_eq!(
            other.sql(),
            sql_predicate(&member, Action::Read, ResourceType::Memory, COLS, now, 5).sql()
        );
    }

    #[test]
    fn private_only_grant_binds_only_the_owner() {
        let now = Timestamp::from_millis(0);
        let g = vec![Grant::new(ResourceType::Memory, Action::Read, AclLevel::Private)];
        let owner = principal(g, &["t"]);
        let p = sql_predicate(&owner, Action::Read, ResourceType::Memory, COLS, now, 1);
        assert_eq!(p.sql(), "((m.acl_level = 1 AND m.owner_id = ?1))");
        assert_eq!(p.params().len(), 1);
    }
}
