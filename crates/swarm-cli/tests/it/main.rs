//! Integration tests of the `swarm-memory` command: the built binary, run in a temporary
//! directory with a clean environment, as a user would.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod agents;
mod artifacts;
mod bench;
mod consensus;
mod demo;
mod events;
mod health;
mod mcp;
mod memory;
mod ops;
mod output;
mod support;
mod swarms;
mod tasks;
