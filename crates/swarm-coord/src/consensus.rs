//! Consensus rounds: the one tally rule, shared by the in-process bus, the Redis Lua script
//! and (by agreement, checked by a differential test) the SQLite implementation.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use swarm_acl::{AgentId, SwarmId};

use crate::channel::truncated;
use crate::envelope::valid_id;
use crate::{CoordError, Result};

/// The latest deadline a round may have: 2^53 ms (year 287396), the largest integer every
/// implementation (Lua numbers, JavaScript) holds exactly.
pub const MAX_DEADLINE_MS: u64 = 1 << 53;

/// How a round's votes are turned into an outcome (see [`tally`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// More than half of the votes cast are for.
    Majority,
    /// At least `threshold` of the votes cast are for.
    Threshold,
    /// At least `threshold` of the confidence cast is for.
    Weighted,
    /// No vote against.
    Unanimous,
}

impl Strategy {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Majority => "majority",
            Self::Threshold => "threshold",
            Self::Weighted => "weighted",
            Self::Unanimous => "unanimous",
        }
    }

    /// The strategy of a lowercase name.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Majority, Self::Threshold, Self::Weighted, Self::Unanimous]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a round stands. Once not `Open` it never changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Still collecting votes.
    Open,
    /// Decided for.
    Achieved,
    /// Decided against.
    Failed,
    /// The deadline passed while the round was open.
    Expired,
}

impl Outcome {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Achieved => "achieved",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }

    /// The outcome of a lowercase name.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Open, Self::Achieved, Self::Failed, Self::Expired]
            .into_iter()
            .find(|s| s.as_str() == name)
    }

    /// Whether the round is decided (anything but `Open`).
    pub fn is_closed(self) -> bool {
        self != Self::Open
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parameters of a round. Every node voting in a round must give the same ones; the
/// first vote records them and a vote with different ones is refused
/// ([`CoordError::RoundMismatch`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RoundSpec {
    id: String,
    swarm: SwarmId,
    strategy: Strategy,
    threshold: f64,
    quorum: u32,
    deadline_ms: u64,
}

impl RoundSpec {
    /// A round. `threshold` must be in (0, 1] (it is used by `Threshold` and `Weighted`),
    /// `quorum` at least 1, `deadline_ms` is absolute Unix milliseconds (at most
    /// [`MAX_DEADLINE_MS`]).
    pub fn new(
        id: &str,
        swarm: &SwarmId,
        strategy: Strategy,
        threshold: f64,
        quorum: u32,
        deadline_ms: u64,
    ) -> Result<Self> {
        if !valid_id(id) {
            return Err(CoordError::Invalid(format!(
                "round id {:?} is not a valid id",
                truncated(id)
            )));
        }
        if !(threshold.is_finite() && threshold > 0.0 && threshold <= 1.0) {
            return Err(CoordError::Invalid(format!("threshold {threshold} is not in (0, 1]")));
        }
        if quorum == 0 {
            return Err(CoordError::Invalid("quorum must be at least 1".into()));
        }
        if deadline_ms > MAX_DEADLINE_MS {
            return Err(CoordError::Invalid(format!("deadline {deadline_ms} is above 2^53 ms")));
        }
        Ok(Self {
            id: id.to_owned(),
            swarm: swarm.clone(),
            strategy,
            threshold,
            quorum,
            deadline_ms,
        })
    }

    /// The round id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The swarm.
    pub fn swarm(&self) -> &SwarmId {
        &self.swarm
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The threshold, in (0, 1].
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Votes needed before the round is decided (except a unanimous round's first against).
    pub fn quorum(&self) -> u32 {
        self.quorum
    }

    /// The deadline, Unix milliseconds.
    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms
    }
}

/// One agent's vote.
#[derive(Clone, Debug, PartialEq)]
pub struct Ballot {
    agent: AgentId,
    approve: bool,
    confidence: f64,
}

impl Ballot {
    /// A vote for (`approve`) or against, with a confidence in [0, 1].
    pub fn new(agent: AgentId, approve: bool, confidence: f64) -> Result<Self> {
        if !(confidence.is_finite() && (0.0..=1.0).contains(&confidence)) {
            return Err(CoordError::Invalid(format!("confidence {confidence} is not in [0, 1]")));
        }
        Ok(Self { agent, approve, confidence })
    }

    /// The voter.
    pub fn agent(&self) -> &AgentId {
        &self.agent
    }

    /// For (`true`) or against.
    pub fn approve(&self) -> bool {
        self.approve
    }

