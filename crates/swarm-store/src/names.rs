//! The string forms of the store's enumerations (statuses, strategies, kinds): one name
//! per variant, the one stored in the database, shown in JSON and accepted as input.

/// Implements `as_str`, `parse`, `NAMES`, [`std::str::FromStr`] and [`std::fmt::Display`]
/// for a fieldless enum from one table of `Variant => "name"`. `parse` accepts the names
/// in any case, with surrounding whitespace and `-` for `_`; anything else is
/// [`crate::StoreError::Invalid`] naming the accepted values.
macro_rules! string_forms {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// The name: what is stored, shown in JSON, and accepted by `parse`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }

            /// Parses a name (any case, surrounding whitespace ignored, `-` for `_`).
            ///
            /// # Errors
            /// [`crate::StoreError::Invalid`] for anything else, naming what is accepted.
            pub fn parse(s: &str) -> crate::Result<Self> {
                let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
                match wanted.as_str() {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(crate::StoreError::Invalid(format!(
                        "unknown {} {s:?}: expected {}",
                        $what,
                        crate::names::one_of(Self::NAMES)
                    ))),
                }
            }

            /// A value read from the database: an unknown name there is corruption, not
            /// bad input.
            #[allow(dead_code)]
            pub(crate) fn from_stored(s: &str) -> crate::Result<Self> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    other => Err(crate::StoreError::Corrupt(format!("stored {} {other:?}", $what))),
                }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = crate::StoreError;
            fn from_str(s: &str) -> crate::Result<Self> {
                Self::parse(s)
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use string_forms;

/// `a`, `a or b`, `a, b or c`.
pub(crate) fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        AgentStatus, DependencyKind, EventStatus, RoundStatus, StoreError, Strategy, TaskStatus,
    };

    #[test]
    fn lists_read_like_prose() {
        assert_eq!(super::one_of(&["a"]), "a");
        assert_eq!(super::one_of(&["a", "b"]), "a or b");
        assert_eq!(super::one_of(&["a", "b", "c"]), "a, b or c");
    }

    /// Every name parses back to the value that prints it, through `parse`, `FromStr` and
    /// `Display`, and the JSON form (serde) is the same name.
    fn round_trips<T>(values: &[T])
    where
        T: Copy
            + PartialEq
            + std::fmt::Debug
            + std::fmt::Display
            + std::str::FromStr<Err = StoreError>
            + serde::Serialize,
    {
        for &v in values {
            let name = v.to_string();
            assert_eq!(T::from_str(&name).unwrap(), v, "{name}");
            assert_eq!(T::from_str(&format!(" {} ", name.to_uppercase())).unwrap(), v);
            assert_eq!(serde_json::to_value(v).unwrap(), serde_json::json!(name));
        }
        let e = T::from_str("no-such-name").unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    }

    #[test]
    fn every_status_name_round_trips() {
        round_trips(&[
            EventStatus::Pending,
            EventStatus::Claimed,
            EventStatus::Acked,
            EventStatus::Dead,
        ]);
        round_trips(&[
            RoundStatus::Open,
            RoundStatus::Achieved,
            RoundStatus::Failed,
            RoundStatus::Expired,
        ]);
        round_trips(&TaskStatus::ALL);
        round_trips(&[
            AgentStatus::Active,
            AgentStatus::Inactive,
            AgentStatus::Suspended,
            AgentStatus::Terminated,
        ]);
        round_trips(&[
            Strategy::Majority,
            Strategy::Weighted,
            Strategy::Unanimous,
            Strategy::Threshold,
        ]);
        round_trips(&[DependencyKind::Hard, DependencyKind::Soft, DependencyKind::Optional]);
        assert_eq!(TaskStatus::parse("in-progress").unwrap(), TaskStatus::InProgress);
        assert_eq!(EventStatus::NAMES, ["pending", "claimed", "acked", "dead"]);
    }

    #[test]
    fn errors_name_the_accepted_values() {
        let e = EventStatus::parse("done").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid input: unknown event status \"done\": expected pending, claimed, acked or dead"
        );
        let e = RoundStatus::from_stored("closed").unwrap_err();
        assert!(matches!(e, StoreError::Corrupt(_)), "{e}");
    }
}
