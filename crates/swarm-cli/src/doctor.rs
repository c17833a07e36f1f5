//! `doctor`: one health report of the database, as the system principal. It is unhealthy
//! (exit 1) when a key is missing or does not open its records, when the audit chain is
//! broken, or when the connection runs with the wrong modes.

use std::collections::BTreeMap;

use serde::Serialize;
use swarm_memory::{Identity, KeyReport, PragmaReport, SealedKind, SwarmMemory, keyfile};

use crate::audit;
use crate::exit::{CliError, Result};
use crate::output::{self, Reply, to_json};

#[derive(Debug, Serialize)]
struct Report {
    healthy: bool,
    database: String,
    schema_version: u32,
    settings: PragmaReport,
    key: KeyCheck,
    audit: serde_json::Value,
    /// The coordination link (swarm-coord). Nothing configures one yet, so it is always
    /// `not configured`; the coordinator fills this in when it arrives.
    redis: RedisCheck,
    /// Rows per table.
    tables: BTreeMap<String, u64>,
    /// What makes the database unhealthy.
    problems: Vec<String>,
    /// Worth knowing, not unhealthy.
    warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
struct KeyCheck {
    ok: bool,
    /// `file`, `environment` or `generated` (an in-memory database's throwaway key).
    source: &'static str,
    key_file: Option<String>,
    /// Keys of the key file that seal nothing any more (retirable once no backup that may
    /// be restored needs them).
    unused_key_ids: Vec<u32>,
    #[serde(flatten)]
    report: KeyReport,
}

/// A kind of sealed record for sentences.
fn kind_name(kind: SealedKind) -> &'static str {
    match kind {
        SealedKind::Memory => "memory record",
        SealedKind::Artifact => "artifact",
        SealedKind::Event => "event payload",
    }
}

#[derive(Debug, Serialize)]
struct RedisCheck {
    /// `not configured`, `connected` or `unreachable`.
    status: &'static str,
    /// Why it is unreachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Agents of the swarm the coordinator knows (when connected).
    #[serde(skip_serializing_if = "Option::is_none")]
    participants: Option<usize>,
    /// Messages dropped since this process started, all reasons.
    #[serde(skip_serializing_if = "Option::is_none")]
    dropped: Option<u64>,
}

/// Probes the coordination link with a real round trip (Redis connects lazily, so the
/// health snapshot alone would say nothing yet).
fn redis_check(system: &SwarmMemory) -> RedisCheck {
    if system.coordination_health().backend != "redis" {
        return RedisCheck {
            status: "not configured",
            error: None,
            participants: None,
            dropped: None,
        };
    }
    let probe = system.participants();
    let health = system.coordination_health();
    let dropped = Some(health.dropped.rejected() + health.dropped.lagged);
    match probe {
        Ok(list) => {
            RedisCheck { status: "connected", error: None, participants: Some(list.len()), dropped }
        }
        Err(e) => RedisCheck {
            status: "unreachable",
            error: Some(e.to_string()),
            participants: None,
            dropped,
        },
    }
}

pub(crate) fn run(system: &SwarmMemory) -> Result<Reply> {
    let report = gather(system)?;
    let text = render(&report);
    let reply = Reply::new(to_json(&report)?, text);
    if report.healthy {
        return Ok(reply);
    }
    let n = report.problems.len();
    let first = report.problems.first().cloned().unwrap_or_default();
    let error = CliError::unhealthy(format!(
        "the database is unhealthy ({n} problem{}): {first}",
        if n == 1 { "" } else { "s" }
    ));
    Ok(reply.failing(error))
}

fn gather(system: &SwarmMemory) -> Result<Report> {
    let store = system.store();
    let metrics = system.get_system_metrics()?;
    let keys = store.key_report(&Identity::System)?;
    let verify = store.verify_audit()?;
    let mut problems = Vec::new();
    let mut warnings = Vec::new();

    let p = &metrics.pragmas;
    let in_memory = system.database().is_none();
    if !in_memory && p.journal_mode != "wal" {
        problems.push(format!("journal mode is {}, not wal", p.journal_mode));
    }
    if !p.foreign_keys {
        problems.push("foreign keys are not enforced".to_owned());
    }
    let key_problems_before = problems.len();
    for k in &keys.keys {
        if !k.available {
            problems.push(format!(
                "{} records ({}) are sealed with key {}, which the keyring does not hold",
                k.records,
                output::sealed_counts(&k.sealed),
                k.key_id
            ));
        }
        for kind in &k.unopened {
            problems.push(format!(
                "a{} {} sealed with key {} does not open: wrong key or tampered data",
                if *kind == SealedKind::Artifact { "n" } else { "" },
                kind_name(*kind),
                k.key_id
            ));
        }
    }
    let key_ok = problems.len() == key_problems_before;
    // Keys of the key file that no record needs: the report says so, so an operator can
    // tell when an old key may go.
    let unused_key_ids: Vec<u32> = match system.key_file() {
        Some(f) => keyfile::read(f)?
            .ids()
            .map(|id| id.get())
            .filter(|id| Some(*id) != keys.active && !keys.keys.iter().any(|k| k.key_id == *id))
            .collect(),
        None => Vec::new(),
    };
    let redis = redis_check(system);
    if let Some(e) = &redis.error {
        problems.push(format!("redis is configured but unreachable: {e}"));
    }
    if keys.plaintext_at_encrypted_levels > 0 {
        warnings.push(format!(
            "{} records at encrypted levels are stored in plaintext ({}; written before encryption was configured): `swarm-memory rotate-key --resume` encrypts them",
            keys.plaintext_at_encrypted_levels,
            output::sealed_counts(&keys.plaintext)
        ));
    }
    if let Some(problem) = &verify.problem {
        problems.push(format!("audit chain: {}", audit::describe_problem(problem)));
    }
    let source = match (system.key_file(), in_memory) {
        (Some(_), _) => "file",
        (None, true) => "generated",
        (None, false) => "environment",
    };
    Ok(Report {
        healthy: problems.is_empty(),
        database: system
            .database()
            .map_or_else(|| ":memory:".to_owned(), |d| d.display().to_string()),
        schema_version: metrics.schema_version,
        settings: metrics.pragmas.clone(),
        key: KeyCheck {
            ok: key_ok,
            source,
            key_file: system.key_file().map(|k| k.display().to_string()),
            unused_key_ids,
            report: keys,
        },
        audit: audit::report_json(&verify)?,
        redis,
        tables: metrics.tables.into_iter().collect(),
        problems,
        warnings,
    })
}