    /// The voter's confidence, in [0, 1].
    pub fn confidence(&self) -> f64 {
        self.confidence
    }
}

/// The counts of a round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    /// Votes for.
    pub votes_for: u32,
    /// Votes against.
    pub votes_against: u32,
    /// Sum of the confidence of the votes for, added in the order the votes were counted.
    pub weight_for: f64,
    /// Sum of the confidence of the votes against, in counting order.
    pub weight_against: f64,
}

impl Tally {
    /// Votes cast: for + against.
    pub fn cast(&self) -> u32 {
        self.votes_for.saturating_add(self.votes_against)
    }

    fn add(&mut self, ballot: &Ballot) {
        if ballot.approve {
            self.votes_for += 1;
            self.weight_for += ballot.confidence;
        } else {
            self.votes_against += 1;
            self.weight_against += ballot.confidence;
        }
    }
}

/// The decision rule on counts alone (no deadline): see [`tally`].
pub fn decide(spec: &RoundSpec, t: &Tally) -> Outcome {
    let cast = t.cast();
    if cast < spec.quorum {
        return if spec.strategy == Strategy::Unanimous && t.votes_against > 0 {
            Outcome::Failed
        } else {
            Outcome::Open
        };
    }
    let achieved = match spec.strategy {
        Strategy::Majority => 2 * u64::from(t.votes_for) > u64::from(cast),
        Strategy::Threshold => f64::from(t.votes_for) >= spec.threshold * f64::from(cast),
        Strategy::Weighted => {
            let total = t.weight_for + t.weight_against;
            total > 0.0 && t.weight_for >= spec.threshold * total
        }
        Strategy::Unanimous => t.votes_against == 0,
    };
    if achieved { Outcome::Achieved } else { Outcome::Failed }
}

/// A round as votes are applied to it, one at a time ([`RoundState::apply`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RoundState {
    /// Where the round stands.
    pub outcome: Outcome,
    /// The counted votes.
    pub tally: Tally,
    voters: BTreeSet<AgentId>,
}

/// What applying one vote did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Counted; `decided` when this vote closed the round.
    Counted {
        /// This vote decided the round.
        decided: bool,
    },
    /// The agent had voted already; its first vote stands and this one is refused.
    Duplicate,
    /// The round was already closed; not counted.
    Closed,
    /// Cast at or after the deadline of an open round: the round is now `Expired` and the
    /// vote is not counted.
    Expired,
}

impl Default for RoundState {
    fn default() -> Self {
        Self::new()
    }
}

impl RoundState {
    /// An open round with no votes.
    pub fn new() -> Self {
        Self { outcome: Outcome::Open, tally: Tally::default(), voters: BTreeSet::new() }
    }

    /// Applies one vote cast at `at_ms`, in this order: a second vote by the same agent is
    /// refused; a closed round counts nothing; an open round at or past its deadline becomes
    /// `Expired`; otherwise the vote is counted and [`decide`] says where the round stands.
    pub fn apply(&mut self, spec: &RoundSpec, ballot: &Ballot, at_ms: u64) -> Applied {
        if self.voters.contains(&ballot.agent) {
            return Applied::Duplicate;
        }
        if self.outcome.is_closed() {
            return Applied::Closed;
        }
        if at_ms >= spec.deadline_ms {
            self.outcome = Outcome::Expired;
            return Applied::Expired;
        }
        self.voters.insert(ballot.agent.clone());
        self.tally.add(ballot);
        self.outcome = decide(spec, &self.tally);
        Applied::Counted { decided: self.outcome.is_closed() }
    }

    /// Marks an open round past its deadline `Expired`; true when this call did it.
    pub fn expire(&mut self, spec: &RoundSpec, now_ms: u64) -> bool {
        if self.outcome == Outcome::Open && now_ms >= spec.deadline_ms {
            self.outcome = Outcome::Expired;
            return true;
        }
        false
    }

    /// Whether the agent's vote was counted.
    pub fn has_voted(&self, agent: &AgentId) -> bool {
        self.voters.contains(agent)
    }
}

