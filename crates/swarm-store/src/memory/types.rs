//! The types of the memory API: validated names, values, options and records.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use swarm_acl::{AclLevel, AgentId, SwarmId, TeamId, Timestamp};

use crate::config::Limits;
use crate::error::{Result, StoreError};

/// A namespace: 1-256 bytes (configurable) of ASCII letters, digits and `. _ : / @ -`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Namespace(Arc<str>);

impl Namespace {
    /// The namespace records go to when none is named.
    pub const DEFAULT: &'static str = "default";

    /// Validates a namespace against the default limits.
    pub fn new(s: impl AsRef<str>) -> Result<Self> {
        Self::with_limits(s, &Limits::default())
    }

    /// Validates a namespace against `limits`.
    pub fn with_limits(s: impl AsRef<str>, limits: &Limits) -> Result<Self> {
        let s = s.as_ref();
        if s.is_empty() {
            return Err(StoreError::invalid("namespace must not be empty"));
        }
        if s.len() > limits.max_namespace_len {
            return Err(StoreError::invalid(format!(
                "namespace is {} bytes, the limit is {}",
                s.len(),
                limits.max_namespace_len
            )));
        }
        if !s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'@' | b'-')
        }) {
            return Err(StoreError::invalid(format!(
                "namespace {:?} may contain only letters, digits and . _ : / @ -",
                truncate(s)
            )));
        }
        Ok(Self(Arc::from(s)))
    }

    /// The namespace as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A key: 1-1024 bytes (configurable) of UTF-8 without control characters. Any other
/// character, `%`, `_`, `*`, `[` and quotes included, is an ordinary character.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Key(Arc<str>);

impl Key {
    /// Validates a key against the default limits.
    pub fn new(s: impl AsRef<str>) -> Result<Self> {
        Self::with_limits(s, &Limits::default())
    }

    /// Validates a key against `limits`.
    pub fn with_limits(s: impl AsRef<str>, limits: &Limits) -> Result<Self> {
        let s = s.as_ref();
        if s.is_empty() {
            return Err(StoreError::invalid("key must not be empty"));
        }
        if s.len() > limits.max_key_len {
            return Err(StoreError::invalid(format!(
                "key is {} bytes, the limit is {}",
                s.len(),
                limits.max_key_len
            )));
        }
        if s.chars().any(char::is_control) {
            return Err(StoreError::invalid(format!(
                "key {:?} contains a control character",
                truncate(s)
            )));
        }
        Ok(Self(Arc::from(s)))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! text_traits {
    ($t:ident) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($t), &*self.0)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}
text_traits!(Namespace);
text_traits!(Key);

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Where a record lives: swarm, namespace, key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RecordKey {
    swarm: SwarmId,
    namespace: Namespace,
    key: Key,
}

impl RecordKey {
    /// Names a record.
    pub fn new(swarm: SwarmId, namespace: Namespace, key: Key) -> Self {
        Self { swarm, namespace, key }
    }

    /// Names a record from text, validating each part.
    pub fn parse(swarm: &str, namespace: &str, key: &str) -> Result<Self> {
        Ok(Self::new(SwarmId::new(swarm)?, Namespace::new(namespace)?, Key::new(key)?))
    }

    /// The swarm.
    pub fn swarm(&self) -> &SwarmId {
        &self.swarm
    }

    /// The namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The key.
    pub fn key(&self) -> &Key {
        &self.key
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.swarm, self.namespace, self.key)
    }
}

/// A stored value, with its type kept.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum Value {
    /// Arbitrary bytes.
    Bytes(Vec<u8>),
    /// UTF-8 text.
    Text(String),
    /// A JSON document.
    Json(serde_json::Value),
    /// A 64-bit signed integer (what `incr` and `decr` create).
    Integer(i64),
}

/// The type of a [`Value`], as stored in the `value_type` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// Bytes.
    Bytes,
    /// Text.
    Text,
    /// JSON.
    Json,
    /// Integer.
    Integer,
}

impl ValueType {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Bytes => "bytes",
            ValueType::Text => "text",
            ValueType::Json => "json",
            ValueType::Integer => "integer",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self> {
        Self::from_stored(s.as_bytes())
            .ok_or_else(|| StoreError::Corrupt(format!("unknown value type {s:?}")))
    }

    /// The type a stored value-type column names, from its bytes.
    pub(crate) fn from_stored(stored: &[u8]) -> Option<Self> {
        match stored {
            b"bytes" => Some(ValueType::Bytes),
            b"text" => Some(ValueType::Text),
            b"json" => Some(ValueType::Json),
            b"integer" => Some(ValueType::Integer),
            _ => None,
        }
    }

    pub(crate) fn tag(self) -> u8 {
        match self {
            ValueType::Bytes => 1,
            ValueType::Text => 2,
            ValueType::Json => 3,
            ValueType::Integer => 4,
        }
    }
}

