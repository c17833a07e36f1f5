//! `cargo xtask`: the maintenance tasks of the swarm-memory workspace.
//!
//! Run `cargo xtask help` for the list. The tasks are plain Rust so they behave the same on
//! every machine and in CI, with no shell scripts to drift out of step:
//!
//! - `ci` runs exactly what CI runs, in CI's order (`.ci/run` calls it);
//! - `tidy` checks the crate graph against the layering of SPEC.md section 2 (and is
//!   also a unit test, so a plain `cargo test --workspace` enforces it);
//! - `schema` regenerates `crates/swarm-schema/schema.sql`, `schema --check` verifies it;
//! - `migrate` upgrades a database file in place or reports its schema version;
//! - `bench` runs the benchmark binary.
//!
//! What it is not: a library. Nothing in the workspace depends on it, and it may depend
//! on anything in the workspace.

// A command-line tool reports on stdout; the workspace warns on printing to keep it out
// of the libraries.
#![allow(clippy::print_stdout)]

mod bench;
mod ci;
mod migrate;
mod schema;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context as _, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  ci                       run every CI step in CI's order, stopping at the first failure:
                           fmt, clippy, test, doc, schema check, tidy
  tidy                     check the crate dependency graph, [lints] and crate docs
  schema [--check]         regenerate crates/swarm-schema/schema.sql from the migrations;
                           with --check, fail if the committed file is stale
  migrate [--create] PATH  apply pending migrations to the database file at PATH
                           (a missing file is refused unless --create is given)
  migrate --status PATH    print the schema version of PATH and the latest this build knows,
                           without opening or changing the database
  bench [ARGS...]          cargo run --release -p swarm-bench -- --output target/bench ARGS...
                           (e.g. --quick, suite names)
  help                     this message
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    let Some((command, rest)) = args.split_first() else {
        print!("{USAGE}");
        return Ok(());
    };
    let root = workspace_root();
    match command.as_str() {
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        "ci" => {
            no_arguments("ci", rest)?;
            ci::run(&root)
        }
        "tidy" => {
            no_arguments("tidy", rest)?;
            tidy::run(&root)
        }
        "schema" => match rest {
            [] => schema::write(&root),
            [flag] if flag == "--check" => schema::check(&root),
            _ => bail!("usage: cargo xtask schema [--check]"),
        },
        "migrate" => migrate::run(rest),
        "bench" => bench::run(&root, rest),
        other => {
            eprint!("{USAGE}");
            bail!("unknown command `{other}`")
        }
    }
}

fn no_arguments(command: &str, rest: &[String]) -> Result<()> {
    match rest.first() {
        None => Ok(()),
        Some(arg) => bail!("`cargo xtask {command}` takes no arguments (got `{arg}`)"),
    }
}

/// The workspace root: the parent of this crate's directory. Taken from the build rather
/// than the current directory so `cargo xtask` works from any subdirectory.
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// A `cargo` command run from the workspace root. Uses the `CARGO` variable when set (it
/// is under `cargo run` and `cargo test`), so the toolchain that started xtask is the one
/// it drives.
pub(crate) fn cargo(root: &Path) -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(program);
    command.current_dir(root);
    command
}

/// Runs `command` with inherited stdio and fails unless it exits successfully.
pub(crate) fn run_command(mut command: Command) -> Result<()> {
    let shown = show(&command);
    let status = command.status().with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// The command line as a user would type it, for messages.
pub(crate) fn show(command: &Command) -> String {
    let mut out = Path::new(command.get_program())
        .file_name()
        .map_or_else(|| command.get_program().to_string_lossy(), |name| name.to_string_lossy())
        .into_owned();
    for arg in command.get_args() {
        out.push(' ');
        out.push_str(&arg.to_string_lossy());
    }
    out
}