/// The tally rule, applied to votes in the order they were cast; the round as it stands at
/// `now_ms`.
///
/// With `cast = for + against` counted votes and `w_for`, `w_against` the sums of the
/// voters' confidence (0-1):
///
/// * before `cast >= quorum` the round is `Open`, except that a `Unanimous` round is
///   `Failed` at its first vote against;
/// * when `cast >= quorum` it is decided: `Majority` is `Achieved` iff `2 * for > cast`;
///   `Threshold` iff `for >= threshold * cast`; `Weighted` iff
///   `w_for + w_against > 0 && w_for >= threshold * (w_for + w_against)`; `Unanimous` iff
///   `against == 0`; otherwise `Failed`;
/// * one vote per agent: a second vote by the same agent is refused and the first stands;
/// * a vote at or after the deadline on an open round finds it `Expired` and is not counted;
///   an open round is also `Expired` once `now_ms >= deadline_ms`;
/// * once not `Open`, the outcome never changes and later votes are not counted.
///
/// Sums of confidence are IEEE-754 double additions in counting order, so every
/// implementation that adds in the same order gets bit-identical weights.
///
/// ```
/// use swarm_acl::{AgentId, SwarmId};
/// use swarm_coord::{Ballot, Outcome, RoundSpec, Strategy, tally};
///
/// let spec = RoundSpec::new("r1", &SwarmId::new("s1")?, Strategy::Majority, 0.5, 3, 10_000)?;
/// let vote = |a: &str, yes| Ballot::new(AgentId::new(a).unwrap(), yes, 0.9).unwrap();
/// let votes = [(vote("a", true), 1), (vote("b", false), 2), (vote("c", true), 3)];
/// let state = tally(&spec, &votes, 4);
/// assert_eq!(state.outcome, Outcome::Achieved);
/// assert_eq!((state.tally.votes_for, state.tally.votes_against), (2, 1));
/// # Ok::<(), swarm_coord::CoordError>(())
/// ```
pub fn tally(spec: &RoundSpec, votes: &[(Ballot, u64)], now_ms: u64) -> RoundState {
    let mut state = RoundState::new();
    for (ballot, at) in votes {
        state.apply(spec, ballot, *at);
    }
    state.expire(spec, now_ms);
    state
}

