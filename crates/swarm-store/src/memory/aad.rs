//! The associated data that binds an encrypted value to its record (docs/FORMAT.md):
//! a ciphertext copied into another row, or left behind after its record's level, owner
//! or team changed, fails to open.

use swarm_acl::AclLevel;

use super::types::ValueType;

const PREFIX: &[u8] = b"swarm-memory/memory/v1\0";

/// Builds the associated data of a memory record.
pub(crate) fn memory_aad(
    swarm: &str,
    namespace: &str,
    key: &str,
    level: AclLevel,
    owner: Option<&str>,
    team: Option<&str>,
    value_type: ValueType,
) -> Vec<u8> {
    // Prefix, three length-prefixed fields, level, two optional fields, value type: sized
    // exactly so building it never reallocates (it runs on every read).
    let len_of = |s: Option<&str>| s.map_or(1, |s| 5 + s.len());
    let mut out = Vec::with_capacity(
        PREFIX.len()
            + 12
            + swarm.len()
            + namespace.len()
            + key.len()
            + 2
            + len_of(owner)
            + len_of(team),
    );
    out.extend_from_slice(PREFIX);
    field(&mut out, swarm);
    field(&mut out, namespace);
    field(&mut out, key);
    out.push(level.as_u8());
    optional(&mut out, owner);
    optional(&mut out, team);
    out.push(value_type.tag());
    out
}

fn field(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn optional(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            field(out, s);
        }
        None => out.push(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capacity_is_exact() {
        for (owner, team) in [(None, None), (Some("agent-7"), None), (Some("a"), Some("backend"))] {
            let aad =
                memory_aad("swarm", "ns", "key:1", AclLevel::Team, owner, team, ValueType::Json);
            assert_eq!(aad.capacity(), aad.len(), "owner {owner:?}, team {team:?}");
        }
    }

    #[test]
    fn every_field_changes_the_aad() {
        let base = memory_aad("s", "n", "k", AclLevel::Private, Some("a"), None, ValueType::Text);
        let variants = [
            memory_aad("s2", "n", "k", AclLevel::Private, Some("a"), None, ValueType::Text),
            memory_aad("s", "n2", "k", AclLevel::Private, Some("a"), None, ValueType::Text),
            memory_aad("s", "n", "k2", AclLevel::Private, Some("a"), None, ValueType::Text),
            memory_aad("s", "n", "k", AclLevel::Team, Some("a"), None, ValueType::Text),
            memory_aad("s", "n", "k", AclLevel::Private, Some("b"), None, ValueType::Text),
            memory_aad("s", "n", "k", AclLevel::Private, None, None, ValueType::Text),
            memory_aad("s", "n", "k", AclLevel::Private, Some("a"), Some("t"), ValueType::Text),
            memory_aad("s", "n", "k", AclLevel::Private, Some("a"), None, ValueType::Bytes),
            // Field boundaries are unambiguous: moving a byte between fields changes it.
            memory_aad("sn", "", "k", AclLevel::Private, Some("a"), None, ValueType::Text),
        ];
        for v in variants {
            assert_ne!(base, v);
        }
    }
}
