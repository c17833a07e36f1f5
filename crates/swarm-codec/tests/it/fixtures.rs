//! Committed envelopes written by format version 1: they must keep decoding forever.
//!
//! Regenerate (only for a deliberate, versioned format change) with
//! `SWARM_UPDATE_FIXTURES=1 cargo test -p swarm-codec --test it fixtures`.

use std::path::Path;
use std::path::PathBuf;
use std::sync::{Arc, Once};

use swarm_codec::{Cipher, Codec, CodecConfig, Key, KeyId, Keyring, Seal, inspect};

use crate::{TEST_KEY_HEX, TEST_KEY2_HEX};

/// The associated data every encrypted fixture is bound to.
const AAD: &[u8] = b"swarm=fixtures;ns=default;key=k1;level=1;owner=agent-1;team=";
/// The id the second fixture key is stored under (0x0102: checks big-endian key ids).
const KEY2_ID: u32 = 0x0102;

/// The fixture directory, rewritten first (once per run) when `SWARM_UPDATE_FIXTURES=1`.
pub(crate) fn dir() -> PathBuf {
    static UPDATE: Once = Once::new();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    UPDATE.call_once(|| {
        if std::env::var_os("SWARM_UPDATE_FIXTURES").is_some_and(|v| v == "1") {
            update(&dir);
        }
    });
    dir
}

struct Fixture {
    name: &'static str,
    plaintext: &'static str,
    /// `None` for plain.
    cipher: Option<Cipher>,
    key_id: u32,
    compressed: bool,
}

const FIXTURES: &[Fixture] = &[
    Fixture { name: "plain", plaintext: "short.txt", cipher: None, key_id: 0, compressed: false },
    Fixture {
        name: "plain-compressed",
        plaintext: "memory.json",
        cipher: None,
        key_id: 0,
        compressed: true,
    },
    Fixture {
        name: "aes-256-gcm",
        plaintext: "short.txt",
        cipher: Some(Cipher::Aes256Gcm),
        key_id: 1,
        compressed: false,
    },
    Fixture {
        name: "chacha20-poly1305",
        plaintext: "short.txt",
        cipher: Some(Cipher::ChaCha20Poly1305),
        key_id: 1,
        compressed: false,
    },
    Fixture {
        name: "xchacha20-poly1305",
        plaintext: "short.txt",
        cipher: Some(Cipher::XChaCha20Poly1305),
        key_id: 1,
        compressed: false,
    },
    Fixture {
        name: "aes-256-gcm-compressed",
        plaintext: "memory.json",
        cipher: Some(Cipher::Aes256Gcm),
        key_id: 1,
        compressed: true,
    },
    Fixture {
        name: "chacha20-poly1305-compressed-key2",
        plaintext: "memory.json",
        cipher: Some(Cipher::ChaCha20Poly1305),
        key_id: KEY2_ID,
        compressed: true,
    },
];

fn keyring() -> Keyring {
    let mut ring = Keyring::new(KeyId::new(1), Key::from_hex(TEST_KEY_HEX).unwrap());
    ring.insert(KeyId::new(KEY2_ID), Key::from_hex(TEST_KEY2_HEX).unwrap()).unwrap();
    ring
}

fn codec_for(fixture: &Fixture) -> Codec {
    let mut ring = keyring();
    if fixture.cipher.is_some() {
        ring.set_active(KeyId::new(fixture.key_id)).unwrap();
    }
    let config = CodecConfig::default().with_cipher(fixture.cipher.unwrap_or_default());
    Codec::new(config, Some(Arc::new(ring)))
}

fn plaintexts() -> [(&'static str, Vec<u8>); 2] {
    [("short.txt", b"hello, swarm".to_vec()), ("memory.json", crate::memory_json(2500, 42))]
}

fn update(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in plaintexts() {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    for f in FIXTURES {
        let plaintext = std::fs::read(dir.join(f.plaintext)).unwrap();
        let seal = if f.cipher.is_some() { Seal::Encrypt { aad: AAD } } else { Seal::Plain };
        let env = codec_for(f).encode(&plaintext, seal).unwrap();
        std::fs::write(dir.join(format!("{}.hex", f.name)), hex::encode(&env) + "\n").unwrap();
    }
    let ring = keyring();
    let checks: String = ring
        .ids()
        .map(|id| format!("{id} {}\n", hex::encode(ring.key_check(id).unwrap())))
        .collect();
    std::fs::write(dir.join("key-check.txt"), checks).unwrap();
}

#[test]
fn committed_fixtures_decode() {
    let dir = dir();
    // A codec that only knows the keys, with default settings: reading needs nothing else.
    let reader = Codec::new(CodecConfig::default(), Some(Arc::new(keyring())));
    for f in FIXTURES {
        let text = std::fs::read_to_string(dir.join(format!("{}.hex", f.name)))
            .unwrap_or_else(|e| panic!("fixture {} missing ({e}); see the module docs", f.name));
        let env = hex::decode(text.trim()).unwrap();
        let plaintext = std::fs::read(dir.join(f.plaintext)).unwrap();
        let header = inspect(&env).unwrap();
        assert_eq!(header.version(), 1, "{}", f.name);
        assert_eq!(header.cipher(), f.cipher, "{}", f.name);
        assert_eq!(header.is_compressed(), f.compressed, "{}", f.name);
        if f.cipher.is_some() {
            assert_eq!(header.key_id(), Some(KeyId::new(f.key_id)), "{}", f.name);
        }
        assert_eq!(reader.decode(&env, AAD).unwrap(), plaintext, "{}", f.name);
        if f.cipher.is_some() {
            assert!(reader.decode(&env, b"another record").is_err(), "{}", f.name);
        }
    }
}

#[test]
fn plain_fixture_is_byte_exact() {
    // Plain uncompressed envelopes are deterministic, so the writer is checked too.
    let env =
        hex::decode(std::fs::read_to_string(dir().join("plain.hex")).unwrap().trim()).unwrap();
    assert_eq!(hex::encode(&env), "0100".to_owned() + &hex::encode("hello, swarm"));
    let c = Codec::new(CodecConfig::default(), None);
    assert_eq!(c.encode(b"hello, swarm", Seal::Plain).unwrap(), env);
}

#[test]
fn fixture_plaintexts_are_unchanged() {
    for (name, bytes) in plaintexts() {
        assert_eq!(std::fs::read(dir().join(name)).unwrap(), bytes, "{name}");
    }
}
