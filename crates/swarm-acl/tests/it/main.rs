//! Integration tests of swarm-acl: the decision against an independent model.

// Test helpers outside #[test] functions unwrap too: a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod model;
mod regressions;