fn render(r: &Report) -> String {
    let s = &r.settings;
    let on = |b: bool| if b { "on" } else { "off" };
    let ok = |b: bool| if b { "ok" } else { "FAILED" };
    let sealed: u64 = r.key.report.keys.iter().map(|k| k.records).sum();
    let key = format!(
        "{} ({}, active key {}, {sealed} encrypted records{})",
        ok(r.key.ok),
        match &r.key.key_file {
            Some(f) => format!("key file {f}"),
            None if r.key.source == "generated" =>
                "generated for this in-memory database".to_owned(),
            None => "from SQLITE_ENCRYPTION_KEY".to_owned(),
        },
        r.key.report.active.map_or("none".to_owned(), |k| k.to_string()),
        if r.key.unused_key_ids.is_empty() {
            String::new()
        } else {
            format!(", unused keys {}", output::list(&r.key.unused_key_ids))
        },
    );
    let audit_ok = r.audit["intact"].as_bool().unwrap_or(false);
    let audit = format!(
        "{} ({} rows{})",
        ok(audit_ok),
        r.audit["rows"],
        match r.audit["head"]["seq"].as_u64() {
            Some(seq) => format!(", head seq {seq}"),
            None => String::new(),
        }
    );
    let mut text = output::fields(&[
        ("healthy", if r.healthy { "yes".to_owned() } else { "NO".to_owned() }),
        ("database", r.database.clone()),
        ("schema version", r.schema_version.to_string()),
        ("journal mode", s.journal_mode.clone()),
        ("synchronous", s.synchronous.clone()),
        ("busy timeout", format!("{} ms", s.busy_timeout_ms)),
        (
            "mmap size",
            format!("{} requested, {} effective", s.mmap_size_requested, s.mmap_size_effective),
        ),
        ("page size", s.page_size.to_string()),
        ("foreign keys", on(s.foreign_keys).to_owned()),
        ("sqlite", s.sqlite_version.clone()),
        ("key", key),
        ("audit chain", audit),
        (
            "redis",
            match (&r.redis.error, r.redis.participants) {
                (Some(e), _) => format!("unreachable ({e})"),
                (None, Some(n)) => format!("connected ({n} participants known)"),
                (None, None) => r.redis.status.to_owned(),
            },
        ),
    ]);
    if !r.key.report.keys.is_empty() {
        text.push_str("keys:\n");
        let rows: Vec<Vec<String>> = r
            .key
            .report
            .keys
            .iter()
            .map(|k| {
                vec![
                    k.key_id.to_string(),
                    k.sealed.memory.to_string(),
                    k.sealed.artifacts.to_string(),
                    k.sealed.events.to_string(),
                    match (k.available, k.sample_opens) {
                        (false, _) => "MISSING".to_owned(),
                        (true, Some(false)) => "DOES NOT OPEN".to_owned(),
                        (true, _) => "ok".to_owned(),
                    },
                ]
            })
            .collect();
        for line in output::table(&["KEY", "MEMORY", "ARTIFACTS", "EVENTS", "STATE"], &rows).lines()
        {
            text.push_str(&format!("  {line}\n"));
        }
    }
    let rows: Vec<Vec<String>> =
        r.tables.iter().map(|(t, n)| vec![t.clone(), n.to_string()]).collect();
    text.push_str("tables:\n");
    for line in output::table(&["TABLE", "ROWS"], &rows).lines() {
        text.push_str(&format!("  {line}\n"));
    }
    for (title, items) in [("problems", &r.problems), ("warnings", &r.warnings)] {
        if !items.is_empty() {
            text.push_str(&format!("{title}:\n"));
            for p in items {
                text.push_str(&format!("  - {p}\n"));
            }
        }
    }
    text
}
