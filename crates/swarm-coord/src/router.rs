//! Local subscriptions, and the validation every received message passes before delivery.
//! Shared by both coordinators, so a forged message meets the same checks on either.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use parking_lot::Mutex;

use crate::channel::{Channel, ChannelFilter, Topic, glob_match};
use crate::config::CoordConfig;
use crate::envelope::{DropReason, Envelope, decode_envelope};
use crate::health::Counters;
use crate::replay::{ReplayCache, Seen};
use crate::{CoordError, Result};

/// A function that handles the messages of a [`HandlerSubscription`], called on the
/// thread that received them (see [`crate::Coordinator::subscribe_with`]).
pub type Handler = Box<dyn Fn(&Envelope) + Send + Sync + 'static>;

/// A registered handler and whether its subscription still exists: cleared when it is
/// dropped or its coordinator closes, and checked before every call, so a delivery already
/// on its way (collected before the removal, or queued in [`DEFERRED`]) does not reach it.
struct HandlerSlot {
    live: std::sync::atomic::AtomicBool,
    f: Handler,
}

impl HandlerSlot {
    fn retire(&self) {
        self.live.store(false, std::sync::atomic::Ordering::Release);
    }

    fn is_live(&self) -> bool {
        self.live.load(std::sync::atomic::Ordering::Acquire)
    }
}

type SharedHandler = Arc<HandlerSlot>;

/// Where a subscription's messages go.
#[derive(Clone)]
enum Sink {
    /// Into a bounded queue that a [`Subscription`] receives from.
    Queue(Sender<Envelope>),
    /// Into a function, on the receiving thread.
    Handler(SharedHandler),
}

impl Sink {
    fn retire(&self) {
        if let Sink::Handler(slot) = self {
            slot.retire();
        }
    }
}

struct SubEntry {
    filter: ChannelFilter,
    topic: Topic,
    sink: Sink,
}

type Deferred = (SharedHandler, Envelope, Arc<Counters>);

thread_local! {
    /// Whether this thread is running a handler now.
    static IN_HANDLER: Cell<bool> = const { Cell::new(false) };
    /// Deliveries to handlers made while a handler of this thread was running (one that
    /// published on an in-process bus it listens to), run by the outermost delivery once
    /// that handler returns: in order, and without growing the stack.
    /// Each with the counters of the coordinator it belongs to.
    static DEFERRED: RefCell<VecDeque<Deferred>> =
        const { RefCell::new(VecDeque::new()) };
}

#[derive(Default)]
struct Subs {
    next_id: u64,
    entries: HashMap<u64, SubEntry>,
    topics: BTreeMap<Topic, usize>,
    closed: bool,
}

pub(crate) struct Router {
    config: CoordConfig,
    counters: Arc<Counters>,
    subs: Mutex<Subs>,
    replay: Mutex<(ReplayCache, u64)>,
}

/// Something that can drop a subscription by id (the coordinator that made it).
pub(crate) trait Unsubscribe: Send + Sync {
    fn unsubscribe(&self, id: u64);
}

impl Router {
    pub(crate) fn new(config: CoordConfig, counters: Arc<Counters>) -> Self {
        let replay = ReplayCache::new(config.replay_cache_capacity());
        Self {
            config,
            counters,
            subs: Mutex::new(Subs::default()),
            replay: Mutex::new((replay, 0)),
        }
    }

    /// Registers a subscription. Returns its id, its receiver, and whether its topic is new
    /// (so the backend must subscribe to it).
    pub(crate) fn add(
        &self,
        filter: ChannelFilter,
    ) -> Result<(u64, Receiver<Envelope>, Topic, bool)> {
        let (tx, rx) = crossbeam_channel::bounded(self.config.subscription_capacity());
        let (id, topic, new) = self.add_sink(filter, Sink::Queue(tx))?;
        Ok((id, rx, topic, new))
    }

    /// Registers a handler subscription. Returns its id, and whether its topic is new.
    pub(crate) fn add_handler(
        &self,
        filter: ChannelFilter,
        handler: Handler,
    ) -> Result<(u64, Topic, bool)> {
        let slot = HandlerSlot { live: std::sync::atomic::AtomicBool::new(true), f: handler };
        self.add_sink(filter, Sink::Handler(Arc::new(slot)))
    }

    fn add_sink(&self, filter: ChannelFilter, sink: Sink) -> Result<(u64, Topic, bool)> {
        filter.validate()?;
        if !self.config.keys().contains(filter.swarm()) {
            return Err(CoordError::NoSecret { swarm: filter.swarm().clone() });
        }
        let topic = filter.topic();
        let mut subs = self.subs.lock();
        if subs.closed {
            return Err(CoordError::Closed);
        }
        subs.next_id += 1;
        let id = subs.next_id;
        let count = subs.topics.entry(topic.clone()).or_insert(0);
        *count += 1;
        let new = *count == 1;
        subs.entries.insert(id, SubEntry { filter, topic: topic.clone(), sink });
        Ok((id, topic, new))
    }

