//! `demo`: a realistic scenario on the embedded default (no Redis, no set-up), so a new
//! user sees the whole system work in a few seconds: a swarm, two teams, four agents,
//! memory at all five levels and who can see what, a TTL expiring, an atomic counter under
//! threads, a task graph with claims and fencing, an event consumed, a consensus round
//! decided, the audit chain verified, metrics.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use swarm_memory::{
    AclLevel, AgentSpec, Ballot, EventSpec, Identity, Key, Namespace, RecordKey, RoundSpec,
    SetOptions, Strategy, SwarmId, SwarmMemory, TaskSpec, TeamId, Value,
};

use crate::exit::{CliError, Result};
use crate::output::{self, Reply};

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Keep the demo database in this directory (default: a temporary one, removed after)
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

/// Prints sections as they complete (for humans) or gathers them (for `--json`).
struct Narrator {
    json: bool,
    sections: Vec<serde_json::Value>,
}

impl Narrator {
    fn section(&mut self, title: &str, text: &str, data: serde_json::Value) -> Result<()> {
        self.sections.push(json!({ "section": title, "result": data }));
        if !self.json {
            output::stream_item(
                false,
                &serde_json::Value::Null,
                &format!("\n== {title}\n{}", text.trim_end()),
            )?;
        }
        Ok(())
    }
}

