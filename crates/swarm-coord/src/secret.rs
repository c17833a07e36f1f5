//! Swarm secrets: the HMAC keys that authenticate coordination messages.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use hmac::{KeyInit as _, Mac as _};
use swarm_acl::SwarmId;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{CoordError, Result};

pub(crate) type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// A swarm's 32-byte secret. Every member of the swarm holds it; a message's HMAC under it
/// proves that the sender holds it (not which agent sent it). Wiped on drop; `Debug` never
/// shows it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SwarmSecret([u8; 32]);

impl SwarmSecret {
    /// Wraps 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(text: &str) -> Result<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut out).map_err(|_| CoordError::Config {
            field: "swarm secret".into(),
            reason: "must be 64 hex characters".into(),
        })?;
        Ok(Self(out))
    }

    /// Parses standard base64 (padded or not) of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self> {
        let bad = || CoordError::Config {
            field: "swarm secret".into(),
            reason: "must be standard base64 of exactly 32 bytes".into(),
        };
        let text = text.trim();
        // 32 bytes are 43 or 44 characters; anything longer is refused before decoding.
        if text.len() > 44 {
            return Err(bad());
        }
        let mut out = [0u8; 33];
        let n = base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
            .decode_slice(text, &mut out)
            .map_err(|_| bad())?;
        if n != 32 {
            out.zeroize();
            return Err(bad());
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&out[..32]);
        out.zeroize();
        Ok(Self(key))
    }

    /// Parses 64 hex characters or standard base64 of 32 bytes (surrounding whitespace
    /// ignored), as in configuration files and environment variables.
    pub fn parse(text: &str) -> Result<Self> {
        Self::from_hex(text).or_else(|_| Self::from_base64(text)).map_err(|_| CoordError::Config {
            field: "swarm secret".into(),
            reason: "must be 64 hex characters or standard base64 of 32 bytes".into(),
        })
    }

    /// A fresh random secret from the operating system.
    pub fn generate() -> Result<Self> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|_| CoordError::Random)?;
        Ok(Self(key))
    }

    /// The secret as 64 lowercase hex characters, to hand to an agent in another language.
    pub fn to_hex(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(hex::encode(self.0))
    }

    pub(crate) fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail; a 32-byte key is used as is.
        match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        }
    }

    /// HMAC-SHA256 of `data` under this secret.
    pub(crate) fn sign(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = self.mac();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of a tag.
    pub(crate) fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.mac();
        mac.update(data);
        mac.verify_slice(tag).is_ok()
    }
}

impl fmt::Debug for SwarmSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SwarmSecret(<redacted>)")
    }
}

/// The secrets of the swarms a coordinator takes part in.
///
/// Each swarm has one signing secret and may have older secrets that are still accepted,
/// so a secret can be rotated without a flag day: give every node the new secret as the
/// signing one and keep the old one as `accept`, then drop it.
#[derive(Clone, Default)]
pub struct SwarmKeys {
    swarms: HashMap<SwarmId, Arc<SwarmEntry>>,
}

struct SwarmEntry {
    signing: SwarmSecret,
    accepted: Vec<SwarmSecret>,
}

impl SwarmKeys {
    /// No swarms.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the signing secret of a swarm (replacing any earlier one, keeping accepted
    /// older ones).
    pub fn with_secret(mut self, swarm: &SwarmId, secret: SwarmSecret) -> Self {
        let accepted = self.swarms.remove(swarm).map(|e| e.accepted.clone()).unwrap_or_default();
        self.swarms.insert(swarm.clone(), Arc::new(SwarmEntry { signing: secret, accepted }));
        self
    }

    /// Adds a secret that verifies but does not sign (the previous one, during a rotation).
    /// The swarm must already have a signing secret.
    pub fn accept_also(mut self, swarm: &SwarmId, secret: SwarmSecret) -> Result<Self> {
        let entry =
            self.swarms.get(swarm).ok_or_else(|| CoordError::NoSecret { swarm: swarm.clone() })?;
        let mut accepted = entry.accepted.clone();
        accepted.push(secret);
        let signing = entry.signing.clone();
        self.swarms.insert(swarm.clone(), Arc::new(SwarmEntry { signing, accepted }));
        Ok(self)
    }

    /// The swarms with a secret.
    pub fn swarms(&self) -> impl Iterator<Item = &SwarmId> {
        self.swarms.keys()
    }

    /// Whether the swarm has a secret.
    pub fn contains(&self, swarm: &SwarmId) -> bool {
        self.swarms.contains_key(swarm)
    }

    pub(crate) fn signing(&self, swarm: &SwarmId) -> Result<&SwarmSecret> {
        self.swarms
            .get(swarm)
            .map(|e| &e.signing)
            .ok_or_else(|| CoordError::NoSecret { swarm: swarm.clone() })
    }

    /// Whether `tag` is the MAC of `data` under one of the swarm's secrets.
    pub(crate) fn verify(&self, swarm: &SwarmId, data: &[u8], tag: &[u8]) -> bool {
        match self.swarms.get(swarm) {
            None => false,
            Some(e) => {
                // Every secret is tried, so timing says nothing about which one matched.
                let mut ok = e.signing.verify(data, tag);
                for s in &e.accepted {
                    ok |= s.verify(data, tag);
                }
                ok
            }
        }
    }
}

impl fmt::Debug for SwarmKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.swarms.keys().map(SwarmId::as_str).collect();
        names.sort_unstable();
        f.debug_struct("SwarmKeys").field("swarms", &names).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_and_base64_and_refuses_the_rest() {
        let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        let a = SwarmSecret::parse(hex).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(a.0);
        let b = SwarmSecret::parse(&format!("  {b64}\n")).unwrap();
        assert_eq!(a.0, b.0);
        assert_eq!(&*a.to_hex(), hex);
        assert_eq!(SwarmSecret::parse(b64.trim_end_matches('=')).unwrap().0, a.0);
        for bad in ["", "00", &hex[..62], &format!("{hex}00"), "not base64 !!", "AAAA"] {
            assert!(SwarmSecret::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_is_redacted() {
        let s = SwarmSecret::from_bytes([7; 32]);
        assert_eq!(format!("{s:?}"), "SwarmSecret(<redacted>)");
        let keys = SwarmKeys::new().with_secret(&SwarmId::new("s1").unwrap(), s);
        assert!(!format!("{keys:?}").contains("07"));
    }

    #[test]
    fn rotation_accepts_the_old_secret_and_signs_with_the_new() {
        let swarm = SwarmId::new("s1").unwrap();
        let old = SwarmSecret::from_bytes([1; 32]);
        let new = SwarmSecret::from_bytes([2; 32]);
        let keys = SwarmKeys::new()
            .with_secret(&swarm, new.clone())
            .accept_also(&swarm, old.clone())
            .unwrap();
        assert!(keys.verify(&swarm, b"x", &old.sign(b"x")));
        assert!(keys.verify(&swarm, b"x", &new.sign(b"x")));
        assert!(!keys.verify(&swarm, b"y", &new.sign(b"x")));
        assert_eq!(keys.signing(&swarm).unwrap().0, new.0);
        assert!(!keys.verify(&SwarmId::new("s2").unwrap(), b"x", &new.sign(b"x")));
    }
}