    /// Removes a subscription; returns its topic when no other subscription uses it.
    ///
    /// The entry is dropped after the lock is released: a handler's captured state may own
    /// subscriptions of this coordinator, whose own drop comes back here.
    pub(crate) fn remove(&self, id: u64) -> Option<Topic> {
        let (entry, unused) = {
            let mut subs = self.subs.lock();
            let entry = subs.entries.remove(&id)?;
            let unused = match subs.topics.get_mut(&entry.topic) {
                Some(count) => {
                    *count -= 1;
                    *count == 0
                }
                None => false,
            };
            if unused {
                subs.topics.remove(&entry.topic);
            }
            (entry, unused)
        };
        entry.sink.retire();
        unused.then(|| entry.topic.clone())
    }

    /// Every topic with at least one subscription.
    pub(crate) fn topics(&self) -> Vec<Topic> {
        self.subs.lock().topics.keys().cloned().collect()
    }

    /// Drops every subscription; their receivers then report the coordinator closed.
    /// The entries are dropped after the lock is released, as in [`Router::remove`].
    pub(crate) fn close(&self) {
        let entries = {
            let mut subs = self.subs.lock();
            subs.closed = true;
            subs.topics.clear();
            std::mem::take(&mut subs.entries)
        };
        for entry in entries.values() {
            entry.sink.retire();
        }
        drop(entries);
    }

    /// A message that arrived on `channel_name` for `topic` (as Redis delivers it: once per
    /// matching subscription topic).
    pub(crate) fn dispatch(&self, topic: &Topic, channel_name: &str, bytes: &[u8]) {
        let channel = Channel::parse(channel_name).ok();
        let mut targets: Vec<Sink> = {
            let subs = self.subs.lock();
            if !subs.topics.contains_key(topic) {
                return;
            }
            match &channel {
                // A name that is no channel of ours can only have matched a pattern.
                None => {
                    drop(subs);
                    self.counters.drop_message(DropReason::Malformed);
                    return;
                }
                Some(c) => subs
                    .entries
                    .values()
                    .filter(|e| &e.topic == topic && e.filter.matches(c))
                    .map(|e| e.sink.clone())
                    .collect(),
            }
        };
        // A pattern such as `swarm:a:*` also matches channels of swarm `a:b`; those are not
        // for these subscribers, and are neither checked nor counted here.
        if targets.is_empty() {
            return;
        }
        let now = self.config.now_ms();
        let mut env = match decode_envelope(
            bytes,
            channel_name,
            self.config.keys(),
            now,
            self.config.limits(),
        ) {
            Ok(env) => env,
            Err(reason) => {
                tracing::debug!(channel = %crate::channel::truncated(channel_name), %reason, "dropped a message");
                self.counters.drop_message(reason);
                return;
            }
        };
        {
            let mut guard = self.replay.lock();
            let (cache, last_sweep) = &mut *guard;
            if now.saturating_sub(*last_sweep) >= 1_000 {
                cache.sweep(now.saturating_sub(self.config.limits().replay_window_ms));
                *last_sweep = now;
            }
            match cache.check_and_insert(topic, env.id(), env.timestamp_ms()) {
                Seen::Fresh => {}
                Seen::Replayed => {
                    self.counters.drop_message(DropReason::Replayed);
                    return;
                }
                Seen::TooOld => {
                    self.counters.drop_message(DropReason::Expired);
                    return;
                }
            }
        }
        env.set_received_now();
        // Handlers borrow the envelope; a queue gets a copy unless it is the last target
        // (usually the only one), which takes the envelope itself.
        let last = targets.pop();
        for sink in targets {
            match sink {
                Sink::Queue(tx) => self.enqueue(&tx, env.clone()),
                Sink::Handler(handler) => self.run_handler(handler, &env),
            }
        }
        match last {
            Some(Sink::Queue(tx)) => self.enqueue(&tx, env),
            Some(Sink::Handler(handler)) => self.run_handler(handler, &env),
            None => {}
        }
    }

