//! `cargo xtask ci`: every check CI runs, in CI's order. `.github/workflows/ci.yml` runs
//! `.ci/run`, which runs this, so a green local run means a green CI run.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::{cargo, run_command};

/// A step: its name as printed, and what it does.
type Step = (&'static str, fn(&Path) -> Result<()>);

/// The steps in the order they run. Cheap checks first, so a formatting slip fails in
/// seconds rather than after a full build.
const STEPS: &[Step] = &[
    ("fmt", fmt),
    ("clippy", clippy),
    ("test", test),
    ("doc", doc),
    ("schema", schema),
    ("tidy", tidy),
];

pub(crate) fn run(root: &Path) -> Result<()> {
    let started = Instant::now();
    for (index, (name, step)) in STEPS.iter().enumerate() {
        println!("==> [{}/{}] {name}", index + 1, STEPS.len());
        let step_started = Instant::now();
        let outcome = step(root);
        let elapsed = step_started.elapsed();
        if let Err(e) = outcome {
            println!("==> {name} FAILED after {}", seconds(elapsed));
            bail!("ci step `{name}` failed: {e:#}");
        }
        println!("==> {name} ok ({})", seconds(elapsed));
    }
    println!("==> ci passed: {} steps in {}", STEPS.len(), seconds(started.elapsed()));
    Ok(())
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn fmt(root: &Path) -> Result<()> {
    let mut command = cargo(root);
    command.args(["fmt", "--all", "--", "--check"]);
    run_command(command)
}

fn clippy(root: &Path) -> Result<()> {
    let mut command = cargo(root);
    command.args(["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]);
    run_command(command)
}

/// The test step. Kept in one function so a switch to `cargo nextest run` (plus
/// `cargo test --doc`, which nextest does not run) is a change here only.
fn test(root: &Path) -> Result<()> {
    let mut command = cargo(root);
    command.args(["test", "--workspace", "--locked"]);
    run_command(command)
}

fn doc(root: &Path) -> Result<()> {
    let mut command = cargo(root);
    command
        .args(["doc", "--workspace", "--no-deps", "--locked"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run_command(command)
}

fn schema(root: &Path) -> Result<()> {
    crate::schema::check(root)
}

fn tidy(root: &Path) -> Result<()> {
    crate::tidy::run(root)
}
