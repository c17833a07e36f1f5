//! Operations on the database as a whole, as the system principal: `backup`, `restore`,
//! `optimize`, `rotate-key` and `metrics`.
//!
//! The key is never in the database: a backup holds encrypted values that only the key
//! file (or `SQLITE_ENCRYPTION_KEY`) of the original database opens, so `backup` reminds
//! of it and `restore` puts the key file beside the restored database when it can.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{Value as Json, json};
use swarm_memory::{BackupMethod, BackupReport, Identity, MetricsSnapshot, SwarmMemory, keyfile};

use crate::Global;
use crate::exit::{CliError, Result};
use crate::open::{self, Db};
use crate::output::{self, Reply, to_json};
use crate::progress::Bar;

/// The environment variable that holds the key instead of a key file.
const KEY_ENV: &str = "SQLITE_ENCRYPTION_KEY";

/// Whether the key comes from the environment (as the umbrella's builder reads it).
fn key_from_env() -> bool {
    std::env::var(KEY_ENV).is_ok_and(|v| !v.trim().is_empty())
}

#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    /// The backup file to create (refused if it exists)
    path: PathBuf,
    /// Take a compacted copy with VACUUM INTO instead of the online backup API (one
    /// statement: no progress is shown)
    #[arg(long)]
    vacuum: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// The backup file
    backup: PathBuf,
    /// The new database file to create (refused if it exists)
    path: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct RotateArgs {
    /// Records re-sealed per transaction (readers are never blocked for longer)
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch: u32,
    /// Add no new key: finish re-sealing under the current active key (after an
    /// interrupted rotation)
    #[arg(long)]
    resume: bool,
}

#[derive(Debug, Args)]
pub(crate) struct MetricsArgs {
    /// Print the Prometheus text exposition format instead
    #[arg(long)]
    prometheus: bool,
}

fn report_pairs(r: &BackupReport) -> Vec<(&'static str, String)> {
    vec![
        ("size", format!("{} bytes", r.bytes)),
        ("pages", r.pages.to_string()),
        ("integrity", r.integrity.clone()),
        ("schema version", r.schema_version.to_string()),
        ("took", format!("{} ms", r.millis)),
    ]
}

/// `backup PATH [--vacuum]`.
pub(crate) fn backup(system: &SwarmMemory, a: &BackupArgs) -> Result<Reply> {
    let method = if a.vacuum { BackupMethod::VacuumInto } else { BackupMethod::Online };
    let report = {
        let bar = Bar::new("backing up", "pages");
        system.store().backup(&Identity::System, &a.path, method, |p| bar.show(p))?
    };
    let key_file = system.key_file().map(|k| k.display().to_string());
    let reminder = match &key_file {
        Some(k) => format!(
            "the backup holds encrypted values but not their key: keep a copy of the key file {k} with it"
        ),
        None => format!(
            "the backup holds encrypted values but not their key: keep the {KEY_ENV} it was written with"
        ),
    };
    let text =
        format!("backed up to {}\n{}", a.path.display(), output::fields(&report_pairs(&report)));
    let doc = json!({
        "backup": to_json(&report)?,
        "method": if a.vacuum { "vacuum_into" } else { "online" },
        "key_file": key_file,
        "key_source": if key_file.is_some() { "file" } else { "environment" },
    });
    Ok(Reply::new(doc, text).note(reminder))
}

/// What `restore` did about the key.
enum KeyAction {
    /// The key comes from the environment: nothing to copy.
    Environment,
    /// A key file already was beside the restored database.
    Present,
    /// Copied from this key file.
    Copied(PathBuf),
    /// No key file found to copy.
    Missing,
}

/// Copies `from` to the new file `to` with mode 0600 (never replacing a file).
fn copy_key_file(from: &Path, to: &Path) -> Result<()> {
    let bytes = std::fs::read(from).map_err(|e| CliError::io(from, &e))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(to).map_err(|e| CliError::io(to, &e))?;
    std::io::Write::write_all(&mut f, &bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| CliError::io(to, &e))
}

