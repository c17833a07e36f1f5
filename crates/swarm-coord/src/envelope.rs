//! The JSON envelope every coordination message travels in, its MAC, and the checks every
//! received message passes before anything acts on it (docs/FORMAT.md section 2).

use std::fmt;
use std::fmt::Write as _;
use std::time::SystemTime;

use rand::rngs::{StdRng, SysRng};
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use swarm_acl::SwarmId;

use crate::channel::{Channel, truncated};
use crate::secret::SwarmKeys;
use crate::{CoordError, Result};

/// First line of the canonical string: names the format, so a MAC for one version can never
/// verify as another.
pub const CANONICAL_PREFIX: &str = "swarm-coord/1";

/// Highest priority a message may carry (0 lowest, 10 highest, as in the seed).
pub const MAX_PRIORITY: u8 = 10;

/// Limits applied to every received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted message, in bytes of its JSON text (default 64 KiB).
    pub max_message_bytes: usize,
    /// How far in the future a timestamp may be (default 30 s).
    pub max_clock_skew_ms: u64,
    /// How old a message may be whatever its ttl (default 5 minutes); every id seen within
    /// this window is remembered, so a replayed copy is recognised.
    pub replay_window_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_message_bytes: 64 * 1024, max_clock_skew_ms: 30_000, replay_window_ms: 300_000 }
    }
}

/// Why a received message was dropped. Dropped messages are counted by reason
/// ([`crate::DropCounts`]), never delivered and never acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// No `hmac` field (or `null`).
    Unsigned,
    /// The `hmac` is not the MAC of the message under any secret of its swarm.
    BadSignature,
    /// Longer than `max_message_bytes`.
    Oversized,
    /// Not JSON, a missing or ill-typed field, an invalid id, a priority above 10, or a
    /// `channel` other than the one the message arrived on.
    Malformed,
    /// An id already seen within the replay window (on the same subscription).
    Replayed,
    /// `timestamp + ttl` is past, or the timestamp is older than the replay window.
    Expired,
    /// The timestamp is further in the future than the clock skew bound.
    Skewed,
}

impl DropReason {
    /// A short lowercase name (`bad_signature`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unsigned => "unsigned",
            Self::BadSignature => "bad_signature",
            Self::Oversized => "oversized",
            Self::Malformed => "malformed",
            Self::Replayed => "replayed",
            Self::Expired => "expired",
            Self::Skewed => "skewed",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One coordination message, authenticated and validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    id: String,
    swarm: SwarmId,
    sender: String,
    channel: Channel,
    message: Value,
    timestamp_ms: u64,
    priority: u8,
    ttl_ms: Option<u64>,
    received_at: Option<SystemTime>,
}

impl Envelope {
    /// Builds an envelope (not yet signed: [`Envelope::encode`] signs it). The swarm is the
    /// channel's.
    pub fn new(
        id: &str,
        sender: &str,
        channel: &Channel,
        message: Value,
        timestamp_ms: u64,
        priority: u8,
        ttl_ms: Option<u64>,
    ) -> Result<Self> {
        if !valid_id(id) {
            return Err(CoordError::Invalid(format!(
                "message id {:?} is not a valid id",
                truncated(id)
            )));
        }
        if !valid_id(sender) {
            return Err(CoordError::Invalid(format!(
                "sender id {:?} is not a valid id",
                truncated(sender)
            )));
        }
        if priority > MAX_PRIORITY {
            return Err(CoordError::Invalid(format!(
                "priority {priority} is above {MAX_PRIORITY}"
            )));
        }
        Ok(Self {
            id: id.to_owned(),
            swarm: channel.swarm().clone(),
            sender: sender.to_owned(),
            channel: channel.clone(),
            message,
            timestamp_ms,
            priority,
            ttl_ms,
            received_at: None,
        })
    }

    /// The message id (unique per message; 32 random hex characters when generated here).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The swarm (`swarmId`).
    pub fn swarm(&self) -> &SwarmId {
        &self.swarm
    }

    /// The sender as claimed (`senderId`): an agent id or a coordinator's node id. The MAC
    /// proves that the sender holds the swarm secret, not which member it is.
    pub fn sender(&self) -> &str {
        &self.sender
    }

    /// The channel.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The payload.
    pub fn message(&self) -> &Value {
        &self.message
    }

