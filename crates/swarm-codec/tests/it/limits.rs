//! Size limits: hostile length fields are refused before anything of that size is allocated.

use aes_gcm::aead::{AeadInOut, KeyInit};
use swarm_codec::{CodecConfig, CodecError, Seal};

use crate::alloc::largest_allocation;
use crate::{TEST_KEY_HEX, codec};

/// A plain compressed envelope declaring `declared` bytes, followed by a tiny LZ4 block.
fn plain_compressed(declared: u32) -> Vec<u8> {
    let mut env = vec![1, 0b01];
    env.extend_from_slice(&declared.to_be_bytes());
    env.extend_from_slice(&[0x10, b'x']);
    env
}

#[test]
fn four_gib_declared_is_too_large_without_allocating() {
    let c = codec(CodecConfig::default());
    let env = plain_compressed(u32::MAX);
    let (result, peak) = largest_allocation(|| c.decode(&env, b""));
    match result {
        Err(CodecError::TooLarge { len, max }) => {
            assert_eq!(len, u32::MAX as usize);
            assert_eq!(max, 16 << 20);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(peak < 4096, "decoding allocated {peak} bytes");
}

#[test]
fn four_gib_declared_under_the_highest_limit_is_corrupt_without_allocating() {
    // Even when the limit allows 4 GiB, a 2-byte block cannot expand to it.
    let c = codec(CodecConfig::default().with_max_decoded_len(usize::MAX));
    let env = plain_compressed(u32::MAX);
    let (result, peak) = largest_allocation(|| c.decode(&env, b""));
    assert!(matches!(result, Err(CodecError::Corrupt)), "{result:?}");
    assert!(peak < 4096, "decoding allocated {peak} bytes");
}

#[test]
fn four_gib_declared_inside_authenticated_ciphertext_is_too_large() {
    // Build an envelope by hand with aes-gcm, as FORMAT.md describes it: this also checks
    // that the documented layout and associated data are what the codec reads.
    let key_bytes = hex::decode(TEST_KEY_HEX).unwrap();
    let aes = aes_gcm::Aes256Gcm::new_from_slice(&key_bytes).unwrap();
    let mut header = vec![1, 0b11, 1, 0, 0, 0, 1];
    header.extend_from_slice(&[0x42; 12]);
    let aad = b"record";
    let mut inner = u32::MAX.to_be_bytes().to_vec();
    inner.extend_from_slice(&[0x10, b'x']);
    let full_aad = [&header[..], aad].concat();
    let tag = aes
        .encrypt_inout_detached((&[0x42; 12]).into(), &full_aad, (&mut inner[..]).into())
        .unwrap();
    let env = [&header[..], &inner, &tag[..]].concat();

    let c = codec(CodecConfig::default());
    let (result, peak) = largest_allocation(|| c.decode(&env, aad));
    assert!(
        matches!(result, Err(CodecError::TooLarge { len, .. }) if len == u32::MAX as usize),
        "{result:?}"
    );
    assert!(peak < 4096, "decoding allocated {peak} bytes");
    // The same envelope with a wrong record fails authentication first.
    assert!(matches!(c.decode(&env, b"other"), Err(CodecError::Authentication)));
}

#[test]
fn hand_built_envelope_opens() {
    let key_bytes = hex::decode(TEST_KEY_HEX).unwrap();
    let chacha = chacha20poly1305::ChaCha20Poly1305::new_from_slice(&key_bytes).unwrap();
    let mut header = vec![1, 0b10, 2, 0, 0, 0, 1];
    header.extend_from_slice(&[7; 12]);
    let mut body = b"interoperable".to_vec();
    let full_aad = [&header[..], b"r1"].concat();
    let tag = chacha
        .encrypt_inout_detached((&[7; 12]).into(), &full_aad, (&mut body[..]).into())
        .unwrap();
    let env = [&header[..], &body, &tag[..]].concat();
    assert_eq!(codec(CodecConfig::default()).decode(&env, b"r1").unwrap(), b"interoperable");
}

#[test]
fn values_over_the_limit_are_refused_both_ways() {
    let c = codec(CodecConfig::default().with_max_decoded_len(1000));
    let big = vec![b'a'; 1001];
    assert!(matches!(
        c.encode(&big, Seal::Plain),
        Err(CodecError::TooLarge { len: 1001, max: 1000 })
    ));
    assert!(matches!(c.encode(&big, Seal::Encrypt { aad: b"" }), Err(CodecError::TooLarge { .. })));
    c.encode(&big[..1000], Seal::Plain).unwrap();

    // Envelopes written under a larger limit are refused by a stricter reader.
    let loose = codec(CodecConfig::default().with_compression_threshold(usize::MAX));
    let plain = loose.encode(&big, Seal::Plain).unwrap();
    assert!(matches!(c.decode(&plain, b""), Err(CodecError::TooLarge { len: 1001, max: 1000 })));
    let sealed = loose.encode(&big, Seal::Encrypt { aad: b"" }).unwrap();
    assert!(matches!(c.decode(&sealed, b""), Err(CodecError::TooLarge { len: 1001, max: 1000 })));
    // Compressed, the payload is small but the declared length is checked.
    let loose = codec(CodecConfig::default());
    let big = vec![b'a'; 5000];
    for seal in [Seal::Plain, Seal::Encrypt { aad: b"" }] {
        let env = loose.encode(&big, seal).unwrap();
        assert!(env.len() < 200);
        assert!(matches!(c.decode(&env, b""), Err(CodecError::TooLarge { len: 5000, max: 1000 })));
    }
}

#[test]
fn the_largest_compressible_value_round_trips() {
    // 16 MiB of one byte compresses about 250-fold: the expansion bound must admit it.
    let c = codec(CodecConfig::default());
    let value = vec![0u8; 16 << 20];
    for seal in [Seal::Plain, Seal::Encrypt { aad: b"big" }] {
        let env = c.encode(&value, seal).unwrap();
        assert!(env.len() < (16 << 20) / 200, "{} bytes", env.len());
        assert!(c.decode(&env, b"big").unwrap() == value);
    }
}

#[test]
fn envelope_overhead_bound_holds() {
    for (config, encrypt) in crate::all_configs() {
        let c = codec(config);
        for len in [0, 1, 63, 64, 1000, 5000] {
            let v = crate::noise(len, len as u64);
            let seal = if encrypt { Seal::Encrypt { aad: b"a" } } else { Seal::Plain };
            let env = c.encode(&v, seal).unwrap();
            assert!(env.len() <= swarm_codec::max_envelope_len(len));
        }
    }
}
