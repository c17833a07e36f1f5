//! Channel names `swarm:{swarm_id}:{kind}` and subscription filters.

use std::fmt;
use std::sync::Arc;

use swarm_acl::SwarmId;

use crate::{CoordError, Result};

/// The six channels every swarm has (as in the seed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ChannelKind {
    /// Presence and control: `agent_joined`, `agent_left`, `agent_offline`, `agent_online`.
    Coordination,
    /// Memory change notifications (key, version, op; never values).
    Memory,
    /// The durable event bus, relayed from the outbox.
    Events,
    /// Consensus rounds: `consensus_decided`.
    Consensus,
    /// Heartbeats of the swarm's participants.
    Heartbeat,
    /// Database-level notifications (ACL generation, schema changes).
    Sqlite,
}

impl ChannelKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ChannelKind; 6] = [
        Self::Coordination,
        Self::Memory,
        Self::Events,
        Self::Consensus,
        Self::Heartbeat,
        Self::Sqlite,
    ];

    /// The kind's name as it appears in the channel name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Coordination => "coordination",
            Self::Memory => "memory",
            Self::Events => "events",
            Self::Consensus => "consensus",
            Self::Heartbeat => "heartbeat",
            Self::Sqlite => "sqlite",
        }
    }

    /// The kind of this name, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A channel: `swarm:{swarm_id}:{kind}`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Channel {
    swarm: SwarmId,
    kind: ChannelKind,
    name: Arc<str>,
}

impl Channel {
    /// The channel of `kind` in `swarm`.
    pub fn new(swarm: &SwarmId, kind: ChannelKind) -> Self {
        let name = format!("swarm:{swarm}:{kind}");
        Self { swarm: swarm.clone(), kind, name: Arc::from(name) }
    }

    /// Parses a channel name. Swarm ids may contain `:`, so the kind is what follows the
    /// last `:`.
    pub fn parse(name: &str) -> Result<Self> {
        let bad = || CoordError::Invalid(format!("not a swarm channel: {:?}", truncated(name)));
        let rest = name.strip_prefix("swarm:").ok_or_else(bad)?;
        let (swarm, kind) = rest.rsplit_once(':').ok_or_else(bad)?;
        let kind = ChannelKind::from_name(kind).ok_or_else(bad)?;
        let swarm = SwarmId::new(swarm).map_err(|_| bad())?;
        // `name` is exactly what `new` would format: the prefix, the swarm, `:`, the kind.
        Ok(Self { swarm, kind, name: Arc::from(name) })
    }

    /// The swarm.
    pub fn swarm(&self) -> &SwarmId {
        &self.swarm
    }

    /// The kind.
    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// The full name, `swarm:{swarm_id}:{kind}`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Channel({})", self.name)
    }
}

/// What a subscription receives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ChannelFilter {
    /// One channel.
    Exact(Channel),
    /// The channels of one swarm whose kind matches a glob (`*` any run, `?` one character,
    /// otherwise lowercase letters), e.g. `*` for all six.
    Pattern {
        /// The swarm.
        swarm: SwarmId,
        /// The glob over kind names.
        kinds: String,
    },
}

impl ChannelFilter {
    /// A filter for one channel.
    pub fn exact(swarm: &SwarmId, kind: ChannelKind) -> Self {
        Self::Exact(Channel::new(swarm, kind))
    }

    /// A filter for the kinds of `swarm` matching `glob`.
    pub fn pattern(swarm: &SwarmId, glob: &str) -> Result<Self> {
        let filter = Self::Pattern { swarm: swarm.clone(), kinds: glob.to_owned() };
        filter.validate()?;
        Ok(filter)
    }

    /// Every channel of `swarm`.
    pub fn all(swarm: &SwarmId) -> Self {
        Self::Pattern { swarm: swarm.clone(), kinds: "*".to_owned() }
    }

    /// Checks a pattern's glob (the variant's fields are public, so it may have been built
    /// by hand).
    pub(crate) fn validate(&self) -> Result<()> {
        if let Self::Pattern { kinds, .. } = self
            && (kinds.is_empty()
                || kinds.len() > 32
                || !kinds.bytes().all(|b| b.is_ascii_lowercase() || b == b'*' || b == b'?'))
        {
            return Err(CoordError::Invalid(format!(
                "kind glob {:?} must be 1-32 characters of a-z, `*` and `?`",
                truncated(kinds)
            )));
        }
        Ok(())
    }

