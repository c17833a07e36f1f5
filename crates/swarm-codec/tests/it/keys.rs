//! Key parsing and redaction.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
use swarm_codec::{CodecError, Key, KeyId, Keyring};

use crate::TEST_KEY_HEX;

fn check_of(key: &Key) -> [u8; 16] {
    key.check_value()
}

fn assert_invalid(result: Result<Key, CodecError>, secret: &str) {
    match result {
        Err(e @ CodecError::InvalidKey(_)) => {
            let message = e.to_string();
            assert!(message.starts_with("invalid key: "), "{message}");
            if secret.len() >= 8 {
                assert!(
                    !message.contains(secret.trim()),
                    "error message leaks key material: {message}"
                );
                assert!(
                    !message.contains(&secret.trim()[..8]),
                    "error message leaks key material: {message}"
                );
            }
        }
        other => panic!("expected InvalidKey, got {other:?}"),
    }
}

#[test]
fn hex_keys_parse_in_either_case() {
    let lower = Key::from_hex(TEST_KEY_HEX).unwrap();
    let upper = Key::from_hex(&TEST_KEY_HEX.to_uppercase()).unwrap();
    let parsed = Key::parse(TEST_KEY_HEX).unwrap();
    assert_eq!(check_of(&lower), check_of(&upper));
    assert_eq!(check_of(&lower), check_of(&parsed));
    assert_eq!(lower.to_hex().as_str(), TEST_KEY_HEX);
}

#[test]
fn base64_keys_parse_padded_or_not() {
    let bytes: Vec<u8> = (0u8..32).collect();
    let padded = STANDARD.encode(&bytes);
    let unpadded = STANDARD_NO_PAD.encode(&bytes);
    assert!(padded.ends_with('='));
    let want = check_of(&Key::from_bytes(&bytes).unwrap());
    for text in [&padded, &unpadded] {
        assert_eq!(check_of(&Key::from_base64(text).unwrap()), want);
        assert_eq!(check_of(&Key::parse(text).unwrap()), want);
    }
}

#[test]
fn wrong_lengths_are_refused() {
    for len in [0usize, 1, 16, 31, 33, 64] {
        let bytes = vec![0xa5u8; len];
        assert_invalid(Key::from_bytes(&bytes), "");
        let hex = hex::encode(&bytes);
        assert_invalid(Key::from_hex(&hex), &hex);
        assert_invalid(Key::parse(&hex), &hex);
        let b64 = STANDARD.encode(&bytes);
        assert_invalid(Key::from_base64(&b64), &b64);
        assert_invalid(Key::parse(&b64), &b64);
    }
}

#[test]
fn the_javascript_versions_33_byte_test_keys_are_refused() {
    // The published JavaScript version accepted arbitrary strings as keys; its tests used
    // 33-character ones. A key is 32 bytes, spelled in hex or base64, and nothing else.
    let js_key = "test-encryption-key-32-chars-long";
    assert_eq!(js_key.len(), 33);
    assert_invalid(Key::parse(js_key), js_key);
    assert_invalid(Key::from_bytes(js_key.as_bytes()), js_key);
    assert_invalid(Key::parse(&js_key[..32]), &js_key[..32]);
}

#[test]
fn non_hex_and_non_base64_text_is_refused() {
    let mut bad = TEST_KEY_HEX.to_owned();
    bad.replace_range(10..11, "g");
    assert_invalid(Key::from_hex(&bad), &bad);
    // 64 characters that are not all hex are not base64 of 32 bytes either.
    assert_invalid(Key::parse(&bad), &bad);
    let with_space = format!("{} {}", &TEST_KEY_HEX[..32], &TEST_KEY_HEX[32..]);
    assert_invalid(Key::parse(&with_space), &with_space);
    // URL-safe base64 is not the standard alphabet.
    let bytes = [0xfbu8; 32];
    let url = URL_SAFE.encode(bytes);
    assert!(url.contains('-') || url.contains('_'));
    assert_invalid(Key::parse(&url), &url);
    assert_invalid(Key::parse(""), "");
    assert_invalid(Key::parse("not a key at all, just a passphrase"), "not a key at all");
    assert_invalid(Key::parse(&"A".repeat(5000)), "AAAAAAAAAAAA");
}

#[test]
fn keys_are_redacted_in_debug_and_display() {
    let key = Key::from_hex(TEST_KEY_HEX).unwrap();
    assert_eq!(format!("{key:?}"), "Key(<redacted>)");
    assert_eq!(format!("{key}"), "Key(<redacted>)");
    assert_eq!(format!("{key:#?}"), "Key(<redacted>)");
    let ring = Keyring::new(KeyId::new(4), key);
    let shown = format!("{ring:?} {ring:#?}");
    assert!(!shown.contains("0001020304"), "{shown}");
    assert!(shown.contains("KeyId(4)"), "{shown}");
}

#[test]
fn key_check_value_is_stable_for_the_fixture_key() {
    // The key check is persisted by the store: its derivation must never change.
    let key = Key::from_hex(TEST_KEY_HEX).unwrap();
    let expected = std::fs::read_to_string(crate::fixtures::dir().join("key-check.txt")).unwrap();
    let line = expected.lines().find(|l| l.starts_with("1 ")).unwrap();
    assert_eq!(hex::encode(key.check_value()), line[2..].trim());
}
