//! The SQL form of the ACL rule admits exactly the rows `decide` allows: random
//! principals against a table of random records, evaluated by SQLite itself.

use proptest::prelude::*;
use rusqlite::{Connection, params};
use swarm_acl::*;

const AGENTS: [&str; 3] = ["ann", "ben", "cat"];
const SWARMS: [&str; 2] = ["s1", "s2"];
const TEAMS: [&str; 3] = ["t1", "t2", "t3"];
const NOW: i64 = 50_000;

fn table() -> Connection {
    let c = Connection::open_in_memory().unwrap();
    c.execute_batch("CREATE TABLE r (id INTEGER PRIMARY KEY, acl_level INTEGER, swarm_id TEXT, owner_id TEXT, team_id TEXT)")
        .unwrap();
    let mut id = 0;
    for level in 1..=5 {
        for swarm in SWARMS {
            for owner in [None, Some("ann"), Some("ben"), Some("cat")] {
                for team in [None, Some("t1"), Some("t2"), Some("t3")] {
                    id += 1;
                    c.execute(
                        "INSERT INTO r VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![id, level, swarm, owner, team],
                    )
                    .unwrap();
                }
            }
        }
    }
    c
}

fn grant() -> impl Strategy<Value = Grant> {
    (0..ResourceType::ALL.len(), 0..Action::ALL.len(), 1i64..=5, prop::option::of(-3i64..3))
        .prop_map(|(r, a, l, exp)| {
            let g =
                Grant::new(ResourceType::ALL[r], Action::ALL[a], AclLevel::from_i64(l).unwrap());
            match exp {
                Some(d) => g.expiring_at(Timestamp::from_millis(NOW + d)),
                None => g,
            }
        })
}

fn principal() -> impl Strategy<Value = Principal> {
    (
        prop::bool::weighted(0.05),
        0..AGENTS.len(),
        0..SWARMS.len(),
        prop::collection::vec(0..TEAMS.len(), 0..4),
        prop::collection::vec(grant(), 0..10),
    )
        .prop_map(|(system, a, s, teams, grants)| {
            if system {
                return Principal::System;
            }
            Principal::agent(
                AgentId::new(AGENTS[a]).unwrap(),
                SwarmId::new(SWARMS[s]).unwrap(),
                teams.into_iter().map(|t| TeamId::new(TEAMS[t]).unwrap()).collect(),
                grants,
                1,
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn sql_predicate_admits_exactly_what_decide_allows(
        p in principal(),
        resource in 0..ResourceType::ALL.len(),
        action in 0..Action::ALL.len(),
        first in 1usize..4,
        bound in prop::option::of(0..SWARMS.len()),
    ) {
        thread_local!(static TABLE: Connection = table());
        let (resource, action) = (ResourceType::ALL[resource], Action::ALL[action]);
        let cols = SqlColumns { level: "acl_level", swarm: "swarm_id", owner: "owner_id", team: "team_id" };
        let now = Timestamp::from_millis(NOW);
        // With `bound` (and room before `first`), the query binds a swarm id at ?1 and the
        // predicate may refer to it instead of binding the principal's swarm again.
        let bound = bound.filter(|_| first > 1).map(|s| SWARMS[s]);
        let plain = sql_predicate(&p, action, resource, cols, now, first);
        let pred = match bound {
            Some(swarm) => sql_predicate_in_swarm(&p, action, resource, cols, now, first, (1, swarm)),
            None => plain.clone(),
        };
        if let (Some(swarm), Principal::Agent(a)) = (bound, &p) {
            let reused = a.swarm().as_str() == swarm
                && plain.params().contains(&SqlParam::Text(swarm));
            let fewer = plain.params().len() - pred.params().len();
            assert_eq!(fewer, usize::from(reused), "{} vs {}", plain.sql(), pred.sql());
        }
        TABLE.with(|c| {
            // Placeholders before `first` are taken by the query's own parameters.
            let mut sql = String::from("SELECT id, acl_level, swarm_id, owner_id, team_id, (");
            sql.push_str(pred.sql());
            sql.push_str(") FROM r WHERE ");
            sql.push_str(&(1..first).map(|i| format!("?{i} = ?{i}")).chain(std::iter::once("1".to_owned())).collect::<Vec<_>>().join(" AND "));
            let mut binds: Vec<rusqlite::types::Value> = (1..first).map(|_| rusqlite::types::Value::Integer(0)).collect();
            if let Some(swarm) = bound {
                binds[0] = rusqlite::types::Value::Text(swarm.to_owned());
            }
            for v in pred.params() {
                binds.push(match v {
                    SqlParam::Text(s) => rusqlite::types::Value::Text(s.to_string()),
                    SqlParam::Int(n) => rusqlite::types::Value::Integer(*n),
                });
            }
            let mut stmt = c.prepare(&sql).unwrap();
            let rows = stmt.query_map(rusqlite::params_from_iter(binds), |r| {
                Ok((
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<bool>>(5)?.unwrap_or(false),
                ))
            }).unwrap();
            for row in rows {
                let (level, swarm, owner, team, admitted) = row.unwrap();
                let access = Access::new(AclLevel::from_i64(level).unwrap(), &swarm)
                    .with_owner(owner.as_deref())
                    .with_team(team.as_deref());
                let allowed = decide(&p, action, resource, &access, now).is_allowed();
                assert_eq!(admitted, allowed, "{access:?} for {p:?}: sql {admitted}, decide {allowed}\n{}", pred.sql());
            }
        });
    }
}
