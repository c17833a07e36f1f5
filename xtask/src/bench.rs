//! `cargo xtask bench [ARGS...]`: the benchmark binary, built in release mode.
//!
//! A passthrough on purpose: suites and options belong to `swarm-bench`, so adding a
//! suite never needs a change here.

use std::path::Path;

use anyhow::Result;

use crate::{cargo, run_command};

/// Where reports go unless the arguments name another `--output` (the last one wins in
/// `swarm-bench`).
const OUTPUT: &str = "target/bench";

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut command = cargo(root);
    command.args(["run", "--release", "-p", "swarm-bench", "--", "--output", OUTPUT]).args(args);
    run_command(command)
}
