//! Search cursors: opaque, sealed positions that only the store that issued them opens.
//!
//! A search page ends either on a record the caller can see or on the end of the scan
//! window, which may be a record the caller cannot see (or an expired one). So the
//! position a cursor carries can name a hidden record, and it is never shown: it is sealed
//! with AES-256-GCM under a key drawn at random when the store opens and kept only in
//! memory (zeroized on drop). The associated data binds the cursor to the principal and to
//! the query it continues, so a cursor cannot be read, invented, edited, handed to another
//! agent or used for another query; every one of those fails the same way.
//!
//! Every cursor has the same length, whatever it names: a position is padded to
//! [`INLINE_LEN`] bytes before it is sealed. A window end that does not fit (a long
//! namespace and key, which a visible page end may show but a hidden one must not) is kept
//! in a small in-memory table instead, and the cursor carries a random handle to it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use base64::Engine as _;
use parking_lot::Mutex;
use swarm_codec::{Cipher, Codec, CodecConfig, Key, KeyId, Keyring, Seal};
use zeroize::Zeroizing;

use crate::error::{Result, StoreError};

/// Bytes of sealed plaintext in every cursor: a tag byte, then either a position
/// (`u32` namespace length, namespace, `u32` key length, key) or a handle, padded with
/// zeros. Most positions fit, so most cursors need no state.
pub(crate) const INLINE_LEN: usize = 256;
/// Long window ends kept in memory, at most; the oldest is forgotten first (its cursor
/// then asks for the search to start again).
const SPILL_CAPACITY: usize = 4096;
/// A spilled position is named by this many random bytes.
const HANDLE_LEN: usize = 16;
/// Longer cursors are refused before they are decoded. A cursor holds at most one
/// namespace and one key (1280 bytes with the default limits, about 2000 characters
/// sealed), so this is generous for any sensible limits.
const MAX_CURSOR_CHARS: usize = 1 << 20;

const TAG_INLINE: u8 = 1;
const TAG_SPILLED: u8 = 2;
/// Associated data prefix, so a cursor can never be confused with anything else sealed.
const DOMAIN: &[u8] = b"swarm-memory search cursor v1\0";

/// What a caller sees for every cursor that does not open.
pub(crate) fn invalid_cursor() -> StoreError {
    StoreError::invalid("the cursor is not valid here: start the search again")
}

/// Whether a position may be shown by its length: a page that ended on a record the caller
/// saw may carry a longer cursor; a window end, which may be hidden, never does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exposure {
    /// The position is a record the caller can see.
    Visible,
    /// The position may be a record the caller cannot see.
    MaybeHidden,
}

/// Seals and opens search cursors for one store.
pub(crate) struct CursorSeal {
    codec: Codec,
    spilled: Mutex<Spill>,
}

#[derive(Default)]
struct Spill {
    positions: HashMap<[u8; HANDLE_LEN], (String, String)>,
    order: VecDeque<[u8; HANDLE_LEN]>,
}

impl std::fmt::Debug for CursorSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CursorSeal").finish_non_exhaustive()
    }
}

impl CursorSeal {
    /// A sealer with a fresh random key.
    pub(crate) fn generate() -> std::result::Result<Self, swarm_codec::CodecError> {
        let ring = Keyring::new(KeyId::new(0), Key::generate()?);
        // No compression: its output length would depend on the position it hides.
        let config =
            CodecConfig::default().with_cipher(Cipher::Aes256Gcm).with_compress_encrypted(false);
        Ok(Self { codec: Codec::new(config, Some(Arc::new(ring))), spilled: Mutex::default() })
    }

