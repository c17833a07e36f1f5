//! The AEAD ciphers an envelope can be sealed with, and the initialized cipher instances a
//! keyring keeps for each key.

use std::fmt;
use std::str::FromStr;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::array::typenum::U16;
use aes_gcm::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};

use crate::{CodecError, Key};

/// Length of the authentication tag of every supported cipher.
pub const TAG_LEN: usize = 16;

/// An AEAD cipher. The numeric id is written into each encrypted envelope, so the cipher
/// used for new writes can change while older values stay readable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Cipher {
    /// AES-256-GCM with a random 96-bit nonce (id 1). The default: hardware-accelerated on
    /// current x86-64 and ARMv8 CPUs, and the cipher most audits expect.
    #[default]
    Aes256Gcm,
    /// ChaCha20-Poly1305 (RFC 8439) with a random 96-bit nonce (id 2). Constant-time in
    /// software; the better choice on CPUs without AES instructions.
    ChaCha20Poly1305,
    /// XChaCha20-Poly1305 with a random 192-bit nonce (id 3). Random nonces of this size
    /// never collide in practice, so one key can seal far more than the ~2^32 values that
    /// 96-bit random nonces allow; costs 12 more bytes per value.
    XChaCha20Poly1305,
}

impl Cipher {
    /// Every cipher, in id order.
    pub const ALL: [Cipher; 3] =
        [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305, Cipher::XChaCha20Poly1305];

    /// The id written into envelopes.
    #[must_use]
    pub const fn id(self) -> u8 {
        match self {
            Cipher::Aes256Gcm => 1,
            Cipher::ChaCha20Poly1305 => 2,
            Cipher::XChaCha20Poly1305 => 3,
        }
    }

    /// The cipher with envelope id `id`.
    ///
    /// # Errors
    /// [`CodecError::UnknownCipher`] for an id this crate does not know.
    pub const fn from_id(id: u8) -> Result<Self, CodecError> {
        match id {
            1 => Ok(Cipher::Aes256Gcm),
            2 => Ok(Cipher::ChaCha20Poly1305),
            3 => Ok(Cipher::XChaCha20Poly1305),
            other => Err(CodecError::UnknownCipher(other)),
        }
    }

    /// Length of this cipher's nonce in bytes (12 or 24).
    #[must_use]
    pub const fn nonce_len(self) -> usize {
        match self {
            Cipher::Aes256Gcm | Cipher::ChaCha20Poly1305 => 12,
            Cipher::XChaCha20Poly1305 => 24,
        }
    }

    /// The name used in configuration: `aes-256-gcm`, `chacha20-poly1305` or
    /// `xchacha20-poly1305`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Cipher::Aes256Gcm => "aes-256-gcm",
            Cipher::ChaCha20Poly1305 => "chacha20-poly1305",
            Cipher::XChaCha20Poly1305 => "xchacha20-poly1305",
        }
    }
}

impl fmt::Display for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Cipher {
    type Err = CodecError;

    /// Parses a configuration name (case-insensitive; `_` is accepted for `-`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        Cipher::ALL
            .into_iter()
            .find(|c| c.name() == wanted)
            .ok_or_else(|| CodecError::UnknownCipherName(s.to_owned()))
    }
}

/// The nonce of the key check computation: 24 bytes of ASCII, used with XChaCha20 only.
/// Data nonces are random, so a data envelope reuses it with probability 2^-192.
const KEY_CHECK_NONCE: &[u8; 24] = b"swarm-codec key check v1";

/// The key check value of `key`: the first 16 bytes of the XChaCha20-Poly1305 ciphertext
/// of 16 zero bytes under the fixed nonce [`KEY_CHECK_NONCE`] with empty associated data.
/// That is 16 bytes of XChaCha20 keystream, a pseudorandom function of the key: it
/// identifies the key but recovering the key from it means breaking ChaCha20. The keystream
/// for this nonce is never used to encrypt data.
pub(crate) fn key_check_value(key: &Key) -> [u8; 16] {
    key_check_with(&XChaCha20Poly1305::new(key.expose().into()))
}

fn key_check_with(xchacha: &XChaCha20Poly1305) -> [u8; 16] {
    let mut block = [0u8; 16];
    // XChaCha20-Poly1305 refuses only inputs longer than 256 GiB, so this cannot fail; if it
    // ever did, the all-zero block would simply never match a real stored check value.
    let _tag = xchacha.encrypt_inout_detached(KEY_CHECK_NONCE.into(), b"", (&mut block[..]).into());
    block
}

/// The initialized instances of every cipher for one key, so sealing a value does not
/// redo the AES key schedule. All of them zeroize their key state when dropped (the
/// `zeroize` features of `aes-gcm` and `chacha20poly1305` are enabled).
#[derive(Clone)]
pub(crate) struct CipherSet {
    aes: Aes256Gcm,
    chacha: ChaCha20Poly1305,
    xchacha: XChaCha20Poly1305,
    check: [u8; 16],
}

