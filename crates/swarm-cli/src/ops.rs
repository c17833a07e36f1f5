//! Operations on the database as a whole, as the system principal: `backup`, `restore`,
//! `optimize`, `rotate-key` and `metrics`.
//!
//! The key is never in the database: a backup holds encrypted values that only the key
//! file (or `SQLITE_ENCRYPTION_KEY`) of the original database opens, so `backup` reminds
//! of it, and `restore` (through `SwarmMemory::restore`) puts the key file and the swarm
//! secret file beside the restored database when it can.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{Value as Json, json};
use swarm_memory::{
    BackupMethod, BackupReport, FileOutcome, Identity, MAX_METRICS_LIMIT, MetricsQuery,
    MetricsSnapshot, RestoreOptions, SealedKind, SwarmMemory, keyfile,
};

use crate::Global;
use crate::exit::{CliError, Result};
use crate::open::{self, Db};
use crate::output::{self, Reply, to_json};
use crate::progress::Bar;

/// The environment variable that holds the key instead of a key file.
const KEY_ENV: &str = "SQLITE_ENCRYPTION_KEY";
/// The environment variable that holds the swarm secret instead of a secret file.
const SECRET_ENV: &str = "SWARM_SECRET";

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
    /// Print the metrics the store persisted over time instead: snapshots taken every
    /// minute while a process has the database open, and when it closes it (unless
    /// ENABLE_PERFORMANCE_MONITORING=false)
    #[arg(long, conflicts_with = "prometheus")]
    history: bool,
    /// With --history: only samples of the last SECS seconds
    #[arg(long, value_name = "SECS", requires = "history", value_parser = clap::value_parser!(u64).range(1..))]
    since: Option<u64>,
    /// With --history: only this figure (`operations`, `operation_latency_ns`,
    /// `database_bytes`, ...)
    #[arg(long, value_name = "N", requires = "history")]
    name: Option<String>,
    /// With --history: at most N samples, the newest
    #[arg(long, value_name = "N", requires = "history", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    limit: u64,
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
    let mut reminder = match &key_file {
        Some(k) => format!(
            "the backup holds encrypted values but not their key: keep a copy of the key file {k} with it"
        ),
        None => format!(
            "the backup holds encrypted values but not their key: keep the {KEY_ENV} it was written with"
        ),
    };
    if let Some(db) = system.database()
        && std::env::var(SECRET_ENV).map_or(true, |v| v.trim().is_empty())
    {
        let _ = write!(
            reminder,
            ", and of the swarm secret file {} (`restore` copies both when they lie beside the backup)",
            keyfile::secret_file_for(db).display()
        );
    }
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

/// One file of a restore for the report: text for people, JSON, a note, and whether the
/// note is a warning.
fn file_outcome(
    what: &str,
    env_var: &str,
    o: &FileOutcome,
) -> (String, Json, Option<(String, bool)>) {
    match o {
        FileOutcome::Copied { from, to } => (
            format!("{} (copied from {}, mode 0600)", to.display(), from.display()),
            json!({ "source": "file", "action": "copied", "path": to.display().to_string(), "from": from.display().to_string() }),
            Some((
                format!(
                    "copied the {what} {} to {}: the restored database needs it beside it",
                    from.display(),
                    to.display()
                ),
                false,
            )),
        ),
        FileOutcome::Present { path } => (
            format!("{} (already there)", path.display()),
            json!({ "source": "file", "action": "present", "path": path.display().to_string() }),
            None,
        ),
        FileOutcome::NotNeeded => (
            format!("from {env_var}"),
            json!({ "source": "environment" }),
            Some((format!("open the restored database with the same {env_var}"), false)),
        ),
        FileOutcome::Missing { path } => (
            format!("{} MISSING", path.display()),
            json!({ "source": "file", "action": "missing", "path": path.display().to_string() }),
            Some((
                format!(
                    "no {what} found to copy: copy the {what} of the original database to {} (mode 0600) before opening the restored database",
                    path.display()
                ),
                true,
            )),
        ),
    }
}

