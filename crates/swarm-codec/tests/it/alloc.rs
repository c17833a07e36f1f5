//! A global allocator that records, per thread, the largest single allocation, so tests can
//! prove that decoding a hostile envelope does not allocate what it declares.
//!
//! This is the only unsafe code in the crate's tests: implementing `GlobalAlloc` is unsafe
//! by definition. It only forwards to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct PeakTracking;

thread_local! {
    // Const-initialized and without destructor: safe to touch from inside the allocator.
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with` fails only while the thread is being torn down; then nothing is measured.
    let _ = PEAK.try_with(|peak| {
        if size > peak.get() {
            peak.set(size);
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is exactly the system allocator's. `note` does not allocate.
unsafe impl GlobalAlloc for PeakTracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: PeakTracking = PeakTracking;

/// Runs `f` and returns its result with the largest single allocation this thread made
/// while it ran.
pub(crate) fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    PEAK.with(|p| p.set(0));
    let result = f();
    (result, PEAK.with(Cell::get))
}

#[test]
fn tracking_sees_allocations() {
    let (v, peak) = largest_allocation(|| vec![0u8; 100_000]);
    assert_eq!(v.len(), 100_000);
    assert!(peak >= 100_000);
    let ((), peak) = largest_allocation(|| ());
    assert_eq!(peak, 0);
}
