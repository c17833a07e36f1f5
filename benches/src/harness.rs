//! A small measuring harness: run a closure many times, record each call's latency in an
//! HDR histogram, and report percentiles and throughput. Criterion was rejected because the
//! reports must put our figures beside a raw baseline measured in the same run, as ratios.

use std::hint::black_box;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// How long and how often to measure.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Calls made before measuring, to warm caches and branch predictors.
    pub(crate) warmup: u64,
    /// Calls measured.
    pub(crate) iterations: u64,
    /// Smoke run (`--quick`): suites also shorten their data sets and timed runs.
    pub(crate) quick: bool,
}

impl Settings {
    /// Quick settings for smoke runs (`--quick`).
    pub(crate) fn quick() -> Self {
        Self { warmup: 200, iterations: 2_000, quick: true }
    }

    /// The same settings with at most `iterations` calls measured and at most `warmup`
    /// calls before, for operations too slow to run the full count of.
    pub(crate) fn capped(&self, warmup: u64, iterations: u64) -> Self {
        Self {
            warmup: self.warmup.min(warmup),
            iterations: self.iterations.min(iterations),
            quick: self.quick,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self { warmup: 2_000, iterations: 50_000, quick: false }
    }
}

/// The result of one measured operation.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Measurement {
    /// What was measured.
    pub(crate) name: String,
    /// Calls measured.
    pub(crate) iterations: u64,
    /// Mean latency in nanoseconds.
    pub(crate) mean_ns: f64,
    /// Median latency in nanoseconds.
    pub p50_ns: u64,
    /// 95th percentile latency in nanoseconds.
    pub p95_ns: u64,
    /// 99th percentile latency in nanoseconds.
    pub p99_ns: u64,
    /// Maximum latency in nanoseconds.
    pub(crate) max_ns: u64,
    /// Calls per second over the measured wall time.
    pub(crate) ops_per_sec: f64,
}

/// Measures `f` call by call. Use for operations of a microsecond or more.
pub(crate) fn measure<R>(name: &str, settings: &Settings, mut f: impl FnMut() -> R) -> Measurement {
    for _ in 0..settings.warmup {
        black_box(f());
    }
    let mut hist = new_histogram();
    let start = Instant::now();
    for _ in 0..settings.iterations {
        let t = Instant::now();
        black_box(f());
        record(&mut hist, t.elapsed());
    }
    summarize(name, settings.iterations, start.elapsed(), &hist)
}

/// Measures `f` in groups of `batch` calls, dividing each group's time by `batch`. Use for
/// operations so short (tens of nanoseconds) that reading the clock would dominate.
pub(crate) fn measure_batched<R>(
    name: &str,
    settings: &Settings,
    batch: u64,
    mut f: impl FnMut() -> R,
) -> Measurement {
    let batch = batch.max(1);
    for _ in 0..settings.warmup {
        black_box(f());
    }
    let rounds = (settings.iterations / batch).max(1);
    let mut hist = new_histogram();
    let start = Instant::now();
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..batch {
            black_box(f());
        }
        record(&mut hist, t.elapsed() / u32::try_from(batch).unwrap_or(u32::MAX));
    }
    summarize(name, rounds * batch, start.elapsed(), &hist)
}

/// Measures `a` and `b` call by call, alternating blocks of `block` calls until each has
/// made `settings.iterations` calls, so that a change in the machine's load during the
/// run lands on both sides alike. Calls per second count only each side's own blocks.
pub(crate) fn measure_pair<A, B>(
    names: (&str, &str),
    settings: &Settings,
    block: u64,
    mut a: impl FnMut() -> A,
    mut b: impl FnMut() -> B,
) -> (Measurement, Measurement) {
    for _ in 0..settings.warmup {
        black_box(a());
        black_box(b());
    }
    let block = block.max(1);
    let (mut hist_a, mut hist_b) = (new_histogram(), new_histogram());
    let (mut wall_a, mut wall_b) = (Duration::ZERO, Duration::ZERO);
    let mut done = 0;
    while done < settings.iterations {
        let n = block.min(settings.iterations - done);
        let start = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            black_box(a());
            record(&mut hist_a, t.elapsed());
        }
        wall_a += start.elapsed();
        let start = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            black_box(b());
            record(&mut hist_b, t.elapsed());
        }
        wall_b += start.elapsed();
        done += n;
    }
    (summarize(names.0, done, wall_a, &hist_a), summarize(names.1, done, wall_b, &hist_b))
}

