//! Everything the command writes: a command's reply (human text or one JSON document on
//! stdout), streamed lines (`watch`), notes and errors on stderr.
//!
//! Handlers build a [`Reply`] holding both renderings; which one is printed is decided
//! here, once.

use std::fmt::Write as _;
use std::io::Write as _;

use serde::Serialize;
use serde_json::Value as Json;

use crate::exit::{CliError, Result};

/// What a command produced.
#[derive(Debug)]
pub(crate) struct Reply {
    body: Body,
    /// Lines for stderr (`warning: ...`, `note: ...`), printed whatever the format.
    notes: Vec<String>,
    /// Set when the command printed a report but failed (an unhealthy `doctor`, a broken
    /// audit chain): the report is the output, the error decides the exit code.
    failed: Option<CliError>,
}

#[derive(Debug)]
enum Body {
    /// A JSON document and its human rendering.
    Doc { json: Json, text: String },
    /// Bytes written exactly as they are (`get --raw`).
    Raw(Vec<u8>),
    /// The command wrote its output as it went (`watch`).
    Streamed,
}

impl Reply {
    /// A reply printed as `text` for humans, or as `json` with `--json`.
    pub(crate) fn new(json: Json, text: impl Into<String>) -> Self {
        Self { body: Body::Doc { json, text: text.into() }, notes: Vec::new(), failed: None }
    }

    /// Bytes for stdout, untouched.
    pub(crate) fn raw(bytes: Vec<u8>) -> Self {
        Self { body: Body::Raw(bytes), notes: Vec::new(), failed: None }
    }

    /// Nothing more to print: the command streamed its output.
    pub(crate) fn streamed() -> Self {
        Self { body: Body::Streamed, notes: Vec::new(), failed: None }
    }

    /// Adds a warning line for stderr.
    pub(crate) fn note(mut self, line: impl Into<String>) -> Self {
        self.notes.push(format!("warning: {}", line.into()));
        self
    }

    /// Adds an informational line for stderr: worth knowing, nothing wrong.
    pub(crate) fn info(mut self, line: impl Into<String>) -> Self {
        self.notes.push(format!("note: {}", line.into()));
        self
    }

    /// Marks the reply as a failure reported by `error` once the body is printed.
    pub(crate) fn failing(mut self, error: CliError) -> Self {
        self.failed = Some(error);
        self
    }
}

/// Any serializable value as a JSON value.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<Json> {
    Ok(serde_json::to_value(value)?)
}

/// Prints a reply and returns the exit code.
pub(crate) fn emit(reply: Reply, json: bool) -> u8 {
    let printed = print_body(reply.body, json);
    for n in &reply.notes {
        stderr_line(n);
    }
    match (printed, reply.failed) {
        (Err(e), _) => emit_error(&e, json),
        (Ok(()), Some(e)) => {
            // The report already is the one JSON document: only stderr hears about it.
            stderr_line(&format!("error: {}", e.message()));
            e.code()
        }
        (Ok(()), None) => 0,
    }
}

fn print_body(body: Body, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match body {
        Body::Doc { json: doc, .. } if json => writeln!(out, "{}", serde_json::to_string(&doc)?)?,
        Body::Doc { text, .. } if text.is_empty() => {}
        Body::Doc { text, .. } if text.ends_with('\n') => out.write_all(text.as_bytes())?,
        Body::Doc { text, .. } => writeln!(out, "{text}")?,
        Body::Raw(bytes) => out.write_all(&bytes)?,
        Body::Streamed => {}
    }
    out.flush()?;
    Ok(())
}

/// Reports a failed command: `error: ...` on stderr, and with `--json` also the error
/// object on stdout (the invocation's one document). Returns the exit code.
pub(crate) fn emit_error(e: &CliError, json: bool) -> u8 {
    if e.is_broken_pipe() {
        // Whoever read our output stopped reading (`| head`): that is not a failure.
        return 0;
    }
    if json {
        let doc = serde_json::json!({
            "error": { "code": e.code(), "kind": e.kind(), "message": e.message() }
        });
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{doc}").and_then(|()| out.flush());
    }
    stderr_line(&format!("error: {}", e.message()));
    e.code()
}

/// With `--json`, a usage error found by clap also becomes the error object on stdout
/// (clap prints its own message on stderr).
pub(crate) fn usage_error_json(rendered: &str) {
    let first = rendered.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid usage");
    let message = first.strip_prefix("error: ").unwrap_or(first).trim();
    let doc = serde_json::json!({ "error": { "code": 2, "kind": "usage", "message": message } });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{doc}").and_then(|()| out.flush());
}

/// A line of progress or context for the person at the terminal; never command output.
pub(crate) fn stderr_line(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// Prints one item of a stream (`watch`): a JSON object per line with `--json` (JSON
/// Lines), else `text`. Flushed at once so a reader sees it as it happens.
pub(crate) fn stream_item(json: bool, doc: &Json, text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(doc)?)?;
    } else {
        writeln!(out, "{text}")?;
    }
    out.flush()?;
    Ok(())
}

/// A plain-text table with a header row, columns padded to their widest cell.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        let _ = writeln!(out, "{}", l.trim_end());
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// `label: value` lines with the values aligned.
pub(crate) fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let label = format!("{k}:");
        let _ = writeln!(out, "{label:<width$} {v}");
    }
    out
}

/// Unix milliseconds as UTC `YYYY-MM-DD HH:MM:SSZ`, for humans (JSON keeps milliseconds).
pub(crate) fn time(ms: i64) -> String {
    let t = swarm_memory::Timestamp::from_millis(ms).to_utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Rows per kind of sealed data: `memory 8, artifacts 1, events 0`.
pub(crate) fn sealed_counts(c: &swarm_memory::SealedCounts) -> String {
    format!("memory {}, artifacts {}, events {}", c.memory, c.artifacts, c.events)
}

/// An optional value for humans, `-` when absent.
pub(crate) fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// An optional time for humans, `none` when absent.
pub(crate) fn opt_time(at: Option<swarm_memory::Timestamp>) -> String {
    at.map_or_else(|| "none".to_owned(), |t| time(t.as_millis()))
}

/// An ACL level for humans: `3 (swarm)`.
pub(crate) fn level(l: swarm_memory::AclLevel) -> String {
    format!("{} ({l})", l.as_u8())
}

/// Text cut to `max` characters for a table cell, with `...` when cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(3)).collect();
    out.push_str("...");
    out
}

/// A list for humans: `a, b, c`, or `-` when empty.
pub(crate) fn list<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(0), "1970-01-01 00:00:00Z");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(time(1_767_225_599_999), "2025-12-31 23:59:59Z");
        assert_eq!(time(-1), "1969-12-31 23:59:59Z");
    }

    #[test]
    fn long_cells_are_clipped() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("a longer text", 8), "a lon...");
    }

    #[test]
    fn tables_pad_columns() {
        let t = table(
            &["ID", "NAME"],
            &[vec!["a".into(), "x".into()], vec!["long".into(), "y".into()]],
        );
        assert_eq!(t, "ID    NAME\na     x\nlong  y\n");
    }
}
