//! The Lua tally on a real Redis agrees with the Rust `tally` step for step, floats
//! included, on random vote sequences.

use proptest::prelude::{ProptestConfig, TestCaseError, any, prop_assert, prop_assert_eq};
use swarm_acl::AgentId;
use swarm_coord::*;

use crate::support::*;

fn strategy_of(i: u8) -> Strategy {
    [Strategy::Majority, Strategy::Threshold, Strategy::Weighted, Strategy::Unanimous]
        [usize::from(i % 4)]
}

/// Applies the votes on `coord` and on a local `RoundState`, comparing after every vote.
fn check(
    coord: &dyn Coordinator,
    spec: &RoundSpec,
    votes: &[(u8, bool, f64)],
) -> Result<(), TestCaseError> {
    let mut model = RoundState::new();
    for (agent, approve, confidence) in votes {
        let ballot =
            Ballot::new(AgentId::new(format!("v{agent}")).unwrap(), *approve, *confidence).unwrap();
        let expected = model.apply(spec, &ballot, 0);
        let got = coord.vote(spec, ballot);
        match (expected, got) {
            (Applied::Duplicate, Err(CoordError::DuplicateVote { .. })) => {}
            (Applied::Closed, Ok(r)) => prop_assert!(!r.counted && !r.decided_now, "{r:?}"),
            (Applied::Counted { decided }, Ok(r)) => {
                prop_assert!(r.counted && r.decided_now == decided, "{r:?}")
            }
            (e, g) => prop_assert!(false, "model {e:?}, backend {g:?}"),
        }
        let state = coord.round_state(spec).unwrap();
        prop_assert_eq!(state.outcome, model.outcome);
        // Exact equality, floats included: both add the same doubles in the same order.
        prop_assert_eq!(state.tally, model.tally);
    }
    Ok(())
}

fn votes() -> impl proptest::strategy::Strategy<Value = Vec<(u8, bool, f64)>> {
    proptest::collection::vec((0u8..8, any::<bool>(), 0.0f64..=1.0), 0..14)
}

#[test]
fn lua_and_rust_agree_on_random_rounds() {
    let env = RedisEnv::new();
    let coord = env.coordinator("diff");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    });
    let n = std::cell::Cell::new(0u32);
    runner
        .run(&(votes(), any::<u8>(), 1u8..=20, 1u32..6), |(votes, strategy, threshold, quorum)| {
            n.set(n.get() + 1);
            let spec = RoundSpec::new(
                &format!("diff-{}", n.get()),
                &env.swarm,
                strategy_of(strategy),
                f64::from(threshold) / 20.0,
                quorum,
                MAX_DEADLINE_MS,
            )
            .unwrap();
            check(&coord, &spec, &votes)
        })
        .unwrap();
}

#[test]
fn the_bus_agrees_too() {
    let swarm = swarm_acl::SwarmId::new("diff-bus").unwrap();
    let bus = InProcessBus::new(config(&swarm, "diff-bus")).unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    });
    let n = std::cell::Cell::new(0u32);
    runner
        .run(&(votes(), any::<u8>(), 1u8..=20, 1u32..6), |(votes, strategy, threshold, quorum)| {
            n.set(n.get() + 1);
            let spec = RoundSpec::new(
                &format!("d{}", n.get()),
                &swarm,
                strategy_of(strategy),
                f64::from(threshold) / 20.0,
                quorum,
                MAX_DEADLINE_MS,
            )
            .unwrap();
            check(&bus, &spec, &votes)
        })
        .unwrap();
}