/// Builds a measurement from latencies recorded elsewhere (for example by several threads).
pub(crate) fn summarize(
    name: &str,
    iterations: u64,
    wall: Duration,
    hist: &Histogram<u64>,
) -> Measurement {
    let secs = wall.as_secs_f64().max(f64::MIN_POSITIVE);
    Measurement {
        name: name.to_owned(),
        iterations,
        mean_ns: hist.mean(),
        p50_ns: hist.value_at_quantile(0.50),
        p95_ns: hist.value_at_quantile(0.95),
        p99_ns: hist.value_at_quantile(0.99),
        max_ns: hist.max(),
        ops_per_sec: iterations as f64 / secs,
    }
}

/// A histogram for nanosecond latencies from 1 ns to 100 s at 3 significant figures.
pub(crate) fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts, so this cannot fail.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// Records one latency, saturating at the histogram's upper bound.
pub(crate) fn record(hist: &mut Histogram<u64>, d: Duration) {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
    hist.saturating_record(ns);
}

/// One comparison of ours against a baseline measured in the same run.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Comparison {
    /// What is compared.
    pub(crate) name: String,
    /// Our figure.
    pub(crate) ours: Measurement,
    /// The raw baseline.
    pub(crate) baseline: Measurement,
    /// `ours.p50 / baseline.p50` for latencies (lower is better).
    pub ratio_p50: f64,
    /// The goal for `ratio_p50`, when the issue sets one.
    pub(crate) goal: Option<f64>,
    /// Whether the goal was met in this run (`None` without a goal).
    pub(crate) met: Option<bool>,
}

impl Comparison {
    /// Compares two latency measurements by their medians.
    pub(crate) fn latency(
        name: &str,
        ours: Measurement,
        baseline: Measurement,
        goal: Option<f64>,
    ) -> Self {
        let ratio_p50 = ours.p50_ns as f64 / (baseline.p50_ns.max(1)) as f64;
        Self {
            name: name.to_owned(),
            met: goal.map(|g| ratio_p50 <= g),
            ours,
            baseline,
            ratio_p50,
            goal,
        }
    }
}

/// Keeps whichever of two measurements of the same thing has the lower median: the best
/// round of several, so that a burst of outside load on a shared machine is discarded.
pub(crate) fn faster(a: Measurement, b: Measurement) -> Measurement {
    if b.p50_ns < a.p50_ns { b } else { a }
}

/// Keeps whichever of two throughput measurements has more calls per second.
pub(crate) fn busier(a: Measurement, b: Measurement) -> Measurement {
    if b.ops_per_sec > a.ops_per_sec { b } else { a }
}

/// A figure checked against an absolute target that an issue sets (a latency bound, a
/// scaling factor), rather than against a baseline measured beside it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Goal {
    /// What is checked.
    pub(crate) name: String,
    /// The figure measured in this run.
    pub(crate) value: f64,
    /// Unit of `value` and `target`, such as `ns` or `x`.
    pub(crate) unit: &'static str,
    /// The target.
    pub(crate) target: f64,
    /// Whether the value must reach the target from below (`>=`) rather than stay under it.
    pub(crate) at_least: bool,
    /// Whether the target was met in this run.
    pub(crate) met: bool,
}

impl Goal {
    /// `value` must be at most `target`.
    pub(crate) fn at_most(name: &str, value: f64, target: f64, unit: &'static str) -> Self {
        Self { name: name.to_owned(), value, unit, target, at_least: false, met: value <= target }
    }

