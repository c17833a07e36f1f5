//! Encoding values into envelopes and back.

use std::sync::Arc;

use zeroize::{Zeroize as _, Zeroizing};

use crate::cipher::{CipherSet, TAG_LEN};
use crate::envelope::{
    CIPHER_OFFSET, FLAG_COMPRESSED, FLAG_ENCRYPTED, FORMAT_VERSION, KEY_ID_OFFSET, LEN_FIELD,
    NONCE_OFFSET, PLAIN_HEADER_LEN, Parsed,
};
use crate::{CodecConfig, CodecError, Keyring};

/// How [`Codec::encode`] should protect a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seal<'a> {
    /// Store the value unencrypted (still compressed when that pays).
    Plain,
    /// Encrypt the value under the keyring's active key, binding it to `aad`.
    Encrypt {
        /// Associated data: authenticated, not stored. Decoding must present the same bytes,
        /// so this binds the ciphertext to its record. The store passes a canonical encoding
        /// of swarm, namespace, key, ACL level, owner and team.
        aad: &'a [u8],
    },
}

/// Turns a value's bytes into the bytes stored in the database and back.
///
/// A codec is cheap to clone (the keyring is shared) and is `Send + Sync`. It reads no
/// clock, does no I/O and keeps no state between calls apart from its configuration and
/// keyring.
#[derive(Clone, Debug)]
pub struct Codec {
    config: CodecConfig,
    keyring: Option<Arc<Keyring>>,
}

impl Codec {
    /// A codec with the given settings. Without a keyring it writes and reads only plain
    /// envelopes, and answers [`CodecError::NoKey`] when asked to encrypt or to open an
    /// encrypted envelope.
    #[must_use]
    pub fn new(config: CodecConfig, keyring: Option<Arc<Keyring>>) -> Self {
        Self { config, keyring }
    }

    /// The settings this codec was built with.
    #[must_use]
    pub fn config(&self) -> &CodecConfig {
        &self.config
    }

    /// The keyring, if the codec has one.
    #[must_use]
    pub fn keyring(&self) -> Option<&Arc<Keyring>> {
        self.keyring.as_ref()
    }