/// `restore BACKUP PATH`: needs no open database; `--db` names the database the backup
/// came from, whose key file and swarm secret are copied when none lie beside the backup.
pub(crate) fn restore(g: &Global, a: &RestoreArgs) -> Result<Reply> {
    // A dangling link counts as existing too (`exists()` follows it): the restore would
    // refuse it anyway, and this gives the same usage error for it.
    if std::fs::symlink_metadata(&a.path).is_ok() {
        return Err(CliError::usage(format!(
            "{} exists: restore into a new path (a restore never overwrites a database)",
            a.path.display()
        )));
    }
    if !a.backup.exists() {
        return Err(CliError::not_found(format!("backup {} not found", a.backup.display())));
    }
    // The key and the secret come from where the umbrella would find them: the
    // environment (SQLITE_ENCRYPTION_KEY, SWARM_SECRET), else files beside the database.
    let options = RestoreOptions::from_builder(&g.builder()?).original(&g.db);
    let report = {
        let bar = Bar::new("restoring", "pages");
        SwarmMemory::restore(&a.backup, &a.path, &options, |p| bar.show(p))?
    };
    let (key_line, key_doc, key_note) = file_outcome("key file", KEY_ENV, &report.key_file);
    let (secret_line, secret_doc, secret_note) =
        file_outcome("swarm secret file", SECRET_ENV, &report.secret_file);
    let secret_note = secret_note.map(|(text, warn)| match &report.secret_file {
        FileOutcome::Missing { .. } => (
            format!(
                "{text}: otherwise its first open makes a new secret, and the other hosts of the swarm reject what it signs"
            ),
            warn,
        ),
        _ => (text, warn),
    });
    let mut pairs = vec![
        ("key file", key_line),
        ("swarm secret", secret_line),
        ("opens", if report.verified { "yes".into() } else { "not checked (no key)".into() }),
    ];
    pairs.extend(report_pairs(&report.database));
    let text = format!(
        "restored {} into {}\n{}",
        a.backup.display(),
        a.path.display(),
        output::fields(&pairs)
    );
    let doc = json!({
        "restore": to_json(&report.database)?,
        "backup": a.backup.display().to_string(),
        "key": key_doc,
        "secret": secret_doc,
        "verified": report.verified,
    });
    let mut reply = Reply::new(doc, text);
    for (note, warn) in [key_note, secret_note].into_iter().flatten() {
        reply = if warn { reply.note(note) } else { reply.info(note) };
    }
    Ok(reply)
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
        // Running processes with the key file switch to the new key within a second or
        // so; a second pass after that re-seals what they sealed with the old key
        // meanwhile, so that the key report below is true of every process.
        let report = if added.is_some() {
            std::thread::sleep(swarm_memory::Store::KEYRING_SWITCH);
            report.then(store.rotate_keys(&Identity::System, a.batch, |_| {})?)
        } else {
            report
        };
        let keys = store.key_report(&Identity::System)?;
        let active = keys.active;
        let kf = key_file.display().to_string();
        let mut text = match added {
            Some(id) => format!("added key {id} to {kf} and made it active\n"),
            None => format!("resumed rotation to the active key {}\n", output::opt(active)),
        };
        let rows: Vec<Vec<String>> = SealedKind::ALL
            .iter()
            .map(|&kind| {
                let k = report.kind(kind);
                vec![
                    kind.as_str().to_owned(),
                    k.reencrypted.to_string(),
                    k.encrypted.to_string(),
                    k.remaining.to_string(),
                ]
            })
            .collect();
        text.push_str(&output::table(&["KIND", "RE-ENCRYPTED", "ENCRYPTED", "REMAINING"], &rows));
        for k in &keys.keys {
            let _ = writeln!(
                text,
                "key {}: {} records ({})",
                k.key_id,
                k.records,
                output::sealed_counts(&k.sealed)
            );
        }
        // Keys of the file that no row needs any more: retirable, but only by someone who
        // knows that no backup to be restored still needs them.
        let in_use: Vec<u32> = keys.keys.iter().map(|k| k.key_id).collect();
        let unused: Vec<u32> = keyfile::read(&key_file)?
            .ids()
            .map(|id| id.get())
            .filter(|id| !in_use.contains(id) && Some(*id) != active)
            .collect();
        // Processes that opened the database with this key file read it again within about
        // a second of the new key becoming active; one given the key another way cannot.
        let waited = if added.is_some() {
            " (this run waited for them, then re-sealed once more)"
        } else {
            ""
        };
        let others = format!(
            "long-running processes that opened the database with {kf} (MCP servers, applications embedding swarm-memory) read it again within about a second and go on with key {}{waited}; restart any that were given the key another way (as text or as a keyring in code). If the key report still shows rows under an older key, run `swarm-memory rotate-key --resume`",
            output::opt(active)
        );
        let _ = writeln!(text, "{others}");
        let doc = json!({
            "key_file": kf,
            "added_key_id": added,
            "active_key_id": active,
            "rotation": to_json(&report)?,
            "keys": to_json(&keys)?,
            "unused_key_ids": unused,
            "other_processes": {
                "key_file_readers": "processes that opened the database with this key file read it again within about a second",
                "restart_required": "processes given the key another way (as text or as a keyring in code)",
                "message": others,
            },
        });
        let mut reply = Reply::new(doc, text);
        if report.remaining > 0 {
            reply = reply.note(format!(
                "{} records are left (memory {}, artifacts {}, events {}): run `swarm-memory rotate-key --resume`",
                report.remaining,
                report.memory.remaining,
                report.artifacts.remaining,
                report.events.remaining
            ));
        } else if !unused.is_empty() {
            reply = reply.info(format!(
                "no record is sealed with key {} any more: it can be removed from {kf} once every process that has the database open uses the new key (restart those given the key another way; `swarm-memory doctor` shows what each key still seals) and no backup that may be restored needs it (backups taken before this rotation do)",
                output::list(&unused)
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
    if a.history {
        return metrics_history(system, a);
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
        "these figures are this process's (it just started): `swarm-memory metrics --history` shows what the store persisted over time",
    ))
}

/// `metrics --history [--since SECS] [--name N] [--limit N]`.
fn metrics_history(system: &SwarmMemory, a: &MetricsArgs) -> Result<Reply> {
    let store = system.store();
    let mut query =
        MetricsQuery::new().limit(usize::try_from(a.limit).unwrap_or(MAX_METRICS_LIMIT));
    if let Some(name) = &a.name {
        query = query.name(name.clone());
    }
    let since = a.since.map(|secs| {
        let ms = i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        store.now().plus_millis(ms.saturating_neg())
    });
    if let Some(t) = since {
        query = query.since(t);
    }
    let samples = store.metrics_history(&Identity::System, &query)?;
    let rows: Vec<Vec<String>> = samples
        .iter()
        .map(|m| {
            let labels: Vec<String> = m
                .labels
                .iter()
                .map(|(k, v)| {
                    format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                })
                .collect();
            let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), number);
            vec![
                output::time(m.at.as_millis()),
                m.name.clone(),
                if labels.is_empty() { "-".to_owned() } else { labels.join(",") },
                number(m.value),
                output::opt(m.count),
                opt(m.p50),
                opt(m.p99),
            ]
        })
        .collect();
    let text = if rows.is_empty() {
        "no persisted metrics match\n".to_owned()
    } else {
        output::table(&["AT", "NAME", "LABELS", "VALUE", "COUNT", "P50", "P99"], &rows)
    };
    let doc = json!({
        "history": to_json(&samples)?,
        "filter": {
            "name": a.name,
            "since": since.map(|t| t.as_millis()),
            "limit": a.limit,
        },
    });
    let mut reply = Reply::new(doc, text);
    if samples.len() as u64 == a.limit {
        reply = reply.info(format!(
            "showing the newest {} samples: narrow with --since or --name, or raise --limit",
            a.limit
        ));
    }
    Ok(reply)
}

/// A figure for a table: integers without decimals, others with three.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.0}") } else { format!("{v:.3}") }
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
