use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::AclError;

/// The five ACL levels of a record, from the narrowest scope to the widest audience.
///
/// The numeric value is what is stored and what grants compare: a grant at level `n`
/// covers records of levels `1..=n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
#[repr(u8)]
pub enum AclLevel {
    /// 1: only the owning agent.
    Private = 1,
    /// 2: members of the record's team.
    Team = 2,
    /// 3: agents of the record's swarm.
    Swarm = 3,
    /// 4: every authenticated agent of the database, any swarm.
    Public = 4,
    /// 5: the system principal, and agents holding an explicit level-5 grant.
    System = 5,
}

impl AclLevel {
    /// All levels, narrowest first.
    pub const ALL: [AclLevel; 5] =
        [AclLevel::Private, AclLevel::Team, AclLevel::Swarm, AclLevel::Public, AclLevel::System];

    /// The stored number, 1-5.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            AclLevel::Private => "private",
            AclLevel::Team => "team",
            AclLevel::Swarm => "swarm",
            AclLevel::Public => "public",
            AclLevel::System => "system",
        }
    }

    /// Reads a stored number; anything outside 1-5 is an error.
    pub fn from_i64(n: i64) -> Result<Self, AclError> {
        match n {
            1 => Ok(AclLevel::Private),
            2 => Ok(AclLevel::Team),
            3 => Ok(AclLevel::Swarm),
            4 => Ok(AclLevel::Public),
            5 => Ok(AclLevel::System),
            other => Err(AclError::InvalidLevel(other.to_string())),
        }
    }
}

impl From<AclLevel> for u8 {
    fn from(l: AclLevel) -> u8 {
        l.as_u8()
    }
}

impl TryFrom<u8> for AclLevel {
    type Error = AclError;
    fn try_from(n: u8) -> Result<Self, AclError> {
        Self::from_i64(i64::from(n))
    }
}

impl fmt::Display for AclLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AclLevel {
    type Err = AclError;
    /// Accepts `1`-`5` or a level name, case-insensitively.
    fn from_str(s: &str) -> Result<Self, AclError> {
        let t = s.trim();
        if let Ok(n) = t.parse::<i64>() {
            return Self::from_i64(n).map_err(|_| AclError::InvalidLevel(s.to_owned()));
        }
        Self::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| AclError::InvalidLevel(s.to_owned()))
    }
}

macro_rules! name_enum {
    ($(#[$doc:meta])* $name:ident, $err:ident, { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The lowercase name, as stored.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// A small dense index (declaration order), for tables keyed by value.
            pub fn index(self) -> usize {
                self as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = AclError;
            fn from_str(s: &str) -> Result<Self, AclError> {
                let t = s.trim();
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().eq_ignore_ascii_case(t))
                    .ok_or_else(|| AclError::$err(s.to_owned()))
            }
        }
    };
}

name_enum!(
    /// What a principal wants to do with a record.
    Action, UnknownAction, {
        /// Read or list.
        Read => "read",
        /// Create or change.
        Write => "write",
        /// Remove.
        Delete => "delete",
        /// Cast a vote in a consensus round.
        Vote => "vote",
        /// Administrative work on the resource type (clear a namespace, resolve conflicts).
        Admin => "admin",
    }
);

name_enum!(
    /// The kind of thing a record is; grants are per resource type.
    ResourceType, UnknownResource, {
        /// Agent memory records.
        Memory => "memory",
        /// Tasks and their dependencies.
        Task => "task",
        /// Events of the event bus.
        Event => "event",
        /// Consensus rounds and votes.
        Consensus => "consensus",
        /// Generated artifacts.
        Artifact => "artifact",
        /// Metrics.
        Metrics => "metrics",
        /// The audit trail.
        Audit => "audit",
        /// System administration.
        System => "system",
    }
);

/// A point in time as Unix milliseconds. This crate never reads a clock: callers pass
/// the time in, so expiry is exact and testable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Wraps Unix milliseconds.
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Unix milliseconds.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// This time plus `ms` milliseconds, saturating.
    pub const fn plus_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_by_number_and_name() {
        assert_eq!("1".parse::<AclLevel>().unwrap(), AclLevel::Private);
        assert_eq!("Team".parse::<AclLevel>().unwrap(), AclLevel::Team);
        assert_eq!(" system ".parse::<AclLevel>().unwrap(), AclLevel::System);
        for bad in ["0", "6", "-1", "", "admin", "3.5"] {
            assert!(bad.parse::<AclLevel>().is_err(), "{bad}");
        }
        assert!(AclLevel::from_i64(0).is_err());
        assert!(AclLevel::from_i64(i64::MAX).is_err());
    }

    #[test]
    fn levels_order_by_audience() {
        assert!(AclLevel::Private < AclLevel::Team && AclLevel::Public < AclLevel::System);
        for l in AclLevel::ALL {
            assert_eq!(AclLevel::from_i64(i64::from(l.as_u8())).unwrap(), l);
        }
    }

    #[test]
    fn names_round_trip() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>().unwrap(), *a);
        }
        for r in ResourceType::ALL {
            assert_eq!(r.as_str().parse::<ResourceType>().unwrap(), *r);
        }
        assert!(matches!("fly".parse::<Action>(), Err(AclError::UnknownAction(_))));
        assert!(matches!("x".parse::<ResourceType>(), Err(AclError::UnknownResource(_))));
    }
}
