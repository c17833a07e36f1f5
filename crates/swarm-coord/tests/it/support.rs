//! Shared helpers: configurations with short intervals, a Redis per test, waiting.

use std::time::{Duration, Instant};

use swarm_acl::SwarmId;
use swarm_coord::{CoordConfig, Envelope, RedisConfig, RedisCoordinator, SwarmKeys, SwarmSecret};
use swarm_testkit::{KeyScope, TestRedis};

/// Heartbeats in tests: every 100 ms, offline after 3 missed, checked every 50 ms.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(100);
pub(crate) const CHECK: Duration = Duration::from_millis(50);

/// What a liveness bound may be exceeded by before a test calls it broken: the threads
/// that send heartbeats, check them and deliver the report may each be held up for a
/// while on a busy machine. Still far below what the default intervals would take (15 s).
pub(crate) const SCHEDULING_SLACK: Duration = Duration::from_secs(2);

/// The secret every test node shares (children of multi-process tests too).
pub(crate) fn secret() -> SwarmSecret {
    SwarmSecret::from_bytes([0x42; 32])
}

pub(crate) fn keys(swarm: &SwarmId) -> SwarmKeys {
    SwarmKeys::new().with_secret(swarm, secret())
}

pub(crate) fn config(swarm: &SwarmId, node: &str) -> CoordConfig {
    CoordConfig::new(keys(swarm))
        .unwrap()
        .with_node_id(node)
        .unwrap()
        .with_heartbeat_interval(HEARTBEAT)
        .with_missed_heartbeats(3)
        .with_liveness_check_interval(CHECK)
}

pub(crate) fn redis_config(url: &str) -> RedisConfig {
    RedisConfig::from_url(url)
        .unwrap()
        .with_connect_timeout(Duration::from_millis(300))
        .with_command_timeout(Duration::from_secs(1))
        .with_backoff(Duration::from_millis(20), Duration::from_millis(200))
}

/// A Redis, a unique swarm on it whose keys are deleted at the end.
pub(crate) struct RedisEnv {
    pub(crate) swarm: SwarmId,
    /// Deletes the swarm's keys on drop.
    _scope: KeyScope,
    pub(crate) redis: TestRedis,
}

impl RedisEnv {
    pub(crate) fn new() -> Self {
        let redis = TestRedis::start();
        let scope = redis.scope();
        let swarm = SwarmId::new(scope.id()).unwrap();
        Self { swarm, _scope: scope, redis }
    }

    pub(crate) fn coordinator(&self, node: &str) -> RedisCoordinator {
        RedisCoordinator::connect(redis_config(&self.redis.url()), config(&self.swarm, node))
            .unwrap()
    }
}

/// Polls `f` until it is true or `timeout` passes.
pub(crate) fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The first message whose `type` is `kind` (others skipped), within `timeout`.
pub(crate) fn recv_type(
    sub: &swarm_coord::Subscription,
    kind: &str,
    timeout: Duration,
) -> Option<Envelope> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match sub.recv_timeout(left).unwrap() {
            Some(env) if env.message_type() == Some(kind) => return Some(env),
            Some(_) => {}
            None => return None,
        }
    }
}

/// Every message of type `kind` received within `window`.
pub(crate) fn collect_type(
    sub: &swarm_coord::Subscription,
    kind: &str,
    window: Duration,
) -> Vec<Envelope> {
    let deadline = Instant::now() + window;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return out;
        }
        if let Some(env) = sub.recv_timeout(left).unwrap()
            && env.message_type() == Some(kind)
        {
            out.push(env);
        }
    }
}