    /// Encodes `plaintext` into an envelope: compressed with LZ4 when it is at least
    /// [`CodecConfig::compression_threshold`] bytes long and compression makes it shorter
    /// (and, for encrypted values, [`CodecConfig::compress_encrypted`] allows it), then
    /// encrypted under the active key when `seal` asks for it, with a fresh random nonce.
    ///
    /// # Errors
    /// [`CodecError::TooLarge`] when the value is longer than
    /// [`CodecConfig::max_decoded_len`] (so nothing is written that could not be read back),
    /// [`CodecError::NoKey`] when encryption is asked of a codec without keyring,
    /// [`CodecError::Random`] when no nonce can be drawn, and [`CodecError::Compression`]
    /// if LZ4 fails.
    pub fn encode(&self, plaintext: &[u8], seal: Seal<'_>) -> Result<Vec<u8>, CodecError> {
        let max = self.config.max_decoded_len();
        if plaintext.len() > max {
            return Err(CodecError::TooLarge { len: plaintext.len(), max });
        }
        let sealing = match seal {
            Seal::Plain => None,
            Seal::Encrypt { aad } => {
                let ring = self.require_keyring()?;
                Some((ring.active_id(), ring.active_set()?, aad))
            }
        };
        let cipher = self.config.cipher();
        let header_len = match sealing {
            None => PLAIN_HEADER_LEN,
            Some(_) => NONCE_OFFSET + cipher.nonce_len(),
        };
        let tag_len = if sealing.is_some() { TAG_LEN } else { 0 };
        let try_compress = plaintext.len() >= self.config.compression_threshold()
            && (sealing.is_none() || self.config.compress_encrypted())
            && u32::try_from(plaintext.len()).is_ok();
        let payload_capacity = if try_compress {
            plaintext
                .len()
                .max(LEN_FIELD + lz4_flex::block::get_maximum_output_size(plaintext.len()))
        } else {
            plaintext.len()
        };

        // Reserve everything up front: the buffer never reallocates, so no copy of the
        // plaintext is left behind in freed memory before it is encrypted in place.
        let mut out = Vec::with_capacity(header_len + payload_capacity + tag_len);
        out.resize(header_len, 0);
        out[0] = FORMAT_VERSION;
        // Everything that can fail before sealing happens before the plaintext is copied in.
        if let Some((key_id, _, _)) = sealing {
            out[CIPHER_OFFSET] = cipher.id();
            out[KEY_ID_OFFSET..NONCE_OFFSET].copy_from_slice(&key_id.get().to_be_bytes());
            getrandom::fill(&mut out[NONCE_OFFSET..header_len]).map_err(|_| CodecError::Random)?;
        }
        let mut flags = 0;
        if try_compress && compress_into(plaintext, &mut out, sealing.is_some())? {
            flags |= FLAG_COMPRESSED;
        } else {
            out.extend_from_slice(plaintext);
        }

        let Some((_, set, aad)) = sealing else {
            out[1] = flags;
            return Ok(out);
        };
        out[1] = flags | FLAG_ENCRYPTED;
        let (header, body) = out.split_at_mut(header_len);
        let nonce = &header[NONCE_OFFSET..];
        let Ok(tag) = with_aad(header, aad, |full_aad| set.seal(cipher, nonce, full_aad, body))
        else {
            body.zeroize();
            // The AEADs refuse only messages of 64 GiB and more, which the length limit (at
            // most 4 GiB) already excludes; report the input size should that ever change.
            return Err(CodecError::TooLarge { len: plaintext.len(), max });
        };
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Decodes an envelope written by [`Codec::encode`], checking `aad` for encrypted
    /// envelopes (it is ignored for plain ones).
    ///
    /// Plain envelopes carry no integrity protection, and an encrypted envelope with its
    /// encrypted flag cleared *is* a plain envelope (of the wrong bytes). So when a record
    /// is supposed to be encrypted, use [`Codec::decode_encrypted`]: a plain envelope
    /// written in its place, by tampering or by someone with write access to the database,
    /// is then refused rather than believed.
    ///
    /// The plaintext is returned as an ordinary `Vec`: the caller turns it into its own
    /// value types at once, so wrapping it in `Zeroizing` here would promise more than it
    /// keeps. Buffers internal to the codec (a decrypted compressed payload, a partly
    /// decompressed value) are zeroized.
    ///
    /// # Errors
    /// Structural errors from [`crate::inspect`]; [`CodecError::NoKey`] or
    /// [`CodecError::UnknownKeyId`] when the key is not available;
    /// [`CodecError::Authentication`] for a wrong key, tampered bytes or wrong `aad`;
    /// [`CodecError::TooLarge`] and [`CodecError::Corrupt`] for payloads over the limit or
    /// bad compressed data.
    pub fn decode(&self, envelope: &[u8], aad: &[u8]) -> Result<Vec<u8>, CodecError> {
        self.open(&Parsed::new(envelope)?, aad)
    }

    /// [`Codec::decode`] (or, with `require_encrypted`, [`Codec::decode_encrypted`]) of an
    /// envelope the caller owns, opened in its own buffer where it can: an uncompressed
    /// payload is decrypted in place and the header removed, so a read that already holds
    /// the stored bytes does not copy them again. The associated data is built by `aad`
    /// only when the envelope is encrypted (a plain envelope has no tag to bind it to).
    /// Both showed in profiles of GET.
    ///
    /// # Errors
    /// As [`Codec::decode`], plus [`CodecError::NotEncrypted`] for a plain envelope when
    /// `require_encrypted`.
    pub fn decode_owned<A: AsRef<[u8]>>(
        &self,
        mut envelope: Vec<u8>,
        require_encrypted: bool,
        aad: impl FnOnce() -> A,
    ) -> Result<Vec<u8>, CodecError> {
        let parsed = parse_for(&envelope, require_encrypted)?;
        if parsed.header.is_compressed() {
            // Decompressing writes a new buffer anyway.
            return self.open_lazily(&parsed, aad);
        }
        let max = self.config.max_decoded_len();
        let (head_len, nonce_len, body_len) =
            (parsed.header_bytes.len(), parsed.nonce.len(), parsed.body.len());
        let too_large = CodecError::TooLarge { len: body_len, max };
        if let (Some(cipher), Some(key_id)) = (parsed.header.cipher(), parsed.header.key_id()) {
            // The key first, then the size, as `decode` reports them.
            let set: &CipherSet = self.require_keyring()?.get(key_id)?;
            if body_len > max {
                return Err(too_large);
            }
            let aad = aad();
            let (head, rest) = envelope.split_at_mut(head_len);
            let (body, tag) = rest.split_at_mut(body_len);
            let head: &[u8] = head;
            // The nonce ends the header.
            let nonce = &head[head_len - nonce_len..];
            let opened = with_aad(head, aad.as_ref(), |full_aad| {
                set.open(cipher, nonce, full_aad, body, tag)
            });
            if opened.is_err() {
                body.zeroize();
                return Err(CodecError::Authentication);
            }
            envelope.truncate(head_len + body_len);
        } else if body_len > max {
            return Err(too_large);
        }
        envelope.drain(..head_len);
        Ok(envelope)
    }

    /// [`Codec::decode`] (or, with `require_encrypted`, [`Codec::decode_encrypted`]) with
    /// the associated data built by `aad` only when the envelope is encrypted: a caller
    /// that reads many plain values need not build it for each.
    ///
    /// # Errors
    /// As [`Codec::decode_owned`].
    pub fn decode_with<A: AsRef<[u8]>>(
        &self,
        envelope: &[u8],
        require_encrypted: bool,
        aad: impl FnOnce() -> A,
    ) -> Result<Vec<u8>, CodecError> {
        self.open_lazily(&parse_for(envelope, require_encrypted)?, aad)
    }

    /// Like [`Codec::decode`], but refuses plain envelopes with
    /// [`CodecError::NotEncrypted`].
    ///
    /// # Errors
    /// As [`Codec::decode`], plus [`CodecError::NotEncrypted`].
    pub fn decode_encrypted(&self, envelope: &[u8], aad: &[u8]) -> Result<Vec<u8>, CodecError> {
        self.open(&parse_for(envelope, true)?, aad)
    }

    /// For online key rotation: `None` when the envelope is plain or already sealed under
    /// the active key with the configured cipher; otherwise the same value opened with
    /// `aad` and sealed again under the active key and cipher, with a fresh nonce (and the
    /// current compression settings).
    ///
    /// An envelope that needs no change is not decrypted, so this does not verify it.
    ///
    /// # Errors
    /// As [`Codec::decode`] and [`Codec::encode`].
    pub fn reencrypt(&self, envelope: &[u8], aad: &[u8]) -> Result<Option<Vec<u8>>, CodecError> {
        let parsed = Parsed::new(envelope)?;
        let (Some(cipher), Some(key_id)) = (parsed.header.cipher(), parsed.header.key_id()) else {
            return Ok(None);
        };
        let ring = self.require_keyring()?;
        if key_id == ring.active_id() && cipher == self.config.cipher() {
            return Ok(None);
        }
        let plaintext = Zeroizing::new(self.open(&parsed, aad)?);
        self.encode(&plaintext, Seal::Encrypt { aad }).map(Some)
    }

    fn require_keyring(&self) -> Result<&Keyring, CodecError> {
        self.keyring.as_deref().ok_or(CodecError::NoKey)
    }

    /// [`Codec::open`] with the associated data built only for an encrypted envelope.
    fn open_lazily<A: AsRef<[u8]>>(
        &self,
        parsed: &Parsed<'_>,
        aad: impl FnOnce() -> A,
    ) -> Result<Vec<u8>, CodecError> {
        if parsed.header.is_encrypted() {
            self.open(parsed, aad().as_ref())
        } else {
            self.open(parsed, &[])
        }
    }

    fn open(&self, parsed: &Parsed<'_>, aad: &[u8]) -> Result<Vec<u8>, CodecError> {
        let max = self.config.max_decoded_len();
        let (Some(cipher), Some(key_id)) = (parsed.header.cipher(), parsed.header.key_id()) else {
            if parsed.header.is_compressed() {
                return decompress(parsed.body, max, false);
            }
            if parsed.body.len() > max {
                return Err(CodecError::TooLarge { len: parsed.body.len(), max });
            }
            return Ok(parsed.body.to_vec());
        };
        let set: &CipherSet = self.require_keyring()?.get(key_id)?;
        // A compressed payload is always shorter than its value, so this bounds both cases
        // before the ciphertext is copied.
        if parsed.body.len() > max {
            return Err(CodecError::TooLarge { len: parsed.body.len(), max });
        }
        let mut buf = parsed.body.to_vec();
        with_aad(parsed.header_bytes, aad, |full_aad| {
            set.open(cipher, parsed.nonce, full_aad, &mut buf, parsed.tag)
        })
        .map_err(|()| CodecError::Authentication)?;
        if !parsed.header.is_compressed() {
            return Ok(buf);
        }
        let buf = Zeroizing::new(buf);
        decompress(&buf, max, true)
    }
}

/// Parses `envelope`, refusing a plain one when `require_encrypted`.
fn parse_for(envelope: &[u8], require_encrypted: bool) -> Result<Parsed<'_>, CodecError> {
    let parsed = Parsed::new(envelope)?;
    if require_encrypted && !parsed.header.is_encrypted() {
        return Err(CodecError::NotEncrypted);
    }
    Ok(parsed)
}

