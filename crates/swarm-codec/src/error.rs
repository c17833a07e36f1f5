//! The one error type of this crate.

use crate::KeyId;

/// Everything that can go wrong while parsing keys, managing a keyring, or encoding and
/// decoding envelopes.
///
/// Security failures are opaque on purpose: a wrong key, tampered bytes and wrong associated
/// data (a record moved to another row) all give [`CodecError::Authentication`], with no
/// detail that would help an attacker tell them apart. Structural errors
/// ([`CodecError::Truncated`], [`CodecError::UnknownFlags`], ...) describe only the public
/// header, which anyone holding the bytes can read anyway.
///
/// No message ever contains key material or plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The value could not be authenticated: the key is wrong, the bytes were tampered with,
    /// or the associated data differs from the one it was sealed with (for example because
    /// the ciphertext was moved to another record).
    #[error("value failed authentication: wrong key, tampered data or moved record")]
    Authentication,

    /// The envelope's format version byte is not one this crate can read.
    #[error("unsupported envelope format version {0}")]
    UnsupportedVersion(u8),

    /// The envelope names a cipher id this crate does not know.
    #[error("unknown cipher id {0}")]
    UnknownCipher(u8),

    /// The envelope was sealed under a key id that is not in the keyring, or a keyring
    /// operation named an id it does not hold.
    #[error("unknown key id {0}")]
    UnknownKeyId(KeyId),

    /// The flags byte has bits set that format version 1 does not define (the whole byte is
    /// reported).
    #[error("unknown envelope flags {0:#04x}")]
    UnknownFlags(u8),

    /// The envelope ends before its header, nonce, length field or tag is complete.
    #[error("envelope is truncated")]
    Truncated,

    /// A value, declared or actual, is longer than the configured maximum. Checked before
    /// anything of that size is allocated.
    #[error("value of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The length found (declared in the envelope, or of the input).
        len: usize,
        /// The configured limit ([`crate::CodecConfig::max_decoded_len`]).
        max: usize,
    },

    /// The compressed payload is not valid LZ4, or decompresses to a length other than the
    /// one declared in front of it.
    #[error("compressed payload is corrupt")]
    Corrupt,

    /// Compression of a value failed. The value is never stored uncompressed in its place
    /// silently.
    #[error("compression failed")]
    Compression,

    /// Key material could not be parsed or has the wrong length. The reason never contains
    /// the key material itself.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),

    /// Encryption was requested, or an encrypted envelope must be opened, but the codec has
    /// no keyring.
    #[error("no encryption key configured")]
    NoKey,

    /// A key id was inserted into a keyring that already holds it.
    #[error("key id {0} is already in the keyring")]
    DuplicateKeyId(KeyId),

    /// The same key material was inserted under a second key id; rotating to an identical
    /// key would protect nothing.
    #[error("key material is already in the keyring as key id {0}")]
    DuplicateKey(KeyId),

    /// The active key cannot be removed from a keyring; make another key active first.
    #[error("key id {0} is active and cannot be removed")]
    ActiveKey(KeyId),

    /// A key check value stored with the data does not match the key configured under this
    /// id: the process was given the wrong key.
    #[error("key id {0} does not match its stored key check value: wrong key")]
    KeyCheckMismatch(KeyId),

    /// [`crate::Codec::decode_encrypted`] was given a plain (unencrypted) envelope.
    #[error("value is not encrypted but encryption is required")]
    NotEncrypted,

    /// A cipher name in configuration is not one of `aes-256-gcm`, `chacha20-poly1305` or
    /// `xchacha20-poly1305`.
    #[error("unknown cipher name {0:?}")]
    UnknownCipherName(String),

    /// The operating system's random number generator failed, so no key or nonce could be
    /// drawn. Nothing is ever encrypted with a weaker nonce instead.
    #[error("the operating system random number generator failed")]
    Random,
}
