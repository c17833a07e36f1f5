//! Flipped bits, truncations, extensions and wrong associated data never yield a value.

use proptest::prelude::*;
use swarm_codec::{Cipher, CodecConfig, CodecError, Seal};

use crate::{codec, value_of};

fn small_value() -> impl Strategy<Value = Vec<u8>> {
    (0usize..300, any::<u64>(), any::<u8>()).prop_map(|(len, seed, kind)| value_of(len, seed, kind))
}

fn cipher() -> impl Strategy<Value = Cipher> {
    proptest::sample::select(Cipher::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_flipped_bit_of_an_encrypted_envelope_fails(value in small_value(), cipher in cipher(), compress in any::<bool>()) {
        // Threshold 0 so that compressible values are sealed compressed.
        let config = CodecConfig::default().with_cipher(cipher).with_compression_threshold(0).with_compress_encrypted(compress);
        let c = codec(config);
        let aad = b"swarm=s;ns=n;key=k;level=1;owner=a;team=";
        let env = c.encode(&value, Seal::Encrypt { aad }).unwrap();
        for bit in 0..env.len() * 8 {
            let mut bad = env.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            // A reader that knows the record must be encrypted catches every flip.
            match c.decode_encrypted(&bad, aad) {
                Ok(_) => prop_assert!(false, "bit {bit} flipped still decoded"),
                Err(CodecError::Authentication | CodecError::UnsupportedVersion(_) | CodecError::UnknownFlags(_)
                    | CodecError::UnknownCipher(_) | CodecError::UnknownKeyId(_) | CodecError::Truncated
                    | CodecError::NotEncrypted) => {}
                Err(other) => prop_assert!(false, "bit {bit}: unexpected error {other:?}"),
            }
            // `decode` accepts plain envelopes, and clearing the encrypted flag (bit 9) makes
            // one: the "value" is then the rest of the header and the ciphertext, never the
            // plaintext. Every other flip is an error.
            match c.decode(&bad, aad) {
                Ok(garbage) => {
                    prop_assert_eq!(bit, 9);
                    prop_assert!(garbage != value);
                }
                Err(CodecError::NotEncrypted) => prop_assert!(false, "decode never requires encryption"),
                Err(_) => {}
            }
        }
    }

    #[test]
    fn every_truncation_and_extension_of_an_encrypted_envelope_fails(value in small_value(), cipher in cipher()) {
        let c = codec(CodecConfig::default().with_cipher(cipher).with_compression_threshold(0));
        let env = c.encode(&value, Seal::Encrypt { aad: b"r" }).unwrap();
        for len in 0..env.len() {
            prop_assert!(c.decode(&env[..len], b"r").is_err(), "prefix of {len} bytes decoded");
        }
        let mut longer = env.clone();
        longer.push(0);
        prop_assert!(matches!(c.decode(&longer, b"r"), Err(CodecError::Authentication)));
    }

    #[test]
    fn any_other_associated_data_fails(value in small_value(), aad in proptest::collection::vec(any::<u8>(), 0..64),
                                      other in proptest::collection::vec(any::<u8>(), 0..64), cipher in cipher()) {
        prop_assume!(aad != other);
        let c = codec(CodecConfig::default().with_cipher(cipher));
        let env = c.encode(&value, Seal::Encrypt { aad: &aad }).unwrap();
        prop_assert!(matches!(c.decode(&env, &other), Err(CodecError::Authentication)));
        prop_assert!(c.decode(&env, &aad).unwrap() == value);
    }

    #[test]
    fn flipped_header_bits_of_a_plain_envelope_are_structural_errors(value in small_value(), compress in any::<bool>()) {
        let threshold = if compress { 0 } else { usize::MAX };
        let c = codec(CodecConfig::default().with_compression_threshold(threshold));
        let env = c.encode(&value, Seal::Plain).unwrap();
        for bit in 0..16 {
            let mut bad = env.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let result = c.decode(&bad, b"");
            match bit {
                0..=7 => prop_assert!(matches!(result, Err(CodecError::UnsupportedVersion(_)))),
                // Bit 0 of the flags toggles compression. A plain envelope has no integrity
                // protection, so reading raw bytes as LZ4 (or LZ4 as raw bytes) is not
                // guaranteed to fail; it must only never panic, which reaching here shows.
                8 => {}
                // Bit 1 claims encryption: whatever the payload, it cannot authenticate.
                9 => prop_assert!(result.is_err(), "encrypted flag flipped still decoded"),
                _ => prop_assert!(matches!(result, Err(CodecError::UnknownFlags(_)))),
            }
        }
        for len in 0..2.min(env.len()) {
            prop_assert!(matches!(c.decode(&env[..len], b""), Err(CodecError::Truncated)));
        }
    }
}

#[test]
fn tampering_with_the_compressed_flag_of_a_sealed_value_fails() {
    let c = codec(CodecConfig::default());
    let value = "compress me ".repeat(200);
    let env = c.encode(value.as_bytes(), Seal::Encrypt { aad: b"r" }).unwrap();
    assert_eq!(env[1], 0b11);
    let mut bad = env.clone();
    bad[1] = 0b10;
    assert!(matches!(c.decode(&bad, b"r"), Err(CodecError::Authentication)));
}

#[test]
fn swapping_the_cipher_id_fails() {
    // AES-GCM and ChaCha20-Poly1305 have the same nonce and tag lengths, so only the
    // authenticated header catches the swap.
    let c = codec(CodecConfig::default());
    let env = c.encode(b"value", Seal::Encrypt { aad: b"r" }).unwrap();
    let mut bad = env.clone();
    bad[2] = Cipher::ChaCha20Poly1305.id();
    assert!(matches!(c.decode(&bad, b"r"), Err(CodecError::Authentication)));
}