    /// Seals the position `(namespace, key)` for the query and principal `binding`
    /// describes.
    pub(crate) fn seal(
        &self,
        binding: &[u8],
        namespace: &str,
        key: &str,
        exposure: Exposure,
    ) -> Result<String> {
        let inline = 1 + 4 + namespace.len() + 4 + key.len();
        let mut plain = Zeroizing::new(Vec::with_capacity(INLINE_LEN.max(inline)));
        if inline <= INLINE_LEN || exposure == Exposure::Visible {
            plain.push(TAG_INLINE);
            for part in [namespace, key] {
                let len = u32::try_from(part.len()).map_err(|_| invalid_cursor())?;
                plain.extend_from_slice(&len.to_be_bytes());
                plain.extend_from_slice(part.as_bytes());
            }
        } else {
            let mut handle = [0u8; HANDLE_LEN];
            getrandom::fill(&mut handle)
                .map_err(|_| StoreError::invalid("no random bytes for a search cursor"))?;
            let mut spill = self.spilled.lock();
            if spill.order.len() >= SPILL_CAPACITY
                && let Some(old) = spill.order.pop_front()
            {
                spill.positions.remove(&old);
            }
            spill.positions.insert(handle, (namespace.to_owned(), key.to_owned()));
            spill.order.push_back(handle);
            plain.push(TAG_SPILLED);
            plain.extend_from_slice(&handle);
        }
        // Pad to a multiple of the inline length: every cursor that may name a hidden
        // record has exactly one length.
        let padded = plain.len().div_ceil(INLINE_LEN) * INLINE_LEN;
        plain.resize(padded, 0);
        let aad = aad(binding);
        let sealed = self
            .codec
            .encode(&plain, Seal::Encrypt { aad: &aad })
            .map_err(|_| StoreError::invalid("a search cursor could not be sealed"))?;
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed))
    }

    /// Opens a cursor sealed by [`CursorSeal::seal`] with the same `binding`. Anything
    /// else, for whatever reason, is [`invalid_cursor`].
    pub(crate) fn open(&self, binding: &[u8], cursor: &str) -> Result<(String, String)> {
        if cursor.len() > MAX_CURSOR_CHARS {
            return Err(invalid_cursor());
        }
        let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor.trim())
            .map_err(|_| invalid_cursor())?;
        let plain = Zeroizing::new(
            self.codec.decode_encrypted(&sealed, &aad(binding)).map_err(|_| invalid_cursor())?,
        );
        match plain.split_first() {
            Some((&TAG_INLINE, mut rest)) => {
                let mut part = || -> Result<String> {
                    let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(invalid_cursor)?;
                    let len =
                        usize::try_from(u32::from_be_bytes(*len)).map_err(|_| invalid_cursor())?;
                    if len > tail.len() {
                        return Err(invalid_cursor());
                    }
                    let (text, tail) = tail.split_at(len);
                    rest = tail;
                    String::from_utf8(text.to_vec()).map_err(|_| invalid_cursor())
                };
                let namespace = part()?;
                let key = part()?;
                Ok((namespace, key))
            }
            Some((&TAG_SPILLED, rest)) => {
                let handle: [u8; HANDLE_LEN] = rest
                    .get(..HANDLE_LEN)
                    .and_then(|h| h.try_into().ok())
                    .ok_or_else(invalid_cursor)?;
                self.spilled.lock().positions.get(&handle).cloned().ok_or_else(invalid_cursor)
            }
            _ => Err(invalid_cursor()),
        }
    }
}

fn aad(binding: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + binding.len());
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(binding);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_opens_only_with_its_binding_and_its_store() {
        let seal = CursorSeal::generate().unwrap();
        let c = seal.seal(b"ann|q", "ns", "key", Exposure::MaybeHidden).unwrap();
        assert_eq!(seal.open(b"ann|q", &c).unwrap(), ("ns".into(), "key".into()));
        let refused = |r: Result<(String, String)>| match r {
            Err(StoreError::Invalid(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let m = refused(seal.open(b"bob|q", &c));
        assert_eq!(m, refused(seal.open(b"ann|other", &c)));
        assert_eq!(m, refused(CursorSeal::generate().unwrap().open(b"ann|q", &c)));
        assert_eq!(m, refused(seal.open(b"ann|q", "not base64!")));
        assert_eq!(m, refused(seal.open(b"ann|q", "")));
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&c).unwrap();
        for i in 0..bytes.len() {
            bytes[i] ^= 1;
            let edited = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
            assert_eq!(m, refused(seal.open(b"ann|q", &edited)), "byte {i}");
            bytes[i] ^= 1;
        }
    }

    #[test]
    fn cursors_that_may_name_hidden_records_all_have_one_length() {
        let seal = CursorSeal::generate().unwrap();
        let long = "k".repeat(1000);
        let lens: Vec<usize> = [("n", "k"), ("ns", "a-much-longer-key-name"), ("n", long.as_str())]
            .iter()
            .map(|(n, k)| seal.seal(b"b", n, k, Exposure::MaybeHidden).unwrap().len())
            .collect();
        assert!(lens.iter().all(|&l| l == lens[0]), "{lens:?}");
        // The long one was spilled and still opens.
        let c = seal.seal(b"b", "n", &long, Exposure::MaybeHidden).unwrap();
        assert_eq!(seal.open(b"b", &c).unwrap().1, long);
        // A visible position may be longer, and then needs no state.
        let c = seal.seal(b"b", "n", &long, Exposure::Visible).unwrap();
        assert!(c.len() > lens[0]);
        assert_eq!(seal.open(b"b", &c).unwrap().1, long);
    }

    #[test]
    fn the_spill_table_is_bounded() {
        let seal = CursorSeal::generate().unwrap();
        let long = "k".repeat(300);
        let first = seal.seal(b"b", "n", &long, Exposure::MaybeHidden).unwrap();
        for _ in 0..SPILL_CAPACITY {
            seal.seal(b"b", "n", &long, Exposure::MaybeHidden).unwrap();
        }
        assert_eq!(seal.spilled.lock().positions.len(), SPILL_CAPACITY);
        assert!(matches!(seal.open(b"b", &first), Err(StoreError::Invalid(_))));
    }
}
