//! `swarm-bench`: the benchmark runner behind `cargo xtask bench`.
//!
//! Every figure that has a goal is measured beside its raw baseline in the same run, so a
//! noisy machine moves both and the ratio stays meaningful. Results are printed as Markdown
//! and written as JSON to the output directory.

#![allow(clippy::print_stdout, missing_docs)]

mod acl;
mod codec;
mod concurrency;
mod coord;
mod fixture;
mod harness;
mod scale;
mod store;

use std::path::PathBuf;

use anyhow::{Context as _, bail};

use crate::harness::{Section, Settings};

fn main() -> anyhow::Result<()> {
    // A child process of the coord suite: this binary run again by itself.
    if let Some(role) = coord::child_role() {
        return coord::child(&role);
    }
    let mut args = std::env::args().skip(1);
    let mut suites: Vec<String> = Vec::new();
    let mut output = PathBuf::from("target/bench");
    let mut settings = Settings::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => settings = Settings::quick(),
            "--output" => {
                output = PathBuf::from(args.next().context("--output needs a directory")?)
            }
            "--help" | "-h" => {
                println!(
                    "usage: swarm-bench [--quick] [--output DIR] [SUITE...]\nsuites: {}",
                    SUITES.join(" ")
                );
                return Ok(());
            }
            s if s.starts_with('-') => bail!("unknown option {s}"),
            s => suites.push(s.to_owned()),
        }
    }
    if suites.is_empty() || suites.iter().any(|s| s == "all") {
        suites = SUITES.iter().map(|s| (*s).to_owned()).collect();
    }
    let mut sections = Vec::new();
    for suite in &suites {
        eprintln!("running suite {suite}");
        let section: Section = match suite.as_str() {
            "codec" => codec::run(&settings)?,
            "acl" => acl::run(&settings)?,
            "store" => store::run(&settings)?,
            "concurrency" => concurrency::run(&settings)?,
            "scale" => scale::run(&settings)?,
            "coord" => coord::run(&settings)?,
            other => bail!("unknown suite {other} (known: {})", SUITES.join(" ")),
        };
        println!("{}", section.to_markdown());
        sections.push(section);
    }
    std::fs::create_dir_all(&output).with_context(|| format!("creating {}", output.display()))?;
    let path = output.join("report.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&sections)?)
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("report written to {}", path.display());
    Ok(())
}

/// Suites in the order `all` runs them.
const SUITES: &[&str] = &["codec", "acl", "store", "concurrency", "scale", "coord"];
