//! Health reports and the counters behind them.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::envelope::DropReason;

/// Received messages dropped, by reason (see [`DropReason`]), plus messages a slow
/// subscriber missed and messages a handler panicked on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// No `hmac`.
    pub unsigned: u64,
    /// Wrong `hmac`.
    pub bad_signature: u64,
    /// Above `max_message_bytes`.
    pub oversized: u64,
    /// Not a valid envelope.
    pub malformed: u64,
    /// An id seen before.
    pub replayed: u64,
    /// Past its ttl or older than the replay window.
    pub expired: u64,
    /// Too far in the future.
    pub skewed: u64,
    /// Valid, but the subscription's buffer was full.
    pub lagged: u64,
    /// Valid, but the handler of a [`crate::HandlerSubscription`] panicked on it.
    pub handler_panics: u64,
}

impl DropCounts {
    /// All messages refused by validation (everything but `lagged`).
    pub fn rejected(&self) -> u64 {
        self.unsigned
            + self.bad_signature
            + self.oversized
            + self.malformed
            + self.replayed
            + self.expired
            + self.skewed
    }

    /// The count for one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::Unsigned => self.unsigned,
            DropReason::BadSignature => self.bad_signature,
            DropReason::Oversized => self.oversized,
            DropReason::Malformed => self.malformed,
            DropReason::Replayed => self.replayed,
            DropReason::Expired => self.expired,
            DropReason::Skewed => self.skewed,
        }
    }
}

/// A coordinator's health, as [`crate::Coordinator::health`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// `"in-process"` or `"redis"`.
    pub backend: &'static str,
    /// This node's id.
    pub node_id: String,
    /// Whether the backend is reachable now (for Redis: both the command and the
    /// subscription links are up).
    pub connected: bool,
    /// Unix ms since when `connected` has had its current value.
    pub since_ms: u64,
    /// The last connection error, if any since start (kept after recovery).
    pub last_error: Option<String>,
    /// Dropped messages by reason.
    pub dropped: DropCounts,
    /// How many times a lost link was re-established.
    pub reconnects: u64,
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    dropped: [AtomicU64; 9],
    pub(crate) reconnects: AtomicU64,
    pub(crate) last_error: Mutex<Option<String>>,
}

impl Counters {
    fn index(reason: DropReason) -> usize {
        match reason {
            DropReason::Unsigned => 0,
            DropReason::BadSignature => 1,
            DropReason::Oversized => 2,
            DropReason::Malformed => 3,
            DropReason::Replayed => 4,
            DropReason::Expired => 5,
            DropReason::Skewed => 6,
        }
    }

    pub(crate) fn drop_message(&self, reason: DropReason) {
        self.dropped[Self::index(reason)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn lagged(&self) {
        self.dropped[7].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn handler_panicked(&self) {
        self.dropped[8].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_error(&self, error: String) {
        *self.last_error.lock() = Some(error);
    }

    pub(crate) fn snapshot(&self) -> DropCounts {
        let g = |i: usize| self.dropped[i].load(Ordering::Relaxed);
        DropCounts {
            unsigned: g(0),
            bad_signature: g(1),
            oversized: g(2),
            malformed: g(3),
            replayed: g(4),
            expired: g(5),
            skewed: g(6),
            lagged: g(7),
            handler_panics: g(8),
        }
    }
}