    /// `value` must be at least `target`.
    pub(crate) fn at_least(name: &str, value: f64, target: f64, unit: &'static str) -> Self {
        Self { name: name.to_owned(), value, unit, target, at_least: true, met: value >= target }
    }

    fn show(&self, v: f64) -> String {
        match self.unit {
            "ns" => fmt_ns(v),
            "x" => format!("{v:.2}x"),
            unit => format!("{v:.3} {unit}"),
        }
    }
}

/// A section of the report: free-form figures plus measurements and comparisons.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Section {
    /// Section title, such as `codec`.
    pub(crate) title: String,
    /// Plain measurements.
    pub(crate) measurements: Vec<Measurement>,
    /// Comparisons against baselines.
    pub(crate) comparisons: Vec<Comparison>,
    /// Figures checked against absolute targets.
    pub(crate) goals: Vec<Goal>,
    /// Other named figures (ratios, sizes, counts).
    pub(crate) figures: Vec<(String, f64)>,
}

impl Section {
    /// Starts an empty section.
    pub(crate) fn new(title: &str) -> Self {
        Self { title: title.to_owned(), ..Self::default() }
    }

    /// Renders the section as Markdown tables.
    pub(crate) fn to_markdown(&self) -> String {
        use std::fmt::Write as _;
        let mut out = format!("## {}\n\n", self.title);
        if !self.measurements.is_empty() {
            out.push_str(
                "| operation | p50 | p95 | p99 | max | mean | ops/s |\n\
                 |---|---:|---:|---:|---:|---:|---:|\n",
            );
            for m in &self.measurements {
                // The maximum shows a stall the percentiles hide (one slow call in 10,000).
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {:.0} |",
                    m.name,
                    fmt_ns(m.p50_ns as f64),
                    fmt_ns(m.p95_ns as f64),
                    fmt_ns(m.p99_ns as f64),
                    fmt_ns(m.max_ns as f64),
                    fmt_ns(m.mean_ns),
                    m.ops_per_sec
                );
            }
            out.push('\n');
        }
        if !self.comparisons.is_empty() {
            out.push_str(
                "| comparison | ours p50 | ours p99 | ours ops/s | baseline p50 | baseline p99 \
                 | baseline ops/s | ratio p50 | goal | met |\n\
                 |---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
            );
            for c in &self.comparisons {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {:.0} | {} | {} | {:.0} | {:.2}x | {} | {} |",
                    c.name,
                    fmt_ns(c.ours.p50_ns as f64),
                    fmt_ns(c.ours.p99_ns as f64),
                    c.ours.ops_per_sec,
                    fmt_ns(c.baseline.p50_ns as f64),
                    fmt_ns(c.baseline.p99_ns as f64),
                    c.baseline.ops_per_sec,
                    c.ratio_p50,
                    c.goal.map_or_else(|| "-".to_owned(), |g| format!("<= {g:.2}x")),
                    match c.met {
                        Some(true) => "yes",
                        Some(false) => "NO",
                        None => "-",
                    }
                );
            }
            out.push('\n');
        }
        if !self.goals.is_empty() {
            out.push_str("| goal | measured | target | met |\n|---|---:|---:|---|\n");
            for g in &self.goals {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} {} | {} |",
                    g.name,
                    g.show(g.value),
                    if g.at_least { ">=" } else { "<=" },
                    g.show(g.target),
                    if g.met { "yes" } else { "NO" }
                );
            }
            out.push('\n');
        }
        if !self.figures.is_empty() {
            out.push_str("| figure | value |\n|---|---:|\n");
            for (name, value) in &self.figures {
                let _ = writeln!(out, "| {name} | {value:.3} |");
            }
            out.push('\n');
        }
        out
    }
}

/// Formats nanoseconds with a readable unit.
pub(crate) fn fmt_ns(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.2} us", ns / 1_000.0)
    } else {
        format!("{ns:.0} ns")
    }
}
