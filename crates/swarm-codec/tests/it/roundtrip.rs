//! Every value, under every configuration, decodes to itself.

use proptest::prelude::*;
use swarm_codec::{Codec, CodecConfig, CodecError, Seal, inspect};

use crate::{all_configs, any_value, codec};

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_every_mode(value in any_value(), aad in proptest::collection::vec(any::<u8>(), 0..96)) {
        for (config, encrypt) in all_configs() {
            let c = codec(config.clone());
            let seal = if encrypt { Seal::Encrypt { aad: &aad } } else { Seal::Plain };
            let env = c.encode(&value, seal).unwrap();
            prop_assert!(env.len() <= swarm_codec::max_envelope_len(value.len()));
            let header = inspect(&env).unwrap();
            prop_assert_eq!(header.is_encrypted(), encrypt);
            if encrypt {
                prop_assert_eq!(header.cipher(), Some(config.cipher()));
                prop_assert_eq!(header.key_id(), Some(swarm_codec::KeyId::new(1)));
            }
            if header.is_compressed() {
                prop_assert!(value.len() >= config.compression_threshold());
                prop_assert!(!encrypt || config.compress_encrypted());
            } else if encrypt {
                // Uncompressed: the ciphertext is exactly as long as the value.
                prop_assert_eq!(env.len(), header.header_len() + value.len() + swarm_codec::TAG_LEN);
            } else {
                prop_assert_eq!(&env[2..], &value[..]);
            }
            let decoded = c.decode(&env, &aad).unwrap();
            prop_assert!(decoded == value, "decoded value differs ({} bytes)", value.len());
        }
    }
}

#[test]
fn empty_value_round_trips() {
    for (config, encrypt) in all_configs() {
        let c = codec(config.with_compression_threshold(0));
        let seal = if encrypt { Seal::Encrypt { aad: b"" } } else { Seal::Plain };
        let env = c.encode(b"", seal).unwrap();
        assert_eq!(c.decode(&env, b"").unwrap(), b"");
    }
    assert_eq!(codec(CodecConfig::default()).encode(b"", Seal::Plain).unwrap(), [1, 0]);
}

#[test]
fn nonces_are_fresh() {
    let c = codec(CodecConfig::default());
    let a = c.encode(b"same value", Seal::Encrypt { aad: b"r" }).unwrap();
    let b = c.encode(b"same value", Seal::Encrypt { aad: b"r" }).unwrap();
    assert_ne!(a[7..19], b[7..19]);
    assert_ne!(a, b);
}

#[test]
fn codec_without_keyring_is_plain_only() {
    let c = Codec::new(CodecConfig::default(), None);
    let plain = c.encode(b"open", Seal::Plain).unwrap();
    assert_eq!(c.decode(&plain, b"ignored").unwrap(), b"open");
    assert!(matches!(c.encode(b"secret", Seal::Encrypt { aad: b"" }), Err(CodecError::NoKey)));
    let sealed =
        codec(CodecConfig::default()).encode(b"secret", Seal::Encrypt { aad: b"" }).unwrap();
    assert!(matches!(c.decode(&sealed, b""), Err(CodecError::NoKey)));
    assert!(matches!(c.reencrypt(&sealed, b""), Err(CodecError::NoKey)));
    assert_eq!(c.reencrypt(&plain, b"").unwrap(), None);
}

#[test]
fn decode_encrypted_refuses_plain_envelopes() {
    let c = codec(CodecConfig::default());
    let plain = c.encode(b"downgraded", Seal::Plain).unwrap();
    assert!(matches!(c.decode_encrypted(&plain, b"r"), Err(CodecError::NotEncrypted)));
    let sealed = c.encode(b"kept", Seal::Encrypt { aad: b"r" }).unwrap();
    assert_eq!(c.decode_encrypted(&sealed, b"r").unwrap(), b"kept");
}

#[test]
fn codec_is_send_and_sync_and_shares_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Codec>();
    let c = codec(CodecConfig::default());
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let c = &c;
            s.spawn(move || {
                for i in 0..200u32 {
                    let v = format!("thread {t} value {i}");
                    let env = c.encode(v.as_bytes(), Seal::Encrypt { aad: &[t] }).unwrap();
                    assert_eq!(c.decode(&env, &[t]).unwrap(), v.as_bytes());
                }
            });
        }
    });
}
