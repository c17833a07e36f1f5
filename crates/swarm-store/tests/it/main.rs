//! Integration tests of swarm-store, one binary with a module per area.

// Test helpers outside #[test] functions unwrap too: a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod acl_conformance;
mod artifacts;
mod audit;
mod conflicts;
mod consensus;
mod events;
mod fixtures;
mod load;
mod memory;
mod operations;
mod registry;
mod rotation;
mod schema;
mod search;
mod sql_agreement;
mod tasks;
