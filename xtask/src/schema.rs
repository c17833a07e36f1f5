//! `cargo xtask schema [--check]`: the committed `schema.sql` against what the migrations
//! really produce.
//!
//! The expected text comes from [`swarm_store::expected_schema`], which applies every
//! migration to a fresh in-memory database and dumps it, so the dump is SQLite's own
//! rendering of the schema rather than a copy of the migration files.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

/// Where the dump lives, relative to the workspace root.
const SCHEMA_PATH: &str = "crates/swarm-schema/schema.sql";

/// How many lines of each side the stale message shows.
const DIFF_LINES: usize = 8;

fn schema_path(root: &Path) -> PathBuf {
    root.join(SCHEMA_PATH)
}

fn expected() -> Result<String> {
    swarm_store::expected_schema().context("applying the migrations to an in-memory database")
}

/// Regenerates the dump.
pub(crate) fn write(root: &Path) -> Result<()> {
    let path = schema_path(root);
    let expected = expected()?;
    let unchanged = std::fs::read_to_string(&path).is_ok_and(|current| current == expected);
    if unchanged {
        println!("{SCHEMA_PATH} is up to date (schema version {})", swarm_schema::latest_version());
        return Ok(());
    }
    std::fs::write(&path, &expected).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {SCHEMA_PATH} (schema version {})", swarm_schema::latest_version());
    Ok(())
}

/// Fails when the committed dump differs from what the migrations produce.
pub(crate) fn check(root: &Path) -> Result<()> {
    let path = schema_path(root);
    let committed =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let expected = expected()?;
    match diff(&committed, &expected) {
        None => {
            println!(
                "{SCHEMA_PATH} is up to date (schema version {})",
                swarm_schema::latest_version()
            );
            Ok(())
        }
        Some(diff) => bail!("{SCHEMA_PATH} is stale: run cargo xtask schema\n{diff}"),
    }
}

/// A short description of how `committed` differs from `expected`, or `None` when they are
/// the same text (line endings aside, so a checkout with CRLF conversion is not stale).
///
/// The differing region is found by trimming the common leading and trailing lines; that
/// region is shown with its line numbers, `-` for the committed side and `+` for the
/// expected one, cut to a few lines each.
fn diff(committed: &str, expected: &str) -> Option<String> {
    let old: Vec<&str> = committed.lines().collect();
    let new: Vec<&str> = expected.lines().collect();
    if old == new {
        return None;
    }
    let prefix = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let old_hunk = &old[prefix..old.len() - suffix];
    let new_hunk = &new[prefix..new.len() - suffix];
    let mut out = format!(
        "first difference at line {}: committed has {}, expected has {}",
        prefix + 1,
        range(prefix, old_hunk.len()),
        range(prefix, new_hunk.len()),
    );
    for (sign, hunk) in [('-', old_hunk), ('+', new_hunk)] {
        for line in hunk.iter().take(DIFF_LINES) {
            out.push_str(&format!("\n{sign} {line}"));
        }
        if hunk.len() > DIFF_LINES {
            out.push_str(&format!("\n{sign} ... {} more", hunk.len() - DIFF_LINES));
        }
    }
    Some(out)
}

/// The one-based, inclusive line range of `len` lines after `start` lines, in words.
fn range(start: usize, len: usize) -> String {
    match len {
        0 => "no lines".to_owned(),
        1 => format!("line {}", start + 1),
        _ => format!("lines {}-{}", start + 1, start + len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_has_no_diff() {
        assert_eq!(diff("a\nb\n", "a\nb\n"), None);
        assert_eq!(diff("a\r\nb\r\n", "a\nb\n"), None);
    }

    #[test]
    fn changed_line_is_located() {
        let d = diff("a\nb\nc\n", "a\nB\nc\n").expect("differs");
        assert!(
            d.starts_with("first difference at line 2: committed has line 2, expected has line 2"),
            "{d}"
        );
        assert!(d.contains("\n- b"), "{d}");
        assert!(d.contains("\n+ B"), "{d}");
        assert!(!d.contains("- a") && !d.contains("- c"), "{d}");
    }

    #[test]
    fn inserted_lines_are_not_reported_as_a_shifted_tail() {
        let d = diff("a\nz\n", "a\nb\nc\nz\n").expect("differs");
        assert!(
            d.contains(
                "first difference at line 2: committed has no lines, expected has lines 2-3"
            ),
            "{d}"
        );
        assert!(d.contains("\n+ b\n+ c"), "{d}");
        assert!(!d.contains("z"), "{d}");
    }

    #[test]
    fn empty_committed_file_is_stale() {
        let d = diff("", "-- header\nCREATE TABLE t (x);\n").expect("differs");
        assert!(d.contains("first difference at line 1"), "{d}");
    }

    #[test]
    fn long_hunks_are_cut() {
        let expected: String = (0..20).map(|i| format!("line {i}\n")).collect();
        let d = diff("", &expected).expect("differs");
        assert!(d.contains("+ ... 12 more"), "{d}");
    }

    #[test]
    fn committed_schema_matches_the_migrations() {
        let root = crate::workspace_root();
        check(&root).expect("schema.sql is current");
    }
}
