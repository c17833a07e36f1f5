//! How a [`crate::Codec`] writes and which limits it enforces when reading.

use crate::Cipher;

/// Settings of a [`crate::Codec`]. Build it from [`CodecConfig::default`] with the `with_*`
/// methods:
///
/// ```
/// use swarm_codec::{Cipher, CodecConfig};
///
/// let config = CodecConfig::default()
///     .with_cipher(Cipher::ChaCha20Poly1305)
///     .with_compression_threshold(4096)
///     .with_compress_encrypted(false);
/// assert_eq!(config.max_decoded_len(), 16 * 1024 * 1024);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodecConfig {
    cipher: Cipher,
    compression_threshold: usize,
    compress_encrypted: bool,
    max_decoded_len: usize,
}

impl CodecConfig {
    /// Default for [`CodecConfig::compression_threshold`]: 1024 bytes, the seed's
    /// `SQLITE_COMPRESSION_THRESHOLD`.
    pub const DEFAULT_COMPRESSION_THRESHOLD: usize = 1024;

    /// Default for [`CodecConfig::max_decoded_len`]: 16 MiB.
    pub const DEFAULT_MAX_DECODED_LEN: usize = 16 * 1024 * 1024;

    /// The largest accepted [`CodecConfig::max_decoded_len`]: `u32::MAX` bytes, because
    /// the uncompressed length of a compressed value is stored as a `u32`.
    pub const MAX_DECODED_LEN_LIMIT: usize = u32::MAX as usize;

    /// The cipher new values are sealed with. Values sealed with another cipher still open:
    /// the cipher id is in each envelope.
    #[must_use]
    pub fn with_cipher(mut self, cipher: Cipher) -> Self {
        self.cipher = cipher;
        self
    }

    /// Values of at least this many bytes are compressed with LZ4, and stored compressed
    /// only when that makes them smaller. `usize::MAX` turns compression off.
    #[must_use]
    pub fn with_compression_threshold(mut self, bytes: usize) -> Self {
        self.compression_threshold = bytes;
        self
    }

    /// Whether values that are going to be encrypted may be compressed too (default
    /// `true`).
    ///
    /// Compression before encryption makes the ciphertext length depend on the content, not
    /// only on the plaintext length: an attacker who can see ciphertext sizes and influence
    /// part of a value (for example by writing text that gets merged with a secret) can learn
    /// about the rest of it from how well it compresses (the CRIME/BREACH family of
    /// attacks). Set `false` for records where that matters; encrypted values then take as
    /// much space as their plaintext plus the fixed envelope overhead. Plain values are
    /// compressed either way.
    #[must_use]
    pub fn with_compress_encrypted(mut self, compress: bool) -> Self {
        self.compress_encrypted = compress;
        self
    }

    /// The longest value accepted, both when encoding and when decoding. An envelope whose
    /// declared or actual plaintext is longer is refused with
    /// [`crate::CodecError::TooLarge`] before anything of that size is allocated. Clamped
    /// to [`CodecConfig::MAX_DECODED_LEN_LIMIT`].
    #[must_use]
    pub fn with_max_decoded_len(mut self, bytes: usize) -> Self {
        self.max_decoded_len = bytes.min(Self::MAX_DECODED_LEN_LIMIT);
        self
    }

    /// The cipher new values are sealed with.
    #[must_use]
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Values of at least this many bytes are tried with LZ4.
    #[must_use]
    pub fn compression_threshold(&self) -> usize {
        self.compression_threshold
    }

    /// Whether values that are encrypted may also be compressed.
    #[must_use]
    pub fn compress_encrypted(&self) -> bool {
        self.compress_encrypted
    }

    /// The longest value accepted when encoding and decoding.
    #[must_use]
    pub fn max_decoded_len(&self) -> usize {
        self.max_decoded_len
    }
}

impl Default for CodecConfig {
    fn default() -> Self {
        Self {
            cipher: Cipher::default(),
            compression_threshold: Self::DEFAULT_COMPRESSION_THRESHOLD,
            compress_encrypted: true,
            max_decoded_len: Self::DEFAULT_MAX_DECODED_LEN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = CodecConfig::default();
        assert_eq!(c.cipher(), Cipher::Aes256Gcm);
        assert_eq!(c.compression_threshold(), 1024);
        assert!(c.compress_encrypted());
        assert_eq!(c.max_decoded_len(), 16 << 20);
    }

    #[test]
    fn max_decoded_len_is_clamped_to_the_length_field() {
        let c = CodecConfig::default().with_max_decoded_len(usize::MAX);
        assert_eq!(c.max_decoded_len(), u32::MAX as usize);
    }
}
