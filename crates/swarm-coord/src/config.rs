//! Coordinator settings and Redis connection settings.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::clock::{Clock, SystemClock};
use crate::envelope::{Limits, valid_id};
use crate::secret::SwarmKeys;
use crate::{CoordError, Result};

/// Settings shared by both coordinators.
#[derive(Clone)]
pub struct CoordConfig {
    node_id: String,
    keys: SwarmKeys,
    heartbeat_interval: Duration,
    missed_heartbeats: u32,
    liveness_check_interval: Duration,
    limits: Limits,
    replay_cache_capacity: usize,
    subscription_capacity: usize,
    round_retention: Duration,
    clock: Arc<dyn Clock>,
}

impl CoordConfig {
    /// Defaults (heartbeat every 5 s as in the seed, offline after 3 missed, liveness checked
    /// every second, 64 KiB messages, 30 s clock skew, 5 minute replay window) with the given
    /// swarm secrets and a random node id.
    pub fn new(keys: SwarmKeys) -> Result<Self> {
        let node_id = format!("node-{}", &crate::envelope::new_id()?[..16]);
        Ok(Self {
            node_id,
            keys,
            heartbeat_interval: Duration::from_secs(5),
            missed_heartbeats: 3,
            liveness_check_interval: Duration::from_secs(1),
            limits: Limits::default(),
            replay_cache_capacity: 100_000,
            subscription_capacity: 10_000,
            round_retention: Duration::from_secs(24 * 3600),
            clock: Arc::new(SystemClock),
        })
    }

    /// Names this node (the `senderId` of messages it publishes itself, such as
    /// `agent_offline`). Must be a valid id.
    pub fn with_node_id(mut self, node_id: &str) -> Result<Self> {
        if !valid_id(node_id) {
            return Err(CoordError::Config {
                field: "node_id".into(),
                reason: "not a valid id".into(),
            });
        }
        self.node_id = node_id.to_owned();
        Ok(self)
    }

    /// How often joined participants beat (at least 10 ms).
    pub fn with_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// How many intervals without a heartbeat make an agent offline (at least 1).
    pub fn with_missed_heartbeats(mut self, missed: u32) -> Self {
        self.missed_heartbeats = missed.max(1);
        self
    }

