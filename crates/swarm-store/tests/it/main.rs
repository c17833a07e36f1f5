//! Integration tests of swarm-store, one binary with a module per area.

mod acl_conformance;
mod audit;
mod fixtures;
mod memory;
mod registry;
mod schema;
mod sql_agreement;
