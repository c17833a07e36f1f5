//! The background thread: flushes queued audit rows and read counts, sweeps expired
//! records, and trims the change feed. It holds only a weak reference, so dropping the
//! store stops it.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use crate::store::Shared;

/// How often queued audit rows and read counts are flushed.
const FLUSH_EVERY: Duration = Duration::from_millis(250);

pub(crate) fn start(shared: &Arc<Shared>) {
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let weak: Weak<Shared> = Arc::downgrade(shared);
    let sweep_every = shared.config.sweep_interval;
    let batch = shared.config.sweep_batch.max(1);
    let spawned = std::thread::Builder::new().name("swarm-store-maintenance".into()).spawn(move || {
        let mut last_sweep = Instant::now();
        loop {
            match stopped.recv_timeout(FLUSH_EVERY) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            let Some(shared) = weak.upgrade() else { return };
            if let Err(e) = shared.flush() {
                tracing::warn!(error = %e, "flushing audit rows and read counts failed; will retry");
            }
            if let Some(every) = sweep_every
                && last_sweep.elapsed() >= every
            {
                last_sweep = Instant::now();
                loop {
                    match crate::memory::sweep_once(&shared, batch) {
                        Ok(n) if n == u64::from(batch) => continue,
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "sweeping expired records failed; will retry");
                            break;
                        }
                    }
                }
            }
        }
    });
    match spawned {
        Ok(handle) => shared.set_background(stop, handle),
        Err(e) => tracing::error!(error = %e, "could not start the maintenance thread"),
    }
}
