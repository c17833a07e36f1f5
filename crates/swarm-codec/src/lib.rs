//! `swarm-codec`: the value envelope of swarm-memory.
//!
//! It turns a value's bytes into the bytes stored in the database, and back:
//!
//! - **compression**: LZ4 for values of at least a threshold (1024 bytes by default), kept
//!   only when it makes the value smaller, and applied before encryption;
//! - **encryption**: AES-256-GCM (default), ChaCha20-Poly1305 or XChaCha20-Poly1305 with a
//!   fresh nonce from the operating system's CSPRNG for every value;
//! - **binding**: the caller's associated data (for swarm-memory: swarm, namespace, key,
//!   ACL level, owner, team) and the envelope header are authenticated with the value, so
//!   a ciphertext copied to another record, or a header with a flipped flag, cipher id or
//!   key id, fails to open;
//! - **rotation**: a [`Keyring`] holds several keys by [`KeyId`], one active for new
//!   writes; [`Codec::reencrypt`] moves old values to the active key and [`inspect`] tells
//!   which values still need it.
//!
//! Every envelope, plain ones included, starts with a format version byte and a flags
//! byte, so a reader never guesses; the byte layout is in `docs/FORMAT.md`. Decoding
//! untrusted bytes never panics and never allocates more than
//! [`CodecConfig::max_decoded_len`]. Plain envelopes are not authenticated: for records
//! that must be encrypted, read with [`Codec::decode_encrypted`], which refuses them.
//!
//! What it is not: it does no I/O and reads no clock; it does not know about SQLite,
//! records, ACLs or where keys come from (the store reads `SQLITE_ENCRYPTION_KEY` or a key
//! file and hands a [`Key`] over); it does not stretch passphrases into keys; and it does
//! not hide value lengths (see [`CodecConfig::with_compress_encrypted`]).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use swarm_codec::{Codec, CodecConfig, CodecError, Key, KeyId, Keyring, Seal};
//!
//! # fn main() -> Result<(), CodecError> {
//! let key = Key::parse("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")?;
//! let keyring = Arc::new(Keyring::new(KeyId::new(1), key));
//! let codec = Codec::new(CodecConfig::default(), Some(keyring));
//!
//! // The associated data names the record the value belongs to.
//! let record = b"swarm=s1;ns=default;key=plan;level=1;owner=agent-7;team=";
//! let envelope = codec.encode(br#"{"goal":"ship it"}"#, Seal::Encrypt { aad: record })?;
//! assert_eq!(codec.decode(&envelope, record)?, br#"{"goal":"ship it"}"#);
//!
//! // The same bytes presented as another record's value do not open.
//! let elsewhere = b"swarm=s1;ns=default;key=plan;level=1;owner=agent-8;team=";
//! assert!(matches!(codec.decode(&envelope, elsewhere), Err(CodecError::Authentication)));
//!
//! // The header can be read without the key.
//! let header = swarm_codec::inspect(&envelope)?;
//! assert_eq!(header.key_id(), Some(KeyId::new(1)));
//! # Ok(())
//! # }
//! ```

mod cipher;
mod codec;
mod config;
mod envelope;
mod error;
mod key;
mod keyring;

pub use crate::cipher::{Cipher, TAG_LEN};
pub use crate::codec::{Codec, Seal};
pub use crate::config::CodecConfig;
pub use crate::envelope::{
    FORMAT_VERSION, Header, MAX_OVERHEAD, PLAIN_HEADER_LEN, inspect, max_envelope_len,
};
pub use crate::error::CodecError;
pub use crate::key::{KEY_LEN, Key, KeyId};
pub use crate::keyring::Keyring;
