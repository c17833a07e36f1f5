//! The one busy-retry helper: every place that may meet another process's write lock goes
//! through [`with_busy_retry`], so back-off is uniform and counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::ErrorCode;

/// Whether `e` means another connection holds a lock we need.
pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked))
}

/// How long to keep retrying and how to space the attempts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RetryPolicy {
    /// Give up after this long in total.
    pub(crate) deadline: Duration,
    /// First back-off; doubles each attempt up to `max_backoff`, with full jitter.
    pub(crate) base_backoff: Duration,
    /// Cap of one back-off.
    pub(crate) max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(30),
            base_backoff: Duration::from_micros(200),
            max_backoff: Duration::from_millis(50),
        }
    }
}

/// Runs `f`, retrying with jittered exponential back-off while it fails with a busy or
/// locked error, until the policy's deadline. `retries` counts every retry.
pub(crate) fn with_busy_retry<T>(
    policy: &RetryPolicy,
    retries: &AtomicU64,
    mut f: impl FnMut() -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let start = Instant::now();
    let mut backoff = policy.base_backoff;
    loop {
        match f() {
            Err(e) if is_busy(&e) && start.elapsed() < policy.deadline => {
                retries.fetch_add(1, Ordering::Relaxed);
                let cap = u64::try_from(backoff.as_micros()).unwrap_or(u64::MAX).max(1);
                std::thread::sleep(Duration::from_micros(rand::random_range(0..=cap)));
                backoff = (backoff * 2).min(policy.max_backoff);
            }
            other => return other,
        }
    }
}