/// `restore BACKUP PATH`: needs no open database; `--db` only says whose key file to copy
/// when none lies beside the backup.
pub(crate) fn restore(g: &Global, a: &RestoreArgs) -> Result<Reply> {
    if a.path.exists() {
        return Err(CliError::usage(format!(
            "{} exists: restore into a new path (a restore never overwrites a database)",
            a.path.display()
        )));
    }
    if !a.backup.exists() {
        return Err(CliError::not_found(format!("backup {} not found", a.backup.display())));
    }
    let report = {
        let bar = Bar::new("restoring", "pages");
        swarm_store::restore(&a.backup, &a.path, |p| bar.show(p))?
    };
    let dest_key = keyfile::key_file_for(&a.path);
    let action = if key_from_env() {
        KeyAction::Environment
    } else if dest_key.exists() {
        KeyAction::Present
    } else {
        // Beside the backup first (whoever kept the key with it), else the key file of
        // --db, the database the backup presumably came from.
        let candidates = [keyfile::key_file_for(&a.backup), keyfile::key_file_for(&g.db)];
        match candidates.into_iter().find(|k| k.exists()) {
            Some(src) => {
                copy_key_file(&src, &dest_key)?;
                KeyAction::Copied(src)
            }
            None => KeyAction::Missing,
        }
    };
    // Opening the copy proves the key fits (an unfitting key is refused, never used).
    let verified = match action {
        KeyAction::Missing => false,
        _ => match verify_opens(g, &a.path) {
            Ok(()) => true,
            Err(e) => {
                if let KeyAction::Copied(src) = &action {
                    let _ = std::fs::remove_file(&dest_key);
                    return Err(CliError::key(format!(
                        "restored {} but the key file {} does not open it ({}): copy the key file of the database the backup was taken from to {}",
                        a.path.display(),
                        src.display(),
                        e.message(),
                        dest_key.display()
                    )));
                }
                return Err(e);
            }
        },
    };
    let dest = dest_key.display().to_string();
    let (key_line, key_doc, note, warn) = match &action {
        KeyAction::Environment => (
            format!("from {KEY_ENV}"),
            json!({ "source": "environment" }),
            format!("open the restored database with the same {KEY_ENV}"),
            false,
        ),
        KeyAction::Present => (
            format!("{dest} (already there)"),
            json!({ "source": "file", "path": dest, "action": "present" }),
            format!("the key file {dest} was already there and opens the restored database"),
            false,
        ),
        KeyAction::Copied(src) => (
            format!("{dest} (copied from {}, mode 0600)", src.display()),
            json!({ "source": "file", "path": dest, "action": "copied", "from": src.display().to_string() }),
            format!(
                "copied the key file {} to {dest}: the restored database needs it beside it",
                src.display()
            ),
            false,
        ),
        KeyAction::Missing => (
            format!("{dest} MISSING"),
            json!({ "source": "file", "path": dest, "action": "missing" }),
            format!(
                "no key file found to copy: copy the key file of the original database to {dest} (mode 0600) before opening the restored database"
            ),
            true,
        ),
    };
    let mut pairs = vec![
        ("key file", key_line),
        ("opens", if verified { "yes".into() } else { "not checked (no key)".into() }),
    ];
    pairs.extend(report_pairs(&report));
    let text = format!(
        "restored {} into {}\n{}",
        a.backup.display(),
        a.path.display(),
        output::fields(&pairs)
    );
    let doc = json!({
        "restore": to_json(&report)?,
        "backup": a.backup.display().to_string(),
        "key": key_doc,
        "verified": verified,
    });
    let reply = Reply::new(doc, text);
    Ok(if warn { reply.note(note) } else { reply.info(note) })
}

/// Opens `path` as an existing database with the environment's settings, and closes it.
fn verify_opens(g: &Global, path: &Path) -> Result<()> {
    let system = g.builder()?.path(path).must_exist().open()?;
    system.graceful_shutdown()?;
    Ok(())
}

/// `optimize`.
pub(crate) fn optimize(system: &SwarmMemory) -> Result<Reply> {
    let r = system.store().optimize(&Identity::System)?;
    let text = output::fields(&[
        ("expired purged", r.expired_purged.to_string()),
        ("wal before", format!("{} bytes", r.wal_bytes_before)),
        ("wal after", format!("{} bytes", r.wal_bytes_after)),
        ("analyzed", if r.analyzed { "yes" } else { "no" }.to_owned()),
        ("vacuumed pages", r.vacuumed_pages.to_string()),
        ("free pages", r.freelist_pages.to_string()),
    ]);
    Ok(Reply::new(json!({ "optimize": to_json(&r)? }), format!("optimized\n{text}")))
}

