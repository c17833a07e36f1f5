//! Several keys by id: one active for new writes, the others kept for reading.

use std::collections::BTreeMap;
use std::fmt;

use subtle::ConstantTimeEq as _;

use crate::cipher::CipherSet;
use crate::{CodecError, Key, KeyId};

/// The keys a [`crate::Codec`] can seal and open values with.
///
/// Exactly one key is active: new values are sealed under it. The others stay so that
/// values sealed before a rotation still open; [`crate::Codec::reencrypt`] moves such
/// values to the active key, after which the old key can be [removed](Keyring::remove).
///
/// The keyring keeps no raw key bytes: inserting a key initializes the cipher instances for
/// it once (AES key schedule, GHASH key) and drops the [`Key`]. Everything it holds is
/// zeroized when dropped, including in clones. `Debug` shows only key ids.
///
/// To rotate keys in a running process, clone the keyring, [`insert`](Keyring::insert)
/// the new key, [`set_active`](Keyring::set_active) it, and build a new
/// [`crate::Codec`] around the result.
#[derive(Clone)]
pub struct Keyring {
    keys: BTreeMap<KeyId, Box<CipherSet>>,
    active: KeyId,
}

impl Keyring {
    /// A keyring holding one key, which is active.
    #[must_use]
    pub fn new(id: KeyId, key: Key) -> Self {
        let mut keys = BTreeMap::new();
        keys.insert(id, Box::new(CipherSet::new(&key)));
        Self { keys, active: id }
    }

    /// Adds a key for reading; it becomes active only through [`Keyring::set_active`].
    ///
    /// # Errors
    /// [`CodecError::DuplicateKeyId`] if `id` is already present, and
    /// [`CodecError::DuplicateKey`] if the same key material is already present under
    /// another id (found by comparing key check values).
    pub fn insert(&mut self, id: KeyId, key: Key) -> Result<(), CodecError> {
        if self.keys.contains_key(&id) {
            return Err(CodecError::DuplicateKeyId(id));
        }
        let set = CipherSet::new(&key);
        drop(key);
        if let Some((existing, _)) =
            self.keys.iter().find(|(_, other)| bool::from(other.check().ct_eq(set.check())))
        {
            return Err(CodecError::DuplicateKey(*existing));
        }
        self.keys.insert(id, Box::new(set));
        Ok(())
    }

    /// Makes `id` the key new values are sealed under.
    ///
    /// # Errors
    /// [`CodecError::UnknownKeyId`] if the keyring does not hold `id`.
    pub fn set_active(&mut self, id: KeyId) -> Result<(), CodecError> {
        if !self.keys.contains_key(&id) {
            return Err(CodecError::UnknownKeyId(id));
        }
        self.active = id;
        Ok(())
    }

    /// Removes a retired key. Values still sealed under it no longer open.
    ///
    /// # Errors
    /// [`CodecError::UnknownKeyId`] if the keyring does not hold `id`, and
    /// [`CodecError::ActiveKey`] if `id` is the active key (make another key active
    /// first).
    pub fn remove(&mut self, id: KeyId) -> Result<(), CodecError> {
        if id == self.active && self.keys.contains_key(&id) {
            return Err(CodecError::ActiveKey(id));
        }
        self.keys.remove(&id).map(drop).ok_or(CodecError::UnknownKeyId(id))
    }

    /// The id new values are sealed under.
    #[must_use]
    pub fn active_id(&self) -> KeyId {
        self.active
    }

    /// Whether the keyring holds `id`.
    #[must_use]
    pub fn contains(&self, id: KeyId) -> bool {
        self.keys.contains_key(&id)
    }