impl CipherSet {
    pub(crate) fn new(key: &Key) -> Self {
        let bytes = key.expose().into();
        let xchacha = XChaCha20Poly1305::new(bytes);
        let check = key_check_with(&xchacha);
        Self { aes: Aes256Gcm::new(bytes), chacha: ChaCha20Poly1305::new(bytes), xchacha, check }
    }

    pub(crate) fn check(&self) -> &[u8; 16] {
        &self.check
    }

    /// Encrypts `buf` in place and returns the tag. `nonce` has `cipher.nonce_len()` bytes.
    pub(crate) fn seal(
        &self,
        cipher: Cipher,
        nonce: &[u8],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], ()> {
        match cipher {
            Cipher::Aes256Gcm => seal_with(&self.aes, nonce, aad, buf),
            Cipher::ChaCha20Poly1305 => seal_with(&self.chacha, nonce, aad, buf),
            Cipher::XChaCha20Poly1305 => seal_with(&self.xchacha, nonce, aad, buf),
        }
    }

    /// Decrypts `buf` in place after checking `tag`; on failure `buf` is left as it was.
    pub(crate) fn open(
        &self,
        cipher: Cipher,
        nonce: &[u8],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8],
    ) -> Result<(), ()> {
        match cipher {
            Cipher::Aes256Gcm => open_with(&self.aes, nonce, aad, buf, tag),
            Cipher::ChaCha20Poly1305 => open_with(&self.chacha, nonce, aad, buf, tag),
            Cipher::XChaCha20Poly1305 => open_with(&self.xchacha, nonce, aad, buf, tag),
        }
    }
}

fn seal_with<A: AeadInOut<TagSize = U16>>(
    aead: &A,
    nonce: &[u8],
    aad: &[u8],
    buf: &mut [u8],
) -> Result<[u8; TAG_LEN], ()> {
    let nonce = <&aes_gcm::aead::Nonce<A>>::try_from(nonce).map_err(|_| ())?;
    let tag = aead.encrypt_inout_detached(nonce, aad, buf.into()).map_err(|_| ())?;
    Ok(tag.into())
}

fn open_with<A: AeadInOut<TagSize = U16>>(
    aead: &A,
    nonce: &[u8],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8],
) -> Result<(), ()> {
    let nonce = <&aes_gcm::aead::Nonce<A>>::try_from(nonce).map_err(|_| ())?;
    let tag = <&aes_gcm::aead::Tag<A>>::try_from(tag).map_err(|_| ())?;
    aead.decrypt_inout_detached(nonce, aad, buf.into(), tag).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for c in Cipher::ALL {
            assert_eq!(Cipher::from_id(c.id()).unwrap(), c);
            assert_eq!(c.name().parse::<Cipher>().unwrap(), c);
        }
        assert!(matches!(Cipher::from_id(0), Err(CodecError::UnknownCipher(0))));
        assert!(matches!(Cipher::from_id(4), Err(CodecError::UnknownCipher(4))));
        assert_eq!("AES_256_GCM".parse::<Cipher>().unwrap(), Cipher::Aes256Gcm);
        assert!(matches!("rot13".parse::<Cipher>(), Err(CodecError::UnknownCipherName(_))));
    }

    #[test]
    fn seal_and_open_every_cipher() {
        let key = Key::generate().unwrap();
        let set = CipherSet::new(&key);
        for c in Cipher::ALL {
            let nonce = vec![7u8; c.nonce_len()];
            let mut buf = b"attack at dawn".to_vec();
            let tag = set.seal(c, &nonce, b"aad", &mut buf).unwrap();
            assert_ne!(&buf[..], b"attack at dawn");
            let sealed = buf.clone();
            assert!(set.open(c, &nonce, b"other", &mut buf, &tag).is_err());
            assert_eq!(buf, sealed, "failed open leaves the buffer alone");
            set.open(c, &nonce, b"aad", &mut buf, &tag).unwrap();
            assert_eq!(&buf[..], b"attack at dawn");
            // A wrong-length nonce is refused, not a panic.
            assert!(set.seal(c, &[0u8; 5], b"", &mut buf).is_err());
        }
    }

    #[test]
    fn key_check_depends_on_key() {
        let a = Key::from_bytes(&[1u8; 32]).unwrap();
        let b = Key::from_bytes(&[2u8; 32]).unwrap();
        assert_eq!(a.check_value(), CipherSet::new(&a).check);
        assert_ne!(a.check_value(), b.check_value());
        assert_ne!(a.check_value(), [0u8; 16]);
    }
}
