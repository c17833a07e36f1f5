//! Integration tests of swarm-acl: the decision against an independent model.

mod model;
mod regressions;
