use std::fmt;

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::error::{RegistryError, Result};

/// Every token starts with this, so a leaked one is easy to recognise and to scan for.
const PREFIX: &str = "smt_";
/// Random bytes per token: 256 bits.
const BYTES: usize = 32;
/// Length of a token: the prefix and 43 characters of unpadded base64url.
const LEN: usize = PREFIX.len() + 43;

/// An agent's bearer token: shown once at registration or rotation, never stored (only
/// its hash is), never printed by `Debug`, zeroized on drop.
pub struct Token(Zeroizing<String>);

impl Token {
    /// A fresh token from the operating system's random source.
    pub(crate) fn generate() -> Result<Self> {
        let mut bytes = Zeroizing::new([0u8; BYTES]);
        getrandom::fill(&mut bytes[..])
            .map_err(|e| RegistryError::Invalid(format!("no randomness available: {e}")))?;
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..]);
        Ok(Self(Zeroizing::new(format!("{PREFIX}{body}"))))
    }

    /// The token text, to hand to the agent. Show it once; it cannot be recovered.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The hash the database keeps.
    pub(crate) fn hash(&self) -> [u8; 32] {
        hash_text(&self.0)
    }
}

/// BLAKE3 of a token's text. Tokens carry 256 random bits, so a fast hash is enough: there
/// is nothing to brute-force.
pub(crate) fn hash_text(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

/// Whether `token` has the shape of a token at all (checked before hashing, so garbage
/// costs nothing; the answer is the same opaque failure either way).
pub(crate) fn well_formed(token: &str) -> bool {
    token.len() == LEN
        && token.starts_with(PREFIX)
        && token[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_well_formed_and_redacted() {
        let a = Token::generate().unwrap();
        let b = Token::generate().unwrap();
        assert_ne!(a.expose(), b.expose());
        assert!(well_formed(a.expose()), "{}", a.expose());
        assert_eq!(format!("{a:?}"), "Token(<redacted>)");
        assert!(!well_formed("smt_short"));
        assert!(!well_formed(&format!("xxx_{}", &a.expose()[4..])));
        assert_ne!(a.hash(), b.hash());
    }
}
