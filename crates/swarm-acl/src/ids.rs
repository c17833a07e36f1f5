use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::AclError;

/// Longest id accepted, in bytes.
const MAX_ID_LEN: usize = 128;

fn validate(kind: &'static str, value: &str) -> Result<(), AclError> {
    let fail =
        |reason| AclError::InvalidId { kind, value: value.chars().take(64).collect(), reason };
    if value.is_empty() {
        return Err(fail("must not be empty"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(fail("must be at most 128 bytes"));
    }
    if !value.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(fail("must start with a letter or digit"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'))
    {
        return Err(fail("may contain only letters, digits and . _ : @ -"));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        ///
        /// Valid ids are 1-128 bytes of ASCII letters, digits and `. _ : @ -`, starting
        /// with a letter or digit. Cloning is cheap (the text is shared).
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates and wraps an id.
            pub fn new(value: impl AsRef<str>) -> Result<Self, AclError> {
                let value = value.as_ref();
                Self::check(value)?;
                Ok(Self(Arc::from(value)))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = AclError;
            fn from_str(s: &str) -> Result<Self, AclError> {
                Self::new(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// The id of an agent. `system` is reserved for the system principal.
    AgentId,
    "agent"
);
id_type!(
    /// The id of a team.
    TeamId,
    "team"
);
id_type!(
    /// The id of a swarm.
    SwarmId,
    "swarm"
);

impl AgentId {
    /// The name the system principal goes by in audit rows; no agent may take it.
    pub const SYSTEM_NAME: &'static str = "system";

    fn check(value: &str) -> Result<(), AclError> {
        validate("agent", value)?;
        if value.eq_ignore_ascii_case(Self::SYSTEM_NAME) {
            return Err(AclError::InvalidId {
                kind: "agent",
                value: value.to_owned(),
                reason: "is reserved for the system principal",
            });
        }
        Ok(())
    }
}

impl TeamId {
    fn check(value: &str) -> Result<(), AclError> {
        validate("team", value)
    }
}

impl SwarmId {
    fn check(value: &str) -> Result<(), AclError> {
        validate("swarm", value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        for ok in ["a", "agent-1", "backend.dev:7", "x@y", "A_B", &"z".repeat(128)] {
            assert!(AgentId::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_bad_ids() {
        for bad in ["", "-a", "a b", "a/b", "a%", "é", "a\0", &"z".repeat(129)] {
            assert!(matches!(AgentId::new(bad), Err(AclError::InvalidId { .. })), "{bad:?}");
        }
    }

    #[test]
    fn system_is_reserved_for_agents_only() {
        assert!(AgentId::new("system").is_err());
        assert!(AgentId::new("SYSTEM").is_err());
        assert!(TeamId::new("system").is_ok());
    }
}