    /// The swarm the filter is in.
    pub fn swarm(&self) -> &SwarmId {
        match self {
            Self::Exact(c) => c.swarm(),
            Self::Pattern { swarm, .. } => swarm,
        }
    }

    /// Whether a channel passes the filter.
    pub fn matches(&self, channel: &Channel) -> bool {
        match self {
            Self::Exact(c) => c == channel,
            Self::Pattern { swarm, kinds } => {
                swarm == channel.swarm()
                    && glob_match(kinds.as_bytes(), channel.kind().as_str().as_bytes())
            }
        }
    }

    /// The topic this filter is subscribed as: the channel name, or the Redis glob
    /// `swarm:{swarm}:{glob}` (no character of a swarm id is special in a Redis glob).
    pub(crate) fn topic(&self) -> Topic {
        match self {
            Self::Exact(c) => Topic::Channel(c.name().to_owned()),
            Self::Pattern { swarm, kinds } => Topic::Pattern(format!("swarm:{swarm}:{kinds}")),
        }
    }
}

/// What a backend subscribes to: a channel or a pattern. Redis delivers a message once per
/// matching topic, so replay detection and delivery are per topic.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Topic {
    Channel(String),
    Pattern(String),
}

impl Topic {
    /// Appends a key naming the topic (a channel and a pattern of the same text differ), for
    /// the replay cache.
    pub(crate) fn write_key(&self, out: &mut String) {
        let (tag, text) = match self {
            Topic::Channel(c) => ("c ", c),
            Topic::Pattern(p) => ("p ", p),
        };
        out.push_str(tag);
        out.push_str(text);
    }
}

/// Glob match with `*` and `?` only, iterative with one backtrack point (linear enough for
/// 32-byte globs over kind names).
pub(crate) fn glob_match(glob: &[u8], text: &[u8]) -> bool {
    let (mut g, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if g < glob.len() && (glob[g] == b'?' || glob[g] == text[t]) {
            g += 1;
            t += 1;
        } else if g < glob.len() && glob[g] == b'*' {
            star = Some((g, t));
            g += 1;
        } else if let Some((sg, st)) = star {
            g = sg + 1;
            t = st + 1;
            star = Some((sg, st + 1));
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|&b| b == b'*')
}

/// At most 64 characters of untrusted text, for error messages.
pub(crate) fn truncated(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swarm(s: &str) -> SwarmId {
        SwarmId::new(s).unwrap()
    }

    #[test]
    fn names_round_trip_including_colons_in_swarm_ids() {
        for s in ["s1", "a:b", "team.x@y"] {
            for kind in ChannelKind::ALL {
                let c = Channel::new(&swarm(s), kind);
                assert_eq!(c.name(), format!("swarm:{s}:{kind}"));
                assert_eq!(Channel::parse(c.name()).unwrap(), c);
            }
        }
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in [
            "",
            "swarm:",
            "swarm:s1",
            "swarm:s1:nope",
            "swarm::memory",
            "x:s1:memory",
            "swarm:s 1:memory",
        ] {
            assert!(Channel::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn globs_match_kinds_of_one_swarm() {
        let f = ChannelFilter::pattern(&swarm("s1"), "*").unwrap();
        assert!(ChannelKind::ALL.iter().all(|&k| f.matches(&Channel::new(&swarm("s1"), k))));
        assert!(!f.matches(&Channel::new(&swarm("s1:x"), ChannelKind::Memory)));
        let f = ChannelFilter::pattern(&swarm("s1"), "coord*").unwrap();
        assert!(f.matches(&Channel::new(&swarm("s1"), ChannelKind::Coordination)));
        assert!(!f.matches(&Channel::new(&swarm("s1"), ChannelKind::Consensus)));
        let f = ChannelFilter::pattern(&swarm("s1"), "*e?ents").unwrap();
        assert!(f.matches(&Channel::new(&swarm("s1"), ChannelKind::Events)));
        assert!(glob_match(b"*a*b", b"xaxxab"));
        assert!(!glob_match(b"a*b", b"ac"));
        for bad in ["", "A", "[a]", "a:b", &"*".repeat(33)] {
            assert!(ChannelFilter::pattern(&swarm("s1"), bad).is_err(), "{bad:?}");
        }
    }
}