/// The result of a vote.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VoteResult {
    /// Where the round stands after the vote.
    pub outcome: Outcome,
    /// The counted votes after the vote.
    pub tally: Tally,
    /// Whether this vote was counted (false when the round was closed or expired).
    pub counted: bool,
    /// Whether this call closed the round (it then published `consensus_decided`).
    pub decided_now: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(strategy: Strategy, threshold: f64, quorum: u32) -> RoundSpec {
        RoundSpec::new("r", &SwarmId::new("s").unwrap(), strategy, threshold, quorum, 1_000)
            .unwrap()
    }

    fn b(agent: &str, approve: bool, confidence: f64) -> Ballot {
        Ballot::new(AgentId::new(agent).unwrap(), approve, confidence).unwrap()
    }

    fn run(spec: &RoundSpec, votes: &[(&str, bool, f64)]) -> RoundState {
        let votes: Vec<(Ballot, u64)> =
            votes.iter().enumerate().map(|(i, (a, y, c))| (b(a, *y, *c), i as u64)).collect();
        tally(spec, &votes, 0)
    }

    #[test]
    fn majority_needs_more_than_half_at_quorum() {
        let s = spec(Strategy::Majority, 0.5, 4);
        assert_eq!(
            run(&s, &[("a", true, 1.0), ("b", true, 1.0), ("c", true, 1.0)]).outcome,
            Outcome::Open
        );
        let tie =
            run(&s, &[("a", true, 1.0), ("b", true, 1.0), ("c", false, 1.0), ("d", false, 1.0)]);
        assert_eq!(tie.outcome, Outcome::Failed, "2 of 4 is not a majority");
        let win =
            run(&s, &[("a", true, 1.0), ("b", true, 1.0), ("c", true, 1.0), ("d", false, 1.0)]);
        assert_eq!(win.outcome, Outcome::Achieved);
    }

    #[test]
    fn threshold_counts_votes_and_weighted_counts_confidence() {
        let s = spec(Strategy::Threshold, 0.75, 4);
        let votes = [("a", true, 0.1), ("b", true, 0.1), ("c", true, 0.1), ("d", false, 1.0)];
        assert_eq!(run(&s, &votes).outcome, Outcome::Achieved, "3/4 >= 0.75");
        let w = spec(Strategy::Weighted, 0.75, 4);
        let st = run(&w, &votes);
        assert_eq!(st.outcome, Outcome::Failed, "0.3 of 1.3 confidence");
        assert!((st.tally.weight_for - 0.3).abs() < 1e-12);
        let zero =
            run(&w, &[("a", true, 0.0), ("b", true, 0.0), ("c", true, 0.0), ("d", true, 0.0)]);
        assert_eq!(zero.outcome, Outcome::Failed, "no confidence at all never achieves");
        let exact = run(&spec(Strategy::Weighted, 0.5, 2), &[("a", true, 0.5), ("b", false, 0.5)]);
        assert_eq!(exact.outcome, Outcome::Achieved, ">= is inclusive");
    }

    #[test]
    fn unanimous_fails_at_the_first_against_even_before_quorum() {
        let s = spec(Strategy::Unanimous, 1.0, 5);
        let st = run(&s, &[("a", true, 1.0), ("b", false, 1.0), ("c", true, 1.0)]);
        assert_eq!(st.outcome, Outcome::Failed);
        assert_eq!(st.tally.cast(), 2, "votes after the decision are not counted");
        let all = run(&spec(Strategy::Unanimous, 1.0, 2), &[("a", true, 1.0), ("b", true, 0.0)]);
        assert_eq!(all.outcome, Outcome::Achieved);
    }

    #[test]
    fn one_vote_per_agent_and_the_first_stands() {
        let s = spec(Strategy::Majority, 0.5, 2);
        let mut st = RoundState::new();
        assert_eq!(st.apply(&s, &b("a", true, 1.0), 0), Applied::Counted { decided: false });
        assert_eq!(st.apply(&s, &b("a", false, 1.0), 1), Applied::Duplicate);
        assert_eq!(st.tally.votes_for, 1);
        assert_eq!(st.tally.votes_against, 0);
        assert_eq!(st.apply(&s, &b("b", true, 1.0), 2), Applied::Counted { decided: true });
        assert_eq!(st.outcome, Outcome::Achieved);
        assert_eq!(st.apply(&s, &b("c", false, 1.0), 3), Applied::Closed);
        assert_eq!(st.apply(&s, &b("b", false, 1.0), 3), Applied::Duplicate);
        assert_eq!(st.outcome, Outcome::Achieved);
    }

    #[test]
    fn the_deadline_expires_open_rounds_only() {
        let s = spec(Strategy::Majority, 0.5, 2);
        let mut st = RoundState::new();
        st.apply(&s, &b("a", true, 1.0), 10);
        assert_eq!(
            st.apply(&s, &b("b", true, 1.0), 1_000),
            Applied::Expired,
            "at the deadline is late"
        );
        assert_eq!(st.outcome, Outcome::Expired);
        assert_eq!(st.tally.cast(), 1);
        assert!(!st.expire(&s, 5_000), "already closed");
        let st = tally(&s, &[(b("a", true, 1.0), 1)], 999);
        assert_eq!(st.outcome, Outcome::Open);
        let st = tally(&s, &[(b("a", true, 1.0), 1)], 1_000);
        assert_eq!(st.outcome, Outcome::Expired);
        let decided = tally(&s, &[(b("a", true, 1.0), 1), (b("b", true, 1.0), 2)], 9_999);
        assert_eq!(decided.outcome, Outcome::Achieved, "a decided round never expires");
    }

    #[test]
    fn specs_and_ballots_are_validated() {
        let s = SwarmId::new("s").unwrap();
        for t in [0.0, -0.1, 1.01, f64::NAN, f64::INFINITY] {
            assert!(RoundSpec::new("r", &s, Strategy::Threshold, t, 1, 0).is_err(), "{t}");
        }
        assert!(RoundSpec::new("r", &s, Strategy::Majority, 0.5, 0, 0).is_err());
        assert!(RoundSpec::new("bad id", &s, Strategy::Majority, 0.5, 1, 0).is_err());
        for c in [-0.01, 1.5, f64::NAN] {
            assert!(Ballot::new(AgentId::new("a").unwrap(), true, c).is_err(), "{c}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_outcome_never_flips(
            votes in proptest::collection::vec((0u8..8, proptest::bool::ANY, 0u8..=10, 0u64..1_200), 0..30),
            strategy in 0usize..4,
            quorum in 1u32..6,
            threshold in 1u8..=10,
        ) {
            let strategy = [Strategy::Majority, Strategy::Threshold, Strategy::Weighted, Strategy::Unanimous][strategy];
            let s = spec(strategy, f64::from(threshold) / 10.0, quorum);
            let mut st = RoundState::new();
            let mut first_closed: Option<Outcome> = None;
            for (agent, approve, c, at) in votes {
                let applied = st.apply(&s, &b(&format!("a{agent}"), approve, f64::from(c) / 10.0), at);
                if let Some(o) = first_closed {
                    proptest::prop_assert_eq!(st.outcome, o);
                    proptest::prop_assert!(matches!(applied, Applied::Closed | Applied::Duplicate));
                } else if st.outcome.is_closed() {
                    first_closed = Some(st.outcome);
                }
                proptest::prop_assert_eq!(st.tally.cast() as usize, st.voters.len());
            }
        }
    }
}