    /// The payload's `type` field, when it is an object with a string `type`.
    pub fn message_type(&self) -> Option<&str> {
        self.message.get("type").and_then(Value::as_str)
    }

    /// The sender's Unix time in milliseconds when it was sent.
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// Priority, 0 (lowest) to 10.
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// How long after `timestamp` the message stays valid, if limited.
    pub fn ttl_ms(&self) -> Option<u64> {
        self.ttl_ms
    }

    /// When this node received it (`None` for an envelope built locally).
    pub fn received_at(&self) -> Option<SystemTime> {
        self.received_at
    }

    pub(crate) fn set_received_now(&mut self) {
        self.received_at = Some(SystemTime::now());
    }

    /// The text the MAC is computed over (docs/FORMAT.md 2.3): nine lines joined by `\n`
    /// with no trailing newline: [`CANONICAL_PREFIX`], id, swarmId, senderId, channel,
    /// timestamp, priority, ttl (decimal, empty when null) and the message as canonical JSON
    /// (object keys sorted by code point, no whitespace, strings escaped as JSON requires
    /// and nothing else escaped).
    pub fn canonical_string(&self) -> String {
        let mut s = String::with_capacity(256);
        for field in
            [CANONICAL_PREFIX, &self.id, self.swarm.as_str(), &self.sender, self.channel.name()]
        {
            s.push_str(field);
            s.push('\n');
        }
        // Writing into a String cannot fail.
        let _ = write!(s, "{}\n{}\n", self.timestamp_ms, self.priority);
        if let Some(ttl) = self.ttl_ms {
            let _ = write!(s, "{ttl}");
        }
        s.push('\n');
        canonical_json(&self.message, &mut s);
        s
    }

    /// The MAC as 64 lowercase hex characters, under the swarm's signing secret.
    pub fn mac_hex(&self, keys: &SwarmKeys) -> Result<String> {
        Ok(self.signed(keys)?.0)
    }

    /// The MAC as hex, and the length of the canonical string it signs.
    fn signed(&self, keys: &SwarmKeys) -> Result<(String, usize)> {
        let secret = keys.signing(&self.swarm)?;
        let canonical = self.canonical_string();
        Ok((lower_hex(&secret.sign(canonical.as_bytes())), canonical.len()))
    }

    /// The signed JSON text, as published. Fails with [`CoordError::TooLarge`] when longer
    /// than `max_bytes`, since receivers would drop it.
    pub fn encode(&self, keys: &SwarmKeys, max_bytes: usize) -> Result<Vec<u8>> {
        let (hmac, canonical_len) = self.signed(keys)?;
        let wire = Wire {
            id: &self.id,
            swarm_id: self.swarm.as_str(),
            sender_id: &self.sender,
            channel: self.channel.name(),
            message: &self.message,
            timestamp: self.timestamp_ms,
            priority: self.priority,
            ttl: self.ttl_ms,
            hmac: &hmac,
        };
        // The text holds the canonical string's fields plus the member names and the MAC
        // (about 150 bytes): sized once rather than grown from empty.
        let mut bytes = Vec::with_capacity(canonical_len + 192);
        serde_json::to_writer(&mut bytes, &wire).map_err(|e| CoordError::Invalid(e.to_string()))?;
        if bytes.len() > max_bytes {
            return Err(CoordError::TooLarge { size: bytes.len(), limit: max_bytes });
        }
        Ok(bytes)
    }
}

/// A received message's fields, as [`parse`] reads them: from a JSON object only, each
/// member at most once. Members the format does not name are parsed in full and dropped,
/// so they are held to the same JSON rules as the rest (depth, UTF-8, surrogates, number
/// range); skipping them unparsed would accept text that is not JSON.
struct WireIn {
    id: String,
    swarm_id: String,
    sender_id: String,
    channel: String,
    message: Value,
    timestamp: u64,
    priority: u64,
    ttl: Option<u64>,
    /// Kept as any value: one that is not a string is a bad signature, not malformed.
    hmac: Option<Value>,
}

