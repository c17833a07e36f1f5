//! Fuzz-style: arbitrary bytes never panic any decoder, and never open as encrypted.

use std::sync::Arc;

use proptest::prelude::*;
use swarm_codec::{Codec, CodecConfig, Key, KeyId, Keyring, inspect};

use crate::{TEST_KEY2_HEX, codec};

fn two_key_codec() -> Codec {
    let mut ring = Keyring::new(KeyId::new(1), crate::test_key());
    ring.insert(KeyId::new(2), Key::from_hex(TEST_KEY2_HEX).unwrap()).unwrap();
    Codec::new(CodecConfig::default(), Some(Arc::new(ring)))
}

/// Bytes that often start like an envelope, so the fuzzing reaches past the first checks.
fn envelope_like() -> impl Strategy<Value = Vec<u8>> {
    let header = prop_oneof![
        Just(vec![]),
        (any::<u8>(), any::<u8>()).prop_map(|(v, f)| vec![v, f]),
        (0u8..4).prop_map(|f| vec![1, f]),
        (1u8..=3, 0u8..=2).prop_map(|(cipher, key)| vec![1, 0b10, cipher, 0, 0, 0, key]),
        (1u8..=3, 0u8..=2).prop_map(|(cipher, key)| vec![1, 0b11, cipher, 0, 0, 0, key]),
    ];
    (header, proptest::collection::vec(any::<u8>(), 0..600)).prop_map(|(mut h, tail)| {
        h.extend_from_slice(&tail);
        h
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in envelope_like(), aad in proptest::collection::vec(any::<u8>(), 0..16)) {
        let keyed = two_key_codec();
        let keyless = Codec::new(CodecConfig::default(), None);
        let strict = codec(CodecConfig::default().with_max_decoded_len(64));
        let header = inspect(&bytes);
        for c in [&keyed, &keyless, &strict] {
            let decoded = c.decode(&bytes, &aad);
            if decoded.is_ok() {
                // Only a plain envelope can decode without the key's say-so.
                prop_assert!(!header.as_ref().unwrap().is_encrypted(), "random bytes authenticated");
            }
            prop_assert!(c.decode_encrypted(&bytes, &aad).is_err(), "random bytes authenticated");
            let _ = c.reencrypt(&bytes, &aad);
        }
    }
}
