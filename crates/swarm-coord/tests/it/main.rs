//! Integration tests of swarm-coord, against a real Redis (swarm-testkit finds or starts
//! one) and on the in-process bus. Most scenarios are written once over `&dyn Coordinator`
//! and run on both backends.

// Tests may unwrap and expect: a panic here is a failed test, not a crashed service.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bus;
mod differential;
mod multiprocess;
mod outage;
mod redis;
mod scenarios;
mod support;