/// The member names of [`WireIn`], and any other.
enum Member {
    Id,
    SwarmId,
    SenderId,
    Channel,
    Message,
    Timestamp,
    Priority,
    Ttl,
    Hmac,
    Other,
}

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Names;
        impl serde::de::Visitor<'_> for Names {
            type Value = Member;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> std::result::Result<Member, E> {
                Ok(match name {
                    "id" => Member::Id,
                    "swarmId" => Member::SwarmId,
                    "senderId" => Member::SenderId,
                    "channel" => Member::Channel,
                    "message" => Member::Message,
                    "timestamp" => Member::Timestamp,
                    "priority" => Member::Priority,
                    "ttl" => Member::Ttl,
                    "hmac" => Member::Hmac,
                    _ => Member::Other,
                })
            }
        }
        d.deserialize_identifier(Names)
    }
}

impl<'de> Deserialize<'de> for WireIn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::{Error, MapAccess, Visitor};
        type DeResult<T, E> = std::result::Result<T, E>;
        /// Fills `slot` once; a second value is a duplicate member.
        fn once<T, E: Error>(
            slot: &mut Option<T>,
            value: T,
            name: &'static str,
        ) -> DeResult<(), E> {
            match slot.replace(value) {
                None => Ok(()),
                Some(_) => Err(E::duplicate_field(name)),
            }
        }
        struct Object;
        impl<'de> Visitor<'de> for Object {
            type Value = WireIn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an envelope object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> DeResult<WireIn, A::Error> {
                let (mut id, mut swarm_id, mut sender_id, mut channel) = (None, None, None, None);
                let (mut message, mut timestamp, mut priority) = (None, None, None);
                let (mut ttl, mut hmac) = (None::<Option<u64>>, None);
                while let Some(member) = map.next_key::<Member>()? {
                    match member {
                        Member::Id => once(&mut id, map.next_value()?, "id")?,
                        Member::SwarmId => once(&mut swarm_id, map.next_value()?, "swarmId")?,
                        Member::SenderId => once(&mut sender_id, map.next_value()?, "senderId")?,
                        Member::Channel => once(&mut channel, map.next_value()?, "channel")?,
                        Member::Message => once(&mut message, map.next_value()?, "message")?,
                        Member::Timestamp => once(&mut timestamp, map.next_value()?, "timestamp")?,
                        Member::Priority => once(&mut priority, map.next_value()?, "priority")?,
                        Member::Ttl => once(&mut ttl, map.next_value()?, "ttl")?,
                        Member::Hmac => once(&mut hmac, map.next_value::<Value>()?, "hmac")?,
                        Member::Other => drop(map.next_value::<Value>()?),
                    }
                }
                Ok(WireIn {
                    id: id.ok_or_else(|| Error::missing_field("id"))?,
                    swarm_id: swarm_id.ok_or_else(|| Error::missing_field("swarmId"))?,
                    sender_id: sender_id.ok_or_else(|| Error::missing_field("senderId"))?,
                    channel: channel.ok_or_else(|| Error::missing_field("channel"))?,
                    message: message.ok_or_else(|| Error::missing_field("message"))?,
                    timestamp: timestamp.ok_or_else(|| Error::missing_field("timestamp"))?,
                    priority: priority.ok_or_else(|| Error::missing_field("priority"))?,
                    ttl: ttl.flatten(),
                    hmac,
                })
            }
        }
        // A map only: serde_json refuses an array here, which a derived struct would take.
        d.deserialize_map(Object)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    id: &'a str,
    swarm_id: &'a str,
    sender_id: &'a str,
    channel: &'a str,
    message: &'a Value,
    timestamp: u64,
    priority: u8,
    ttl: Option<u64>,
    hmac: &'a str,
}

/// Decodes and checks a received message: size, JSON shape, ids, the channel it arrived on,
/// signature, clock skew and expiry, in that order (docs/FORMAT.md 2.5). Replays are checked
/// by the caller, which remembers ids. Never panics, whatever the bytes.
pub fn decode_envelope(
    bytes: &[u8],
    arrived_on: &str,
    keys: &SwarmKeys,
    now_ms: u64,
    limits: &Limits,
) -> Result<Envelope, DropReason> {
    let (env, hmac) = parse(bytes, arrived_on, limits)?;
    let tag = match hmac {
        None => return Err(DropReason::Unsigned),
        Some(h) => decode_mac(&h).ok_or(DropReason::BadSignature)?,
    };
    if !keys.verify(&env.swarm, env.canonical_string().as_bytes(), &tag) {
        return Err(DropReason::BadSignature);
    }
    if env.timestamp_ms > now_ms.saturating_add(limits.max_clock_skew_ms) {
        return Err(DropReason::Skewed);
    }
    let expired_by_ttl = env.ttl_ms.is_some_and(|t| env.timestamp_ms.saturating_add(t) <= now_ms);
    let too_old = env.timestamp_ms.saturating_add(limits.replay_window_ms) < now_ms;
    if expired_by_ttl || too_old {
        return Err(DropReason::Expired);
    }
    Ok(env)
}