    /// How often the liveness monitor looks for expired agents (at least 10 ms).
    pub fn with_liveness_check_interval(mut self, interval: Duration) -> Self {
        self.liveness_check_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Limits on received messages.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How many message ids the replay cache holds at most (see docs/FORMAT.md 2.5).
    pub fn with_replay_cache_capacity(mut self, capacity: usize) -> Self {
        self.replay_cache_capacity = capacity.max(1);
        self
    }

    /// How many undelivered messages a subscription buffers before dropping new ones
    /// (counted as `lagged`).
    pub fn with_subscription_capacity(mut self, capacity: usize) -> Self {
        self.subscription_capacity = capacity.max(1);
        self
    }

    /// How long a round's state stays in Redis after its deadline.
    pub fn with_round_retention(mut self, retention: Duration) -> Self {
        self.round_retention = retention;
        self
    }

    /// The clock (tests use [`crate::ManualClock`]).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The node id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The swarm secrets.
    pub fn keys(&self) -> &SwarmKeys {
        &self.keys
    }

    /// The heartbeat interval.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    /// Missed heartbeats before offline.
    pub fn missed_heartbeats(&self) -> u32 {
        self.missed_heartbeats
    }

    /// How long after its last heartbeat an agent expires: interval × missed heartbeats.
    pub fn heartbeat_expiry(&self) -> Duration {
        self.heartbeat_interval.saturating_mul(self.missed_heartbeats)
    }

    /// The liveness check interval.
    pub fn liveness_check_interval(&self) -> Duration {
        self.liveness_check_interval
    }

    /// The documented bound on how late an agent whose heartbeats stopped is reported
    /// offline, counted from its last heartbeat: expiry plus one liveness check interval
    /// (plus the time to publish, a network round trip).
    pub fn offline_bound(&self) -> Duration {
        self.heartbeat_expiry() + self.liveness_check_interval
    }

    /// Message limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Replay cache capacity.
    pub fn replay_cache_capacity(&self) -> usize {
        self.replay_cache_capacity
    }

    /// Subscription buffer capacity.
    pub fn subscription_capacity(&self) -> usize {
        self.subscription_capacity
    }

    /// Round retention in Redis.
    pub fn round_retention(&self) -> Duration {
        self.round_retention
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}

impl fmt::Debug for CoordConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoordConfig")
            .field("node_id", &self.node_id)
            .field("keys", &self.keys)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("missed_heartbeats", &self.missed_heartbeats)
            .field("liveness_check_interval", &self.liveness_check_interval)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Where Redis is and how to log in. `Debug` and `Display` never show the password.
///
/// TLS (`rediss://`) is not supported in this build (docs/DECISIONS.md); such URLs are
/// refused with [`CoordError::TlsUnsupported`] rather than silently connecting in plain text.
#[derive(Clone)]
pub struct RedisConfig {
    host: String,
    port: u16,
    db: u32,
    username: Option<String>,
    password: Option<Zeroizing<String>>,
    connect_timeout: Duration,
    command_timeout: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
}

fn config_err(field: &str, reason: impl Into<String>) -> CoordError {
    CoordError::Config { field: field.to_owned(), reason: reason.into() }
}

impl RedisConfig {
    /// `host:port`, database 0, no login, with default timeouts (connect 500 ms, command
    /// 2 s) and reconnect backoff (100 ms doubling to 5 s, jittered).
    pub fn new(host: &str, port: u16) -> Result<Self> {
        check_host(host, "host")?;
        if port == 0 {
            return Err(config_err("port", "must be 1-65535"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            db: 0,
            username: None,
            password: None,
            connect_timeout: Duration::from_millis(500),
            command_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        })
    }

    /// Parses `redis://[[username]:password@]host[:port][/db]` (user and password
    /// percent-decoded; default port 6379, database 0).
    pub fn from_url(url: &str) -> Result<Self> {
        let url = url.trim();
        let (scheme, rest) =
            url.split_once("://").ok_or_else(|| config_err("url", "must start with redis://"))?;
        match scheme.to_ascii_lowercase().as_str() {
            "redis" => {}
            "rediss" => return Err(CoordError::TlsUnsupported),
            "unix" | "redis+unix" => {
                return Err(config_err("url", "unix sockets are not supported"));
            }
            _ => return Err(config_err("url", "scheme must be redis://")),
        }
        if rest.contains(['?', '#']) {
            return Err(config_err("url", "query parameters and fragments are not supported"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport)?;
        let mut cfg = Self::new(&host, port.unwrap_or(6379))?;
        if let Some(info) = userinfo {
            let (user, pass) = match info.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (info, None),
            };
            let user = percent_decode(user, "url username")?;
            if !user.is_empty() {
                cfg.username = Some(user);
            }
            if let Some(p) = pass {
                let p = Zeroizing::new(percent_decode(p, "url password")?);
                if !p.is_empty() {
                    cfg.password = Some(p);
                }
            }
        }
        if !path.is_empty() {
            cfg.db = parse_db(path, "url database")?;
        }
        Ok(cfg)
    }

    /// From the seed's environment variables, looked up in `vars`: `REDIS_URL` wins when
    /// set and not empty; otherwise `REDIS_HOST` (default `localhost`), `REDIS_PORT`
    /// (default 6379), `REDIS_DB` (default 0), `REDIS_USERNAME` and `REDIS_PASSWORD` (empty
    /// means none).
    pub fn from_env_map(vars: &HashMap<String, String>) -> Result<Self> {
        Self::from_env_lookup(|name| vars.get(name).cloned())
    }

    /// As [`RedisConfig::from_env_map`], with a lookup function.
    pub fn from_env_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        if let Some(url) = get("REDIS_URL") {
            return Self::from_url(&url).map_err(|e| match e {
                CoordError::Config { reason, .. } => config_err("REDIS_URL", reason),
                other => other,
            });
        }
        let host = get("REDIS_HOST").unwrap_or_else(|| "localhost".to_owned());
        check_host(host.trim(), "REDIS_HOST")?;
        let port = match get("REDIS_PORT") {
            None => 6379,
            Some(p) => p
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| config_err("REDIS_PORT", "must be a port number 1-65535"))?,
        };
        let mut cfg = Self::new(host.trim(), port)?;
        if let Some(db) = get("REDIS_DB") {
            cfg.db = parse_db(db.trim(), "REDIS_DB")?;
        }
        cfg.username = get("REDIS_USERNAME");
        cfg.password = lookup("REDIS_PASSWORD").filter(|p| !p.is_empty()).map(Zeroizing::new);
        Ok(cfg)
    }

    /// From the process environment (see [`RedisConfig::from_env_map`]).
    pub fn from_env() -> Result<Self> {
        Self::from_env_lookup(|name| std::env::var(name).ok())
    }

    /// Sets the login (Redis 6 ACL user, or `None` for the default user).
    pub fn with_login(mut self, username: Option<&str>, password: Option<&str>) -> Self {
        self.username = username.map(str::to_owned);
        self.password = password.map(|p| Zeroizing::new(p.to_owned()));
        self
    }

    /// Sets the database number.
    pub fn with_db(mut self, db: u32) -> Self {
        self.db = db;
        self
    }

    /// How long connecting may take before it counts as failed.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long one command may take before the link counts as down.
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Reconnect backoff: starts at `min`, doubles up to `max`, each wait jittered to a
    /// random point between half and all of it.
    pub fn with_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min.max(Duration::from_millis(1));
        self.backoff_max = max.max(self.backoff_min);
        self
    }

    /// The host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database number.
    pub fn db(&self) -> u32 {
        self.db
    }

    /// The ACL username, if any.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// Whether a password is set (the password itself is not exposed).
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    pub(crate) fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    pub(crate) fn backoff(&self) -> (Duration, Duration) {
        (self.backoff_min, self.backoff_max)
    }

    pub(crate) fn connection_info(&self) -> redis::RedisResult<redis::ConnectionInfo> {
        use redis::IntoConnectionInfo as _;
        let mut settings = redis::RedisConnectionInfo::default().set_db(i64::from(self.db));
        if let Some(u) = &self.username {
            settings = settings.set_username(u);
        }
        if let Some(p) = &self.password {
            settings = settings.set_password(p.as_str());
        }
        Ok(redis::ConnectionAddr::Tcp(self.host.clone(), self.port)
            .into_connection_info()?
            .set_redis_settings(settings))
    }
}

impl fmt::Display for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("redis://")?;
        match (&self.username, &self.password) {
            (Some(u), Some(_)) => write!(f, "{u}:***@")?,
            (Some(u), None) => write!(f, "{u}@")?,
            (None, Some(_)) => f.write_str(":***@")?,
            (None, None) => {}
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}/{}", self.host, self.port, self.db)
        } else {
            write!(f, "{}:{}/{}", self.host, self.port, self.db)
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisConfig({self})")
    }
}

