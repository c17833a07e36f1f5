//! Key rotation: old values keep opening, reencrypt moves them, unknown ids are distinct.

use std::sync::Arc;

use swarm_codec::{Cipher, Codec, CodecConfig, CodecError, Key, KeyId, Keyring, Seal, inspect};

use crate::{TEST_KEY_HEX, TEST_KEY2_HEX};

const AAD: &[u8] = b"swarm=s;ns=n;key=k;level=2;owner=a;team=t";

fn ring_with_key1() -> Keyring {
    Keyring::new(KeyId::new(1), Key::from_hex(TEST_KEY_HEX).unwrap())
}

#[test]
fn rotation_keeps_old_values_readable_and_reencrypt_moves_them() {
    let v1 = Codec::new(CodecConfig::default(), Some(Arc::new(ring_with_key1())));
    let small = v1.encode(b"before rotation", Seal::Encrypt { aad: AAD }).unwrap();
    let large_value = "remember this ".repeat(500);
    let large = v1.encode(large_value.as_bytes(), Seal::Encrypt { aad: AAD }).unwrap();
    let plain = v1.encode(b"public", Seal::Plain).unwrap();

    // Rotate: clone the keyring, add key 2, make it active.
    let mut next = (**v1.keyring().unwrap()).clone();
    next.insert(KeyId::new(2), Key::from_hex(TEST_KEY2_HEX).unwrap()).unwrap();
    next.set_active(KeyId::new(2)).unwrap();
    let v2 = Codec::new(CodecConfig::default(), Some(Arc::new(next)));

    // Old values still open under the new keyring.
    assert_eq!(v2.decode(&small, AAD).unwrap(), b"before rotation");
    assert_eq!(v2.decode(&large, AAD).unwrap(), large_value.as_bytes());

    // Reencrypt moves them to key 2; plain values and values already moved are left alone.
    let moved = v2.reencrypt(&small, AAD).unwrap().expect("needs rotation");
    assert_eq!(inspect(&moved).unwrap().key_id(), Some(KeyId::new(2)));
    assert_eq!(v2.decode(&moved, AAD).unwrap(), b"before rotation");
    assert_eq!(v2.reencrypt(&moved, AAD).unwrap(), None);
    assert_eq!(v2.reencrypt(&plain, AAD).unwrap(), None);
    let moved_large = v2.reencrypt(&large, AAD).unwrap().unwrap();
    let header = inspect(&moved_large).unwrap();
    assert_eq!((header.key_id(), header.is_compressed()), (Some(KeyId::new(2)), true));
    assert_eq!(v2.decode(&moved_large, AAD).unwrap(), large_value.as_bytes());

    // Reencrypt checks the old value's associated data like decode does.
    assert!(matches!(v2.reencrypt(&small, b"moved elsewhere"), Err(CodecError::Authentication)));

    // Once every value is moved, key 1 can be retired; its values then no longer open.
    let mut retired = (**v2.keyring().unwrap()).clone();
    retired.remove(KeyId::new(1)).unwrap();
    let v3 = Codec::new(CodecConfig::default(), Some(Arc::new(retired)));
    assert_eq!(v3.decode(&moved, AAD).unwrap(), b"before rotation");
    assert!(
        matches!(v3.decode(&small, AAD), Err(CodecError::UnknownKeyId(id)) if id == KeyId::new(1))
    );
}

#[test]
fn reencrypt_also_moves_values_to_the_configured_cipher() {
    let ring = Arc::new(ring_with_key1());
    let aes = Codec::new(CodecConfig::default(), Some(ring.clone()));
    let chacha =
        Codec::new(CodecConfig::default().with_cipher(Cipher::ChaCha20Poly1305), Some(ring));
    let env = aes.encode(b"v", Seal::Encrypt { aad: AAD }).unwrap();
    assert_eq!(aes.reencrypt(&env, AAD).unwrap(), None);
    let moved = chacha.reencrypt(&env, AAD).unwrap().unwrap();
    assert_eq!(inspect(&moved).unwrap().cipher(), Some(Cipher::ChaCha20Poly1305));
    assert_eq!(aes.decode(&moved, AAD).unwrap(), b"v");
}

#[test]
fn a_keyring_missing_the_key_gives_unknown_key_id() {
    let mut ring = Keyring::new(KeyId::new(7), Key::from_hex(TEST_KEY2_HEX).unwrap());
    ring.insert(KeyId::new(8), Key::generate().unwrap()).unwrap();
    let other = Codec::new(CodecConfig::default(), Some(Arc::new(ring)));
    let env =
        crate::codec(CodecConfig::default()).encode(b"v", Seal::Encrypt { aad: AAD }).unwrap();
    match other.decode(&env, AAD) {
        Err(e @ CodecError::UnknownKeyId(id)) => {
            assert_eq!(id, KeyId::new(1));
            assert_eq!(e.to_string(), "unknown key id 1");
        }
        other => panic!("expected UnknownKeyId, got {other:?}"),
    }
    assert!(matches!(other.reencrypt(&env, AAD), Err(CodecError::UnknownKeyId(_))));
}

#[test]
fn the_right_id_with_the_wrong_key_is_an_authentication_failure() {
    // Same id, different material: indistinguishable from tampering per value, which is why
    // the store checks key check values at open.
    let wrong = Keyring::new(KeyId::new(1), Key::from_hex(TEST_KEY2_HEX).unwrap());
    let env =
        crate::codec(CodecConfig::default()).encode(b"v", Seal::Encrypt { aad: AAD }).unwrap();
    let c = Codec::new(CodecConfig::default(), Some(Arc::new(wrong)));
    assert!(matches!(c.decode(&env, AAD), Err(CodecError::Authentication)));
    let right_check = ring_with_key1().key_check(KeyId::new(1)).unwrap();
    assert!(matches!(
        c.keyring().unwrap().verify_key_check(KeyId::new(1), &right_check),
        Err(CodecError::KeyCheckMismatch(_))
    ));
}

#[test]
fn large_key_ids_are_big_endian_in_the_header() {
    let ring = Keyring::new(KeyId::new(0x0102_0304), Key::generate().unwrap());
    let c = Codec::new(CodecConfig::default(), Some(Arc::new(ring)));
    let env = c.encode(b"v", Seal::Encrypt { aad: b"" }).unwrap();
    assert_eq!(env[3..7], [1, 2, 3, 4]);
    assert_eq!(inspect(&env).unwrap().key_id(), Some(KeyId::new(0x0102_0304)));
}