/// Compresses `plaintext` into `out` after the header as `len(u32 BE) || LZ4 block`.
/// Returns `false`, leaving `out` as it was, when that would not be shorter than the
/// plaintext; `out` must have the capacity for the worst case already.
fn compress_into(plaintext: &[u8], out: &mut Vec<u8>, sensitive: bool) -> Result<bool, CodecError> {
    let start = out.len();
    let declared = u32::try_from(plaintext.len()).map_err(|_| CodecError::Compression)?;
    out.extend_from_slice(&declared.to_be_bytes());
    out.resize(start + LEN_FIELD + lz4_flex::block::get_maximum_output_size(plaintext.len()), 0);
    let written = match lz4_flex::block::compress_into(plaintext, &mut out[start + LEN_FIELD..]) {
        Ok(n) => n,
        Err(_) => {
            if sensitive {
                out[start..].zeroize();
            }
            out.truncate(start);
            return Err(CodecError::Compression);
        }
    };
    if LEN_FIELD + written < plaintext.len() {
        out.truncate(start + LEN_FIELD + written);
        return Ok(true);
    }
    if sensitive {
        // The compressed form of a value that is about to be encrypted is plaintext too.
        out[start..].zeroize();
    }
    out.truncate(start);
    Ok(false)
}

/// Decompresses `len(u32 BE) || LZ4 block`, refusing declared lengths over `max` before
/// allocating, and any block that does not decompress to exactly the declared length.
fn decompress(payload: &[u8], max: usize, sensitive: bool) -> Result<Vec<u8>, CodecError> {
    // Inside an authenticated payload a missing length field means the writer was broken,
    // not that bytes were lost: that is corrupt data, not truncation.
    let (declared, block) = payload.split_first_chunk::<LEN_FIELD>().ok_or(if sensitive {
        CodecError::Corrupt
    } else {
        CodecError::Truncated
    })?;
    let declared = u32::from_be_bytes(*declared);
    let declared =
        usize::try_from(declared).map_err(|_| CodecError::TooLarge { len: usize::MAX, max })?;
    if declared > max {
        return Err(CodecError::TooLarge { len: declared, max });
    }
    // An LZ4 block expands at most about 255-fold (a match length grows by 255 per input
    // byte), so a tiny block declaring megabytes is corrupt; refuse it before allocating.
    if declared > block.len().saturating_mul(256).saturating_add(16) {
        return Err(CodecError::Corrupt);
    }
    let mut out = Zeroizing::new(vec![0u8; declared]);
    match lz4_flex::block::decompress_into(block, &mut out) {
        Ok(n) if n == declared => Ok(std::mem::take(&mut *out)),
        _ => {
            if !sensitive {
                // Nothing secret in a plain value: skip the wipe.
                let _plain = std::mem::take(&mut *out);
            }
            Err(CodecError::Corrupt)
        }
    }
}

