//! Integration tests of swarm-codec: one binary, one module per concern.

// clippy.toml allows unwrap inside `#[test]` functions only; the helpers here are test code
// too, where a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod alloc;
mod fixtures;
mod fuzz;
mod keys;
mod limits;
mod rotation;
mod roundtrip;
mod tamper;

use std::sync::Arc;

use proptest::prelude::*;
use swarm_codec::{Cipher, Codec, CodecConfig, Key, KeyId, Keyring};

/// The fixed test key of the fixtures: bytes 0x00..=0x1f.
pub(crate) const TEST_KEY_HEX: &str =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
/// A second fixed key: bytes 0x20..=0x3f.
pub(crate) const TEST_KEY2_HEX: &str =
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f";

pub(crate) fn test_key() -> Key {
    Key::from_hex(TEST_KEY_HEX).unwrap()
}

pub(crate) fn keyring() -> Arc<Keyring> {
    Arc::new(Keyring::new(KeyId::new(1), test_key()))
}

/// A codec with the test keyring (key 1 active).
pub(crate) fn codec(config: CodecConfig) -> Codec {
    Codec::new(config, Some(keyring()))
}

/// Every way of writing a value: plain or under each cipher, with compression allowed or
/// not. Compression is tried from 64 bytes so small generated values exercise it too.
pub(crate) fn all_configs() -> Vec<(CodecConfig, bool)> {
    let mut out = vec![
        (CodecConfig::default().with_compression_threshold(64), false),
        (CodecConfig::default().with_compression_threshold(usize::MAX), false),
    ];
    for cipher in Cipher::ALL {
        for compress in [true, false] {
            let config = CodecConfig::default()
                .with_cipher(cipher)
                .with_compression_threshold(64)
                .with_compress_encrypted(compress);
            out.push((config, true));
        }
    }
    out
}

/// Deterministic pseudo-random bytes (xorshift64*), cheap even for a mebibyte.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// JSON-like agent memory text of exactly `len` bytes: compressible but not trivial.
pub(crate) fn memory_json(len: usize, seed: u64) -> Vec<u8> {
    let words = ["plan", "observe", "retry", "deploy", "review", "blocked", "done", "summarize"];
    let mut out = String::with_capacity(len + 128);
    out.push('[');
    let mut i = seed;
    while out.len() < len {
        let w = words[(i % words.len() as u64) as usize];
        out.push_str(&format!(
            r#"{{"id":{i},"agent":"agent-{}","kind":"{w}","score":{}.{},"note":"{w} step {} of task {}"}},"#,
            i % 17,
            i % 100,
            i % 7,
            i % 13,
            i / 3
        ));
        i = i.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407) >> 40;
    }
    let mut bytes = out.into_bytes();
    bytes.truncate(len);
    bytes
}

/// A value of a chosen size: random bytes, JSON-like text, or one repeated byte.
pub(crate) fn value_of(len: usize, seed: u64, kind: u8) -> Vec<u8> {
    match kind % 3 {
        0 => noise(len, seed),
        1 => memory_json(len, seed),
        _ => vec![(seed & 0xff) as u8; len],
    }
}

/// Values from 0 to 1 MiB: mostly small, a few large, so the suite stays fast in debug
/// builds while every size class is covered.
pub(crate) fn any_value() -> impl Strategy<Value = Vec<u8>> {
    let len = prop_oneof![
        16 => 0usize..2048,
        4 => 2048usize..65_536,
        1 => 65_536usize..=1 << 20,
    ];
    (len, any::<u64>(), any::<u8>()).prop_map(|(len, seed, kind)| value_of(len, seed, kind))
}
