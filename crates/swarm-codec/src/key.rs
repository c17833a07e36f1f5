//! Key material and key ids.

use std::fmt;

use base64::Engine as _;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::CodecError;

/// Length of every key in bytes (256 bits).
pub const KEY_LEN: usize = 32;

/// Identifies a key in a [`crate::Keyring`]; written into every encrypted envelope as a
/// big-endian `u32`, so a reader knows which key to use without trying them all.
///
/// Ids are chosen by the operator (or the store); any value is valid. Rotating keys means
/// adding a key under a new id and making it active.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(u32);

impl KeyId {
    /// Wraps a raw id.
    #[must_use]
    pub const fn new(id: u32) -> Self {
        Self(id)
    }

    /// The raw id, as written into envelopes.
    #[must_use]
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl From<u32> for KeyId {
    fn from(id: u32) -> Self {
        Self(id)
    }
}

impl From<KeyId> for u32 {
    fn from(id: KeyId) -> Self {
        id.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Exactly 32 bytes of secret key material, used with every [`crate::Cipher`].
///
/// The bytes live in one heap allocation, so moving a `Key` does not leave copies of them
/// on the stack, and are overwritten with zeros when the key is dropped. `Debug` and
/// `Display` print `Key(<redacted>)`. There is deliberately no `Clone` and no accessor
/// for the raw bytes: a [`crate::Keyring`] consumes the key, and [`Key::to_hex`] exists
/// only to write a newly generated key to a key file.
pub struct Key {
    bytes: Box<[u8; KEY_LEN]>,
}

impl Key {
    /// Takes exactly 32 bytes of key material.
    ///
    /// # Errors
    /// [`CodecError::InvalidKey`] when `bytes` is not 32 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
        let bytes: &[u8; KEY_LEN] =
            bytes.try_into().map_err(|_| CodecError::InvalidKey("key must be exactly 32 bytes"))?;
        let mut key = Self::zeroed();
        key.bytes.copy_from_slice(bytes);
        Ok(key)
    }

    /// Parses 64 hexadecimal characters (either case). Surrounding ASCII whitespace, such
    /// as the newline at the end of a key file, is ignored.
    ///
    /// # Errors
    /// [`CodecError::InvalidKey`] when the text is not exactly 64 hex characters.
    pub fn from_hex(text: &str) -> Result<Self, CodecError> {
        let text = text.trim_ascii();
        if text.len() != 2 * KEY_LEN {
            return Err(CodecError::InvalidKey("hex key must be exactly 64 hex characters"));
        }
        let mut key = Self::zeroed();
        hex::decode_to_slice(text, &mut key.bytes[..])
            .map_err(|_| CodecError::InvalidKey("hex key contains a character that is not hex"))?;
        Ok(key)
    }

    /// Parses standard base64 (alphabet `A-Z a-z 0-9 + /`, with or without `=` padding)
    /// that decodes to exactly 32 bytes. Surrounding ASCII whitespace is ignored.
    ///
    /// # Errors
    /// [`CodecError::InvalidKey`] when the text is not valid standard base64 or does not
    /// decode to 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, CodecError> {
        // 32 bytes are 43 characters unpadded or 44 padded; anything much longer cannot be
        // a key and is refused before decoding.
        const MAX_CHARS: usize = 48;
        const WRONG_LEN: &str = "base64 key must decode to exactly 32 bytes";
        let text = text.trim_ascii();
        if text.len() > MAX_CHARS {
            return Err(CodecError::InvalidKey(WRONG_LEN));
        }
        // Decode into a zeroized scratch buffer large enough for any accepted input, so a
        // wrong-length key is reported as such and its bytes do not linger.
        let mut scratch = Zeroizing::new([0u8; MAX_CHARS]);
        let len = base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
            .decode_slice(text, &mut scratch[..])
            .map_err(|e| match e {
                base64::DecodeSliceError::OutputSliceTooSmall => CodecError::InvalidKey(WRONG_LEN),
                base64::DecodeSliceError::DecodeError(_) => {
                    CodecError::InvalidKey("base64 key is not valid standard base64")
                }
            })?;
        match scratch.get(..len) {
            Some(decoded) if len == KEY_LEN => Self::from_bytes(decoded),
            _ => Err(CodecError::InvalidKey(WRONG_LEN)),
        }
    }

    /// Parses a key as written in configuration or the `SQLITE_ENCRYPTION_KEY` environment
    /// variable: 64 hex characters, or standard base64 of 32 bytes (padded or not).
    /// Surrounding ASCII whitespace is ignored. Nothing else is accepted: in particular a
    /// passphrase is not stretched into a key.
    ///
    /// # Errors
    /// [`CodecError::InvalidKey`] for anything else; the reason never includes the text.
    pub fn parse(text: &str) -> Result<Self, CodecError> {
        let text = text.trim_ascii();
        if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Self::from_hex(text);
        }
        Self::from_base64(text).map_err(|_| {
            CodecError::InvalidKey("key must be 64 hex characters or standard base64 of 32 bytes")
        })
    }

    /// Draws a new key from the operating system's CSPRNG.
    ///
    /// # Errors
    /// [`CodecError::Random`] when the operating system cannot provide random bytes.
    pub fn generate() -> Result<Self, CodecError> {
        let mut key = Self::zeroed();
        getrandom::fill(&mut key.bytes[..]).map_err(|_| CodecError::Random)?;
        Ok(key)
    }

    /// The key as 64 lowercase hex characters, in a string that is zeroized when dropped.
    ///
    /// This exists only so a freshly [generated](Key::generate) key can be written to a key
    /// file (which the caller creates with `0600` permissions). Never log the result.
    #[must_use]
    pub fn to_hex(&self) -> Zeroizing<String> {
        // Not `hex::encode`: its intermediate `String` would not be zeroized.
        let mut out = Zeroizing::new(String::with_capacity(2 * KEY_LEN));
        for b in self.bytes.iter() {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
        out
    }

    /// The key check value of this key: see [`crate::Keyring::key_check`].
    #[must_use]
    pub fn check_value(&self) -> [u8; 16] {
        crate::cipher::key_check_value(self)
    }

    /// The raw bytes, for initializing ciphers inside this crate only.
    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    fn zeroed() -> Self {
        Self { bytes: Box::new([0u8; KEY_LEN]) }
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl ZeroizeOnDrop for Key {}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_hex_round_trips() {
        let key = Key::generate().unwrap();
        let hex = key.to_hex();
        assert_eq!(hex.len(), 64);
        let again = Key::from_hex(&hex).unwrap();
        assert_eq!(key.expose(), again.expose());
    }

    #[test]
    fn generated_keys_differ() {
        let a = Key::generate().unwrap();
        let b = Key::generate().unwrap();
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn parse_trims_whitespace_like_a_key_file() {
        let hex = "00".repeat(31) + "ff";
        let key = Key::parse(&format!("  {hex}\n")).unwrap();
        assert_eq!(key.expose()[31], 0xff);
    }
}