fn check_host(host: &str, field: &str) -> Result<()> {
    if host.is_empty() || host.len() > 253 {
        return Err(config_err(field, "host must be 1-253 characters"));
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '?' | '#'))
    {
        return Err(config_err(field, "host contains a character not allowed in a host name"));
    }
    Ok(())
}

fn split_host_port(hostport: &str) -> Result<(String, Option<u16>)> {
    let port_of = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| config_err("url", "port must be 1-65535"))
    };
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) =
            rest.split_once(']').ok_or_else(|| config_err("url", "unclosed [ in host"))?;
        return match after {
            "" => Ok((host.to_owned(), None)),
            p => Ok((host.to_owned(), Some(port_of(p.strip_prefix(':').unwrap_or("x"))?))),
        };
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_owned(), Some(port_of(p)?))),
        None => Ok((hostport.to_owned(), None)),
    }
}

fn parse_db(text: &str, field: &str) -> Result<u32> {
    text.parse::<u32>()
        .ok()
        .filter(|d| *d <= 1_000_000)
        .ok_or_else(|| config_err(field, "must be a database number"))
}

fn percent_decode(text: &str, field: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex =
                bytes.get(i + 1..i + 3).ok_or_else(|| config_err(field, "bad percent escape"))?;
            let hex =
                std::str::from_utf8(hex).map_err(|_| config_err(field, "bad percent escape"))?;
            out.push(
                u8::from_str_radix(hex, 16).map_err(|_| config_err(field, "bad percent escape"))?,
            );
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| config_err(field, "is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn urls_parse() {
        let c = RedisConfig::from_url("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!(
            (c.host(), c.port(), c.db(), c.username(), c.has_password()),
            ("127.0.0.1", 6380, 2, None, false)
        );
        let c = RedisConfig::from_url("redis://alice:p%40ss%3Aword@redis.example:7000").unwrap();
        assert_eq!((c.host(), c.port(), c.username()), ("redis.example", 7000, Some("alice")));
        assert_eq!(c.password.as_deref().map(String::as_str), Some("p@ss:word"));
        let c = RedisConfig::from_url("redis://:secret@localhost").unwrap();
        assert_eq!((c.port(), c.username(), c.has_password()), (6379, None, true));
        let c = RedisConfig::from_url("redis://[::1]:6390/").unwrap();
        assert_eq!((c.host(), c.port(), c.db()), ("::1", 6390, 0));
    }

    #[test]
    fn bad_urls_are_clear_errors() {
        assert!(matches!(
            RedisConfig::from_url("rediss://h:6379"),
            Err(CoordError::TlsUnsupported)
        ));
        for (bad, words) in [
            ("localhost:6379", "redis://"),
            ("http://h", "scheme"),
            ("redis://h:0", "port"),
            ("redis://h:99999", "port"),
            ("redis://h/x", "database"),
            ("redis://h/?protocol=resp3", "query"),
            ("redis://", "host"),
            ("redis://u:%zz@h", "percent"),
            ("unix:///tmp/redis.sock", "unix"),
        ] {
            let e = RedisConfig::from_url(bad).unwrap_err().to_string();
            assert!(e.contains(words), "{bad}: {e}");
        }
    }

    #[test]
    fn env_vars_follow_the_seed_and_url_wins() {
        let c = RedisConfig::from_env_map(&env(&[])).unwrap();
        assert_eq!((c.host(), c.port(), c.db()), ("localhost", 6379, 0));
        let c = RedisConfig::from_env_map(&env(&[
            ("REDIS_HOST", "cache"),
            ("REDIS_PORT", "6390"),
            ("REDIS_DB", "3"),
            ("REDIS_USERNAME", "agent"),
            ("REDIS_PASSWORD", "hunter2"),
        ]))
        .unwrap();
        assert_eq!(
            (c.host(), c.port(), c.db(), c.username(), c.has_password()),
            ("cache", 6390, 3, Some("agent"), true)
        );
        let c = RedisConfig::from_env_map(&env(&[
            ("REDIS_URL", "redis://u1@h1:1234/5"),
            ("REDIS_HOST", "ignored"),
        ]))
        .unwrap();
        assert_eq!((c.host(), c.port(), c.db(), c.username()), ("h1", 1234, 5, Some("u1")));
        let c = RedisConfig::from_env_map(&env(&[("REDIS_PASSWORD", "")])).unwrap();
        assert!(!c.has_password(), "empty password means none, as in the seed's .env");
    }

    #[test]
    fn invalid_env_values_name_the_variable() {
        for (var, value) in [
            ("REDIS_PORT", "http"),
            ("REDIS_PORT", "0"),
            ("REDIS_DB", "-1"),
            ("REDIS_HOST", "a b"),
            ("REDIS_URL", "redis://h:x"),
        ] {
            let e = RedisConfig::from_env_map(&env(&[(var, value)])).unwrap_err().to_string();
            assert!(e.contains(var), "{var}={value}: {e}");
        }
    }

    #[test]
    fn the_password_is_never_shown() {
        let c = RedisConfig::from_url("redis://bob:hunter2@h:1/0").unwrap();
        for shown in [format!("{c}"), format!("{c:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("bob:***@h:1/0"), "{shown}");
        }
        let e = RedisConfig::from_env_map(&env(&[("REDIS_URL", "redis://bob:hunter2@h:x")]))
            .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
