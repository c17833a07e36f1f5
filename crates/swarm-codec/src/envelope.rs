//! The envelope header: what can be read from an envelope without any key.
//!
//! Layout (format version 1, all integers big-endian; `docs/FORMAT.md` has the full
//! description with worked examples):
//!
//! ```text
//! plain:      version(1) flags(1) payload
//! encrypted:  version(1) flags(1) cipher(1) key_id(4) nonce(12|24) ciphertext tag(16)
//! payload, or plaintext under the ciphertext:
//!             value                                   when not compressed
//!             uncompressed_len(4) lz4_block           when compressed
//! ```

use crate::cipher::TAG_LEN;
use crate::{Cipher, CodecError, KeyId};

/// The envelope format version this crate writes (and the only one it reads).
pub const FORMAT_VERSION: u8 = 1;

/// Flags bit 0: the payload is `uncompressed_len(u32) || LZ4 block`.
pub(crate) const FLAG_COMPRESSED: u8 = 0b0000_0001;
/// Flags bit 1: cipher id, key id and nonce follow; the payload is AEAD ciphertext + tag.
pub(crate) const FLAG_ENCRYPTED: u8 = 0b0000_0010;
const KNOWN_FLAGS: u8 = FLAG_COMPRESSED | FLAG_ENCRYPTED;

/// Length of the header of a plain envelope (version and flags).
pub const PLAIN_HEADER_LEN: usize = 2;
/// Length of the length field in front of an LZ4 block.
pub(crate) const LEN_FIELD: usize = 4;
/// Bytes between the flags and the nonce of an encrypted envelope: cipher id and key id.
const SEAL_FIELDS: usize = 1 + 4;
/// Offset of the cipher id in an encrypted envelope.
pub(crate) const CIPHER_OFFSET: usize = PLAIN_HEADER_LEN;
/// Offset of the big-endian key id in an encrypted envelope.
pub(crate) const KEY_ID_OFFSET: usize = CIPHER_OFFSET + 1;
/// Offset of the nonce in an encrypted envelope.
pub(crate) const NONCE_OFFSET: usize = PLAIN_HEADER_LEN + SEAL_FIELDS;

/// The most an envelope can be longer than the value it holds: the header of an
/// XChaCha20-Poly1305 envelope (2 + 1 + 4 + 24 bytes) plus the 16-byte tag. Compression is
/// kept only when it makes the payload shorter than the value, so it never adds to this.
pub const MAX_OVERHEAD: usize = PLAIN_HEADER_LEN + SEAL_FIELDS + 24 + TAG_LEN;

/// The longest envelope a value of `value_len` bytes can produce, under any cipher and
/// compression setting (saturating at `usize::MAX`).
#[must_use]
pub const fn max_envelope_len(value_len: usize) -> usize {
    value_len.saturating_add(MAX_OVERHEAD)
}

/// The header of an envelope, read by [`inspect`] without decrypting anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    version: u8,
    compressed: bool,
    sealing: Option<(Cipher, KeyId)>,
}

impl Header {
    /// The envelope format version (always [`FORMAT_VERSION`] for a parsed header).
    #[must_use]
    pub fn version(&self) -> u8 {
        self.version
    }

    /// Whether the value is LZ4-compressed (inside the encryption when encrypted).
    #[must_use]
    pub fn is_compressed(&self) -> bool {
        self.compressed
    }

    /// Whether the value is encrypted.
    #[must_use]
    pub fn is_encrypted(&self) -> bool {
        self.sealing.is_some()
    }

    /// The cipher an encrypted value was sealed with.
    #[must_use]
    pub fn cipher(&self) -> Option<Cipher> {
        self.sealing.map(|(c, _)| c)
    }

    /// The key an encrypted value was sealed under.
    #[must_use]
    pub fn key_id(&self) -> Option<KeyId> {
        self.sealing.map(|(_, k)| k)
    }

    /// Length of the header in bytes, nonce included: 2 for plain envelopes, 19 or 31 for
    /// encrypted ones.
    #[must_use]
    pub fn header_len(&self) -> usize {
        match self.sealing {
            None => PLAIN_HEADER_LEN,
            Some((cipher, _)) => PLAIN_HEADER_LEN + SEAL_FIELDS + cipher.nonce_len(),
        }
    }
}

/// Reads the header of `envelope` without decrypting or decompressing anything, for
/// example to count values not yet sealed under the active key. Also checks that the
/// envelope is long enough for its header, tag and length field.
///
/// # Errors
/// [`CodecError::UnsupportedVersion`], [`CodecError::UnknownFlags`],
/// [`CodecError::UnknownCipher`] or [`CodecError::Truncated`].
pub fn inspect(envelope: &[u8]) -> Result<Header, CodecError> {
    Parsed::new(envelope).map(|p| p.header)
}