    /// Puts a message into a subscription's queue; a full queue counts as lagging.
    fn enqueue(&self, tx: &Sender<Envelope>, env: Envelope) {
        match tx.try_send(env) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => self.counters.lagged(),
        }
    }

    /// Runs a handler on this thread. A handler that panics is counted and logged, and the
    /// thread (for Redis, the subscriber thread) carries on. A delivery made from inside a
    /// running handler waits until it returns (see [`DEFERRED`]). A handler whose
    /// subscription is gone by the time its turn comes is not called.
    fn run_handler(&self, handler: SharedHandler, env: &Envelope) {
        if IN_HANDLER.get() {
            let counters = Arc::clone(&self.counters);
            DEFERRED.with_borrow_mut(|q| q.push_back((handler, env.clone(), counters)));
            return;
        }
        // Cleared however this returns, unwinding included: a stuck flag would queue every
        // later delivery of this thread for ever.
        struct Running;
        impl Drop for Running {
            fn drop(&mut self) {
                IN_HANDLER.set(false);
            }
        }
        IN_HANDLER.set(true);
        let _running = Running;
        // This message is handed over by reference; only deliveries deferred while a handler
        // runs are copies (copying every message showed in profiles of delivery).
        call_if_live(handler, env, &self.counters);
        while let Some((handler, env, counters)) = DEFERRED.with_borrow_mut(VecDeque::pop_front) {
            call_if_live(handler, &env, &counters);
        }
    }

    /// The in-process equivalent of Redis delivering a PUBLISH: once per topic that matches
    /// the channel name.
    pub(crate) fn dispatch_all(&self, channel_name: &str, bytes: &[u8]) {
        let topics: Vec<Topic> = self
            .subs
            .lock()
            .topics
            .keys()
            .filter(|t| match t {
                Topic::Channel(c) => c == channel_name,
                Topic::Pattern(p) => glob_match(p.as_bytes(), channel_name.as_bytes()),
            })
            .cloned()
            .collect();
        for topic in topics {
            self.dispatch(&topic, channel_name, bytes);
        }
    }
}

/// Calls a handler (see [`call_guarded`]) unless its subscription is gone.
fn call_if_live(handler: SharedHandler, env: &Envelope, counters: &Counters) {
    if handler.is_live() {
        call_guarded(handler, env, counters);
    }
}

/// Calls a handler, and drops it (it may be the last reference to its state), with any
/// panic caught: a panic is counted and logged, and its payload is dropped under a guard
/// too, so nothing unwinds into the router.
fn call_guarded(handler: SharedHandler, env: &Envelope, counters: &Counters) {
    let called = catch_unwind(AssertUnwindSafe(move || {
        (handler.f)(env);
        drop(handler);
    }));
    if let Err(payload) = called {
        counters.handler_panicked();
        tracing::error!(
            channel = %crate::channel::truncated(env.channel().name()),
            id = env.id(),
            "a subscription handler panicked; the message is lost to it"
        );
        if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            // A payload whose drop panics, and so on: stop here rather than unwind.
            std::mem::forget(again);
        }
    }
}

/// A live subscription. Dropping it unsubscribes. After a reconnect to Redis it is
/// resubscribed without anything to do here.
pub struct Subscription {
    id: u64,
    filter: ChannelFilter,
    rx: Receiver<Envelope>,
    owner: Weak<dyn Unsubscribe>,
}

impl Subscription {
    pub(crate) fn new(
        id: u64,
        filter: ChannelFilter,
        rx: Receiver<Envelope>,
        owner: Weak<dyn Unsubscribe>,
    ) -> Self {
        Self { id, filter, rx, owner }
    }

    /// What this subscription receives.
    pub fn filter(&self) -> &ChannelFilter {
        &self.filter
    }

    /// The next message, waiting up to `timeout`: `Ok(None)` when none came,
    /// [`CoordError::Closed`] once the coordinator is shut down.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Envelope>> {
        match self.rx.recv_timeout(timeout) {
            Ok(env) => Ok(Some(env)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(CoordError::Closed),
        }
    }

    /// The channel the messages arrive on, to wait on it together with others
    /// (`crossbeam_channel::select!`). Disconnected once the coordinator shuts down.
    pub fn receiver(&self) -> &Receiver<Envelope> {
        &self.rx
    }

    /// The next message if one is waiting.
    pub fn try_recv(&self) -> Result<Option<Envelope>> {
        match self.rx.try_recv() {
            Ok(env) => Ok(Some(env)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(CoordError::Closed),
        }
    }

    /// Messages waiting to be received.
    pub fn pending(&self) -> usize {
        self.rx.len()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.upgrade() {
            owner.unsubscribe(self.id);
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("filter", &self.filter)
            .field("pending", &self.rx.len())
            .finish()
    }
}

/// A live handler subscription, from [`crate::Coordinator::subscribe_with`]. Dropping it
/// unsubscribes; a message being delivered at that moment may still reach the handler
/// once. After a reconnect to Redis it is resubscribed without anything to do here.
pub struct HandlerSubscription {
    id: u64,
    filter: ChannelFilter,
    owner: Weak<dyn Unsubscribe>,
}

impl HandlerSubscription {
    pub(crate) fn new(id: u64, filter: ChannelFilter, owner: Weak<dyn Unsubscribe>) -> Self {
        Self { id, filter, owner }
    }

    /// What this subscription receives.
    pub fn filter(&self) -> &ChannelFilter {
        &self.filter
    }
}

impl Drop for HandlerSubscription {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.upgrade() {
            owner.unsubscribe(self.id);
        }
    }
}

impl std::fmt::Debug for HandlerSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerSubscription").field("filter", &self.filter).finish()
    }
}