impl Value {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::Bytes(_) => ValueType::Bytes,
            Value::Text(_) => ValueType::Text,
            Value::Json(_) => ValueType::Json,
            Value::Integer(_) => ValueType::Integer,
        }
    }

    /// The bytes stored for this value (before the codec): bytes as they are, text as
    /// UTF-8, JSON serialized, integers in decimal.
    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(match self {
            Value::Bytes(b) => b.clone(),
            Value::Text(s) => s.as_bytes().to_vec(),
            Value::Json(v) => {
                serde_json::to_vec(v).map_err(|e| StoreError::invalid(format!("json: {e}")))?
            }
            Value::Integer(n) => n.to_string().into_bytes(),
        })
    }

    pub(crate) fn from_bytes(t: ValueType, bytes: Vec<u8>) -> std::result::Result<Self, String> {
        match t {
            ValueType::Bytes => Ok(Value::Bytes(bytes)),
            ValueType::Text => String::from_utf8(bytes)
                .map(Value::Text)
                .map_err(|_| "text is not UTF-8".to_owned()),
            ValueType::Json => {
                serde_json::from_slice(&bytes).map(Value::Json).map_err(|e| format!("json: {e}"))
            }
            ValueType::Integer => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.parse().ok())
                .map(Value::Integer)
                .ok_or_else(|| "integer is not a decimal number".to_owned()),
        }
    }

    /// The integer held, for `incr`: integers, and text or JSON numbers that are whole.
    pub(crate) fn as_integer(&self) -> Option<i64> {
        match self {
            Value::Integer(n) => Some(*n),
            Value::Text(s) => s.trim().parse().ok(),
            Value::Json(serde_json::Value::Number(n)) => n.as_i64(),
            _ => None,
        }
    }

    /// The same kind of value holding `n` instead.
    pub(crate) fn with_integer(&self, n: i64) -> Value {
        match self {
            Value::Text(_) => Value::Text(n.to_string()),
            Value::Json(_) => Value::Json(serde_json::Value::from(n)),
            _ => Value::Integer(n),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Integer(n)
    }
}

impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Self {
        Value::Json(v)
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Self {
        Value::Bytes(b)
    }
}

/// A compare-and-set expectation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Expect {
    /// The record must not exist (or be expired).
    Absent,
    /// The record must exist at exactly this version.
    Version(u64),
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Absent => f.write_str("absent"),
            Expect::Version(v) => write!(f, "version {v}"),
        }
    }
}

/// Options of `set` and its relatives.
///
/// Level and team, when not given, are kept from the existing record, or for a new record
/// default to [`AclLevel::Private`] (and, for [`AclLevel::Team`], the writer's team if it
/// belongs to exactly one).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SetOptions {
    pub(crate) level: Option<AclLevel>,
    pub(crate) team: Option<TeamId>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) tags: Option<Vec<String>>,
    pub(crate) expect: Option<Expect>,
    /// Set by `incr`: a write without a TTL keeps the record's expiry.
    pub(crate) keep_expiry: bool,
}

impl SetOptions {
    /// Options with nothing set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The record's ACL level.
    pub fn level(mut self, level: AclLevel) -> Self {
        self.level = Some(level);
        self
    }

    /// The record's team (required for team-level records of agents in several teams).
    pub fn team(mut self, team: TeamId) -> Self {
        self.team = Some(team);
        self
    }

    /// Expire the record after `ttl` (no expiry when unset: there is no hidden default).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Tags (replacing the existing ones).
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = Some(tags.into_iter().map(Into::into).collect());
        self
    }

    /// Write only if the record is as expected (compare-and-set).
    pub fn expect(mut self, e: Expect) -> Self {
        self.expect = Some(e);
        self
    }

    /// Write only if the record is at exactly `version`.
    pub fn if_version(self, version: u64) -> Self {
        self.expect(Expect::Version(version))
    }
}

/// What a reader learns about a record besides its value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordMeta {
    /// The owning agent (`None`: the system).
    pub owner: Option<AgentId>,
    /// The record's team.
    pub team: Option<TeamId>,
    /// The ACL level.
    pub level: AclLevel,
    /// The value's type.
    pub value_type: ValueType,
    /// The version: rises on every write, never reused.
    pub version: u64,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Whether the value is stored encrypted.
    pub encrypted: bool,
    /// Tags.
    pub tags: Vec<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last write.
    pub updated_at: Timestamp,
    /// Expiry, if any.
    pub expires_at: Option<Timestamp>,
    /// Reads counted so far (flushed in the background, so it may lag).
    pub access_count: u64,
}

/// A record as read.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Record {
    /// Where it lives.
    pub key: RecordKey,
    /// Its value.
    pub value: Value,
    /// Its metadata.
    pub meta: RecordMeta,
}

/// The result of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Written {
    /// The record's new version.
    pub version: u64,
    /// Whether the record was created (it did not exist, or had expired).
    pub created: bool,
}

/// Validates a TTL: at least one millisecond, at most about a hundred years.
pub(crate) fn ttl_millis(ttl: Duration) -> Result<i64> {
    let ms = ttl.as_millis();
    if ms == 0 {
        return Err(StoreError::invalid("ttl must be at least 1 millisecond"));
    }
    const MAX: u128 = 100 * 365 * 24 * 3600 * 1000;
    if ms > MAX {
        return Err(StoreError::invalid("ttl must be at most 100 years"));
    }
    Ok(ms as i64)
}

/// Validates tags against `limits`.
pub(crate) fn check_tags(tags: &[String], limits: &Limits) -> Result<()> {
    if tags.len() > limits.max_tags {
        return Err(StoreError::invalid(format!(
            "{} tags, the limit is {}",
            tags.len(),
            limits.max_tags
        )));
    }
    for t in tags {
        if t.is_empty() || t.len() > limits.max_tag_len || t.chars().any(char::is_control) {
            return Err(StoreError::invalid(format!(
                "tag {:?} must be 1-{} bytes without control characters",
                truncate(t),
                limits.max_tag_len
            )));
        }
    }
    Ok(())
}