/// Runs `f` with `header || aad`, the associated data of an encrypted envelope. The header
/// has a fixed length for its cipher, so the concatenation is unambiguous. Short
/// concatenations are assembled on the stack.
fn with_aad<R>(header: &[u8], aad: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    const STACK: usize = 512;
    let total = header.len() + aad.len();
    if total <= STACK {
        let mut buf = [0u8; STACK];
        buf[..header.len()].copy_from_slice(header);
        buf[header.len()..total].copy_from_slice(aad);
        f(&buf[..total])
    } else {
        let mut buf = Vec::with_capacity(total);
        buf.extend_from_slice(header);
        buf.extend_from_slice(aad);
        f(&buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cipher, Key, KeyId};

    fn codec(config: CodecConfig) -> Codec {
        let ring = Keyring::new(KeyId::new(1), Key::from_bytes(&[9; 32]).unwrap());
        Codec::new(config, Some(Arc::new(ring)))
    }

    #[test]
    fn decode_owned_agrees_with_decode_on_every_kind_of_envelope() {
        let text = "agent memory ".repeat(200);
        let values: [&[u8]; 4] = [b"", b"secret", text.as_bytes(), &[0, 1, 2, 255]];
        for cipher in [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305, Cipher::XChaCha20Poly1305] {
            let c = codec(CodecConfig::default().with_cipher(cipher));
            for value in values {
                for seal in [Seal::Plain, Seal::Encrypt { aad: b"row 1" }] {
                    let env = c.encode(value, seal).unwrap();
                    let encrypted = matches!(seal, Seal::Encrypt { .. });
                    let mut built = 0;
                    let got = c.decode_owned(env.clone(), false, || {
                        built += 1;
                        b"row 1".to_vec()
                    });
                    assert_eq!(got.unwrap(), value);
                    let borrowed = c.decode_with(&env, false, || {
                        built += 1;
                        b"row 1".to_vec()
                    });
                    assert_eq!(borrowed.unwrap(), value);
                    assert_eq!(built, 2 * usize::from(encrypted), "built only when encrypted");
                    let required = c.decode_owned(env.clone(), true, || b"row 1".to_vec());
                    let required_borrowed = c.decode_with(&env, true, || b"row 1".to_vec());
                    assert_eq!(
                        format!("{required:?}"),
                        format!("{required_borrowed:?}"),
                        "the owned and borrowed calls agree"
                    );
                    if encrypted {
                        assert_eq!(required.unwrap(), value);
                        let wrong = c.decode_owned(env.clone(), false, || b"row 2".to_vec());
                        assert!(matches!(wrong, Err(CodecError::Authentication)), "{wrong:?}");
                        let mut bad = env.clone();
                        *bad.last_mut().unwrap() ^= 1;
                        let bad = c.decode_owned(bad, true, || b"row 1".to_vec());
                        assert!(matches!(bad, Err(CodecError::Authentication)), "{bad:?}");
                    } else {
                        assert!(matches!(required, Err(CodecError::NotEncrypted)), "{required:?}");
                    }
                    // Every shorter prefix fails as decode fails.
                    for cut in 0..env.len().min(64) {
                        let owned =
                            c.decode_owned(env[..cut].to_vec(), false, || b"row 1".to_vec());
                        let borrowed = c.decode(&env[..cut], b"row 1");
                        assert_eq!(owned.is_err(), borrowed.is_err(), "cut at {cut}");
                    }
                }
            }
        }
        let c = codec(CodecConfig::default());
        assert!(matches!(c.decode_owned(Vec::new(), false, Vec::new), Err(CodecError::Truncated)));
        // An envelope over the size limit under a key this codec lacks reports the key
        // first, as `decode` does.
        let sealed = c.encode(&[7; 64], Seal::Encrypt { aad: b"" }).unwrap();
        let small = Codec::new(
            CodecConfig::default().with_max_decoded_len(8),
            Some(Arc::new(Keyring::new(KeyId::new(2), Key::from_bytes(&[3; 32]).unwrap()))),
        );
        let owned = small.decode_owned(sealed.clone(), false, Vec::new);
        assert_eq!(format!("{owned:?}"), format!("{:?}", small.decode(&sealed, b"")));
        assert!(matches!(owned, Err(CodecError::UnknownKeyId(_))), "{owned:?}");
        let plain = small.decode_owned(c.encode(&[7; 64], Seal::Plain).unwrap(), false, Vec::new);
        assert!(matches!(plain, Err(CodecError::TooLarge { len: 64, max: 8 })), "{plain:?}");
    }

    #[test]
    fn compression_kept_only_when_it_saves() {
        let c = codec(CodecConfig::default());
        let text = "agent memory ".repeat(200);
        let env = c.encode(text.as_bytes(), Seal::Plain).unwrap();
        assert_eq!(env[1], FLAG_COMPRESSED);
        assert!(env.len() < text.len() / 4);
        // Random bytes do not compress: stored as they are, flag clear.
        let mut noise = vec![0u8; 4096];
        getrandom::fill(&mut noise).unwrap();
        let env = c.encode(&noise, Seal::Plain).unwrap();
        assert_eq!(env[1], 0);
        assert_eq!(&env[2..], &noise[..]);
        // Below the threshold nothing is tried.
        let short = "a".repeat(1023);
        assert_eq!(c.encode(short.as_bytes(), Seal::Plain).unwrap()[1], 0);
        assert_eq!(c.encode("a".repeat(1024).as_bytes(), Seal::Plain).unwrap()[1], FLAG_COMPRESSED);
    }

    #[test]
    fn compress_encrypted_false_never_compresses_sealed_values() {
        let c = codec(CodecConfig::default().with_compress_encrypted(false));
        let text = "x".repeat(10_000);
        let env = c.encode(text.as_bytes(), Seal::Encrypt { aad: b"r" }).unwrap();
        assert_eq!(env[1], FLAG_ENCRYPTED);
        assert_eq!(env.len(), text.len() + 19 + 16);
        assert_eq!(c.encode(text.as_bytes(), Seal::Plain).unwrap()[1], FLAG_COMPRESSED);
    }

    #[test]
    fn long_aad_goes_through_the_heap_path() {
        let c = codec(CodecConfig::default().with_cipher(Cipher::XChaCha20Poly1305));
        let aad = vec![0x5a; 2000];
        let env = c.encode(b"v", Seal::Encrypt { aad: &aad }).unwrap();
        assert_eq!(c.decode(&env, &aad).unwrap(), b"v");
        assert!(matches!(c.decode(&env, &aad[1..]), Err(CodecError::Authentication)));
    }

    #[test]
    fn decompress_checks_before_allocating() {
        assert!(matches!(
            decompress(&[0xff, 0xff, 0xff, 0xff, 0], 1 << 20, false),
            Err(CodecError::TooLarge { .. })
        ));
        assert!(matches!(
            decompress(&[0, 0x10, 0, 0, 0], 1 << 20, false),
            Err(CodecError::Corrupt)
        ));
        assert!(matches!(decompress(&[0, 0], 1 << 20, false), Err(CodecError::Truncated)));
        assert!(matches!(decompress(&[0, 0], 1 << 20, true), Err(CodecError::Corrupt)));
        // Declared one byte, block yields two literals.
        assert!(matches!(
            decompress(&[0, 0, 0, 1, 0x20, b'a', b'b'], 1 << 20, false),
            Err(CodecError::Corrupt)
        ));
        assert_eq!(decompress(&[0, 0, 0, 2, 0x20, b'a', b'b'], 1 << 20, false).unwrap(), b"ab");
        // Declared three bytes, block yields two.
        assert!(matches!(
            decompress(&[0, 0, 0, 3, 0x20, b'a', b'b'], 1 << 20, false),
            Err(CodecError::Corrupt)
        ));
    }
}