/// `rotate-key`: a new key in the key file, then every memory record re-sealed under it.
pub(crate) fn rotate_key(g: &Global, a: &RotateArgs) -> Result<Reply> {
    if key_from_env() {
        return Err(CliError::usage(format!(
            "the key comes from {KEY_ENV}: rotate-key appends a key to the key file beside the database, and there is none (to rotate, write the key as `1 <64 hex digits>` to {} with mode 0600 and unset {KEY_ENV})",
            keyfile::key_file_for(&g.db).display()
        )));
    }
    // Open once to check the database and its key file before touching the file.
    let key_file = {
        let system = open::open_existing(g, Db::File, "rotate-key")?;
        let kf = system.key_file().map(Path::to_path_buf);
        system.graceful_shutdown()?;
        kf.ok_or_else(|| {
            CliError::usage("this database has no key file: there is no key to rotate")
        })?
    };
    let added = if a.resume { None } else { Some(keyfile::append_new_key(&key_file)?.get()) };
    // Reopen: the key just appended is the last of the file, hence the active one.
    let system = open::open_existing(g, Db::File, "rotate-key")?;
    let rotated = (|| {
        let store = system.store();
        let report = {
            let bar = Bar::new("re-encrypting", "records");
            store.rotate_keys(&Identity::System, a.batch, |p| bar.show(p))?
        };
        let keys = store.key_report(&Identity::System)?;
        let active = keys.active;
        let kf = key_file.display().to_string();
        let mut text = match added {
            Some(id) => format!("added key {id} to {kf} and made it active\n"),
            None => format!("resumed rotation to the active key {}\n", output::opt(active)),
        };
        text.push_str(&output::fields(&[
            ("re-encrypted", report.reencrypted.to_string()),
            ("encrypted", format!("{} (were plaintext at encrypted levels)", report.encrypted)),
            ("remaining", report.remaining.to_string()),
        ]));
        for k in &keys.keys {
            let _ = writeln!(text, "key {}: {} records", k.key_id, k.records);
        }
        let doc = json!({
            "key_file": kf,
            "added_key_id": added,
            "active_key_id": active,
            "rotation": to_json(&report)?,
            "keys": to_json(&keys)?,
        });
        let mut reply = Reply::new(doc, text).info(format!(
            "older keys stay in {kf}: artifacts and event payloads sealed under them still need them, and processes that had the database open keep sealing with the old key until they reopen it"
        ));
        if report.remaining > 0 {
            reply = reply.note(format!(
                "{} records are left: run `swarm-memory rotate-key --resume`",
                report.remaining
            ));
        }
        Ok(reply)
    })();
    open::finish(&system, rotated)
}

/// `metrics [--prometheus]`.
pub(crate) fn metrics(system: &SwarmMemory, a: &MetricsArgs, json_out: bool) -> Result<Reply> {
    if a.prometheus && json_out {
        return Err(CliError::usage("--prometheus and --json exclude each other"));
    }
    let snap = system.store().metrics();
    let sys = system.get_system_metrics()?;
    if a.prometheus {
        return Ok(Reply::raw(prometheus(&snap, &sys.tables).into_bytes()));
    }
    let tables: serde_json::Map<String, Json> =
        sys.tables.iter().map(|(t, n)| (t.clone(), Json::from(*n))).collect();
    let mut text = output::fields(&[
        ("schema version", sys.schema_version.to_string()),
        ("database", format!("{} bytes", snap.db_bytes)),
        ("wal", format!("{} bytes", snap.wal_bytes)),
        ("uptime", format!("{} ms (this process)", snap.uptime_ms)),
        ("commit groups", snap.commit_groups.to_string()),
        ("write jobs", snap.write_jobs.to_string()),
        ("busy retries", snap.busy_retries.to_string()),
        ("acl cache hit rate", format!("{:.3}", snap.acl_cache_hit_rate)),
    ]);
    let ops: Vec<Vec<String>> = snap
        .ops
        .iter()
        .filter(|o| o.count > 0)
        .map(|o| {
            vec![
                o.op.name().to_owned(),
                o.count.to_string(),
                o.errors.to_string(),
                format!("{:.1}", o.p50_ns as f64 / 1000.0),
                format!("{:.1}", o.p99_ns as f64 / 1000.0),
            ]
        })
        .collect();
    if !ops.is_empty() {
        text.push_str("operations (this process):\n");
        text.push_str(&output::table(&["OP", "COUNT", "ERRORS", "P50 µs", "P99 µs"], &ops));
    }
    let rows: Vec<Vec<String>> =
        sys.tables.iter().map(|(t, n)| vec![t.clone(), n.to_string()]).collect();
    text.push_str("tables:\n");
    for line in output::table(&["TABLE", "ROWS"], &rows).lines() {
        let _ = writeln!(text, "  {line}");
    }
    let doc = json!({
        "process": to_json(&snap)?,
        "schema_version": sys.schema_version,
        "tables": tables,
    });
    Ok(Reply::new(doc, text).info(
        "these figures are this process's (it just started): the metrics the store persists over time are not readable through the library yet",
    ))
}

/// The store's exposition plus one gauge of rows per table.
fn prometheus(snap: &MetricsSnapshot, tables: &[(String, u64)]) -> String {
    let mut out = snap.to_prometheus();
    out.push_str("# HELP swarm_memory_table_rows Rows per table.\n");
    out.push_str("# TYPE swarm_memory_table_rows gauge\n");
    for (t, n) in tables {
        let name: String = t.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let _ = writeln!(out, "swarm_memory_table_rows{{table=\"{name}\"}} {n}");
    }
    out
}