pub(crate) fn run(args: DemoArgs, json: bool) -> Result<Reply> {
    let started = Instant::now();
    let (dir, _guard) = match &args.keep {
        Some(d) => {
            std::fs::create_dir_all(d)
                .map_err(|e| CliError::usage(format!("cannot create {}: {e}", d.display())))?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::tempdir().map_err(|e| {
                CliError::other(format!("cannot create a temporary directory: {e}"))
            })?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let db = dir.join("demo.db");
    if db.exists() {
        return Err(CliError::usage(format!(
            "{} exists: give --keep an empty directory",
            db.display()
        )));
    }
    let swarm = SwarmId::new("demo-swarm").map_err(|e| CliError::other(e.to_string()))?;
    let system = SwarmMemory::builder().path(&db).swarm(swarm.clone()).open()?;
    let mut n = Narrator { json, sections: Vec::new() };
    let outcome = scenario(&system, &swarm, &mut n);
    let shutdown = system.graceful_shutdown();
    outcome?;
    shutdown?;
    let elapsed = started.elapsed().as_millis();
    let mut text = format!("\ndemo finished in {elapsed} ms");
    match &args.keep {
        Some(_) => {
            text.push_str(&format!(
                "; the database is kept at {} (key file beside it). Explore it, for example:\n  \
                 swarm-memory --db {} doctor\n  swarm-memory --db {} agent list\n  swarm-memory --db {} audit tail",
                db.display(),
                db.display(),
                db.display(),
                db.display()
            ));
        }
        None => text.push_str("; the temporary database was removed (use --keep DIR to keep it)"),
    }
    let doc = json!({
        "database": db.display().to_string(),
        "kept": args.keep.is_some(),
        "elapsed_ms": elapsed,
        "sections": n.sections,
    });
    if json { Ok(Reply::new(doc, text)) } else { Ok(Reply::new(doc, text.trim_start().to_owned())) }
}

fn key(swarm: &SwarmId, ns: &str, k: &str) -> Result<RecordKey> {
    Ok(RecordKey::new(swarm.clone(), Namespace::new(ns)?, Key::new(k)?))
}

fn scenario(system: &SwarmMemory, swarm: &SwarmId, n: &mut Narrator) -> Result<()> {
    let store = system.store();
    let sys = Identity::System;

    // 1. Swarm, teams, agents.
    let backend =
        system.registry().create_team(&sys, Some("backend"), "Backend", Some(swarm), None)?.id;
    let frontend =
        system.registry().create_team(&sys, Some("frontend"), "Frontend", Some(swarm), None)?.id;
    let mut agents = Vec::new();
    for (id, name, kind, team, caps) in [
        ("ada", "Ada (API designer)", "architect", &backend, &["api", "design"][..]),
        ("bo", "Bo (backend developer)", "backend-dev", &backend, &["api", "database"][..]),
        ("cy", "Cy (frontend developer)", "frontend-dev", &frontend, &["ui"][..]),
        ("di", "Di (reviewer)", "reviewer", &frontend, &["review"][..]),
    ] {
        let reg = system.register_agent(
            AgentSpec::new(name, kind)?
                .id(id)?
                .team(team.as_str())?
                .capabilities(caps.iter().copied())?,
        )?;
        // Each agent authenticates with its id and its shown-once token, as an
        // untrusted process would.
        let session = system.authenticate(reg.agent.id.as_str(), reg.token.expose())?;
        agents.push((id, session));
    }
    let who = |i: usize| agents[i].1.identity().clone();
    let names: Vec<&str> = agents.iter().map(|(id, _)| *id).collect();
    n.section(
        "swarm, teams and agents",
        &format!(
            "swarm {swarm}: team backend = ada, bo; team frontend = cy, di\n\
             each agent registered, received a 256-bit token once, and authenticated with it"
        ),
        json!({ "swarm": swarm, "teams": { "backend": ["ada", "bo"], "frontend": ["cy", "di"] } }),
    )?;

    // 2. Memory at all five levels, and who can see what.
    let writes: [(&str, AclLevel, Option<&TeamId>, usize); 4] = [
        ("ada-notes", AclLevel::Private, None, 0),
        ("backend-plan", AclLevel::Team, Some(&backend), 1),
        ("sprint-goal", AclLevel::Swarm, None, 2),
        ("release-date", AclLevel::Public, None, 3),
    ];
    for (k, level, team, by) in writes {
        let mut opts = SetOptions::new().level(level);
        if let Some(t) = team {
            opts = opts.team(t.clone());
        }
        store.set(
            &who(by),
            &key(swarm, "project", k)?,
            Value::Text(format!("{k} written by {}", names[by])),
            &opts,
        )?;
    }
    store.set(
        &sys,
        &key(swarm, "project", "system-config")?,
        Value::from("only the system and level-5 grants"),
        &SetOptions::new().level(AclLevel::System),
    )?;
    let records = ["ada-notes", "backend-plan", "sprint-goal", "release-date", "system-config"];
    let mut rows = Vec::new();
    let mut matrix = serde_json::Map::new();
    for r in records {
        let k = key(swarm, "project", r)?;
        let mut row = vec![r.to_owned()];
        let mut seen = serde_json::Map::new();
        for (i, name) in names.iter().enumerate() {
            let visible = store.get(&who(i), &k)?.is_some();
            row.push(if visible { "yes".into() } else { "-".into() });
            seen.insert((*name).to_owned(), json!(visible));
        }
        rows.push(row);
        matrix.insert(r.to_owned(), serde_json::Value::Object(seen));
    }
    let mut headers = vec!["record (level)"];
    headers.extend(names.iter());
    let table = output::table(&headers, &rows);
    n.section(
        "memory at five levels: who can read what",
        &format!(
            "{table}\nprivate = ada only; team = backend members; swarm = every agent of the swarm;\n\
             public = every agent; system = none of them (no level-5 grant). A hidden record\n\
             answers exactly like a missing one, and the denial is audited. Private and team\n\
             values are encrypted at rest (AES-256-GCM, bound to their record)."
        ),
        serde_json::Value::Object(matrix),
    )?;

    // Nobody overwrites what they could not write.
    let refused = store.set(
        &who(2),
        &key(swarm, "project", "backend-plan")?,
        Value::from("cy's version"),
        &SetOptions::new().level(AclLevel::Swarm),
    );
    let lost_update = store.set(
        &who(1),
        &key(swarm, "project", "sprint-goal")?,
        Value::from("stale write"),
        &SetOptions::new().if_version(1),
    );
    n.section(
        "writes check the existing record",
        &format!(
            "cy tries to overwrite the backend team's plan: {}\nbo writes sprint-goal with a stale version: {}",
            refused.as_ref().map_or_else(|e| format!("refused ({e})"), |_| "accepted".into()),
            lost_update.as_ref().map_or_else(|e| format!("refused ({e})"), |_| "accepted".into()),
        ),
        json!({ "overwrite_refused": refused.is_err(), "stale_write_refused": lost_update.is_err() }),
    )?;

    // 3. A TTL expiring.
    let token_key = key(swarm, "session", "bo-lease")?;
    store.setex(
        &who(1),
        &token_key,
        Duration::from_millis(600),
        Value::from("short-lived"),
        &SetOptions::new(),
    )?;
    let before = store.get(&who(1), &token_key)?.is_some();
    std::thread::sleep(Duration::from_millis(650));
    let after = store.get(&who(1), &token_key)?.is_some();
    n.section(
        "a TTL expiring",
        &format!("bo stores a value for 600 ms: readable at once: {before}; after 650 ms: {after} (gone on every read path, swept or not)"),
        json!({ "before": before, "after": after }),
    )?;

    // 4. An atomic counter under threads.
    let counter = key(swarm, "project", "builds")?;
    let threads = 4;
    let per = 250;
    let started = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (store, who, counter) = (store.clone(), who(t % 2), counter.clone());
                s.spawn(move || -> std::result::Result<(), swarm_memory::StoreError> {
                    for _ in 0..per {
                        store.incr(
                            &who,
                            &counter,
                            1,
                            &SetOptions::new().level(AclLevel::Team).team(
                                TeamId::new("backend").map_err(swarm_memory::StoreError::from)?,
                            ),
                        )?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| CliError::other("a counter thread panicked"))??;
        }
        Ok(())
    })?;
    let total = store.get(&who(0), &counter)?.map(|r| r.value);
    n.section(
        "an atomic counter under threads",
        &format!(
            "{threads} threads x {per} increments of an encrypted team counter: {} (expected {}) in {} ms, group commit",
            total.as_ref().map_or_else(|| "?".into(), value_text),
            threads * per,
            started.elapsed().as_millis()
        ),
        json!({ "value": match &total { Some(Value::Integer(i)) => Some(*i), _ => None }, "expected": threads * per }),
    )?;

    // 5. A task graph with claims.
    let design =
        store.create_task(&who(0), TaskSpec::new("Design the API").id("design").priority(8))?;
    let implement = store
        .create_task(&who(0), TaskSpec::new("Implement the API").id("implement").priority(7))?;
    let review =
        store.create_task(&who(0), TaskSpec::new("Review the API").id("review").priority(6))?;
    store.add_dependency(&who(0), &implement.id, &design.id, swarm_memory::DependencyKind::Hard)?;
    store.add_dependency(&who(0), &review.id, &implement.id, swarm_memory::DependencyKind::Hard)?;
    let cycle =
        store.add_dependency(&who(0), &design.id, &review.id, swarm_memory::DependencyKind::Hard);
    let ready_before: Vec<String> =
        store.ready_tasks(&who(1), 10)?.into_iter().map(|t| t.id).collect();
    let blocked = store.claim_task(&who(1), &implement.id, Duration::from_secs(60));
    let claim = store.claim_task(&who(0), &design.id, Duration::from_secs(60))?;
    let second = store.claim_task(&who(1), &design.id, Duration::from_secs(60));
    store.report_progress(&who(0), &design.id, claim.token, 50)?;
    let stale = store.report_progress(&who(0), &design.id, claim.token - 1, 60);
    let done = store.complete_task(
        &who(0),
        &design.id,
        Some(claim.token),
        Some(json!({ "spec": "v1" })),
        Some(1.5),
    )?;
    let bo_claim = store.claim_task(&who(1), &implement.id, Duration::from_secs(60))?;
    n.section(
        "a task graph with claims",
        &format!(
            "design -> implement -> review (hard dependencies); closing the loop review -> design: {}\n\
             ready at first: {:?}; bo claiming 'implement' early: {}\n\
             ada claims 'design' (fencing token {}); bo's second claim: {}\n\
             a progress report with an older token: {}\n\
             ada completes 'design'; tasks that became ready: {:?}; bo claims 'implement' (token {})",
            cycle.as_ref().map_or_else(|e| format!("refused ({e})"), |_| "accepted".into()),
            ready_before,
            blocked.as_ref().map_or_else(|e| format!("refused ({e})"), |_| "accepted".into()),
            claim.token,
            second.as_ref().map_or_else(|e| format!("refused ({e})"), |_| "accepted".into()),
            stale.as_ref().map_or_else(|e| format!("refused ({e})"), |_| "accepted".into()),
            done.ready,
            bo_claim.token,
        ),
        json!({ "cycle_refused": cycle.is_err(), "second_claim_refused": second.is_err(), "stale_token_refused": stale.is_err(), "became_ready": done.ready }),
    )?;

    // 6. An event consumed.
    let published = store.publish_event(
        &who(1),
        EventSpec::new("build.finished", json!({ "build": 42, "ok": true })).priority(8),
    )?;
    let deliveries = store.claim_events(&who(3), "ci-watcher", 10, Duration::from_secs(30))?;
    for d in &deliveries {
        store.ack_event(&who(3), "ci-watcher", d.event.seq, d.attempt)?;
    }
    let again = store.claim_events(&who(2), "ui", 10, Duration::from_secs(30))?;
    n.section(
        "an event consumed",
        &format!(
            "bo publishes build.finished (seq {}); di's consumer claims {} event(s) and acknowledges them;\n\
             cy's consumer then finds {} claimable (each event goes to one consumer at a time; \
             the log itself stays readable with `events_since`)",
            published.seq,
            deliveries.len(),
            again.iter().filter(|d| d.event.event_type == "build.finished").count()
        ),
        json!({ "seq": published.seq, "claimed": deliveries.len() }),
    )?;

    // 7. A consensus round decided.
    let round = store.request_consensus(
        &who(0),
        RoundSpec::new("task", "implement")
            .description("ship the API as designed?")
            .strategy(Strategy::Weighted)
            .threshold(0.6)
            .quorum(3),
    )?;
    let mut lines = Vec::new();
    for (i, ballot) in [
        (1usize, Ballot::approve().confidence(0.9)),
        (2, Ballot::reject().confidence(0.4)),
        (3, Ballot::approve().confidence(0.8)),
    ] {
        let v = store.vote(&who(i), &round.id, ballot)?;
        lines.push(format!(
            "{} votes: tally for {} / against {} (weights {:.1} / {:.1}) -> {}",
            names[i],
            v.round.tally.votes_for,
            v.round.tally.votes_against,
            v.round.tally.weight_for,
            v.round.tally.weight_against,
            v.round.status.as_str()
        ));
    }
    let twice = store.vote(&who(1), &round.id, Ballot::reject());
    let decided = store.get_round(&who(0), &round.id)?.map(|r| r.status.as_str());
    n.section(
        "a consensus round decided",
        &format!(
            "weighted round, threshold 0.6, quorum 3:\n{}\na second vote by bo: {}",
            lines.join("\n"),
            twice.as_ref().map_or_else(|e| format!("refused ({e})"), |_| "accepted".into())
        ),
        json!({ "status": decided, "second_vote_refused": twice.is_err() }),
    )?;

    // 8. The audit chain, and metrics.
    let verify = store.verify_audit()?;
    let m = store.metrics();
    let get = m.ops.iter().find(|o| o.op == swarm_memory::Op::Get);
    let set = m.ops.iter().find(|o| o.op == swarm_memory::Op::Set);
    n.section(
        "the audit chain and metrics",
        &format!(
            "audit chain: {} rows, {}\n\
             get: {} calls, p50 {} us; set: {} calls, p50 {} us; principal cache hit rate {:.0}%; {} commit groups for {} write jobs",
            verify.rows,
            if verify.is_intact() { "intact" } else { "BROKEN" },
            get.map_or(0, |o| o.count),
            get.map_or(0, |o| o.p50_ns / 1000),
            set.map_or(0, |o| o.count),
            set.map_or(0, |o| o.p50_ns / 1000),
            m.acl_cache_hit_rate * 100.0,
            m.commit_groups,
            m.write_jobs,
        ),
        json!({ "audit_rows": verify.rows, "audit_intact": verify.is_intact(), "metrics": m }),
    )?;
    if !verify.is_intact() {
        return Err(CliError::unhealthy("the audit chain did not verify"));
    }
    Ok(())
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Integer(i) => i.to_string(),
        Value::Text(t) => t.clone(),
        Value::Json(j) => j.to_string(),
        Value::Bytes(b) => format!("{} bytes", b.len()),
    }
}