/// Signature check only, for records stored in Redis (a participant's join record): no
/// expiry, no replay check, any channel of the swarm.
pub(crate) fn verify_stored(bytes: &[u8], keys: &SwarmKeys, limits: &Limits) -> Option<Envelope> {
    let text = std::str::from_utf8(bytes).ok()?;
    let channel = serde_json::from_str::<Value>(text).ok()?.get("channel")?.as_str()?.to_owned();
    let (env, hmac) = parse(bytes, &channel, limits).ok()?;
    let tag = decode_mac(&hmac?)?;
    keys.verify(&env.swarm, env.canonical_string().as_bytes(), &tag).then_some(env)
}

fn decode_mac(text: &str) -> Option<[u8; 32]> {
    let mut tag = [0u8; 32];
    hex::decode_to_slice(text, &mut tag).ok()?;
    Some(tag)
}

/// The shape checks: everything except signature and time.
fn parse(
    bytes: &[u8],
    arrived_on: &str,
    limits: &Limits,
) -> Result<(Envelope, Option<String>), DropReason> {
    use DropReason::Malformed;
    if bytes.len() > limits.max_message_bytes {
        return Err(DropReason::Oversized);
    }
    // The fields are read straight into their types (a map of every field first, then
    // taken apart, showed in profiles of every message). serde_json refuses nesting deeper
    // than 128 levels, so no input can exhaust the stack; `WireIn` refuses anything but an
    // object and a member given twice.
    let WireIn {
        id,
        swarm_id: swarm,
        sender_id: sender,
        channel,
        message,
        timestamp,
        priority,
        ttl,
        hmac,
    } = serde_json::from_slice(bytes).map_err(|_| Malformed)?;
    let hmac = match hmac {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(DropReason::BadSignature),
    };
    if !valid_id(&id) || !valid_id(&sender) || channel != arrived_on {
        return Err(Malformed);
    }
    let priority = u8::try_from(priority).ok().filter(|p| *p <= MAX_PRIORITY).ok_or(Malformed)?;
    let swarm = SwarmId::new(&swarm).map_err(|_| Malformed)?;
    let channel = Channel::parse(&channel).map_err(|_| Malformed)?;
    if channel.swarm() != &swarm {
        return Err(Malformed);
    }
    let env = Envelope {
        id,
        swarm,
        sender,
        channel,
        message,
        timestamp_ms: timestamp,
        priority,
        ttl_ms: ttl,
        received_at: None,
    };
    Ok((env, hmac))
}

/// The id rule of swarm-acl (1-128 bytes of ASCII letters, digits and `. _ : @ -`, starting
/// with a letter or digit), for message and sender ids.
pub(crate) fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'))
}

thread_local! {
    /// This thread's id generator: ChaCha12 ([`StdRng`]) seeded from the OS on first use.
    static IDS: std::cell::RefCell<Option<StdRng>> = const { std::cell::RefCell::new(None) };
}

/// A fresh message id: 16 random bytes as 32 lowercase hex characters.
///
/// The bytes come from a per-thread cryptographic generator that the OS seeds once per
/// thread (a system call per id cost about 0.6 us on a virtual machine). Ids need only be
/// unique, since the MAC covers them; a 128-bit stream from a 256-bit seed is. If the OS
/// cannot give a seed, this fails with [`CoordError::Random`] and tries again next time.
/// A thread-local destructor may call this after the generator is gone (a coordinator
/// dropped as its thread exits publishes its leave messages): that call asks the OS.
pub(crate) fn new_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    let filled = IDS.try_with(|cell| {
        let mut slot = cell.borrow_mut();
        let rng = match &mut *slot {
            Some(rng) => rng,
            None => slot.insert(StdRng::try_from_rng(&mut SysRng).map_err(|_| CoordError::Random)?),
        };
        rng.fill_bytes(&mut bytes);
        Ok::<_, CoordError>(())
    });
    match filled {
        Ok(r) => r?,
        // This thread's generator is already destroyed (a thread-local destructor publishing).
        Err(_) => getrandom::fill(&mut bytes).map_err(|_| CoordError::Random)?,
    }
    Ok(lower_hex(&bytes))
}

