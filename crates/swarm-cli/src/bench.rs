//! `bench`: the seed's performance report (`run_benchmarks` of the umbrella) with the
//! opened database's settings (durability, compression threshold, encrypted levels), as
//! the system principal. The measuring happens on a scratch database beside the opened
//! one, removed afterwards: the opened database is never written.
//!
//! Without `--json` the readable table is printed; with it, the report as one JSON
//! document. The report file goes to `--output DIR`, else to `BENCHMARK_OUTPUT_DIR` when
//! that is set. Options out of range are refused by the umbrella (exit 2).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use clap::Args;
use swarm_memory::{BenchOptions, Progress, SwarmMemory};

use crate::exit::Result;
use crate::output::{Reply, to_json};
use crate::progress::Bar;

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Calls measured per operation (the seed's testIterations), 1 to 1000000
    #[arg(long, value_name = "N", default_value_t = 5_000)]
    iterations: u64,
    /// Threads of the concurrent runs (the seed's concurrency), 1 to 256
    #[arg(long, value_name = "C", default_value_t = 20)]
    concurrency: usize,
    /// Write the JSON report into this directory (default: BENCHMARK_OUTPUT_DIR, if set)
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Size of the values of the basic, concurrent, TTL and namespace runs, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = 256)]
    value_bytes: usize,
    /// Size of the large values, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024)]
    large_value_bytes: usize,
    /// Keep the scratch records unencrypted (the seed's enableEncryption: false)
    #[arg(long)]
    no_encryption: bool,
    /// Never compress the scratch records (the seed's enableCompression: false)
    #[arg(long)]
    no_compression: bool,
}

/// `bench [--iterations N] [--concurrency C] [--output DIR] ...`.
pub(crate) fn run(system: &SwarmMemory, a: &BenchArgs) -> Result<Reply> {
    let mut options = BenchOptions::new()
        .iterations(a.iterations)
        .concurrency(a.concurrency)
        .value_bytes(a.value_bytes)
        .large_value_bytes(a.large_value_bytes)
        .encryption(!a.no_encryption)
        .compression(!a.no_compression);
    if let Some(dir) = &a.output {
        options = options.output_dir(dir);
    }
    let bar = Arc::new(Bar::new("benchmarking", "ops"));
    let shown = Arc::clone(&bar);
    let phase = Mutex::new("");
    options = options.on_progress(move |p| {
        if let Ok(mut last) = phase.lock()
            && *last != p.phase
        {
            *last = p.phase;
            shown.relabel(format!("benchmarking {}", p.phase));
        }
        shown.show(Progress { done: p.done, total: p.total });
    });
    let report = system.run_benchmarks(&options);
    // The bar is cleared before anything is printed.
    drop(options);
    drop(bar);
    let report = report?;
    let table = report.render_table();
    let mut reply = Reply::new(to_json(&report)?, table);
    if let Some(path) = &report.report_path {
        reply = reply.info(format!("report written to {}", path.display()));
    }
    Ok(reply)
}