/// An envelope split into its parts, with every length checked.
pub(crate) struct Parsed<'a> {
    pub(crate) header: Header,
    /// The header bytes, nonce included: the first part of the associated data.
    pub(crate) header_bytes: &'a [u8],
    /// Empty for plain envelopes.
    pub(crate) nonce: &'a [u8],
    /// Plain: the payload. Encrypted: the ciphertext without the tag.
    pub(crate) body: &'a [u8],
    /// Empty for plain envelopes.
    pub(crate) tag: &'a [u8],
}

impl<'a> Parsed<'a> {
    pub(crate) fn new(envelope: &'a [u8]) -> Result<Self, CodecError> {
        let (&version, rest) = envelope.split_first().ok_or(CodecError::Truncated)?;
        if version != FORMAT_VERSION {
            return Err(CodecError::UnsupportedVersion(version));
        }
        let (&flags, rest) = rest.split_first().ok_or(CodecError::Truncated)?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(CodecError::UnknownFlags(flags));
        }
        let compressed = flags & FLAG_COMPRESSED != 0;
        if flags & FLAG_ENCRYPTED == 0 {
            if compressed && rest.len() < LEN_FIELD {
                return Err(CodecError::Truncated);
            }
            let (header_bytes, body) = envelope.split_at(PLAIN_HEADER_LEN);
            return Ok(Self {
                header: Header { version, compressed, sealing: None },
                header_bytes,
                nonce: &[],
                body,
                tag: &[],
            });
        }
        let (&cipher_id, rest) = rest.split_first().ok_or(CodecError::Truncated)?;
        let cipher = Cipher::from_id(cipher_id)?;
        let (key_id, rest) = rest.split_first_chunk::<4>().ok_or(CodecError::Truncated)?;
        let key_id = KeyId::new(u32::from_be_bytes(*key_id));
        let (nonce, rest) =
            rest.split_at_checked(cipher.nonce_len()).ok_or(CodecError::Truncated)?;
        let body_len = rest.len().checked_sub(TAG_LEN).ok_or(CodecError::Truncated)?;
        let (body, tag) = rest.split_at(body_len);
        let header = Header { version, compressed, sealing: Some((cipher, key_id)) };
        let header_bytes = envelope.get(..header.header_len()).ok_or(CodecError::Truncated)?;
        Ok(Self { header, header_bytes, nonce, body, tag })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_is_the_xchacha_header_plus_tag() {
        assert_eq!(MAX_OVERHEAD, 47);
        assert_eq!(max_envelope_len(usize::MAX), usize::MAX);
    }

    #[test]
    fn structural_errors_in_order() {
        assert!(matches!(inspect(&[]), Err(CodecError::Truncated)));
        assert!(matches!(inspect(&[2]), Err(CodecError::UnsupportedVersion(2))));
        assert!(matches!(inspect(&[1]), Err(CodecError::Truncated)));
        assert!(matches!(inspect(&[1, 4]), Err(CodecError::UnknownFlags(4))));
        assert!(matches!(inspect(&[1, 0x80, 0, 0]), Err(CodecError::UnknownFlags(0x80))));
        assert!(matches!(inspect(&[1, 1, 0, 0, 0]), Err(CodecError::Truncated)));
        assert!(matches!(inspect(&[1, 2]), Err(CodecError::Truncated)));
        assert!(matches!(inspect(&[1, 2, 9]), Err(CodecError::UnknownCipher(9))));
        assert!(matches!(inspect(&[1, 2, 1, 0, 0]), Err(CodecError::Truncated)));
        // Header and nonce complete but one byte short of a tag.
        let mut short = vec![1, 2, 1, 0, 0, 0, 7];
        short.extend_from_slice(&[0; 12 + 15]);
        assert!(matches!(inspect(&short), Err(CodecError::Truncated)));
        short.push(0);
        let h = inspect(&short).unwrap();
        assert_eq!(
            (h.cipher(), h.key_id(), h.header_len()),
            (Some(Cipher::Aes256Gcm), Some(KeyId::new(7)), 19)
        );
    }

    #[test]
    fn plain_headers() {
        let h = inspect(&[1, 0]).unwrap();
        assert!(!h.is_encrypted() && !h.is_compressed());
        assert_eq!((h.version(), h.header_len(), h.cipher(), h.key_id()), (1, 2, None, None));
        let h = inspect(&[1, 1, 0, 0, 0, 0]).unwrap();
        assert!(h.is_compressed() && !h.is_encrypted());
    }
}