/// Lowercase hex, as `hex::encode` writes it, without its character-by-character
/// collecting (it showed in profiles of every message, twice).
fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: [char; 16] =
        ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'];
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
    out
}

/// Canonical JSON: object keys sorted by code point (byte order of their UTF-8, which is the
/// same), no insignificant whitespace, strings and numbers as serde_json writes them. Sorting
/// is done here rather than relied on from `serde_json::Map`, whose order changes when any
/// crate in the build enables `preserve_order`.
pub(crate) fn canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => push_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(k, out);
                out.push(':');
                canonical_json(item, out);
            }
            out.push('}');
        }
    }
}

/// A JSON string literal: `"` and `\` escaped, control characters as `\b \f \n \r \t` or
/// `\u00xx` (lowercase hex), everything else as is. This is what serde_json writes and what
/// Python's `json.dumps(..., ensure_ascii=False)` writes.
fn push_json_string(s: &str, out: &mut String) {
    out.push('"');
    // Runs of characters that need no escape are copied whole. Every escaped character
    // is ASCII, so each byte index where one starts is a character boundary.
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..0x20 => "",
            _ => continue,
        };
        out.push_str(&s[run..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        run = i + 1;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::SwarmSecret;
    use crate::channel::ChannelKind;

    /// The worked example of docs/FORMAT.md 2.7.
    pub(crate) const EXAMPLE_MAC: &str =
        "68ace8262f1744d517d26ddb47a711436e83f6ae9ba94d5b9268198bc6f0fbdf";
    /// The example's bytes on the wire, as in docs/FORMAT.md 2.7.
    const EXAMPLE_WIRE: &str = concat!(
        r#"{"id":"0123456789abcdef0123456789abcdef","swarmId":"swarm-1","senderId":"agent-7","#,
        r#""channel":"swarm:swarm-1:coordination","message":{"attempt":2,"note":"héllo\n","#,
        r#""taskId":"t-42","type":"task_claimed"},"timestamp":1764201600000,"priority":5,"ttl":60000,"#,
        r#""hmac":"68ace8262f1744d517d26ddb47a711436e83f6ae9ba94d5b9268198bc6f0fbdf"}"#
    );
    const NOW: u64 = 1_764_201_600_000;

    fn swarm() -> SwarmId {
        SwarmId::new("swarm-1").unwrap()
    }

    /// The generator is a thread-local, destroyed before thread-locals registered earlier
    /// (review finding: an id made from one of their destructors aborted the process).
    #[test]
    fn an_id_can_be_made_while_the_thread_is_torn_down() {
        struct MakesIdOnDrop(std::sync::mpsc::Sender<Result<String>>);
        impl Drop for MakesIdOnDrop {
            fn drop(&mut self) {
                let _ = self.0.send(new_id());
            }
        }
        thread_local! {
            static HOLDER: std::cell::RefCell<Option<MakesIdOnDrop>> =
                const { std::cell::RefCell::new(None) };
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Registered first, so destroyed after the generator, which the id below creates.
            HOLDER.with_borrow_mut(|h| *h = Some(MakesIdOnDrop(tx)));
            new_id().unwrap();
        })
        .join()
        .unwrap();
        let id = rx.recv().unwrap().unwrap();
        assert!(id.len() == 32 && valid_id(&id));
    }

    #[test]
    fn message_ids_are_32_hex_digits_and_unique_across_threads() {
        let batch = || (0..2000).map(|_| new_id().unwrap()).collect::<Vec<_>>();
        let others: Vec<_> = (0..3).map(|_| std::thread::spawn(batch)).collect();
        let mut all = batch();
        for t in others {
            all.extend(t.join().unwrap());
        }
        assert!(all.iter().all(|id| id.len() == 32 && valid_id(id)));
        assert!(
            all.iter()
                .all(|id| id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        );
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "every id differs, within a thread and between threads");
    }

    fn keys() -> SwarmKeys {
        let mut secret = [0u8; 32];
        for (i, b) in secret.iter_mut().enumerate() {
            *b = i as u8;
        }
        SwarmKeys::new().with_secret(&swarm(), SwarmSecret::from_bytes(secret))
    }

    fn example() -> Envelope {
        Envelope::new(
            "0123456789abcdef0123456789abcdef",
            "agent-7",
            &Channel::new(&swarm(), ChannelKind::Coordination),
            json!({"type": "task_claimed", "taskId": "t-42", "attempt": 2, "note": "h\u{e9}llo\n"}),
            NOW,
            5,
            Some(60_000),
        )
        .unwrap()
    }

    fn decode(bytes: &[u8]) -> Result<Envelope, DropReason> {
        decode_envelope(
            bytes,
            "swarm:swarm-1:coordination",
            &keys(),
            NOW + 1_000,
            &Limits::default(),
        )
    }

    #[test]
    fn the_worked_example_of_format_md() {
        let env = example();
        assert_eq!(
            env.canonical_string(),
            "swarm-coord/1\n0123456789abcdef0123456789abcdef\nswarm-1\nagent-7\nswarm:swarm-1:coordination\n\
             1764201600000\n5\n60000\n{\"attempt\":2,\"note\":\"h\u{e9}llo\\n\",\"taskId\":\"t-42\",\"type\":\"task_claimed\"}"
        );
        assert_eq!(env.mac_hex(&keys()).unwrap(), EXAMPLE_MAC);
        let wire = String::from_utf8(env.encode(&keys(), 65_536).unwrap()).unwrap();
        assert_eq!(wire, EXAMPLE_WIRE);
        assert_eq!(decode(wire.as_bytes()).unwrap().message(), env.message());
    }

    /// Runs the Python of docs/FORMAT.md 2.7 (python3 is on every machine of this project):
    /// it verifies the example, re-signs it to the same bytes, and signs a message of its own
    /// that Rust must accept.
    #[test]
    fn the_python_snippet_of_format_md_interoperates() {
        const FORMAT: &str = include_str!("../../../docs/FORMAT.md");
        let section = &FORMAT[FORMAT.find("## 2. Coordination").unwrap()..];
        let start = section.find("```python\n").unwrap() + "```python\n".len();
        let snippet = &section[start..start + section[start..].find("```").unwrap()];
        let check = format!(
            r#"{snippet}
import sys
secret = bytes(range(32))
wire = sys.argv[1].encode("utf-8")
env = verify(wire, secret)
assert env is not None, "the example verifies"
assert sign({{k: v for k, v in env.items() if k != "hmac"}}, secret) == wire, "same bytes"
assert verify(wire.replace(b"t-42", b"t-43"), secret) is None, "an edit is caught"
mine = {{"id": "py-1", "swarmId": "swarm-1", "senderId": "py.agent", "channel": "swarm:swarm-1:coordination",
        "message": {{"z": [1, 2.5, None, True], "a": {{"y": "\u00e9\u0001\"", "b": -7}}, "type": "from_python"}},
        "timestamp": 1764201600500, "priority": 10, "ttl": None}}
sys.stdout.buffer.write(sign(mine, secret))
"#
        );
        let out = std::process::Command::new("python3")
            .args(["-c", &check, EXAMPLE_WIRE])
            .output()
            .expect("python3 is needed for this test: it checks the snippet in docs/FORMAT.md");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let env = decode(&out.stdout)
            .unwrap_or_else(|r| panic!("{r}: {}", String::from_utf8_lossy(&out.stdout)));
        assert_eq!(env.message_type(), Some("from_python"));
        assert_eq!(env.message()["a"]["y"], "\u{e9}\u{1}\"");
        assert_eq!((env.sender(), env.priority(), env.ttl_ms()), ("py.agent", 10, None));
    }

    #[test]
    fn key_order_and_whitespace_of_the_sender_do_not_matter() {
        let text = format!(
            r#"{{ "hmac": "{EXAMPLE_MAC}", "ttl": 60000, "priority": 5, "timestamp": 1764201600000,
                "message": {{"type":"task_claimed","note":"h\u00e9llo\n","taskId":"t-42","attempt":2}},
                "channel": "swarm:swarm-1:coordination", "senderId": "agent-7", "swarmId": "swarm-1",
                "id": "0123456789abcdef0123456789abcdef", "extra": "ignored" }}"#
        );
        let env = decode(text.as_bytes()).unwrap();
        assert_eq!(env.sender(), "agent-7");
        assert_eq!(env.ttl_ms(), Some(60_000));
    }

    fn wire_with(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
        let mut v: Value =
            serde_json::from_slice(&example().encode(&keys(), 65_536).unwrap()).unwrap();
        edit(v.as_object_mut().unwrap());
        serde_json::to_vec(&v).unwrap()
    }

    /// The example's signed wire text with an extra member `"extra": <json>` first.
    fn with_unknown(json: &str) -> Vec<u8> {
        let text = String::from_utf8(wire_with(|_| {})).unwrap();
        text.replacen('{', &format!("{{\"extra\":{json},"), 1).into_bytes()
    }

    #[test]
    fn every_bad_message_has_its_reason() {
        use DropReason::*;
        let resign = |m: &mut serde_json::Map<String, Value>| {
            // Recompute the MAC after an edit, as a key holder would.
            let bytes = serde_json::to_vec(m).unwrap();
            let (env, _) =
                parse(&bytes, m["channel"].as_str().unwrap(), &Limits::default()).unwrap();
            m.insert("hmac".into(), json!(env.mac_hex(&keys()).unwrap()));
        };
        let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
            ("not json", b"{nope".to_vec(), Malformed),
            ("not an object", b"[1,2]".to_vec(), Malformed),
            (
                // The fields in order, as an array: what a struct reader would also take.
                "fields as an array",
                {
                    let v: Value = serde_json::from_slice(&wire_with(|_| {})).unwrap();
                    let o = v.as_object().unwrap();
                    let order = ["id", "swarmId", "senderId", "channel", "message"];
                    let mut items: Vec<Value> = order.iter().map(|k| o[*k].clone()).collect();
                    items.extend(["timestamp", "priority", "ttl", "hmac"].map(|k| o[k].clone()));
                    serde_json::to_vec(&items).unwrap()
                },
                Malformed,
            ),
            (
                "a member twice",
                {
                    let text = String::from_utf8(wire_with(|_| {})).unwrap();
                    text.replacen('{', "{\"priority\":9,", 1).into_bytes()
                },
                Malformed,
            ),
            ("numeric hmac", wire_with(|m| drop(m.insert("hmac".into(), json!(7)))), BadSignature),
            // A member the format does not name is still held to the JSON rules.
            (
                "unknown member 200 deep",
                with_unknown(&format!("{}{}", "[".repeat(200), "]".repeat(200))),
                Malformed,
            ),
            ("unknown member lone surrogate", with_unknown(r#""\ud800""#), Malformed),
            ("unknown member out of range", with_unknown("1e400"), Malformed),
            (
                "unknown member not UTF-8",
                {
                    let mut b = with_unknown(r#""ab""#);
                    let at = b.windows(4).position(|w| w == br#""ab""#).unwrap() + 1;
                    b[at] = 0xff;
                    b[at + 1] = 0xfe;
                    b
                },
                Malformed,
            ),
            ("no hmac", wire_with(|m| drop(m.remove("hmac"))), Unsigned),
            ("null hmac", wire_with(|m| drop(m.insert("hmac".into(), Value::Null))), Unsigned),
            (
                "wrong hmac",
                wire_with(|m| drop(m.insert("hmac".into(), json!("00".repeat(32))))),
                BadSignature,
            ),
            (
                "short hmac",
                wire_with(|m| drop(m.insert("hmac".into(), json!("abcd")))),
                BadSignature,
            ),
            (
                "edited message",
                wire_with(|m| {
                    drop(m.insert("message".into(), json!({"type": "shutdown_request"})))
                }),
                BadSignature,
            ),
            (
                "edited priority",
                wire_with(|m| drop(m.insert("priority".into(), json!(9)))),
                BadSignature,
            ),
            ("no message", wire_with(|m| drop(m.remove("message"))), Malformed),
            (
                "string timestamp",
                wire_with(|m| drop(m.insert("timestamp".into(), json!("1")))),
                Malformed,
            ),
            (
                "float timestamp",
                wire_with(|m| drop(m.insert("timestamp".into(), json!(1.5)))),
                Malformed,
            ),
            ("priority 11", wire_with(|m| drop(m.insert("priority".into(), json!(11)))), Malformed),
            ("negative ttl", wire_with(|m| drop(m.insert("ttl".into(), json!(-1)))), Malformed),
            ("bad id", wire_with(|m| drop(m.insert("id".into(), json!("a b")))), Malformed),
            ("bad sender", wire_with(|m| drop(m.insert("senderId".into(), json!("")))), Malformed),
            (
                "other channel",
                wire_with(|m| drop(m.insert("channel".into(), json!("swarm:swarm-1:events")))),
                Malformed,
            ),
            (
                "swarm mismatch",
                wire_with(|m| drop(m.insert("swarmId".into(), json!("swarm-2")))),
                Malformed,
            ),
            (
                "expired by ttl",
                wire_with(|m| {
                    m.insert("ttl".into(), json!(500));
                    resign(m)
                }),
                Expired,
            ),
            (
                "too old",
                wire_with(|m| {
                    m.insert("ttl".into(), Value::Null);
                    m.insert("timestamp".into(), json!(NOW - 400_000));
                    resign(m)
                }),
                Expired,
            ),
            (
                "future",
                wire_with(|m| {
                    m.insert("timestamp".into(), json!(NOW + 60_000));
                    resign(m)
                }),
                Skewed,
            ),
            ("oversized", vec![b' '; 70_000], Oversized),
        ];
        for (name, bytes, reason) in cases {
            assert_eq!(decode(&bytes).map(|e| e.id().to_owned()), Err(reason), "{name}");
        }
        // The unedited message, one with a well-formed member the format does not name,
        // and one re-signed after an edit, pass.
        assert!(decode(&wire_with(|_| {})).is_ok());
        assert!(decode(&with_unknown(r#"{"future": [1, "two", null]}"#)).is_ok());
        assert!(
            decode(&wire_with(|m| {
                m.insert("priority".into(), json!(9));
                resign(m)
            }))
            .is_ok()
        );
    }

    #[test]
    fn another_swarms_secret_does_not_verify() {
        let other = SwarmKeys::new().with_secret(&swarm(), SwarmSecret::from_bytes([9; 32]));
        let bytes = example().encode(&other, 65_536).unwrap();
        assert_eq!(decode(&bytes).unwrap_err(), DropReason::BadSignature);
    }

    #[test]
    fn publishing_refuses_what_receivers_would_drop() {
        let big = Envelope::new(
            "x1",
            "a",
            &Channel::new(&swarm(), ChannelKind::Events),
            json!("x".repeat(100)),
            0,
            0,
            None,
        )
        .unwrap();
        assert!(matches!(big.encode(&keys(), 100), Err(CoordError::TooLarge { limit: 100, .. })));
        assert!(
            Envelope::new(
                "x1",
                "a",
                &Channel::new(&swarm(), ChannelKind::Events),
                json!(1),
                0,
                11,
                None
            )
            .is_err()
        );
        let nokey = SwarmKeys::new();
        assert!(matches!(example().encode(&nokey, 65_536), Err(CoordError::NoSecret { .. })));
    }

    #[test]
    fn canonical_json_sorts_nested_keys_and_escapes_like_python() {
        let mut s = String::new();
        canonical_json(
            &json!({"b": [1, {"z": null, "a": true}], "a": "\u{1}\"\\\t\u{7f}é😀", "c": -0.5}),
            &mut s,
        );
        assert_eq!(
            s,
            "{\"a\":\"\\u0001\\\"\\\\\\t\u{7f}é😀\",\"b\":[1,{\"a\":true,\"z\":null}],\"c\":-0.5}"
        );
    }

    proptest::proptest! {
        #[test]
        fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decoding_mutated_messages_never_panics_nor_verifies(i in 0usize..400, b in proptest::num::u8::ANY) {
            let mut bytes = example().encode(&keys(), 65_536).unwrap();
            let i = i % bytes.len();
            proptest::prop_assume!(bytes[i] != b);
            bytes[i] = b;
            if let Ok(env) = decode(&bytes) {
                // Only a change outside what the MAC covers (whitespace-equivalent JSON) may pass.
                proptest::prop_assert_eq!(env.canonical_string(), example().canonical_string());
            }
        }
    }
}