    /// Every key id held, in ascending order.
    pub fn ids(&self) -> impl ExactSizeIterator<Item = KeyId> + '_ {
        self.keys.keys().copied()
    }

    /// Number of keys held (at least one).
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always `false`: a keyring holds at least its active key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key check value of key `id`, or `None` if the keyring does not hold it.
    ///
    /// A key check value is 16 bytes derived from the key with a keyed, domain-separated
    /// pseudorandom function (the XChaCha20 keystream for a fixed nonce that data never
    /// uses; see `docs/FORMAT.md`). The store persists it beside the key id and compares it
    /// when it opens a database ([`Keyring::verify_key_check`]), so a wrong key is reported
    /// at open instead of as a failed value later. It reveals nothing that helps recover the
    /// key; it does let anyone holding a candidate key test it, which the envelopes already
    /// allow.
    #[must_use]
    pub fn key_check(&self, id: KeyId) -> Option<[u8; 16]> {
        self.keys.get(&id).map(|set| *set.check())
    }

    /// Compares a stored key check value with key `id`, in constant time.
    ///
    /// # Errors
    /// [`CodecError::UnknownKeyId`] if the keyring does not hold `id`, and
    /// [`CodecError::KeyCheckMismatch`] if it holds a different key under that id.
    pub fn verify_key_check(&self, id: KeyId, stored: &[u8; 16]) -> Result<(), CodecError> {
        let set = self.keys.get(&id).ok_or(CodecError::UnknownKeyId(id))?;
        if bool::from(set.check().ct_eq(stored)) {
            Ok(())
        } else {
            Err(CodecError::KeyCheckMismatch(id))
        }
    }

    pub(crate) fn active_set(&self) -> Result<&CipherSet, CodecError> {
        self.get(self.active)
    }

    pub(crate) fn get(&self, id: KeyId) -> Result<&CipherSet, CodecError> {
        self.keys.get(&id).map(|b| &**b).ok_or(CodecError::UnknownKeyId(id))
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Key {
        Key::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn keyring_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Keyring>();
    }

    #[test]
    fn insert_and_activate() {
        let mut ring = Keyring::new(KeyId::new(1), key(1));
        assert_eq!(ring.active_id(), KeyId::new(1));
        ring.insert(KeyId::new(2), key(2)).unwrap();
        assert_eq!(ring.active_id(), KeyId::new(1), "insert does not activate");
        assert!(
            matches!(ring.insert(KeyId::new(2), key(3)), Err(CodecError::DuplicateKeyId(id)) if id.get() == 2)
        );
        assert!(
            matches!(ring.insert(KeyId::new(9), key(1)), Err(CodecError::DuplicateKey(id)) if id.get() == 1)
        );
        assert!(matches!(ring.set_active(KeyId::new(7)), Err(CodecError::UnknownKeyId(_))));
        ring.set_active(KeyId::new(2)).unwrap();
        assert_eq!(ring.active_id(), KeyId::new(2));
        assert_eq!(ring.ids().collect::<Vec<_>>(), [KeyId::new(1), KeyId::new(2)]);
        assert!(ring.contains(KeyId::new(1)));
        assert!(!ring.contains(KeyId::new(3)));
        assert!(matches!(ring.remove(KeyId::new(2)), Err(CodecError::ActiveKey(_))));
        ring.remove(KeyId::new(1)).unwrap();
        assert!(matches!(ring.remove(KeyId::new(1)), Err(CodecError::UnknownKeyId(_))));
        assert_eq!(ring.len(), 1);
    }

    #[test]
    fn key_checks() {
        let ring = Keyring::new(KeyId::new(5), key(5));
        let check = ring.key_check(KeyId::new(5)).unwrap();
        assert_eq!(check, key(5).check_value());
        assert_eq!(ring.key_check(KeyId::new(6)), None);
        ring.verify_key_check(KeyId::new(5), &check).unwrap();
        assert!(matches!(
            ring.verify_key_check(KeyId::new(5), &key(6).check_value()),
            Err(CodecError::KeyCheckMismatch(_))
        ));
        assert!(matches!(
            ring.verify_key_check(KeyId::new(6), &check),
            Err(CodecError::UnknownKeyId(_))
        ));
    }

    #[test]
    fn debug_shows_ids_only() {
        let ring = Keyring::new(KeyId::new(3), key(0xab));
        let text = format!("{ring:?}");
        assert_eq!(text, "Keyring { ids: [KeyId(3)], active: KeyId(3) }");
    }
}
